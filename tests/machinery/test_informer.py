"""The informer on the real apiserver, with faults injected on the wire by the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.machinery.client import CONFIGMAPS, NAMESPACES, ClientOptions, KubeClient
from controller.machinery.informer import Informer, InformerConfig
from controller.machinery.store import Store
from devtools.localplane import LocalControlPlane
from metrics import REGISTRY
from tests.eventually import async_eventually
from tests.faultproxy import WATCH, FaultProxy

FAST = InformerConfig(
    page_size=2,
    watch_timeout=30,
    watchdog_timeout=30,
    backoff_base=0.05,
    backoff_cap=0.5,
)


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


class Recorder:
    """Collects (type, name) of every event a handler gets."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.olds: dict[tuple[str, str], dict[str, Any] | None] = {}

    def __call__(self, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        ev = (type_, obj["metadata"]["name"])
        self.events.append(ev)
        self.olds[ev] = old

    def of(self, name: str) -> list[str]:
        return [t for t, n in self.events if n == name]


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(30):
            await informer.synced.wait()
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not informer.healthy()  # a stopped loop is reported as such


@contextlib.asynccontextmanager
async def connected(kubeconfig: str, **options: Any) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig, options=ClientOptions(**options))
    try:
        yield client
    finally:
        await client.close()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- store (no cluster) --------------------------------------------------------------------------


def meta(name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels}}


def test_store_relist_diff_and_label_index() -> None:
    store = Store()
    store.upsert(meta("same", "1", app="a"))
    store.upsert(meta("changed", "2", app="a"))
    store.upsert(meta("gone", "3", app="b"))
    events = store.replace([meta("same", "1", app="a"), meta("changed", "9"), meta("new", "4")])
    assert sorted((t, o["metadata"]["name"]) for t, o, _ in events) == [
        ("ADDED", "new"),
        ("DELETED", "gone"),
        ("MODIFIED", "changed"),
    ]
    deleted = next(o for t, o, _ in events if t == "DELETED")
    assert deleted["metadata"]["resourceVersion"] == "3"  # last known state
    assert [o["metadata"]["name"] for o in store.by_label("app", "a")] == ["same"]
    assert store.by_label("app", "b") == []
    store.remove("ns/same")
    assert store.by_label("app", "a") == [] and len(store) == 2


def test_store_hands_out_copies() -> None:
    store = Store()
    store.upsert(meta("x", "1", app="a"))
    got = store.get("ns/x")
    assert got is not None
    got["metadata"]["labels"]["app"] = "mutated"
    assert store.by_label("app", "a")[0]["metadata"]["labels"]["app"] == "a"


def test_store_keeps_objects_encoded_and_applies_its_transform() -> None:
    """The cache holds compact JSON, not dicts (a parsed object costs several times its JSON),
    after the transform; every read is a fresh, equal copy."""
    from controller.machinery.store import chain, strip_managed_fields

    def drop_data(obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop("data", None)
        return obj

    store = Store(chain(strip_managed_fields, drop_data))
    obj = meta("x", "1", app="a")
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]
    obj["data"] = {"big": "y" * 10_000}
    stored, old = store.upsert(obj)
    assert old is None and "data" not in stored and "managedFields" not in stored["metadata"]
    assert store.get("ns/x") == stored and store.get("ns/x") is not store.get("ns/x")
    assert store.resource_version("ns/x") == "1"
    assert store.encoded_size() < 200  # the 10 KB value never reached the cache
    entry = store._objects["ns/x"]
    assert isinstance(entry.blob, bytes)
    _, old = store.upsert(meta("x", "2", app="b"))
    assert old == stored  # the previous state, decoded for the handlers
    assert store.by_label("app", "a") == [] and len(store.by_label("app", "b")) == 1


def test_config_rejects_bad_timings() -> None:
    with pytest.raises(ValueError, match="watchdog_timeout"):
        InformerConfig(watchdog_timeout=0)
    with pytest.raises(ValueError, match="page_size"):
        InformerConfig(page_size=0)


