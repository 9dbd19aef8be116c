"""The profiling process pool, with real worker processes that sleep, crash, raise and hang."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from controller.machinery.worker_pool import (
    PoolBrokenError,
    PoolClosedError,
    PoolConfig,
    RemoteError,
    TaskCancelledError,
    TaskTimeoutError,
    WorkerCrashedError,
    WorkerPool,
)
from profiler.errors import FieldError, SpecError
from tests.dgdr import pool_tasks
from tests.eventually import async_eventually

Pool = WorkerPool[dict[str, Any], Any]
FAST = PoolConfig(size=2, task_timeout=60.0, max_retries=2, backoff_initial=0.01, backoff_max=0.05)


def _tid() -> str:
    return uuid.uuid4().hex[:8]


async def _running_pid(pool: Pool, task_id: str) -> int:
    await async_eventually(lambda: pool.running_pid(task_id) is not None)
    pid = pool.running_pid(task_id)
    assert pid is not None
    return pid


@pytest_asyncio.fixture
async def pool() -> AsyncIterator[Pool]:
    async with WorkerPool(pool_tasks.run, FAST) as p:
        yield p
    assert p.pids == []


@pytest.mark.asyncio
async def test_runs_tasks_and_delivers_progress_in_order(pool: Pool) -> None:
    seen: list[tuple[str, str]] = []

    async def on_progress(phase: str, message: str) -> None:
        await asyncio.sleep(0)  # an async callback is awaited before the next one runs
        seen.append((phase, message))

    count = await pool.submit(_tid(), {"action": "progress", "count": 50}, on_progress=on_progress)
    assert count == 50
    assert seen == [(f"Phase{i}", f"message {i}") for i in range(50)]
    results = await asyncio.gather(
        *(pool.submit(_tid(), {"action": "echo", "value": i}) for i in range(20))
    )
    assert results == list(range(20))


@pytest.mark.asyncio
async def test_worker_killed_once_is_replaced_and_task_retried(pool: Pool, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    payload = {"action": "crash_once", "marker": str(tmp_path / "crashed"), "log": str(log)}
    assert await pool.submit(_tid(), payload) == "survived"
    first, second = (int(line) for line in log.read_text().split())
    assert first != second
    assert pool_tasks.process_gone(first)
    assert await pool.submit(_tid(), {"action": "echo", "value": "still serving"}) == (
        "still serving"
    )
    await async_eventually(lambda: len(pool.pids) == 2)


@pytest.mark.asyncio
async def test_worker_that_garbles_its_pipe_is_replaced_and_task_retried(
    pool: Pool, tmp_path: Path
) -> None:
    payload = {
        "action": "garble_once",
        "marker": str(tmp_path / "garbled"),
        "log": str(tmp_path / "runs"),
    }
    assert await pool.submit(_tid(), payload) == "survived"
    first, second = (int(line) for line in (tmp_path / "runs").read_text().split())
    assert pool_tasks.process_gone(first)
    assert second != first


@pytest.mark.asyncio
async def test_task_writing_to_stdout_does_not_garble_the_messages(pool: Pool) -> None:
    assert await pool.submit(_tid(), {"action": "print", "value": "clean"}) == "clean"
    assert await pool.submit(_tid(), {"action": "echo", "value": 2}) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action", "exitcode", "words"),
    [
        ("sigkill", -signal.SIGKILL, "SIGKILL"),
        ("segfault", -signal.SIGSEGV, "SIGSEGV"),
        ("exit", 3, "status 3"),
    ],
)
async def test_worker_that_always_dies_fails_after_bounded_retries(
    pool: Pool, tmp_path: Path, action: str, exitcode: int, words: str
) -> None:
    log = tmp_path / "runs"
    with pytest.raises(WorkerCrashedError) as info:
        await pool.submit(_tid(), {"action": action, "log": str(log)})
    assert info.value.attempts == FAST.max_retries + 1
    assert info.value.exitcode == exitcode
    assert words in str(info.value)
    assert len(log.read_text().split()) == FAST.max_retries + 1
    assert await pool.submit(_tid(), {"action": "echo", "value": 1}) == 1


@pytest.mark.asyncio
async def test_timeout_kills_worker_and_next_task_runs(pool: Pool, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    task_id = _tid()
    sleeper = asyncio.create_task(
        pool.submit(task_id, {"action": "sleep", "seconds": 60, "log": str(log)}, time_limit=0.5)
    )
    pid = await _running_pid(pool, task_id)
    with pytest.raises(TaskTimeoutError) as info:
        await sleeper
    assert info.value.timeout == 0.5
    assert pool_tasks.process_gone(pid)
    assert len(log.read_text().split()) == 1  # a timeout is not retried by default
    assert await pool.submit(_tid(), {"action": "echo", "value": "next"}) == "next"
    await async_eventually(lambda: len(pool.pids) == 2 and pid not in pool.pids)


@pytest.mark.asyncio
async def test_timeouts_can_be_retried(tmp_path: Path) -> None:
    config = PoolConfig(size=1, max_retries=1, retry_timeouts=True, backoff_initial=0.01)
    log = tmp_path / "runs"
    async with WorkerPool(pool_tasks.run, config) as pool:
        with pytest.raises(TaskTimeoutError):
            await pool.submit(
                _tid(), {"action": "sleep", "seconds": 60, "log": str(log)}, time_limit=0.3
            )
    assert len(log.read_text().split()) == 2


@pytest.mark.asyncio
async def test_cancel_running_task_kills_its_worker(pool: Pool) -> None:
    task_id = _tid()
    sleeper = asyncio.create_task(pool.submit(task_id, {"action": "sleep", "seconds": 60}))
    pid = await _running_pid(pool, task_id)
    assert pool.busy == 1
    assert pool.cancel(task_id) is True
    with pytest.raises(TaskCancelledError):
        await sleeper
    assert pool_tasks.process_gone(pid)
    assert pool.cancel(task_id) is False
    assert pool.busy == 0
    assert await pool.submit(_tid(), {"action": "echo", "value": 7}) == 7


@pytest.mark.asyncio
async def test_cancelling_the_awaiting_coroutine_kills_the_worker(pool: Pool) -> None:
    task_id = _tid()
    sleeper = asyncio.create_task(pool.submit(task_id, {"action": "sleep", "seconds": 60}))
    pid = await _running_pid(pool, task_id)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert pool_tasks.process_gone(pid)
    assert await pool.submit(_tid(), {"action": "echo", "value": 8}) == 8


@pytest.mark.asyncio
async def test_cancel_queued_task_drops_it_and_counts_are_observable(tmp_path: Path) -> None:
    stats: list[tuple[int, int]] = []
    log = tmp_path / "runs"
    async with WorkerPool(
        pool_tasks.run, PoolConfig(size=1), on_stats=lambda b, q: stats.append((b, q))
    ) as pool:
        running_id, queued_id = _tid(), _tid()
        running = asyncio.create_task(pool.submit(running_id, {"action": "sleep", "seconds": 60}))
        await _running_pid(pool, running_id)
        queued = asyncio.create_task(
            pool.submit(queued_id, {"action": "echo", "value": 1, "log": str(log)})
        )
        await async_eventually(lambda: pool.queued == 1)
        assert (pool.busy, pool.queued) == (1, 1)
        assert pool.cancel(queued_id)
        with pytest.raises(TaskCancelledError):
            await queued
        assert not log.exists()  # it never ran
        assert (pool.busy, pool.queued) == (1, 0)
        pool.cancel(running_id)
        with pytest.raises(TaskCancelledError):
            await running
        assert (pool.busy, pool.queued) == (0, 0)
    assert (1, 0) in stats and (1, 1) in stats and stats[-1] == (0, 0)


@pytest.mark.asyncio
async def test_exceptions_keep_class_and_attributes_and_are_not_retried(
    pool: Pool, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    with pytest.raises(SpecError) as spec:
        await pool.submit(_tid(), {"action": "raise_spec", "log": str(log)})
    assert spec.value.errors == [
        FieldError("spec.sla.ttft", "must be positive"),
        FieldError("spec.hardware.gpuSku", "unknown SKU 'x100'"),
    ]
    assert spec.value.reason == "ValidationFailed"
    assert str(spec.value) == "; ".join(str(e) for e in spec.value.errors)
    assert "pool_tasks.py" in str(spec.value.__cause__)  # the worker's traceback travels along
    with pytest.raises(ValueError, match=r"^no good$"):
        await pool.submit(_tid(), {"action": "raise_value", "message": "no good", "log": str(log)})
    with pytest.raises(RemoteError) as remote:
        await pool.submit(_tid(), {"action": "raise_unpicklable", "log": str(log)})
    assert remote.value.type_name == "tests.dgdr.pool_tasks.Unpicklable"
    assert "holds a lock" in str(remote.value)
    with pytest.raises(TypeError, match="pickle"):
        await pool.submit(_tid(), {"action": "unpicklable_result", "log": str(log)})
    assert len(log.read_text().split()) == 4


@pytest.mark.asyncio
async def test_duplicate_task_id_is_refused(pool: Pool) -> None:
    task_id = _tid()
    sleeper = asyncio.create_task(pool.submit(task_id, {"action": "sleep", "seconds": 60}))
    await _running_pid(pool, task_id)
    with pytest.raises(ValueError, match="already submitted"):
        await pool.submit(task_id, {"action": "echo", "value": 1})
    pool.cancel(task_id)
    with pytest.raises(TaskCancelledError):
        await sleeper


@pytest.mark.asyncio
async def test_close_fails_pending_tasks_and_leaves_no_process() -> None:
    pool: Pool = WorkerPool(pool_tasks.run, PoolConfig(size=2, close_timeout=2.0))
    await pool.start()
    pids = pool.pids
    assert len(pids) == 2
    tasks = [
        asyncio.create_task(pool.submit(_tid(), {"action": "sleep", "seconds": 60}))
        for _ in range(3)
    ]
    await async_eventually(lambda: pool.busy == 2 and pool.queued == 1)
    await pool.close()
    for task in tasks:
        with pytest.raises(PoolClosedError):
            await task
    assert pool.pids == []
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert not children & set(pids)
    with pytest.raises(PoolClosedError):
        await pool.submit(_tid(), {"action": "echo", "value": 1})


@pytest.mark.asyncio
async def test_workers_that_cannot_load_the_function_break_the_start() -> None:
    config = PoolConfig(size=2, env={pool_tasks.ENV_BREAK_IMPORT: "1"})
    pool: Pool = WorkerPool(pool_tasks.run, config)
    with pytest.raises(PoolBrokenError, match=pool_tasks.ENV_BREAK_IMPORT):
        await pool.start()
    assert pool.pids == []


_ORPHAN_SCRIPT = """
import asyncio, json, sys
from tests.dgdr import pool_tasks
from tests.eventually import async_eventually
from controller.machinery.worker_pool import PoolConfig, WorkerPool

