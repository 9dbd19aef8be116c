"""searchStrategy: thorough on the local DGD runner (controller/dgdr/thorough.py): each candidate
is deployed as a test DGD the runner serves with Dynamo's frontend and mock engines, benchmarked,
deleted; the pick and the planner's profile data come from the measurements. The mocker replays
the profiler's predicted curves for each candidate, so measured figures land near the predicted
ones here; on GPUs the same flow measures real engines.

Each test runs its own controller(s), watching only its namespace, with short sweep bounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.dgdr.thorough import STATE_KEY, sweep_names
from devtools.dgdrunner.modeldir import ensure_model_dir
from devtools.localplane import LocalControlPlane
from tests.conftest import REPO, SESSION_PIDS, Kubectl
from tests.dgdr.conftest import (
    ControllerProcess,
    apply_dgdr,
    events_for,
    get_json,
    wait_phase,
)
from tests.eventually import eventually
from tests.serving.conftest import RunnerProcess, chat, dgd_of, endpoint, wait_dgd_state

pytestmark = pytest.mark.cluster

MODEL = "Qwen/Qwen3-0.6B"
AIPERF = REPO / ".venv-aiperf" / "bin" / "aiperf"
SWEEP_FLAGS = (
    "--thorough-requests",
    "4",
    "--thorough-concurrency-levels",
    "2",
    "--thorough-max-concurrency",
    "4",
    "--thorough-benchmark-timeout",
    "60",
)
# The planner's layouts (one prefill and one decode worker per unit): disaggregated candidates,
# and the profile data the planner reads, built from the measured curves.
PLANNED: dict[str, Any] = {
    "model": MODEL,
    "backend": "vllm",
    "searchStrategy": "thorough",
    "autoApply": False,
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 3, "vramMb": 81559},
    "sla": {"ttft": 2000, "itl": 50},
    "workload": {"isl": 500, "osl": 50},
    "features": {
        "planner": {"enable_throughput_scaling": True, "enable_load_scaling": False},
    },
}

Start = Callable[..., ControllerProcess]


@pytest.fixture
def controllers(
    control_plane: LocalControlPlane,
    crds: list[str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Start]:
    """Start controllers for this test's namespace (one lease per test); all stopped at the end."""
    started: list[ControllerProcess] = []
    log_dir = tmp_path_factory.mktemp("thorough")

    def start(*args: str) -> ControllerProcess:
        c = ControllerProcess(
            control_plane,
            log_dir,
            "--namespace",
            namespace,
            "--lease-name",
            f"dgdr-{namespace}",
            *SWEEP_FLAGS,
            *args,
            name=f"controller{len(started)}",
        )
        started.append(c)
        SESSION_PIDS.append(c.pids)
        c.wait_ready()
        return c

    try:
        yield start
    finally:
        for c in started:
            c.stop()
            SESSION_PIDS.remove(c.pids)


