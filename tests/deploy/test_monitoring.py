"""The dashboard and alerts: Grafana schema, structure, PromQL syntax, promtool rule tests.

No cluster needed. PromQL syntax is checked by promtool (each expression becomes a recording
rule); evaluation against real scraped data is tests/deploy/test_prometheus_dashboard.py.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from metrics import REGISTRY
from metrics import dgdr as _dgdr  # noqa: F401  (registers the dgdr_* families)

from .tools import (
    DATA,
    MONITORING,
    RUNTIME_METRICS,
    dashboard,
    dashboard_exprs,
    metric_names,
    promtool,
    run,
    substitute,
    variable_queries,
    walk_panels,
)

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "grafana-dashboard.schema.json").read_text())
    return data


def schema_errors(schema: dict[str, Any], dash: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(dash)
    ]


def test_derived_files_are_up_to_date() -> None:
    res = subprocess.run(
        [sys.executable, str(MONITORING / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, f"run deploy/monitoring/generate.py:\n{res.stderr}"


def test_dashboard_validates_against_grafana_schema(schema: dict[str, Any]) -> None:
    assert schema_errors(schema, dashboard()) == []


def test_schema_rejects_a_broken_dashboard(schema: dict[str, Any]) -> None:
    """The validator bites: a wrong type and an unknown top-level key are both reported."""
    bad = copy.deepcopy(dashboard())
    bad["panels"][1]["gridPos"]["w"] = "wide"
    bad["refresh"] = 5
    bad["__inputs"] = []
    errors = schema_errors(schema, bad)
    assert any(e.startswith("refresh") for e in errors), errors
    assert any("__inputs" in e for e in errors), errors
    assert any(e.startswith("panels/1") for e in errors), errors


def test_dashboard_structure() -> None:
    dash = dashboard()
    panels = list(walk_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel.get("type"), panel
        pos = panel["gridPos"]
        assert 0 < pos["w"] <= 24 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for tgt in panel["targets"]:
            assert tgt["expr"].strip(), panel["title"]
            assert tgt["datasource"] == panel["datasource"]


def test_dashboard_has_the_required_views() -> None:
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["includeAll"] is True
    exprs = " ".join(e for _, e in dashboard_exprs(dash))
    for needed in (
        "dgdr_status_phase",
        "dgdr_status_info",
        "dgdr_failures_total",
        "dgdr_profiling_duration_seconds_bucket",
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds_bucket",
        "workqueue_depth",
        "workqueue_queue_duration_seconds_bucket",
        "leader_election_master_status",
    ):
        assert needed in exprs, needed
    table = next(p for p in walk_panels(dash["panels"]) if p["type"] == "table")
    columns = json.dumps(table)
    for column in ("phase", "profiling_phase", "reason", "time in phase"):
        assert column in columns


def test_every_variable_used_is_defined() -> None:
    dash = dashboard()
    defined = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
    text = json.dumps(dash["panels"])
    used = set(re.findall(r"\$\{?(\w+)", text)) | set(re.findall(r"\[\[(\w+)\]\]", text))
    assert used - defined == set()


def _known_metrics() -> set[str]:
    known = set(RUNTIME_METRICS)
    for family in REGISTRY.collect():
        known.add(family.name + ("_total" if family.type == "counter" else ""))
    return known


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "rules.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_queries_use_only_metrics_the_project_exports() -> None:
    known = _known_metrics()
    used: dict[str, set[str]] = {}
    for where, expr in dashboard_exprs(dashboard()):
        used[where] = metric_names(expr)
    for rule in _rules():
        used[rule["alert"]] = metric_names(rule["expr"])
    for var, query in variable_queries(dashboard()):
        used[f"${var}"] = {query.split("(")[1].split(",")[0].strip()}
    unknown = {where: names - known for where, names in used.items() if names - known}
    assert unknown == {}
    assert all(used.values()), "every query selects at least one metric"


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool parses each expression (macros substituted) as a recording rule."""
    variables = {"job": "dgdr-controller", "namespace": ".*", "datasource": "prometheus"}
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": substitute(expr, variables)}
        for i, (_, expr) in enumerate(dashboard_exprs(dashboard()))
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run(promtool(), "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_promtool_catches_a_bad_expression(tmp_path: Path) -> None:
    """A Grafana macro left in is a parse error: the check above would see it."""
    path = tmp_path / "bad.yaml"
    rule = {"record": "x:y", "expr": "rate(up[$__rate_interval])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [rule]}]}))
    res = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode != 0


def test_promtool_check_rules() -> None:
    out = run(promtool(), "check", "rules", str(MONITORING / "rules.yaml"))
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_every_alert_has_a_runbook_and_severity() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        description = rule["annotations"]["description"]
        assert "What to" in description and len(description.splitlines()) >= 4, rule["alert"]


def test_promtool_unit_tests_cover_every_alert_firing_and_not() -> None:
    tests = yaml.safe_load((MONITORING / "tests" / "alerts_test.yaml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown not firing"


def test_promtool_test_rules() -> None:
    out = run(
        promtool(),
        "test",
        "rules",
        str(MONITORING / "tests" / "alerts_test.yaml"),
    )
    assert "SUCCESS" in out
