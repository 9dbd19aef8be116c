"""Serving-performance model: roofline physics per operator, scaled by fitted constants.

Every function takes one model, one GPU, one backend and precision, and arrays of candidate
worker layouts (one row per candidate), and returns one figure per row, so the search can cost
thousands of candidates in one numpy pass.

The physics (``_Physics``) yields nominal times of the parts of a step (GEMM weight reads and
FLOPs, attention and KV reads, collectives, per-layer overhead); the fitted constants in
``data/calibration.json`` (made by ``python -m profiler.calibrate``) weight those parts per
backend and serving mode, because engines differ in kernels and scheduling more than in physics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from profiler.arch import WEIGHT_BYTES, ModelArch
from profiler.hardware import GpuSpec

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

BACKENDS = ("vllm", "sglang", "trtllm")
GIB = float(1 << 30)

# Share of GPU memory each engine hands to weights + KV cache (vLLM gpu_memory_utilization,
# SGLang mem_fraction_static, TRT-LLM free_gpu_memory_fraction of what is left).
_MEM_FRACTION = {"vllm": 0.90, "sglang": 0.88, "trtllm": 0.90}
_RESERVE_GIB = 1.5  # CUDA context, NCCL buffers, allocator slack
_MAX_STEP_TOKENS = 8192  # activation workspace is sized for one chunk of this many tokens
_NOMINAL_MBU = 0.8  # nominal efficiencies the physics uses before calibration rescales parts
_NOMINAL_MFU = 0.6
_P2P_S = 10e-6


@dataclass(frozen=True)
class Layout:
    """Candidate workers, one row each: TP, PP, expert parallel and attention data parallel.

    GPUs per worker = tp * pp * dp; experts are spread over tp * dp GPUs of which ``ep`` ways
    are expert-parallel (the rest tensor-parallel within an expert).
    """

    tp: I64
    pp: I64
    ep: I64
    dp: I64

    @property
    def gpus(self) -> I64:
        return self.tp * self.pp * self.dp

    def __len__(self) -> int:
        return int(np.asarray(self.tp).shape[0]) if np.ndim(self.tp) else 1

    @staticmethod
    def of(tp: ArrayLike, pp: ArrayLike = 1, ep: ArrayLike = 1, dp: ArrayLike = 1) -> Layout:
        """Broadcast scalars or sequences to equal-length int64 arrays."""
        arrs = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (tp, pp, ep, dp))
        )
        tp_, pp_, ep_, dp_ = (np.ascontiguousarray(a) for a in arrs)
        if (np.minimum.reduce([tp_, pp_, ep_, dp_]) < 1).any():
            raise ValueError("tp, pp, ep and dp must all be >= 1")
        return Layout(tp_, pp_, ep_, dp_)


# ---------------------------------------------------------------------------------------------
# calibration constants


_CAL_PATH = Path(__file__).parent / "data" / "calibration.json"

# Feature weights before calibration: physical times count once, plus small fixed overheads.
DEFAULT_COEFS: dict[str, list[float]] = {
    "tpot": [1.0, 1.0, 1.0, 30e-6, 1e-3, 1.0, 0.0, 0.0, 1.0, 60e-6, 1.0, 0.0],
    "ttft": [1.0, 0.0, 0.5, 1.0, 2e-4, 5e-2, 1.0, 0.0, 0.0, 1.0, 0.5],
    "dtpot": [1.0, 1.0, 1.0, 30e-6, 1e-3, 0.0, 0.0, 0.0, 1.0, 60e-6, 1.0, 0.0],
    "dttft": [1.0, 0.0, 0.5, 0.0, 2e-4, 5e-2, 1.0, 0.0, 0.0, 1.0, 0.5],
}


@lru_cache(maxsize=4)
def load_calibration(path: str | None = None) -> dict[str, Any]:
    """Fitted coefficients keyed ``metric -> backend -> list``; defaults when no file exists."""
    p = Path(path) if path else _CAL_PATH
    if not p.is_file():
        return {"coefs": {}}
    data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    return data


def _coefs(metric: str, backend: str, cal: dict[str, Any] | None = None) -> F64:
    table = (cal if cal is not None else load_calibration()).get("coefs", {}).get(metric, {})
    vals = table.get(backend) or table.get("*") or DEFAULT_COEFS[metric]
    return np.asarray(vals, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# physics


def _peak_tflops(gpu: GpuSpec, quant: str) -> float:
    """GEMM peak at ``quant``; formats a GPU lacks run on the next wider format's units."""
    if quant == "fp4" and gpu.fp4_tflops:
        return gpu.fp4_tflops
    if quant in ("fp4", "fp8") and gpu.fp8_tflops:
        return gpu.fp8_tflops
    return gpu.bf16_tflops


