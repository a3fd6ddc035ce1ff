"""Reports built by hand for tests: every field set, values easy to check in rendered output."""

from __future__ import annotations

import math

from recsys_stream.report import (
    Confusion,
    DecileFigures,
    LossSeries,
    ModelFigures,
    PrequentialReport,
    RankingFigures,
    RankingSeries,
    RatingFigures,
    RatingSeries,
    RunReport,
    StreamReport,
    WindowedRanking,
)

HIT_RATES = {"learner": 0.2, "most_popular": 0.1, "recent_popular": 0.08, "cooc_knn": 0.16}


def ranking(hr: float, k: int, relevant: int = 1000) -> RankingFigures:
    return RankingFigures(relevant, hr, hr / 2, hr / k, hr, 2 * (hr / k) * hr / (hr / k + hr))


def make_report(
    *,
    k: int = 10,
    models: tuple[str, ...] = ("cooc_knn", "recent_popular", "learner", "most_popular"),
    rating: bool = True,
    series: bool = True,
    loss: bool = True,
) -> RunReport:
    """A report shaped like the simulation's, with ``models`` in a deliberately scrambled order."""
    figures: dict[str, ModelFigures] = {}
    for name in models:
        hr = HIT_RATES.get(name, 0.05)
        figures[name] = ModelFigures(
            overall=ranking(hr, k),
            warm=ranking(hr + 0.01, k),
            last20=ranking(hr + 0.02, k, relevant=200),
            deciles=[DecileFigures(d, 100, hr * d / 10, hr * d / 20) for d in range(1, 11)],
            rating=RatingFigures(
                rmse=0.95,
                mae=0.75,
                rmse_warm=0.94,
                mae_warm=0.74,
                rmse_last20=0.93,
                confusion=Confusion(tp=1234, fp=321, fn=222, tn=567),
                like_accuracy=0.7654,
                like_precision=0.7935,
                like_recall=0.8475,
            )
            if rating and name == "learner"
            else None,
        )
    points = list(range(500, 5001, 500))
    ranking_series = RankingSeries(window=1000, step=100)
    rating_series = None
    if series:
        ranking_series = RankingSeries(
            window=1000,
            step=100,
            event_index=points,
            models={
                name: WindowedRanking(
                    hr=[HIT_RATES.get(name, 0.05) * (1 + i / 20) for i in range(10)],
                    ndcg=[HIT_RATES.get(name, 0.05) / 2 for _ in range(10)],
                )
                for name in models
            },
        )
        if rating and "learner" in figures:
            rating_series = RatingSeries(
                window=1000,
                event_index=points,
                rmse={"learner": [1.0 - i / 100 for i in range(10)]},
            )
    training_loss = LossSeries()
    if loss:
        training_loss = LossSeries(
            event_index=list(range(256, 5001, 256)),
            ranking_loss=[4.5 - i / 20 for i in range(19)],
            rating_loss=[math.nan if i % 5 == 0 else 0.5 - i / 100 for i in range(19)],
        )
    prequential = PrequentialReport(
        events=5000,
        relevant_events=2800,
        users=50,
        items=300,
        k=k,
        relevance_threshold=4.0,
        like_threshold=3.5,
        first_timestamp=0.0,
        last_timestamp=5000.0,
        models=figures,
        ranking_series=ranking_series,
        rating_series=rating_series,
    )
    return RunReport(
        stream=StreamReport(
            prequential, model_version=3, retrains_completed=1, dead_letters=0, published_at=0.0
        ),
        dataset="synthetic-42",
        batch_size=256,
        wall_seconds=1.25,
        events_per_second=4000.0,
        seconds_per_model=dict.fromkeys(models, 0.1),
        device="cpu",
        training_loss=training_loss,
        learner_config={},
        baseline_batching="exact per event (equivalent to batch size 1)",
    )
