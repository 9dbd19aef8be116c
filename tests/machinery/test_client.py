"""KubeClient against the real apiserver: verbs, errors as ApiError, watch, metrics."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from controller.machinery.client import (
    CONFIGMAPS,
    NAMESPACES,
    NODES,
    ApiError,
    ClientOptions,
    KubeClient,
    Resource,
    TokenBucket,
    TransportError,
    is_transient,
    retry_on_conflict,
)
from metrics import REGISTRY
from tests.eventually import async_eventually
from tests.faultproxy import FaultProxy


def cm(
    name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data or {},
    }


def test_resource_paths() -> None:
    assert CONFIGMAPS.path() == "/api/v1/configmaps"
    assert CONFIGMAPS.path("ns", "a") == "/api/v1/namespaces/ns/configmaps/a"
    dgdr = Resource("nvidia.com", "v1beta1", "dynamographdeploymentrequests", "X")
    assert dgdr.path("ns", "x", "status") == (
        "/apis/nvidia.com/v1beta1/namespaces/ns/dynamographdeploymentrequests/x/status"
    )
    assert NODES.path(name="n1") == "/api/v1/nodes/n1"
    with pytest.raises(ValueError, match="namespace"):
        NODES.path("ns")
    with pytest.raises(ValueError, match="namespace"):
        CONFIGMAPS.path(name="a")
    with pytest.raises(ValueError, match="name"):
        CONFIGMAPS.path("ns", subresource="status")


def test_token_bucket_debt_grows_with_demand() -> None:
    bucket = TokenBucket(qps=10, burst=2)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits[0] == 0 and waits[1] == 0
    assert 0 < waits[2] < waits[3]
    assert TokenBucket(qps=0, burst=0).reserve() == 0


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_crud_roundtrip(client: KubeClient, namespace: str, kubectl: Any) -> None:
    created = await client.create(CONFIGMAPS, cm("a", {"k": "1"}), namespace)
    assert created["metadata"]["namespace"] == namespace
    # the object is real: kubectl sees it
    assert kubectl("get", "cm", "a", "-o", "jsonpath={.data.k}", namespace=namespace).stdout == "1"

    got = await client.get(CONFIGMAPS, "a", namespace)
    got["data"]["k"] = "2"
    replaced = await client.replace(CONFIGMAPS, "a", got, namespace)
    assert replaced["data"]["k"] == "2"

    merged = await client.patch(CONFIGMAPS, "a", {"data": {"m": "x"}}, namespace)
    assert merged["data"] == {"k": "2", "m": "x"}
    jsonp = await client.patch(
        CONFIGMAPS, "a", [{"op": "remove", "path": "/data/m"}], namespace, patch_type="json"
    )
    assert jsonp["data"] == {"k": "2"}
    applied = await client.patch(
        CONFIGMAPS,
        "a",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"s": "y"}},
        namespace,
        patch_type="apply",
        field_manager="test-m1",
        force=True,
    )
    assert applied["data"]["s"] == "y"
    managers = {f["manager"] for f in applied["metadata"]["managedFields"]}
    assert "test-m1" in managers

    assert await client.delete(CONFIGMAPS, "a", namespace) is not None
    assert await client.delete(CONFIGMAPS, "a", namespace) is None
    with pytest.raises(ApiError) as err:
        await client.get(CONFIGMAPS, "a", namespace)
    assert err.value.status == 404 and err.value.reason == "NotFound"


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_errors_carry_status(client: KubeClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, cm("dup"), namespace)
    with pytest.raises(ApiError) as err:
        await client.create(CONFIGMAPS, cm("dup"), namespace)
    assert err.value.status == 409 and err.value.reason == "AlreadyExists"

    stale = await client.get(CONFIGMAPS, "dup", namespace)
    await client.patch(CONFIGMAPS, "dup", {"data": {"x": "1"}}, namespace)
    with pytest.raises(ApiError) as err:
        await client.replace(CONFIGMAPS, "dup", stale, namespace)
    assert err.value.status == 409 and err.value.reason == "Conflict"

    bad = cm("Not_A_Valid_Name")
    with pytest.raises(ApiError) as err:
        await client.create(CONFIGMAPS, bad, namespace)
    assert err.value.status == 422 and "metadata.name" in err.value.message


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_retry_on_conflict_rereads(client: KubeClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, cm("c", {"n": "0"}), namespace)
    stale = await client.get(CONFIGMAPS, "c", namespace)
    await client.patch(CONFIGMAPS, "c", {"data": {"other": "1"}}, namespace)
    calls = 0

    async def bump() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        obj = stale if calls == 1 else await client.get(CONFIGMAPS, "c", namespace)
        obj["data"]["n"] = str(int(obj["data"]["n"]) + 1)
        return await client.replace(CONFIGMAPS, "c", obj, namespace)

    out = await retry_on_conflict(bump)
    assert calls == 2
    assert out["data"] == {"n": "1", "other": "1"}


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_paginated_list_and_selector(client: KubeClient, namespace: str) -> None:
    for i in range(7):
        await client.create(CONFIGMAPS, cm(f"p{i}", labels={"parity": str(i % 2)}), namespace)
    names: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await client.list(CONFIGMAPS, namespace, limit=3, continue_=token)
        pages += 1
        names += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert pages >= 3
    assert {f"p{i}" for i in range(7)} <= set(names)
    odd = await client.list(CONFIGMAPS, namespace, label_selector="parity=1")
    assert sorted(o["metadata"]["name"] for o in odd["items"]) == ["p1", "p3", "p5"]
    nss = await client.list(NAMESPACES)
    assert namespace in {o["metadata"]["name"] for o in nss["items"]}


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_watch_streams_events_and_bookmark_params(client: KubeClient, namespace: str) -> None:
    rv = (await client.list(CONFIGMAPS, namespace))["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async for ev in client.watch(
            CONFIGMAPS, namespace, resource_version=rv, timeout_seconds=30
        ):
            if ev["type"] == "BOOKMARK":
                continue
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["type"] == "DELETED":
                return

    task = asyncio.create_task(consume())
    await client.create(CONFIGMAPS, cm("w"), namespace)
    await client.patch(CONFIGMAPS, "w", {"data": {"a": "b"}}, namespace)
    await client.delete(CONFIGMAPS, "w", namespace)
    await asyncio.wait_for(task, 20)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_requests_are_counted(client: KubeClient, namespace: str) -> None:
    def count(code: str, method: str) -> float:
        v = REGISTRY.get_sample_value(
            "rest_client_requests_total", {"code": code, "method": method, "host": client.host}
        )
        return v or 0.0

    before_ok, before_missing = count("200", "GET"), count("404", "GET")
    await client.list(CONFIGMAPS, namespace)
    with pytest.raises(ApiError):
        await client.get(CONFIGMAPS, f"missing-{uuid.uuid4().hex[:6]}", namespace)
    assert count("200", "GET") == before_ok + 1
    assert count("404", "GET") == before_missing + 1
    hist = REGISTRY.get_sample_value("rest_client_request_duration_seconds_count", {"verb": "list"})
    assert hist and hist >= 1


# -- faults on the wire (through the proxy) -----------------------------------------------------


def retries(code: str, verb: str) -> float:
    v = REGISTRY.get_sample_value("rest_client_request_retries_total", {"code": code, "verb": verb})
    return v or 0.0


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_reads_are_retried_on_throttle_and_server_errors(
    fault_proxy: FaultProxy, client: KubeClient, namespace: str
) -> None:
    await client.create(CONFIGMAPS, cm("r", {"k": "v"}), namespace)
    opts = ClientOptions(retry_base=0.01, retry_cap=0.1)
    async with await KubeClient.connect(fault_proxy.kubeconfig, options=opts) as proxied:
        path = rf"/namespaces/{namespace}/configmaps/r$"
        fault_proxy.fail_next("GET", path, 500, times=2)
        fault_proxy.fail_next("GET", path, 429, times=1, retry_after=0)
        before_500, before_429 = retries("500", "get"), retries("429", "get")
        got = await proxied.get(CONFIGMAPS, "r", namespace)
        assert got["data"] == {"k": "v"}
        assert [s.status for s in fault_proxy.seen] == [500, 500, 429, 200]
        assert retries("500", "get") == before_500 + 2
        assert retries("429", "get") == before_429 + 1

        # Retries are bounded: a server that keeps failing surfaces as the error.
        fault_proxy.fail_next("GET", path, 503, times=10)
        with pytest.raises(ApiError) as err:
            await proxied.get(CONFIGMAPS, "r", namespace)
        assert err.value.status == 503
        assert sum(1 for s in fault_proxy.seen if s.status == 503) == opts.max_retries + 1


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_writes_retry_only_when_the_server_did_not_act(
    fault_proxy: FaultProxy, namespace: str
) -> None:
    opts = ClientOptions(retry_base=0.01, retry_cap=0.1)
    async with await KubeClient.connect(fault_proxy.kubeconfig, options=opts) as proxied:
        fault_proxy.fail_next("POST", r"/configmaps", 429, retry_after=0)
        created = await proxied.create(CONFIGMAPS, cm("w1"), namespace)  # 429: not processed
        assert created["metadata"]["name"] == "w1"
        fault_proxy.fail_next("POST", r"/configmaps", 500)
        with pytest.raises(ApiError) as err:  # 500 on a write: maybe applied, so not retried
            await proxied.create(CONFIGMAPS, cm("w2"), namespace)
        assert err.value.status == 500
        posts = [s.status for s in fault_proxy.seen if s.method == "POST"]
        assert posts == [429, 201, 500]


# What kube-apiserver v1.36 answers right after a restart, before its handlers are installed.
NOT_READY_503 = (
    "the request has been made before all known HTTP paths have been installed, please try again"
)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_a_restarting_apiservers_503_is_retried_even_for_writes(
    fault_proxy: FaultProxy, namespace: str
) -> None:
    opts = ClientOptions(retry_base=0.01, retry_cap=0.1)
    async with await KubeClient.connect(fault_proxy.kubeconfig, options=opts) as proxied:
        fault_proxy.fail_next("POST", r"/configmaps", 503, times=2, message=NOT_READY_503)
        created = await proxied.create(CONFIGMAPS, cm("after-restart"), namespace)
        assert created["metadata"]["name"] == "after-restart"
        fault_proxy.fail_next("PATCH", r"/configmaps/after-restart", 503, message=NOT_READY_503)
        await proxied.patch(CONFIGMAPS, "after-restart", {"data": {"k": "v"}}, namespace)
        # Any other 503 on a write may have been acted on: not resent.
        fault_proxy.fail_next("POST", r"/configmaps", 503)
        with pytest.raises(ApiError) as err:
            await proxied.create(CONFIGMAPS, cm("other-503"), namespace)
        assert err.value.status == 503 and is_transient(err.value)
        writes = [s.status for s in fault_proxy.seen if s.method in ("POST", "PATCH")]
        assert writes == [503, 503, 201, 503, 200, 503]


def test_transient_failures_are_told_from_refusals() -> None:
    assert is_transient(TransportError("connection refused", before_send=True))
    assert is_transient(ApiError(503, "ServiceUnavailable", NOT_READY_503))
    assert is_transient(ApiError(409, "Conflict", "the object has been modified"))
    assert is_transient(ApiError(429, "TooManyRequests", "slow down"))
    assert is_transient(TimeoutError())
    for status in (400, 403, 404, 422):
        assert not is_transient(ApiError(status, "No", "refused"))
    assert not is_transient(KeyError("bug"))


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_conflict_on_status_write_surfaces_as_409(
    fault_proxy: FaultProxy, client: KubeClient, namespace: str
) -> None:
    # A real 409 from a real status subresource: Namespace/status with a stale resourceVersion.
    stale = await client.get(NAMESPACES, namespace)
    await client.patch(NAMESPACES, namespace, {"metadata": {"labels": {"bump": "1"}}})
    with pytest.raises(ApiError) as err:
        await client.replace(NAMESPACES, namespace, stale, subresource="status")
    assert err.value.status == 409 and err.value.reason == "Conflict"

    # And an injected one, never retried by the client (the status writer re-reads instead).
    async with await KubeClient.connect(fault_proxy.kubeconfig) as proxied:
        fresh = await proxied.get(NAMESPACES, namespace)
        fault_proxy.fail_next("PUT", rf"/namespaces/{namespace}/status", 409, times=1)
        with pytest.raises(ApiError) as err:
            await proxied.replace(NAMESPACES, namespace, fresh, subresource="status")
        assert err.value.status == 409
        written = await proxied.replace(NAMESPACES, namespace, fresh, subresource="status")
        assert written["metadata"]["name"] == namespace


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_cut_stream_and_silent_stream_end_as_transport_errors(
    fault_proxy: FaultProxy, namespace: str
) -> None:
    opts = ClientOptions(watch_read_timeout=1.0)
    async with await KubeClient.connect(fault_proxy.kubeconfig, options=opts) as proxied:
        rv = (await proxied.list(CONFIGMAPS, namespace))["metadata"]["resourceVersion"]

        async def drain() -> None:
            async for _ in proxied.watch(
                CONFIGMAPS, namespace, resource_version=rv, timeout_seconds=60
            ):
                pass

        task = asyncio.create_task(drain())
        await async_eventually(fault_proxy.open_watches, timeout=10, message="the watch opens")
        assert "allowWatchBookmarks=true" in fault_proxy.watch_requests()[-1].path
        fault_proxy.cut_all()
        with pytest.raises(TransportError):
            await asyncio.wait_for(task, 10)

        fault_proxy.stall_watches()  # the client-side read bound ends a silent stream too
        with pytest.raises(TransportError):
            await asyncio.wait_for(drain(), 10)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_bad_credentials_and_unknown_context_are_clear_errors(
    control_plane: Any, tmp_path: Any, namespace: str
) -> None:
    bad = control_plane.kubeconfig_for_token("not-a-token", tmp_path / "bad-kubeconfig")
    async with await KubeClient.connect(bad) as c:
        with pytest.raises(ApiError) as err:  # credentials re-read once, then the 401 surfaces
            await c.get(NAMESPACES, namespace)
        assert err.value.status == 401
    with pytest.raises(Exception, match="no-such-context"):
        await KubeClient.connect(control_plane.kubeconfig, context="no-such-context")
    async with await KubeClient.connect(control_plane.kubeconfig, context="local") as c:
        assert (await c.get(NAMESPACES, namespace))["metadata"]["name"] == namespace


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_client_side_rate_limit_engages(kubeconfig: str, namespace: str) -> None:
    def waited() -> float:
        v = REGISTRY.get_sample_value(
            "rest_client_rate_limiter_duration_seconds_sum", {"verb": "get"}
        )
        return v or 0.0

    before = waited()
    async with await KubeClient.connect(kubeconfig, qps=2, burst=1) as slow:
        for _ in range(3):
            await slow.get(NAMESPACES, namespace)
    assert waited() > before  # the bucket held 1 token: later requests had to wait for refills


def test_reading_a_kubeconfig_does_not_load_the_generated_client() -> None:
    """kubernetes_asyncio's package imports ~840 generated modules (~60 MB per process); the
    controller needs only its credential loaders. The full library still works on demand."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import controller.machinery.client\n"
        "loaded = [m for m in sys.modules if m.startswith('kubernetes_asyncio.client.')]\n"
        "assert not any('.models' in m or '.api.' in m for m in loaded), loaded\n"
        "from kubernetes_asyncio import client\n"
        "assert client.CoreV1Api.__name__ == 'CoreV1Api'\n"
        "assert client.ApiClient.__module__ == 'kubernetes_asyncio.client.api_client'\n"
        "import kubernetes_asyncio.watch\n"
        "print(len(loaded))\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) < 10
