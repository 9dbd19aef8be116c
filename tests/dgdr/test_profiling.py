"""ProfileRunner with the real profiler in real worker processes: progress, sharing, cancel."""

from __future__ import annotations

import asyncio
import copy
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from controller.dgdr.profiling import ProfileRunner, ProfilingConfig, request_key
from controller.machinery.worker_pool import PoolClosedError, PoolConfig, TaskCancelledError
from profiler.errors import NotAvailableError, SpecError
from tests.dgdr import pool_tasks
from tests.eventually import async_eventually

SMALL: dict[str, Any] = {
    "model": "Qwen/Qwen3-0.6B",
    "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.0",
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, *, delay: float = 0.0, **kw: Any) -> ProfilingConfig:
    env = {pool_tasks.ENV_COUNT_LOG: str(tmp_path / "runs"), pool_tasks.ENV_DELAY: str(delay)}
    pool = PoolConfig(size=2, task_timeout=60.0, backoff_initial=0.01, env=env)
    return ProfilingConfig(pool=pool, **kw)


def _runs(tmp_path: Path) -> list[int]:
    log = tmp_path / "runs"
    return [int(x) for x in log.read_text().split()] if log.exists() else []


async def _running_pid(runner: ProfileRunner, spec: dict[str, Any], name: str) -> int:
    task_id = request_key(spec, dgdr_name=name, namespace="ns")
    pid: int = await async_eventually(
        lambda: runner.pool.running_pid(task_id), message=f"a worker runs {task_id}"
    )
    return pid


@pytest_asyncio.fixture
async def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def counted(tmp_path: Path, clock: Clock) -> AsyncIterator[ProfileRunner]:
    runner = ProfileRunner(
        _config(tmp_path, cache_ttl=600.0), clock=clock, worker_fn=pool_tasks.counted_profile
    )
    async with runner:
        yield runner
    assert runner.pool.pids == []


@pytest.mark.asyncio
async def test_small_spec_profiles_through_the_pool_with_progress() -> None:
    seen: list[str] = []
    async with ProfileRunner(ProfilingConfig(pool=PoolConfig(size=1))) as runner:
        outcome = await runner.run(
            "ns/small",
            SMALL,
            dgdr_name="small",
            namespace="ns",
            on_progress=lambda phase, message: seen.append(phase),
        )
    assert outcome.source == "computed" and not outcome.shared
    assert outcome.dgd["kind"] == "DynamoGraphDeployment"
    assert outcome.dgd["apiVersion"] == "nvidia.com/v1alpha1"
    assert outcome.dgd["metadata"]["name"] == "small-dgd"
    assert outcome.result["dgd"] == outcome.dgd
    assert outcome.result["chosen"]["gpus"] <= 8
    assert outcome.configmaps == outcome.result["configmaps"]
    # what no reader uses stays in the worker
    assert not {"candidates", "pareto"} & outcome.result.keys()
    assert seen[0] == "Initializing" and seen[-1] == "Done"
    assert "SweepingPrefill" in seen and "GeneratingDGD" in seen
    assert seen.index("SweepingPrefill") < seen.index("GeneratingDGD")


@pytest.mark.asyncio
async def test_concurrent_identical_requests_run_one_profile(
    counted: ProfileRunner, tmp_path: Path
) -> None:
    progress: list[list[str]] = [[] for _ in range(5)]

    async def one(i: int) -> Any:
        async def on_progress(phase: str, message: str) -> None:
            progress[i].append(phase)

        return await counted.run(
            "ns/a", SMALL, dgdr_name="a", namespace="ns", on_progress=on_progress
        )

    outcomes = await asyncio.gather(*(one(i) for i in range(5)))
    assert len(_runs(tmp_path)) == 1
    assert counted.profiles_computed == 1
    assert sorted(o.source for o in outcomes) == ["computed"] + ["joined"] * 4
    assert all(o.dgd == outcomes[0].dgd for o in outcomes)
    outcomes[0].dgd["metadata"]["name"] = "mutated"  # callers never share one object
    assert outcomes[1].dgd["metadata"]["name"] == "a-dgd"
    assert all(p == progress[0] and "GeneratingDGD" in p for p in progress)


@pytest.mark.asyncio
async def test_recent_result_is_reused_until_it_expires(
    counted: ProfileRunner, tmp_path: Path, clock: Clock
) -> None:
    first = await counted.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
    again = await counted.run("ns/a", copy.deepcopy(SMALL), dgdr_name="a", namespace="ns")
    assert (first.source, again.source) == ("computed", "cached")
    assert again.dgd == first.dgd
    assert len(_runs(tmp_path)) == 1
    clock.now += 601.0
    later = await counted.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
    assert later.source == "computed"
    assert len(_runs(tmp_path)) == 2


@pytest.mark.asyncio
async def test_name_namespace_and_spec_are_part_of_the_key(
    counted: ProfileRunner, tmp_path: Path
) -> None:
    a = await counted.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
    b = await counted.run("ns/b", SMALL, dgdr_name="b", namespace="ns")
    other_ns = await counted.run("other/a", SMALL, dgdr_name="a", namespace="other")
    bigger = {**SMALL, "hardware": {**SMALL["hardware"], "totalGpus": 4}}
    c = await counted.run("ns/a", bigger, dgdr_name="a", namespace="ns")
    assert [o.source for o in (a, b, other_ns, c)] == ["computed"] * 4
    assert (a.dgd["metadata"]["name"], b.dgd["metadata"]["name"]) == ("a-dgd", "b-dgd")
    assert len(_runs(tmp_path)) == 4


