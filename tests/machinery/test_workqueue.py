"""The workqueue and the controller loop, with no server: the guarantees a reconciler relies on."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable

import pytest

from controller.machinery.workers import Controller, Result, TerminalError
from controller.machinery.workqueue import (
    LOW_PRIORITY,
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    WorkQueue,
    default_rate_limiter,
)
from metrics import REGISTRY
from tests.eventually import async_consistently, async_eventually


def _name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def _sample(metric: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(metric, labels)
    return 0.0 if value is None else value


async def _get(queue: WorkQueue, within: float = 2.0) -> str | None:
    return await asyncio.wait_for(queue.get(), within)


# ---- queue semantics ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_adds_of_a_waiting_key_collapse_to_one() -> None:
    name = _name()
    queue = WorkQueue(name)
    for _ in range(5):
        queue.add("ns/a")
    queue.add("ns/b")
    assert len(queue) == 2
    assert _sample("workqueue_adds_total", name=name, controller=name) == 2
    assert _sample("workqueue_depth", name=name, controller=name, priority="") == 2
    assert await _get(queue) == "ns/a"
    assert await _get(queue) == "ns/b"
    assert len(queue) == 0
    queue.shutdown()


@pytest.mark.asyncio
async def test_key_added_while_processing_is_held_back_until_done() -> None:
    queue = WorkQueue(_name())
    queue.add("k")
    assert await _get(queue) == "k"
    queue.add("k")
    queue.add("k")
    assert len(queue) == 0  # not handed to a second worker while the first holds it
    second = asyncio.create_task(queue.get())
    await async_consistently(lambda: not second.done(), duration=0.05, message="k held back")
    queue.done("k")
    assert await asyncio.wait_for(second, 2) == "k"  # redelivered once, after done
    queue.done("k")
    assert len(queue) == 0
    queue.shutdown()


@pytest.mark.asyncio
async def test_many_workers_never_hold_the_same_key_at_once() -> None:
    queue = WorkQueue(_name())
    holding: set[str] = set()
    overlaps: list[str] = []
    handled: list[str] = []

    async def worker() -> None:
        while (key := await queue.get()) is not None:
            if key in holding:
                overlaps.append(key)
            holding.add(key)
            await asyncio.sleep(0.001)
            handled.append(key)
            holding.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for round_ in range(50):
        for i in range(4):
            queue.add(f"k{i}")
        if round_ % 5 == 0:
            await asyncio.sleep(0.002)
    assert await queue.shutdown_with_drain(5.0)
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert overlaps == []
    assert set(handled) == {"k0", "k1", "k2", "k3"}
    assert len(handled) < 50 * 4  # dedup collapsed most of the adds


@pytest.mark.asyncio
async def test_add_after_delays_and_earliest_ready_time_wins() -> None:
    name = _name()
    queue = WorkQueue(name)
    queue.add_after("slow", 30.0)
    queue.add_after("slow", 0.05)  # earlier: wins
    queue.add_after("slow", 60.0)  # later: ignored
    assert len(queue) == 0 and queue.delayed == 1
    assert await _get(queue, within=5.0) == "slow"
    assert queue.delayed == 0
    assert _sample("workqueue_retries_total", name=name, controller=name) == 3
    queue.add_after("now", 0)  # zero delay is a plain add
    assert len(queue) == 1
    queue.shutdown()


@pytest.mark.asyncio
async def test_rate_limited_adds_back_off_and_forget_resets() -> None:
    queue = WorkQueue(_name(), ItemExponentialRateLimiter(0.01, 10.0))
    for expected in range(1, 4):
        queue.add_rate_limited("k")
        assert await _get(queue) == "k"
        queue.done("k")
        assert queue.num_requeues("k") == expected
    queue.forget("k")
    assert queue.num_requeues("k") == 0
    queue.shutdown()


@pytest.mark.asyncio
async def test_higher_priority_first_and_a_re_add_promotes_a_waiting_key() -> None:
    queue = WorkQueue(_name())
    for i in range(5):
        queue.add(f"backlog-{i}", LOW_PRIORITY)
    queue.add("fresh")
    queue.add("backlog-3")  # a real change to an object of the backlog: promoted
    queue.add("backlog-4", LOW_PRIORITY - 1)  # a lower priority never demotes
    got = [await _get(queue) for _ in range(6)]
    assert got == ["fresh", "backlog-3", "backlog-0", "backlog-1", "backlog-2", "backlog-4"]
    assert len(queue) == 0
    queue.shutdown()


@pytest.mark.asyncio
async def test_priority_of_a_key_re_added_while_in_flight_is_kept_for_its_return() -> None:
    queue = WorkQueue(_name())
    queue.add("busy", LOW_PRIORITY)
    assert await _get(queue) == "busy"
    queue.add("busy", LOW_PRIORITY)
    queue.add("busy")  # promoted while in flight
    queue.add("other", LOW_PRIORITY)
    queue.done("busy")
    assert await _get(queue) == "busy"
    assert await _get(queue) == "other"
    queue.shutdown()


@pytest.mark.asyncio
async def test_controller_queues_the_initial_list_below_later_changes() -> None:
    class Source:
        def __init__(self) -> None:
            self.synced = asyncio.Event()
            self.handlers: list[Callable[[str, dict[str, object], object], None]] = []

        def add_handler(self, fn: Callable[[str, dict[str, object], object], None]) -> None:
            self.handlers.append(fn)

        def emit(self, name: str) -> None:
            for fn in self.handlers:
                fn("ADDED", {"metadata": {"name": name, "namespace": "ns"}}, None)

    order: list[str] = []

    async def reconcile(key: str) -> Result:
        order.append(key)
        return Result()

    source = Source()
    ctl = Controller(_name(), reconcile)
    ctl.watch(source)  # type: ignore[arg-type]
    for i in range(3):
        source.emit(f"listed-{i}")
    source.synced.set()
    source.emit("changed")
    ctl.start()
    await async_eventually(lambda: len(order) == 4)
    await ctl.stop(5.0)
    assert order == ["ns/changed", "ns/listed-0", "ns/listed-1", "ns/listed-2"]


# ---- rate limiters -----------------------------------------------------------------------------


def test_exponential_backoff_doubles_from_5ms_to_the_1000s_cap() -> None:
    limiter = ItemExponentialRateLimiter()
    delays = [limiter.when("k") for _ in range(25)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert all(b == min(2 * a, 1000.0) for a, b in itertools.pairwise(delays))
    assert delays[-1] == 1000.0
    assert limiter.num_requeues("k") == 25
    assert limiter.when("other") == 0.005  # per key
    limiter.forget("k")
    assert limiter.when("k") == 0.005
    for _ in range(5000):  # no overflow however long a key keeps failing
        limiter.when("k")
    assert limiter.when("k") == 1000.0


def test_token_bucket_allows_the_burst_then_spaces_at_qps() -> None:
    now = [100.0]
    bucket = BucketRateLimiter(qps=10, burst=100, clock=lambda: now[0])
    assert [bucket.when(f"k{i}") for i in range(100)] == [0.0] * 100
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)
    now[0] += 10.0  # refills, capped at the burst
    assert bucket.when("z") == 0.0


def test_default_limiter_takes_the_longer_of_backoff_and_bucket() -> None:
    now = [0.0]
    limiter = MaxOfRateLimiter(
        ItemExponentialRateLimiter(0.005, 1000.0), BucketRateLimiter(10, 2, clock=lambda: now[0])
    )
    assert limiter.when("a") == 0.005
    assert limiter.when("a") == 0.01
    assert limiter.when("b") == pytest.approx(0.1)  # bucket empty: its delay dominates
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert isinstance(default_rate_limiter(), MaxOfRateLimiter)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"base_delay": 0}, "base_delay"), ({"base_delay": 1, "max_delay": 0.5}, "max_delay")],
)
def test_bad_limiter_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ItemExponentialRateLimiter(**kwargs)


# ---- shutdown ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_shutdown_stops_intake_and_hands_out_what_is_queued() -> None:
    queue = WorkQueue(_name())
    queue.add("a")
    queue.add_after("later", 0.01)
    queue.shutdown()
    queue.add("b")
    queue.add_after("c", 0.01)
    # past the delays: neither delayed add lands once shut down
    await async_consistently(
        lambda: len(queue) == 1 and queue.delayed == 0, duration=0.05, message="only a queued"
    )
    assert await _get(queue) == "a"
    assert await _get(queue) is None  # "later" was cancelled, "b" and "c" refused
    queue.done("a")


@pytest.mark.asyncio
async def test_shutdown_wakes_idle_workers() -> None:
    queue = WorkQueue(_name())
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await async_eventually(lambda: len(queue._getters) == 3, message="three idle getters")
    queue.shutdown()
    assert await asyncio.wait_for(asyncio.gather(*getters), 2) == [None, None, None]


@pytest.mark.asyncio
async def test_drain_waits_for_keys_in_flight_within_the_deadline() -> None:
    queue = WorkQueue(_name())
    queue.add("a")
    assert await _get(queue) == "a"

    async def finish_later() -> None:
        await asyncio.sleep(0.05)
        queue.done("a")

    finisher = asyncio.create_task(finish_later())
    assert await queue.shutdown_with_drain(5.0) is True
    await finisher
    assert queue.processing == frozenset()


@pytest.mark.asyncio
async def test_drain_gives_up_at_the_deadline_and_can_discard_queued_keys() -> None:
    queue = WorkQueue(_name())
    queue.add("stuck")
    queue.add("queued")
    assert await _get(queue) == "stuck"
    assert await queue.shutdown_with_drain(0.05, discard_queued=True) is False
    assert len(queue) == 0
    assert queue.processing == frozenset({"stuck"})
    queue.done("stuck")


@pytest.mark.asyncio
async def test_cancelled_getter_passes_its_wake_up_on() -> None:
    queue = WorkQueue(_name())
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await async_eventually(lambda: len(queue._getters) == 2, message="two idle getters")
    queue.add("k")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 2) == "k"
    with pytest.raises(asyncio.CancelledError):
        await first
    queue.shutdown()


@pytest.mark.asyncio
async def test_unfinished_work_gauges_grow_while_a_key_is_held() -> None:
    name = _name()
    queue = WorkQueue(name)
    queue.add("k")
    await _get(queue)
    labels = {"name": name, "controller": name}
    await async_eventually(
        lambda: _sample("workqueue_longest_running_processor_seconds", **labels) > 0,
        message="the held key's time shows",
    )
    assert _sample("workqueue_unfinished_work_seconds", **labels) > 0
    assert _sample("workqueue_longest_running_processor_seconds", **labels) > 0
    queue.done("k")
    assert _sample("workqueue_unfinished_work_seconds", **labels) == 0
    queue.shutdown()


# ---- controller loop ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_controller_result_semantics_and_metrics() -> None:
    name = _name()
    calls: dict[str, int] = {}
    outcomes = {
        "ok": [Result()],
        "after": [Result(requeue_after=0.02), Result()],
        "again": [Result(requeue=True), Result()],
        "boom": [RuntimeError("transient"), Result()],
        "bad": [TerminalError("spec.x is wrong")],
    }

    async def reconcile(key: str) -> Result:
        n = calls.get(key, 0)
        calls[key] = n + 1
        outcome = outcomes[key][n]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    ctl = Controller(name, reconcile, workers=3, rate_limiter=ItemExponentialRateLimiter(0.01, 1))
    for key in outcomes:
        ctl.enqueue(key)
    ctl.start()
    await async_eventually(lambda: all(calls.get(k, 0) == len(v) for k, v in outcomes.items()))
    # nothing more may arrive: every key ended in success or terminal
    await async_consistently(
        lambda: calls == {k: len(v) for k, v in outcomes.items()}, duration=0.05
    )
    assert calls == {k: len(v) for k, v in outcomes.items()}
    assert await ctl.stop(5.0)

    def total(result: str) -> float:
        return _sample("controller_runtime_reconcile_total", controller=name, result=result)

    assert total("success") == 4
    assert total("requeue_after") == 1
    assert total("requeue") == 1
    assert total("error") == 2
    assert _sample("controller_runtime_reconcile_errors_total", controller=name) == 2
    assert _sample("controller_runtime_terminal_reconcile_errors_total", controller=name) == 1
    assert _sample("controller_runtime_max_concurrent_reconciles", controller=name) == 3
    assert _sample("controller_runtime_active_workers", controller=name) == 0
    assert _sample("controller_runtime_reconcile_time_seconds_count", controller=name) == 8


@pytest.mark.asyncio
async def test_transient_api_failures_log_one_warning_line_and_retry_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An apiserver outage (connection refused, a restarting server's 503) is not a bug: one
    WARNING per failure with the key, the cause and the retry delay; no traceback, no ERROR.
    An unexpected exception still gets its traceback."""
    from controller.machinery.client import ApiError, TransportError

    name = _name()
    failures: list[Exception] = [
        TransportError("create /api/v1/namespaces/ns/configmaps: connection refused"),
        ApiError(503, "ServiceUnavailable", "the request has been made before all known HTTP "
                 "paths have been installed, please try again"),
    ]  # fmt: skip
    calls: list[float] = []

    async def reconcile(key: str) -> Result:
        calls.append(time.monotonic())
        if key == "ns/bug":
            raise KeyError("spec")
        if failures:
            raise failures.pop(0)
        return Result()

    ctl = Controller(name, reconcile, rate_limiter=ItemExponentialRateLimiter(0.05, 1))
    caplog.set_level(logging.INFO, logger="controller.machinery.workers")
    ctl.enqueue("ns/obj")
    ctl.start()
    try:
        await async_eventually(lambda: len(calls) == 3)
        ctl.enqueue("ns/bug")
        await async_eventually(lambda: any(r.levelname == "ERROR" for r in caplog.records))
    finally:
        await ctl.stop(5.0)
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1  # backed off, doubling
    records = [r for r in caplog.records if r.name == "controller.machinery.workers"]
    warnings = [r for r in records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    causes = ("connection refused", "before all known HTTP")
    for record, cause in zip(warnings, causes, strict=True):
        text = record.getMessage()
        assert "ns/obj" in text and cause in text and "retrying in" in text, text
        assert record.exc_info is None and "\n" not in text
    errors = [r for r in records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "ns/bug" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # a bug keeps its traceback


@pytest.mark.asyncio
async def test_controller_reconcile_timeout_is_an_error_and_retried() -> None:
    name = _name()
    calls = 0

    async def reconcile(key: str) -> Result:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        if calls == 2:
            raise TimeoutError("the reconcile's own request timed out")  # not the deadline
        return Result()

    ctl = Controller(
        name,
        reconcile,
        reconcile_timeout=0.05,
        rate_limiter=ItemExponentialRateLimiter(0.01, 1),
    )
    ctl.enqueue("k")
    ctl.start()
    await async_eventually(lambda: calls == 3)
    assert await ctl.stop(5.0)
    assert _sample("controller_runtime_reconcile_timeouts_total", controller=name) == 1
    assert _sample("controller_runtime_reconcile_errors_total", controller=name) == 2


@pytest.mark.asyncio
async def test_controller_stop_lets_the_key_in_flight_finish_and_abort_cancels() -> None:
    finished: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: str) -> Result:
        await release.wait()
        finished.append(key)
        return Result()

    graceful = Controller(_name(), reconcile)
    graceful.enqueue("a")
    graceful.enqueue("b")
    graceful.start()
    await async_eventually(lambda: graceful.queue.processing == {"a"})
    stopping = asyncio.create_task(graceful.stop(5.0))
    await async_eventually(lambda: graceful.queue.shutting_down, message="the stop began")
    release.set()
    assert await stopping
    assert finished == ["a"]  # "b" was queued, not started: left to the next leader

    release.clear()
    aborted = Controller(_name(), reconcile)
    aborted.enqueue("c")
    aborted.start()
    await async_eventually(lambda: aborted.queue.processing == {"c"})
    await asyncio.wait_for(aborted.abort(), 2)
    assert not aborted.running
    assert finished == ["a"]


def test_result_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="requeue_after"):
        Result(requeue_after=-1)


@pytest.mark.asyncio
async def test_logs_during_a_reconcile_carry_the_key_as_json() -> None:
    import io
    import json
    import logging

    from controller.machinery.logging_setup import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.reconcile")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    name = _name()
    done = asyncio.Event()

    async def reconcile(key: str) -> Result:
        logger.info("looking at it", extra={"phase": "Pending"})
        done.set()
        return Result()

    ctl = Controller(name, reconcile)
    ctl.enqueue("ns/obj")
    ctl.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await ctl.stop(5.0)
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue().splitlines()[0])
    assert entry["msg"] == "looking at it"
    assert entry["key"] == "ns/obj"
    assert entry["controller"] == name
    assert entry["phase"] == "Pending"
    assert entry["level"] == "info"
    assert len(entry["reconcileID"]) == 36
