"""A pool of long-lived worker processes driven from asyncio, for CPU-heavy work such as profiling.

Workers are plain child processes of this interpreter (``sys.executable``), started with
``asyncio.create_subprocess_exec``, not through ``multiprocessing`` nor a library on top of it
(pebble): the spawn and forkserver contexts start a resource-tracker or fork-server process that
outlives every pool, fork is unsafe in a process with threads, and neither stops a busy worker
whose parent died, so "no child process is left behind" could not be guaranteed. Commands go to a
worker's stdin and messages come from its stdout (the worker moves its own stdout to stderr, so a
task that prints cannot garble the stream), as length-prefixed pickles read and written through
asyncio streams: no thread of the controller ever blocks on a worker.

Failure model: a task whose function raises gets that exception back and is never retried (the
function is deterministic: the same input fails the same way). A worker that dies mid-task
(SIGKILL, segfault, ``os._exit``) is replaced and its task retried with exponential backoff a
bounded number of times. A task that runs past its timeout, or that is cancelled, has its worker
killed, since killing is the only way to stop arbitrary Python code, and the worker replaced.
A worker exits by itself when its parent dies (end of file on its command pipe while idle, a
change of parent pid while busy), so a crashed controller leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

ProgressFn = Callable[[str, str], None]
"""What a task function receives: ``progress(phase, message)`` reports to the parent."""
ProgressCallback = Callable[[str, str], Awaitable[None] | None]
"""What a submitter passes: called in the parent, in order, for every progress report."""
StatsCallback = Callable[[int, int], None]
"""Called with ``(busy, queued)`` whenever either count changes (for metrics)."""

_HEADER = struct.Struct("!Q")
# Bound on one frame; a larger one means a corrupted stream, not a real message.
_MAX_FRAME = 1 << 30
_PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


# ---- errors --------------------------------------------------------------------------------------


class PoolError(Exception):
    """Base of the pool's own failures; ``reason`` is a CamelCase word for a condition."""

    reason = "ProfilingFailed"


class PoolClosedError(PoolError):
    """The pool was closed before the task finished."""


class PoolBrokenError(PoolError):
    """Workers cannot start (the task function cannot even be imported), so nothing can run."""


class TaskCancelledError(PoolError):
    """``cancel(task_id)`` stopped the task."""


class TaskTimeoutError(PoolError):
    """The task ran longer than its timeout; its worker was killed."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"did not finish within {timeout:g} s; its worker process was killed")
        self.task_id = task_id
        self.timeout = timeout


class WorkerCrashedError(PoolError):
    """The worker running the task died every time it was tried."""

    def __init__(self, task_id: str, attempts: int, exitcode: int | None) -> None:
        super().__init__(
            f"its worker process {_describe_exit(exitcode)}, "
            f"{attempts} time{'s' if attempts != 1 else ''} in a row"
        )
        self.task_id = task_id
        self.attempts = attempts
        self.exitcode = exitcode


class RemoteError(PoolError):
    """An exception from the task function that could not travel back as itself (not picklable)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of an exception raised in a worker, so logs show where it was."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "died (exit status unknown)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with status {exitcode}"


# ---- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolConfig:
    """Sizes, bounds and backoff of a pool; every duration is in seconds."""

    size: int | None = None
    """Worker processes; ``None`` means ``os.cpu_count()``."""
    task_timeout: float | None = 600.0
    """Default bound on one attempt of one task; ``None`` means unbounded."""
    max_retries: int = 2
    """Extra attempts after a worker crash (so a task runs at most ``max_retries + 1`` times)."""
    retry_timeouts: bool = False
    """Whether a timed-out task is retried like a crash. Off: a deterministic task that timed out
    once will time out again, and retrying would hold a worker for a multiple of the timeout."""
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    start_timeout: float = 60.0
    """Bound on a worker's start (interpreter, imports, unpickling the function)."""
    close_timeout: float = 5.0
    """Bound on a worker's graceful exit at close before it is killed."""
    parent_check_interval: float = 0.5
    """How often a busy worker checks that its parent is still alive."""
    single_thread_math: bool = True
    """Pin BLAS/OpenMP to one thread per worker: the pool already uses every core."""
    env: Mapping[str, str] | None = None
    """Extra environment variables for the workers."""

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("backoff_initial", "backoff_max", "start_timeout", "close_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.task_timeout is not None and self.task_timeout <= 0:
            raise ValueError(f"task_timeout must be > 0 or None, got {self.task_timeout}")
        if self.parent_check_interval <= 0:
            raise ValueError(f"parent_check_interval must be > 0, got {self.parent_check_interval}")

    @property
    def workers(self) -> int:
        return self.size if self.size is not None else max(1, os.cpu_count() or 1)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): initial, doubled each time, capped."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))


