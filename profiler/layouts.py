"""Worker layouts the search scores: (tp, pp, ep, dp) per worker, by architecture and backend.

One worker spans tp * pp * dp GPUs. Attention runs tensor-parallel over ``tp`` and data-parallel
over ``dp``; a MoE layer's experts are spread over the same tp * dp GPUs, ``ep`` ways expert-
parallel and tp * dp / ep ways tensor-parallel within an expert (``profiler.physics.Layout``).
"""

from __future__ import annotations

import numpy as np

from profiler.estimator import Engine, Layout, kv_capacity_tokens
from profiler.hardware import GpuSpec
from profiler.models import ModelArch

# Up to this many GPUs per worker, MoE layers may split experts both ways (EP x TP) under any
# attention TP x DP, as AIConfigurator's default sweep (tp, dp, moe_tp, moe_ep in 1..8 with
# tp * dp = moe_tp * moe_ep); wider workers are its wide-EP ladder: experts expert-parallel
# only (moe_tp 1), attention TP up to 8 times DP.
MIXED_MOE_MAX_GPUS = 8
MAX_ATTENTION_TP_WITH_DP = 8


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def backend_supports(backend: str | None, tp: int, ep: int, dp: int) -> bool:
    """Whether ``backend`` can run a MoE worker of this shape (AIConfigurator's filters):
    TensorRT-LLM's attention is either tensor- or data-parallel, never both; vLLM's experts are
    either tensor-parallel or expert-parallel over every GPU of the worker (EP = TP x DP), never
    a mix; SGLang runs any split (``--tp`` is the worker, ``--dp`` and ``--ep`` divide it)."""
    if backend == "trtllm":
        return not (tp > 1 and dp > 1)
    if backend == "vllm":
        return ep in (1, tp * dp)
    return True


def worker_layouts(
    arch: ModelArch, gpu: GpuSpec, max_gpus: int, backend: str | None = None
) -> list[tuple[int, int, int, int]]:
    """(tp, pp, ep, dp) per worker: every layout ``backend`` runs, or with no backend every
    layout some backend runs (AIConfigurator's parallel enumeration; see
    docs/dgdr-contract.md#search-strategies-and-picking-modes).

    Dense: TP within the NVLink domain (up to 8, 16 where the domain is larger), PP across nodes.
    MoE, up to four nodes per worker (or the NVLink domain where larger): attention TP x DP times
    experts EP x TP, including the pure shapes TP, TEP (tensor + expert) and DEP (attention data
    + expert); MLA MoE (DeepSeek) never leaves its experts purely tensor-parallel.
    """
    domain = max(gpu.gpus_per_node, getattr(gpu, "scaleup_domain", 0) or 0)
    tp_cap = min(domain, 16 if domain > 8 else 8)
    out: list[tuple[int, int, int, int]] = []
    if not arch.is_moe:
        for tp in _pow2_upto(min(tp_cap, max_gpus)):
            if arch.heads % tp:
                continue
            for pp in _pow2_upto(min(16, arch.layers, max_gpus // tp)):
                out.append((tp, pp, 1, 1))
        return out
    experts = max(arch.num_experts, 1)
    moe_cap = min(max_gpus, max(4 * gpu.gpus_per_node, domain), 64, experts)
    mla = getattr(arch, "attention", "gqa") == "mla"
    for g in _pow2_upto(moe_cap):
        for tp in _pow2_upto(g):
            dp = g // tp
            if arch.heads % tp or (dp > 1 and tp > min(tp_cap, MAX_ATTENTION_TP_WITH_DP)):
                continue
            for ep in _pow2_upto(g):
                if experts % ep:
                    continue
                moe_tp = g // ep
                pure_tp = dp == 1 and ep == 1
                if g > 1 and ep == 1 and (mla or (pure_tp and tp > tp_cap)):
                    continue
                if g > MIXED_MOE_MAX_GPUS and moe_tp > 1 and not pure_tp:
                    continue
                if backend_supports(backend, tp, ep, dp):
                    out.append((tp, 1, ep, dp))
    return out


def layout_rows(rows: list[tuple[int, int, int, int]] | np.ndarray) -> Layout:
    """The estimator's layout table for rows of (tp, pp, ep, dp)."""
    a = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return Layout(tp=a[:, 0].copy(), pp=a[:, 1].copy(), ep=a[:, 2].copy(), dp=a[:, 3].copy())


def min_gpus_to_fit(
    arch: ModelArch, gpu: GpuSpec, quant: str, isl: int, osl: int, budget: int
) -> int | None:
    """Fewest GPUs on which one worker holds the weights and one request's KV cache, or None."""
    limit = max(budget, 512)
    layouts = worker_layouts(arch, gpu, limit)
    if not layouts:
        return None
    arr = np.asarray(layouts, dtype=np.int64)
    cap = kv_capacity_tokens(Engine(arch, gpu, "vllm", quant, layout_rows(arr)))
    gpus = arr[:, 0] * arr[:, 1] * arr[:, 3]
    ok = np.isfinite(cap) & (cap >= isl + osl)
    return int(gpus[ok].min()) if ok.any() else None


__all__ = ["backend_supports", "layout_rows", "min_gpus_to_fit", "worker_layouts"]
