"""A toy CRD converted by webhook, for the webhook and certificate tests.

``widgets.<unique group>`` has v1 (storage, ``spec.size``) and v2 (``spec.replicas``); the
converter renames the field. Each test gets its own group, so tests never share a CRD.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from controller.machinery.certs import CRDS
from controller.machinery.client import ApiError, KubeClient, Resource
from tests.eventually import async_eventually

JSON = dict[str, Any]
T = TypeVar("T")

BOOM = "boom"  # a widget of this name makes the converter raise


def unique_group() -> str:
    return f"w{uuid.uuid4().hex[:10]}.webhooktest.example.com"


def widgets(group: str, version: str) -> Resource:
    return Resource(group, version, "widgets", "Widget")


def convert(obj: JSON, desired: str) -> JSON:
    """v1 ``spec.size`` <-> v2 ``spec.replicas``."""
    if obj["metadata"]["name"] == BOOM:
        raise ValueError("boom is not convertible")
    out = copy.deepcopy(obj)
    out["apiVersion"] = desired
    spec = out.setdefault("spec", {})
    if desired.endswith("/v2") and "size" in spec:
        spec["replicas"] = spec.pop("size")
    elif desired.endswith("/v1") and "replicas" in spec:
        spec["size"] = spec.pop("replicas")
    return out


def _schema(field: str) -> JSON:
    return {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {field: {"type": "integer"}}},
            },
        }
    }


def crd_body(group: str, url: str) -> JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": _schema("size")},
                {"name": "v2", "served": True, "storage": False, "schema": _schema("replicas")},
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": url},
                },
            },
        },
    }


async def until(
    fn: Callable[[], Awaitable[T]], within: float, what: str, interval: float = 0.1
) -> T:
    """``await fn()`` until it returns a truthy value (API, assertion and connection errors
    count as not yet); bounded. :func:`tests.eventually.async_eventually` under this module's
    argument order."""
    value: T = await async_eventually(
        fn,
        timeout=within,
        interval=interval,
        message=what,
        retry_on=(ApiError, AssertionError, OSError),
    )
    return value


async def create_crd(client: KubeClient, group: str, url: str) -> str:
    """Create the CRD and wait until widgets can be listed in both versions."""
    body = crd_body(group, url)
    await client.create(CRDS, body)
    name: str = body["metadata"]["name"]

    async def served() -> bool:
        crd = await client.get(CRDS, name)
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return False
        for version in ("v1", "v2"):
            await client.list(widgets(group, version), "default", limit=1)
        return True

    await until(served, 30, f"CRD {name} established")
    return name


async def delete_crd(client: KubeClient, name: str) -> None:
    """Delete and wait (bounded) until gone, while the webhook still runs (the apiserver
    deletes the widgets first)."""
    await client.delete(CRDS, name)

    async def gone() -> bool:
        try:
            await client.get(CRDS, name)
        except ApiError as exc:
            return exc.status == 404
        return False

    # A unique group: a CRD left Terminating disturbs no other test.
    with contextlib.suppress(AssertionError):
        await until(gone, 30, f"CRD {name} deleted")


def widget(group: str, version: str, name: str, value: int) -> JSON:
    field = "size" if version == "v1" else "replicas"
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {field: value},
    }
