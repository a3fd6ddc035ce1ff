"""RankingLog and RatingLog: metric formulas, breakdowns, sliding windows, persistence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream.evaluation.metrics import RankingLog, RatingLog
from recsys_stream.report import ModelFigures, metric_name

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)

FIGURES = ("hr", "ndcg", "precision", "recall", "f1")


def naive_figures(ranks: list[int], k: int) -> dict[str, float]:
    """One held-out item per event: precision = hits / k, recall = hits."""
    if not ranks:
        return {f"{name}@{k}": 0.0 for name in FIGURES}
    hits = [rank < k for rank in ranks]
    hr = sum(hits) / len(ranks)
    ndcg = sum(1 / math.log2(rank + 2) for rank in ranks if rank < k) / len(ranks)
    precision = hr / k
    f1 = 2 * precision * hr / (precision + hr) if hr else 0.0
    return {f"hr@{k}": hr, f"ndcg@{k}": ndcg, f"precision@{k}": precision,
            f"recall@{k}": hr, f"f1@{k}": f1}  # fmt: skip


def summary_of(log: RankingLog) -> dict[str, Any]:
    """The log's figures under their report names, as ``report.json`` holds them."""
    return ModelFigures(log.overall(), log.warm(), log.last20()).to_dict(log.k)


def deciles_of(log: RankingLog, n_events: int) -> list[dict[str, Any]]:
    return [decile.to_dict(log.k) for decile in log.deciles(n_events)]


def series_of(log: RankingLog, window: int, step: int) -> dict[str, list[Any]]:
    event_index, windowed = log.window_series(window, step)
    return {
        "event_index": event_index,
        metric_name("hr", log.k): windowed.hr,
        metric_name("ndcg", log.k): windowed.ndcg,
    }


def rating_of(log: RatingLog) -> dict[str, Any]:
    return log.summary().to_dict()


def naive_ends(n: int, step: int) -> list[int]:
    ends = list(range(step, n + 1, step))
    if n and (not ends or ends[-1] != n):
        ends.append(n)
    return ends


def filled_ranking_log(k: int = 3) -> RankingLog:
    log = RankingLog(k=k)
    log.append(event_index=np.array([0, 2]), ranks=np.array([0, 1]), warm=np.array([1, 0]))
    log.append(event_index=np.array([3, 7, 9]), ranks=np.array([2, 3, 10]), warm=[1, 1, 0])
    return log


# -------------------------------------------------------------------------- RankingLog


def test_ranking_summary_on_a_hand_computed_example() -> None:
    summary = summary_of(filled_ranking_log(k=3))
    # ranks 0, 1, 2, 3, 10 at k=3: three hits.
    ndcg = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)) / 5
    assert summary["relevant"] == 5
    assert summary["hr@3"] == pytest.approx(0.6)
    assert summary["ndcg@3"] == pytest.approx(ndcg)
    assert summary["ndcg@3"] == pytest.approx((1 + 0.6309297535714575 + 0.5) / 5)
    assert summary["precision@3"] == pytest.approx(0.2)
    assert summary["recall@3"] == pytest.approx(0.6)
    assert summary["f1@3"] == pytest.approx(2 * 0.2 * 0.6 / 0.8)


def test_ranking_summary_warm_breakdown_uses_warm_events_only() -> None:
    summary = summary_of(filled_ranking_log(k=3))
    # warm events have ranks 0, 2, 3
    assert summary["relevant_warm"] == 3
    assert summary["hr@3_warm"] == pytest.approx(2 / 3)
    assert summary["ndcg@3_warm"] == pytest.approx((1 + 0.5) / 3)
    assert summary["precision@3_warm"] == pytest.approx(2 / 9)
    assert summary["recall@3_warm"] == pytest.approx(2 / 3)
    assert summary["f1@3_warm"] == pytest.approx(1 / 3)


def test_ranking_summary_last20_is_the_final_fifth_of_relevant_events() -> None:
    log = RankingLog(k=2)
    # 10 events: the last fifth is the last two (ranks 1 and 5).
    log.append(np.arange(10), np.array([5, 5, 5, 5, 5, 5, 5, 5, 1, 5]), np.zeros(10))
    summary = summary_of(log)
    assert summary["relevant_last20"] == 2
    assert summary["hr@2_last20"] == pytest.approx(0.5)
    assert summary["ndcg@2_last20"] == pytest.approx(0.5 / math.log2(3))
    assert summary["hr@2"] == pytest.approx(0.1)
    assert summary["relevant_warm"] == 0
    assert summary["hr@2_warm"] == 0.0


