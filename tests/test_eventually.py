"""The test waiting helpers: they return the value that held, and say why they failed."""

from __future__ import annotations

import itertools

import pytest

from tests.eventually import async_consistently, async_eventually, consistently, eventually


def test_eventually_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert eventually(lambda: next(counter) >= 3 and "ready", timeout=5, interval=0) == "ready"


def test_eventually_retries_assertions_and_reports_the_last_one() -> None:
    def never() -> bool:
        raise AssertionError("phase is Pending")

    with pytest.raises(AssertionError, match="phase is Pending") as info:
        eventually(never, timeout=0.05, interval=0.01, message="the DGDR is Ready")
    assert "not within 0.05s: the DGDR is Ready" in str(info.value)
    assert isinstance(info.value.__cause__, AssertionError)


def test_eventually_reports_the_last_value_and_the_on_timeout_text() -> None:
    with pytest.raises(AssertionError, match=r"last value: \[\]\nlog tail") as info:
        eventually(list, timeout=0.02, interval=0.01, on_timeout=lambda: "log tail")
    assert "attempt(s)" in str(info.value)


def test_eventually_lets_other_exceptions_through_at_once() -> None:
    calls = []

    def broken() -> bool:
        calls.append(1)
        raise RuntimeError("process exited")

    with pytest.raises(RuntimeError, match="process exited"):
        eventually(broken, timeout=5, interval=0.01)
    assert calls == [1]


def test_consistently_fails_at_the_first_sample_that_does_not_hold() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"stopped holding: below three.*last value: False"):
        consistently(lambda: next(counter) < 3, duration=5, interval=0, message="below three")
    assert next(counter) == 4  # stopped right after the fourth sample


def test_consistently_samples_for_the_whole_duration() -> None:
    samples: list[int] = []

    def sample() -> bool:
        samples.append(1)
        return True

    consistently(sample, duration=0.05, interval=0.01)
    assert len(samples) >= 3


@pytest.mark.asyncio
async def test_async_eventually_awaits_coroutine_predicates() -> None:
    counter = itertools.count()

    async def ready() -> int | None:
        n = next(counter)
        return n if n >= 2 else None

    assert await async_eventually(ready, timeout=5, interval=0) == 2
    assert await async_eventually(lambda: "sync too", timeout=1) == "sync too"
    with pytest.raises(AssertionError, match=r"not within 0.02s: never.*last value: None"):
        await async_eventually(lambda: None, timeout=0.02, interval=0.01, message="never")


@pytest.mark.asyncio
async def test_async_consistently_fails_when_the_condition_breaks() -> None:
    state = {"n": 0}

    async def small() -> bool:
        state["n"] += 1
        return state["n"] < 3

    with pytest.raises(AssertionError, match="stopped holding"):
        await async_consistently(small, duration=5, interval=0)
    await async_consistently(lambda: True, duration=0.03, interval=0.01)


def test_a_lambda_without_a_message_is_named_by_its_source() -> None:
    with pytest.raises(AssertionError, match="1 > 2"):
        eventually(lambda: 1 > 2, timeout=0.01, interval=0.01)
