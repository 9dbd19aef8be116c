"""The thorough sweep's pure helpers (controller/dgdr/thorough.py): names that cannot collide
and fit Dynamo's service-name limit, aiperf's export read into a measurement point, the bounds
the sweep refuses. The sweep itself runs in tests/serving/test_thorough.py."""

from __future__ import annotations

import asyncio
import re
from typing import Any, cast

import pytest

from controller.dgdr.thorough import (
    BenchmarkError,
    SweepConfig,
    ThoroughSweeper,
    _Slot,
    _Sweep,
    point_from_aiperf,
    spec_hash,
    sweep_names,
    synthetic_prompt,
)
from profiler.request import MAX_DGD_SERVICE_NAME, PlanRequest

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_names_are_unique_per_dgdr_life_and_valid() -> None:
    seen = set()
    for ns in ("a", "b"):
        for name in ("x", "a-very-long-dgdr-name-" + "y" * 40):
            for uid in ("u1", "u2"):
                cm, prefix = sweep_names(ns, name, uid)
                assert DNS_LABEL.match(cm) and DNS_LABEL.match(prefix), (cm, prefix)
                assert len(cm) <= 63
                # the longest service name of any backend still fits after <prefix>-<index>
                assert len(f"{prefix}-99") + 1 + len("VllmPrefillWorker") <= MAX_DGD_SERVICE_NAME
                seen.add((cm, prefix))
    assert len(seen) == 8


def test_spec_hash_ignores_key_order_and_unmeasured_fields() -> None:
    assert spec_hash({"a": 1, "b": {"c": 2}}) == spec_hash({"b": {"c": 2}, "a": 1})
    assert spec_hash({"a": 1}) != spec_hash({"a": 2})
    # what may change while profiling, and changes nothing measured, keeps the sweep
    assert spec_hash({"a": 1, "autoApply": False}) == spec_hash(
        {"a": 1, "autoApply": True, "runtimeVersionOverride": "1.2.3"}
    )


def test_aiperf_export_read_as_means() -> None:
    export = {
        "request_count": {"avg": 16},
        "time_to_first_token": {"avg": 41.5, "p50": 40.0},
        "inter_token_latency": {"avg": 6.25},
        "output_token_throughput": {"avg": 1234.5},
        "request_throughput": {"avg": 12.3},
        "error_summary": [{"count": 2}],
    }
    p = point_from_aiperf(export, concurrency=4, isl=500, osl=50)
    assert (p.ttft_ms, p.itl_ms, p.tokens_s, p.requests_s) == (41.5, 6.25, 1234.5, 12.3)
    assert (p.requests, p.errors, p.concurrency, p.isl, p.osl) == (16, 2, 4, 500, 50)
    with pytest.raises(BenchmarkError, match="no successful request"):
        point_from_aiperf({"error_summary": [{"count": 4}]}, concurrency=1, isl=1, osl=1)


def test_synthetic_prompt_has_the_requested_words() -> None:
    assert len(synthetic_prompt(500, 3).split()) == 500
    assert synthetic_prompt(10, 1) != synthetic_prompt(10, 2)


@pytest.mark.parametrize(
    "bad", [{"budget": 0}, {"parallel": 0}, {"requests": 0}, {"ready_timeout": 0.0}]
)
def test_sweep_config_refuses_empty_bounds(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SweepConfig(**bad)  # type: ignore[arg-type]


def _slot(index: int, prefill_tp: int, decode_tp: int) -> _Slot:
    def worker(role: str, tp: int) -> dict[str, int | str]:
        return {"role": role, "tp": tp, "pp": 1, "ep": 1, "dp": 1, "batch": 8, "replicas": 1}

    predicted = {
        "mode": "disagg",
        "backend": "vllm",
        "workers": [worker("prefill", prefill_tp), worker("decode", decode_tp)],
        "gpus": prefill_tp + decode_tp,
        "ttft_ms": 10.0,
        "itl_ms": 5.0,
        "tokens_s": 100.0,
        "requests_s": 1.0,
        "meets_sla": True,
    }
    return _Slot(index, f"t-{index}", predicted)


@pytest.mark.parametrize(("parallel", "most_at_once"), [(1, 1), (2, 2), (4, 2)])
def test_candidates_run_at_most_parallel_at_once_within_total_gpus(
    parallel: int, most_at_once: int
) -> None:
    """Units of 2, 3, 2, 2 GPUs within a budget of 4: never more than ``parallel`` at once, nor
    more GPUs than the budget (the 3-GPU unit runs alone), and every candidate runs once."""
    req = PlanRequest.from_spec(
        {
            "model": "Qwen/Qwen3-0.6B",
            "backend": "vllm",
            "searchStrategy": "thorough",
            "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 4},
        }
    )
    slots = [_slot(0, 1, 1), _slot(1, 1, 2), _slot(2, 1, 1), _slot(3, 1, 1)]
    sweep = _Sweep("ns/x", "ns", "x", "uid", {}, req, "cm", "t", "hash", slots)
    running: dict[str, int] = {}
    peaks: list[tuple[int, int]] = []
    ran: list[str] = []

    class Fake(ThoroughSweeper):
        async def _candidate(self, sweep: Any, slot: Any, total: int, progress: Any) -> None:
            running[slot.name] = 3 if slot.index == 1 else 2
            peaks.append((len(running), sum(running.values())))
            await asyncio.sleep(0.01)
            ran.append(slot.name)
            del running[slot.name]

    async def progress(phase: str, message: str) -> None:
        return None

    sweeper = Fake(cast(Any, None), None, cast(Any, None), SweepConfig(parallel=parallel))
    asyncio.run(sweeper._sweep(sweep, progress))
    assert sorted(ran) == ["t-0", "t-1", "t-2", "t-3"]
    assert max(n for n, _ in peaks) == most_at_once
    assert all(gpus <= 4 for _, gpus in peaks)
