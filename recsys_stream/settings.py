"""One typed settings object for every component.

Values come from keyword arguments, then environment variables, then defaults. Each section
reads variables with its own prefix (``RECSYS_KAFKA__TOPIC``, ``RECSYS_DATA__DATA_DIR``, ...);
the conventional names ``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``RECSYS_DATA_DIR`` are
honoured too.

>>> settings = Settings(kafka={"topic": "ratings-test"})
>>> settings.kafka.topic
'ratings-test'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

RELEVANCE_THRESHOLD: Final = 4.0
"""A rating at or above this is relevant: the protocol's definition (../shared/PROTOCOL.md)."""
LIKE_THRESHOLD: Final = 3.5
"""A rating (or prediction) at or above this is a like, in the like/dislike confusion matrix."""


def _json_if_text(value: Any) -> Any:
    """A JSON list given as text (an environment variable: ``'[1, 7, null]'``) as a list."""
    return json.loads(value) if isinstance(value, str) else value


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "recsys-stream"


class DataSettings(BaseModel):
    """Where datasets are found and downloaded to."""

    data_dir: Path | None = Field(
        default=None,
        description="Directory holding dataset folders named as GroupLens names them "
        "(ml-100k/, ml-1m/, ...). Searched before any download.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: _default_cache_dir() / "datasets",
        description="Where downloaded datasets are verified and unpacked.",
    )
    allow_download: bool = Field(
        default=True, description="Download a missing dataset from GroupLens."
    )