async def main():
    pool = WorkerPool(pool_tasks.run, PoolConfig(size=2, parent_check_interval=0.1))
    await pool.start()
    task = asyncio.ensure_future(pool.submit("t", {"action": "sleep", "seconds": 600}))
    await async_eventually(lambda: pool.running_pid("t"))
    print(json.dumps(pool.pids), flush=True)
    await task

asyncio.run(main())
"""


def test_workers_exit_when_their_parent_dies() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()
    for pid in pids:  # one idle worker, one busy: both notice
        assert pool_tasks.process_gone(pid)


@pytest.mark.asyncio
async def test_close_while_a_replacement_starts_leaves_nothing_behind() -> None:
    for _ in range(3):
        pool: Pool = WorkerPool(pool_tasks.run, PoolConfig(size=1, max_retries=0))
        await pool.start()
        with pytest.raises(WorkerCrashedError):
            await pool.submit(_tid(), {"action": "sigkill"})
        await pool.close()  # the replacement worker is being started right now
        assert pool.pids == []


@pytest.mark.asyncio
async def test_mixed_load_with_cancels_and_kills_settles_cleanly(tmp_path: Path) -> None:
    """Many tasks at once while workers are killed from outside and tasks are cancelled."""
    rng = random.Random(7)
    config = PoolConfig(size=2, max_retries=5, backoff_initial=0.01, backoff_max=0.05)
    async with WorkerPool(pool_tasks.run, config) as pool:
        payloads: dict[str, dict[str, Any]] = {}
        for i in range(60):
            kind = rng.choice(["echo", "sleep", "crash_once", "raise_value"])
            choices: dict[str, dict[str, Any]] = {
                "echo": {"action": "echo", "value": i},
                "sleep": {"action": "sleep", "seconds": rng.uniform(0.0, 0.05)},
                "crash_once": {"action": "crash_once", "marker": str(tmp_path / f"m{i}")},
                "raise_value": {"action": "raise_value", "message": f"v{i}"},
            }
            payloads[f"t{i}"] = choices[kind]
        tasks = {
            tid: asyncio.create_task(pool.submit(tid, payload)) for tid, payload in payloads.items()
        }
        cancelled = set(rng.sample(sorted(tasks), 10))
        for round_ in range(10):
            await asyncio.sleep(0.02)
            for tid in [t for t in cancelled if int(t[1:]) % 10 == round_]:
                pool.cancel(tid)
            victims = [p for p in pool.pids if rng.random() < 0.3]
            for pid in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()
        outcomes = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for (tid, payload), outcome in zip(payloads.items(), outcomes, strict=True):
            if tid in cancelled and isinstance(outcome, TaskCancelledError):
                continue
            if payload["action"] == "raise_value":
                assert isinstance(outcome, ValueError) and str(outcome) == payload["message"]
            elif payload["action"] == "crash_once":
                assert outcome == "survived"
            elif payload["action"] == "echo":
                assert outcome == payload["value"]
            else:
                assert isinstance(outcome, int)
        assert (pool.busy, pool.queued) == (0, 0)
        assert await pool.submit("after", {"action": "echo", "value": "ok"}) == "ok"
        await async_eventually(lambda: len(pool.pids) == 2)