@pytest.mark.asyncio
async def test_cache_is_bounded(tmp_path: Path) -> None:
    runner = ProfileRunner(_config(tmp_path, cache_size=1), worker_fn=pool_tasks.counted_profile)
    async with runner:
        await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
        await runner.run("ns/b", SMALL, dgdr_name="b", namespace="ns")
        assert (await runner.run("ns/b", SMALL, dgdr_name="b", namespace="ns")).shared
        again = await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
    assert again.source == "computed"
    assert len(_runs(tmp_path)) == 3


@pytest.mark.asyncio
async def test_cache_is_bounded_by_bytes_and_gives_back_the_same_result(tmp_path: Path) -> None:
    """Results are kept compressed: a cached outcome equals the computed one, and the byte budget
    evicts the oldest results first."""
    runner = ProfileRunner(_config(tmp_path, cache_bytes=1), worker_fn=pool_tasks.counted_profile)
    async with runner:
        first = await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
        assert runner.cached_bytes == 0  # one result is bigger than the budget: nothing kept
        assert (await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")).source == "computed"
    assert len(_runs(tmp_path)) == 2
    runner = ProfileRunner(_config(tmp_path), worker_fn=pool_tasks.counted_profile)
    async with runner:
        computed = await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
        one = runner.cached_bytes
        assert 0 < one < len(repr(computed.result))  # compressed, well below the dict's size
        cached = await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
        assert cached.source == "cached"
        assert (cached.result, cached.dgd, cached.configmaps) == (
            computed.result,
            computed.dgd,
            computed.configmaps,
        )
        assert computed.dgd == first.dgd  # the result is the same; elapsed_s is not
        cached.result["dgd"]["metadata"]["name"] = "changed"  # each caller gets its own copy
        again = await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
        assert again.dgd["metadata"]["name"] == "a-dgd"
    runner = ProfileRunner(
        _config(tmp_path, cache_bytes=one + one // 2), worker_fn=pool_tasks.counted_profile
    )
    async with runner:
        await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
        await runner.run("ns/b", SMALL, dgdr_name="b", namespace="ns")  # evicts a
        assert (await runner.run("ns/b", SMALL, dgdr_name="b", namespace="ns")).shared
        assert (await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")).source == "computed"
        assert runner.cached_bytes <= one + one // 2


@pytest.mark.asyncio
async def test_spec_errors_come_back_typed_and_are_cached(
    counted: ProfileRunner, tmp_path: Path
) -> None:
    bad = {**SMALL, "hardware": {**SMALL["hardware"], "gpuSku": "x100"}}
    for _ in range(2):
        with pytest.raises(SpecError) as info:
            await counted.run("ns/bad", bad, dgdr_name="bad", namespace="ns")
        assert [e.path for e in info.value.errors] == ["spec.hardware.gpuSku"]
        assert str(info.value) == str(info.value.errors[0])
    assert len(_runs(tmp_path)) == 1
    with pytest.raises(NotAvailableError, match="thorough"):
        await counted.run(
            "ns/t",
            {**SMALL, "backend": "vllm", "searchStrategy": "thorough"},
            dgdr_name="t",
            namespace="ns",
        )


@pytest.mark.asyncio
async def test_cancel_kills_the_running_profile(tmp_path: Path) -> None:
    runner = ProfileRunner(_config(tmp_path, delay=60.0), worker_fn=pool_tasks.counted_profile)
    async with runner:
        first = asyncio.create_task(runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns"))
        joined = asyncio.create_task(runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns"))
        pid = await _running_pid(runner, SMALL, "a")
        assert runner.cancel("ns/a") is True
        for task in (first, joined):
            with pytest.raises(TaskCancelledError):
                await task
        assert pool_tasks.process_gone(pid)
        assert runner.cancel("ns/a") is False
        # the caller going away (a cancelled reconcile) stops it too
        waiter = asyncio.create_task(runner.run("ns/b", SMALL, dgdr_name="b", namespace="ns"))
        pid = await _running_pid(runner, SMALL, "b")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool_tasks.process_gone(pid)
        assert runner.pool.busy == 0


@pytest.mark.asyncio
async def test_profile_survives_its_worker_being_killed(tmp_path: Path) -> None:
    runner = ProfileRunner(_config(tmp_path, delay=1.0), worker_fn=pool_tasks.counted_profile)
    waiting = asyncio.Event()

    def on_progress(phase: str, message: str) -> None:
        if phase == "Waiting":  # the worker has logged its run and sleeps before profiling
            waiting.set()

    async with runner:
        task = asyncio.create_task(
            runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns", on_progress=on_progress)
        )
        async with asyncio.timeout(30):
            await waiting.wait()
        pid = await _running_pid(runner, SMALL, "a")
        psutil.Process(pid).send_signal(signal.SIGKILL)
        outcome = await task
    assert outcome.dgd["metadata"]["name"] == "a-dgd"
    runs = _runs(tmp_path)
    assert len(runs) == 2 and runs[0] == pid and runs[1] != pid


@pytest.mark.asyncio
async def test_close_fails_waiting_callers_and_stops_workers(tmp_path: Path) -> None:
    runner = ProfileRunner(_config(tmp_path, delay=60.0), worker_fn=pool_tasks.counted_profile)
    await runner.start()
    pids = runner.pool.pids
    waiting = [
        asyncio.create_task(runner.run(f"ns/{n}", SMALL, dgdr_name=n, namespace="ns"))
        for n in ("a", "b", "c")
    ]
    await _running_pid(runner, SMALL, "a")
    await runner.close()
    for task in waiting:
        with pytest.raises(PoolClosedError):
            await task
    assert all(pool_tasks.process_gone(pid) for pid in pids)
    with pytest.raises(PoolClosedError):
        await runner.run("ns/a", SMALL, dgdr_name="a", namespace="ns")
