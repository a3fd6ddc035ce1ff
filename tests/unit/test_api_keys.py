"""API keys with names, rotated from a file or a Secret-like directory without a restart, a
rate limit per key on ``POST /events``, and no key in any answer or log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys_stream.events import InMemoryEventLog
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import ApiSettings, Settings
from services.api.app import create_app
from services.api.keys import KeyRing, RateLimiter, read_keys
from services.publishers import EventLogPublisher

EVENT = {"user_id": 1, "item_id": 2, "rating": 4.0}
ALPHA, BETA = "alpha-7f3c9e1d2b", "beta-0a4d8c6e5f"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _client(**api: object) -> Iterator[TestClient]:
    app = create_app(
        Settings(api=ApiSettings(**api)),  # type: ignore[arg-type]
        InMemorySink(),
        EventLogPublisher(InMemoryEventLog()),
    )
    with TestClient(app) as client:
        yield client


def _post(client: TestClient, key: str) -> int:
    return client.post("/events", json=EVENT, headers={"X-API-Key": key}).status_code


def test_a_directory_of_keys_is_read_by_name_skipping_kubernetes_files(tmp_path: Path) -> None:
    (tmp_path / "replay").write_text(ALPHA + "\n")
    (tmp_path / "partner").write_text(BETA)
    (tmp_path / "..data").mkdir()
    (tmp_path / ".hidden").write_text("ignored")
    assert [key.name for key in read_keys(tmp_path)] == ["partner", "replay"]
    assert ALPHA not in repr(read_keys(tmp_path))


def test_a_file_of_keys_has_one_named_key_a_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# rotated monthly\nreplay: {ALPHA}\n\n{BETA}\n")
    assert [key.name for key in read_keys(keys)] == ["replay", "line-4"]


def test_several_named_keys_write_and_others_are_refused(tmp_path: Path) -> None:
    (tmp_path / "replay").write_text(ALPHA)
    (tmp_path / "partner").write_text(BETA)
    for client in _client(api_key=SecretStr("env-key-1234"), credentials_path=tmp_path):
        assert _post(client, ALPHA) == 202
        assert _post(client, BETA) == 202
        assert _post(client, "env-key-1234") == 202
        refused = client.post("/events", json=EVENT, headers={"X-API-Key": ALPHA + "x"})
        assert refused.status_code == 403
        assert ALPHA not in refused.text


def test_keys_rotate_without_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "old").write_text(ALPHA)
    ring = KeyRing(ApiSettings(credentials_path=tmp_path, credentials_reload_s=5.0), clock)
    assert ring.identify(ALPHA) == "old"
    (tmp_path / "new").write_text(BETA)
    (tmp_path / "old").unlink()
    clock.now = 4.9
    assert ring.identify(BETA) is None  # not read again yet
    clock.now = 5.0
    assert ring.identify(BETA) == "new"
    assert ring.identify(ALPHA) is None  # revoked


def test_an_unreadable_key_file_keeps_the_keys_last_read(tmp_path: Path) -> None:
    clock = Clock()
    keys = tmp_path / "keys"
    keys.write_text(f"replay: {ALPHA}\n")
    ring = KeyRing(ApiSettings(credentials_path=keys, credentials_reload_s=1.0), clock)
    assert ring.identify(ALPHA) == "replay"
    keys.unlink()
    clock.now = 2.0
    assert ring.identify(ALPHA) == "replay"


def test_the_api_reads_rotated_keys_while_it_runs(tmp_path: Path) -> None:
    (tmp_path / "old").write_text(ALPHA)
    for client in _client(credentials_path=tmp_path, credentials_reload_s=0.01):
        assert _post(client, ALPHA) == 202
        (tmp_path / "new").write_text(BETA)
        (tmp_path / "old").unlink()
        deadline = time.monotonic() + 10
        while _post(client, BETA) != 202:  # read again within credentials_reload_s
            assert time.monotonic() < deadline
        assert _post(client, ALPHA) == 403


def test_post_events_is_rate_limited_per_key_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / "replay").write_text(ALPHA)
    (tmp_path / "partner").write_text(BETA)
    for client in _client(credentials_path=tmp_path, events_rate_per_s=0.5, events_burst=2):
        assert [_post(client, ALPHA) for _ in range(2)] == [202, 202]
        limited = client.post("/events", json=EVENT, headers={"X-API-Key": ALPHA})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["Retry-After"] == "2"
        assert _post(client, BETA) == 202  # another key has its own budget


def test_the_token_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2.0, burst=1, clock=clock)
    assert limiter.take("k") is None
    assert limiter.take("k") == pytest.approx(0.5)
    clock.now = 0.5
    assert limiter.take("k") is None
    assert RateLimiter(0, 1).take("k") is None  # 0: no limit


def test_no_key_reaches_a_log_line_or_an_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "replay").write_text(ALPHA)
    caplog.set_level(logging.DEBUG)
    for client in _client(api_key=SecretStr(BETA), credentials_path=tmp_path):
        answers = [
            client.post("/events", json=EVENT, headers={"X-API-Key": key})
            for key in (ALPHA, BETA, "wrong" + ALPHA)
        ]
        answers += [client.get(path) for path in ("/metrics", "/readyz", "/openapi.json")]
        for answer in answers:
            assert ALPHA not in answer.text
            assert BETA not in answer.text
    assert ALPHA not in caplog.text
    assert BETA not in caplog.text


def test_the_dashboard_asks_for_a_key_when_only_the_credentials_file_has_keys(
    tmp_path: Path,
) -> None:
    (tmp_path / "replay").write_text(ALPHA)
    for client in _client(credentials_path=tmp_path):
        assert client.get("/dashboard/status").json()["writes"] == "key"
    for client in _client(credentials_path=tmp_path / "absent"):
        assert client.get("/dashboard/status").json()["writes"] == "disabled"
