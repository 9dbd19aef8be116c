"""The manager on the real apiserver: probes and metrics, graceful stop, and two controller
processes competing for one Lease (one writer at a time, failover on SIGKILL, hand-over on
SIGTERM, exit on a lost lease), plus no concurrent reconcile of a key under a burst of updates.

The processes run ``stamp_controller.py`` (a generic controller built on the Manager). Who wrote
what is read from the apiserver's own audit log (each process has its own user agent), so the
"never two writers" check does not trust the processes' own account.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.machinery.client import CONFIGMAPS, LEASES, ApiError, KubeClient
from controller.machinery.informer import InformerConfig
from controller.machinery.manager import EXIT_OK, Manager, ManagerConfig
from controller.machinery.workers import Result
from devtools.localplane import LocalControlPlane, free_port
from tests.eventually import async_consistently, async_eventually

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "stamp_controller.py"
SEEN, BY = "stamp.test/seen", "stamp.test/by"

LEASE, RENEW, RETRY = 3.0, 2.0, 0.4
# Bounds, not timing claims. A takeover needs at most: one jittered retry to see the dead
# leader's last renewal, a lease duration from then, and one more jittered retry; plus slack for
# a loaded machine. Finishing the work after that gets its own, looser bound.
TAKEOVER_BOUND = LEASE + 2 * 2.2 * RETRY + 5.0
FAILOVER_BOUND = TAKEOVER_BOUND + 40.0
START_BOUND = 60.0


def cm(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"stamp": "yes"}},
        "data": {"v": value},
    }


class Proc:
    """One stamp controller process; the fixture kills whatever is left."""

    def __init__(self, tmp: Path, kubeconfig: str, namespace: str, identity: str, *extra: str):
        self.identity = identity
        self.record = tmp / f"{identity}.jsonl"
        self.log = tmp / f"{identity}.log"
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [
            sys.executable,
            str(SCRIPT),
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            f"--identity={identity}",
            f"--record={self.record}",
            f"--lease={LEASE}",
            f"--renew={RENEW}",
            f"--retry={RETRY}",
            f"--health-port={self.port}",
            *extra,
        ]
        with self.log.open("wb") as log:
            self.popen = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )

    def records(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.port}{path}", timeout=aiohttp.ClientTimeout(5)
            ) as r,
        ):
            return r.status, await r.text()

    async def metric(self, needle: str) -> str | None:
        try:
            _, text = await self.get("/metrics")
        except (aiohttp.ClientError, TimeoutError):
            return None
        for line in text.splitlines():
            if line.startswith(needle):
                return line.rsplit(" ", 1)[1]
        return None

    async def wait_exit(self, within: float) -> int:
        await async_eventually(
            lambda: self.popen.poll() is not None,
            timeout=within,
            message=f"{self.identity} exits",
            on_timeout=self.tail,
        )
        return self.popen.returncode

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


@pytest.fixture
def spawn(tmp_path: Path, kubeconfig: str, namespace: str) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(identity: str, *extra: str) -> Proc:
        proc = Proc(tmp_path, kubeconfig, namespace, identity, *extra)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()


async def holder(client: KubeClient, namespace: str, lease: str = "stamp-leader") -> dict[str, Any]:
    try:
        return (await client.get(LEASES, lease, namespace))["spec"]
    except ApiError as err:
        if err.status == 404:
            return {}
        raise


async def stamped(client: KubeClient, namespace: str, names: list[str], value: str) -> bool:
    listed = await client.list(CONFIGMAPS, namespace, label_selector="stamp=yes")
    seen = {
        o["metadata"]["name"]: (o["metadata"].get("annotations") or {}).get(SEEN)
        for o in listed["items"]
    }
    return all(seen.get(n) == value for n in names)


def audit_writers(plane: LocalControlPlane, namespace: str) -> list[tuple[str, str]]:
    """(requestReceivedTimestamp, user agent) of every configmap write the apiserver accepted
    from a stamp process in ``namespace``, in the order the server received them."""
    writes = []
    for line in plane.audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        agent = entry.get("userAgent", "")
        if (
            ref.get("resource") == "configmaps"
            and ref.get("namespace") == namespace
            and entry.get("verb") in ("patch", "update")
            and agent.startswith("stamp/")
            and (entry.get("responseStatus") or {}).get("code") == 200
        ):
            writes.append((entry["requestReceivedTimestamp"], agent))
    return sorted(writes)


def assert_no_overlap(records: list[dict[str, Any]]) -> None:
    in_flight: dict[str, int] = {}
    for rec in records:
        assert not rec.get("overlap"), f"key {rec['key']} reconciled twice at once"
        if rec["event"] == "start":
            in_flight[rec["key"]] = in_flight.get(rec["key"], 0) + 1
            assert in_flight[rec["key"]] == 1, f"key {rec['key']} reconciled twice at once"
        elif rec["event"] == "end":
            in_flight[rec["key"]] -= 1


# ---- health server (no cluster) -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_health_server_named_checks_verbose_exclude_and_withheld_reasons() -> None:
    from controller.machinery.health import HealthServer

    state = {"cache": False}
    server = HealthServer("127.0.0.1", 0)
    server.add_readyz("cache", lambda: True if state["cache"] else "not synced: secret detail")
    server.add_readyz("raises", lambda: 1 / 0 == 0)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert (r.status, await r.text()) == (200, "ok")
            async with http.get(f"{base}/readyz") as r:
                body = await r.text()
                assert r.status == 500
                assert "[-]cache failed: reason withheld" in body
                assert "[-]raises failed: reason withheld" in body
                assert "secret detail" not in body
            state["cache"] = True
            async with http.get(f"{base}/readyz?exclude=raises") as r:
                assert (r.status, await r.text()) == (200, "ok")
            async with http.get(f"{base}/readyz/cache?verbose") as r:
                assert r.status == 200
                assert (await r.text()).splitlines() == ["[+]cache ok", "readyz check passed"]
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert "controller_event_loop_lag_seconds" in await r.text()
    finally:
        await server.stop()


# ---- in process --------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_manager_serves_probes_and_metrics_and_stops_gracefully(
    kubeconfig: str, client: KubeClient, namespace: str
) -> None:
    names = [f"cm-{i}" for i in range(3)]
    for name in names:
        await client.create(CONFIGMAPS, cm(name, "1"), namespace)
    lease = f"inproc-{uuid.uuid4().hex[:6]}"
    controller_name = f"inproc-{uuid.uuid4().hex[:6]}"
    manager = Manager(
        await KubeClient.connect(kubeconfig),
        ManagerConfig(
            namespaces=(namespace,),
            lease_name=lease,
            lease_namespace=namespace,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            identity="inproc",
            health_host="127.0.0.1",
            health_port=0,
            metrics_port=0,  # its own port, as controller-runtime's :8081 and :8443
            informer=InformerConfig(watch_timeout=30, watchdog_timeout=20),
            handle_signals=False,
        ),
    )
    informer = manager.informer(CONFIGMAPS, label_selector="stamp=yes")
    assert manager.informer(CONFIGMAPS, label_selector="stamp=yes") is informer  # shared
    reconciled: set[str] = set()

    async def reconcile(key: str) -> Result:
        assert informer.store.get(key) is not None
        reconciled.add(key)
        return Result()

    manager.add_controller(controller_name, reconcile, workers=2).watch(informer)
    hook_saw: list[str] = []

    async def on_stop() -> None:  # runs with work stopped but the client still open
        got = await manager.client.get(CONFIGMAPS, names[0], namespace)
        hook_saw.append(got["metadata"]["name"])

    manager.on_stop(on_stop)
    with pytest.raises(ValueError, match="already used"):
        manager.add_controller(controller_name, reconcile)
    run = asyncio.create_task(manager.run())
    try:
        await async_eventually(
            lambda: reconciled == {f"{namespace}/{n}" for n in names},
            timeout=START_BOUND,
            interval=0.1,
            message="every object reconciled",
        )
        assert manager.is_leader and manager.health is not None and manager.metrics is not None
        base = f"http://127.0.0.1:{manager.health.port}"
        assert manager.metrics.port not in (0, manager.health.port)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as r:
                assert (r.status, await r.text()) == (200, "ok")
            async with http.get(f"{base}/healthz?verbose") as r:
                body = await r.text()
                assert r.status == 200
                for check in ("informers", "leader-election", "loop", "ping"):
                    assert f"[+]{check} ok" in body
            async with http.get(f"{base}/readyz?verbose") as r:
                body = await r.text()
                assert r.status == 200
                for check in ("informers-synced", "leader-election", "ping"):
                    assert f"[+]{check} ok" in body
            async with http.get(f"{base}/healthz/informers") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz/nonexistent") as r:
                assert r.status == 404
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 404  # not on the probe port
            async with http.get(f"http://127.0.0.1:{manager.metrics.port}/metrics") as r:
                metrics = await r.text()
            async with http.get(f"http://127.0.0.1:{manager.metrics.port}/readyz") as r:
                assert r.status == 404  # and no probes on the metrics port
        ctl = controller_name
        for line in (
            f'controller_runtime_reconcile_total{{controller="{ctl}",result="success"}} 3.0',
            f'controller_runtime_max_concurrent_reconciles{{controller="{ctl}"}} 2.0',
            f'leader_election_master_status{{name="{lease}"}} 1.0',
            f'workqueue_depth{{controller="{ctl}",name="{ctl}",priority=""}} 0.0',
        ):
            assert line in metrics
        assert "rest_client_requests_total{" in metrics
        assert "process_resident_memory_bytes" in metrics
    finally:
        manager.stop()
        code = await asyncio.wait_for(run, 30)
    assert code == EXIT_OK
    assert hook_saw == [names[0]]
    spec = await holder(client, namespace, lease)
    assert not spec.get("holderIdentity")  # released on the way out


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_informer_transform_trims_what_is_cached_and_handed_to_handlers(
    kubeconfig: str, client: KubeClient, namespace: str
) -> None:
    """controller-runtime's cache transform: the owner drops what it never reads; managedFields
    are gone in any case."""
    await client.create(
        CONFIGMAPS, {**cm("big", "1"), "binaryData": {"b": "QUJD" * 100}}, namespace
    )

    def drop_binary(obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop("binaryData", None)
        return obj

    manager = Manager(
        await KubeClient.connect(kubeconfig),
        ManagerConfig(
            namespaces=(namespace,),
            leader_election=False,
            health_port=None,
            handle_signals=False,
        ),
    )
    informer = manager.informer(CONFIGMAPS, label_selector="stamp=yes", transform=drop_binary)
    assert manager.informer(CONFIGMAPS, label_selector="stamp=yes") is informer
    with pytest.raises(ValueError, match="transform"):
        manager.informer(CONFIGMAPS, label_selector="stamp=yes", transform=lambda o: o)
    handed: list[dict[str, Any]] = []
    informer.add_handler(lambda _type, obj, _old: handed.append(obj))
    run = asyncio.create_task(manager.run())
    try:
        await async_eventually(
            lambda: handed,
            timeout=START_BOUND,
            interval=0.1,
            message="the object reached the handler",
        )
        cached = informer.store.get(f"{namespace}/big")
        assert cached is not None and cached["data"] == {"v": "1"}
        for obj in (cached, handed[0]):
            assert "binaryData" not in obj and "managedFields" not in obj["metadata"]
    finally:
        manager.stop()
        assert await asyncio.wait_for(run, 30) == EXIT_OK


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_a_lease_namespace_that_does_not_exist_makes_the_replica_unready(
    kubeconfig: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a ready replica that never leads: /readyz fails on leader-election and an ERROR says
    which namespace is missing and what to do."""
    missing = f"no-such-ns-{uuid.uuid4().hex[:6]}"
    manager = Manager(
        await KubeClient.connect(kubeconfig),
        ManagerConfig(
            namespaces=(namespace,),
            lease_name="lost-lease",
            lease_namespace=missing,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            identity="nowhere",
            health_host="127.0.0.1",
            health_port=0,
            handle_signals=False,
        ),
    )
    manager.informer(CONFIGMAPS, label_selector="stamp=yes")
    run = asyncio.create_task(manager.run())
    try:

        async def readyz() -> tuple[int, str] | None:
            if manager.health is None or manager.health.port == 0:
                return None
            url = f"http://127.0.0.1:{manager.health.port}/readyz?verbose"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                body = await r.text()
            return (r.status, body) if "[-]leader-election" in body else None

        async def errored() -> bool:
            return any(r.levelname == "ERROR" and missing in r.getMessage() for r in caplog.records)

        status, body = await async_eventually(
            readyz, timeout=START_BOUND, interval=0.1, message="readyz fails on leader-election"
        )
        assert status == 500 and "[+]informers-synced ok" in body
        await async_eventually(
            errored, timeout=START_BOUND, interval=0.1, message="an ERROR naming the namespace"
        )
        message = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        assert "does not exist" in message and "--lease-namespace" in message
        # Once a minute at most: the campaign retries every retry period, the log does not.
        leader_logs = [r for r in caplog.records if r.name == "controller.machinery.leader"]
        assert len(leader_logs) == 1, [r.getMessage() for r in leader_logs]
        assert not manager.is_leader
    finally:
        manager.stop()
        assert await asyncio.wait_for(run, 30) == EXIT_OK


