"""A pool of long-lived worker processes driven from asyncio, for CPU-heavy work such as profiling.

Workers are plain child processes of this interpreter (``sys.executable``), started through
``subprocess`` with two private pipes, not through ``multiprocessing``: the spawn and forkserver
contexts start a resource-tracker or fork-server process that outlives every pool, which makes
"no child process is left behind" impossible to guarantee. Each pipe carries length-prefixed
pickles; the parent reads and writes them through asyncio transports, so no thread of the
controller ever blocks on a worker.

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


class _WorkerState(Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"  # asked to exit, or killed by us: its end is expected
    DEAD = "dead"


class _TaskState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    BACKOFF = "backoff"  # waiting to be queued again after a crash
    DONE = "done"


class _Task:
    def __init__(
        self,
        task_id: str,
        payload: bytes,
        timeout: float | None,
    ) -> None:
        self.id = task_id
        self.payload = payload
        self.timeout = timeout
        self.attempts = 0
        self.last_exitcode: int | None = None
        self.state = _TaskState.QUEUED
        self.worker: _Worker | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.events: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()

    def clear_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _EventProtocol(asyncio.Protocol):
    """Splits a worker's event pipe into frames and hands each message to the pool."""

    def __init__(
        self,
        on_message: Callable[[Any], None],
        on_eof: Callable[[], None],
        on_corrupt: Callable[[], None],
    ) -> None:
        self._buf = bytearray()
        self._on_message = on_message
        self._on_eof = on_eof
        self._on_corrupt = on_corrupt
        self._corrupt = False

    def data_received(self, data: bytes) -> None:
        if self._corrupt:
            return
        self._buf += data
        try:
            while len(self._buf) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buf)
                if size > _MAX_FRAME:
                    raise ValueError(f"a frame of {size} bytes")
                end = _HEADER.size + size
                if len(self._buf) < end:
                    return
                body = bytes(self._buf[_HEADER.size : end])
                del self._buf[:end]
                self._on_message(pickle.loads(body))
        except Exception:
            # Nothing after a bad frame can be trusted: the worker goes, its task is retried.
            log.exception("unreadable message from a worker process; killing it")
            self._corrupt = True
            self._buf.clear()
            self._on_corrupt()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_eof()


