"""The metric names that PromQL expressions use, read back from the Grafana dashboard and the
Prometheus rules, so that tests can compare them with what the services export.

``dashboard_metric_names(path)`` is also meant for an integration test that scrapes the running
services and checks that every name the dashboard needs is exported.

>>> sorted(promql_metric_names(
...     'histogram_quantile(0.99, sum by (le, route) '
...     '(rate(recsys_http_request_duration_seconds_bucket{status=~"5.."}[$__rate_interval])))'
... ))
['recsys_http_request_duration_seconds_bucket']
>>> sorted(promql_metric_names('sum(changes(recsys_trainer_retrains_total[1m])) > 0 and up'))
['recsys_trainer_retrains_total', 'up']
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# Words of PromQL that look like metric names: operators, modifiers, grouping keywords.
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "start",
        "end",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# Not preceded by a word character or a dot: so not the unit of 5m, nor the exponent of 1e3.
# Not after a word character or a dot: not the unit of 5m, not the exponent of 1e3.
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (function names, label names, keywords, numbers
    with units and Grafana variables excluded)."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("1", text)
    text = _LABEL_MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue  # a function, or an operator word
        names.add(name)
    return names


def _dashboard_exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` string in a dashboard: panel targets, nested panels, annotations."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_exprs(item)


def dashboard_exprs(path: Path) -> list[str]:
    """The PromQL expressions of a Grafana dashboard JSON file."""
    return list(_dashboard_exprs(json.loads(path.read_text())))


def dashboard_metric_names(path: Path) -> set[str]:
    """The metric names (as exposed: ``_total``, ``_bucket``... included) a dashboard uses."""
    return {name for expr in dashboard_exprs(path) for name in promql_metric_names(expr)}


def rule_exprs(path: Path) -> list[str]:
    """The expressions of a Prometheus rule file (alerting and recording rules)."""
    document = yaml.safe_load(path.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def rule_metric_names(path: Path) -> set[str]:
    """The metric names a Prometheus rule file uses."""
    return {name for expr in rule_exprs(path) for name in promql_metric_names(expr)}