# -- real apiserver ------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.asyncio
@pytest.mark.parametrize("watch_list", [False, True], ids=["list", "streaming-list"])
async def test_sync_then_live_events(kubeconfig: str, namespace: str, watch_list: bool) -> None:
    async with connected(kubeconfig) as client:
        for i in range(5):
            await client.create(
                CONFIGMAPS, cm(f"pre{i}", {"tier": "x" if i < 2 else "y"}), namespace
            )
        config = dataclasses.replace(FAST, watch_list=watch_list)
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=config)
        rec = Recorder()
        informer.add_handler(rec)
        relists = metric("informer_relists_total", resource="configmaps")
        async with running(informer):
            assert sorted(rec.events) == [("ADDED", f"pre{i}") for i in range(5)]
            assert metric("informer_relists_total", resource="configmaps") == relists + 1
            assert len(informer.store.by_label("tier", "x")) == 2
            obj = informer.store.get(f"{namespace}/pre0")
            assert obj is not None and obj["kind"] == "ConfigMap"
            assert "managedFields" not in obj["metadata"]

            await client.create(CONFIGMAPS, cm("live", {"tier": "x"}), namespace)
            await client.patch(CONFIGMAPS, "live", {"data": {"v": "2"}}, namespace)
            await client.delete(CONFIGMAPS, "live", namespace)
            await async_eventually(lambda: "DELETED" in rec.of("live"), message="live deleted")
            assert rec.of("live") == ["ADDED", "MODIFIED", "DELETED"]
            assert rec.olds[("MODIFIED", "live")] is not None
            assert f"{namespace}/live" not in informer.store
            assert len(informer.store.by_label("tier", "x")) == 2

            late = Recorder()
            informer.add_handler(late)  # a handler added after sync is replayed the cache
            assert sorted(late.events) == [("ADDED", f"pre{i}") for i in range(5)]

            def broken(type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
                raise RuntimeError("handler bug")

            informer.add_handler(broken)
            await client.create(CONFIGMAPS, cm("after-bug"), namespace)
            await async_eventually(
                lambda: rec.of("after-bug") == ["ADDED"], message="event past a broken handler"
            )
            assert informer.healthy()


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_stalled_watch_is_replaced_and_nothing_missed(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str
) -> None:
    cfg = InformerConfig(watch_timeout=60, watchdog_timeout=1.5, backoff_base=0.05, backoff_cap=0.5)
    async with connected(fault_proxy.kubeconfig) as client, connected(kubeconfig) as direct:
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=cfg)
        rec = Recorder()
        informer.add_handler(rec)
        silent = metric("informer_watch_restarts_total", resource="configmaps", reason="silent")
        async with running(informer):
            await async_eventually(lambda: fault_proxy.open_watches() == 1, message="watch open")
            fault_proxy.stall_watches()
            watches_before = len(fault_proxy.watch_requests())
            for i in range(3):
                await direct.create(CONFIGMAPS, cm(f"s{i}"), namespace)
            await direct.patch(CONFIGMAPS, "s0", {"data": {"k": "v"}}, namespace)
            await direct.delete(CONFIGMAPS, "s2", namespace)
            # The watchdog gives up on the silent stream and opens another one (stalled too).
            await async_eventually(
                lambda: (
                    metric("informer_watch_restarts_total", resource="configmaps", reason="silent")
                    >= silent + 1
                    and len(fault_proxy.watch_requests()) > watches_before
                ),
                message="watchdog restart",
            )
            assert rec.events == []  # nothing got through the stalled wire
            assert informer.healthy()
            fault_proxy.resume()
            await async_eventually(
                lambda: rec.of("s2") == ["ADDED", "DELETED"], message="events after resume"
            )
            await async_eventually(
                lambda: rec.of("s0") == ["ADDED", "MODIFIED"], message="s0 modified"
            )
            assert rec.of("s1") == ["ADDED"]
            assert sorted(informer.store.keys()) == [f"{namespace}/s0", f"{namespace}/s1"]


