"""Feature columns of the performance model: nominal seconds (or counts) the fit weights.

Each column is one mechanism (weight reads, KV reads, collectives, fixed per-layer cost,
prefill interference, queueing...), so a fitted weight reads as "this engine runs that part at
x times its nominal time". Shared by the estimator, the calibration script and the CSV reader.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from profiler.physics import StepPhysics, kv_bytes_per_elem, kv_capacity_from

F64 = NDArray[np.float64]


def _arr(x: ArrayLike, n: int) -> F64:
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).astype(np.float64)


def _sku_scale(ph: StepPhysics) -> float:
    """Fixed per-layer costs shrink on faster GPUs (relative to H100, clamped)."""
    return float(np.clip(989.0 / ph.gpu.bf16_tflops, 0.3, 4.0))


def _expert_launches(ph: StepPhysics, tokens: F64) -> F64:
    """Expert GEMMs one GPU runs per step (touched experts it holds, over all MoE layers)."""
    m = ph.model
    if not m.is_moe:
        return np.zeros_like(tokens)
    per_gpu = m.num_experts / ph.f(ph.layout.ep)
    return m.moe_layers * per_gpu * ph.touched_fraction(tokens)


TPOT_COLUMNS = (
    "gemm",
    "attention",
    "comm",
    "layers",
    "step",
    "prefill_share",
    "layers_scaled",
    "experts",
    "attention_mla",
    "moe_layers",
    "alltoall",
    "dp_imbalance",
)
TTFT_COLUMNS = (
    "prefill",
    "prefill_log_load",
    "burst",
    "decode_step",
    "layers",
    "request",
    "wait",
    "layers_scaled",
    "worker_width",
    "queue",
    "saturation",
    "chunk_wait",
)

# Prefill tokens an engine step takes (vLLM max_num_batched_tokens, SGLang chunked_prefill_size,
# TRT-LLM max_num_tokens: 8192 by default in each).
STEP_TOKEN_BUDGET = 8192.0


def decode_features(
    ph: StepPhysics,
    isl: ArrayLike,
    osl: ArrayLike,
    batch: ArrayLike,
    *,
    agg: bool,
    cap_batch: bool = False,
) -> F64:
    """Columns as TPOT_COLUMNS: seconds of each step part, or counts for fixed overheads.

    ``prefill_share`` is the prefill compute an aggregated step carries on average (each of the
    batch's requests is prefilled once per ``osl`` steps); it is zero for a decode worker.
    """
    n = ph.layout.tp.shape[0]
    isl_, osl_, b = _arr(isl, n), np.maximum(_arr(osl, n), 1.0), np.maximum(_arr(batch, n), 1.0)
    ctx = isl_ + osl_ / 2.0
    if cap_batch:
        # Measured runs may offer more requests than the KV cache holds: the surplus waits for
        # a slot instead of joining the batch. (Planning callers only offer what fits.)
        cap = kv_capacity_from(ph)
        b = np.minimum(b, np.maximum(cap / (isl_ + osl_), 1.0))
    parts = ph.decode_split(ctx, b)
    layers = ph.layers_per_step()
    if agg:
        pg, pa, pc = ph.prefill_parts(isl_, np.ones(n))
        share = (b / ph.f(ph.layout.dp)) / osl_ * (pg + pa + pc)
    else:
        share = np.zeros(n)
    micro = np.maximum(b / ph.f(ph.layout.pp), 1.0)
    scale = _sku_scale(ph)
    mla = ph.model.is_mla
    zero = np.zeros(n)
    moe_layers = float(ph.model.moe_layers)
    attn = parts["attention"]
    # Attention-data-parallel ranks step in lock-step: the busiest rank (uneven requests and
    # expert routing) sets the pace of every step.
    nominal = parts["dense"] + parts["experts"] + parts["attention"]
    imbalance = nominal * (1.0 - 1.0 / ph.f(ph.layout.dp))
    cols = [
        parts["dense"] + parts["experts"],
        zero if mla else attn,
        parts["allreduce"],
        layers - moe_layers,
        np.ones(n),
        share,
        layers * scale,
        _expert_launches(ph, micro) * scale * 1e-3,
        attn if mla else zero,
        np.full(n, moe_layers),
        parts["alltoall"],
        imbalance,
    ]
    return np.stack(cols, axis=1)


def ttft_features(
    ph: StepPhysics,
    isl: ArrayLike,
    batch: ArrayLike,
    *,
    load: ArrayLike,
    osl: ArrayLike | None = None,
    agg: bool,
    decode_step_s: ArrayLike | None = None,
) -> F64:
    """Columns as TTFT_COLUMNS.

    ``burst`` is the time to prefill ``load`` requests together: closed-loop clients with fixed
    lengths move in lock-step, so a request typically waits for part of a burst of prefills.
    ``wait`` is, for an aggregated worker, the slot wait when the KV cache cannot hold every
    request in flight, and for a prefill worker the KV transfer to the decode worker.
    """
    n = ph.layout.tp.shape[0]
    isl_, b = _arr(isl, n), np.maximum(_arr(batch, n), 1.0)
    load_ = np.maximum(_arr(load, n), 1.0)
    osl_ = np.maximum(_arr(osl if osl is not None else 1, n), 1.0)
    pre = np.sum(ph.prefill_parts(isl_, b), axis=0)
    burst = np.sum(ph.prefill_parts(isl_, load_), axis=0)
    if agg:
        step = np.sum(ph.decode_parts(isl_ + osl_ / 2.0, load_), axis=0)
        cap = kv_capacity_from(ph)
        need = load_ * (isl_ + osl_)
        over = np.clip(1.0 - np.maximum(cap, 1.0) / need, 0.0, 1.0)
        wait = over * osl_ * step
    else:
        step = np.zeros(n)
        wait = _kv_transfer_s(ph, isl_)
    layers = ph.layers_per_step()
    cols = [pre, pre * np.log2(load_), burst, step, layers, np.ones(n), wait]
    cols.append(layers * _sku_scale(ph))
    cols.append(np.log2(ph.f(ph.layout.gpus)) * 1e-2)  # scheduling across a wider worker
    # Queueing at the prefill server: requests arrive once per lifetime (osl decode steps), each
    # needs ``pre`` of prefill; utilisation rho gives the M/D/1-like wait rho/(1-rho).
    dstep = step if agg or decode_step_s is None else _arr(decode_step_s, n)
    cycle = osl_ * np.maximum(dstep, 1e-4) + pre
    servers = ph.f(ph.layout.dp) if agg else np.ones(n)
    # Attention-DP ranks get requests unevenly and step together: the busiest rank's share
    # (balls into bins: mean + sqrt(2 mean ln dp)) sets the pace.
    per = load_ / servers
    rank_load = per + np.sqrt(2.0 * per * np.log(np.maximum(servers, 1.0)))
    rho = np.clip(rank_load * pre / cycle, 0.0, 0.95)
    cols.append(pre * rho / (1.0 - rho))
    # Beyond saturation the closed loop is prefill-bound: each request waits for the prefills
    # of everyone ahead of it minus the time it spent decoding.
    cols.append(np.maximum(rank_load * pre - osl_ * dstep, 0.0))
    # Closed-loop clients with equal lengths arrive together; a burst of ``load`` prompts is
    # prefilled a step budget at a time, and an aggregated worker runs a decode step of the
    # running batch between those chunks: the middle of the burst waits half the chunks.
    chunks = np.ceil(rank_load * isl_ / STEP_TOKEN_BUDGET)
    cols.append(chunks / 2.0 * step if agg else np.zeros(n))
    return np.stack(cols, axis=1)


def _kv_transfer_s(ph: StepPhysics, isl: F64) -> F64:
    """Moving one request's KV cache from the prefill to the decode worker."""
    per_tok = ph.model.kv_elems_per_token * kv_bytes_per_elem(ph.backend, ph.quant)
    return isl * per_tok / (ph.gpu.inter_node_gbps * 1e9 * ph.f(ph.layout.tp))
