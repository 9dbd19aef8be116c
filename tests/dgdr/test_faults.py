"""API faults around the real apiserver: the controller retries and still finishes the DGDR.

The controller talks to the apiserver through the fault-injecting proxy, which answers chosen
requests with 409 (a conflicting status write), 500 and 429 before letting them through.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    ControllerProcess,
    condition,
    dgdr_manifest,
    events_for,
    wait_phase,
)
from tests.eventually import eventually
from tests.faultproxy import FaultProxy
from tests.machinery.conftest import fault_proxy  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.cluster

STATUS = r"/dynamographdeploymentrequests/[^/]+/status$"
OBJECT = r"/dynamographdeploymentrequests/[^/]+$"


@pytest.mark.asyncio
async def test_conflicts_and_server_errors_on_writes_are_retried(
    fault_proxy: FaultProxy,  # noqa: F811
    control_plane: LocalControlPlane,
    crds: list[str],
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    fault_proxy.fail_next("PUT", STATUS, 409, times=2)
    fault_proxy.fail_next("PUT", STATUS, 500, times=2)
    fault_proxy.fail_next("PATCH", OBJECT, 429, times=2)
    c = ControllerProcess(
        control_plane,
        tmp_path,
        "--namespace",
        namespace,
        "--lease-name",
        f"dgdr-{namespace}",
        kubeconfig=fault_proxy.kubeconfig,
    )
    try:
        await asyncio.to_thread(c.wait_ready)
        await asyncio.to_thread(
            kubectl,
            "apply",
            "-f",
            "-",
            input=dgdr_manifest("faulty", **SMALL, autoApply=False),
            namespace=namespace,
        )
        obj = await asyncio.to_thread(wait_phase, kubectl, "faulty", namespace, "Ready", 90)
    finally:
        await asyncio.to_thread(c.stop)
    injected = [
        s for s in fault_proxy.seen if s.fault and "dynamographdeploymentrequests" in s.path
    ]
    assert sorted(s.status or 0 for s in injected) == [409, 409, 429, 429, 500, 500]
    assert condition(obj, "Succeeded")["reason"] == "SpecGenerated"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    # Each refused write was made again and went through.
    passed = [
        s
        for s in fault_proxy.seen
        if not s.fault and s.method == "PUT" and s.path.endswith("/status") and s.status == 200
    ]
    assert passed


@pytest.mark.asyncio
async def test_profile_finishes_with_every_watch_stalled(
    fault_proxy: FaultProxy,  # noqa: F811
    control_plane: LocalControlPlane,
    crds: list[str],
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The profile's own progress drives the DGDR on: with every watch stalled mid-profile the
    controller's cache never shows its own writes, yet it finishes, with exactly one profile
    and no transition done twice (it re-reads what its cache has not caught up with)."""
    c = ControllerProcess(
        control_plane,
        tmp_path,
        "--namespace",
        namespace,
        "--lease-name",
        f"dgdr-{namespace}",
        "--watchdog-timeout",
        "600",
        kubeconfig=fault_proxy.kubeconfig,
    )
    try:
        await asyncio.to_thread(c.wait_ready)
        workers = await asyncio.to_thread(
            lambda: eventually(c.workers, timeout=30, message="pool workers")
        )
        for w in workers:
            w.send_signal(signal.SIGSTOP)
        await asyncio.to_thread(
            kubectl,
            "apply",
            "-f",
            "-",
            input=dgdr_manifest("blind", **SMALL, autoApply=False),
            namespace=namespace,
        )
        await asyncio.to_thread(wait_phase, kubectl, "blind", namespace, "Profiling", 30)
        fault_proxy.stall_watches()
        for w in workers:
            w.send_signal(signal.SIGCONT)
        obj = await asyncio.to_thread(wait_phase, kubectl, "blind", namespace, "Ready", 60)
        _, metrics = await asyncio.to_thread(c.get, "/metrics")
    finally:
        fault_proxy.resume()
        await asyncio.to_thread(c.stop)
    assert condition(obj, "SpecGenerated")["status"] == "True"
    profiles = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("dgdr_profiling_duration_seconds_count")
    )
    assert profiles == 1
    reasons = [r for _, r, _ in events_for(kubectl, "blind", namespace)]
    assert reasons.count("ProfilingJobCreated") == 1
    assert reasons.count("SpecGenerated") == 1