def kv_bytes_per_elem(backend: str, quant: str) -> float:
    """TRT-LLM stores FP8 KV for quantised checkpoints; vLLM/SGLang keep the BF16 default."""
    return 1.0 if backend == "trtllm" and quant != "bf16" else 2.0


@dataclass(frozen=True)
class _Physics:
    model: ModelArch
    gpu: GpuSpec
    backend: str
    quant: str
    layout: Layout

    # ---- per-GPU sizes ------------------------------------------------------------------------
    @property
    def wb_experts(self) -> float:
        return WEIGHT_BYTES.get(self.quant, 2.0)

    @property
    def wb_dense(self) -> float:
        # 4-bit MoE checkpoints keep attention and shared parts at 8 bits or wider.
        if self.quant == "fp4" and self.model.is_moe:
            return WEIGHT_BYTES["fp8"]
        return WEIGHT_BYTES.get(self.quant, 2.0)

    def f(self, a: ArrayLike) -> F64:
        return np.asarray(a, dtype=np.float64)

    def weight_bytes_per_gpu(self) -> F64:
        m, lay = self.model, self.layout
        tp, pp, dp = self.f(lay.tp), self.f(lay.pp), self.f(lay.dp)
        dense = m.dense_params * self.wb_dense / (tp * pp)
        experts = m.routed_expert_params * self.wb_experts / (tp * dp * pp)
        emb: F64 = m.embedding_params * 2.0 / tp / np.minimum(pp, 2.0)
        return dense + experts + emb

    def kv_bytes_per_token_gpu(self) -> F64:
        """KV bytes one token costs on each GPU holding it (all of that GPU's layers)."""
        m, lay = self.model, self.layout
        tp, pp = self.f(lay.tp), self.f(lay.pp)
        kvb = kv_bytes_per_elem(self.backend, self.quant)
        shard = np.ones_like(tp) if m.is_mla else np.ceil(m.kv_heads / tp) / m.kv_heads
        return m.kv_elems_per_token * kvb * shard / pp

    def free_bytes_per_gpu(self) -> F64:
        g, m = self.gpu, self.model
        usable = g.memory_gib * GIB * _MEM_FRACTION.get(self.backend, 0.9)
        act = _MAX_STEP_TOKENS * m.hidden * 18.0 / self.f(self.layout.tp) ** 0.5
        return usable - _RESERVE_GIB * GIB - act - self.weight_bytes_per_gpu()

    # ---- links ------------------------------------------------------------------------------
    def link(self, group: I64 | F64) -> tuple[F64, F64]:
        """(bytes/s, latency s) of a collective over ``group`` GPUs of one worker."""
        g = self.gpu
        intra = self.f(group) <= g.domain
        bw = np.where(intra, g.intra_node_gbps, g.inter_node_gbps) * 1e9
        fast = g.intra_node_gbps >= 150
        lat = np.where(intra, 6e-6 if fast else 25e-6, 25e-6)
        return bw, lat

    def allreduce_s(self, nbytes: F64) -> F64:
        tp = self.f(self.layout.tp)
        bw, lat = self.link(self.layout.tp * self.layout.pp * self.layout.dp)
        t = lat + 2.0 * (tp - 1.0) / tp * nbytes / bw
        return np.where(tp > 1, t, 0.0)

    def alltoall_s(self, nbytes: F64) -> F64:
        """Dispatch + combine of routed tokens across the ``ep`` expert-parallel GPUs."""
        ep = self.f(self.layout.ep)
        bw, lat = self.link(self.layout.tp * self.layout.pp * self.layout.dp)
        t = 2.0 * (lat + (ep - 1.0) / ep * nbytes / bw)
        return np.where(ep > 1, t, 0.0)

    def comm_parts(self, tokens_rank: F64, tokens_worker: F64) -> tuple[F64, F64]:
        """(TP all-reduce + PP sends, EP all-to-all) of one pass over ``tokens_*`` tokens."""
        m, lay = self.model, self.layout
        h = float(m.hidden)
        ar = 2.0 * m.layers * self.allreduce_s(tokens_rank * h * 2.0)
        tpdp = self.f(lay.tp * lay.dp)
        a2a = m.moe_layers * self.alltoall_s(tokens_worker * m.experts_per_token * h * 1.5 / tpdp)
        pp = self.f(lay.pp)
        bw, lat = self.link(lay.tp * lay.pp * lay.dp)
        p2p = (pp - 1.0) * (tokens_rank * h * 2.0 / bw + lat + _P2P_S)
        return ar + p2p, a2a

    def comm_s(self, tokens_rank: F64, tokens_worker: F64) -> F64:
        """Collectives of one forward pass over ``tokens_*`` tokens (all layers, all stages)."""
        ar, a2a = self.comm_parts(tokens_rank, tokens_worker)
        return ar + a2a

    # ---- FLOPs ----------------------------------------------------------------------------
    def attn_flops_prefill(self, s: F64) -> F64:
        """Causal attention FLOPs (QK^T and PV) of one sequence of ``s`` tokens."""
        m = self.model
        per = float(m.heads * (m.qk_dim + m.v_dim))
        full = m.attn_layers - m.sliding_layers
        flops = per * full * s * s
        if m.sliding_layers:
            w = float(m.sliding_window)
            flops = flops + per * m.sliding_layers * np.where(s > w, 2.0 * s * w - w * w, s * s)
        return flops

    def kv_read_bytes_decode(self, ctx: F64) -> F64:
        """KV bytes one sequence reads per decode step on one GPU at context ``ctx``."""
        m = self.model
        per_tok = self.kv_bytes_per_token_gpu() * self.f(self.layout.pp)
        if m.sliding_layers:
            frac_s = m.sliding_layers / m.attn_layers
            eff = (1.0 - frac_s) * ctx + frac_s * np.minimum(ctx, float(m.sliding_window))
        else:
            eff = ctx
        state = m.linear_state_elems * 2.0 * 2.0 / self.f(self.layout.tp)
        return per_tok * eff + state

    def attn_flops_decode(self, ctx: F64) -> F64:
        m = self.model
        if m.is_mla:
            per = 2.0 * m.heads * (2 * m.kv_lora_rank + m.qk_rope_dim)
        else:
            per = 2.0 * m.heads * (m.qk_dim + m.v_dim)
        return per * m.attn_layers * ctx

    # ---- step components ------------------------------------------------------------------
    def prefill_parts(self, isl: F64, batch: F64) -> tuple[F64, F64, F64]:
        """(gemm s, attention s, comm s) of prefilling ``batch`` sequences of ``isl`` tokens."""
        m, g, lay = self.model, self.gpu, self.layout
        tp, dp = self.f(lay.tp), self.f(lay.dp)
        b_rank = np.ceil(batch / dp)
        tok_rank = b_rank * isl
        tok_worker = batch * isl
        peak = _peak_tflops(g, self.quant) * 1e12 * _NOMINAL_MFU
        bw = g.mem_bw_gbps * 1e9 * _NOMINAL_MBU
        dense_f = 2.0 * tok_rank * (m.dense_params / tp) + 2.0 * batch * m.lm_head_params / tp
        exp_f = 2.0 * tok_worker * m.experts_per_token * m.expert_params * m.moe_layers / (tp * dp)
        touched = self._touched_fraction(tok_worker)
        wbytes = (
            m.dense_params * self.wb_dense / tp
            + touched * m.routed_expert_params * self.wb_experts / (tp * dp)
        )
        gemm = np.maximum((dense_f + exp_f) / peak, wbytes / bw)
        attn = b_rank * self.attn_flops_prefill(isl) / tp / (g.bf16_tflops * 1e12 * _NOMINAL_MFU)
        return gemm, attn, self.comm_s(tok_rank, tok_worker)

    def _touched_fraction(self, tokens: F64) -> F64:
        m = self.model
        if not m.is_moe:
            return np.ones_like(tokens)
        k, e = float(m.experts_per_token), float(m.num_experts)
        return 1.0 - np.power(1.0 - k / e, tokens)

    def decode_split(self, ctx: F64, batch: F64) -> dict[str, F64]:
        """Nominal seconds of the parts of one decode step of ``batch`` sequences.

        ``dense``/``experts``: GEMM roofline of the shared weights and of the routed experts;
        ``attention``: KV (and linear-attention state) reads or attention FLOPs; ``allreduce``
        and ``alltoall``: the collectives.
        """
        m, g, lay = self.model, self.gpu, self.layout
        tp, dp, pp = self.f(lay.tp), self.f(lay.dp), self.f(lay.pp)
        micro = np.maximum(batch / pp, 1.0)  # pipeline micro-batch in flight per stage
        b_rank = np.maximum(micro / dp, 1.0)
        peak = _peak_tflops(g, self.quant) * 1e12 * _NOMINAL_MFU
        bw = g.mem_bw_gbps * 1e9 * _NOMINAL_MBU
        touched = self._touched_fraction(micro)
        d_bytes = m.dense_params * self.wb_dense / tp + m.lm_head_params * 2.0 / tp
        d_flops = 2.0 * b_rank * (m.dense_params + m.lm_head_params) / tp
        e_bytes = touched * m.routed_expert_params * self.wb_experts / (tp * dp)
        e_flops = 2.0 * micro * m.experts_per_token * m.expert_params * m.moe_layers / (tp * dp)
        kv = b_rank * self.kv_read_bytes_decode(ctx) / bw
        attn_c = b_rank * self.attn_flops_decode(ctx) / tp / (g.bf16_tflops * 1e12 * _NOMINAL_MFU)
        ar, a2a = self.comm_parts(b_rank, micro)
        return {
            "dense": np.maximum(d_bytes / bw, d_flops / peak),
            "experts": np.maximum(e_bytes / bw, e_flops / peak),
            "attention": np.maximum(kv, attn_c),
            "allreduce": ar,
            "alltoall": a2a,
        }

    def decode_parts(self, ctx: F64, batch: F64) -> tuple[F64, F64, F64]:
        """(gemm s, attention s, comm s) of one decode step of ``batch`` sequences."""
        d = self.decode_split(ctx, batch)
        return d["dense"] + d["experts"], d["attention"], d["allreduce"] + d["alltoall"]

    def layers_per_step(self) -> F64:
        """Layer launches on the critical path of one step (stages run one after another)."""
        return np.full(self.layout.tp.shape, float(self.model.layers)) + 4.0 * (
            self.f(self.layout.pp) - 1.0
        )


