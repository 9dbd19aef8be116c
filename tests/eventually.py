"""The one way tests wait: ``eventually`` (a condition becomes true within a bound) and
``consistently`` (a condition stays true for a while), each in a sync and an async form.

A bound is a ceiling for a slow machine, never a timing assertion: a condition that holds
returns at once. A predicate *holds* when it returns something truthy without raising; it may
also assert (an ``AssertionError`` counts as "not yet" and is retried, by default). The value
it returned is handed back, so ``obj = eventually(lambda: get_if_ready(...))`` needs no second
read. A failure names what was awaited, how long and how often it was tried, the last value and
the last exception (chained as the cause).

Sleeps in tests are for simulating work (a reconcile that takes a while, a worker that hangs),
never for waiting on something to happen: that is ``eventually``; "nothing happens during X"
is ``consistently``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

# Sync predicates mostly run a subprocess (kubectl) or an HTTP request: poll gently. Async ones
# mostly read in-process state (a store, a queue, a counter): poll often.
SYNC_TIMEOUT = 60.0
SYNC_INTERVAL = 0.2
ASYNC_TIMEOUT = 30.0
ASYNC_INTERVAL = 0.05

Retry = tuple[type[BaseException], ...]


class _Tries:
    """What the polling saw: attempts, the last value, the last (retried) exception."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.attempts = 0
        self.last: Any = None
        self.error: BaseException | None = None

    def saw(self, value: Any = None, error: BaseException | None = None) -> None:
        self.attempts += 1
        self.last = value
        self.error = error

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def failure(self, what: str, extra: str) -> AssertionError:
        last = f"last exception: {self.error!r}" if self.error else f"last value: {self.last!r}"
        text = f"{what} ({self.attempts} attempt(s) in {self.elapsed():.1f}s); {last}"
        err = AssertionError(f"{text}\n{extra}" if extra else text)
        err.__cause__ = self.error
        return err


def _what(message: str, fn: Callable[..., Any]) -> str:
    """The message, else the predicate's name, else (a lambda) the line that defines it."""
    if message:
        return message
    name = str(getattr(fn, "__qualname__", repr(fn)))
    if name.endswith("<lambda>"):
        try:
            return inspect.getsource(fn).strip()
        except (OSError, TypeError):
            pass
    return name


def eventually(
    fn: Callable[[], T],
    *,
    timeout: float = SYNC_TIMEOUT,
    interval: float = SYNC_INTERVAL,
    message: str = "",
    on_timeout: Callable[[], str] | None = None,
    retry_on: Retry = (AssertionError,),
) -> T:
    """Call ``fn`` every ``interval`` s until it returns something truthy; return that value.

    Raises ``AssertionError`` after ``timeout`` s, with the last value or exception and the
    text ``on_timeout()`` returns (a log tail, the object's status). Exceptions other than
    ``retry_on`` propagate at once (a process that exited will not become ready)."""
    tries = _Tries()
    deadline = tries.started + timeout
    while True:
        try:
            value = fn()
        except retry_on as e:
            tries.saw(error=e)
        else:
            if value:
                return value
            tries.saw(value)
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise tries.failure(f"not within {timeout:g}s: {_what(message, fn)}", extra)
        time.sleep(interval)


@overload
async def async_eventually(
    fn: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,  # noqa: ASYNC109 (the bound is the helper's subject)
    interval: float = ...,
    message: str = ...,
    on_timeout: Callable[[], str] | None = ...,
    retry_on: Retry = ...,
) -> T: ...


@overload
async def async_eventually(
    fn: Callable[[], T],
    *,
    timeout: float = ...,  # noqa: ASYNC109 (the bound is the helper's subject)
    interval: float = ...,
    message: str = ...,
    on_timeout: Callable[[], str] | None = ...,
    retry_on: Retry = ...,
) -> T: ...


async def async_eventually(
    fn: Callable[[], Any],
    *,
    timeout: float = ASYNC_TIMEOUT,  # noqa: ASYNC109 (the bound is the helper's subject)
    interval: float = ASYNC_INTERVAL,
    message: str = "",
    on_timeout: Callable[[], str] | None = None,
    retry_on: Retry = (AssertionError,),
) -> Any:
    """:func:`eventually` for the event loop: ``fn`` may be sync or return an awaitable (an
    ``async def`` predicate), which is awaited; the loop sleeps between attempts."""
    tries = _Tries()
    deadline = tries.started + timeout
    while True:
        try:
            got = fn()
            value = await got if inspect.isawaitable(got) else got
        except retry_on as e:
            tries.saw(error=e)
        else:
            if value:
                return value
            tries.saw(value)
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise tries.failure(f"not within {timeout:g}s: {_what(message, fn)}", extra)
        await asyncio.sleep(interval)


def consistently(
    fn: Callable[[], Any],
    *,
    duration: float,
    interval: float = SYNC_INTERVAL,
    message: str = "",
    on_failure: Callable[[], str] | None = None,
) -> None:
    """Check ``fn`` every ``interval`` s for ``duration`` s (first and last check included);
    raise ``AssertionError`` at the first check that is falsy or raises."""
    tries = _Tries()
    deadline = tries.started + duration
    while True:
        try:
            value = fn()
        except AssertionError as e:
            tries.saw(error=e)
            value = None
        else:
            tries.saw(value)
        if not value:
            extra = on_failure() if on_failure else ""
            raise tries.failure(f"stopped holding: {_what(message, fn)}", extra)
        if time.monotonic() >= deadline:
            return
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))


async def async_consistently(
    fn: Callable[[], Any],
    *,
    duration: float,
    interval: float = ASYNC_INTERVAL,
    message: str = "",
    on_failure: Callable[[], str] | None = None,
) -> None:
    """:func:`consistently` for the event loop; ``fn`` may be sync or ``async``."""
    tries = _Tries()
    deadline = tries.started + duration
    while True:
        try:
            got = fn()
            value = await got if inspect.isawaitable(got) else got
        except AssertionError as e:
            tries.saw(error=e)
            value = None
        else:
            tries.saw(value)
        if not value:
            extra = on_failure() if on_failure else ""
            raise tries.failure(f"stopped holding: {_what(message, fn)}", extra)
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
