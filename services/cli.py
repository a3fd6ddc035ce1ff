"""The ``recsys-stream`` command line: the composition root that wires the core to its adapters.

Every option's default is the value the settings give (``recsys_stream/settings.py``, from
``RECSYS_*`` variables), and ``--help`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
import uvicorn
from tqdm import tqdm

from recsys_stream.data import Dataset, DatasetError, load_dataset_from_settings
from recsys_stream.events import InMemoryEventLog
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import Settings
from services.logs import configure_logging, logging_config

if TYPE_CHECKING:
    from recsys_stream.report import RunReport

app = typer.Typer(
    help="recsys-stream: a streaming, online-learning recommender.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help text: rich markup would take "[...]" in a help string for a style tag.
    rich_markup_mode=None,
)

DEFAULTS = Settings()
"""The settings as the environment gives them: every option's default comes from here."""


LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]


@app.callback()
def main(
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines as text, or one JSON object per line.")
    ] = DEFAULTS.log_format,
    log_level: Annotated[LogLevel, typer.Option(help="Least severe level logged.")] = (
        DEFAULTS.log_level
    ),
) -> None:
    """recsys-stream: a streaming, online-learning recommender."""
    # Every command reads Settings() from the environment: the options reach it through it.
    os.environ["RECSYS_LOG_FORMAT"] = log_format
    os.environ["RECSYS_LOG_LEVEL"] = log_level
    configure_logging(Settings())


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder holding dataset folders named as GroupLens names them (ml-100k/, ...); "
        "searched before the download cache.",
        show_default="RECSYS_DATA_DIR, else none",
    ),
]
DatasetOption = Annotated[
    str,
    typer.Option(
        help="MovieLens variant (ml-100k, ml-1m, ...), a synthetic stream "
        "(synthetic[:EVENTS][:users=N][:items=N][:seed=N], e.g. synthetic:1M:items=60000), "
        "or a file of your own ratings, csv:PATH (columns user_id, item_id, rating, "
        "timestamp; docs/data.md)."
    ),
]


def _settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings.data.data_dir = data_dir
    return settings


@app.command()
def simulate(
    dataset: DatasetOption = "ml-100k",
    data_dir: DataDirOption = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Events per micro-batch.")
    ] = DEFAULTS.stream.batch_size,
    retrain_every: Annotated[
        int | None,
        typer.Option(min=1, help="Full retrain every this many events (none: never by count)."),
    ] = DEFAULTS.learner.retrain.every_events,
    retrain: Annotated[
        bool, typer.Option("--retrain/--no-retrain", help="Run periodic full retrains.")
    ] = True,
    device: Annotated[
        str, typer.Option(help="cuda, cpu, or auto (cuda when there is one).")
    ] = DEFAULTS.learner.device,
    seed: Annotated[int, typer.Option(help="Random seed of the learner.")] = DEFAULTS.learner.seed,
    max_events: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many events (none: all).")
    ] = None,
    baselines: Annotated[
        bool, typer.Option(help="Evaluate the protocol's baselines in the same run.")
    ] = DEFAULTS.stream.baselines,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory.", show_default="runs/<dataset>-<date>-<time>"),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint file, written every --checkpoint-every events and at the end."
        ),
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(min=1)] = None,
    resume: Annotated[bool, typer.Option(help="Continue from --checkpoint if it exists.")] = False,
    serve: Annotated[
        bool,
        typer.Option(
            help="Serve the HTTP API and the dashboard (at /) from the in-memory cache while "
            "the simulation runs; after the table, keep serving and learning posted events "
            "until Ctrl-C or SIGTERM. The dashboard may post ratings from loopback without a "
            "key. --no-serve: exit after the table."
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="API port with --serve.")] = DEFAULTS.api.port,
) -> None:
    """Replay a dataset in timestamp order through the embedded event log into the learner,
    evaluating it prequentially against the baselines, and write a run directory."""
    from recsys_stream.reporting import comparison_table, write_run
    from recsys_stream.stream import SimulationConfig, run_simulation

    settings = _settings(data_dir)
    learner = settings.learner
    every = retrain_every if retrain else None
    learner = dataclasses.replace(
        learner,
        retrain=dataclasses.replace(
            learner.retrain,
            every_events=every,
            every_seconds=learner.retrain.every_seconds if retrain else None,
        ),
        device=device,
        seed=seed,
    )
    stream = dataclasses.replace(settings.stream, batch_size=batch_size, baselines=baselines)
    config = SimulationConfig(
        learner=learner,
        stream=stream,
        max_events=max_events,
        checkpoint_path=checkpoint,
        checkpoint_every_events=checkpoint_every,
        resume=resume,
    )
    data = _load(dataset, settings)
    total = len(data.ratings) if max_events is None else min(max_events, len(data.ratings))
    sink = InMemorySink()
    log = InMemoryEventLog(partitions=1)
    follow = threading.Event() if serve else None
    served = _serve_embedded(settings, sink, log, data, port) if serve else None
    # A ratings file's path would nest folders: keep the name's letters, digits and dots.
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", dataset).strip("-")
    run_dir = out or Path("runs") / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    shown: list[RunReport] = []

    def show(report: RunReport) -> None:
        write_run(report, run_dir)
        typer.echo("")
        typer.echo(comparison_table(report))
        typer.echo(
            f"\n{report.prequential.events:,} events in {report.wall_seconds:.1f} s "
            f"({report.events_per_second:,.0f} events/s, batch size {report.batch_size}, "
            f"device {report.device}); run directory: {run_dir}"
        )
        shown.append(report)

    with tqdm(total=total, unit="ev", desc=f"simulate {dataset}", dynamic_ncols=True) as bar:

        def progress(done: int, live: dict[str, float]) -> None:
            bar.update(min(done, total) - bar.n)
            bar.set_postfix_str(f"HR@10 {live['hr@10']:.4f}", refresh=False)

        def replayed(report: RunReport) -> None:
            bar.close()
            show(report)
            if served is not None:
                typer.echo(f"\nDashboard: {served.address}/ (Ctrl-C to stop)")

        try:
            with _interrupted_by_sigterm() if serve else contextlib.nullcontext():
                report = run_simulation(
                    data,
                    config,
                    sink=sink,
                    progress=progress,
                    log=log,
                    follow_until=follow,
                    on_replayed=replayed,
                )
        finally:
            if served is not None:
                served.stop()
    if not shown:
        show(report)
    else:
        after = report.prequential.events - shown[0].prequential.events
        typer.echo(f"stopped; {after:,} posted events learned after the replay")


