"""Operability at the edges (issue 15): deletion that never waits for the controller, the
accepted spec in status, few API writes per DGDR.

Each test runs its own controller watching only its namespace, with a lease of its own, so it can
stop the controller without touching other modules.
"""

from __future__ import annotations

import json
import signal
from types import SimpleNamespace
from typing import cast

import pytest

from controller.dgdr.reconciler import ACCEPTED_SPEC_ANNOTATION as ACCEPTED
from controller.dgdr.reconciler import accepted_spec, spec_changes
from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    Start,
    apply_dgdr,
    condition,
    dgdr_manifest,
    events_for,
    get_json,
    wait_phase,
)
from tests.dgdr.test_lifecycle import set_dgd_state
from tests.eventually import eventually

pytestmark = pytest.mark.cluster


def test_no_finalizer_so_delete_completes_with_the_controller_stopped(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    c = controllers()
    apply_dgdr(kubectl, namespace, "nofin", **SMALL, autoApply=False)
    obj = wait_phase(kubectl, "nofin", namespace, "Ready")
    assert not obj["metadata"].get("finalizers")
    c.stop()
    kubectl("delete", "dgdr", "nofin", "--timeout=30s", namespace=namespace)
    assert kubectl("get", "dgdr", "nofin", namespace=namespace, check=False).returncode != 0


def test_finalizer_of_an_older_version_is_removed(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    body = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {
            "name": "oldfin",
            "finalizers": ["nvidia.com/finalizer"],
            "annotations": {ACCEPTED: json.dumps({**SMALL, "autoApply": False})},
        },
        "spec": {**SMALL, "autoApply": False},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body), namespace=namespace)
    controllers()

    def migrated() -> bool:
        meta = get_json(kubectl, "dgdr", "oldfin", namespace)["metadata"]
        return not meta.get("finalizers") and ACCEPTED not in (meta.get("annotations") or {})

    eventually(migrated, message="finalizer and accepted-spec annotation removed")
    obj = wait_phase(kubectl, "oldfin", namespace, "Ready")
    assert obj["status"]["acceptedSpec"]["hash"].startswith("sha256:")