# ---- two processes -----------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_one_writer_at_a_time_and_sigkill_failover(
    client: KubeClient, namespace: str, spawn: Callable[..., Proc], control_plane: LocalControlPlane
) -> None:
    names = [f"obj-{i:02d}" for i in range(20)]
    for name in names:
        await client.create(CONFIGMAPS, cm(name, "1"), namespace)
    procs = {p.identity: p for p in (spawn("alpha"), spawn("beta"))}

    spec = await async_eventually(
        lambda: holder(client, namespace), timeout=START_BOUND, interval=0.1, message="a leader"
    )
    await async_eventually(
        lambda: stamped(client, namespace, names, "1"),
        timeout=START_BOUND,
        interval=0.1,
        message="all stamped v=1",
    )
    spec = await holder(client, namespace)
    leader = procs[spec["holderIdentity"]]
    follower = next(p for p in procs.values() if p is not leader)

    # The follower is ready (warm caches), exports metrics, and is not acting.
    assert (
        await async_eventually(
            lambda: follower.metric("leader_election_master_status"),
            timeout=10,
            interval=0.1,
            message="follower metrics",
        )
        == "0.0"
    )
    assert await leader.metric("leader_election_master_status") == "1.0"
    status, _ = await follower.get("/readyz")
    assert status == 200
    assert not [r for r in follower.records() if r["event"] == "write"]

    relists = await follower.metric('informer_relists_total{resource="configmaps"}')
    assert relists is not None

    # Kill the leader without warning, then change every object: only a new leader can act.
    leader.popen.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await leader.wait_exit(10)
    for name in names:
        await client.patch(CONFIGMAPS, name, {"data": {"v": "2"}}, namespace)

    async def taken_over() -> bool:
        return (await holder(client, namespace)).get("holderIdentity") == follower.identity

    await async_eventually(
        taken_over, timeout=TAKEOVER_BOUND - (time.monotonic() - killed), message="takeover"
    )
    await async_eventually(
        lambda: stamped(client, namespace, names, "2"),
        timeout=FAILOVER_BOUND,
        interval=0.1,
        message="the follower finished every object after the leader died",
    )
    spec = await holder(client, namespace)
    assert spec["holderIdentity"] == follower.identity
    assert spec["leaseTransitions"] >= 1
    # It took over from its warm cache: no new list at takeover.
    assert await follower.metric('informer_relists_total{resource="configmaps"}') == relists

    # The apiserver's audit log: the writers form one block per leader, never interleaved.
    writers = [agent for _, agent in audit_writers(control_plane, namespace)]
    blocks = [a for i, a in enumerate(writers) if i == 0 or writers[i - 1] != a]
    assert blocks in (
        [f"stamp/{leader.identity}", f"stamp/{follower.identity}"],
        [f"stamp/{follower.identity}"],
    ), blocks
    assert writers.count(f"stamp/{follower.identity}") >= len(names)  # all v=2 stamps
    for proc in procs.values():
        assert_no_overlap(proc.records())
    # managedFields agree: only the two stamp field managers ever wrote the annotations.
    obj = await client.get(CONFIGMAPS, names[0], namespace)
    managers = {m["manager"] for m in obj["metadata"].get("managedFields", [])}
    assert f"stamp-{follower.identity}" in managers
    assert managers <= {
        f"stamp-{leader.identity}",
        f"stamp-{follower.identity}",
        "controller-machinery",
    }


