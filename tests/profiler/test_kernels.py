"""Kernel tables: extraction from a per-operation database tree, and the run-time lookups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from profiler import kernels
from profiler.hardware import get_gpu
from profiler.kernel_tables import Source, extract

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _write(root: Path, rel: str, cols: dict[str, list[object]]) -> None:
    path = root / "systems" / "data" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), str(path))


def _moe_rows(gpu_bw: float, util: float, version_scale: float) -> dict[str, list[object]]:
    """Synthetic MoE kernels that reach exactly ``util`` of the bandwidth roofline."""
    names = [
        "num_tokens",
        "hidden_size",
        "inter_size",
        "topk",
        "num_experts",
        "moe_tp_size",
        "moe_ep_size",
        "moe_dtype",
        "distribution",
        "latency",
    ]
    rows: dict[str, list[object]] = {k: [] for k in names}
    for tokens in (1, 2, 4, 8, 16, 32, 64, 128):
        for ep in (1, 2, 4, 8, 16, 32, 64):
            h, inter, k, e = 7168, 2048, 8, 256
            e_loc = e / ep
            touched = e_loc * (1 - (1 - k / e) ** tokens)
            nbytes = touched * 3 * h * inter * 1.0
            lat_ms = nbytes / gpu_bw / util * 1e3 * version_scale
            for key, val in zip(
                rows,
                (tokens, h, inter, k, e, 1, ep, "fp8_block", "power_law_1.01", lat_ms),
                strict=True,
            ):
                rows[key].append(val)
    return rows


def test_extract_reads_newest_version_per_dtype_and_recovers_util(tmp_path: Path) -> None:
    gpu = get_gpu("h100_sxm")
    bw = gpu.mem_bw_gbps * 1e9
    _write(tmp_path, "h100_sxm/moe/trtllm/1.2.0/moe_perf.parquet", _moe_rows(bw, 0.5, 1.0))
    # An older version measured the same kernels twice as slow: the newest one wins.
    _write(tmp_path, "h100_sxm/moe/trtllm/1.0.0/moe_perf.parquet", _moe_rows(bw, 0.5, 2.0))
    _write(
        tmp_path,
        "h100_sxm/comm/vllm/0.24.0/custom_allreduce_perf.parquet",
        {
            "kernel_source": ["vLLM_custom_graph"] * 12 + ["vLLM_custom_eager"] * 6,
            "num_gpus": [2] * 6 + [4] * 6 + [2] * 6,
            "message_size": [256, 1024, 4096, 16384, 65536, 262144] * 3,
            "latency": [0.004, 0.004, 0.005, 0.008, 0.02, 0.06] * 2 + [0.02] * 6,
        },
    )
    # End-to-end serving tables are never read, wherever they sit.
    (tmp_path / "systems" / "silicon_sample.csv").write_text("not,read\n")
    doc = extract(str(tmp_path))
    grid = np.asarray(doc["moe"]["h100_sxm"]["trtllm"]["fp8b"])
    assert np.allclose(grid[grid > 0.01], 0.5, atol=0.02)
    ar = doc["allreduce"]["h100_sxm"]["vllm"]
    assert set(ar) == {"2", "4"}
    assert min(ar["2"]) == pytest.approx(4e-6)  # latencies are kept in seconds, not clipped


def test_source_refuses_end_to_end_table_in_a_wheel(tmp_path: Path) -> None:
    import zipfile

    whl = tmp_path / "aic.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("aiconfigurator_core/systems/data/h100_sxm/x.parquet", b"")
        z.writestr("aiconfigurator_core/systems/data/silicon_sample.csv", b"")
    with pytest.raises(Exception, match="end-to-end"):
        Source(str(whl))


def test_shipped_tables_cover_the_calibrated_skus() -> None:
    data = json.loads((Path(kernels.__file__).parent / "data" / "kernels.json").read_text())
    for sku in ("h100_sxm", "h200_sxm", "b200_sxm", "b300_sxm", "gb200_sxm", "gb300_sxm"):
        assert {"sglang", "trtllm", "vllm"} <= set(data["moe"][sku])
        assert {"sglang", "trtllm", "vllm"} <= set(data["allreduce"][sku])


def test_lookups_interpolate_alias_and_fall_back() -> None:
    # More tokens per expert use the grouped GEMM better (until compute-bound).
    u = kernels.moe_util("h100_sxm", "vllm", "fp8", [0.05, 1.0, 8.0], 2e10, block=True)
    assert u is not None and u[0] < u[1]
    # A PCIe H100 borrows the SXM part's kernels; a SKU with none gets None (nominal physics).
    assert kernels.moe_util("h100_pcie", "vllm", "bf16", 1.0, 2e10) is not None
    assert kernels.moe_util("v100_sxm", "vllm", "bf16", 1.0, 2e10) is None
    small, large = kernels.allreduce_s("h100_sxm", "trtllm", 8, [1e3, 1e7])  # type: ignore[misc]
    assert 0 < small < large
    assert kernels.allreduce_s("h100_sxm", "trtllm", 3, 1e3) is None
    att = kernels.prefill_attention_util("b200_sxm", "sglang", [256, 8192])
    assert att is not None and att[0] < att[1] <= 1.5
