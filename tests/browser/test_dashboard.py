"""The dashboard in a real Chromium, over `recsys-stream simulate --serve` (the embedded mode).

One served simulation of the first 12,000 MovieLens 100K ratings (a full retrain every 5,000,
so the charts have model changes to mark) is shared by the module; each test opens its own
page. The figures the closing note asks for (page weight, time to first chart, click to the
updated list) are printed with ``-s`` and kept in ``figures.json`` beside the screenshots.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.browser.conftest import PageErrors, free_port, listed_ids, ml100k_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVENTS = 12_000
START_TIMEOUT_S = 240
LIST_TIMEOUT_MS = 30_000


@dataclass
class Served:
    """A served simulation: its process, its dashboard URL, what it printed."""

    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[Served]:
    data_dir = ml100k_dir()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "services.cli",
        "simulate",
        "--dataset",
        "ml-100k",
        "--data-dir",
        str(data_dir),
        "--max-events",
        str(EVENTS),
        "--retrain-every",
        "5000",
        "--device",
        "cpu",
        "--serve",
        "--port",
        str(port),
        "--out",
        str(tmp_path_factory.mktemp("run")),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RECSYS_API__HOST": "127.0.0.1", "TQDM_DISABLE": "1"},
    )
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Dashboard: "):
                ready.set()
        ready.set()  # the process ended: let the fixture see why

    reader = threading.Thread(target=read, name="simulate-output", daemon=True)
    reader.start()
    if not ready.wait(START_TIMEOUT_S) or process.poll() is not None:
        process.kill()
        pytest.fail("simulate --serve did not print its dashboard line:\n" + "\n".join(lines))
    dashboard = next(line for line in lines if line.startswith("Dashboard: "))
    url = dashboard.removeprefix("Dashboard: ").split(" ")[0]
    state = Served(process, url, lines, reader)
    yield state
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    (artifacts / "figures.json").write_text(json.dumps(state.figures, indent=2))
    print(f"\ndashboard figures: {json.dumps(state.figures)}")


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()


def _open(page: Page, served: Served) -> PageErrors:
    errors = PageErrors(page)
    page.goto(served.url)
    expect(page.locator("#chart-hr polyline[data-model=learner]")).to_have_count(1)
    return errors


def test_the_table_is_printed_before_the_dashboard_line(served: Served) -> None:
    text = "\n".join(served.lines)
    assert text.index("HR@10 as a multiple") < text.index("Dashboard: http://127.0.0.1:")
    assert served.lines[-1].endswith("(Ctrl-C to stop)")


def test_the_page_loads_without_console_errors(
    browser: Browser, served: Served, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    shipped: list[int] = []

    def count(request: Request) -> None:
        response = request.response()
        if response is not None and request.url.startswith(served.url):
            shipped.append(len(response.body()))

    page.on("requestfinished", count)
    errors = _open(page, served)
    first_chart_ms = int(page.evaluate("document.documentElement.dataset.firstChartMs"))
    page.screenshot(path=str(artifacts / "live.png"), full_page=True)
    context.close()
    assert errors.messages == []
    assert errors.failed == []
    weight = sum(
        len(Path(__file__).parents[2].joinpath("services/api/ui", name).read_bytes())
        for name in ("index.html", "app.js", "style.css")
    )
    served.figures["page_weight_bytes"] = weight
    served.figures["bytes_on_first_load"] = sum(shipped)
    served.figures["first_chart_ms"] = first_chart_ms
    assert weight < 40_000
    assert first_chart_ms < 10_000


def test_the_charts_draw_the_series_of_the_simulation(page: Page, served: Served) -> None:
    _open(page, served)
    status = page.request.get(served.url + "dashboard/status").json()
    series = status["series"]
    assert len(series["events"]) >= 3
    assert series["events"][-1] == EVENTS
    for chart, metric in (("chart-hr", "hr@10_window"), ("chart-ndcg", "ndcg@10_window")):
        drawn = page.evaluate(
            """(id) => {
                const svg = document.getElementById(id);
                const d = svg.dataset;
                return { scale: [+d.ymin, +d.ymax, +d.top, +d.bottom],
                  lines: [...svg.querySelectorAll('polyline')].map((p) => [p.dataset.model,
                    p.getAttribute('points').split(' ').map((xy) => +xy.split(',')[1])]) };
            }""",
            chart,
        )
        y0, y1, top, bottom = drawn["scale"]
        models = dict(drawn["lines"])
        assert set(models) == set(series["models"]), chart
        for name, ys in models.items():
            values = [v for v in series["models"][name][metric] if v is not None]
            read_back = [y0 + (bottom - y) / (bottom - top) * (y1 - y0) for y in ys]
            assert len(read_back) == len(values), (chart, name)
            # One pixel of the 158-pixel plot, plus the rounding to 0.1 px.
            tolerance = (y1 - y0) / (bottom - top) * 1.1
            assert all(abs(a - b) <= tolerance for a, b in zip(read_back, values, strict=True))
    # Retrains swapped in during the stream are marked on each chart.
    assert status["retrains"], status["series"]["model_version"]
    assert page.locator("#chart-hr line.retrain").count() == len(status["retrains"])
    expect(page.locator("#stat-events")).to_have_text(f"{status['live']['events']:,}")


def test_the_explorer_shows_the_titles_of_a_users_list(
    page: Page, served: Served, artifacts: Path
) -> None:
    _open(page, served)
    page.get_by_label("User id").fill("1")
    page.get_by_role("button", name="Show user").click()
    expect(page.locator("#recs li")).to_have_count(10)
    answer = page.request.get(served.url + "users/1/recommendations?k=10").json()
    titles = [f"{item['title']} ({item['year']})" for item in answer["items"]]
    expect(page.locator("#recs li button")).to_have_text(titles)
    expect(page.locator("#recs-source")).to_have_text("cache")
    expect(page.locator("#history li").first).to_contain_text("★")
    page.screenshot(path=str(artifacts / "explorer-user.png"), full_page=True)


def test_a_search_finds_star_wars_and_its_similar_movies(
    page: Page, served: Served, artifacts: Path
) -> None:
    _open(page, served)
    page.get_by_label("Find a movie").fill("star wars")
    page.get_by_label("Find a movie").press("Enter")
    result = page.locator("#results").get_by_role("button", name="Star Wars (1977)")
    expect(result).to_be_visible()
    result.click()
    expect(page.locator("#movie-title")).to_have_text("Star Wars (1977)")
    expect(page.locator("#similar li")).to_have_count(10)
    # Click through: a similar movie opens in its turn.
    similar = page.locator("#similar li button").first
    name = similar.inner_text()
    similar.click()
    expect(page.locator("#movie-title")).to_have_text(name)
    page.screenshot(path=str(artifacts / "explorer-movie.png"), full_page=True)


def test_rating_a_movie_changes_the_users_list(page: Page, served: Served, artifacts: Path) -> None:
    _open(page, served)
    page.get_by_label("User id").fill("92")
    page.get_by_label("User id").press("Enter")
    expect(page.locator("#recs li")).to_have_count(10)
    before = listed_ids(page)
    # The list's first movie, rated: the model learns it, and a rated movie leaves the list.
    first = page.locator("#recs li button").first
    rated = first.inner_text()
    first.click()
    page.get_by_role("button", name="Rate", exact=True).click()
    result = page.locator("#rate-result[data-click-to-list-ms]")
    expect(result).to_be_visible(timeout=LIST_TIMEOUT_MS)
    after = listed_ids(page)
    assert after != before
    assert before[0] not in after
    expect(page.locator("#history li").first).to_contain_text(rated)
    # The live view counts the posted event, and times it from acceptance to the new list.
    expect(page.locator("#stat-events")).to_have_text(f"{EVENTS + 1:,}")
    expect(page.locator("#stat-fresh")).to_contain_text(" / ")
    milliseconds = int(result.get_attribute("data-click-to-list-ms") or "0")
    served.figures["click_to_list_ms_embedded"] = milliseconds
    page.screenshot(path=str(artifacts / "rated.png"), full_page=True)
    assert 0 < milliseconds < LIST_TIMEOUT_MS


def test_a_write_without_the_pages_header_is_refused(page: Page, served: Served) -> None:
    _open(page, served)
    status = page.evaluate(
        """async () => (await fetch('/events', { method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ user_id: 1, item_id: 50, rating: 5 }) })).status"""
    )
    assert status == 403


def test_the_page_is_usable_with_the_keyboard_and_its_controls_have_labels(
    page: Page, served: Served
) -> None:
    _open(page, served)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((c) => !c.labels.length && !c.getAttribute('aria-label'))
            .map((c) => c.id || c.outerHTML)"""
    )
    assert unlabelled == []
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('button')]
            .filter((b) => !b.textContent.trim() && !b.getAttribute('aria-label'))
            .map((b) => b.outerHTML)"""
    )
    assert nameless == []
    assert page.evaluate("document.documentElement.lang") == "en"
    charts = page.locator("svg.chart[role=img][aria-labelledby]")
    expect(charts).to_have_count(3)
    # From the top of the page, Tab reaches the user field; typing and Enter show the user,
    # and Tab then reaches a title of their list, which Enter opens.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "user-id":
            break
    assert page.evaluate("document.activeElement.id") == "user-id"
    page.keyboard.type("3")
    page.keyboard.press("Enter")
    expect(page.locator("#recs li")).to_have_count(10)
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#recs') !== null"):
            break
    title = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    expect(page.locator("#movie-title")).to_have_text(title)


def test_sigterm_stops_the_served_simulation_cleanly(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=60) == 0, "\n".join(served.lines[-20:])
    assert served.reader is not None
    served.reader.join(timeout=10)
    assert any(line.startswith("stopped; ") for line in served.lines[-3:]), served.lines[-5:]