@app.command("evaluate-offline")
def evaluate_offline(
    dataset: DatasetOption = "ml-100k",
    data_dir: DataDirOption = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Training epochs over the 80%.")
    ] = DEFAULTS.offline.epochs,
    ranking: Annotated[
        bool, typer.Option(help="Also run leave-one-out HR@10 / NDCG@10 (a second fit).")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
) -> None:
    """Offline protocols for comparison with published numbers: random 80/20 RMSE, MAE and
    like/dislike matrix; leave-one-out HR@10 and NDCG@10 (99 sampled negatives and full)."""
    import orjson

    from recsys_stream.evaluation import ranking_evaluation, rating_evaluation

    settings = _settings(data_dir)
    config = dataclasses.replace(settings.offline, epochs=epochs)
    data = _load(dataset, settings)
    typer.echo(f"fitting on 80% of {dataset} ({config.epochs} epochs) ...")
    rating = rating_evaluation(data, config, like_threshold=settings.stream.like_threshold)
    figures: dict[str, object] = {"dataset": dataset, "rating": rating.to_dict()}
    confusion = rating.confusion
    typer.echo(
        f"RMSE {rating.rmse:.4f}  MAE {rating.mae:.4f}  like accuracy "
        f"{rating.like_accuracy:.4f}  (tp {confusion.tp:,} fp {confusion.fp:,} "
        f"fn {confusion.fn:,} tn {confusion.tn:,})"
    )
    if ranking:
        typer.echo("fitting leave-one-out ...")
        loo = ranking_evaluation(data, config)
        figures["ranking"] = loo.to_dict()
        typer.echo(
            f"HR@{loo.k} {loo.hr_sampled:.4f}  NDCG@{loo.k} {loo.ndcg_sampled:.4f} "
            f"({loo.negatives} sampled negatives);  HR@{loo.k} {loo.hr_full:.4f}  "
            f"NDCG@{loo.k} {loo.ndcg_full:.4f} (full ranking)"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


@app.command()
def replay(
    dataset: DatasetOption = "ml-100k",
    data_dir: DataDirOption = None,
    topic: Annotated[str, typer.Option(help="Kafka topic.")] = DEFAULTS.kafka.topic,
    partitions: Annotated[
        int, typer.Option(min=1, help="Partitions when the topic is created.")
    ] = DEFAULTS.kafka.partitions,
    speed: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Event-time seconds per wall second (3600: an hour a second); none: as fast "
            "as the broker takes them, unless --rate.",
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.0, help="Events per second (none: no pacing).")
    ] = None,
    max_speed: Annotated[
        bool, typer.Option(help="As fast as the broker takes them (the default pacing).")
    ] = False,
    start_index: Annotated[int, typer.Option(min=0, help="First event (stream order).")] = 0,
    stop_index: Annotated[
        int | None, typer.Option(min=0, help="Stop before this event (none: the end).")
    ] = None,
    start_time: Annotated[
        str | None, typer.Option(help="Skip events before this time (ISO 8601 or Unix s).")
    ] = None,
    stop_time: Annotated[
        str | None, typer.Option(help="Stop at this event time (ISO 8601 or Unix s).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue where the last replay of this dataset stopped.")
    ] = False,
    state_file: Annotated[
        Path | None,
        typer.Option(
            help="Where progress is recorded.",
            show_default=f"{DEFAULTS.replay.state_dir}/<dataset>-<topic>.json",
        ),
    ] = None,
) -> None:
    """Stream a dataset's ratings in timestamp order into Kafka, keyed by user."""
    from replay.service import DeliveryError, ReplayConfig, Replayer
    from services.topics import BrokerUnavailableError

    settings = _settings(data_dir)
    if max_speed and (speed is not None or rate is not None):
        raise typer.BadParameter("--max-speed excludes --speed and --rate")
    if speed is not None and rate is not None:
        raise typer.BadParameter("choose one of --speed and --rate")
    settings.kafka.topic = topic
    settings.kafka.partitions = partitions
    config = ReplayConfig.from_settings(
        settings,
        speed=speed,
        rate=rate,
        start_index=start_index,
        stop_index=stop_index,
        start_time=_event_time(start_time),
        stop_time=_event_time(stop_time),
        state_file=state_file or settings.replay.state_file(dataset, topic),
        resume=resume,
    )
    data = _load(dataset, settings)
    replayer = Replayer(config, dataset)
    total = (stop_index or len(data.ratings)) - start_index
    with tqdm(total=total, unit="ev", desc=f"replay {dataset}", dynamic_ncols=True) as bar:

        def progress(sent: int, event_time: float) -> None:
            bar.update(sent - bar.n)
            if event_time:
                clock = time.strftime("%Y-%m-%d %H:%M", time.gmtime(event_time))
                bar.set_postfix_str(f"event time {clock}", refresh=False)

        try:
            # SIGTERM (Kubernetes, compose) and Ctrl-C ask it to stop between two events:
            # flushed, progress saved. (An exception raised by the handler could land inside
            # the outbox, between taking a buffer and sending it, and lose those events.)
            with _stopping_on_signals(replayer.stop):
                summary = replayer.run(data.ratings, on_progress=progress)
        except (BrokerUnavailableError, DeliveryError) as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(3) from None
    typer.echo(
        f"sent {summary.sent:,} ({summary.acknowledged:,} acknowledged) to {topic} in "
        f"{summary.seconds:.1f} s ({summary.events_per_second:,.0f} events/s); "
        f"skipped {summary.skipped_bad_rows:,} bad rows, "
        f"{summary.skipped_already_sent:,} already sent; next index {summary.next_index:,}"
    )
    for reason, count in summary.bad_row_reasons.items():
        typer.echo(f"  bad rows: {count:,} x {reason}", err=True)
    if summary.interrupted:
        typer.echo("interrupted: run again with --resume to continue", err=True)
        raise typer.Exit(130)