class KafkaSettings(BaseModel):
    """The broker and the topics of the event stream."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "ratings"
    dead_letter_topic: str = "ratings.dead-letter"
    updates_topic: str = Field(
        default="ratings.model-updates",
        description="Where trainer workers that scale out exchange what each learned (one "
        "partition: every worker reads every update in one order).",
    )
    updates_retention_ms: int = Field(
        default=7 * 86_400_000,
        ge=-1,
        description="How long the updates topic keeps an update (-1: for ever); a worker "
        "restores from a checkpoint at most this old, or from another worker's.",
    )
    updates_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1_048_576,
        description="Largest update one worker may publish (the topic's max.message.bytes).",
    )
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    connect_timeout_s: float = Field(
        default=15.0, gt=0, description="How long one attempt to reach the brokers may take."
    )
    envelope_max_events: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most events a producer (replay, API) packs into one message; 1: one "
        "event per message.",
    )
    envelope_max_bytes: int = Field(
        default=256 * 1024, ge=64, le=1_000_000, description="Most bytes of one envelope."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How clients talk to the brokers: SSL for TLS, SASL_SSL for TLS and a "
        "login (docs/security.md).",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (a secret: never logged)."
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle that signs the brokers' certificates."
    )
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS).")
    ssl_keyfile: Path | None = Field(default=None, description="Client key (mTLS).")


class TrainerSettings(BaseModel):
    """The Faust trainer service."""

    app_id: str = Field(default="recsys-trainer", description="Faust app id = consumer group.")
    batch_timeout_s: float = Field(
        default=0.05,
        gt=0,
        description="Learn a partial micro-batch after waiting this long for more events.",
    )
    faust_cython: bool = Field(
        default=False, description="faust-streaming's cython_optimizations (its C stream iterator)."
    )
    faust_monitor: bool = Field(
        default=True,
        description="Faust's Monitor sensor (per-event statistics); off: a sensor that records "
        "nothing.",
    )
    stream_buffer_maxsize: int = Field(
        default=4096, ge=1, description="Faust's buffer of fetched messages per partition."
    )
    max_poll_records: int | None = Field(
        default=None, ge=1, description="Most records one fetch returns (None: the client's)."
    )
    scale_out: bool = Field(
        default=False,
        description="Run as one of several workers of the app id: each learns the users of "
        "its partitions and they keep one model by exchanging updates on kafka.updates_topic "
        "(docs/streaming.md, 'Several workers').",
    )
    worker_name: str | None = Field(
        default=None,
        description="This worker's name when scaling out: its checkpoints live in "
        "<checkpoint dir>/workers/<name> (None: the host name, as a StatefulSet pod's).",
    )
    exchange_every_events: int = Field(
        default=1_000,
        ge=1,
        description="When scaling out, publish an update after learning this many events "
        "(the staleness bound in events).",
    )
    exchange_every_s: float = Field(
        default=1.0,
        gt=0,
        description="... or after this long with anything learned (the bound in seconds).",
    )
    base_part_bytes: int = Field(
        default=16 * 2**20,
        ge=1024,
        description="When scaling out, a refit of the group's model is published in parts of "
        "at most this many bytes (below kafka.updates_max_bytes).",
    )
    max_event_time_lead_s: float = Field(
        default=86_400.0,
        gt=0,
        description="When scaling out, a worker whose events are this far ahead (event time) "
        "of another worker's latest update waits for it to catch up (at most "
        "align_wait_s per chunk): a backlog is learned in step, as one trainer would.",
    )
    align_wait_s: float = Field(
        default=2.0,
        ge=0,
        description="The longest a worker waits for the group to catch up before learning "
        "its next chunk anyway (a slow or stopped worker delays the others by this only).",
    )
    take_messages: int = Field(
        default=512,
        ge=1,
        description="Most Kafka messages handed to the learner at once (an envelope holds "
        "many events; they are learned in micro-batches of stream.batch_size events).",
    )
    checkpoint_path: Path = Field(
        default_factory=lambda: _default_cache_dir() / "trainer" / "trainer.ckpt"
    )
    checkpoint_every_events: int = Field(default=20_000, ge=1)
    checkpoint_every_seconds: float = Field(default=30.0, gt=0)
    checkpoint_keep: int = Field(
        default=3,
        ge=1,
        description="Checkpoints kept: the newest at checkpoint_path, the older ones beside it "
        "as <name>.<sequence>; an unreadable one is moved aside and the next newest restored.",
    )
    checkpoint_retry_s: float = Field(
        default=1.0,
        gt=0,
        description="First wait before a failed checkpoint write is tried again (doubling up "
        "to 30 s).",
    )
    checkpoint_give_up_s: float = Field(
        default=120.0,
        gt=0,
        description="A checkpoint that has failed for this long stops the trainer (exit 1); "
        "nothing past the last durable checkpoint is ever committed.",
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="SIGTERM to exit: the final checkpoint and commit within this bound (the "
        "Kubernetes grace period and compose stop_grace_period are larger).",
    )
    status_path: Path | None = Field(
        default=None, description="Write a small JSON status here after every batch."
    )
    data_dir: Path = Field(
        default_factory=lambda: _default_cache_dir() / "trainer" / "faust",
        description="Faust's working directory (its tables' data; one folder per app id).",
    )
    kafka_wait_s: float = Field(
        default=120.0,
        gt=0,
        description="How long the trainer waits for Kafka at start before it gives up (exit 1).",
    )
    http_host: str = Field(
        default="127.0.0.1", description="Address of the trainer's /metrics, /healthz, /readyz."
    )
    http_port: int = Field(
        default=8001, ge=0, le=65535, description="Port of the trainer's HTTP endpoints (0: any)."
    )
    sink: Literal["redis", "memory"] = Field(
        default="redis",
        description="Where top-K lists, user states, snapshots and metrics go.",
    )


class ReplaySettings(BaseModel):
    """The replay service: how it sends a dataset into Kafka and where it records progress."""

    state_dir: Path = Field(
        default_factory=lambda: _default_cache_dir() / "replay",
        description="Where each replay records how far it got (<dataset>-<topic>.json), so "
        "that --resume continues without gaps or duplicates.",
    )
    compression: Literal["lz4", "gzip", "snappy", "zstd"] | None = "lz4"
    linger_ms: int = Field(default=20, ge=0, description="Producer batching delay.")
    envelope_linger_ms: int = Field(
        default=20,
        ge=0,
        description="A paced replay sends a partly filled envelope once its first event has "
        "waited this long (events are never held back for more).",
    )
    batch_bytes: int = Field(default=256 * 1024, ge=1_024, description="Producer batch size.")

    def state_file(self, dataset: str, topic: str) -> Path:
        """Where the replay of ``dataset`` into ``topic`` records its progress."""
        return self.state_dir / f"{dataset}-{topic}.json"


class ApiSettings(BaseModel):
    """The HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(
        default=None,
        description="Key required in the X-API-Key header of POST /events and admin routes. "
        "Unset: those routes refuse every request (there is no default key).",
    )
    credentials_path: Path | None = Field(
        default=None,
        description="More API keys, each with a name: a directory of one key per file (a "
        "Kubernetes Secret mount, e.g. /etc/recsys/api-keys) or a file of `name: key` lines; "
        "read again every credentials_reload_s, so keys rotate without a restart.",
    )
    credentials_reload_s: float = Field(
        default=5.0, gt=0, description="How often credentials_path is read again."
    )
    events_rate_per_s: float = Field(
        default=100.0,
        ge=0,
        description="POST /events requests a second per API key (0: no limit); past it 429 "
        "with Retry-After.",
    )
    events_burst: int = Field(
        default=200, ge=1, description="Requests a key may send at once above the rate."
    )
    max_k: int = Field(default=100, ge=1, description="Largest k a request may ask for.")
    max_batch_events: int = Field(default=1_000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1_024)
    metadata_dataset: str | None = Field(
        default=None, description="Dataset whose item titles, years and genres to show."
    )
    user_state_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="User states kept in process, to serve when the cache is down.",
    )


