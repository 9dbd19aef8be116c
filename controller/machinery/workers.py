"""The controller loop: N workers take keys from a workqueue and call a level-based reconcile.

The contract is controller-runtime's (``pkg/internal/controller``): a reconcile gets only a key,
reads the world from the caches and returns a :class:`Result`:

===========================  ===========================================  ==================
reconcile outcome            queue action                                 ``result`` label
===========================  ===========================================  ==================
raises (not terminal)        ``add_rate_limited`` (per-key backoff)       ``error``
raises :class:`TerminalError`  nothing                                    ``error``
``requeue_after > 0``        ``forget``, then ``add_after`` (no backoff)  ``requeue_after``
``requeue=True``             ``add_rate_limited``                         ``requeue``
``Result()``                 ``forget``                                   ``success``
===========================  ===========================================  ==================

A reconcile never loops by itself: to look again later it returns a result, and the queue's
dedup and processing sets guarantee that one key is never reconciled by two workers at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from controller.machinery import logging_setup as ctx
from controller.machinery.client import is_transient, key_of
from controller.machinery.workqueue import LOW_PRIORITY, RateLimiter, WorkQueue
from metrics import runtime as m

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What a reconcile wants next: nothing, a backed-off retry, or a look after a delay."""

    requeue: bool = False
    requeue_after: float | None = None

    def __post_init__(self) -> None:
        if self.requeue_after is not None and not (
            math.isfinite(self.requeue_after) and self.requeue_after >= 0
        ):
            raise ValueError(
                f"Result.requeue_after must be a finite number >= 0, got {self.requeue_after}"
            )


class TerminalError(Exception):
    """A failure that retrying cannot fix (bad input): counted, logged, never requeued."""


class _ReconcileTimedOut(Exception):
    """The controller's own ``reconcile_timeout`` fired (already logged; retried)."""


Reconciler = Callable[[str], Awaitable[Result]]


class EventSource(Protocol):
    """What :meth:`Controller.watch` needs from an informer."""

    def add_handler(
        self, fn: Callable[[str, dict[str, Any], dict[str, Any] | None], None]
    ) -> None: ...


