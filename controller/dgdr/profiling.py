"""Runs the profiler for a DGDR in the worker pool, sharing one result between identical requests.

Identical means same spec, same DGDR name and same namespace. The name is part of the key on
purpose: the profiler derives the DGD name (``<dgdr>-dgd``), the planner ConfigMap names, the
namespace in every manifest and a length check on ``<dgd>-<service>`` from it, so a result made for
one name is not a result for another; renaming one after the fact would copy those rules here and
skip that check. What the cache does share is what a controller repeats: a DGDR reconciled again
while its profile runs (requeue, resync, a cancelled reconcile, a new leader in this process) joins
the running profile, and one reconciled again soon after gets the finished result, failures that
the spec causes included. Crashes, timeouts and cancellations are never cached.

A finished result is kept as compressed JSON (about 3 KB for a rapid profile, where the result as
Python objects, candidates and Pareto front included, takes some 70 KB), bounded both by count
(``cache_size``) and by those bytes (``cache_bytes``, ``--profile-cache-mib``): thousands of DGDRs
profiled in a burst cost the controller a few megabytes, not a gigabyte-sized heap.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.machinery.worker_pool import (
    PoolConfig,
    PoolError,
    ProgressFn,
    TaskCancelledError,
    WorkerPool,
    copy_exception,
    report_progress,
)
from metrics import dgdr as dgdr_metrics
from profiler.errors import ProfilerError
from profiler.hub import HubSettings
from profiler.plan import plan
from profiler.request import DGD_V1ALPHA1, PlanRequest

log = logging.getLogger(__name__)

OnProgress = Callable[[str, str], Awaitable[None] | None]
Source = Literal["computed", "joined", "cached"]


@dataclass(frozen=True)
class ProfilingConfig:
    """The pool's sizes and bounds, and how long, how many and how many bytes of finished results
    are kept (``cache_bytes`` counts the compressed JSON the cache holds)."""

    pool: PoolConfig = field(default_factory=lambda: PoolConfig(task_timeout=300.0))
    cache_ttl: float = 600.0
    cache_size: int = 1024
    cache_bytes: int = 16 * 2**20

    def __post_init__(self) -> None:
        if self.cache_ttl < 0:
            raise ValueError(f"cache_ttl must be >= 0, got {self.cache_ttl}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {self.cache_bytes}")


@dataclass(frozen=True)
class PlanOutcome:
    """A finished profile: ``result`` is ``PlanResult.to_json()`` without the candidates and the
    Pareto front; each caller gets its own copy."""

    result: dict[str, Any]
    dgd: dict[str, Any]
    configmaps: list[dict[str, Any]]
    seconds: float
    """Wall time of the profile in the pool, queueing and retries included."""
    source: Source
    """``computed`` by this call, ``joined`` a running identical one, or ``cached`` from one."""

    @property
    def shared(self) -> bool:
        return self.source != "computed"


# Parts of ``PlanResult.to_json()`` no reader in the controller uses (the status keeps the chosen
# configuration and its prediction): left in the worker, they are some 80% of a result's size.
UNUSED_RESULT_KEYS: tuple[str, ...] = ("candidates", "pareto")


def profile_in_worker(payload: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    """The worker side: parse the spec and plan, all in the worker process. Parsing may fetch a
    model's config.json from the Hub: that network call, bounded by the Hub settings' deadline,
    happens here too, never on the controller's event loop. The result comes back without the
    ``UNUSED_RESULT_KEYS`` (every candidate evaluated and the Pareto front)."""
    request = PlanRequest.from_spec(
        payload["spec"],
        dgdr_name=payload["dgdr_name"],
        namespace=payload["namespace"],
        hub=payload.get("hub"),
        dgd_api_version=payload.get("dgd_api_version", DGD_V1ALPHA1),
    )
    result = plan(request, progress).to_json()
    for key in UNUSED_RESULT_KEYS:
        result.pop(key, None)
    return result


def request_key(
    spec: Mapping[str, Any],
    *,
    dgdr_name: str,
    namespace: str,
    hub: HubSettings | None = None,
    dgd_api_version: str = DGD_V1ALPHA1,
) -> str:
    """Canonical hash of everything the profiler's output depends on (of the Hub settings, the
    endpoint, revision and which token, never the token itself)."""
    source = [hub.endpoint, hub.revision, hub.token_id] if hub is not None else None
    canonical = json.dumps(
        {
            "spec": spec,
            "dgdrName": dgdr_name,
            "namespace": namespace,
            "hub": source,
            "dgdApiVersion": dgd_api_version,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass
class _Finished:
    expires: float
    result: dict[str, Any] | None
    error: BaseException | None
    seconds: float
    # The result as zlib-compressed JSON once it is cached (``result`` is then None).
    packed: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.packed) if self.packed is not None else 0


def _pack(result: dict[str, Any]) -> bytes:
    # A plan result is plain JSON (it is written to the API server as such): the round trip gives
    # back an equal document, floats included.
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return zlib.compress(text.encode(), 1)


def _unpack(packed: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(zlib.decompress(packed))
    return doc


class _Subscriber:
    """One ``run()`` call waiting on a flight; its queue is drained by that call, in order."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()


