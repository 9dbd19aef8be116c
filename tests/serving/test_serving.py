"""A DGDR deployed through the controller onto the local DGD runner serves for real: Dynamo's
frontend answers a chat completion through the endpoint recorded on the DGD, and the DGD's
status follows its processes (restarts, scaling, deletion)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    ControllerProcess,
    apply_dgdr,
    get_json,
    reason_of,
    wait_phase,
)
from tests.eventually import eventually
from tests.serving.conftest import (
    RunnerProcess,
    chat,
    dgd_of,
    endpoint,
    wait_dgd_state,
)

pytestmark = pytest.mark.cluster

MODEL = "Qwen/Qwen3-0.6B"
AGG = {
    "model": MODEL,
    "backend": "vllm",
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 1, "vramMb": 81559},
    "sla": {"ttft": 2000, "itl": 50},
    "workload": {"isl": 1000, "osl": 100},
}
# The planner's layout: one prefill and one decode worker, always disaggregated; the planner
# itself is not started by the runner, and the workers take its profile data as their timing.
DISAGG = {
    **AGG,
    "hardware": {**AGG["hardware"], "totalGpus": 2},
    "features": {
        "planner": {
            "pre_deployment_sweeping_mode": "rapid",
            "enable_throughput_scaling": True,
            "enable_load_scaling": False,
        }
    },
}


def deploy(kubectl: Kubectl, runner: RunnerProcess, ns: str, name: str, spec: Any) -> str:
    """Apply the DGDR, wait for Deployed with its DGD successful; the DGD's name."""
    apply_dgdr(kubectl, ns, name, **spec)
    dgdr = wait_phase(kubectl, name, ns, "Deployed", timeout=120)
    dgd = dgd_of(kubectl, dgdr)
    wait_dgd_state(kubectl, runner, dgd, ns, "successful", timeout=60)
    return dgd


def services(kubectl: Kubectl, dgd: str, ns: str) -> dict[str, Any]:
    obj = get_json(kubectl, "dgd", dgd, ns)
    return dict(obj["status"].get("services") or obj["status"].get("components") or {})


def test_agg_dgdr_deploys_and_serves(
    kubectl: Kubectl, controller: ControllerProcess, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    dgd = deploy(kubectl, runner, ns, "agg", AGG)
    url = endpoint(kubectl, dgd, ns)
    answer = chat(url, MODEL, max_tokens=8)
    assert answer["choices"][0]["message"]["content"].strip()
    assert answer["usage"]["completion_tokens"] == 8
    status = services(kubectl, dgd, ns)
    workers = {k: v for k, v in status.items() if k != "Frontend"}
    assert workers and all(v["availableReplicas"] == v["replicas"] for v in workers.values())
    assert len(runner.processes("mocker")) == sum(v["replicas"] for v in workers.values())
    assert len(runner.processes("frontend")) == 1
    print(json.dumps(status))


def test_disagg_dgdr_deploys_and_serves(
    kubectl: Kubectl, controller: ControllerProcess, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    dgd = deploy(kubectl, runner, ns, "disagg", DISAGG)
    answer = chat(endpoint(kubectl, dgd, ns), MODEL, max_tokens=8)
    assert answer["usage"]["completion_tokens"] == 8
    status = services(kubectl, dgd, ns)
    assert status["Planner"]["availableReplicas"] == 0
    assert "not started" in status["Planner"]["message"]
    roles = sorted(
        c.cmdline()[c.cmdline().index("--disaggregation-mode") + 1]
        for c in runner.processes("mocker")
    )
    assert roles == ["decode", "prefill"]
    # the workers simulate the timing the profiler predicted (the planner's profile data)
    assert all("--planner-profile-data" in c.cmdline() for c in runner.processes("mocker"))


def test_killed_worker_degrades_then_recovers(
    kubectl: Kubectl, controller: ControllerProcess, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    dgd = deploy(kubectl, runner, ns, "kill", AGG)
    victim = runner.processes("mocker")[0]
    victim.kill()
    wait_dgd_state(kubectl, runner, dgd, ns, "pending", timeout=30)
    degraded = wait_phase(kubectl, "kill", ns, "Deploying", timeout=30)
    assert reason_of(degraded, "DeploymentReady") == "DeploymentDegraded"
    wait_dgd_state(kubectl, runner, dgd, ns, "successful", timeout=60)
    wait_phase(kubectl, "kill", ns, "Deployed", timeout=30)
    worker = next(v for k, v in services(kubectl, dgd, ns).items() if k != "Frontend")
    assert worker["restarts"] >= 1
    assert victim.pid not in {p.pid for p in runner.processes("mocker")}
    chat(endpoint(kubectl, dgd, ns), MODEL)


def test_replicas_edit_scales_processes(
    kubectl: Kubectl, controller: ControllerProcess, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    dgd = deploy(kubectl, runner, ns, "scale", AGG)
    worker = next(k for k in services(kubectl, dgd, ns) if k != "Frontend")
    before = len(runner.processes("mocker"))
    patch = json.dumps({"spec": {"services": {worker: {"replicas": before + 1}}}})
    kubectl("patch", "dgd", dgd, "--type=merge", "-p", patch, namespace=ns)
    eventually(
        lambda: len(runner.processes("mocker")) == before + 1, timeout=30, message="one more mocker"
    )
    obj = wait_dgd_state(kubectl, runner, dgd, ns, "successful", timeout=60)
    assert obj["status"]["services"][worker]["availableReplicas"] == before + 1
    patch = json.dumps({"spec": {"services": {worker: {"replicas": 1}}}})
    kubectl("patch", "dgd", dgd, "--type=merge", "-p", patch, namespace=ns)
    eventually(lambda: len(runner.processes("mocker")) == 1, timeout=30, message="one mocker")
    obj = wait_dgd_state(kubectl, runner, dgd, ns, "successful", timeout=60)
    assert obj["status"]["services"][worker]["replicas"] == 1
    chat(endpoint(kubectl, dgd, ns), MODEL)


def test_deleted_dgd_stops_processes_and_fails_dgdr(
    kubectl: Kubectl, controller: ControllerProcess, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    dgd = deploy(kubectl, runner, ns, "gone", AGG)
    assert runner.children()
    kubectl("delete", "dgd", dgd, namespace=ns)
    eventually(lambda: not runner.children(), timeout=30, message="the runner's processes to stop")
    failed = wait_phase(kubectl, "gone", ns, "Failed", timeout=30)
    assert reason_of(failed, "DeploymentReady") == "DeploymentDeleted"


def test_mocker_feature_dgd_runs_the_same_way(
    kubectl: Kubectl, controller: ControllerProcess, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    spec = {
        **AGG,
        "hardware": {**AGG["hardware"], "totalGpus": 2},
        "features": {"mocker": {"enabled": True}},
    }
    dgd = deploy(kubectl, runner, ns, "mock", spec)
    answer = chat(endpoint(kubectl, dgd, ns), MODEL, max_tokens=4)
    assert answer["usage"]["completion_tokens"] == 4
    mockers = runner.processes("mocker")
    assert len(mockers) >= 2
    assert all("--planner-profile-data" in c.cmdline() for c in mockers)