@app.command()
def produce(
    user: Annotated[int, typer.Option(help="User id.")],
    item: Annotated[int, typer.Option(help="Item id.")],
    rating: Annotated[float, typer.Option(help="Rating (0.5-5).")],
    timestamp: Annotated[
        float | None, typer.Option(help="Unix seconds.", show_default="now")
    ] = None,
    topic: Annotated[str, typer.Option(help="Kafka topic.")] = DEFAULTS.kafka.topic,
) -> None:
    """Send one rating event to the ratings topic (for manual tests), through the same
    publisher as the API's POST /events."""
    from recsys_stream.events import EventValidationError, RatingEvent
    from recsys_stream.serving import PublishError
    from services.publishers import KafkaEventPublisher

    settings = Settings()
    settings.kafka.topic = topic
    try:
        event = RatingEvent(
            user,
            item,
            rating,
            timestamp if timestamp is not None else round(time.time(), 3),
            event_id=str(uuid.uuid4()),
            source="cli",
        )
    except EventValidationError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def send() -> None:
        publisher = KafkaEventPublisher(settings.kafka, timeout_s=15.0)
        try:
            await publisher.publish([event])
        finally:
            await publisher.close()

    try:
        asyncio.run(send())
    except PublishError as exc:
        typer.secho(
            f"cannot send to Kafka at {settings.kafka.bootstrap_servers}: {exc}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(3) from None
    typer.echo(f"sent {event.event_id} to {topic}")


@app.command()
def trainer() -> None:
    """Run the Faust trainer: consume the ratings topic, learn, publish; serve /metrics,
    /healthz and /readyz (settings from the environment)."""
    from services.topics import BrokerUnavailableError
    from services.trainer.app import run_worker

    try:
        run_worker(Settings())
    except BrokerUnavailableError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(3) from None


API_SHUTDOWN_S = 10
"""Longest wait for the requests under way when the API is stopped (SIGTERM, SIGINT)."""


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULTS.api.host,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULTS.api.port,
) -> None:
    """Serve the HTTP API over Redis (the trainer's cache) and Kafka (events)."""
    from services.api.app import create_app
    from services.cache.redis_cache import RedisCache
    from services.publishers import KafkaEventPublisher

    settings = Settings()
    metadata = (
        _load(settings.api.metadata_dataset, settings) if settings.api.metadata_dataset else None
    )
    application = create_app(
        settings,
        RedisCache(settings.redis),
        KafkaEventPublisher(settings.kafka),
        metadata.items if metadata is not None else None,
        ratings=metadata.ratings if metadata is not None else None,
    )
    # uvicorn shuts down on SIGTERM or SIGINT, then raises the signal again with the handler it
    # found:
    # with this one the process then exits 0 (a clean stop), not "killed by SIGTERM".
    signal.signal(signal.SIGTERM, _exit_zero)
    signal.signal(signal.SIGINT, _exit_zero)  # the image's STOPSIGNAL
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=logging_config(settings),
        log_level=settings.log_level,
        access_log=False,
        # SIGTERM: requests under way get this long, then the process exits (0).
        timeout_graceful_shutdown=API_SHUTDOWN_S,
    )