@dataclass
class _Flight:
    """One profile being computed, and everyone waiting for it."""

    key: str
    history: list[tuple[str, str]] = field(default_factory=list)
    subscribers: set[_Subscriber] = field(default_factory=set)
    job: asyncio.Task[None] | None = None


class ProfileRunner:
    """Profiles DGDR specs in a process pool; ``start()`` before use, ``close()`` when done."""

    def __init__(
        self,
        config: ProfilingConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        worker_fn: Callable[[dict[str, Any], ProgressFn], dict[str, Any]] = profile_in_worker,
    ) -> None:
        """``worker_fn`` is ``profile_in_worker`` or a top-level function that wraps it."""
        self._config = config or ProfilingConfig()
        self._clock = clock
        self._pool: WorkerPool[dict[str, Any], dict[str, Any]] = WorkerPool(
            worker_fn, self._config.pool, on_stats=dgdr_metrics.set_pool
        )
        self._flights: dict[str, _Flight] = {}
        self._finished: OrderedDict[str, _Finished] = OrderedDict()
        self._cached_bytes = 0
        self._computed = 0

    @property
    def pool(self) -> WorkerPool[dict[str, Any], dict[str, Any]]:
        return self._pool

    @property
    def cached_bytes(self) -> int:
        """Bytes of compressed results the cache holds now."""
        return self._cached_bytes

    @property
    def profiles_computed(self) -> int:
        """Profiles that actually ran in the pool (not joined, not served from the cache)."""
        return self._computed

    async def start(self) -> None:
        await self._pool.start()

    async def close(self) -> None:
        """Stop every running profile (their callers get ``PoolClosedError``) and the workers."""
        jobs = [f.job for f in self._flights.values() if f.job is not None]
        await self._pool.close()
        if jobs:
            # Each job now holds PoolClosedError and hands it to its callers in a loop turn or so.
            _, late = await asyncio.wait(jobs, timeout=5.0)
            for job in late:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        self._finished.clear()
        self._cached_bytes = 0

    async def __aenter__(self) -> ProfileRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(
        self,
        key: str,
        spec: Mapping[str, Any],
        *,
        dgdr_name: str,
        namespace: str,
        on_progress: OnProgress | None = None,
        hub: HubSettings | None = None,
        dgd_api_version: str = DGD_V1ALPHA1,
    ) -> PlanOutcome:
        """Profile ``spec`` for the DGDR ``key`` (``namespace/name``) and return the outcome.

        ``on_progress(phase, message)`` gets the profiler's sub-phases in order (a caller that
        joins a running profile first gets the phases already reported). Raises the profiler's
        ``ProfilerError`` subclasses (``SpecError``, ``InfeasibleError``, ``NotAvailableError``),
        or the pool's ``TaskTimeoutError``, ``WorkerCrashedError``, ``TaskCancelledError`` (after
        ``cancel(key)``), ``PoolClosedError``; ``profiler.hub.HubUnavailableError`` (transient:
        the Hub did not answer) is never cached. Cancelling the caller stops the profile when no
        one else waits for it. ``hub`` says where a model the catalog lacks is fetched from;
        ``dgd_api_version`` which DGD version to generate.
        """
        cache_key = request_key(
            spec, dgdr_name=dgdr_name, namespace=namespace, hub=hub, dgd_api_version=dgd_api_version
        )
        finished = self._cached(cache_key)
        if finished is not None:
            return self._deliver(finished, "cached")
        flight = self._flights.get(cache_key)
        source: Source = "joined"
        if flight is None:
            source = "computed"
            flight = _Flight(cache_key)
            payload = {
                "spec": copy.deepcopy(dict(spec)),  # the caller may change its dict meanwhile
                "dgdr_name": dgdr_name,
                "namespace": namespace,
                "hub": hub,
                "dgd_api_version": dgd_api_version,
            }
            flight.job = asyncio.create_task(self._compute(flight, payload), name=f"profile {key}")
            self._flights[cache_key] = flight
        subscriber = _Subscriber(key)
        for phase, message in flight.history:
            subscriber.queue.put_nowait(("progress", phase, message))
        flight.subscribers.add(subscriber)
        try:
            while True:
                kind, first, second = await subscriber.queue.get()
                if kind == "progress":
                    await report_progress(on_progress, first, second)
                else:
                    return self._deliver(first, source)
        finally:
            self._leave(flight, subscriber)

    def cancel(self, key: str) -> bool:
        """Stop waiting for the DGDR ``key``; a profile no one else waits for is killed now.

        Returns whether ``key`` was waiting for a profile.
        """
        found = False
        for flight in list(self._flights.values()):
            mine = [s for s in flight.subscribers if s.owner == key]
            found = found or bool(mine)
            for subscriber in mine:
                flight.subscribers.discard(subscriber)
                error = TaskCancelledError(f"profiling for {key} was cancelled")
                subscriber.queue.put_nowait(("done", _Finished(0.0, None, error, 0.0), None))
            if mine and not flight.subscribers:
                self._abandon(flight)
        return found

    # -- internals ---------------------------------------------------------------------------------

    def _cached(self, cache_key: str) -> _Finished | None:
        finished = self._finished.get(cache_key)
        if finished is None:
            return None
        if finished.expires <= self._clock():
            self._drop(cache_key)
            return None
        self._finished.move_to_end(cache_key)
        return finished

    def _drop(self, cache_key: str) -> None:
        finished = self._finished.pop(cache_key, None)
        if finished is not None:
            self._cached_bytes -= finished.size

    def _remember(self, cache_key: str, finished: _Finished) -> None:
        config = self._config
        if config.cache_size == 0 or config.cache_ttl == 0 or config.cache_bytes == 0:
            return
        entry = _Finished(finished.expires, None, finished.error, finished.seconds)
        if finished.result is not None:
            entry.packed = _pack(finished.result)
        if entry.size > config.cache_bytes:
            return
        self._drop(cache_key)
        self._finished[cache_key] = entry
        self._cached_bytes += entry.size
        now = self._clock()
        for stale in [k for k, f in self._finished.items() if f.expires <= now]:
            self._drop(stale)
        while len(self._finished) > config.cache_size or self._cached_bytes > config.cache_bytes:
            self._drop(next(iter(self._finished)))

    @staticmethod
    def _deliver(finished: _Finished, source: Source) -> PlanOutcome:
        if finished.error is not None:
            raise copy_exception(finished.error)
        if finished.packed is not None:
            mine = _unpack(finished.packed)
        else:
            assert finished.result is not None
            mine = copy.deepcopy(finished.result)
        return PlanOutcome(
            result=mine,
            dgd=mine["dgd"],
            configmaps=mine.get("configmaps", []),
            seconds=finished.seconds,
            source=source,
        )

    def _leave(self, flight: _Flight, subscriber: _Subscriber) -> None:
        if subscriber not in flight.subscribers:
            return
        flight.subscribers.discard(subscriber)
        if not flight.subscribers and flight.job is not None and not flight.job.done():
            self._abandon(flight)

    def _abandon(self, flight: _Flight) -> None:
        """No one waits any more: kill the profile now, and let a new request start afresh."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        self._pool.cancel(flight.key)
        if flight.job is not None:
            flight.job.cancel()

    async def _compute(self, flight: _Flight, payload: dict[str, Any]) -> None:
        def fan_out(phase: str, message: str) -> None:
            flight.history.append((phase, message))
            for subscriber in flight.subscribers:
                subscriber.queue.put_nowait(("progress", phase, message))

        started = time.monotonic()
        result: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            result = await self._pool.submit(flight.key, payload, on_progress=fan_out)
        except asyncio.CancelledError:
            gone = _Finished(0.0, None, TaskCancelledError("profiling was stopped"), 0.0)
            for subscriber in flight.subscribers:
                subscriber.queue.put_nowait(("done", gone, None))
            raise
        except (ProfilerError, PoolError) as exc:
            error = exc
        except Exception as exc:
            log.exception("profiling %s failed unexpectedly", flight.key[:12])
            error = exc
        finally:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
        seconds = time.monotonic() - started
        self._computed += 1
        finished = _Finished(self._clock() + self._config.cache_ttl, result, error, seconds)
        if result is not None or (
            isinstance(error, ProfilerError) and not getattr(error, "transient", False)
        ):
            self._remember(flight.key, finished)
        for subscriber in flight.subscribers:
            subscriber.queue.put_nowait(("done", finished, None))
