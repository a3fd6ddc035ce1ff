"""The ``recsys-stream`` command line: the composition root that wires the core to its adapters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from tqdm import tqdm

from recsys_stream.data import DatasetError, load_dataset_from_settings
from recsys_stream.eventlog import InMemoryEventLog, LogConsumer
from recsys_stream.events import EventBatch, RatingEvent, decode, encode
from recsys_stream.settings import Settings

app = typer.Typer(
    help="recsys-stream: a streaming, online-learning recommender.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """recsys-stream: a streaming, online-learning recommender."""


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder holding dataset folders named as GroupLens names them (ml-100k/, ...). "
        "Defaults to RECSYS_DATA_DIR.",
    ),
]


def _settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings.data.data_dir = data_dir
    return settings


@app.command()
def simulate(
    dataset: Annotated[str, typer.Option(help="MovieLens variant, e.g. ml-100k.")] = "ml-100k",
    data_dir: DataDirOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Events per micro-batch.")] = 1024,
) -> None:
    """Replay a dataset in timestamp order through the embedded event log."""
    settings = _settings(data_dir)
    try:
        data = load_dataset_from_settings(dataset, settings)
    except DatasetError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    log = InMemoryEventLog(partitions=1)
    ratings = data.ratings
    started = time.perf_counter()
    for row in ratings.itertuples(index=False):
        event = RatingEvent(
            int(row.user_id), int(row.item_id), float(row.rating), int(row.timestamp)
        )
        log.append(encode(event), key=str(event.user_id).encode())
    consumer = LogConsumer(log)
    users: set[int] = set()
    items: set[int] = set()
    histogram: dict[float, int] = {}
    with tqdm(total=len(ratings), unit="ev", desc=f"replay {dataset}") as progress:
        while records := consumer.poll(batch_size):
            batch = EventBatch.from_events(decode(record.value) for record in records)
            users.update(batch.user_ids.tolist())
            items.update(batch.item_ids.tolist())
            for value, count in zip(*np.unique(batch.ratings, return_counts=True), strict=True):
                histogram[float(value)] = histogram.get(float(value), 0) + int(count)
            progress.update(len(batch))
    elapsed = time.perf_counter() - started
    span_days = (ratings.timestamp.iloc[-1] - ratings.timestamp.iloc[0]) / 86_400
    typer.echo(f"events      {len(ratings):,} in {elapsed:.2f} s ({len(ratings) / elapsed:,.0f}/s)")
    typer.echo(f"users       {len(users):,}")
    typer.echo(f"items       {len(items):,}")
    typer.echo(f"time span   {span_days:,.0f} days")
    typer.echo("ratings     " + "  ".join(f"{k:g}: {v:,}" for k, v in sorted(histogram.items())))


if __name__ == "__main__":
    app()