class RedisSettings(BaseModel):
    """The Redis server of the top-K cache (AUTH and TLS go in the URL: rediss://user:pw@...)."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "recsys:"
    top_k_ttl_s: int = Field(default=7 * 86_400, ge=1, description="Expiry of a user's list.")
    user_state_ttl_s: int = Field(default=30 * 86_400, ge=1)
    series_length: int = Field(default=10_000, ge=1, description="Points of metrics kept.")
    socket_timeout_s: float = Field(default=2.0, gt=0)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Architecture and optimisation of the contextual NeuMF (``recsys_stream.model``)."""

    dim: int = 64
    context_length: int = 20
    context_decay: float = 0.85
    """Initial slot weights decay by this factor per step of age."""
    mlp_hidden: int = 64
    embedding_init: float = 0.1
    embedding_lr: float = 0.15
    """Adagrad step of the item tables."""
    user_lr: float = 0.02
    """Adagrad step of the user embeddings."""
    user_gate_init: float = 1.0
    popularity_horizons_days: Annotated[
        tuple[float | None, ...], BeforeValidator(_json_if_text)
    ] = (1.0, 7.0, None)
    """Half-lives of further popularity priors beside the learner's own
    (``popularity_half_life_days``; None: all-time counts). The ranking score adds each
    ``log(1 + count)`` with a learned weight that starts at 0: the stream decides which
    horizons matter."""
    weight_decay: float = 0.0
    """L2 penalty on the embedding rows a step touches (offline training needs it; the online
    learner sees each event once and does not)."""
    dense_lr: float = 0.01
    """Adam step of the dense parameters (slot weights, attention, MLP, prior weight)."""
    irrelevant_weight: float = 0.5
    """Weight of non-relevant events (rating < the stream's relevance threshold) in the ranking
    loss."""
    rating_weight: float = 1.0
    sampled_negatives: int = 1024
    """Negatives drawn per micro-batch for the softmax, besides the batch's own items."""
    negative_sampling_power: float = 0.75


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    """When and how the learner retrains."""

    every_events: int | None = 50_000
    """Start a retrain after this many events since the last one (None: never by count)."""
    every_seconds: float | None = None
    """Start a retrain after this much wall time since the last one (None: never by time)."""
    epochs: int = 2
    batch_size: int = 512
    where: Literal["process", "thread", "inline"] = "process"
    """``process``: in a child process while online learning goes on, without sharing its
    interpreter; ``thread``: in a thread of the learner's process; ``inline``: at once, online
    learning waiting (deterministic: for tests and tools)."""
    threads: int = 1
    """torch threads of a retrain in a process; online learning keeps the other cores."""


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    """Everything the online learner needs to know; see :class:`ModelConfig` for the model."""

    model: ModelConfig = field(default_factory=ModelConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    replay_capacity: int = 10_000
    """Past events kept in the replay reservoir."""
    replay_per_batch: int = 16
    """Past events mixed into every micro-batch."""
    popularity_half_life_days: float = 30.0
    item_shrinkage: float = 5.0
    user_shrinkage: float = 100.0
    device: str = "auto"
    """``cuda`` when available, else ``cpu`` ("auto"), or a torch device name."""
    threads: int | None = None
    """torch threads of online learning; None: the CPUs the process may use (its affinity,
    capped by a container's CPU limit: ``recsys_stream.learner.cpus``)."""
    seed: int = 0
    retained_memory_mb: int = 256
    """Freed memory (MB) the learner's process keeps for its next micro-batches instead of
    returning it to the kernel (glibc only; 0: the C library's defaults). Without it every
    step faults its tensors' pages in afresh (``recsys_stream.learner.allocator``)."""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"learner threads must be at least 1 (or unset), got {self.threads}")


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How a stream is cut into micro-batches and evaluated (embedded mode and trainer)."""

    batch_size: int = 512
    """Events per micro-batch; the learner scores a batch with the weights from before it."""
    k: int = 10
    window: int = 5_000
    """Relevant events in the sliding window of the windowed metrics."""
    baselines: bool = True
    """Evaluate MostPopular, RecentPopular and the co-occurrence kNN alongside."""
    relevance_threshold: float = RELEVANCE_THRESHOLD
    """Ratings at or above are relevant: evaluated for ranking, and weighted fully in the
    learner's ranking loss."""
    like_threshold: float = LIKE_THRESHOLD
    """Ratings at or above are likes, in the like/dislike confusion matrix."""