# ---------------------------------------------------------------------------------------------
# features (shared with the calibration script)


def _arr(x: ArrayLike, n: int) -> F64:
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).astype(np.float64)


def _sku_scale(ph: _Physics) -> float:
    """Fixed per-layer costs shrink on faster GPUs (relative to H100, clamped)."""
    return float(np.clip(989.0 / ph.gpu.bf16_tflops, 0.3, 4.0))


def _expert_launches(ph: _Physics, tokens: F64) -> F64:
    """Expert GEMMs one GPU runs per step (touched experts it holds, over all MoE layers)."""
    m = ph.model
    if not m.is_moe:
        return np.zeros_like(tokens)
    per_gpu = m.num_experts / ph.f(ph.layout.ep)
    return m.moe_layers * per_gpu * ph._touched_fraction(tokens)


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
)


def decode_features(
    ph: _Physics,
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
    ph: _Physics,
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
    rho = np.clip(load_ / servers * pre / cycle, 0.0, 0.95)
    cols.append(pre * rho / (1.0 - rho))
    # Beyond saturation the closed loop is prefill-bound: each request waits for the prefills
    # of everyone ahead of it minus the time it spent decoding.
    cols.append(np.maximum(load_ / servers * pre - osl_ * dstep, 0.0))
    return np.stack(cols, axis=1)


def _kv_transfer_s(ph: _Physics, isl: F64) -> F64:
    """Moving one request's KV cache from the prefill to the decode worker."""
    per_tok = ph.model.kv_elems_per_token * kv_bytes_per_elem(ph.backend, ph.quant)
    return isl * per_tok / (ph.gpu.inter_node_gbps * 1e9 * ph.f(ph.layout.tp))


def kv_capacity_from(ph: _Physics) -> F64:
    free = ph.free_bytes_per_gpu()
    per_tok = ph.kv_bytes_per_token_gpu()
    return np.where(free > 0, free / per_tok * ph.f(ph.layout.dp), free / GIB)


# ---------------------------------------------------------------------------------------------
# contract functions


def _phys(model: ModelArch, gpu: GpuSpec, backend: str, quant: str, layout: Layout) -> _Physics:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if quant not in WEIGHT_BYTES:
        raise ValueError(f"unknown quantisation {quant!r}; expected bf16, fp8 or fp4")
    return _Physics(model, gpu, backend, quant, layout)


def kv_capacity_tokens(
    model: ModelArch, gpu: GpuSpec, quant: str, layout: Layout, backend: str = "vllm"
) -> F64:
    """KV-cache tokens one worker holds after weights and activations; <= 0: does not fit."""
    return kv_capacity_from(_phys(model, gpu, backend, quant, layout))


def _ms(features: F64, coefs: F64) -> F64:
    k = min(features.shape[1], coefs.shape[0])
    out: F64 = features[:, :k] @ coefs[:k] * 1e3
    return out


def prefill_ttft_ms(
    model: ModelArch,
    gpu: GpuSpec,
    backend: str,
    quant: str,
    layout: Layout,
    isl: int,
    batch: ArrayLike = 1,
) -> F64:
    """TTFT of a prefill worker prefilling ``batch`` requests together, without queueing."""
    ph = _phys(model, gpu, backend, quant, layout)
    return _ms(ttft_features(ph, isl, batch, load=1, agg=False), _coefs("dttft", backend))


def disagg_ttft_ms(
    model: ModelArch,
    gpu: GpuSpec,
    backend: str,
    quant: str,
    layout: Layout,
    isl: int,
    load: ArrayLike,
    *,
    osl: int,
    tpot_ms: ArrayLike,
    batch: ArrayLike = 1,
) -> F64:
    """TTFT at a prefill worker with ``load`` requests in flight per prefill worker.

    ``tpot_ms`` is the decode workers' time per token: with ``osl`` it sets how often each
    request comes back for a prefill, hence the prefill worker's utilisation and queueing.
    """
    ph = _phys(model, gpu, backend, quant, layout)
    step_s = np.asarray(tpot_ms, dtype=np.float64) / 1e3
    feats = ttft_features(ph, isl, batch, load=load, osl=osl, agg=False, decode_step_s=step_s)
    return _ms(feats, _coefs("dttft", backend))


def decode_tpot_ms(
    model: ModelArch,
    gpu: GpuSpec,
    backend: str,
    quant: str,
    layout: Layout,
    isl: int,
    osl: int,
    batch: ArrayLike,
) -> F64:
    """Mean time per output token of a decode worker at ``batch`` concurrent requests.

    ``batch`` is taken as running: check it against :func:`kv_capacity_tokens` first.
    """
    ph = _phys(model, gpu, backend, quant, layout)
    return _ms(decode_features(ph, isl, osl, batch, agg=False), _coefs("dtpot", backend))


def agg_serving(
    model: ModelArch,
    gpu: GpuSpec,
    backend: str,
    quant: str,
    layout: Layout,
    isl: int,
    osl: int,
    batch: ArrayLike,
) -> tuple[F64, F64]:
    """(TTFT ms, TPOT ms) of an aggregated worker serving ``batch`` concurrent requests.

    TTFT includes the wait for a KV slot when ``batch`` requests do not fit; TPOT takes them
    all as running (check :func:`kv_capacity_tokens`).
    """
    ph = _phys(model, gpu, backend, quant, layout)
    tpot = _ms(decode_features(ph, isl, osl, batch, agg=True), _coefs("tpot", backend))
    ttft = _ms(ttft_features(ph, isl, 1, load=batch, osl=osl, agg=True), _coefs("ttft", backend))
    return ttft, tpot