def _exit_zero(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _event_time(value: str | None) -> float | None:
    """Unix seconds from a number or an ISO 8601 date/time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither Unix seconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclasses.dataclass(frozen=True)
class _Served:
    """The embedded API's server, its thread, and the address a browser on this machine
    opens."""

    server: uvicorn.Server
    thread: threading.Thread
    address: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _serve_embedded(
    settings: Settings,
    sink: InMemorySink,
    log: InMemoryEventLog,
    data: Dataset,
    port: int,
) -> _Served:
    """The API and the dashboard on the in-memory cache and event log, in a background
    thread; the page may post ratings from loopback without a key."""
    from services.api.app import create_app
    from services.publishers import EventLogPublisher

    application = create_app(
        settings,
        sink,
        EventLogPublisher(log),
        data.items,
        ratings=data.ratings,
        loopback_writes=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            application, host=settings.api.host, port=port, log_level="warning", access_log=False
        )
    )
    # Bound here, before the replay: a port already taken stops the command with one clear
    # line, rather than leaving it to print a dashboard address that nothing serves.
    host = settings.api.host
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        typer.secho(
            f"cannot serve on {host}:{port}: {exc.strerror} (another port: --port N)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(3) from None
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="api", daemon=True
    )
    thread.start()
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    address = f"http://{shown_host}:{port}"
    typer.echo(f"API on {address} (dashboard: {address}/, docs: {address}/docs)")
    return _Served(server, thread, address)


@contextlib.contextmanager
def _interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does: a served simulation stops the same
    clean way under a process manager (the default SIGTERM would skip every cleanup)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stopping_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (which must only set a flag) instead of raising."""

    def handler(_signum: int, _frame: object) -> None:
        stop()

    numbers = (signal.SIGTERM, signal.SIGINT)
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


def _load(dataset: str, settings: Settings) -> Dataset:
    """Load a dataset or exit with its one clear error message (no traceback)."""
    try:
        return load_dataset_from_settings(dataset, settings)
    except DatasetError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
