"""Which measured rows the calibration counts: each run once, the copy with worker counts."""

from __future__ import annotations

from profiler.calibrate import distinct_measurements
from profiler.estimate_csv import CalRow, parse_row


def _row(**kw: str) -> dict[str, str]:
    base = {
        "model_path": "Qwen/Qwen3-32B",
        "system": "h200_sxm",
        "backend": "trtllm",
        "precision": "fp8",
        "mode": "agg",
        "isl": "1024",
        "osl": "1024",
        "batch_size": "16",
        "tp_size": "2",
        "silicon_data_source": "db-dump; silicon_concurrency=16",
        "silicon_ttft_ms": "120.5",
        "silicon_tpot_ms": "11.25",
    }
    base.update(kw)
    return base


def _disagg(workers: bool, decode_tp: str) -> dict[str, str]:
    counts = {"prefill_num_workers": "1", "decode_num_workers": "4"} if workers else {}
    return _row(
        mode="disagg",
        batch_size="",
        tp_size="",
        prefill_tp_size="2",
        decode_tp_size=decode_tp,
        silicon_data_source="src; silicon_concurrency=64",
        silicon_ttft_ms="300.0",
        silicon_tpot_ms="20.0",
        **counts,
    )


def test_a_run_counts_once_and_the_copy_with_worker_counts_is_kept() -> None:
    rows: list[CalRow] = [
        parse_row(0, _row()),
        parse_row(1, _row()),  # the same run dumped twice
        parse_row(2, _row(silicon_ttft_ms="99.0")),  # another run
        parse_row(3, _disagg(workers=False, decode_tp="8")),  # reads as one 8-GPU decode worker
        parse_row(4, _disagg(workers=True, decode_tp="2")),  # the recorded deployment
    ]
    assert not rows[3].workers_recorded and rows[4].workers_recorded
    kept = distinct_measurements(rows)
    assert [r.index for r in kept] == [0, 2, 4]
    assert kept[-1].d_workers == 4 and kept[-1].batch == 16.0
    # Order does not matter: the copy with counts wins wherever it sits.
    assert [r.index for r in distinct_measurements(rows[::-1])] == [4, 2, 1]
