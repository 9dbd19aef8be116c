"""Measured kernel efficiencies per SKU, engine and dtype, read from ``data/kernels.json``.

The table is extracted once from AIConfigurator's per-operation kernel database by
``python -m profiler.kernel_tables`` (see there for what is and is not read). Each lookup
returns what a kernel of that kind and size achieves, interpolated in log2 of its size: the
share of the roofline grouped expert GEMMs and causal prefill attention reach, and the latency
of the engine's own all-reduce, so the physics prices an MoE layer at 4 tokens per expert on a
B200 in TRT-LLM as measured rather than at a nominal 80 % of bandwidth. SKUs and engines
without data borrow the nearest measured part, or get ``None`` so the caller keeps its
nominal figure.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]
_PATH = Path(__file__).parent / "data" / "kernels.json"

# SKUs without collected kernels borrow the nearest measured part of the same generation.
ALIASES = {
    "h100_pcie": "h100_sxm",
    "a100_pcie": "a100_sxm",
    "a30": "a100_sxm",
    "l40": "l40s",
    "l4": "l40s",
    "gb10": "gb200_sxm",
}
_FALLBACK_BACKENDS = ("trtllm", "vllm", "sglang")

# Below this size the collected latencies are dominated by a fixed per-kernel cost (launch,
# activation quantisation) that serving engines fuse or hide in CUDA graphs; the estimator
# prices that as its own fitted per-layer overhead, so lookups use the efficiency the kernels
# reach at this size and above.
MIN_EXPERT_BYTES = float(1 << 30)


@lru_cache(maxsize=1)
def tables() -> dict[str, Any]:
    if not _PATH.is_file():
        return {}
    data: dict[str, Any] = json.loads(_PATH.read_text(encoding="utf-8"))
    return data


def _pick(table: dict[str, Any], sku: str, backend: str) -> Any:
    per_sku = table.get(sku) or table.get(ALIASES.get(sku, ""))
    if not isinstance(per_sku, dict):
        return None
    if backend in per_sku:
        return per_sku[backend]
    for be in _FALLBACK_BACKENDS:
        if be in per_sku:
            return per_sku[be]
    return None


def _bins(name: str) -> F64:
    return np.asarray(tables()["bins"][name], dtype=np.float64)


def _interp1(grid: list[float], bins: F64, x: F64) -> F64:
    out: F64 = np.interp(np.log2(np.maximum(x, 1e-30)), bins, np.asarray(grid, dtype=np.float64))
    return out


def _interp2(grid: list[list[float]], xb: F64, yb: F64, x: F64, y: F64) -> F64:
    """Bilinear interpolation in (log2 x, log2 y), clamped to the table's edges."""
    g = np.asarray(grid, dtype=np.float64)
    lx = np.clip(np.log2(np.maximum(x, 1e-30)), xb[0], xb[-1])
    ly = np.clip(np.log2(np.maximum(y, 1e-30)), yb[0], yb[-1])
    fx, fy = lx - xb[0], ly - yb[0]
    x0 = np.minimum(np.floor(fx).astype(int), len(xb) - 2)
    y0 = np.minimum(np.floor(fy).astype(int), len(yb) - 2)
    tx, ty = fx - x0, fy - y0
    out: F64 = (
        g[x0, y0] * (1 - tx) * (1 - ty)
        + g[x0 + 1, y0] * tx * (1 - ty)
        + g[x0, y0 + 1] * (1 - tx) * ty
        + g[x0 + 1, y0 + 1] * tx * ty
    )
    return out


def _dtype(quant: str, block: bool) -> str:
    if quant == "fp8":
        return "fp8b" if block else "fp8"
    return quant


def _f(a: ArrayLike) -> F64:
    return np.asarray(a, dtype=np.float64)


def moe_util(
    sku: str,
    backend: str,
    quant: str,
    tokens_per_expert: ArrayLike,
    expert_bytes: ArrayLike,
    *,
    block: bool = False,
) -> F64 | None:
    """Share of roofline the grouped expert GEMMs reach (``expert_bytes`` held by one GPU)."""
    t = tables()
    per = _pick(t.get("moe", {}), sku, backend) if t else None
    if not isinstance(per, dict):
        return None
    grid = per.get(_dtype(quant, block)) or per.get(quant) or per.get("fp8b") or per.get("bf16")
    if grid is None:
        return None
    held = np.maximum(_f(expert_bytes), MIN_EXPERT_BYTES)
    return _interp2(grid, _bins("tpe"), _bins("ew"), _f(tokens_per_expert), held)


def prefill_attention_util(sku: str, backend: str, isl: ArrayLike) -> F64 | None:
    """Share of BF16 peak causal prefill attention reaches at sequence length ``isl``."""
    t = tables()
    grid = _pick(t.get("attention", {}).get("context", {}), sku, backend) if t else None
    if not isinstance(grid, list):
        return None
    return _interp1(grid, _bins("isl"), _f(isl))


def allreduce_s(sku: str, backend: str, gpus: int, elements: ArrayLike) -> F64 | None:
    """Measured latency (s) of the engine's all-reduce of ``elements`` bf16 values."""
    t = tables()
    per = _pick(t.get("allreduce", {}), sku, backend) if t else None
    if not isinstance(per, dict) or str(gpus) not in per:
        return None
    return _interp1(per[str(gpus)], _bins("ar"), _f(elements))