# ---- parent side ---------------------------------------------------------------------------------


class _Default(Enum):
    TOKEN = 0


USE_CONFIG = _Default.TOKEN
"""``submit(time_limit=USE_CONFIG)``: take the pool's ``task_timeout``."""


class _TaskState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    BACKOFF = "backoff"  # waiting to be queued again after a crash
    DONE = "done"


class _Task:
    def __init__(self, task_id: str, payload: bytes, timeout: float | None) -> None:
        self.id = task_id
        self.payload = payload
        self.timeout = timeout
        self.attempts = 0
        self.state = _TaskState.QUEUED
        self.worker: _Worker | None = None
        self.timer: asyncio.TimerHandle | None = None  # its timeout, or its retry after backoff
        self.events: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()

    def clear_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Worker:
    """One child process: commands go to its stdin, messages come from its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.exited = asyncio.ensure_future(proc.wait())
        self.task: _Task | None = None
        self.stopping = False  # asked to exit, or killed by the pool: its end is expected

    def send(self, message: tuple[Any, ...]) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self.exited.done():
            raise RuntimeError(f"worker {self.pid} has no open command pipe")
        data = pickle.dumps(message, protocol=_PICKLE_PROTOCOL)
        stdin.write(_HEADER.pack(len(data)) + data)

    async def recv(self) -> Any:
        """The next message; raises ``IncompleteReadError`` at end of file, others on garbage."""
        assert self.proc.stdout is not None
        (size,) = _HEADER.unpack(await self.proc.stdout.readexactly(_HEADER.size))
        if size > _MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes")
        return pickle.loads(await self.proc.stdout.readexactly(size))

    def kill(self, *, expected: bool = True) -> None:
        self.stopping = self.stopping or expected
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


_PATH_VAR = "WORKER_POOL_SYS_PATH"
# The worker imports exactly what the parent can: its ``sys.path``, not an approximation of it.
_BOOTSTRAP = (
    "import os, sys; "
    f"sys.path[:] = os.environ.pop({_PATH_VAR!r}).split(os.pathsep); "
    "from controller.machinery.worker_pool import _child_main; _child_main()"
)
_MATH_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


class WorkerPool(Generic[P, R]):
    """Runs ``fn(payload, progress) -> result`` in a fixed number of long-lived worker processes.

    ``fn`` must be a top-level function (it travels to the workers by reference, as a pickle); its
    payload, result and exceptions must be picklable. Use ``async with WorkerPool(...)`` or call
    ``start()`` and ``close()``; ``submit()`` runs one task and returns its result.

    Each worker slot is one coroutine (``_keep_worker``) that starts a process, feeds it tasks,
    reads its messages and, when it ends, reaps it, settles its task and starts the next one.
    """

    def __init__(
        self,
        fn: Callable[[P, ProgressFn], R],
        config: PoolConfig | None = None,
        *,
        on_stats: StatsCallback | None = None,
    ) -> None:
        self._config = config or PoolConfig()
        self._fn_pickle = pickle.dumps(fn, protocol=_PICKLE_PROTOCOL)
        self._on_stats = on_stats
        self._workers: set[_Worker] = set()
        self._idle: deque[tuple[_Worker, asyncio.Future[_Task]]] = deque()
        self._queue: deque[_Task] = deque()
        self._tasks: dict[str, _Task] = {}
        self._slots: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Event | None = None
        self._close_deadline = 0.0
        self._broken: str | None = None
        self._started = False
        self._closed = False
        self._last_stats: tuple[int, int] | None = None
        self._env = _worker_env(self._config)

    # -- public ------------------------------------------------------------------------------------

    @property
    def config(self) -> PoolConfig:
        return self._config

    @property
    def busy(self) -> int:
        """Tasks running in a worker right now."""
        return sum(1 for t in self._tasks.values() if t.state is _TaskState.RUNNING)

    @property
    def queued(self) -> int:
        """Tasks waiting for a worker, including those backing off before a retry."""
        return len(self._tasks) - self.busy

    @property
    def pids(self) -> list[int]:
        """Process ids of the current worker processes (starting, idle, busy or being stopped)."""
        return sorted(w.pid for w in self._workers)

    def running_pid(self, task_id: str) -> int | None:
        """Process id of the worker running ``task_id`` now, or None when it does not run."""
        task = self._tasks.get(task_id)
        return task.worker.pid if task is not None and task.worker is not None else None

    async def start(self) -> None:
        """Start every worker and wait until each can run tasks (bounded by ``start_timeout``).

        Raises ``PoolBrokenError`` when a worker cannot load the task function or start in time.
        """
        if self._closed:
            raise PoolClosedError("the pool is closed")
        if self._started:
            return
        self._started = True
        self._closing = asyncio.Event()
        loop = asyncio.get_running_loop()
        firsts: list[asyncio.Future[bool]] = []
        for _ in range(self._config.workers):
            firsts.append(loop.create_future())
            slot = asyncio.ensure_future(self._keep_worker(firsts[-1]))
            self._slots.add(slot)
            slot.add_done_callback(self._slot_done)
        try:
            try:
                async with asyncio.timeout(self._config.start_timeout + 1.0):
                    started = await asyncio.gather(*firsts)
            except TimeoutError:
                raise PoolBrokenError(
                    f"worker processes did not start within {self._config.start_timeout} s"
                ) from None
            if not all(started):
                why = self._broken or "a worker died while starting"
                raise PoolBrokenError(f"worker processes could not start: {why}")
        except BaseException:
            await self.close()
            raise

    async def submit(
        self,
        task_id: str,
        payload: P,
        *,
        on_progress: ProgressCallback | None = None,
        time_limit: float | _Default | None = USE_CONFIG,
    ) -> R:
        """Run ``fn(payload, progress)`` in a worker and return its result or raise its exception.

        ``on_progress(phase, message)`` runs here, in order, before the result is returned.
        Cancelling the awaiting coroutine stops the task (and kills its worker if it runs).
        Raises ``TaskTimeoutError``, ``WorkerCrashedError``, ``TaskCancelledError``,
        ``PoolClosedError`` or the function's own exception.
        """
        if self._closed:
            raise PoolClosedError("the pool is closed")
        if self._broken is not None:
            raise PoolBrokenError(self._broken)
        if not self._started:
            raise RuntimeError("start() the pool before submitting tasks")
        if task_id in self._tasks:
            raise ValueError(f"task {task_id!r} is already submitted")
        limit = self._config.task_timeout if time_limit is USE_CONFIG else time_limit
        assert not isinstance(limit, _Default)
        if limit is not None and limit <= 0:
            raise ValueError(f"time_limit must be > 0 or None, got {limit}")
        task = _Task(task_id, pickle.dumps(payload, protocol=_PICKLE_PROTOCOL), limit)
        self._tasks[task_id] = task
        self._queue.append(task)
        self._dispatch()
        try:
            while True:
                kind, first, second = await task.events.get()
                if kind == "progress":
                    await report_progress(on_progress, first, second)
                elif kind == "ok":
                    result: R = first
                    return result
                else:
                    raise first
        finally:
            if task.state is not _TaskState.DONE:
                self._finish(task, "error", TaskCancelledError(f"task {task_id} was abandoned"))

    def cancel(self, task_id: str) -> bool:
        """Stop ``task_id``: drop it if waiting, kill its worker if it runs. False if unknown."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        self._finish(task, "error", TaskCancelledError(f"task {task_id} was cancelled"))
        return True

    async def close(self) -> None:
        """Fail every pending task, stop the workers (killed after ``close_timeout``) and reap them.

        Returns once no worker process of this pool exists any more.
        """
        self._closed = True
        self._close_deadline = time.monotonic() + self._config.close_timeout
        if self._closing is not None:
            self._closing.set()
        for task in list(self._tasks.values()):
            self._finish(
                task, "error", PoolClosedError(f"the pool closed before task {task.id} ended")
            )
        for worker in list(self._workers):
            if not worker.stopping:
                with contextlib.suppress(RuntimeError):
                    worker.send(("stop",))
                worker.stopping = True
        while self._idle:
            self._idle.popleft()[1].cancel()
        if self._slots:
            # Slots only reap (bounded by the deadline, then SIGKILL) once closed: let them end.
            _, late = await asyncio.wait(list(self._slots), timeout=self._config.close_timeout + 8)
            for slot in late:
                slot.cancel()
            if late:
                await asyncio.wait(late)
        for worker in list(self._workers):  # only if a slot was cancelled while it reaped
            worker.kill()
            await self._reap(worker, time.monotonic() + 5.0)
        self._report()

    async def __aenter__(self) -> WorkerPool[P, R]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- workers -----------------------------------------------------------------------------------

    async def _keep_worker(self, first: asyncio.Future[bool]) -> None:
        """One slot: start a worker, serve tasks with it, and replace it whenever it ends."""
        failures = 0
        while not self._closed and self._broken is None:
            try:
                worker = await self._spawn()
            except OSError:
                log.exception("could not start a worker process")
                failures += 1
                if not first.done():
                    first.set_result(False)
                await self._pause(failures)
                continue
            ready = asyncio.Event()
            try:
                await self._serve(worker, ready, first)
            except asyncio.IncompleteReadError:
                pass  # end of file: the worker is gone
            except Exception:
                # Nothing after a bad frame can be trusted: the worker goes, its task is retried.
                log.exception("unreadable message from worker %d; killing it", worker.pid)
                worker.kill(expected=False)
            finally:
                exitcode = await self._reap(worker)
            task, worker.task = worker.task, None
            if not worker.stopping:
                log.warning(
                    "worker %d %s%s",
                    worker.pid,
                    _describe_exit(exitcode),
                    f" while running task {task.id}" if task else "",
                )
            if task is not None and task.state is _TaskState.RUNNING:
                task.worker = None
                task.clear_timer()
                self._retry_or_fail(task, WorkerCrashedError(task.id, task.attempts, exitcode))
            if not first.done():
                first.set_result(False)
            if ready.is_set():
                failures = 0
            elif self._broken is None and not self._closed:
                # Not a broken function (that marks the pool broken): an outside kill, out of
                # memory, a slow start. Keep replacing, slower each time, and say so.
                failures += 1
                log.error("worker %d did not start (%d in a row)", worker.pid, failures)
                await self._pause(failures)

    async def _pause(self, failures: int) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self._config.backoff(failures))

    async def _spawn(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOTSTRAP,
            str(os.getpid()),
            repr(self._config.parent_check_interval),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._env,
        )
        worker = _Worker(proc)
        self._workers.add(worker)
        if self._closed:  # close() ran while it started
            worker.kill()
        else:
            worker.send(("init", self._fn_pickle))
        return worker

    async def _serve(
        self, worker: _Worker, ready: asyncio.Event, first: asyncio.Future[bool]
    ) -> None:
        """Run tasks on ``worker`` until it ends, is killed, or the pool closes."""
        try:
            message = await asyncio.wait_for(worker.recv(), self._config.start_timeout)
        except TimeoutError:
            if not worker.stopping:
                log.error(
                    "worker %d did not start within %ss; killing it",
                    worker.pid,
                    self._config.start_timeout,
                )
            worker.kill()
            return
        if message[0] == "init_error":
            self._mark_broken(f"worker could not load the task function:\n{message[1]}")
            worker.stopping = True
            return
        ready.set()
        if not first.done():
            first.set_result(True)
        while not worker.stopping:
            slot: asyncio.Future[_Task] = asyncio.get_running_loop().create_future()
            self._idle.append((worker, slot))
            self._dispatch()
            try:
                await asyncio.wait((slot, worker.exited), return_when=asyncio.FIRST_COMPLETED)
            finally:
                slot.cancel()  # no-op when it holds a task; _dispatch skips a cancelled one
            if slot.cancelled():
                return  # the pool closes, or the worker died while idle
            task = slot.result()
            while worker.task is task:  # until it ends, or is cancelled or timed out (killed)
                self._on_message(worker, task, await worker.recv())

    async def _reap(self, worker: _Worker, deadline: float | None = None) -> int | None:
        """Wait (until ``deadline``, then SIGKILL) for the process to end; close its pipes."""
        if deadline is None:
            deadline = self._close_deadline if self._closed else time.monotonic() + 2.0
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), deadline - time.monotonic())
        except TimeoutError:
            worker.kill()
            try:
                await asyncio.wait_for(asyncio.shield(worker.exited), 5.0)
            except TimeoutError:
                log.error("worker %d survived SIGKILL for 5s", worker.pid)
        if worker.proc.stdin is not None:
            worker.proc.stdin.close()
        if worker.proc.returncode is not None:
            self._workers.discard(worker)
        return worker.proc.returncode

    def _slot_done(self, slot: asyncio.Task[None]) -> None:
        self._slots.discard(slot)
        if not slot.cancelled() and slot.exception() is not None:
            log.error("worker pool slot failed", exc_info=slot.exception())

    def _mark_broken(self, why: str) -> None:
        if self._broken is None:
            self._broken = why
            log.error("worker pool is broken: %s", why)
        for task in list(self._tasks.values()):
            if task.state is not _TaskState.RUNNING:
                self._finish(task, "error", PoolBrokenError(why))

    def _on_message(self, worker: _Worker, task: _Task, message: tuple[Any, ...]) -> None:
        if message[1] != task.id:
            return
        if message[0] == "progress":
            task.events.put_nowait(("progress", message[2], message[3]))
            return
        worker.task, task.worker = None, None
        if message[0] == "ok":
            try:
                outcome: tuple[str, Any] = ("ok", pickle.loads(message[2]))
            except Exception as exc:
                outcome = ("error", RemoteError(type(exc).__name__, f"unreadable result: {exc}"))
        else:
            outcome = ("error", _rebuild_exception(*message[2:]))
        self._finish(task, *outcome)

    # -- tasks -------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued tasks to idle workers, the most recently idle first (its caches are warm)."""
        while self._queue and self._idle and not self._closed:
            worker, slot = self._idle.pop()
            if slot.done():
                continue
            task = self._queue.popleft()
            try:
                worker.send(("run", task.id, task.payload))
            except RuntimeError:
                self._queue.appendleft(task)
                continue
            task.attempts += 1
            task.state = _TaskState.RUNNING
            task.worker, worker.task = worker, task
            if task.timeout is not None:
                loop = asyncio.get_running_loop()
                task.timer = loop.call_later(task.timeout, self._on_timeout, task)
            slot.set_result(task)
        self._report()

    def _on_timeout(self, task: _Task) -> None:
        task.timer = None
        if task.state is not _TaskState.RUNNING:
            return
        assert task.timeout is not None
        error = TaskTimeoutError(task.id, task.timeout)
        if not self._config.retry_timeouts:
            self._finish(task, "error", error)
            return
        self._kill_worker_of(task)
        self._retry_or_fail(task, error)

    def _retry_or_fail(self, task: _Task, error: PoolError) -> None:
        if task.attempts > self._config.max_retries or self._closed or self._broken:
            self._finish(task, "error", error)
            return
        delay = self._config.backoff(task.attempts)
        log.warning("retrying task %s in %.2f s: %s", task.id, delay, error)
        task.state = _TaskState.BACKOFF
        task.timer = asyncio.get_running_loop().call_later(delay, self._requeue, task)
        self._report()

    def _requeue(self, task: _Task) -> None:
        task.timer = None
        if task.state is _TaskState.BACKOFF:
            task.state = _TaskState.QUEUED
            self._queue.appendleft(task)  # it already waited its turn once
            self._dispatch()

    def _kill_worker_of(self, task: _Task) -> None:
        worker, task.worker = task.worker, None
        task.clear_timer()
        if worker is not None:
            worker.task = None
            worker.kill()

    def _finish(self, task: _Task, kind: str, value: Any) -> None:
        """The one place a task ends: stop whatever still runs it, then tell the submitter."""
        if task.state is _TaskState.DONE:
            return
        if task.state is _TaskState.RUNNING:
            self._kill_worker_of(task)
        elif task.state is _TaskState.QUEUED:
            with contextlib.suppress(ValueError):
                self._queue.remove(task)
        task.clear_timer()
        task.state = _TaskState.DONE
        if self._tasks.get(task.id) is task:
            del self._tasks[task.id]
        task.events.put_nowait((kind, value, None))
        self._report()

    def _report(self) -> None:
        stats = (self.busy, self.queued)
        if stats == self._last_stats:
            return
        self._last_stats = stats
        if self._on_stats is not None:
            try:
                self._on_stats(*stats)
            except Exception:
                log.exception("worker pool stats callback failed")


