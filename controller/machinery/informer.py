"""List, then watch, and never lose an event: a reflector and store in one asyncio task.

The loop is client-go's reflector, with the fixes that the Python libraries lacked:

- LIST with ``limit``/``continue`` (falling back to one full list when a continue token
  expires), as a consistent read, then WATCH from the list's resourceVersion with bookmarks;
  or, with ``watch_list``, one watch that streams the list first (``sendInitialEvents``) and
  goes on with live events, so the initial sync never holds a whole LIST response;
- the server's ``timeoutSeconds`` drawn at random from [t, 2t], so a fleet does not reconnect at
  once and every stream is recycled;
- a watchdog: a stream that delivers nothing (not even a bookmark, which the server sends every
  minute) for ``watchdog_timeout`` is dropped and reopened from the last resourceVersion. This is
  the half-open-connection hang that made kopf and kubernetes_asyncio watches go silent for good;
- 410 Gone (as HTTP status or as an ERROR event) leads to a relist whose diff against the store
  emits the ADDED, MODIFIED and DELETED events the gap hid; a DELETED carries the last state
  the store knew;
- throttling, server errors and dropped connections while watching are retried from the same
  resourceVersion after an exponential backoff with jitter (0.8 s doubling to 30 s, reset after
  2 min of calm); a watch that ends at once having delivered nothing counts as an error, so a
  broken proxy cannot turn the loop into a hot spin;
- resourceVersions are opaque: compared for equality only (to drop duplicates), never ordered.

Handlers run inline on the loop after the store is updated; they must be quick (enqueue a key).
A handler that raises is logged and does not disturb the informer or the other handlers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.machinery.client import ApiError, KubeClient, Resource, key_of
from controller.machinery.store import (
    Entry,
    Store,
    Transform,
    chain,
    resource_version,
    strip_managed_fields,
)
from metrics.rest import LAST_EVENT, RELISTS, STORE_OBJECTS, WATCH_EVENTS, WATCH_RESTARTS

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Handler = Callable[[str, JSON, JSON | None], None]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class _StreamingUnsupported(Exception):
    """The server answered a streaming list like a plain watch (it predates WatchList)."""


@dataclass(frozen=True)
class InformerConfig:
    """Every timing of the list/watch loop, in seconds; tests shorten them."""

    page_size: int = 500
    # The server closes each watch after a random time in [watch_timeout, 2 * watch_timeout].
    watch_timeout: float = 300.0
    # A watch silent this long is replaced; above the 60 s bookmark cadence, below the 75 s
    # window in which the server can still resume from our resourceVersion.
    watchdog_timeout: float = 70.0
    backoff_base: float = 0.8
    backoff_cap: float = 30.0
    backoff_reset: float = 120.0
    # A watch that ends sooner than this with no event is treated as a failure.
    short_watch: float = 1.0
    # healthy() turns false when the loop made no progress for this long (None: derived).
    stuck_after: float | None = None
    strip_managed_fields: bool = True
    # Sync with a streaming list (WatchList: a watch with sendInitialEvents) instead of LIST, so
    # a large cache is never one huge response in memory; falls back to LIST where unsupported.
    watch_list: bool = False

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size: must be >= 1, got {self.page_size!r}")
        for name in ("watch_timeout", "watchdog_timeout", "backoff_base", "backoff_cap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if self.backoff_cap < self.backoff_base:
            raise ValueError("backoff_cap: must be >= backoff_base")

    @property
    def stuck_bound(self) -> float:
        """No list, event, bookmark or retry for this long means the data stopped flowing.

        A healthy server sends a bookmark at least every minute, so two missed minutes (or two
        watchdog periods, if longer) plus a backoff and a slow list is trouble, not bad luck;
        the 120 s floor keeps a short test watchdog on a quiet namespace from looking stuck.
        """
        if self.stuck_after is not None:
            return self.stuck_after
        return max(2 * self.watchdog_timeout, 120.0) + self.backoff_cap + 60.0


class Informer:
    """One resource (optionally one namespace and label selector) mirrored into ``store``."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        config: InformerConfig | None = None,
        transform: Transform | None = None,
    ) -> None:
        """``transform`` trims each object before it is cached and handed to handlers (after
        the managedFields are stripped, unless the config keeps them)."""
        self._client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.config = config or InformerConfig()
        self.transform = transform
        strip = strip_managed_fields if self.config.strip_managed_fields else None
        self.store = Store(chain(strip, transform))
        self.synced = asyncio.Event()
        self._handlers: list[Handler] = []
        self._rv: str | None = None
        self._streaming = self.config.watch_list
        self._initial: list[Entry] | None = None  # objects of a streaming list in progress
        self._initial_misses = 0
        self._failures = 0
        self._last_failure = 0.0
        self._expired_in_row = 0
        self._last_progress = time.monotonic()
        self._state = "new"
        group = f".{resource.group}" if resource.group else ""
        self.name = f"{resource.plural}{group}"

    # -- public -------------------------------------------------------------------------------

    def add_handler(self, fn: Handler) -> None:
        """Register ``fn(event_type, obj, old)``; once synced, it first gets every cached object."""
        self._handlers.append(fn)
        if self.synced.is_set():
            for key in self.store:
                obj = self.store.cached(key)
                if obj is not None:
                    self._call(fn, "ADDED", obj, None)

    def healthy(self) -> bool:
        """False when the loop has stopped, or made no progress (list, event, retry) too long."""
        if self._state == "new":
            return True
        if self._state == "stopped":
            return False
        return time.monotonic() - self._last_progress <= self.config.stuck_bound

    @property
    def resource_version(self) -> str | None:
        """The version the next watch resumes from (last event, bookmark or list)."""
        return self._rv

    async def run(self) -> None:
        """List and watch until cancelled; every failure is retried with backoff."""
        self._state = "running"
        self._progress()
        try:
            while True:
                try:
                    await self._list_and_watch()
                except ApiError as exc:
                    await self._backoff("list", exc)
                except Exception as exc:  # a bug or a malformed object must not kill the cache
                    log.exception("informer %s: unexpected error", self.name)
                    await self._backoff("list", exc)
        finally:
            self._state = "stopped"

    # -- loop -----------------------------------------------------------------------------------

    async def _list_and_watch(self) -> None:
        if self._streaming:
            self._rv = None  # the first watch streams the list itself
        else:
            await self._relist()
        while True:
            initial = self._rv is None
            try:
                reason = await self._watch_once()
            except _StreamingUnsupported as exc:
                self._fall_back_to_list(str(exc))
                return
            except ApiError as exc:
                if initial and 400 <= exc.status < 500 and exc.status not in (410, 429):
                    self._fall_back_to_list(str(exc))
                    return
                if exc.status == 410:
                    WATCH_RESTARTS.labels(self.name, "expired").inc()
                    log.info("informer %s: resourceVersion expired, relisting", self.name)
                    self._expired_in_row += 1
                    if self._expired_in_row > 1:
                        await self._backoff("watch", exc)
                    return
                if exc.status in (0, 429) or exc.status >= 500:
                    WATCH_RESTARTS.labels(self.name, "error").inc()
                    await self._backoff("watch", exc)
                    continue
                raise
            WATCH_RESTARTS.labels(self.name, reason).inc()
            if initial and self._rv is None:
                self._initial_misses += 1
                if self._initial_misses >= 2:
                    self._fall_back_to_list("the streaming list never completed")
                    return
            if reason == "short":
                await self._backoff("watch", RuntimeError("watch ended at once with no event"))
            elif reason == "silent":
                log.warning(
                    "informer %s: watch silent for %.0fs, reopening from %s",
                    self.name,
                    self.config.watchdog_timeout,
                    self._rv,
                )

    async def _watch_once(self) -> str:
        """One watch stream; returns why it ended: timeout (normal), silent or short."""
        cfg = self.config
        initial = self._rv is None
        self._initial = [] if initial else None
        server_timeout = max(1, int(random.uniform(cfg.watch_timeout, 2 * cfg.watch_timeout)))
        started = time.monotonic()
        delivered = 0
        stream = self._client.watch(
            self.resource,
            self.namespace,
            resource_version=self._rv or "",
            label_selector=self.label_selector,
            timeout_seconds=server_timeout,
            send_initial_events=initial,
        )
        try:
            while True:
                watchdog = asyncio.timeout(cfg.watchdog_timeout)
                try:
                    async with watchdog:
                        event = await anext(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if watchdog.expired():
                        return "silent"
                    raise
                delivered += 1
                self._expired_in_row = 0
                self._dispatch(event)
        finally:
            self._initial = None  # a streaming list cut short is discarded, never half-applied
            await stream.aclose()
        if delivered == 0 and time.monotonic() - started < cfg.short_watch:
            return "short"
        return "timeout"

    def _fall_back_to_list(self, why: str) -> None:
        log.warning("informer %s: streaming list unavailable (%s); using LIST", self.name, why)
        self._streaming = False

    async def _relist(self) -> None:
        RELISTS.labels(self.name).inc()
        items, rv = await self._list_all()
        self._sync(items, rv)

    def _prepare(self, obj: JSON) -> Entry:
        """A listed object, encoded for the store at once: a list of thousands is never held
        parsed. List items omit apiVersion and kind; handlers and events want them."""
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        return self.store.prepare(obj)

    def _sync(self, items: list[Entry], rv: str) -> None:
        """Make the store equal to ``items`` as of ``rv`` and tell handlers what changed."""
        changes = self.store.replace_entries(items)
        self._rv = rv
        STORE_OBJECTS.labels(self.name).set(len(self.store))
        self._progress()
        if changes:
            log.info(
                "informer %s: listed %d objects, %d changes", self.name, len(items), len(changes)
            )
        for change in changes:
            obj, old = change.objects()  # one at a time: decoded for the handlers, then dropped
            self._notify(change.type, obj, old)
        self.synced.set()

    async def _list_all(self) -> tuple[list[Entry], str]:
        items: list[Entry] = []
        token: str | None = None
        while True:
            try:
                page = await self._client.list(
                    self.resource,
                    self.namespace,
                    label_selector=self.label_selector,
                    limit=self.config.page_size,
                    continue_=token,
                )
            except ApiError as exc:
                if exc.status != 410 or token is None:
                    raise
                # The continue token expired mid-way (client-go's FullListIfExpired).
                log.info("informer %s: continue token expired, listing in one go", self.name)
                page = await self._client.list(
                    self.resource, self.namespace, label_selector=self.label_selector
                )
                items = []
                token = None
            items += [self._prepare(obj) for obj in page.get("items") or []]
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                rv = meta.get("resourceVersion")
                if not rv:
                    raise ApiError(200, "InvalidList", "list response has no resourceVersion")
                return items, str(rv)

    def _dispatch(self, event: JSON) -> None:
        type_ = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict) or type_ not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            log.warning("informer %s: skipping unexpected watch event %.200r", self.name, event)
            return
        WATCH_EVENTS.labels(self.name, type_).inc()
        self._progress()
        if self._initial is not None:
            self._collect(type_, obj)
            return
        rv = resource_version(obj)
        if type_ == "DELETED":
            old = self.store.remove(key_of(obj))
            if old is not None:  # never seen (created and deleted between lists): nothing to undo
                self._notify("DELETED", self.store.transform(obj), old)
        elif type_ != "BOOKMARK":
            key = key_of(obj)
            if key not in self.store or self.store.resource_version(key) != rv:
                stored, old = self.store.upsert(obj)
                self._notify("ADDED" if old is None else "MODIFIED", stored, old)
        if rv:
            self._rv = rv
        STORE_OBJECTS.labels(self.name).set(len(self.store))

    def _collect(self, type_: str, obj: JSON) -> None:
        """One event of a streaming list: objects until the end bookmark, then sync."""
        assert self._initial is not None
        if type_ == "ADDED":
            # Not in resourceVersion order: the RV waits for the end.
            self._initial.append(self._prepare(obj))
            return
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        rv = resource_version(obj)
        if type_ != "BOOKMARK" or annotations.get(INITIAL_EVENTS_END) != "true" or not rv:
            raise _StreamingUnsupported(f"{type_} before the end of the initial events")
        items, self._initial = self._initial, None
        RELISTS.labels(self.name).inc()
        self._initial_misses = 0
        self._sync(items, rv)

    def _notify(self, type_: str, obj: JSON, old: JSON | None) -> None:
        for fn in list(self._handlers):
            self._call(fn, type_, obj, old)

    def _call(self, fn: Handler, type_: str, obj: JSON, old: JSON | None) -> None:
        try:
            fn(type_, obj, old)
        except Exception:
            log.exception("informer %s: handler %r failed on %s", self.name, fn, type_)

    def _progress(self) -> None:
        self._last_progress = time.monotonic()
        LAST_EVENT.labels(self.name).set_to_current_time()

    async def _backoff(self, what: str, exc: BaseException) -> None:
        cfg = self.config
        now = time.monotonic()
        if now - self._last_failure > cfg.backoff_reset:
            self._failures = 0
        step = cfg.backoff_base * 2 ** min(self._failures, 32)
        delay = min(cfg.backoff_cap, step * (1 + random.random()))
        self._failures += 1
        self._last_failure = now
        log.warning("informer %s: %s failed (%s); retrying in %.2fs", self.name, what, exc, delay)
        self._progress()
        await asyncio.sleep(delay)
        self._progress()


__all__ = ["Handler", "Informer", "InformerConfig"]
