"""Paths and external tools the deploy tests share: promtool, helm, kustomize (via kubectl)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MONITORING = DEPLOY / "monitoring"
CERT_MANAGER = DEPLOY / "cert-manager"
CHART = DEPLOY / "helm" / "dgdr-controller"
DATA = Path(__file__).resolve().parent / "data"
ENSURE_HELM = Path(__file__).resolve().parent / "ensure-helm.sh"

# controller-runtime compatible names (its exact metric names) that metrics/runtime.py and
# metrics/rest.py define; the dashboard and alerts may use these and this project's dgdr_* ones.
RUNTIME_METRICS = frozenset(
    {
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds",
        "controller_runtime_max_concurrent_reconciles",
        "controller_runtime_active_workers",
        "workqueue_depth",
        "workqueue_adds_total",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
        "workqueue_retries_total",
        "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds",
        "leader_election_master_status",
        "rest_client_requests_total",
    }
)

# Grafana's macros and this dashboard's variables, replaced before PromQL reaches Prometheus.
MACROS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise AssertionError(
            "promtool is missing: install the Debian package 'prometheus' "
            "(apt-get install -y prometheus; hack/test.sh does it)"
        )
    return path


def helm() -> str:
    """helm from $HELM, PATH or the project's cache; built from its Go module when missing."""
    for candidate in (os.environ.get("HELM"), shutil.which("helm")):
        if candidate and Path(candidate).is_file():
            return candidate
    res = subprocess.run(
        ["bash", str(ENSURE_HELM)], capture_output=True, text=True, timeout=1200, check=False
    )
    path = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    if res.returncode != 0 or not Path(path).is_file():
        raise AssertionError(f"could not build helm with {ENSURE_HELM}:\n{res.stderr[-2000:]}")
    return path


def run(*cmd: str, input: str | None = None, timeout: float = 120) -> str:
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return res.stdout


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return data


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title/refId, expr) for every query target, nested row panels included."""
    found = []
    for panel in walk_panels(dash.get("panels", [])):
        for tgt in panel.get("targets", []):
            found.append((f"{panel.get('title')}/{tgt.get('refId')}", tgt.get("expr", "")))
    return found


def variable_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, query) of query variables; label_values(...) is not PromQL."""
    out = []
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((var["name"], query))
    return out


LABEL_VALUES = re.compile(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*(\w+)\s*\)$")


def substitute(expr: str, variables: dict[str, str], rate_interval: str = "1m") -> str:
    """Grafana macros and variables ($x, ${x}, [[x]]) replaced, longest names first."""
    expr = expr.replace("$__rate_interval", rate_interval)
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for name in sorted(variables, key=len, reverse=True):
        value = variables[name]
        expr = expr.replace(f"${{{name}}}", value).replace(f"[[{name}]]", value)
        expr = re.sub(rf"\${name}\b", value, expr)
    return expr


PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)


def metric_names(expr: str) -> set[str]:
    """Metric families an expression selects: strings, grouping clauses, matchers and ranges
    removed, then every identifier that is not a function call or keyword."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        if match.group(1) not in PROMQL_KEYWORDS:
            names.add(match.group(1))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