async def report_progress(callback: ProgressCallback | None, phase: str, message: str) -> None:
    """Call a sync or async progress callback and wait for it, so reports stay in order."""
    if callback is not None:
        delivered = callback(phase, message)
        if inspect.isawaitable(delivered):
            await delivered


def _worker_env(config: PoolConfig) -> dict[str, str]:
    """The parent's environment, its import path (so ``fn`` imports the same way) and config."""
    env = dict(os.environ)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    env[_PATH_VAR] = os.pathsep.join(dict.fromkeys(paths))
    if config.single_thread_math:
        for name in _MATH_THREAD_VARS:
            env.setdefault(name, "1")
    env.update(config.env or {})
    return env


def _rebuild_exception(
    data: bytes | None, type_name: str, message: str, tb_text: str
) -> BaseException:
    exc: BaseException
    try:
        if data is None:
            raise ValueError("not picklable")
        exc = exception_from_bytes(data)
    except Exception:
        exc = RemoteError(type_name, message)
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc


def exception_to_bytes(exc: BaseException) -> bytes:
    """Class, ``args`` and attributes of an exception, to rebuild it without calling __init__.

    Plain pickling calls ``cls(*exc.args)``, which breaks every exception whose constructor takes
    something other than its message (``SpecError(errors)`` gets its own joined message back and
    rebuilds a garbled one). Raises when the exception cannot travel this way.
    """
    state = dict(vars(exc)) if hasattr(exc, "__dict__") else {}
    data = pickle.dumps(("state", type(exc), exc.args, state), protocol=_PICKLE_PROTOCOL)
    if str(exception_from_bytes(data)) != str(exc):
        raise ValueError(f"{type(exc).__qualname__} does not rebuild from its state")
    return data


