"""Which DGDRs have a profile running, how far each has got, and what finished.

The pool runs profiles in other processes; this keeps, per DGDR key, the task awaiting it, the last
progress reported and the outcome, and wakes the reconciler (``enqueue``) on each. It lives only in
the leader's memory on purpose: after a failover the new leader finds a DGDR in ``Profiling`` with
nothing running and simply starts the profile again, so a crash loses no object.

A transient failure (the profiler's error says ``transient``: the Hugging Face Hub did not answer
for a model's config.json) is not an outcome: the profile is run again after a backoff (doubling
from ``retry_base`` to ``retry_cap`` seconds), and meanwhile its progress says why and when, so
the DGDR's Profiling condition shows it. Only bad input and bugs end a profile in failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Runner(Protocol):
    async def run(
        self,
        key: str,
        spec: dict[str, Any],
        *,
        dgdr_name: str,
        namespace: str,
        on_progress: Callable[[str, str], Any],
        hub: Any = None,
        dgd_api_version: str = ...,
    ) -> Any: ...

    def cancel(self, key: str) -> Any: ...


@dataclass(frozen=True)
class Outcome:
    generation: int
    result: Any | None
    error: BaseException | None
    seconds: float


@dataclass(frozen=True)
class Progress:
    generation: int
    phase: str
    message: str


class ProfileTracker:
    def __init__(
        self,
        runner: Runner,
        enqueue: Callable[[str], None],
        *,
        retry_base: float = 2.0,
        retry_cap: float = 300.0,
    ) -> None:
        self._runner = runner
        self._enqueue = enqueue
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._tasks: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self.progress: dict[str, Progress] = {}
        self.outcomes: dict[str, Outcome] = {}
        self._applied: dict[str, int] = {}

    def running(self, key: str, generation: int) -> bool:
        entry = self._tasks.get(key)
        return entry is not None and entry[0] == generation and not entry[1].done()

    def start(
        self,
        key: str,
        generation: int,
        spec: dict[str, Any],
        *,
        name: str,
        namespace: str,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Profile ``spec``; ``options`` go to the runner as keywords (``hub``,
        ``dgd_api_version``)."""
        if self.running(key, generation):
            return  # already running for this generation: never restart it
        self.cancel(key)
        task = asyncio.create_task(
            self._profile(key, generation, spec, name, namespace, dict(options or {})),
            name=f"profile {key}",
        )
        self._tasks[key] = (generation, task)

    def outcome(self, key: str, generation: int) -> Outcome | None:
        """The finished outcome for this generation; kept until ``applied`` says it is written."""
        out = self.outcomes.get(key)
        return out if out is not None and out.generation == generation else None

    def applied(self, key: str, generation: int) -> None:
        """The outcome is in the DGDR's status: forget it, remember that this generation is done.

        A reconcile that then still sees the DGDR in Profiling is reading a cache that has not yet
        caught up with that write, and must not start the profile again.
        """
        self.outcomes.pop(key, None)
        self.progress.pop(key, None)
        self._applied[key] = generation

    def was_applied(self, key: str, generation: int) -> bool:
        return self._applied.get(key) == generation

    def cancel(self, key: str) -> None:
        """Stop the profile of a deleted or re-specified DGDR (kills its worker process)."""
        entry = self._tasks.pop(key, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()
            with contextlib.suppress(Exception):
                self._runner.cancel(key)
        self.progress.pop(key, None)
        self.outcomes.pop(key, None)

    def forget(self, key: str) -> None:
        """The DGDR is gone: stop its profile and drop everything kept for it."""
        self.cancel(key)
        self._applied.pop(key, None)

    async def close(self) -> None:
        tasks = [t for _, t in self._tasks.values()]
        for key in list(self._tasks):
            self.cancel(key)
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def _profile(
        self,
        key: str,
        generation: int,
        spec: dict[str, Any],
        name: str,
        namespace: str,
        options: dict[str, Any],
    ) -> None:
        def on_progress(phase: str, message: str) -> None:
            self.progress[key] = Progress(generation, phase, message)
            self._enqueue(key)

        started = time.monotonic()
        attempt = 0
        try:
            while True:
                try:
                    result = await self._runner.run(
                        key,
                        spec,
                        dgdr_name=name,
                        namespace=namespace,
                        on_progress=on_progress,
                        **options,
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    if not getattr(e, "transient", False):
                        raise
                    attempt += 1
                    delay = min(self._retry_cap, self._retry_base * 2 ** (attempt - 1))
                    log.warning("profile of %s: %s; retrying in %g s", key, e, delay)
                    on_progress("Initializing", f"{e}; retrying in {delay:g} s (attempt {attempt})")
                    await asyncio.sleep(delay)
                    continue
                self.outcomes[key] = Outcome(generation, result, None, time.monotonic() - started)
                break
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the outcome carries it to the reconciler, which fails the DGDR
            log.info("profile of %s failed: %s", key, e)
            self.outcomes[key] = Outcome(generation, None, e, time.monotonic() - started)
        finally:
            entry = self._tasks.get(key)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._tasks[key]
        self._enqueue(key)
