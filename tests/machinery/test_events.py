"""EventRecorder on the real apiserver, read back with the real kubectl."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.machinery.client import CONFIGMAPS, EVENTS, NAMESPACES, ClientOptions, KubeClient
from controller.machinery.events import NOTE_MAX, EventRecorder
from tests.faultproxy import FaultProxy


async def make_cm(client: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}
    return await client.create(CONFIGMAPS, body, namespace)


def events_of(kubectl: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get",
        "events.v1.events.k8s.io",
        "-o",
        "json",
        f"--field-selector=regarding.name={name}",
        namespace=namespace,
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_describe_shows_events_and_repeats_aggregate(
    client: KubeClient, namespace: str, kubectl: Any
) -> None:
    obj = await make_cm(client, namespace, "target")
    recorder = EventRecorder(client, "test-controller", series_write_interval=0)
    await recorder.record(obj, "Normal", "Validated", "Spec of target is valid.")
    for _ in range(3):
        await recorder.record(obj, "Warning", "ProfilingFailed", "No layout fits the budget.")

    described = kubectl("describe", "configmap", "target", namespace=namespace).stdout
    assert "Validated" in described and "Spec of target is valid." in described
    assert "ProfilingFailed" in described and "(x3 over" in described
    assert "test-controller" in described  # the From column

    items = events_of(kubectl, namespace, "target")
    assert len(items) == 2  # the three warnings are one Event with a series
    warning = next(e for e in items if e["reason"] == "ProfilingFailed")
    assert warning["series"]["count"] == 3
    assert warning["regarding"]["uid"] == obj["metadata"]["uid"]
    assert warning["regarding"]["kind"] == "ConfigMap"
    assert warning["reportingController"] == "test-controller"
    assert warning["type"] == "Warning"


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_throttled_series_counts_are_flushed(
    client: KubeClient, namespace: str, kubectl: Any
) -> None:
    obj = await make_cm(client, namespace, "hot")
    recorder = EventRecorder(client, "test-controller", series_write_interval=3600)
    for _ in range(10):
        await recorder.record(obj, "Normal", "Requeued", "Waiting for the deployment.")
    (event,) = events_of(kubectl, namespace, "hot")
    assert event["series"]["count"] == 2  # the first repeat is written at once, then throttled
    await recorder.flush()
    (event,) = events_of(kubectl, namespace, "hot")
    assert event["series"]["count"] == 10


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_deleted_event_is_recreated_and_cluster_scoped_goes_to_default(
    client: KubeClient, namespace: str, kubectl: Any
) -> None:
    obj = await make_cm(client, namespace, "again")
    recorder = EventRecorder(client, "test-controller", series_write_interval=0)
    await recorder.record(obj, "Normal", "Done", "x" * (NOTE_MAX + 50))
    (first,) = events_of(kubectl, namespace, "again")
    assert len(first["note"]) <= NOTE_MAX
    await client.delete(EVENTS, first["metadata"]["name"], namespace)
    await recorder.record(obj, "Normal", "Done", "x" * (NOTE_MAX + 50))
    (second,) = events_of(kubectl, namespace, "again")
    assert second["metadata"]["name"] != first["metadata"]["name"]

    ns_obj = await client.get(NAMESPACES, namespace)
    await recorder.record(ns_obj, "Normal", "Seen", f"Namespace {namespace} seen.")
    found = events_of(kubectl, "default", namespace)
    assert [e["reason"] for e in found] == ["Seen"]
    assert found[0]["regarding"]["kind"] == "Namespace"


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_record_never_raises(
    fault_proxy: FaultProxy, client: KubeClient, namespace: str, kubectl: Any
) -> None:
    obj = await make_cm(client, namespace, "victim")
    proxied = await KubeClient.connect(fault_proxy.kubeconfig, options=ClientOptions(max_retries=0))
    try:
        recorder = EventRecorder(proxied, "test-controller", timeout=5)
        fault_proxy.fail_next("POST", r"/events", 500)
        await recorder.record(obj, "Normal", "Lost", "This one hits a 500.")
        await recorder.record({"kind": "ConfigMap", "metadata": {}}, "Normal", "Bad", "No name.")
        await recorder.record(obj, "Sideways", "Odd", "Unknown type becomes Warning.")
        await recorder.record(obj, "Normal", "Kept", "The recorder still works afterwards.")
    finally:
        await proxied.close()
    reasons = sorted(e["reason"] for e in events_of(kubectl, namespace, "victim"))
    assert reasons == ["Kept", "Odd"]
    odd = next(e for e in events_of(kubectl, namespace, "victim") if e["reason"] == "Odd")
    assert odd["type"] == "Warning"
