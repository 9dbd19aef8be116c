"""Crashes that must lose nothing: a profiling worker killed mid-profile, a leader killed mid-run.

Each test runs its own controller processes watching only its namespace, with a lease of its
own, so the faults stay inside the test.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil
import pytest

from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    Start,
    apply_dgdr,
    condition,
    dgdr_manifest,
    get_json,
    phase_of,
    wait_phase,
)
from tests.eventually import consistently, eventually

pytestmark = pytest.mark.cluster


def test_worker_killed_mid_profile_still_reaches_ready(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    c = controllers("--pool-size", "1")
    eventually(c.is_leader, timeout=30, message="leadership")
    workers = eventually(c.workers, timeout=30, message="pool worker")
    # Freeze the only worker so the profile is certainly mid-flight when it is killed.
    for w in workers:
        w.send_signal(signal.SIGSTOP)
    apply_dgdr(kubectl, namespace, "crash", **SMALL, autoApply=False)
    wait_phase(kubectl, "crash", namespace, "Profiling")
    for w in workers:
        w.send_signal(signal.SIGKILL)
    obj = wait_phase(kubectl, "crash", namespace, "Ready", timeout=90)
    assert condition(obj, "Profiling")["reason"] == "ProfilingCompleted"
    assert all(not psutil.pid_exists(w.pid) or w.status() == psutil.STATUS_ZOMBIE for w in workers)
    # The pool replaced the worker: it still has one.
    assert eventually(c.workers, timeout=30, message="replacement worker")


def _audit_writers(audit_log: Path, namespace: str) -> list[tuple[str, str]]:
    """(timestamp, user agent) of every DGDR status write in ``namespace``, in order."""
    writes = []
    for line in audit_log.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        ref = e.get("objectRef") or {}
        if (
            ref.get("resource") == "dynamographdeploymentrequests"
            and ref.get("namespace") == namespace
            and ref.get("subresource") == "status"
            and e.get("verb") in ("update", "patch")
            and e.get("stage") == "ResponseComplete"
            and (e.get("responseStatus") or {}).get("code", 200) < 300
        ):
            writes.append((e["stageTimestamp"], e.get("userAgent", "")))
    return sorted(writes)


def test_leader_killed_mid_run_follower_finishes_everything(
    controllers: Start, control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    a = controllers()
    b = controllers()
    leader = eventually(
        lambda: next((c for c in (a, b) if c.is_leader()), None), timeout=30, message="one leader"
    )
    follower = b if leader is a else a
    assert not follower.is_leader()

    # Freeze the leader's profiling workers: every DGDR is certainly unfinished at the kill.
    frozen = eventually(leader.workers, timeout=30, message="leader's pool workers")
    for w in frozen:
        w.send_signal(signal.SIGSTOP)
    names = [f"d{i}" for i in range(20)]
    manifests = "\n---\n".join(dgdr_manifest(n, **SMALL, autoApply=False) for n in names)
    kubectl("apply", "-f", "-", input=manifests, namespace=namespace)
    eventually(
        lambda: all(phase_of(kubectl, n, namespace) == "Profiling" for n in names),
        message="every DGDR profiling on the leader",
    )
    leader.stop(signal.SIGKILL)
    for w in frozen:  # a stopped process cannot notice its parent died
        w.send_signal(signal.SIGKILL)

    for n in names:
        wait_phase(kubectl, n, namespace, "Ready", timeout=90)
    assert follower.is_leader(), follower.tail()
    # Finished properly, not just moved: the conditions say so. (Events are best-effort: one
    # the killed leader was about to record after its status write is lost, as in Kubernetes.)
    for n in names:
        obj = get_json(kubectl, "dgdr", n, namespace)
        assert condition(obj, "SpecGenerated")["status"] == "True"
        assert (
            obj["status"]["profilingResults"]["selectedConfig"]["kind"] == "DynamoGraphDeployment"
        )

    # Never two writers: every status write of the old leader precedes every one of the new.
    writes = _audit_writers(control_plane.audit_log, namespace)
    by = [ua for _, ua in writes]
    assert any(follower.identity in ua for ua in by)
    first_new = next(i for i, ua in enumerate(by) if follower.identity in ua)
    assert not any(leader.identity in ua for ua in by[first_new:]), by


def test_sigterm_hands_over_at_once(controllers: Start, kubectl: Kubectl, namespace: str) -> None:
    a = controllers()
    eventually(a.is_leader, timeout=30, message="a leads")
    # b retries only every 30 s: it can take over sooner only by seeing the release.
    b = controllers("--lease-duration", "90", "--renew-deadline", "60", "--retry-period", "30")
    # Ready = b's first attempt was answered: it follows a. Its lease watch, started with the
    # campaign, opens meanwhile; b must not lead all along.
    consistently(lambda: not b.is_leader(), duration=1, message="b follows while a leads")
    assert a.stop(signal.SIGTERM) == 0
    # Released on the way out, not left to expire: a no longer holds the lease once it exited.
    lease = json.loads(
        kubectl("get", "lease", f"dgdr-{namespace}", "-o", "json", namespace="kube-system").stdout
    )
    assert lease["spec"].get("holderIdentity") != a.identity
    eventually(b.is_leader, timeout=20, message="b leads on the release")
    apply_dgdr(kubectl, namespace, "after", **SMALL, autoApply=False)
    wait_phase(kubectl, "after", namespace, "Ready")


def test_deleting_a_dgdr_stops_its_profile(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    c = controllers("--pool-size", "1")
    eventually(c.is_leader, timeout=30, message="leadership")
    workers = eventually(c.workers, timeout=30, message="pool worker")
    for w in workers:
        w.send_signal(signal.SIGSTOP)  # the profile cannot finish before the delete
    apply_dgdr(kubectl, namespace, "gone", **SMALL)
    wait_phase(kubectl, "gone", namespace, "Profiling")
    kubectl("delete", "dgdr", "gone", "--timeout=30s", namespace=namespace)
    # The worker running the profile was killed (cancellation) and replaced by a fresh one.
    eventually(
        lambda: all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers),
        timeout=30,
        message="profiling worker killed",
    )
    fresh = eventually(
        lambda: [w for w in c.workers() if w.pid not in {x.pid for x in workers}],
        timeout=30,
        message="replacement worker",
    )
    assert all(w.status() != psutil.STATUS_STOPPED for w in fresh)