# Lease settings of the takeover test: a retry period close to the 2 s slack, so that a follower
# that learned of renewals only from its own polls (up to 2.2 retry periods late, then another
# poll after the expiry) would overshoot; retry + renew deadline stays below the lease duration,
# so the dead leader's own deadline has passed before anyone may take over.
TK_LEASE, TK_RENEW, TK_RETRY = 6.0, 4.0, 1.8
TAKEOVER_SAMPLES = 5


def _micro_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_takeover_after_sigkill_within_lease_duration_plus_2s(
    client: KubeClient, namespace: str, spawn: Callable[..., Proc]
) -> None:
    """The issue's bound, on every sample: the follower takes the Lease at most lease duration +
    2 s after the leader was SIGKILLed. Measured from the kill (wall clock of this machine) to
    the acquireTime the new holder wrote (same clock)."""
    lease_args = (f"--lease={TK_LEASE}", f"--renew={TK_RENEW}", f"--retry={TK_RETRY}")
    alive: dict[str, Proc] = {}

    def start(i: int) -> None:
        proc = spawn(f"tk{i}", *lease_args)
        alive[proc.identity] = proc

    start(0)
    start(1)
    samples: list[float] = []
    for i in range(TAKEOVER_SAMPLES):
        spec = await async_eventually(
            lambda: holder(client, namespace), timeout=START_BOUND, message="a leader"
        )
        leader = alive.pop(spec["holderIdentity"])
        (follower,) = alive.values()

        async def following(proc: Proc = follower) -> bool:
            try:
                return (await proc.get("/readyz/leader-election"))[0] == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await async_eventually(
            following,
            timeout=START_BOUND,
            interval=0.1,
            message=f"{follower.identity} follows the lease",
        )

        # Let the follower see the leader renew twice (the steady state a kill interrupts).
        async def renewed_twice(seen: set[str] = set()) -> bool:  # noqa: B006 (one per sample)
            seen.add((await holder(client, namespace)).get("renewTime", ""))
            return len(seen) >= 3

        await async_eventually(
            renewed_twice, timeout=START_BOUND, interval=0.1, message="two renewals"
        )
        leader.popen.send_signal(signal.SIGKILL)
        killed = time.time()
        await leader.wait_exit(10)

        async def taken(proc: Proc = follower) -> dict[str, Any] | None:
            got = await holder(client, namespace)
            return got if got.get("holderIdentity") == proc.identity else None

        spec = await async_eventually(
            taken, timeout=TK_LEASE + 3 * 2.2 * TK_RETRY + 10, message="takeover"
        )
        samples.append(_micro_time(spec["acquireTime"]) - killed)
        if i + 1 < TAKEOVER_SAMPLES:
            start(i + 2)
    print(f"takeover after SIGKILL (lease {TK_LEASE}s): {', '.join(f'{s:.2f}' for s in samples)}")
    assert max(samples) <= TK_LEASE + 2.0, samples
    assert min(samples) > 0, samples


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_sigterm_releases_the_lease_and_hands_over(
    client: KubeClient, namespace: str, spawn: Callable[..., Proc]
) -> None:
    procs = {p.identity: p for p in (spawn("gamma"), spawn("delta"))}
    spec = await async_eventually(
        lambda: holder(client, namespace), timeout=START_BOUND, interval=0.1, message="a leader"
    )
    leader = procs[spec["holderIdentity"]]
    follower = next(p for p in procs.values() if p is not leader)
    transitions = spec.get("leaseTransitions", 0)
    await async_eventually(
        lambda: follower.metric("leader_election_master_status"),
        timeout=START_BOUND,
        interval=0.1,
        message="follower up",
    )

    leader.popen.send_signal(signal.SIGTERM)
    assert await leader.wait_exit(30) == 0, leader.tail()
    # Released on the way out: the lease no longer names the old leader, at once.
    spec = await holder(client, namespace)
    assert spec.get("holderIdentity") != leader.identity

    await client.create(CONFIGMAPS, cm("after-handover", "7"), namespace)
    await async_eventually(
        lambda: stamped(client, namespace, ["after-handover"], "7"),
        timeout=FAILOVER_BOUND,
        interval=0.1,
        message="the new leader works",
    )
    spec = await holder(client, namespace)
    assert spec["holderIdentity"] == follower.identity
    assert spec["leaseTransitions"] == transitions + 1
    obj = await client.get(CONFIGMAPS, "after-handover", namespace)
    assert obj["metadata"]["annotations"][BY] == follower.identity


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_lost_lease_stops_the_process_with_a_nonzero_exit(
    client: KubeClient, namespace: str, spawn: Callable[..., Proc], kubectl: Callable[..., Any]
) -> None:
    proc = spawn("epsilon")
    await async_eventually(
        lambda: holder(client, namespace), timeout=START_BOUND, interval=0.1, message="a leader"
    )
    patch = {"spec": {"holderIdentity": "usurper", "leaseDurationSeconds": 3600}}
    kubectl(
        "patch",
        "lease",
        "stamp-leader",
        "--type=merge",
        "-p",
        json.dumps(patch),
        namespace=namespace,
    )
    code = await proc.wait_exit(RENEW + 2 * RETRY + 30)
    assert code != 0, proc.tail()
    assert "leader election lost" in proc.log.read_text()


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_no_key_reconciled_twice_at_once_under_50_parallel_updates(
    client: KubeClient, namespace: str, spawn: Callable[..., Proc]
) -> None:
    others = [f"other-{i}" for i in range(5)]
    for name in ["hot", *others]:
        await client.create(CONFIGMAPS, cm(name, "0"), namespace)
    proc = spawn("zeta", "--workers=4", "--work-delay=0.02")
    await async_eventually(
        lambda: stamped(client, namespace, ["hot", *others], "0"),
        timeout=START_BOUND,
        interval=0.1,
        message="initial stamps",
    )

    async def update(name: str, value: int) -> None:
        await client.patch(CONFIGMAPS, name, {"data": {"v": str(value)}}, namespace)

    await asyncio.gather(
        *(update("hot", i) for i in range(1, 51)), *(update(n, 99) for n in others)
    )
    final = (await client.get(CONFIGMAPS, "hot", namespace))["data"]["v"]
    await async_eventually(
        lambda: stamped(client, namespace, ["hot"], final),
        timeout=START_BOUND,
        interval=0.1,
        message="final stamp",
    )
    await async_eventually(
        lambda: stamped(client, namespace, others, "99"),
        timeout=START_BOUND,
        interval=0.1,
        message="others stamped",
    )

    records = proc.records()
    assert_no_overlap(records)
    hot = [r for r in records if r["key"] == f"{namespace}/hot" and r["event"] == "start"]
    assert 2 <= len(hot) <= 52  # reconciled again after the burst, never more than once per event
    # The check could have seen overlap: workers did run side by side on different keys.
    in_flight, most = 0, 0
    for rec in records:
        in_flight += {"start": 1, "end": -1}.get(rec["event"], 0)
        most = max(most, in_flight)
    assert most >= 2


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_caches_that_never_sync_fail_the_run_and_a_stop_meanwhile_is_graceful(
    kubeconfig: str, namespace: str
) -> None:
    from controller.machinery.client import Resource

    missing = Resource("example.invalid", "v1", "nothings", "Nothing")

    configs = {
        "timeout": ManagerConfig(
            namespaces=(namespace,),
            leader_election=False,
            health_port=None,
            cache_sync_timeout=1.0,
            informer=InformerConfig(backoff_base=0.1, backoff_cap=0.2),
            handle_signals=False,
        ),
        "stopped": ManagerConfig(
            namespaces=(namespace,),
            leader_election=False,
            health_port=None,
            cache_sync_timeout=60.0,
            informer=InformerConfig(backoff_base=0.1, backoff_cap=0.2),
            handle_signals=False,
        ),
    }
    started: list[str] = []

    async def reconcile(key: str) -> Result:
        started.append(key)
        return Result()

    codes = {}
    for case, config in configs.items():
        mgr = Manager(await KubeClient.connect(kubeconfig), config)
        mgr.add_controller(f"never-{case}-{uuid.uuid4().hex[:4]}", reconcile).watch(
            mgr.informer(missing)
        )
        run = asyncio.create_task(mgr.run())
        if case == "stopped":
            await async_consistently(
                lambda: not run.done(),  # noqa: B023 (awaited in this iteration)
                duration=0.5,
                message="the run waits for caches that never sync",
            )
            mgr.stop()
        codes[case] = await asyncio.wait_for(run, 30)
        assert not mgr.is_leader
    assert codes == {"timeout": 1, "stopped": 0}
    assert started == []  # no worker ever ran without synced caches


