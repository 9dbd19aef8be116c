"""Kubernetes Events about the objects a controller manages, as ``kubectl describe`` shows them.

Events are written through events.k8s.io/v1 (the API client-go's new recorder uses); the
apiserver serves the same objects as core/v1 Events, so ``regarding`` appears as
``involvedObject`` and ``kubectl describe`` lists them under the object, with the
reporting controller as "From".

Repeats are aggregated the way client-go's ``tools/events`` does: the first occurrence creates
an Event; identical ones (same object, type, reason, action and note) within ``series_idle``
turn it into an ``EventSeries`` whose count and lastObservedTime are patched in place, at most
once per ``series_write_interval`` (pending counts are written by the next repeat or by
:meth:`EventRecorder.flush`). A hot loop therefore costs one write, not one Event per pass.

Recording never raises: an Event is a courtesy to the user, never a reason for a reconcile to
fail. Failures are logged, and each write is bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.machinery.client import EVENTS, ApiError, KubeClient

log = logging.getLogger(__name__)

JSON = dict[str, Any]
NOTE_MAX = 1024  # the apiserver rejects longer notes
_TYPES = ("Normal", "Warning")


def micro_time(ts: float | None = None) -> str:
    """A ``metav1.MicroTime`` string."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Series:
    name: str
    namespace: str
    count: int
    last_observed: float  # wall clock, for lastObservedTime
    last_seen: float  # monotonic, for idleness
    last_written: float  # monotonic
    written_count: int


class EventRecorder:
    """Records Events as ``component``; one per process, shared by every controller."""

    def __init__(
        self,
        client: KubeClient,
        component: str,
        *,
        instance: str | None = None,
        series_idle: float = 360.0,
        series_write_interval: float = 5.0,
        timeout: float = 10.0,
        cache_size: int = 4096,
    ) -> None:
        if not component:
            raise ValueError("component: must not be empty")
        self._client = client
        self.component = component[:128]
        self.instance = (instance or f"{component}-{socket.gethostname()}")[:128]
        self._series_idle = series_idle
        self._write_interval = series_write_interval
        self._timeout = timeout
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, ...], _Series] = OrderedDict()
        # One write at a time, so two identical events cannot both create an Event.
        self._lock = asyncio.Lock()

    async def record(
        self,
        obj: JSON,
        type_: str,
        reason: str,
        message: str,
        *,
        action: str | None = None,
    ) -> None:
        """Record that ``reason`` happened to ``obj``; ``action`` defaults to the reason."""
        try:
            async with asyncio.timeout(self._timeout), self._lock:
                await self._record(obj, type_, reason, message, action or reason)
        except Exception as exc:  # never raises: see the module docstring
            log.warning("event %s/%s not recorded: %s", reason, _describe(obj), exc)

    async def flush(self) -> None:
        """Write every series count not yet written (call on shutdown)."""
        for series in list(self._cache.values()):
            if series.count != series.written_count:
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._write_series(series)
                except Exception as exc:
                    log.warning("event series %s not updated: %s", series.name, exc)

    async def _record(self, obj: JSON, type_: str, reason: str, message: str, action: str) -> None:
        if type_ not in _TYPES:
            log.warning("event type %r is not Normal or Warning; recording as Warning", type_)
            type_ = "Warning"
        regarding = _reference(obj)
        namespace = regarding.get("namespace") or "default"
        note = message if len(message) <= NOTE_MAX else message[: NOTE_MAX - 3] + "..."
        identity = regarding.get("uid") or f"{regarding['kind']}/{namespace}/{regarding['name']}"
        key = (identity, type_, reason, action, note)
        now, wall = time.monotonic(), time.time()

        series = self._cache.get(key)
        if series is not None and now - series.last_seen <= self._series_idle:
            self._cache.move_to_end(key)
            series.count += 1
            series.last_seen, series.last_observed = now, wall
            # The first repeat is written at once (it turns the Event into a series, as in
            # client-go); later counts at most once per interval.
            if series.written_count == 1 or now - series.last_written >= self._write_interval:
                try:
                    await self._write_series(series)
                    return
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    # The Event expired (or was deleted): start over with a fresh one.
            else:
                return

        body: JSON = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                "name": f"{regarding['name'][:200]}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "eventTime": micro_time(wall),
            "reportingController": self.component,
            "reportingInstance": self.instance,
            "action": action[:128],
            "reason": reason[:128],
            "regarding": regarding,
            "note": note,
            "type": type_,
        }
        created = await self._client.create(EVENTS, body, namespace)
        self._cache[key] = _Series(
            name=created["metadata"]["name"],
            namespace=namespace,
            count=1,
            last_observed=wall,
            last_seen=now,
            last_written=now,
            written_count=1,
        )
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _write_series(self, series: _Series) -> None:
        count = series.count
        patch = {"series": {"count": count, "lastObservedTime": micro_time(series.last_observed)}}
        await self._client.patch(EVENTS, series.name, patch, series.namespace)
        series.written_count = count
        series.last_written = time.monotonic()


def _reference(obj: JSON) -> JSON:
    """An ObjectReference to ``obj``: what ``kubectl describe`` matches events on."""
    meta = obj.get("metadata") or {}
    if not meta.get("name") or not obj.get("kind"):
        raise ValueError("metadata.name and kind are required to record an event")
    ref: JSON = {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj["kind"],
        "name": meta["name"],
    }
    for field_, src in (
        ("namespace", "namespace"),
        ("uid", "uid"),
        ("resourceVersion", "resourceVersion"),
    ):
        if meta.get(src):
            ref[field_] = meta[src]
    return ref


def _describe(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('namespace', '')}/{meta.get('name', '?')}"


__all__ = ["EventRecorder", "micro_time"]
