"""KubeClient against the real apiserver: verbs, errors as ApiError, watch, metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from controller.machinery.client import (
    CONFIGMAPS,
    NAMESPACES,
    NODES,
    ApiError,
    KubeClient,
    Resource,
    TokenBucket,
    retry_on_conflict,
)
from metrics import REGISTRY


def cm(
    name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data or {},
    }


@pytest_asyncio.fixture
async def client(kubeconfig: str) -> AsyncIterator[KubeClient]:
    c = await KubeClient.connect(kubeconfig)
    try:
        yield c
    finally:
        await c.close()


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
