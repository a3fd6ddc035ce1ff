"""Prometheus and Grafana of the simulation: promtool on the config and the alerting rules, and
the dashboard's queries against the metrics the services export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO_ROOT
from tests.deploy.promql import dashboard_exprs, dashboard_metric_names, rule_metric_names

PROMETHEUS_CONFIG = REPO_ROOT / "deploy/prometheus/prometheus.yml"
RULES = REPO_ROOT / "deploy/prometheus/rules/recsys-stream.yml"
RULE_TESTS = REPO_ROOT / "deploy/prometheus/tests/recsys-stream.test.yml"
DASHBOARD = REPO_ROOT / "deploy/grafana/dashboards/recsys-stream.json"
DATASOURCES = REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
DASHBOARD_PROVIDERS = REPO_ROOT / "deploy/grafana/provisioning/dashboards/recsys-stream.yml"

# What the services export, by family name and type. The API's are registered in
# services/api/telemetry.py; the trainer's are those of the trainer-observability change.
# prometheus_client exposes a counter as <name>_total and a histogram as <name>_bucket, _sum
# and _count; a gauge keeps its name.
EXPORTED_METRICS: dict[str, str] = {
    # API
    "recsys_http_request_duration_seconds": "histogram",
    "recsys_http_requests": "counter",
    "recsys_recommendations": "counter",
    "recsys_cache_errors": "counter",
    "recsys_cache_hit_ratio": "gauge",
    "recsys_model_version": "gauge",
    "recsys_model_age_seconds": "gauge",
    "recsys_consumer_lag": "gauge",
    # trainer
    "recsys_trainer_events_consumed": "counter",
    "recsys_trainer_events_learned": "counter",
    "recsys_trainer_events_per_second": "gauge",
    "recsys_trainer_consumer_lag": "gauge",
    "recsys_trainer_freshness_seconds": "histogram",
    "recsys_trainer_dead_letters": "counter",
    "recsys_trainer_model_version": "gauge",
    "recsys_trainer_retrains": "counter",
    "recsys_trainer_checkpoint_age_seconds": "gauge",
    "recsys_trainer_checkpoint_duration_seconds": "histogram",
    "recsys_trainer_checkpoint_failures": "counter",
    "recsys_trainer_steps_skipped": "counter",
    "recsys_prequential_hr": "gauge",
    "recsys_prequential_ndcg": "gauge",
    "recsys_prequential_rmse": "gauge",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
EXPOSED_NAMES = frozenset(
    name + suffix for name, kind in EXPORTED_METRICS.items() for suffix in SUFFIXES[kind]
)


def _run(command: list[str], cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return document


def test_promtool_accepts_the_config_and_its_rules(promtool: Path) -> None:
    output = _run([str(promtool), "check", "config", str(PROMETHEUS_CONFIG)])
    assert "1 rule files found" in output, "the rule files were not found from the config"
    _run([str(promtool), "check", "rules", str(RULES)])


def test_the_alerts_fire_when_they_should(promtool: Path) -> None:
    _run([str(promtool), "test", "rules", str(RULE_TESTS)])


def test_prometheus_scrapes_every_trainer_and_the_api(
    prometheus: dict[str, Any], compose: dict[str, Any]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    services = compose["services"]
    trainer_port = int(services["trainer"]["environment"]["RECSYS_TRAINER__HTTP_PORT"])
    api_port = int(services["api"]["environment"]["RECSYS_API__PORT"])
    (dns,) = jobs["trainer"]["dns_sd_configs"]
    assert set(dns["names"]) == {"trainer", "trainer-gpu"}
    assert dns["type"] == "A"
    assert dns["port"] == trainer_port
    assert jobs["api"]["static_configs"] == [{"targets": [f"api:{api_port}"]}]
    for job in ("trainer", "api"):
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"


def test_every_metric_the_dashboard_uses_is_exported() -> None:
    used = dashboard_metric_names(DASHBOARD)
    assert len(used) >= 15, "the extraction found too little to be trusted"
    assert used <= EXPOSED_NAMES, f"not exported: {sorted(used - EXPOSED_NAMES)}"


def test_the_check_would_catch_a_misspelt_metric(tmp_path: Path) -> None:
    broken = tmp_path / "dashboard.json"
    broken.write_text(
        json.dumps({"panels": [{"targets": [{"expr": "rate(recsys_trainer_event_learned[1m])"}]}]})
    )
    assert dashboard_metric_names(broken) - EXPOSED_NAMES == {"recsys_trainer_event_learned"}


def test_every_metric_the_alerts_use_is_exported() -> None:
    used = rule_metric_names(RULES)
    # `up` is Prometheus' own series for each target.
    assert used - {"up"} <= EXPOSED_NAMES, f"not exported: {sorted(used - EXPOSED_NAMES)}"


def test_the_dashboard_covers_what_it_is_for(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(dashboard_exprs(DASHBOARD))
    for needed in (
        'recsys_prequential_hr{scope="window"}',  # the learner against the baselines
        "recsys_trainer_events_learned_total",
        "recsys_trainer_consumer_lag",
        "histogram_quantile(0.99, sum by (le) (rate(recsys_trainer_freshness_seconds_bucket",
        "recsys_trainer_dead_letters_total",
        "recsys_http_requests_total",
        "recsys_http_request_duration_seconds_bucket",
        "recsys_recommendations_total",
        'status=~"5.."',
        "recsys_cache_errors_total",
    ):
        assert needed in exprs, needed
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert "recsys_trainer_retrains_total" in annotations["Retrains"]["expr"]


def test_the_dashboard_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uid = datasource["uid"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"

    def walk(node: Any) -> None:
        # Every datasource reference (panels, targets, annotations) is by this uid, except
        # Grafana's own built-in annotation source.
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and source.get("type") != "grafana":
                assert source == {"type": "prometheus", "uid": uid}, node.get("title")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it(
    dashboard: dict[str, Any], compose: dict[str, Any]
) -> None:
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    mounts = {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in compose["services"]["grafana"]["volumes"]
    }
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert dashboard["uid"] == "recsys-stream"