def test_ranking_summary_of_fewer_than_five_events_has_an_empty_last20() -> None:
    log = RankingLog(k=5)
    log.append([0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 1, 1])
    summary = summary_of(log)
    assert summary["relevant_last20"] == 0
    assert summary["hr@5_last20"] == 0.0
    assert summary["hr@5"] == 1.0


def test_ranking_summary_of_an_empty_log_is_all_zero() -> None:
    summary = summary_of(RankingLog(k=10))
    assert summary["relevant"] == 0
    assert summary["relevant_warm"] == 0
    assert summary["relevant_last20"] == 0
    for name in FIGURES:
        assert summary[f"{name}@10"] == 0.0
        assert summary[f"{name}@10_warm"] == 0.0
        assert summary[f"{name}@10_last20"] == 0.0


def test_ranks_beyond_k_are_stored_as_misses() -> None:
    log = RankingLog(k=10)
    log.append([0, 1, 2, 3], [9, 10, 40_000, 2**31 - 1], [0, 0, 0, 0])
    assert log.ranks.tolist() == [9, 10, 10, 10]
    assert summary_of(log)["hr@10"] == 0.25


def test_a_ranking_log_grows_past_its_initial_storage() -> None:
    log = RankingLog(k=10)
    ranks = np.random.default_rng(0).integers(0, 20, size=3000)
    for chunk in np.array_split(np.arange(3000), 7):
        log.append(chunk, ranks[chunk], chunk % 2)
    assert len(log) == 3000
    assert log.ranks.tolist() == np.minimum(ranks, 10).tolist()
    assert summary_of(log)["relevant_warm"] == 1500


