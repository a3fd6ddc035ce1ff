"""The command line, in process (typer's runner): help, errors without tracebacks, a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["simulate"], ["evaluate-offline"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


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
