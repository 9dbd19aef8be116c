"""Roofline physics of one serving step: nominal seconds of each part, per candidate layout.

Nominal times assume 0.8 of peak memory bandwidth for dense weight and KV reads, the prefill
GEMM efficiency measured per SKU (``data/efficiency.json``, 0.6 of peak FLOPs where a SKU has
none), and, from AIConfigurator's per-operation kernel database (``data/kernels.json`` via
``profiler.kernels``), the measured efficiency of grouped MoE expert GEMMs and causal prefill
attention and the engines' own all-reduce latency; links elsewhere use the hardware table. The
calibration weights the parts afterwards. Kept apart from the fitted constants so the physics
can be read, and tested, on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from profiler import kernels
from profiler.arch import WEIGHT_BYTES, ModelArch
from profiler.hardware import GpuSpec

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

GIB = float(1 << 30)

# Share of GPU memory each engine hands to weights + KV cache (vLLM gpu_memory_utilization,
# SGLang mem_fraction_static, TRT-LLM free_gpu_memory_fraction of what is left).
_MEM_FRACTION = {"vllm": 0.90, "sglang": 0.88, "trtllm": 0.90}
_RESERVE_GIB = 1.5  # CUDA context, NCCL buffers, allocator slack
_MAX_STEP_TOKENS = 8192  # activation workspace is sized for one chunk of this many tokens
_NOMINAL_MBU = 0.8  # nominal efficiencies the physics uses before calibration rescales parts
_NOMINAL_MFU = 0.6
_P2P_S = 10e-6


_EFF_PATH = Path(__file__).parent / "data" / "efficiency.json"
_MIN_EFF = 0.1


@lru_cache(maxsize=1)
def _efficiency() -> dict[str, Any]:
    """Kernel efficiencies per SKU measured from collected kernel tables (see calibrate.py)."""
    if not _EFF_PATH.is_file():
        return {"gemm": {}, "attention": {}, "aliases": {}}
    data: dict[str, Any] = json.loads(_EFF_PATH.read_text(encoding="utf-8"))
    return data


def _eff_sku(sku: str) -> str:
    aliases = _efficiency().get("aliases", {})
    return str(aliases.get(sku, sku))


def gemm_efficiency(sku: str, quant: str) -> float:
    """Share of peak FLOPs large (prefill-sized) GEMMs reach on ``sku`` at ``quant``.

    Blackwell's FP8 kernels reach a far smaller share of peak than Hopper's, which a single
    nominal MFU would put into the model-independent fit as a per-SKU bias.
    """
    table = _efficiency().get("gemm", {}).get(_eff_sku(sku))
    if not isinstance(table, dict):
        return _NOMINAL_MFU
    key = "bf16" if quant == "bf16" else "fp8"
    value: Any = table.get(key, table.get("bf16", _NOMINAL_MFU))
    return max(float(value), _MIN_EFF)


def attention_efficiency(sku: str, isl: F64) -> F64:
    """Share of BF16 peak causal prefill attention reaches at ``isl`` (rises with length)."""
    curve = _efficiency().get("attention", {}).get(_eff_sku(sku))
    if not isinstance(curve, list) or not curve:
        return np.full(np.shape(isl), _NOMINAL_MFU)
    xs = np.log2([float(p[0]) for p in curve])
    ys = np.asarray([float(p[1]) for p in curve])
    out: F64 = np.maximum(np.interp(np.log2(np.maximum(isl, 1.0)), xs, ys), _MIN_EFF)
    return out


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


def peak_tflops(gpu: GpuSpec, quant: str) -> float:
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
class StepPhysics:
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

    # ---- measured kernel efficiencies ------------------------------------------------------
    @property
    def _block(self) -> bool:
        # FP8 MoE checkpoints (DeepSeek, Qwen3.5, MiniMax) are block-scaled; dense ones per tensor.
        return self.model.is_moe

    def expert_gemm_s(self, tokens: F64, nbytes: F64, flops: F64) -> F64:
        """Routed-expert GEMMs of ``tokens`` (worker-wide) at the measured grouped-GEMM share.

        Grouped expert GEMMs are where a nominal roofline is furthest from the kernels: their
        efficiency moves with tokens per expert by an order of magnitude. Dense GEMMs and
        decode attention stay nominal (their collected small-shape latencies carry launch and
        quantisation costs the engines fuse; priced by the fitted per-layer weights instead):
        ``bench/decision`` measured both ways.
        """
        m, g, lay = self.model, self.gpu, self.layout
        peak = peak_tflops(g, self.quant) * 1e12
        bw = g.mem_bw_gbps * 1e9
        held = (
            m.routed_expert_params
            * self.wb_experts
            / self.f(lay.tp * lay.dp)
            / max(m.moe_layers, 1)
        )
        tpe = tokens * m.experts_per_token / max(m.num_experts, 1)
        util = kernels.moe_util(g.sku, self.backend, self.quant, tpe, held, block=self._block)
        if util is None:
            return np.maximum(nbytes / (bw * _NOMINAL_MBU), flops / (peak * _NOMINAL_MFU))
        out: F64 = np.maximum(nbytes / bw, flops / peak) / np.maximum(util, 0.01)
        return out

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
        for n in (2, 4, 8):
            sel = self.layout.tp == n
            if not sel.any():
                continue
            measured = kernels.allreduce_s(
                self.gpu.sku, self.backend, n, np.broadcast_to(nbytes, t.shape) / 2.0
            )
            if measured is not None:
                t = np.where(sel, measured, t)
        return np.where(tp > 1, t, 0.0)

    def alltoall_s(self, nbytes: F64) -> F64:
        """Dispatch + combine of routed tokens across the ``ep`` expert-parallel GPUs."""
        ep = self.f(self.layout.ep)
        bw, lat = self.link(self.layout.tp * self.layout.pp * self.layout.dp)
        t = 2.0 * (lat + (ep - 1.0) / ep * nbytes / bw)
        return np.where(ep > 1, t, 0.0)

    def moe_gather_s(self, nbytes: F64) -> F64:
        """All-gather before and reduce-scatter after an MoE layer whose experts are split by
        tensor parallelism across attention-DP ranks (``dp > 1`` and ``tp * dp / ep > 1``):
        every rank needs every rank's tokens, ``nbytes`` in all (AIConfigurator prices the
        same pair); zero where the all-to-all of expert parallelism moves them instead."""
        lay = self.layout
        group = self.f(lay.tp * lay.dp)
        moe_tp = group / self.f(lay.ep)
        bw, lat = self.link(lay.tp * lay.pp * lay.dp)
        t = 2.0 * (lat + (group - 1.0) / group * nbytes / bw)
        return np.where((self.f(lay.dp) > 1) & (moe_tp > 1), t, 0.0)

    def comm_parts(self, tokens_rank: F64, tokens_worker: F64) -> tuple[F64, F64]:
        """(TP all-reduce + PP sends, EP all-to-all) of one pass over ``tokens_*`` tokens."""
        m, lay = self.model, self.layout
        h = float(m.hidden)
        ar = 2.0 * m.layers * self.allreduce_s(tokens_rank * h * 2.0)
        tpdp = self.f(lay.tp * lay.dp)
        a2a = m.moe_layers * self.alltoall_s(tokens_worker * m.experts_per_token * h * 1.5 / tpdp)
        a2a = a2a + m.moe_layers * self.moe_gather_s(tokens_worker * h * 2.0)
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
        dense_f = 2.0 * tok_rank * (m.dense_params / tp) + 2.0 * batch * m.lm_head_params / tp
        exp_f = 2.0 * tok_worker * m.experts_per_token * m.expert_params * m.moe_layers / (tp * dp)
        touched = self.touched_fraction(tok_worker)
        d_bytes = m.dense_params * self.wb_dense / tp
        e_bytes = touched * m.routed_expert_params * self.wb_experts / (tp * dp)
        peak = peak_tflops(g, self.quant) * 1e12 * gemm_efficiency(g.sku, self.quant)
        bw = g.mem_bw_gbps * 1e9 * _NOMINAL_MBU
        gemm = np.maximum(dense_f / peak, d_bytes / bw)
        if m.is_moe:
            gemm = gemm + self.expert_gemm_s(tok_worker, e_bytes, exp_f)
        measured = kernels.prefill_attention_util(g.sku, self.backend, isl)
        eff = attention_efficiency(g.sku, isl) if measured is None else measured
        attn_peak = g.bf16_tflops * 1e12 * np.maximum(eff, _MIN_EFF)
        attn = b_rank * self.attn_flops_prefill(isl) / tp / attn_peak
        return gemm, attn, self.comm_s(tok_rank, tok_worker)

    def touched_fraction(self, tokens: F64) -> F64:
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
        peak = peak_tflops(g, self.quant) * 1e12 * _NOMINAL_MFU
        bw = g.mem_bw_gbps * 1e9 * _NOMINAL_MBU
        touched = self.touched_fraction(micro)
        d_bytes = m.dense_params * self.wb_dense / tp + m.lm_head_params * 2.0 / tp
        d_flops = 2.0 * b_rank * (m.dense_params + m.lm_head_params) / tp
        e_bytes = touched * m.routed_expert_params * self.wb_experts / (tp * dp)
        e_flops = 2.0 * micro * m.experts_per_token * m.expert_params * m.moe_layers / (tp * dp)
        kv = b_rank * self.kv_read_bytes_decode(ctx) / bw
        attn_c = b_rank * self.attn_flops_decode(ctx) / tp / (g.bf16_tflops * 1e12 * _NOMINAL_MFU)
        ar, a2a = self.comm_parts(b_rank, micro)
        experts = self.expert_gemm_s(micro, e_bytes, e_flops) if m.is_moe else 0.0 * micro
        return {
            "dense": np.maximum(d_bytes / bw, d_flops / peak),
            "experts": experts,
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


def kv_capacity_from(ph: StepPhysics) -> F64:
    """KV-cache tokens one worker holds (its DP ranks together); when the weights do not fit,
    the (negative) GiB missing per GPU."""
    free = ph.free_bytes_per_gpu()
    per_tok = ph.kv_bytes_per_token_gpu()
    return np.where(free > 0, free / per_tok * ph.f(ph.layout.dp), free / GIB)