def test_accepted_spec_is_in_status_with_no_size_cliff(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    """The accepted spec was a copy of the whole spec in a (user-writable) annotation: a 600 KB
    spec failed with "metadata.annotations: Too long". Now a fixed-size record in status."""
    controllers()
    big = {"template": {"metadata": {"annotations": {"note": "x" * 600_000}}}}
    # create, not apply: apply would copy the spec into last-applied-configuration
    manifest = dgdr_manifest("big", **SMALL, autoApply=False, overrides={"profilingJob": big})
    kubectl("create", "-f", "-", input=manifest, namespace=namespace)
    obj = wait_phase(kubectl, "big", namespace, "Ready")
    assert ACCEPTED not in (obj["metadata"].get("annotations") or {})
    accepted = obj["status"]["acceptedSpec"]
    assert accepted["generation"] == obj["metadata"]["generation"]
    assert accepted["autoApply"] is False
    assert len(json.dumps(accepted)) < 200
    # The spec-change exception still reads it (docs/dgdr-contract.md#spec-changes): autoApply
    # flipped in Ready is accepted and deploys.
    kubectl(
        "patch",
        "dgdr",
        "big",
        "--type=merge",
        "-p",
        '{"spec":{"autoApply":true}}',
        namespace=namespace,
    )
    wait_phase(kubectl, "big", namespace, "Deploying")


def test_spec_changes_are_told_from_the_hash() -> None:
    spec = {**SMALL, "autoApply": False}
    record = accepted_spec(spec, 3)
    assert record["generation"] == 3 and record["autoApply"] is False
    assert spec_changes(record, spec) == set()
    assert spec_changes(record, {**spec, "autoApply": True}) == {"autoApply"}
    assert spec_changes(record, {**spec, "runtimeVersionOverride": "1.2.0"}) == {
        "runtimeVersionOverride"
    }
    assert spec_changes(record, {**spec, "workload": {"isl": 1, "osl": 1}}) == {"spec"}


def audit_writes(plane: LocalControlPlane, namespace: str, agent: str, dgdr: str) -> list[str]:
    """The controller's writes about one DGDR (itself, its events, its DGD and ConfigMaps) from
    the API server's audit log, as bench/lifecycle counts them: creates, updates, patches."""
    found = []
    for line in plane.audit_log.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        ref = e.get("objectRef") or {}
        if (
            e.get("stage") == "ResponseComplete"
            and agent in e.get("userAgent", "")
            and ref.get("namespace") == namespace
            and e.get("verb") in ("create", "update", "patch")
            and str(ref.get("name") or "").startswith(dgdr)
        ):
            found.append(f"{e['verb']} {ref.get('resource')}/{ref.get('subresource', '')}")
    return found


def test_few_api_writes_to_ready_and_to_deployed(
    controllers: Start, control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    """Issue 15: at most 4 writes, events included, for create -> Ready and 6 for create ->
    Deployed (were 8 and ~14: a Pending write, sub-phases of a millisecond profile, separate
    metadata patches, the generated DGD parked in an annotation before being created)."""
    c = controllers()
    apply_dgdr(kubectl, namespace, "quiet", **SMALL, autoApply=False)
    wait_phase(kubectl, "quiet", namespace, "Ready")
    apply_dgdr(kubectl, namespace, "quick", **SMALL)
    eventually(
        lambda: (
            kubectl("get", "dgd", "quick-dgd", namespace=namespace, check=False).returncode == 0
        ),
        message="DGD created",
    )
    set_dgd_state(kubectl, "quick-dgd", namespace, "successful")
    wait_phase(kubectl, "quick", namespace, "Deployed")
    c.stop()  # every write it made is in the log
    ready = audit_writes(control_plane, namespace, c.identity, "quiet")
    assert len(ready) <= 4, ready
    deployed = audit_writes(control_plane, namespace, c.identity, "quick")
    assert len(deployed) <= 6, deployed
    events = {r for _, r, _ in events_for(kubectl, "quiet", namespace)}
    assert events == {"ProfilingJobCreated", "SpecGenerated"}, events
    events = {r for _, r, _ in events_for(kubectl, "quick", namespace)}
    assert events == {"SpecGenerated", "DeploymentCreated", "DeploymentReady"}, events


def test_slow_profile_shows_its_sub_phases(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    """A profile that outlasts --progress-after is written as phase Profiling, with its
    sub-phase, and told by Initialized and ProfilingJobCreated, as upstream's are."""
    c = controllers("--progress-after", "0.5", "--pool-size", "1")
    workers = eventually(c.workers, timeout=30, message="pool worker")
    for w in workers:
        w.send_signal(signal.SIGSTOP)  # the profile cannot finish within 0.5 s
    try:
        apply_dgdr(kubectl, namespace, "slow", **SMALL, autoApply=False)
        obj = wait_phase(kubectl, "slow", namespace, "Profiling")
        assert obj["status"]["profilingPhase"] == "Initializing"
        assert condition(obj, "Validation")["reason"] == "ValidationPassed"
        reasons = [r for _, r, _ in events_for(kubectl, "slow", namespace)]
        assert "Initialized" in reasons and "ProfilingJobCreated" in reasons
    finally:
        for w in workers:
            w.send_signal(signal.SIGCONT)
    obj = wait_phase(kubectl, "slow", namespace, "Ready")
    assert condition(obj, "Profiling")["reason"] == "ProfilingCompleted"


def test_transitions_and_failures_are_logged_at_info_with_key_and_reconcile_id(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    c = controllers("--log-level", "INFO")
    apply_dgdr(kubectl, namespace, "told", **SMALL, autoApply=False)
    wait_phase(kubectl, "told", namespace, "Ready")
    # a model that fits no layout of the budget: refused by validation
    hardware = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 1, "vramMb": 81559}
    too_big = {**SMALL, "model": "meta-llama/Llama-3.1-70B-Instruct", "hardware": hardware}
    apply_dgdr(kubectl, namespace, "refused", **too_big)
    wait_phase(kubectl, "refused", namespace, "Failed")

    def lines() -> list[dict[str, object]]:
        out = []
        for line in c.log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") == "info":
                out.append(entry)
        return out

    def said(key: str, phase: str) -> list[dict[str, object]]:
        return [e for e in lines() if e.get("key") == key and e.get("phase") == phase]

    ready = eventually(
        lambda: said(f"{namespace}/told", "Ready"),
        timeout=10,
        message="the Ready transition logged",
    )
    assert f"{namespace}/told" in str(ready[0]["msg"]) and "-> Ready" in str(ready[0]["msg"])
    assert ready[0].get("reconcileID")
    failed = eventually(
        lambda: said(f"{namespace}/refused", "Failed"), timeout=10, message="the failure logged"
    )
    assert "infeasible" in str(failed[0]["msg"]) and failed[0].get("reconcileID")


def test_planner_configmap_names_cannot_collide() -> None:
    from profiler.planner import configmap_name
    from profiler.request import PlanRequest

    names = set()
    for ns in ("a", "b"):
        for dgd in (f"d{i}" for i in range(500)):
            req = SimpleNamespace(namespace=ns, dgd_name=dgd)  # all the name reads
            names.add(configmap_name("planner-config", cast(PlanRequest, req)))
    assert len(names) == 1000
    suffix = next(iter(names)).rsplit("-", 1)[1]
    assert len(suffix) == 16


def test_a_foreign_configmap_with_the_planner_name_fails_the_dgdr(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    """A name clash (409) is no longer success: a ConfigMap not labelled for this DGDR fails it,
    naming the ConfigMap, instead of being shared by two DGDs."""
    controllers()
    spec = {
        **SMALL,
        "autoApply": False,
        "features": {"planner": {"optimization_target": "throughput"}},
    }
    apply_dgdr(kubectl, namespace, "plan", **spec)
    wait_phase(kubectl, "plan", namespace, "Ready")
    out = kubectl("get", "cm", "-l", "dgdr.nvidia.com/name=plan", "-o", "json", namespace=namespace)
    names = [c["metadata"]["name"] for c in json.loads(out.stdout)["items"]]
    assert names
    kubectl("delete", "dgdr", "plan", "--timeout=30s", namespace=namespace)
    for name in names:  # someone else's now
        kubectl("label", "cm", name, "dgdr.nvidia.com/name-", namespace=namespace)
    apply_dgdr(kubectl, namespace, "plan", **spec)
    obj = wait_phase(kubectl, "plan", namespace, "Failed")
    message = condition(obj, "SpecGenerated")["message"]
    assert any(n in message for n in names) and "not this DGDR's" in message, message
