"""The stream processor: decode, validate, evaluate, learn, publish — for one micro-batch.

Both ways of running recsys-stream drive this one class: the embedded simulation feeds it
records from the in-process event log, the Faust trainer records from Kafka. What it produces
goes to an :class:`~recsys_stream.serving.OutputSink`: in memory here, Redis in the services.

>>> from recsys_stream.events import RatingEvent, encode
>>> from recsys_stream.serving import InMemorySink
>>> from recsys_stream.settings import LearnerConfig, ModelConfig, StreamConfig
>>> sink = InMemorySink()
>>> processor = StreamProcessor.create(
...     LearnerConfig(model=ModelConfig(dim=8, context_length=4)),
...     StreamConfig(baselines=False),
...     sink,
... )
>>> result = processor.process_records([encode(RatingEvent(1, 10, 5.0, 0)), b"not json"])
>>> result.learned, len(sink.dead_letters), sorted(sink.recommendations)
(1, 1, [1])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recsys_stream.base import StreamingRecommender
from recsys_stream.baselines import CoocKNN, most_popular, recent_popular
from recsys_stream.evaluation import PrequentialEvaluator
from recsys_stream.events import EventBatch, decode_columns
from recsys_stream.learner import OnlineLearner
from recsys_stream.report import LossSeries, StreamReport
from recsys_stream.serving import DeadLetter, OutputSink, UserRecommendations
from recsys_stream.settings import LearnerConfig, StreamConfig

LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class BatchResult:
    learned: int
    dead_letters: list[DeadLetter]
    relevant: int
    hits: dict[str, int]
    valid_per_message: list[int] = field(default_factory=list)
    """For :meth:`StreamProcessor.process_records`: each message's count of valid events."""
    user_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """The users whose events were learned (each once)."""


def decode_records(
    payloads: Sequence[bytes | None], sources: Sequence[str] | None = None
) -> tuple[EventBatch, list[DeadLetter], list[int]]:
    """Decode messages (single events or envelopes): the valid events in order, the dead
    letters with their reason (and index in their envelope), and each message's count of
    valid events."""
    batches: list[EventBatch] = []
    dead: list[DeadLetter] = []
    valid: list[int] = []
    for position, payload in enumerate(payloads):
        batch, invalid = decode_columns(payload)
        batches.append(batch)
        valid.append(len(batch))
        source = sources[position] if sources is not None else ""
        dead.extend(
            DeadLetter(bad.payload, str(bad.error), source, bad.error.code, bad.index)
            for bad in invalid
        )
    return EventBatch.concatenate(batches), dead, valid


