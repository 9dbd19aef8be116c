"""Writes the monitoring files that are derived, so that each fact has one source.

- ``dashboard.json`` is built here from panel definitions (one place to change a query).
- ``rules.yaml`` is the ``spec.groups`` of ``prometheusrule.yaml``: the plain rules file form
  that ``promtool check rules`` / ``promtool test rules`` read.
- The Helm chart carries copies of both, and of the DGDR CRD in its ``crds/`` folder (Helm can
  only read files inside the chart).

Run ``python deploy/monitoring/generate.py`` after editing; ``--check`` exits 1 when a derived
file is out of date (the tests call it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "helm" / "dgdr-controller"
CHART_FILES = CHART / "files"
DGDR_CRD = "nvidia.com_dynamographdeploymentrequests.yaml"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
JOB = 'job=~"$job"'

Panel = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        **extra,
    }


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {"unit": unit}
    if custom:
        defaults["custom"] = custom
    result: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def row(title: str) -> Panel:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
    }


TS_OPTIONS = {
    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    "tooltip": {"mode": "multi", "sort": "desc"},
}
STACKED = {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 30, "lineWidth": 1}


def lifecycle_panels() -> list[Panel]:
    return [
        row("DGDR lifecycle"),
        panel(
            "stat",
            "DGDRs by phase",
            "DGDRs in each phase now (one series per object, deduplicated across replicas).",
            [
                target(
                    f"sum by (phase) (max by (namespace, name, phase) (dgdr_status_phase{{{NS}}}))",
                    "{{phase}}",
                    instant=True,
                )
            ],
            w=24,
            h=4,
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value",
                "graphMode": "none",
                "textMode": "value_and_name",
            },
        ),
        panel(
            "timeseries",
            "DGDRs by phase over time",
            "How many DGDRs were in each phase.",
            [
                target(
                    f"sum by (phase) (max by (namespace, name, phase) (dgdr_status_phase{{{NS}}}))",
                    "{{phase}}",
                )
            ],
            custom=STACKED,
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "DGDRs by profiling sub-phase",
            "Profiling DGDRs by stage (Initializing, SweepingPrefill, SelectingConfig, ...).",
            [
                target(
                    "sum by (profiling_phase) (max by (namespace, name, profiling_phase) "
                    f"(dgdr_status_profiling_phase{{{NS}}}))",
                    "{{profiling_phase}}",
                )
            ],
            custom=STACKED,
            options=TS_OPTIONS,
        ),
        panel(
            "table",
            "DGDRs",
            "Every DGDR with its phase, profiling sub-phase, reason (of the Succeeded "
            "condition, or of the failing condition when Failed) and time in its current phase.",
            [
                target(
                    "max by (namespace, name, phase, profiling_phase, reason) "
                    f"(dgdr_status_info{{{NS}}})",
                    ref="A",
                    instant=True,
                    format="table",
                ),
                target(
                    f"max by (namespace, name) (time() - dgdr_phase_start_time_seconds{{{NS}}})",
                    ref="B",
                    instant=True,
                    format="table",
                ),
            ],
            w=24,
            h=9,
            unit="s",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value #A": True},
                        "indexByName": {
                            "namespace": 0,
                            "name": 1,
                            "phase": 2,
                            "profiling_phase": 3,
                            "reason": 4,
                            "Value #B": 5,
                        },
                        "renameByName": {
                            "profiling_phase": "sub-phase",
                            "Value #B": "time in phase",
                        },
                    },
                },
            ],
            options={"showHeader": True, "sortBy": [{"displayName": "name", "desc": False}]},
        ),
        panel(
            "timeseries",
            "Conditions not True",
            "DGDRs whose condition of each type is False: Validation, Profiling, SpecGenerated, "
            "DeploymentReady, Succeeded.",
            [
                target(
                    "sum by (type) (max by (namespace, name, type) "
                    f'(dgdr_status_condition{{{NS}, status="false"}}))',
                    "{{type}}",
                )
            ],
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Failures by reason",
            "DGDRs that entered Failed, by the reason of the failing condition.",
            [
                target(
                    f"sum by (reason) (increase(dgdr_failures_total{{{JOB}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            custom={"drawStyle": "bars", "fillOpacity": 80, **STACKED},
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Phase transitions",
            "Phase transitions per second, by from and to phase.",
            [
                target(
                    "sum by (from, to) (rate(dgdr_phase_transitions_total"
                    f"{{{JOB}}}[$__rate_interval]))",
                    "{{from}} → {{to}}",
                )
            ],
            unit="ops",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Time spent in a phase (p95)",
            "95th percentile of the time DGDRs spent in each phase before leaving it.",
            [
                target(
                    "histogram_quantile(0.95, sum by (le, phase) "
                    f"(rate(dgdr_phase_duration_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "{{phase}}",
                )
            ],
            unit="s",
            options=TS_OPTIONS,
        ),
    ]


def profiling_panels() -> list[Panel]:
    bucket = f"rate(dgdr_profiling_duration_seconds_bucket{{{JOB}}}[$__rate_interval])"
    return [
        row("Profiling"),
        panel(
            "timeseries",
            "Profiling duration p50 / p95",
            "Wall time of profiling runs by backend and search strategy.",
            [
                target(
                    f"histogram_quantile(0.5, sum by (le, backend, search_strategy) ({bucket}))",
                    "p50 {{backend}} {{search_strategy}}",
                    ref="A",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (le, backend, search_strategy) ({bucket}))",
                    "p95 {{backend}} {{search_strategy}}",
                    ref="B",
                ),
            ],
            w=8,
            unit="s",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Profiling runs by outcome",
            "Profiling runs finished per interval, by outcome.",
            [
                target(
                    "sum by (outcome) (increase(dgdr_profiling_duration_seconds_count"
                    f"{{{JOB}}}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            w=8,
            custom={"drawStyle": "bars", "fillOpacity": 80, **STACKED},
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Profiling pool",
            "Runs executing and waiting in the leader's profiling process pool.",
            [
                target(f"max(dgdr_profiling_pool_busy{{{JOB}}})", "busy", ref="A"),
                target(f"max(dgdr_profiling_pool_queued{{{JOB}}})", "queued", ref="B"),
            ],
            w=8,
            options=TS_OPTIONS,
        ),
    ]


def controller_panels() -> list[Panel]:
    return [
        row("Controller"),
        panel(
            "state-timeline",
            "Leader",
            "Which replica holds the leader Lease (1 = leader, 0 = standby).",
            [
                target(
                    f"max by (instance) (leader_election_master_status{{{JOB}}})",
                    "{{instance}}",
                )
            ],
            w=8,
            options={"showValue": "never", "mergeValues": True},
        ),
        panel(
            "timeseries",
            "Reconciles by result",
            "Reconciles per second by result (success, error, requeue, requeue_after).",
            [
                target(
                    "sum by (controller, result) (rate(controller_runtime_reconcile_total"
                    f"{{{JOB}}}[$__rate_interval]))",
                    "{{controller}} {{result}}",
                )
            ],
            w=8,
            unit="ops",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Reconcile errors",
            "Reconcile errors per second and their share of all reconciles.",
            [
                target(
                    "sum by (controller) (rate(controller_runtime_reconcile_errors_total"
                    f"{{{JOB}}}[$__rate_interval]))",
                    "{{controller}} errors/s",
                    ref="A",
                ),
                target(
                    "sum by (controller) (rate(controller_runtime_reconcile_errors_total"
                    f"{{{JOB}}}[$__rate_interval])) / sum by (controller) "
                    f"(rate(controller_runtime_reconcile_total{{{JOB}}}[$__rate_interval]))",
                    "{{controller}} error ratio",
                    ref="B",
                ),
            ],
            w=8,
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Reconcile latency",
            "Reconcile duration percentiles.",
            [
                target(
                    f"histogram_quantile({q}, sum by (le, controller) "
                    "(rate(controller_runtime_reconcile_time_seconds_bucket"
                    f"{{{JOB}}}[$__rate_interval])))",
                    f"p{int(q * 100)} {{{{controller}}}}",
                    ref=ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            w=8,
            unit="s",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Workqueue depth",
            "Items waiting in each replica's workqueue.",
            [
                target(
                    f"sum by (instance, name) (workqueue_depth{{{JOB}}})",
                    "{{instance}} {{name}}",
                )
            ],
            w=8,
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Workqueue latency (p95)",
            "Time items wait in the queue and time workers spend on them.",
            [
                target(
                    "histogram_quantile(0.95, sum by (le, name) "
                    f"(rate(workqueue_queue_duration_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "queue {{name}}",
                    ref="A",
                ),
                target(
                    "histogram_quantile(0.95, sum by (le, name) "
                    f"(rate(workqueue_work_duration_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                    "work {{name}}",
                    ref="B",
                ),
            ],
            w=8,
            unit="s",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Stuck work",
            "Age of in-flight work: a line that keeps growing means a stuck worker.",
            [
                target(
                    f"max by (name) (workqueue_unfinished_work_seconds{{{JOB}}})",
                    "unfinished {{name}}",
                    ref="A",
                ),
                target(
                    f"max by (name) (workqueue_longest_running_processor_seconds{{{JOB}}})",
                    "longest {{name}}",
                    ref="B",
                ),
            ],
            w=8,
            unit="s",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "Workqueue adds and retries",
            "Items added per second, and those added with a delay (backoff, requeue-after).",
            [
                target(
                    f"sum by (name) (rate(workqueue_adds_total{{{JOB}}}[$__rate_interval]))",
                    "adds {{name}}",
                    ref="A",
                ),
                target(
                    f"sum by (name) (rate(workqueue_retries_total{{{JOB}}}[$__rate_interval]))",
                    "retries {{name}}",
                    ref="B",
                ),
            ],
            w=8,
            unit="ops",
            options=TS_OPTIONS,
        ),
        panel(
            "timeseries",
            "API requests by code",
            "Requests to the Kubernetes API server per second, by method and HTTP code.",
            [
                target(
                    "sum by (method, code) (rate(rest_client_requests_total"
                    f"{{{JOB}}}[$__rate_interval]))",
                    "{{method}} {{code}}",
                )
            ],
            w=8,
            unit="reqps",
            options=TS_OPTIONS,
        ),
    ]


def layout(panels: list[Panel]) -> list[Panel]:
    """Assign ids and grid positions left to right, wrapping at Grafana's 24 columns."""
    x = y = row_h = 0
    for pid, item in enumerate(panels, start=1):
        item["id"] = pid
        pos = item["gridPos"]
        if item["type"] == "row" or x + pos["w"] > 24:
            y += row_h
            x = row_h = 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        row_h = max(row_h, pos["h"])
        if item["type"] == "row":
            y += 1
            x = row_h = 0
    return panels


def variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "refresh": 1,
            "current": {"text": "Prometheus", "value": "prometheus"},
        },
        {
            "name": "job",
            "label": "Job",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {
                "query": "label_values(leader_election_master_status, job)",
                "refId": "job",
            },
            "refresh": 2,
            "includeAll": False,
            "multi": False,
            "sort": 1,
            "current": {"text": "dgdr-controller", "value": "dgdr-controller"},
        },
        {
            "name": "namespace",
            "label": "Namespace",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {
                "query": "label_values(dgdr_status_phase, namespace)",
                "refId": "namespace",
            },
            "refresh": 2,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "sort": 1,
            "current": {"text": "All", "value": "$__all"},
        },
    ]


def dashboard() -> dict[str, Any]:
    return {
        "uid": "dgdr-controller",
        "title": "Dynamo DGDR controller",
        "description": "DynamoGraphDeploymentRequests by phase, profiling, and the controller's "
        "reconcile loop, workqueue and leader election.",
        "tags": ["dynamo", "dgdr", "controller"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 42,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables()},
        "panels": layout(lifecycle_panels() + profiling_panels() + controller_panels()),
    }


def rules_from_prometheusrule() -> dict[str, Any]:
    doc = yaml.safe_load((HERE / "prometheusrule.yaml").read_text())
    return {"groups": doc["spec"]["groups"]}


RULES_HEADER = (
    "# Generated by deploy/monitoring/generate.py from prometheusrule.yaml (spec.groups): the\n"
    "# plain rules file that promtool reads. Edit prometheusrule.yaml, then regenerate.\n"
)


class _BlockDumper(yaml.SafeDumper):
    """Dumps multi-line strings (PromQL, runbooks) as `|` blocks so the file stays readable."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def outputs() -> dict[Path, str]:
    dash = json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
    rules = RULES_HEADER + yaml.dump(
        rules_from_prometheusrule(),
        Dumper=_BlockDumper,
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    return {
        HERE / "dashboard.json": dash,
        HERE / "rules.yaml": rules,
        CHART_FILES / "dashboard.json": dash,
        CHART_FILES / "rules.yaml": rules,
        CHART / "crds" / DGDR_CRD: (HERE.parent / "crds" / DGDR_CRD).read_text(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"out of date: {path.relative_to(HERE.parent.parent)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