def _offline_learner() -> LearnerConfig:
    # Chosen on a validation cut (10%) of the 80% training part, never on the 20% test part:
    # L2 0.2 against 0.05 and 0.5 (validation RMSE 0.9147, 0.9219, 0.9196).
    return LearnerConfig(model=ModelConfig(weight_decay=0.2), user_shrinkage=5.0)


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    """Offline training: the same model, trained in epochs, with L2 (it revisits events)."""

    learner: LearnerConfig = field(default_factory=_offline_learner)
    epochs: int = 4
    batch_size: int = 256
    test_fraction: float = 0.2
    split_seed: int = 42
    negatives: int = 99
    k: int = 10
    whole_history: bool = False
    """Context of a held-out rating: all the user's training ratings (True), or only those
    before it in time (False; better on a validation cut of the 80%: RMSE 0.9147 vs 0.9185)."""


class Settings(BaseSettings):
    """Every setting of recsys-stream, grouped by component."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_",
        env_nested_delimiter="__",
        populate_by_name=True,
        extra="ignore",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one JSON object per line (for Kubernetes and log shippers).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    data: DataSettings = Field(default_factory=DataSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    offline: OfflineConfig = Field(default_factory=OfflineConfig)

    # Conventional variable names, folded into their sections by ``model_post_init``.
    data_dir_env: Path | None = Field(
        default=None, validation_alias=AliasChoices("RECSYS_DATA_DIR"), exclude=True
    )
    kafka_bootstrap_env: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"), exclude=True
    )
    redis_url_env: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL"), exclude=True
    )

    def model_post_init(self, __context: object) -> None:
        if self.data_dir_env is not None and self.data.data_dir is None:
            self.data.data_dir = self.data_dir_env
        if self.kafka_bootstrap_env and "bootstrap_servers" not in self.kafka.model_fields_set:
            self.kafka.bootstrap_servers = self.kafka_bootstrap_env
        if self.redis_url_env and "url" not in self.redis.model_fields_set:
            self.redis.url = self.redis_url_env
