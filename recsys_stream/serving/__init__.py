"""Serving: the data the trainer publishes for the API, and the interfaces between them.

Data types: :class:`ModelSnapshot` and :class:`UserState` (a cache miss is scored from them
with one matrix-vector product, no torch), :class:`UserRecommendations` (a cached top-K list)
and :class:`DeadLetter`. Interfaces: :class:`OutputSink` (the processor writes),
:class:`ServingCache` (the API reads), :class:`EventPublisher` (the API sends events). The
embedded implementation of the first two is :class:`InMemorySink`; Redis and Kafka ones live
in ``services/``. Nothing here imports torch.
"""

from recsys_stream.serving.interfaces import (
    CacheUnavailableError,
    EventPublisher,
    OutputSink,
    PublishError,
    PublishUnconfirmedError,
    ServingCache,
)
from recsys_stream.serving.memory import InMemorySink
from recsys_stream.serving.outputs import DeadLetter, UserRecommendations
from recsys_stream.serving.snapshot import ModelSnapshot, UserState

__all__ = [
    "CacheUnavailableError",
    "DeadLetter",
    "EventPublisher",
    "InMemorySink",
    "ModelSnapshot",
    "OutputSink",
    "PublishError",
    "PublishUnconfirmedError",
    "ServingCache",
    "UserRecommendations",
    "UserState",
]