@pytest.mark.cluster
@pytest.mark.asyncio
@pytest.mark.parametrize("as_event", [True, False], ids=["error-event", "http-410"])
async def test_gone_triggers_relist_that_emits_missed_changes(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str, as_event: bool
) -> None:
    async with connected(fault_proxy.kubeconfig) as client, connected(kubeconfig) as direct:
        await direct.create(CONFIGMAPS, cm("keep"), namespace)
        await direct.create(CONFIGMAPS, cm("gone"), namespace)
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=FAST)
        rec = Recorder()
        informer.add_handler(rec)
        relists = metric("informer_relists_total", resource="configmaps")
        async with running(informer):
            await async_eventually(lambda: fault_proxy.open_watches() == 1, message="watch open")
            fault_proxy.stall_watches()
            await direct.create(CONFIGMAPS, cm("new"), namespace)
            await direct.delete(CONFIGMAPS, "gone", namespace)
            await direct.patch(CONFIGMAPS, "keep", {"data": {"k": "2"}}, namespace)
            await direct.create(CONFIGMAPS, cm("blink"), namespace)
            await direct.delete(CONFIGMAPS, "blink", namespace)
            fault_proxy.fail_next("GET", WATCH, 410, watch_event=as_event)
            assert fault_proxy.cut_all() >= 1
            await async_eventually(
                lambda: rec.of("new") == ["ADDED"], message="relist shows the new object"
            )
            assert metric("informer_relists_total", resource="configmaps") == relists + 2
            assert rec.of("gone") == ["ADDED", "DELETED"]
            deleted_state = rec.olds[("DELETED", "gone")]
            assert deleted_state is not None and deleted_state["metadata"]["name"] == "gone"
            assert rec.of("keep") == ["ADDED", "MODIFIED"]
            assert rec.of("blink") == []  # born and gone inside the gap: nothing to tell
            assert any(s.fault and s.status == 410 for s in fault_proxy.watch_requests())
            fault_proxy.resume()
            await direct.create(CONFIGMAPS, cm("after"), namespace)
            await async_eventually(
                lambda: rec.of("after") == ["ADDED"], message="watching again after relist"
            )


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_list_and_watch_errors_are_backed_off_and_retried(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str
) -> None:
    # No client-level retries: the informer's own backoff must carry it.
    async with (
        connected(fault_proxy.kubeconfig, max_retries=0) as client,
        connected(kubeconfig) as direct,
    ):
        await direct.create(CONFIGMAPS, cm("one"), namespace)
        list_path = rf"/namespaces/{namespace}/configmaps\?(?!.*watch=)"
        fault_proxy.fail_next("GET", list_path, 500, times=2)
        fault_proxy.fail_next("GET", list_path, 429, times=1, retry_after=0)
        fault_proxy.fail_next("GET", WATCH, 500, times=2)
        fault_proxy.fail_next("GET", WATCH, 429, times=1, retry_after=0)
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=FAST)
        rec = Recorder()
        informer.add_handler(rec)
        errors = metric("informer_watch_restarts_total", resource="configmaps", reason="error")
        async with running(informer):
            assert rec.events == [("ADDED", "one")]
            await direct.create(CONFIGMAPS, cm("two"), namespace)
            await async_eventually(
                lambda: rec.of("two") == ["ADDED"], message="event after watch errors"
            )
            faults = [s.status for s in fault_proxy.seen if s.fault]
            assert sorted(faults) == [429, 429, 500, 500, 500, 500]
            restarts = metric(
                "informer_watch_restarts_total", resource="configmaps", reason="error"
            )
            assert restarts == errors + 3
            assert rec.of("one") == ["ADDED"]  # the retries did not replay or duplicate


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_recovers_from_apiserver_restart(
    control_plane: LocalControlPlane, kubeconfig: str, namespace: str
) -> None:
    async with connected(kubeconfig, max_retries=0, request_timeout=5) as client:
        await client.create(CONFIGMAPS, cm("before"), namespace)
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=FAST)
        rec = Recorder()
        informer.add_handler(rec)
        task_done = False
        errors = metric("informer_watch_restarts_total", resource="configmaps", reason="error")
        async with running(informer):
            await asyncio.to_thread(control_plane.stop_apiserver)
            try:  # the informer fails and backs off meanwhile
                await async_eventually(
                    lambda: (
                        metric(
                            "informer_watch_restarts_total", resource="configmaps", reason="error"
                        )
                        > errors
                    ),
                    message="the informer sees the outage",
                )
            finally:
                await asyncio.to_thread(control_plane.start_apiserver)
            await client.create(CONFIGMAPS, cm("after"), namespace)
            await async_eventually(
                lambda: rec.of("after") == ["ADDED"], timeout=60, message="event after restart"
            )
            assert rec.of("before") == ["ADDED"]
            assert informer.healthy()
            # the outage was seen (failed re-watches), and survived without a new informer
            assert (
                metric("informer_watch_restarts_total", resource="configmaps", reason="error")
                > errors
            )
            task_done = True
        assert task_done


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_server_closed_watches_are_resumed_without_loss(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str
) -> None:
    # The server ends each watch after 1-2 s; every reopen must resume from the last version.
    cfg = InformerConfig(watch_timeout=1, backoff_base=0.05, backoff_cap=0.5)
    async with connected(fault_proxy.kubeconfig) as client, connected(kubeconfig) as direct:
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=cfg)
        rec = Recorder()
        informer.add_handler(rec)
        async with running(informer):
            for i in range(12):
                await direct.create(CONFIGMAPS, cm(f"t{i}"), namespace)
                await asyncio.sleep(0.3)  # pacing: the creates span several watch lifetimes
            await async_eventually(lambda: rec.of("t11") == ["ADDED"], message="last object")
            assert rec.events == [("ADDED", f"t{i}") for i in range(12)]
            watches = fault_proxy.watch_requests()
            assert len(watches) >= 3  # the stream really was recycled meanwhile
            assert all("allowWatchBookmarks=true" in w.path for w in watches)
            assert all("resourceVersion=" in w.path for w in watches)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_streaming_list_syncs_without_list_and_resyncs_after_gone(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str
) -> None:
    config = dataclasses.replace(FAST, watch_list=True)
    async with connected(fault_proxy.kubeconfig) as client, connected(kubeconfig) as direct:
        await direct.create(CONFIGMAPS, cm("keep"), namespace)
        await direct.create(CONFIGMAPS, cm("gone"), namespace)
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=config)
        rec = Recorder()
        informer.add_handler(rec)
        async with running(informer):
            assert sorted(rec.events) == [("ADDED", "gone"), ("ADDED", "keep")]
            assert [s for s in fault_proxy.seen if "watch=" not in s.path] == []  # no LIST
            assert "sendInitialEvents=true" in fault_proxy.watch_requests()[0].path
            await async_eventually(lambda: fault_proxy.open_watches() == 1, message="watch open")
            fault_proxy.stall_watches()
            await direct.create(CONFIGMAPS, cm("new"), namespace)
            await direct.delete(CONFIGMAPS, "gone", namespace)
            fault_proxy.fail_next("GET", WATCH, 410, watch_event=True)
            fault_proxy.cut_all()
            await async_eventually(
                lambda: any(s.fault for s in fault_proxy.watch_requests()), message="410 delivered"
            )
            fault_proxy.resume()  # the resync is itself a watch: let it flow
            await async_eventually(
                lambda: rec.of("gone") == ["ADDED", "DELETED"], message="missed delete"
            )
            assert rec.of("new") == ["ADDED"]
            assert rec.of("keep") == ["ADDED"]  # unchanged: no spurious MODIFIED
            streamed = [w for w in fault_proxy.watch_requests() if "sendInitialEvents" in w.path]
            assert len(streamed) == 2
            assert [s for s in fault_proxy.seen if "watch=" not in s.path] == []


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_streaming_list_refused_falls_back_to_list(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str
) -> None:
    config = dataclasses.replace(FAST, watch_list=True)
    async with connected(fault_proxy.kubeconfig) as client, connected(kubeconfig) as direct:
        await direct.create(CONFIGMAPS, cm("a"), namespace)
        fault_proxy.fail_next("GET", r"sendInitialEvents=true", 400)
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=config)
        rec = Recorder()
        informer.add_handler(rec)
        async with running(informer):
            assert rec.events == [("ADDED", "a")]
            lists = [s for s in fault_proxy.seen if "watch=" not in s.path]
            assert len(lists) == 1 and lists[0].status == 200
            await direct.create(CONFIGMAPS, cm("b"), namespace)
            await async_eventually(
                lambda: rec.of("b") == ["ADDED"], message="live event after fallback"
            )


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_cluster_scoped_kind_keys_by_name(kubeconfig: str, kubectl: Any) -> None:
    mark = f"m1-{uuid.uuid4().hex[:8]}"
    async with connected(kubeconfig) as client:
        informer = Informer(client, NAMESPACES, label_selector=f"m1-test={mark}", config=FAST)
        rec = Recorder()
        informer.add_handler(rec)
        try:
            async with running(informer):
                assert rec.events == []
                await client.create(
                    NAMESPACES, {"metadata": {"name": mark, "labels": {"m1-test": mark}}}
                )
                await async_eventually(lambda: rec.of(mark) == ["ADDED"], message="namespace added")
                assert informer.store.keys() == [mark]
                assert [
                    o["metadata"]["name"] for o in informer.store.by_label("m1-test", mark)
                ] == [mark]
        finally:
            kubectl("delete", "namespace", mark, "--wait=false", check=False)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_healthy_turns_false_while_data_stops_flowing(
    fault_proxy: FaultProxy, kubeconfig: str, namespace: str
) -> None:
    config = dataclasses.replace(FAST, stuck_after=1.0)
    async with connected(fault_proxy.kubeconfig) as client, connected(kubeconfig) as direct:
        informer = Informer(client, CONFIGMAPS, namespace=namespace, config=config)
        rec = Recorder()
        informer.add_handler(rec)
        assert informer.healthy()  # not started is not stuck
        async with running(informer):
            await async_eventually(lambda: fault_proxy.open_watches() == 1, message="watch open")
            fault_proxy.stall_watches()
            await direct.create(CONFIGMAPS, cm("held"), namespace)
            await async_eventually(
                lambda: not informer.healthy(), message="unhealthy while stalled"
            )
            fault_proxy.resume()
            await async_eventually(
                lambda: rec.of("held") == ["ADDED"], message="held event delivered"
            )
            assert informer.healthy()