def test_identity_and_lease_namespace_come_from_the_downward_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controller.machinery.manager import default_identity, default_lease_namespace

    monkeypatch.setenv("POD_NAME", "ctl-7d9f")
    monkeypatch.setenv("POD_UID", "0b6c")
    monkeypatch.setenv("POD_NAMESPACE", "dynamo-system")
    assert default_identity() == "ctl-7d9f_0b6c"
    assert default_lease_namespace() == "dynamo-system"
    monkeypatch.delenv("POD_UID")
    first, second = default_identity(), default_identity()
    assert first.startswith("ctl-7d9f_") and first != second  # never shared by two incarnations


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"workers": 0}, "workers"),
        ({"namespaces": ()}, "namespaces"),
        ({"lease_duration": 5.0, "renew_deadline": 5.0}, "lease_duration"),
        ({"renew_deadline": 2.0, "retry_period": 2.0}, "renew_deadline"),
        ({"shutdown_timeout": -1.0}, "shutdown_timeout"),
    ],
)
def test_manager_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ManagerConfig(**kwargs)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_lost_lease_cancels_the_reconcile_in_flight_and_returns_1(
    kubeconfig: str, client: KubeClient, namespace: str, kubectl: Callable[..., Any]
) -> None:
    await client.create(CONFIGMAPS, cm("slow", "1"), namespace)
    lease = f"lost-{uuid.uuid4().hex[:6]}"
    manager = Manager(
        await KubeClient.connect(kubeconfig),
        ManagerConfig(
            namespaces=(namespace,),
            lease_name=lease,
            lease_namespace=namespace,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            identity="doomed",
            health_port=None,
            shutdown_timeout=60.0,  # a graceful stop would wait this long; a lost lease must not
            handle_signals=False,
        ),
    )
    informer = manager.informer(CONFIGMAPS, label_selector="stamp=yes")
    entered, outcome = asyncio.Event(), []

    async def reconcile(key: str) -> Result:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return Result()

    manager.add_controller(f"lost-{uuid.uuid4().hex[:4]}", reconcile).watch(informer)
    run = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(entered.wait(), START_BOUND)
        patch = {"spec": {"holderIdentity": "usurper", "leaseDurationSeconds": 3600}}
        kubectl(
            "patch", "lease", lease, "--type=merge", "-p", json.dumps(patch), namespace=namespace
        )
        code = await asyncio.wait_for(run, RENEW + 2 * RETRY + 10)
    finally:
        if not run.done():
            manager.stop()
            await asyncio.wait_for(run, 70)
    assert code == 1
    assert outcome == ["cancelled"]
    assert not manager.is_leader
    assert (await holder(client, namespace, lease))["holderIdentity"] == "usurper"


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_several_namespaces_are_watched_as_one_informer(
    kubeconfig: str, client: KubeClient, namespace: str, kubectl: Callable[..., Any]
) -> None:
    from controller.machinery.multi_namespace import MultiNamespaceInformer

    second, unwatched = (f"{namespace}-{suffix}" for suffix in ("b", "x"))
    for ns in (second, unwatched):
        kubectl("create", "namespace", ns)
    try:
        for ns in (namespace, second, unwatched):
            await client.create(CONFIGMAPS, cm("same-name", ns), ns)
        manager = Manager(
            await KubeClient.connect(kubeconfig),
            ManagerConfig(
                namespaces=(namespace, second),
                leader_election=False,
                health_port=None,
                handle_signals=False,
            ),
        )
        informer = manager.informer(CONFIGMAPS, label_selector="stamp=yes")
        assert isinstance(informer, MultiNamespaceInformer)
        seen: dict[str, str] = {}

        async def reconcile(key: str) -> Result:
            obj = informer.store.get(key)
            assert obj is not None
            seen[key] = obj["data"]["v"]
            return Result()

        manager.add_controller(f"multi-{uuid.uuid4().hex[:4]}", reconcile).watch(informer)
        run = asyncio.create_task(manager.run())
        try:
            await client.create(CONFIGMAPS, cm("later", second), second)
            expected = {
                f"{namespace}/same-name": namespace,
                f"{second}/same-name": second,
                f"{second}/later": second,
            }
            await async_eventually(
                lambda: seen == expected,
                timeout=START_BOUND,
                interval=0.1,
                message="both namespaces reconciled",
            )
            assert informer.synced.is_set() and informer.healthy()
            assert sorted(informer.store.keys()) == sorted(expected)
            assert len(informer.store.by_label("stamp", "yes")) == 3
            assert informer.store.get(f"{unwatched}/same-name") is None
        finally:
            manager.stop()
            assert await asyncio.wait_for(run, 30) == EXIT_OK
        assert f"{unwatched}/same-name" not in seen
    finally:
        for ns in (second, unwatched):
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_sigterm_waits_for_the_reconcile_in_flight_and_a_second_one_cuts_it_short(
    client: KubeClient, namespace: str, spawn: Callable[..., Proc]
) -> None:
    await client.create(CONFIGMAPS, cm("stuck", "1"), namespace)
    proc = spawn("eta", "--work-delay=3600", "--shutdown-timeout=3600")
    await async_eventually(
        lambda: any(r["event"] == "start" for r in proc.records()),
        timeout=START_BOUND,
        interval=0.1,
        message="reconciling",
    )
    proc.popen.send_signal(signal.SIGTERM)
    await async_consistently(
        lambda: proc.popen.poll() is None,
        duration=1.0,
        message="draining: the grace period is an hour",
    )
    proc.popen.send_signal(signal.SIGTERM)
    assert await proc.wait_exit(30) == 0, proc.tail()
    assert "stopping without waiting for workers" in proc.log.read_text()
    assert not (await holder(client, namespace)).get("holderIdentity")  # still released
    assert [r["event"] for r in proc.records()] == ["start", "end"]  # cancelled, not finished