class StreamProcessor:
    """Evaluates (test-then-train) and learns micro-batches, and publishes what changed."""

    def __init__(
        self,
        learner: OnlineLearner,
        evaluator: PrequentialEvaluator,
        sink: OutputSink,
        *,
        top_k: int = 10,
        batch_size: int = 512,
        metrics_every_events: int = 5_000,
        snapshot_every_events: int = 5_000,
    ) -> None:
        self.learner = learner
        self.batch_size = batch_size
        """Most events of one micro-batch: records holding more (envelopes) are learned in
        several."""
        self.evaluator = evaluator
        self.sink = sink
        self.top_k = top_k
        self.metrics_every_events = metrics_every_events
        self.dead_letters = 0
        self.loss_series = LossSeries()
        self._events_at_last_metrics = 0
        self.snapshot_every_events = snapshot_every_events
        self.consumer_lag: int | None = None
        """Messages in the source not yet consumed (the Kafka adapter sets it; None: unknown)."""
        self.latest_report: StreamReport | None = None
        """The report last published."""
        self.publishes_model = True
        """Publish the model snapshot and the metrics (one worker of a group does; all publish
        their users' lists)."""
        self._snapshot_version = -1
        self._events_at_last_snapshot = 0

    @classmethod
    def create(
        cls,
        learner: LearnerConfig,
        stream: StreamConfig,
        sink: OutputSink,
        *,
        rating_range: tuple[float, float] = (0.5, 5.0),
    ) -> StreamProcessor:
        """A processor with a fresh learner and, if ``stream.baselines``, the protocol's
        baselines; the stream's thresholds reach both the evaluator and the learner."""
        online = OnlineLearner(learner, relevance_threshold=stream.relevance_threshold)
        models: dict[str, StreamingRecommender] = {LEARNER: online}
        if stream.baselines:
            models.update(
                most_popular=most_popular(),
                recent_popular=recent_popular(),
                cooc_knn=CoocKNN(),
            )
        evaluator = PrequentialEvaluator(
            models,
            k=stream.k,
            relevance_threshold=stream.relevance_threshold,
            like_threshold=stream.like_threshold,
            rating_range=rating_range,
            window=stream.window,
        )
        return cls(online, evaluator, sink, top_k=stream.k, batch_size=stream.batch_size)

    def process_records(
        self, payloads: Sequence[bytes | None], sources: Sequence[str] | None = None
    ) -> BatchResult:
        """Decode messages (single events or envelopes), route the bad ones, process the good
        ones in micro-batches of at most :attr:`batch_size` events, in order."""
        decoded, dead, valid = decode_records(payloads, sources)
        if dead:
            self.dead_letters += len(dead)
            self.sink.publish_dead_letters(dead)
        learned = relevant = 0
        hits: dict[str, int] = {}
        users = []
        for batch in decoded.split(self.batch_size):
            result = self.process_batch(batch)
            learned += result.learned
            relevant += result.relevant
            users.append(result.user_ids)
            for name, count in result.hits.items():
                hits[name] = hits.get(name, 0) + count
        user_ids = np.unique(np.concatenate(users)) if users else np.zeros(0, np.int64)
        return BatchResult(learned, dead, relevant, hits, valid, user_ids)

    def process_batch(self, batch: EventBatch) -> BatchResult:
        """Evaluate every model on the batch, let each learn it, publish the touched users."""
        outcome = self.evaluator.process(batch)
        losses = self.learner.last_losses
        self.loss_series.event_index.append(self.evaluator.events_seen)
        self.loss_series.ranking_loss.append(float("nan") if losses is None else losses.ranking)
        self.loss_series.rating_loss.append(float("nan") if losses is None else losses.rating)
        users = np.unique(batch.user_ids)
        self.publish_recommendations(users)
        if self.evaluator.events_seen - self._events_at_last_metrics >= self.metrics_every_events:
            self.publish_metrics()
        return BatchResult(len(batch), [], outcome.relevant, outcome.hits, user_ids=users)

    def swap_in_retrain(self, *, wait: bool = False) -> bool:
        """Swap in a finished retrain (with ``wait``: the running one, once done) and publish
        the new model; True if one was. Called when the stream is idle: during a stream, the
        learner swaps retrains in between micro-batches by itself."""
        version = self.learner.version
        if wait:
            self.learner.wait_for_retrain()
        else:
            self.learner.poll_retrain()
        if self.learner.version == version:
            return False
        self._publish_snapshot()
        self.publish_metrics()
        return True

    def publish_recommendations(self, user_ids: npt.NDArray[np.int64]) -> None:
        items, scores, states = self.learner.serving_state(user_ids, self.top_k)
        now = time.time()
        version = self.learner.version
        lists = [
            UserRecommendations(
                int(user),
                [int(i) for i in row_items if i >= 0],
                [float(s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0],
                version,
                now,
            )
            for user, row_items, row_scores in zip(user_ids, items, scores, strict=True)
        ]
        self.sink.publish_recommendations(lists, states)
        if self.publishes_model and (
            version != self._snapshot_version
            or self.evaluator.events_seen - self._events_at_last_snapshot
            >= self.snapshot_every_events
        ):
            self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        self.sink.publish_snapshot(self.learner.snapshot())
        self._snapshot_version = self.learner.version
        self._events_at_last_snapshot = self.evaluator.events_seen

    def state_dict(self) -> dict[str, Any]:
        return {
            "evaluator": self.evaluator.state_dict(),
            "dead_letters": self.dead_letters,
            "loss_series": self.loss_series.to_dict(),
            "events_at_last_metrics": self._events_at_last_metrics,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluator.load_state_dict(state["evaluator"])
        self.dead_letters = int(state["dead_letters"])
        self.loss_series = LossSeries.from_dict(state["loss_series"])
        self._events_at_last_metrics = int(state["events_at_last_metrics"])

    def publish_metrics(self) -> StreamReport:
        """The current prequential report (with the learner's state) to the sink; also
        returned."""
        report = StreamReport(
            prequential=self.evaluator.report(),
            model_version=self.learner.version,
            retrains_completed=self.learner.retrains_completed,
            dead_letters=self.dead_letters,
            published_at=time.time(),
            consumer_lag=self.consumer_lag,
        )
        self._events_at_last_metrics = self.evaluator.events_seen
        self.latest_report = report
        if self.publishes_model:
            self.sink.publish_metrics(report)
        return report

    def publish_when_quiet(self) -> None:
        """The stream went quiet: publish the figures and the snapshot that its last events
        left (those of the last multiple of the cadences were published; of a group's worker,
        with the updates applied since)."""
        if self.evaluator.events_seen != self._events_at_last_metrics:
            self.publish_metrics()
        if self.publishes_model and self.evaluator.events_seen != self._events_at_last_snapshot:
            self._publish_snapshot()

    def lead(self, publishes: bool) -> None:
        """Set :attr:`publishes_model`; a processor that starts publishing publishes a snapshot
        with its next batch."""
        if publishes and not self.publishes_model:
            self._snapshot_version = -1
        self.publishes_model = publishes
