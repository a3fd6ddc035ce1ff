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

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class RedisSettings(BaseModel):
    """The Redis server of the top-K cache (AUTH and TLS go in the URL: rediss://user:pw@...)."""

    url: str = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    """Every setting of recsys-stream, grouped by component."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_",
        env_nested_delimiter="__",
        populate_by_name=True,
        extra="ignore",
    )

    data: DataSettings = Field(default_factory=DataSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)

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