def exception_from_bytes(data: bytes) -> BaseException:
    """The inverse of ``exception_to_bytes``; also accepts a plainly pickled exception."""
    loaded = pickle.loads(data)
    if isinstance(loaded, BaseException):
        return loaded
    _, cls, args, state = loaded
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise TypeError(f"not an exception class: {cls!r}")
    exc: BaseException = cls.__new__(cls, *args)
    exc.args = args
    if state:
        exc.__dict__.update(state)
    return exc


def copy_exception(exc: BaseException) -> BaseException:
    """An independent copy (same class, args and attributes), or ``exc`` itself if none can be made.

    Lets several callers raise one shared failure without sharing a traceback.
    """
    try:
        clone = exception_from_bytes(exception_to_bytes(exc))
    except Exception:
        return exc
    clone.__cause__ = exc.__cause__
    return clone


# ---- child side ----------------------------------------------------------------------------------

_events_fd = -1
"""In a worker: the descriptor its messages go out on (stdout at start; fd 1 then points at stderr,
so a task that prints cannot garble the stream)."""


def _watch_parent(parent_pid: int, interval: float) -> None:
    """Exit the worker as soon as its parent is gone, even in the middle of a task."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(70)


def _child_main() -> None:
    """Entry point of a worker (see ``_BOOTSTRAP``): commands on stdin, messages on stdout."""
    global _events_fd
    parent_pid, interval = int(sys.argv[1]), float(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if os.getppid() != parent_pid:
        return
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), daemon=True).start()
    commands = os.fdopen(os.dup(0), "rb")
    _events_fd = os.dup(1)
    events = os.fdopen(_events_fd, "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=_PICKLE_PROTOCOL)
        with lock:
            events.write(_HEADER.pack(len(data)) + data)
            events.flush()

    def receive() -> Any:
        header = commands.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return ("stop",)
        return pickle.loads(commands.read(_HEADER.unpack(header)[0]))

    message = receive()
    if message[0] != "init":
        return
    try:
        fn = pickle.loads(message[1])
    except BaseException:
        send(("init_error", traceback.format_exc()))
        return
    send(("ready", os.getpid()))
    while (message := receive())[0] != "stop":
        _run_task(fn, message[1], message[2], send)


def _run_task(
    fn: Callable[[Any, ProgressFn], Any],
    task_id: str,
    payload: bytes,
    send: Callable[[tuple[Any, ...]], None],
) -> None:
    def progress(phase: str, message: str) -> None:
        send(("progress", task_id, str(phase), str(message)))

    try:
        result = pickle.dumps(fn(pickle.loads(payload), progress), protocol=_PICKLE_PROTOCOL)
    except Exception as exc:
        tb_text = traceback.format_exc()
        data: bytes | None = None
        with contextlib.suppress(Exception):
            data = exception_to_bytes(exc)
        if data is None:
            with contextlib.suppress(Exception):
                data = pickle.dumps(exc, protocol=_PICKLE_PROTOCOL)
                pickle.loads(data)  # one that pickles but cannot be rebuilt is no better
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        send(("error", task_id, data, name, str(exc), tb_text))
    else:
        send(("ok", task_id, result))
