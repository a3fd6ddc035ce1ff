"""The command line, in process (typer's runner): help, errors without tracebacks, a run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recsys_stream.data import generate_synthetic
from recsys_stream.settings import Settings
from services.cli import app

runner = CliRunner()


COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # one line: help text wraps at any width


def test_the_commands_are_all_listed() -> None:
    assert set(COMMANDS) == {
        "api",
        "evaluate-offline",
        "produce",
        "replay",
        "simulate",
        "trainer",
    }
    top = _help()
    for command in COMMANDS:
        assert command in top


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_real_defaults(command: str) -> None:
    text = _help(command)
    assert "Usage" in text
    assert "--no-no-" not in text
    assert "settings]" not in text
    # What was left when rich markup swallowed "[default: ...]": "Events per micro-batch ."
    assert not re.search(r"\s\.(\s|$)", text)
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    for option in click_command.params:
        if option.is_flag or option.default is None or not option.show_default:
            continue
        shown = option.show_default if isinstance(option.show_default, str) else option.default
        assert f"[default: {shown}" in text or f"[default: ({shown})" in text, option.name


def test_defaults_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help("simulate")
    defaults = Settings()
    assert f"Events per micro-batch. [default: {defaults.stream.batch_size};" in text
    assert f"[default: {defaults.learner.retrain.every_events};" in text
    assert "--retrain / --no-retrain" in text
    assert f"API port with --serve. [default: {defaults.api.port}]" in text
    assert f"Kafka topic. [default: {defaults.kafka.topic}]" in _help("replay")


def test_a_missing_dataset_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_DATA__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_DATA__ALLOW_DOWNLOAD", "false")
    result = runner.invoke(app, ["simulate", "--dataset", "ml-1m", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "ml-1m" in result.output
    assert "RECSYS_DATA_DIR" in result.output
    assert "Traceback" not in result.output


def test_simulate_writes_a_run_directory(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "ml-latest-small"
    folder.mkdir(parents=True)
    rows = ["userId,movieId,rating,timestamp"]
    rows += [
        f"{u},{(u * 7 + n) % 40 + 1},{1 + (u + n) % 5}.0,{1000 + 10 * n + u}"
        for u in range(1, 30)
        for n in range(20)
    ]
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f"{i},Movie {i} (1999),Drama\n" for i in range(1, 41))
    )
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--dataset",
            "ml-latest-small",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--no-retrain",
            "--device",
            "cpu",
            "--batch-size",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "HR@10" in result.output
    assert (out / "report.json").exists()
    assert (out / "summary.md").exists()


def test_simulate_runs_a_synthetic_stream_by_name(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--dataset",
            "synthetic:3k:users=60:items=150:seed=4",
            "--out",
            str(out),
            "--no-retrain",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3,000 events" in result.output
    assert (out / "report.json").exists()


def test_a_synthetic_name_that_cannot_be_read_is_one_clear_error() -> None:
    result = runner.invoke(app, ["simulate", "--dataset", "synthetic:1M:colours=3"])
    assert result.exit_code == 2
    assert "synthetic[:EVENTS|:PRESET]" in result.output
    assert "Traceback" not in result.output


def test_simulate_runs_a_file_of_ones_own_ratings(tmp_path: Path) -> None:
    ratings = generate_synthetic(3_000, n_users=60, n_items=150, seed=4).ratings
    path = tmp_path / "mine.csv"
    ratings.rename(columns={"timestamp": "time"}).to_csv(path, index=False)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["simulate", "--dataset", f"csv:{path}", "--out", str(out), "--no-retrain"],
    )
    assert result.exit_code == 0, result.output
    assert "3,000 events" in result.output
    assert (out / "report.json").exists()


def test_a_ratings_file_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("user,item,stars,time\n1,2,4,5\n")
    result = runner.invoke(app, ["simulate", "--dataset", f"csv:{path}"])
    assert result.exit_code == 2
    assert "no column for rating" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_dataset_name_is_one_clear_error() -> None:
    result = runner.invoke(app, ["simulate", "--dataset", "ml-3m"])
    assert result.exit_code == 2
    assert "unknown dataset 'ml-3m'" in result.output
    assert "csv:PATH" in result.output
    assert "Traceback" not in result.output
