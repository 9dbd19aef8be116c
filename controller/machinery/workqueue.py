"""A rate-limited, delaying work queue with client-go's guarantees, for one asyncio loop.

The guarantees a reconciler relies on, as in client-go's ``util/workqueue``:

- a key added many times before a worker takes it is handed out once (``dirty`` set);
- a key is never held by two workers: a key added while it is being processed waits in ``dirty``
  and goes back in the FIFO only when the worker calls :meth:`WorkQueue.done` (``processing`` set);
- :meth:`WorkQueue.add_after` keeps the earliest ready time when a key is already waiting;
- :meth:`WorkQueue.add_rate_limited` delays by the rate limiter: the max of a per-key
  exponential backoff and an overall token bucket; :meth:`WorkQueue.forget` resets the key's
  failure count;
- priorities, as controller-runtime's priority queue: a key added with a higher priority is
  handed out first, and re-adding a waiting key with a higher priority promotes it. The
  controller adds keys from an informer's initial list at :data:`LOW_PRIORITY`, so after a
  restart or a failover a user's fresh change overtakes the backlog of objects to re-check;
- :meth:`WorkQueue.shutdown` stops intake; :meth:`WorkQueue.shutdown_with_drain` also waits,
  within a deadline, for the keys in flight.

Delays use loop timers (``call_at``) owned by the queue and cancelled on shutdown, so the queue
starts no task of its own.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Protocol

from metrics import runtime as m


class RateLimiter(Protocol):
    """Decides how long a failed key waits before its next try."""

    def when(self, key: str) -> float: ...
    def forget(self, key: str) -> None: ...
    def num_requeues(self, key: str) -> int: ...


class ItemExponentialRateLimiter:
    """``base * 2**failures`` per key, capped at ``max_delay`` (client-go: 5 ms, 1000 s)."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay <= 0:
            raise ValueError(f"base_delay must be > 0, got {base_delay}")
        if max_delay < base_delay:
            raise ValueError(f"max_delay must be >= base_delay, got {max_delay}")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        exp = self._failures.get(key, 0)
        self._failures[key] = exp + 1
        if exp >= 1024:  # 2**exp would overflow a float long before that; the cap rules anyway
            return self.max_delay
        return min(self.base_delay * math.pow(2.0, exp), self.max_delay)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """An overall token bucket (client-go default: 10 qps, burst 100), shared by every key.

    Like Go's ``rate.Limiter.Reserve``, a call always takes a token, possibly one not yet
    refilled, and returns how long the caller must wait for it.
    """

    def __init__(
        self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if qps <= 0:
            raise ValueError(f"qps must be > 0, got {qps}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: str) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: str) -> None:
        return None

    def num_requeues(self, key: str) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters; requeue counts from the most pessimistic one."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, key: str) -> float:
        return max(limiter.when(key) for limiter in self._limiters)

    def forget(self, key: str) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return max(limiter.num_requeues(key) for limiter in self._limiters)


def default_rate_limiter(
    *,
    base_delay: float = 0.005,
    max_delay: float = 1000.0,
    qps: float = 10.0,
    burst: int = 100,
) -> RateLimiter:
    """client-go's ``DefaultTypedControllerRateLimiter``, with every number configurable."""
    return MaxOfRateLimiter(
        ItemExponentialRateLimiter(base_delay, max_delay), BucketRateLimiter(qps, burst)
    )


LOW_PRIORITY = -100
"""Priority of keys from an initial list or relist (controller-runtime uses the same value)."""


class _PriorityFifo:
    """FIFO per priority level; the highest level is served first."""

    def __init__(self) -> None:
        self._levels: dict[int, deque[str]] = {}
        self._priority: dict[str, int] = {}

    def push(self, key: str, priority: int) -> None:
        self._levels.setdefault(priority, deque()).append(key)
        self._priority[key] = priority

    def promote(self, key: str, priority: int) -> None:
        """Move a queued key up to ``priority`` (never down)."""
        current = self._priority.get(key)
        if current is None or current >= priority:
            return
        self._levels[current].remove(key)
        self.push(key, priority)

    def pop(self) -> str:
        level = max(p for p, keys in self._levels.items() if keys)
        key = self._levels[level].popleft()
        del self._priority[key]
        return key

    def clear(self) -> list[str]:
        keys = list(self._priority)
        self._levels.clear()
        self._priority.clear()
        return keys

    def __len__(self) -> int:
        return len(self._priority)


class WorkQueue:
    """Keys waiting for a reconcile. One instance per controller, used from one event loop."""

    def __init__(self, name: str, rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter if rate_limiter is not None else default_rate_limiter()
        self._queue = _PriorityFifo()
        self._dirty: dict[str, int] = {}  # key -> priority it will be queued with
        self._processing: set[str] = set()
        self._added_at: dict[str, float] = {}  # dirty key -> when it was added, for queue time
        self._started_at: dict[str, float] = {}  # processing key -> when a worker took it
        self._waiting: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._idle: asyncio.Event | None = None
        self._shutting_down = False
        self._depth = m.WORKQUEUE_DEPTH.labels(name, name, "")
        self._adds = m.WORKQUEUE_ADDS.labels(name, name)
        self._queue_time = m.WORKQUEUE_QUEUE_DURATION.labels(name, name)
        self._work_time = m.WORKQUEUE_WORK_DURATION.labels(name, name)
        self._retries = m.WORKQUEUE_RETRIES.labels(name, name)
        self._depth.set(0)
        # Gauges computed at scrape time, so a stuck worker shows up without a refresher task.
        ref = weakref.ref(self)
        m.WORKQUEUE_UNFINISHED_WORK.labels(name, name).set_function(
            lambda: q.unfinished_work_seconds() if (q := ref()) is not None else 0.0
        )
        m.WORKQUEUE_LONGEST_RUNNING.labels(name, name).set_function(
            lambda: q.longest_running_seconds() if (q := ref()) is not None else 0.0
        )

    # ---- intake -------------------------------------------------------------------------------

    def add(self, key: str, priority: int = 0) -> None:
        """Queue ``key`` unless it is already waiting (then a higher ``priority`` promotes it);
        a key in flight is re-queued at :meth:`done`."""
        if self._shutting_down:
            return
        queued_with = self._dirty.get(key)
        if queued_with is not None:
            if priority > queued_with:
                self._dirty[key] = priority
                if key not in self._processing:
                    self._queue.promote(key, priority)
            return
        self._adds.inc()
        self._dirty[key] = priority
        self._added_at[key] = time.monotonic()
        if key in self._processing:
            return
        self._queue.push(key, priority)
        self._depth.set(len(self._queue))
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending ready time wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        self._retries.inc()
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._waiting[key] = (ready, loop.call_at(ready, self._ready, key))

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` after the rate limiter's delay (per-key backoff, overall bucket);
        returns that delay."""
        delay = self.rate_limiter.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Clear ``key``'s failure history (it stays queued if it is queued)."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.rate_limiter.num_requeues(key)

    def _ready(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    # ---- workers ------------------------------------------------------------------------------

    async def get(self) -> str | None:
        """The next key, waiting as long as needed; ``None`` once shut down and empty.

        The caller owns the key until it calls :meth:`done` (use ``finally``)."""
        loop = asyncio.get_running_loop()
        while not self._queue and not self._shutting_down:
            waiter: asyncio.Future[None] = loop.create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: pass the wake-up on so no key is stranded.
                if waiter.done() and not waiter.cancelled() and self._queue:
                    self._wake_one()
                raise
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)
        if not self._queue:
            return None
        key = self._queue.pop()
        self._depth.set(len(self._queue))
        now = time.monotonic()
        added = self._added_at.pop(key, now)
        self._queue_time.observe(now - added)
        self._processing.add(key)
        self._started_at[key] = now
        del self._dirty[key]
        return key

    def done(self, key: str) -> None:
        """Release ``key``; if it was added while in flight it goes back in the FIFO now."""
        if key not in self._processing:
            return
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self._work_time.observe(time.monotonic() - started)
        if key in self._dirty:
            self._queue.push(key, self._dirty[key])
            self._depth.set(len(self._queue))
            self._wake_one()
        if self._idle is not None and not self._processing:
            self._idle.set()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # ---- shutdown -----------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self, *, discard_queued: bool = False) -> None:
        """Stop intake and cancel delayed adds; workers get what is queued, then ``None``.

        With ``discard_queued`` the keys not yet handed out are dropped instead: a controller
        that stops for good leaves them to the next leader, which lists everything anyway."""
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        if discard_queued:
            for key in self._queue.clear():
                self._dirty.pop(key, None)
                self._added_at.pop(key, None)
            self._depth.set(0)
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def shutdown_with_drain(self, grace: float, *, discard_queued: bool = False) -> bool:
        """:meth:`shutdown`, then wait up to ``grace`` s for the keys in flight; ``True`` when
        every one was done in time."""
        self.shutdown(discard_queued=discard_queued)
        if not self._processing and not self._queue:
            return True
        self._idle = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + grace
        try:
            async with asyncio.timeout_at(deadline):
                while self._processing or self._queue:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        finally:
            self._idle = None
        return True

    # ---- introspection ------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out (not the delayed ones, not the ones in flight)."""
        return len(self._queue)

    @property
    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    @property
    def delayed(self) -> int:
        return len(self._waiting)

    def unfinished_work_seconds(self) -> float:
        now = time.monotonic()
        return sum(now - started for started in self._started_at.values())

    def longest_running_seconds(self) -> float:
        if not self._started_at:
            return 0.0
        return time.monotonic() - min(self._started_at.values())
