"""Controller + real Prometheus + DGDRs through their phases: every dashboard query has data.

The controller runs as ``python -m controller run`` on the local control plane; Debian's
Prometheus scrapes its /metrics every second on loopback (job ``dgdr-controller``, honor_labels,
as the ServiceMonitor configures). Three DGDRs end Deployed, Ready and Failed; then every PromQL
expression of the dashboard (Grafana macros and variables substituted) must return at least one
finite sample, the variables' label_values queries must list this job and namespace, and the
alert expressions must see the failed DGDR and no leader problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import ControllerProcess, get_json, wait_phase
from tests.eventually import eventually
from tests.prometheus import Prometheus

from .tools import (
    LABEL_VALUES,
    MONITORING,
    dashboard,
    dashboard_exprs,
    substitute,
    variable_queries,
)

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

JOB = "dgdr-controller"
H100 = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8}
DGDRS: dict[str, dict[str, Any]] = {
    "served": {"model": "Qwen/Qwen3-0.6B", "hardware": H100},
    "review": {"model": "Qwen/Qwen3-0.6B", "hardware": H100, "autoApply": False},
    # refused by validation: the budget cannot hold the model (an unknown model would now be
    # looked up on the Hub, and fail in profiling)
    "broken": {
        "model": "meta-llama/Llama-3.1-405B-Instruct",
        "hardware": {"gpuSku": "l4", "numGpusPerNode": 1, "totalGpus": 1},
    },
}


@pytest.fixture
def controller(
    control_plane: LocalControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(
        control_plane,
        tmp_path,
        "--namespace",
        namespace,
        "--lease-name",
        f"dgdr-prom-{namespace}",
        "--no-discover-gpus",
    )
    try:
        proc.wait_ready()
        eventually(proc.is_leader, message="leadership", on_timeout=proc.tail)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def prometheus(controller: ControllerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    prom = Prometheus.start({JOB: [f"127.0.0.1:{controller.port}"]}, workdir=tmp_path / "prom")
    try:
        prom.wait_for(f'up{{job="{JOB}"}} == 1')
        yield prom
    finally:
        prom.stop()


def apply_dgdr(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": name},
        "spec": spec,
    }
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(body), namespace=namespace)


def mark_dgd_successful(kubectl: Kubectl, name: str, namespace: str) -> None:
    """What the Dynamo operator would write once the DGD's pods are up."""
    dgd = get_json(kubectl, "dgd", name, namespace)
    services = {s: {"replicas": 1, "availableReplicas": 1} for s in dgd["spec"]["services"]}
    patch = json.dumps({"status": {"state": "successful", "services": services}})
    kubectl(
        "patch", "dgd", name, "--subresource=status", "--type=merge", "-p", patch,
        namespace=namespace,
    )  # fmt: skip


def finite(samples: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in samples)


def test_every_dashboard_query_returns_data(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, prometheus: Prometheus
) -> None:
    for name, spec in DGDRS.items():
        apply_dgdr(kubectl, namespace, name, spec)
    wait_phase(kubectl, "review", namespace, "Ready")
    wait_phase(kubectl, "broken", namespace, "Failed")
    served = wait_phase(kubectl, "served", namespace, "Deploying")
    mark_dgd_successful(kubectl, served["status"]["dgdName"], namespace)
    wait_phase(kubectl, "served", namespace, "Deployed")

    # Prometheus has scraped the final phases.
    ns = f'namespace="{namespace}"'
    prometheus.wait_for(
        f"dgdr_status_phase{{{ns}}} == 1",
        lambda r: {s["metric"]["phase"] for s in r} == {"Deployed", "Ready", "Failed"},
    )

    variables = {"job": JOB, "namespace": namespace, "datasource": "prometheus"}
    empty, not_finite = [], []
    for where, expr in dashboard_exprs(dashboard()):
        # a window that holds the whole test, so every rate() and quantile sees the events
        result = prometheus.query(substitute(expr, variables, rate_interval="5m"))
        if not result:
            empty.append(where)
        elif not finite(result):
            not_finite.append(where)
    assert empty == [], "dashboard queries without data"
    assert not_finite == [], "dashboard queries with only NaN"

    for var, query in variable_queries(dashboard()):
        match = LABEL_VALUES.match(query)
        assert match, f"${var}: {query}"
        values = prometheus.label_values(match.group(2), match.group(1))
        assert variables[var] in values, (var, values)

    # The table's rows are the three DGDRs with their phase and reason.
    rows = prometheus.query(
        f"max by (namespace, name, phase, profiling_phase, reason) (dgdr_status_info{{{ns}}})"
    )
    table = {r["metric"]["name"]: (r["metric"]["phase"], r["metric"]["reason"]) for r in rows}
    assert table == {
        "served": ("Deployed", "Deployed"),
        "review": ("Ready", "SpecGenerated"),
        "broken": ("Failed", "ValidationFailed"),
    }
    transitions = prometheus.query('dgdr_phase_transitions_total{from="Pending", to="Profiling"}')
    assert transitions and float(transitions[0]["value"][1]) >= 2
    profiled = prometheus.query('sum(dgdr_profiling_duration_seconds_count{outcome="succeeded"})')
    assert float(profiled[0]["value"][1]) >= 2

    # Alert expressions on live data: the failed DGDR alerts, the leader alerts stay quiet.
    alerts = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]
        for rule in group["rules"]
    }
    failed = prometheus.query(alerts["DGDRFailed"])
    assert [(s["metric"]["name"], s["metric"]["reason"]) for s in failed] == [
        ("broken", "ValidationFailed")
    ]
    assert prometheus.query(alerts["DGDRControllerNoLeader"]) == []
    assert prometheus.query(alerts["DGDRControllerMultipleLeaders"]) == []
    assert prometheus.query(alerts["DGDRStuckProfiling"]) == []

    # A deleted DGDR's series go away (forget), so Prometheus marks them stale.
    kubectl("delete", "dgdr", "review", "--wait=true", "--timeout=30s", namespace=namespace)
    prometheus.wait_for(f'dgdr_status_phase{{{ns}, name="review"}}', lambda r: r == [])
    prometheus.wait_for(f'dgdr_status_info{{{ns}, name="review"}}', lambda r: r == [])


def test_validation_failure_is_counted(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    apply_dgdr(kubectl, namespace, "broken", DGDRS["broken"])
    wait_phase(kubectl, "broken", namespace, "Failed")
    _, body = controller.get("/metrics")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(("dgdr_failures_total", "dgdr_phase_transitions_total"))
    }
    assert samples['dgdr_failures_total{reason="ValidationFailed"}'] == 1.0
    assert samples['dgdr_phase_transitions_total{from="Pending",to="Failed"}'] == 1.0