class Controller:
    """One reconcile function, its workqueue and its workers.

    Keys can be enqueued at any time, also before :meth:`start` (a follower's queue fills from
    its warm caches, so a new leader starts on every key at once). Workers run between
    :meth:`start` and :meth:`stop` / :meth:`abort`; the controller owns their tasks.
    """

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        *,
        workers: int = 1,
        rate_limiter: RateLimiter | None = None,
        reconcile_timeout: float | None = None,
    ) -> None:
        if not name:
            raise ValueError("controller name must not be empty")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if reconcile_timeout is not None and reconcile_timeout <= 0:
            raise ValueError(f"reconcile_timeout must be > 0, got {reconcile_timeout}")
        self.name = name
        self.workers = workers
        self.reconcile_timeout = reconcile_timeout
        self.queue = WorkQueue(name, rate_limiter)
        self._reconcile = reconcile
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        m.init_controller(name, workers)
        self._active = m.ACTIVE_WORKERS.labels(name)
        self._time = m.RECONCILE_TIME.labels(name)
        self._errors = m.RECONCILE_ERRORS.labels(name)
        self._terminal = m.TERMINAL_RECONCILE_ERRORS.labels(name)
        self._timeouts = m.RECONCILE_TIMEOUTS.labels(name)
        self._results = {r: m.RECONCILE_TOTAL.labels(name, r) for r in m.RECONCILE_RESULTS}

    # ---- event mapping ------------------------------------------------------------------------

    def watch(
        self,
        informer: EventSource,
        to_keys: Callable[[dict[str, Any]], Iterable[str]] | None = None,
    ) -> None:
        """Enqueue the keys ``to_keys`` maps each event's object to (default: the object's own
        key). On an update, the keys of the old object are enqueued too, so an object whose
        mapping changed (a label moved it to another owner) wakes both owners. Events of the
        informer's initial list are queued at low priority."""
        mapper = to_keys if to_keys is not None else lambda obj: (key_of(obj),)
        synced: asyncio.Event | None = getattr(informer, "synced", None)

        def handler(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            # The initial list is a backlog of objects to re-check: changes made since jump it.
            initial = synced is not None and not synced.is_set()
            priority = LOW_PRIORITY if initial else 0
            keys = set(mapper(obj))
            if old is not None:
                keys.update(mapper(old))
            for key in keys:
                self.queue.add(key, priority)

        informer.add_handler(handler)

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def enqueue_after(self, key: str, delay: float) -> None:
        self.queue.add_after(key, delay)

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def start(self) -> None:
        """Start the workers (once; a stopped controller is not restarted)."""
        if self._started:
            return
        self._started = True
        for index in range(self.workers):
            task = asyncio.create_task(self._worker(), name=f"{self.name}-worker-{index}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float) -> bool:
        """Graceful stop: take no new key, let the keys in flight finish within ``grace`` s,
        then cancel what is left. ``True`` when every worker finished in time."""
        self.queue.shutdown(discard_queued=True)
        tasks = set(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "workers did not finish within the shutdown deadline; cancelled",
                extra={"controller": self.name, "cancelled": len(pending)},
            )
            await asyncio.wait(pending)
        return not pending

    async def abort(self) -> None:
        """Stop acting now (the lease is lost): cancel every worker mid-reconcile."""
        self.queue.shutdown(discard_queued=True)
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # ---- the loop -----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self._reconcile_one(key)
            finally:
                self.queue.done(key)

    async def _reconcile_one(self, key: str) -> None:
        tokens = (
            ctx.controller_name.set(self.name),
            ctx.object_key.set(key),
            ctx.reconcile_id.set(str(uuid.uuid4())),
        )
        try:
            self._active.inc()
            started = time.perf_counter()
            try:
                outcome = await self._call(key)
            finally:
                elapsed = time.perf_counter() - started
                self._time.observe(elapsed)
                self._active.dec()
            self._apply(key, outcome)
            if log.isEnabledFor(logging.DEBUG):
                said = _outcome(outcome)
                log.debug(
                    "reconciled %s: %s in %.1f ms",
                    key,
                    said,
                    elapsed * 1000,
                    extra={"outcome": said, "duration_ms": round(elapsed * 1000, 3)},
                )
        finally:
            ctx.reconcile_id.reset(tokens[2])
            ctx.object_key.reset(tokens[1])
            ctx.controller_name.reset(tokens[0])

    async def _call(self, key: str) -> Result | BaseException:
        """Run the reconcile; an exception is returned, not raised. Unexpected ones are logged
        here with their traceback; a transient API failure is logged by :meth:`_apply` in one
        line, with the retry delay."""
        deadline: asyncio.Timeout | None = None
        try:
            if self.reconcile_timeout is None:
                result = await self._reconcile(key)
            else:
                async with asyncio.timeout(self.reconcile_timeout) as deadline:
                    result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except TerminalError as err:
            log.error("reconcile of %s failed terminally: %s", key, err)
            return err
        except Exception as err:
            if isinstance(err, TimeoutError) and deadline is not None and deadline.expired():
                self._timeouts.inc()
                log.error("reconcile of %s timed out after %ss", key, self.reconcile_timeout)
                return _ReconcileTimedOut(f"timed out after {self.reconcile_timeout}s")
            if not is_transient(err):
                log.error("reconcile of %s failed: %s", key, err, exc_info=err)
            return err
        if not isinstance(result, Result):
            err = TypeError(f"reconcile of {key!r} returned {type(result).__name__}, not Result")
            log.error("%s", err)
            return err
        return result

    def _apply(self, key: str, outcome: Result | BaseException) -> None:
        if isinstance(outcome, TerminalError):
            self._errors.inc()
            self._terminal.inc()
            self._results["error"].inc()
            self.queue.forget(key)
        elif isinstance(outcome, BaseException):
            self._errors.inc()
            self._results["error"].inc()
            delay = self.queue.add_rate_limited(key)
            if is_transient(outcome):
                log.warning(
                    "reconcile of %s failed, retrying in %.2fs: %s",
                    key,
                    delay,
                    _cause(outcome),
                    extra={"retry_in": round(delay, 3)},
                )
        elif outcome.requeue_after:
            self._results["requeue_after"].inc()
            self.queue.forget(key)
            self.queue.add_after(key, outcome.requeue_after)
        elif outcome.requeue:
            self._results["requeue"].inc()
            self.queue.add_rate_limited(key)
        else:
            self._results["success"].inc()
            self.queue.forget(key)


def _outcome(outcome: Result | BaseException) -> str:
    """The per-reconcile outcome, in the words of ``controller_runtime_reconcile_total``'s
    ``result`` label (the table in this module's docstring), plus the cause of an error."""
    if isinstance(outcome, TerminalError):
        return f"terminal error: {_cause(outcome)}"
    if isinstance(outcome, BaseException):
        return f"error: {_cause(outcome)}"
    if outcome.requeue_after:
        return f"requeue_after {outcome.requeue_after:g}s"
    return "requeue" if outcome.requeue else "success"


def _cause(err: BaseException) -> str:
    """One line on what failed: the API error's own text, else the exception's repr."""
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__


__all__ = ["Controller", "EventSource", "Reconciler", "Result", "TerminalError"]