class _Worker:
    """One child process, its two pipes and the task it runs."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.state = _WorkerState.STARTING
        self.task: _Task | None = None
        self.cmd: asyncio.WriteTransport | None = None
        self.events: asyncio.ReadTransport | None = None
        self.start_timer: asyncio.TimerHandle | None = None
        self.started = asyncio.Event()  # set when ready, or when it died trying
        self.exiting = False
        self.init_error: str | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        if self.cmd is None or self.cmd.is_closing():
            raise RuntimeError(f"worker {self.pid} has no open command pipe")
        data = pickle.dumps(message, protocol=_PICKLE_PROTOCOL)
        self.cmd.write(_HEADER.pack(len(data)) + data)

    def kill(self) -> None:
        self.state = _WorkerState.STOPPING
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def close_pipes(self) -> None:
        for transport in (self.cmd, self.events):
            if transport is not None and not transport.is_closing():
                transport.close()
        if self.start_timer is not None:
            self.start_timer.cancel()
            self.start_timer = None


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
        self._queue: deque[_Task] = deque()
        self._tasks: dict[str, _Task] = {}
        self._retry_handles: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._spawn_failures = 0
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
        waiting = (_TaskState.QUEUED, _TaskState.BACKOFF)
        return sum(1 for t in self._tasks.values() if t.state in waiting)

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
        try:
            workers = [await self._spawn() for _ in range(self._config.workers)]
            try:
                async with asyncio.timeout(self._config.start_timeout + 1.0):
                    for worker in workers:
                        await worker.started.wait()
            except TimeoutError:
                raise PoolBrokenError(
                    f"worker processes did not start within {self._config.start_timeout} s"
                ) from None
            failed = [w for w in workers if w.state is not _WorkerState.IDLE]
            if failed:
                why = self._broken or f"worker {failed[0].pid} died while starting"
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
        for task in list(self._tasks.values()):
            self._finish(
                task, "error", PoolClosedError(f"the pool closed before task {task.id} ended")
            )
        for worker in list(self._workers):
            if worker.state in (_WorkerState.IDLE, _WorkerState.STARTING):
                with contextlib.suppress(RuntimeError):
                    worker.send(("stop",))
                worker.state = _WorkerState.STOPPING
        deadline = time.monotonic() + self._config.close_timeout
        await asyncio.gather(*(self._reap(w, deadline) for w in list(self._workers)))
        while self._background:
            pending = list(self._background)
            # Background jobs only reap (bounded) and respawn (skipped once closed): let them end.
            _, not_done = await asyncio.wait(pending, timeout=self._config.close_timeout + 6.0)
            for job in not_done:
                job.cancel()
            if not_done:
                await asyncio.wait(not_done)
            self._background.difference_update(pending)
        for worker in list(self._workers):
            await self._reap(worker, time.monotonic())
        self._report()

    async def __aenter__(self) -> WorkerPool[P, R]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- workers -----------------------------------------------------------------------------------

    async def _spawn(self) -> _Worker:
        loop = asyncio.get_running_loop()
        cmd_read, cmd_write = os.pipe()
        evt_read, evt_write = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _BOOTSTRAP,
                str(cmd_read),
                str(evt_write),
                str(os.getpid()),
                repr(self._config.parent_check_interval),
                pass_fds=(cmd_read, evt_write),
                stdin=subprocess.DEVNULL,
                env=self._env,
            )
        except BaseException:
            os.close(cmd_write)
            os.close(evt_read)
            raise
        finally:
            os.close(cmd_read)
            os.close(evt_write)
        events_file = os.fdopen(evt_read, "rb", buffering=0)
        cmd_file = os.fdopen(cmd_write, "wb", buffering=0)
        worker = _Worker(proc)
        self._workers.add(worker)
        worker.start_timer = loop.call_later(
            self._config.start_timeout, self._on_start_timeout, worker
        )
        try:
            worker.events, _ = await loop.connect_read_pipe(
                lambda: _EventProtocol(
                    lambda message: self._on_message(worker, message),
                    lambda: self._begin_exit(worker),
                    lambda: self._kill_corrupt(worker),
                ),
                events_file,
            )
            worker.cmd, _ = await loop.connect_write_pipe(asyncio.Protocol, cmd_file)
        except BaseException:
            for transport, file in ((worker.events, events_file), (worker.cmd, cmd_file)):
                if transport is None:
                    file.close()
            worker.kill()
            await asyncio.shield(self._reap(worker, time.monotonic()))
            raise
        if self._closed or worker.exiting:  # close() ran, or it died, while the pipes connected
            worker.kill()
            await self._reap(worker, time.monotonic())
        else:
            worker.send(("init", self._fn_pickle))
        return worker

    def _kill_corrupt(self, worker: _Worker) -> None:
        """Kill without marking the end as expected: its task is retried like after a crash."""
        if worker.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
        self._begin_exit(worker)

    def _on_start_timeout(self, worker: _Worker) -> None:
        worker.start_timer = None
        if worker.state is _WorkerState.STARTING:
            log.error(
                "worker %d did not start within %ss; killing it",
                worker.pid,
                self._config.start_timeout,
            )
            worker.kill()
            self._begin_exit(worker)

    def _begin_exit(self, worker: _Worker) -> None:
        """The worker is gone or going: detach its task, then reap and replace it in background."""
        if worker.exiting:
            return
        worker.exiting = True
        expected = worker.state is _WorkerState.STOPPING
        was_starting = worker.state is _WorkerState.STARTING
        worker.state = _WorkerState.STOPPING
        worker.started.set()
        task, worker.task = worker.task, None
        if task is not None:
            task.worker = None
            task.clear_timer()
        if not expected:
            log.warning(
                "worker %d ended unexpectedly%s",
                worker.pid,
                f" while running task {task.id}" if task else "",
            )
        self._spawn_background(self._after_exit(worker, task, was_starting))

    async def _after_exit(self, worker: _Worker, task: _Task | None, was_starting: bool) -> None:
        exitcode = await self._reap(worker, time.monotonic() + 2.0)
        if task is not None and task.state is _TaskState.RUNNING:
            task.last_exitcode = exitcode
            self._retry_or_fail(task, WorkerCrashedError(task.id, task.attempts, exitcode))
        if was_starting and worker.init_error is None:
            # Not a broken function (that says init_error): an outside kill, out of memory, a
            # slow start. Keep replacing, slower each time, and say so.
            self._spawn_failures += 1
            log.error(
                "worker %d %s while starting (%d in a row)",
                worker.pid,
                _describe_exit(exitcode),
                self._spawn_failures,
            )
        if self._closed or self._broken is not None:
            return
        if was_starting:
            await asyncio.sleep(self._config.backoff(self._spawn_failures))
        while (
            not self._closed
            and self._broken is None
            and sum(1 for w in self._workers if not w.exiting) < self._config.workers
        ):
            try:
                await self._spawn()
            except OSError:
                log.exception("could not start a replacement worker")
                self._spawn_failures += 1
                await asyncio.sleep(self._config.backoff(self._spawn_failures))

    async def _reap(self, worker: _Worker, deadline: float) -> int | None:
        """Wait (until ``deadline``, then SIGKILL) for the process to end; close its pipes."""
        proc = worker.proc
        try:
            await asyncio.wait_for(proc.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            worker.kill()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                log.error("worker %d survived SIGKILL for 5s", worker.pid)
        worker.close_pipes()
        if proc.returncode is not None:
            worker.state = _WorkerState.DEAD
            self._workers.discard(worker)
        if not worker.exiting:
            self._begin_exit(worker)
        return proc.returncode

    def _spawn_background(self, coro: Awaitable[None]) -> None:
        job = asyncio.ensure_future(coro)
        self._background.add(job)
        job.add_done_callback(self._background_done)

    def _background_done(self, job: asyncio.Task[None]) -> None:
        self._background.discard(job)
        if not job.cancelled() and job.exception() is not None:
            log.error("worker pool background job failed", exc_info=job.exception())

    def _mark_broken(self, why: str) -> None:
        if self._broken is None:
            self._broken = why
            log.error("worker pool is broken: %s", why)
        for task in list(self._tasks.values()):
            if task.state is not _TaskState.RUNNING:
                self._finish(task, "error", PoolBrokenError(why))

    # -- messages from workers ---------------------------------------------------------------------

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            if worker.state is _WorkerState.STARTING:
                worker.state = _WorkerState.IDLE
                if worker.start_timer is not None:
                    worker.start_timer.cancel()
                    worker.start_timer = None
                self._spawn_failures = 0
                worker.started.set()
                self._dispatch()
            return
        if kind == "init_error":
            worker.init_error = message[1]
            self._mark_broken(f"worker could not load the task function:\n{message[1]}")
            return
        task = worker.task
        if task is None or task.id != message[1]:
            return  # a late message of a task that was cancelled or timed out
        if kind == "progress":
            task.events.put_nowait(("progress", message[2], message[3]))
            return
        worker.task, task.worker = None, None
        worker.state = _WorkerState.IDLE
        if kind == "ok":
            try:
                outcome: tuple[str, Any] = ("ok", pickle.loads(message[2]))
            except Exception as exc:
                outcome = ("error", RemoteError(type(exc).__name__, f"unreadable result: {exc}"))
        else:
            outcome = ("error", _rebuild_exception(*message[2:]))
        self._finish(task, *outcome)
        self._dispatch()

    # -- tasks -------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if not self._closed:
            idle = [w for w in self._workers if w.state is _WorkerState.IDLE]
            while self._queue and idle:
                worker, task = idle.pop(), self._queue.popleft()
                try:
                    worker.send(("run", task.id, task.payload))
                except RuntimeError:
                    self._queue.appendleft(task)
                    continue
                task.attempts += 1
                task.state = _TaskState.RUNNING
                task.worker, worker.task = worker, task
                worker.state = _WorkerState.BUSY
                if task.timeout is not None:
                    loop = asyncio.get_running_loop()
                    task.timer = loop.call_later(task.timeout, self._on_timeout, task)
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
        loop = asyncio.get_running_loop()
        self._retry_handles[task.id] = loop.call_later(delay, self._requeue, task)
        self._report()

    def _requeue(self, task: _Task) -> None:
        self._retry_handles.pop(task.id, None)
        if task.state is _TaskState.BACKOFF:
            task.state = _TaskState.QUEUED
            self._queue.appendleft(task)  # it already waited its turn once
            self._dispatch()

    def _kill_worker_of(self, task: _Task) -> None:
        worker = task.worker
        task.clear_timer()
        if worker is not None:
            worker.task, task.worker = None, None
            worker.kill()
            self._begin_exit(worker)

    def _finish(self, task: _Task, kind: str, value: Any) -> None:
        """The one place a task ends: stop whatever still runs it, then tell the submitter."""
        if task.state is _TaskState.DONE:
            return
        if task.state is _TaskState.RUNNING:
            self._kill_worker_of(task)
        elif task.state is _TaskState.QUEUED:
            with contextlib.suppress(ValueError):
                self._queue.remove(task)
        handle = self._retry_handles.pop(task.id, None)
        if handle is not None:
            handle.cancel()
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


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _read_frame(fd: int) -> Any:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _watch_parent(parent_pid: int, interval: float) -> None:
    """Exit the worker as soon as its parent is gone, even in the middle of a task."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(70)


def _child_main() -> None:
    """Entry point of a worker process (see ``_BOOTSTRAP``)."""
    cmd_fd, evt_fd, parent_pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    interval = float(sys.argv[4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if os.getppid() != parent_pid:
        return
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), daemon=True).start()
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=_PICKLE_PROTOCOL)
        frame = memoryview(_HEADER.pack(len(data)) + data)
        with lock:
            while frame:
                frame = frame[os.write(evt_fd, frame) :]

    message = _read_frame(cmd_fd)
    if message is None or message[0] != "init":
        return
    try:
        fn = pickle.loads(message[1])
    except BaseException:
        send(("init_error", traceback.format_exc()))
        return
    send(("ready", os.getpid()))
    while True:
        message = _read_frame(cmd_fd)
        if message is None or message[0] == "stop":
            return
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