def sweep_state(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    dgdr = get_json(kubectl, "dgdr", name, ns)
    cm_name, _ = sweep_names(ns, name, dgdr["metadata"]["uid"])
    res = kubectl("get", "configmap", cm_name, "-o", "json", namespace=ns, check=False)
    if res.returncode != 0:
        return None
    return dict(json.loads(json.loads(res.stdout)["data"][STATE_KEY]))


def sweep_dgds(kubectl: Kubectl, ns: str) -> list[dict[str, Any]]:
    out = kubectl("get", "dgd", "-l", "dgdr.nvidia.com/sweep", "-o", "json", namespace=ns)
    return list(json.loads(out.stdout)["items"])


def no_test_dgds_or_processes(kubectl: Kubectl, runner: RunnerProcess, ns: str) -> None:
    eventually(
        lambda: not sweep_dgds(kubectl, ns) and not runner.children(),
        timeout=40,
        message="no test DGD and no runner process left",
        on_timeout=runner.tail,
    )


def test_thorough_dgdr_is_ready_with_a_measured_pick_and_measured_curves(
    controllers: Start, kubectl: Kubectl, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    controllers("--thorough-candidates", "2", "--thorough-ready-timeout", "90")
    apply_dgdr(kubectl, ns, "measured", **PLANNED)
    # Sub-phases as upstream's: the sweep is seen in progress.
    eventually(
        lambda: (
            (get_json(kubectl, "dgdr", "measured", ns).get("status") or {}).get("profilingPhase")
            in ("SweepingPrefill", "SweepingDecode")
        ),
        timeout=60,
        message="a sweep sub-phase",
    )
    dgdr = wait_phase(kubectl, "measured", ns, "Ready", timeout=240)
    status = dgdr["status"]
    assert "profilingJobName" not in status  # no Job: the leader ran the sweep
    state = sweep_state(kubectl, ns, "measured")
    assert state is not None
    slots = state["candidates"]
    assert len(slots) == 2 and all(s["status"] == "measured" for s in slots), slots
    # The pick is one of the measured candidates, with its measured figures.
    prediction = status["profilingResults"]["prediction"]
    measurements = [s["measurement"] for s in slots]
    itls = {round(p["itlMs"], 2) for m in measurements for p in m["decode"] if p["isl"] == 500}
    assert round(prediction["itlMs"], 2) in itls, (prediction, slots)
    # The planner profile data are the measured curves of the chosen unit.
    extra = dgdr["metadata"]["annotations"]["dgdr.nvidia.com/additional-resources"]
    data_cm = next(
        doc for doc in yaml.safe_load_all(extra) if "profile-data" in doc["metadata"]["name"]
    )
    decode = json.loads(data_cm["data"]["decode_raw_data.json"])
    assert decode["z_itl"] in [[p["itlMs"] for p in m["decode"]] for m in measurements]
    assert sorted(set(decode["y_context_length"])) == [150, 525]  # ISL 125 and 500, + OSL/2
    prefill = json.loads(data_cm["data"]["prefill_raw_data.json"])
    assert prefill["prefill_isl"] == [125, 250, 500]
    assert prefill["prefill_ttft"] in [[p["ttftMs"] for p in m["prefill"]] for m in measurements]
    reasons = [r for _, r, _ in events_for(kubectl, "measured", ns)]
    assert reasons.count("ProfilingCandidateMeasured") >= 1
    # Every test DGD is gone, and so are its processes.
    no_test_dgds_or_processes(kubectl, runner, ns)


def test_a_candidate_that_fails_to_start_is_skipped_with_the_reason(
    controllers: Start, kubectl: Kubectl, runner: RunnerProcess, serving_namespace: str
) -> None:
    """The disaggregated candidate's prefill worker cannot start (its Python is broken by an
    override only that service has): it never serves, is skipped after the ready timeout, and
    the pick is made among the others."""
    ns = serving_namespace
    controllers("--thorough-candidates", "2", "--thorough-ready-timeout", "15")
    broken = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "spec": {
            "services": {
                "VllmPrefillWorker": {"envs": [{"name": "PYTHONHOME", "value": "/nonexistent"}]}
            }
        },
    }
    spec = {
        **PLANNED,
        "hardware": {**PLANNED["hardware"], "totalGpus": 2},
        "features": {},
        "overrides": {"dgd": broken},
    }
    apply_dgdr(kubectl, ns, "skips", **spec)
    dgdr = wait_phase(kubectl, "skips", ns, "Ready", timeout=240)
    state = sweep_state(kubectl, ns, "skips")
    assert state is not None
    by_status = {s["status"]: s for s in state["candidates"]}
    assert set(by_status) == {"measured", "skipped"}, state
    assert "did not serve within 15 s" in by_status["skipped"]["reason"]
    assert by_status["skipped"]["predicted"]["mode"] == "disagg"
    assert dgdr["status"]["profilingResults"]["prediction"]["mode"] == "agg"
    events = events_for(kubectl, "skips", ns)
    assert any(
        t == "Warning" and r == "ProfilingCandidateSkipped" and "did not serve" in m
        for t, r, m in events
    ), events
    no_test_dgds_or_processes(kubectl, runner, ns)


def test_a_new_leader_resumes_the_sweep_without_measuring_again(
    controllers: Start, kubectl: Kubectl, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    flags = ("--thorough-candidates", "2", "--thorough-ready-timeout", "90")
    a = controllers(*flags)
    eventually(a.is_leader, timeout=20, message="a leads")
    apply_dgdr(kubectl, ns, "resumed", **PLANNED)

    def first_measured() -> dict[str, Any] | None:
        state = sweep_state(kubectl, ns, "resumed")
        slots = (state or {}).get("candidates") or []
        done = [s for s in slots if s["status"] == "measured"]
        return done[0] if done and len(done) < len(slots) else None

    finished = eventually(first_measured, timeout=120, message="one candidate measured")
    assert finished is not None
    a.stop(sig=9)  # killed: no cleanup, no lease release
    b = controllers(*flags)
    dgdr = wait_phase(kubectl, "resumed", ns, "Ready", timeout=240)
    assert b.is_leader()
    state = sweep_state(kubectl, ns, "resumed")
    assert state is not None
    again = next(s for s in state["candidates"] if s["index"] == finished["index"])
    # Not measured again: the very figures the first leader recorded.
    assert again == finished
    assert all(s["status"] == "measured" for s in state["candidates"])
    assert "resuming the sweep, 1 of 2 done" in Path(b.log_path).read_text()
    assert dgdr["status"]["profilingResults"]["prediction"]
    no_test_dgds_or_processes(kubectl, runner, ns)


def test_deleting_the_dgdr_mid_sweep_removes_test_dgds_and_processes(
    controllers: Start, kubectl: Kubectl, runner: RunnerProcess, serving_namespace: str
) -> None:
    ns = serving_namespace
    controllers("--thorough-candidates", "2", "--thorough-ready-timeout", "90")
    apply_dgdr(kubectl, ns, "gone", **PLANNED)
    eventually(
        lambda: sweep_dgds(kubectl, ns) and runner.processes("mocker"),
        timeout=60,
        message="a test DGD running",
        on_timeout=runner.tail,
    )
    dgdr = get_json(kubectl, "dgdr", "gone", ns)
    cm_name, _ = sweep_names(ns, "gone", dgdr["metadata"]["uid"])
    kubectl("delete", "dgdr", "gone", namespace=ns)
    no_test_dgds_or_processes(kubectl, runner, ns)
    eventually(
        lambda: kubectl("get", "configmap", cm_name, namespace=ns, check=False).returncode != 0,
        timeout=20,
        message="the sweep ConfigMap removed",
    )
    leftovers = kubectl(
        "get", "configmap", "-l", "dgdr.nvidia.com/sweep", "-o", "name", namespace=ns
    )
    assert not leftovers.stdout.strip()


def test_aiperf_measures_the_candidates(
    controllers: Start,
    kubectl: Kubectl,
    runner: RunnerProcess,
    serving_namespace: str,
    tmp_path: Path,
) -> None:
    """The aiperf command line as the benchmark client (upstream's thorough profiler uses it),
    with the runner's kind of model directory as its tokenizer."""
    if not AIPERF.exists():
        pytest.skip(f"{AIPERF} is missing: `bash hack/ensure-dynamo.sh` builds the aiperf venv")
    tokenizer = ensure_model_dir(tmp_path / "models", MODEL)
    controllers(
        "--thorough-candidates",
        "1",
        "--thorough-ready-timeout",
        "90",
        "--thorough-benchmark",
        "aiperf",
        "--thorough-aiperf",
        str(AIPERF),
        "--thorough-tokenizer",
        str(tokenizer),
    )
    apply_dgdr(kubectl, ns := serving_namespace, "aiperf", **PLANNED)
    dgdr = wait_phase(kubectl, "aiperf", ns, "Ready", timeout=240)
    state = sweep_state(kubectl, ns, "aiperf")
    assert state is not None
    (slot,) = state["candidates"]
    assert slot["status"] == "measured", slot
    points = [*slot["measurement"]["prefill"], *slot["measurement"]["decode"]]
    assert all(p["requests"] >= 4 and p["errors"] == 0 and p["ttftMs"] > 0 for p in points)
    decoded = [(p["isl"], p["concurrency"]) for p in slot["measurement"]["decode"]]
    assert decoded == [(125, 1), (125, 4), (500, 1), (500, 4)]
    assert dgdr["status"]["profilingResults"]["prediction"]["itlMs"] > 0
    no_test_dgds_or_processes(kubectl, runner, ns)


def test_mocker_deployment_serves_from_the_measured_curves(
    controllers: Start, kubectl: Kubectl, runner: RunnerProcess, serving_namespace: str
) -> None:
    """With features.mocker and autoApply, the picked DGD is deployed and its mock engines are
    timed by the planner profile data the sweep measured (the runner reads that ConfigMap)."""
    ns = serving_namespace
    controllers("--thorough-candidates", "1", "--thorough-ready-timeout", "90")
    spec = {
        **PLANNED,
        "autoApply": True,
        "hardware": {**PLANNED["hardware"], "totalGpus": 2},
        "features": {"mocker": {"enabled": True}},
    }
    apply_dgdr(kubectl, ns, "mocked", **spec)
    dgdr = wait_phase(kubectl, "mocked", ns, "Deployed", timeout=240)
    dgd_name = dgd_of(kubectl, dgdr)
    wait_dgd_state(kubectl, runner, dgd_name, ns, "successful", timeout=60)
    dgd = get_json(kubectl, "dgd", dgd_name, ns)
    mounted = {
        v["configMap"]["name"]
        for svc in dgd["spec"]["services"].values()
        for v in (svc.get("extraPodSpec") or {}).get("volumes") or []
    }
    (data_cm,) = [n for n in mounted if n.startswith("planner-profile-data-")]
    data = get_json(kubectl, "configmap", data_cm, ns)["data"]
    state = sweep_state(kubectl, ns, "mocked")
    assert state is not None
    (slot,) = state["candidates"]
    prefill = json.loads(data["prefill_raw_data.json"])
    assert prefill["prefill_ttft"] == [p["ttftMs"] for p in slot["measurement"]["prefill"]]
    assert "timing from ConfigMap " + data_cm in runner.tail(400)
    answer = chat(endpoint(kubectl, dgd_name, ns), MODEL, max_tokens=8)
    assert answer["usage"]["completion_tokens"] == 8
    kubectl("delete", "dgd", dgd_name, namespace=ns)
    no_test_dgds_or_processes(kubectl, runner, ns)


def test_dgdr_deleted_while_no_leader_runs_is_cleaned_up_by_the_next_leader(
    controllers: Start, kubectl: Kubectl, runner: RunnerProcess, serving_namespace: str
) -> None:
    """The leader killed mid-sweep, the DGDR deleted before another leads: nothing was there to
    cancel the sweep, and this control plane has no garbage collector; the next leader finds
    the sweep's objects orphaned and deletes them."""
    ns = serving_namespace
    flags = ("--thorough-candidates", "2", "--thorough-orphan-interval", "1")
    a = controllers(*flags)
    eventually(a.is_leader, timeout=20, message="a leads")
    apply_dgdr(kubectl, ns, "orphan", **PLANNED)
    eventually(
        lambda: sweep_dgds(kubectl, ns) and runner.processes("mocker"),
        timeout=60,
        message="a test DGD running",
        on_timeout=runner.tail,
    )
    a.stop(sig=9)
    kubectl("delete", "dgdr", "orphan", namespace=ns)
    assert sweep_dgds(kubectl, ns)  # left behind: no leader to cancel the sweep
    controllers(*flags)
    no_test_dgds_or_processes(kubectl, runner, ns)
    eventually(
        lambda: (
            not kubectl(
                "get", "configmap", "-l", "dgdr.nvidia.com/sweep", "-o", "name", namespace=ns
            ).stdout.strip()
        ),
        timeout=20,
        message="the sweep ConfigMap removed",
    )