def test_deciles_split_relevant_events_by_stream_position() -> None:
    log = RankingLog(k=2)
    log.append(
        event_index=np.array([0, 9, 10, 55, 99]),
        ranks=np.array([0, 5, 1, 0, 7]),
        warm=np.zeros(5),
    )
    deciles = deciles_of(log, n_events=100)
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert [d["relevant"] for d in deciles] == [2, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert deciles[0]["hr@2"] == 0.5
    assert deciles[0]["ndcg@2"] == 0.5
    assert deciles[1]["hr@2"] == 1.0
    assert deciles[1]["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert deciles[2]["hr@2"] == 0.0
    assert deciles[9]["hr@2"] == 0.0


@SETTINGS
@given(
    n_events=st.integers(1, 500),
    data=st.data(),
)
def test_deciles_match_a_naive_split(n_events: int, data: st.DataObject) -> None:
    positions = sorted(data.draw(st.lists(st.integers(0, n_events - 1), max_size=60, unique=True)))
    ranks = data.draw(
        st.lists(st.integers(0, 15), min_size=len(positions), max_size=len(positions))
    )
    log = RankingLog(k=5)
    log.append(np.array(positions, dtype=np.int64), np.array(ranks), np.ones(len(ranks)))
    deciles = deciles_of(log, n_events)
    for decile in range(10):
        inside = [r for p, r in zip(positions, ranks, strict=True) if 10 * p // n_events == decile]
        expected = naive_figures(inside, 5)
        assert deciles[decile]["relevant"] == len(inside)
        assert deciles[decile]["hr@5"] == pytest.approx(expected["hr@5"])
        assert deciles[decile]["ndcg@5"] == pytest.approx(expected["ndcg@5"])
    assert sum(d["relevant"] for d in deciles) == len(positions)


def test_window_series_on_a_hand_computed_example() -> None:
    log = RankingLog(k=2)
    log.append(np.array([3, 4, 8, 9, 12]), np.array([0, 5, 1, 0, 9]), np.zeros(5))
    series = series_of(log, window=2, step=2)
    # ends after 2, 4 and (the remainder) 5 relevant events; windows (0, 5), (1, 0), (0, 9)
    assert series["event_index"] == [5, 10, 13]
    assert series["hr@2"] == pytest.approx([0.5, 1.0, 0.5])
    assert series["ndcg@2"] == pytest.approx([0.5, (1 / math.log2(3) + 1) / 2, 0.5])


def test_window_series_of_an_empty_log_is_empty() -> None:
    series = series_of(RankingLog(k=10), window=5, step=2)
    assert series == {"event_index": [], "hr@10": [], "ndcg@10": []}


@SETTINGS
@given(
    ranks=st.lists(st.integers(0, 12), max_size=80),
    window=st.integers(1, 30),
    step=st.integers(1, 30),
    k=st.integers(1, 10),
)
def test_window_series_matches_a_naive_sliding_window(
    ranks: list[int], window: int, step: int, k: int
) -> None:
    event_index = [3 * i + 1 for i in range(len(ranks))]
    log = RankingLog(k=k)
    log.append(np.array(event_index, dtype=np.int64), np.array(ranks), np.zeros(len(ranks)))
    series = series_of(log, window, step)
    ends = naive_ends(len(ranks), step)
    assert series["event_index"] == [event_index[end - 1] + 1 for end in ends]
    windows = [naive_figures(ranks[max(0, end - window) : end], k) for end in ends]
    assert series[f"hr@{k}"] == pytest.approx([w[f"hr@{k}"] for w in windows])
    assert series[f"ndcg@{k}"] == pytest.approx([w[f"ndcg@{k}"] for w in windows])


@SETTINGS
@given(
    ranks=st.lists(st.integers(0, 40), max_size=60),
    warm=st.lists(st.booleans(), min_size=60, max_size=60),
    k=st.integers(1, 20),
)
def test_ranking_summary_matches_naive_formulas(ranks: list[int], warm: list[bool], k: int) -> None:
    warm = warm[: len(ranks)]
    log = RankingLog(k=k)
    log.append(np.arange(len(ranks)), np.array(ranks, dtype=np.int64), np.array(warm))
    summary = summary_of(log)
    n_last = len(ranks) // 5
    expected = {
        "": naive_figures(ranks, k),
        "_warm": naive_figures([r for r, w in zip(ranks, warm, strict=True) if w], k),
        "_last20": naive_figures(ranks[len(ranks) - n_last :], k),
    }
    for suffix, figures in expected.items():
        for name, value in figures.items():
            assert summary[f"{name}{suffix}"] == pytest.approx(value), name + suffix
    assert summary["relevant_last20"] == n_last
    assert summary["relevant_warm"] == sum(warm)


def test_ranking_state_dict_round_trip() -> None:
    log = filled_ranking_log(k=3)
    state = log.state_dict()
    restored = RankingLog(k=3)
    restored.append([100], [0], [1])  # loading replaces what was there
    restored.load_state_dict(state)
    assert len(restored) == 5
    assert summary_of(restored) == summary_of(log)
    assert deciles_of(restored, 10) == deciles_of(log, 10)
    assert series_of(restored, 2, 1) == series_of(log, 2, 1)
    for name in ("event_index", "rank", "warm"):
        assert np.array_equal(restored.state_dict()[name], state[name])
    # Both continue the same way.
    log.append([11], [1], [1])
    restored.append([11], [1], [1])
    assert summary_of(restored) == summary_of(log)


def test_ranking_state_dict_is_a_snapshot() -> None:
    log = filled_ranking_log()
    state = log.state_dict()
    log.append([20], [0], [1])
    assert len(state["rank"]) == 5


# --------------------------------------------------------------------------- RatingLog


def filled_rating_log() -> RatingLog:
    log = RatingLog()
    log.append(predicted=[4.0, 3.0, 3.5], actual=[3.5, 4.0, 3.0], warm=[1, 1, 0])
    log.append(predicted=np.array([2.0, 5.0]), actual=np.array([2.0, 1.0]), warm=[0, 1])
    return log


def test_rating_summary_on_a_hand_computed_example() -> None:
    summary = rating_of(filled_rating_log())
    # errors 0.5, -1, 0.5, 0, 4
    assert summary["rmse"] == pytest.approx(math.sqrt(17.5 / 5))
    assert summary["mae"] == pytest.approx(6.0 / 5)
    assert summary["rmse_warm"] == pytest.approx(math.sqrt(17.25 / 3))
    assert summary["mae_warm"] == pytest.approx(5.5 / 3)
    assert summary["rmse_last20"] == pytest.approx(4.0)


def test_rating_confusion_uses_a_like_threshold_of_3_5_inclusive() -> None:
    summary = rating_of(filled_rating_log())
    # predicted like: 4.0, 3.5, 5.0; actual like: 3.5, 4.0
    assert summary["confusion"] == {"tp": 1, "fp": 2, "fn": 1, "tn": 1}
    assert summary["like_accuracy"] == pytest.approx(2 / 5)
    assert summary["like_precision"] == pytest.approx(1 / 3)
    assert summary["like_recall"] == pytest.approx(1 / 2)


def test_rating_confusion_follows_a_custom_threshold() -> None:
    log = RatingLog(like_threshold=4.0)
    log.append([3.9, 4.0, 4.5], [4.0, 3.5, 4.0], [0, 0, 0])
    assert rating_of(log)["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 0}


def test_rating_summary_of_an_empty_log_is_all_zero() -> None:
    summary = rating_of(RatingLog())
    assert summary["confusion"] == {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for name in ("rmse", "mae", "rmse_warm", "mae_warm", "rmse_last20", "like_accuracy"):
        assert summary[name] == 0.0
    assert summary["like_precision"] == 0.0
    assert summary["like_recall"] == 0.0


def test_window_rmse_on_a_hand_computed_example() -> None:
    ends, values = filled_rating_log().window_rmse(window=2, step=2)
    # squared errors 0.25, 1, 0.25, 0, 16
    assert ends == [2, 4, 5]
    assert values == pytest.approx([math.sqrt(1.25 / 2), math.sqrt(0.25 / 2), math.sqrt(8.0)])


def test_window_rmse_of_an_empty_log_is_empty() -> None:
    assert RatingLog().window_rmse(window=10, step=5) == ([], [])


@SETTINGS
@given(
    pairs=st.lists(
        st.tuples(st.integers(2, 10).map(lambda x: x / 2), st.integers(2, 10).map(lambda x: x / 2)),
        max_size=60,
    ),
    window=st.integers(1, 25),
    step=st.integers(1, 25),
)
def test_window_rmse_matches_a_naive_sliding_window(
    pairs: list[tuple[float, float]], window: int, step: int
) -> None:
    log = RatingLog()
    log.append([p for p, _ in pairs], [a for _, a in pairs], np.zeros(len(pairs)))
    ends, values = log.window_rmse(window, step)
    expected_ends = naive_ends(len(pairs), step)
    assert ends == expected_ends
    expected = []
    for end in expected_ends:
        chunk = pairs[max(0, end - window) : end]
        expected.append(math.sqrt(sum((p - a) ** 2 for p, a in chunk) / len(chunk)))
    assert values == pytest.approx(expected, abs=1e-9)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.floats(0.5, 5.0, width=32),
            st.integers(1, 10).map(lambda x: x / 2),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_rating_summary_matches_naive_formulas(rows: list[tuple[float, float, bool]]) -> None:
    log = RatingLog()
    log.append([p for p, _, _ in rows], [a for _, a, _ in rows], [w for _, _, w in rows])
    summary = rating_of(log)
    errors = [p - a for p, a, _ in rows]
    warm_errors = [p - a for p, a, w in rows if w]

    def rmse(e: list[float]) -> float:
        return math.sqrt(sum(x * x for x in e) / len(e)) if e else 0.0

    def mae(e: list[float]) -> float:
        return sum(abs(x) for x in e) / len(e) if e else 0.0

    assert summary["rmse"] == pytest.approx(rmse(errors))
    assert summary["mae"] == pytest.approx(mae(errors))
    assert summary["rmse_warm"] == pytest.approx(rmse(warm_errors))
    assert summary["mae_warm"] == pytest.approx(mae(warm_errors))
    assert summary["rmse_last20"] == pytest.approx(rmse(errors[len(errors) - len(errors) // 5 :]))
    confusion = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for p, a, _ in rows:
        key = {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}
        confusion[key[p >= 3.5, a >= 3.5]] += 1
    assert summary["confusion"] == confusion


def test_rating_state_dict_round_trip() -> None:
    log = filled_rating_log()
    state = log.state_dict()
    restored = RatingLog()
    restored.append([1.0], [1.0], [1])  # loading replaces what was there
    restored.load_state_dict(state)
    assert len(restored) == 5
    assert rating_of(restored) == rating_of(log)
    assert restored.window_rmse(2, 1) == log.window_rmse(2, 1)
    log.append([3.0], [4.0], [1])
    restored.append([3.0], [4.0], [1])
    assert rating_of(restored) == rating_of(log)


def test_rating_state_dict_is_a_snapshot() -> None:
    log = filled_rating_log()
    state = log.state_dict()
    log.append([3.0], [4.0], [1])
    assert len(state["actual"]) == 5
