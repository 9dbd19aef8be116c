"""Upstream's fallback for a model the performance model cannot describe: a simple configuration.

Upstream's profiler, when AI Configurator does not support a model (an architecture it has no
operators for), does not fail: it generates a "naive" configuration, aggregated, with the
smallest tensor-parallel size whose GPUs hold the weights, ``auto`` meaning vLLM. This does the
same from the model's size alone (``ModelArch.params_b``, estimated from any config.json by
``hf_config.sizing_arch``): no TTFT, ITL or throughput is predicted and no SLA is checked, and the
result says so (``PlanResult.modelled`` false, a warning, and in the controller a
``NotPerformanceModelled`` reason and Warning event).

Sizing: weights take at most ``WEIGHT_FRACTION`` of each GPU's memory, leaving the rest to the
KV cache and activations (vLLM reserves 90 % of a GPU and needs room for a useful KV cache); the
worker is the smallest power of two of GPUs that fits, tensor-parallel within a node and
pipeline-parallel across nodes beyond that; it is replicated over the whole GPU budget.
"""

from __future__ import annotations

import math

from profiler.arch import WEIGHT_BYTES, ModelArch
from profiler.candidates import Candidate, SearchResult, Worker
from profiler.hardware import GpuSpec

WEIGHT_FRACTION = 0.7
# The concurrency cap written into the DGD: no measurement says better, so the engines' usual
# default (vLLM's --max-num-seqs) for each worker.
NAIVE_BATCH = 256
GIB = 1024**3


def naive_gpus(arch: ModelArch, gpu: GpuSpec, quant: str) -> int:
    """The smallest power of two of ``gpu``s whose memory holds the weights with room to spare."""
    weights = arch.params_b * 1e9 * WEIGHT_BYTES.get(quant, 2.0)
    per_gpu = gpu.memory_gib * GIB * WEIGHT_FRACTION
    need = max(1, math.ceil(weights / per_gpu))
    return 1 << (need - 1).bit_length()


def naive_search(
    arch: ModelArch, gpu: GpuSpec, quant: str, backend: str, per_node: int, budget: int
) -> SearchResult:
    """One aggregated candidate: the smallest worker that holds the weights, replicated over the
    budget. Its predictions are NaN: nothing is modelled."""
    gpus = naive_gpus(arch, gpu, quant)
    tp = min(gpus, max(per_node, 1))
    pp = max(gpus // tp, 1)
    replicas = max(budget // gpus, 1)
    worker = Worker("agg", tp=tp, pp=pp, ep=1, dp=1, batch=NAIVE_BATCH, replicas=replicas)
    nan = float("nan")
    chosen = Candidate(
        mode="agg",
        backend=backend,
        workers=(worker,),
        gpus=worker.gpus * replicas,
        ttft_ms=nan,
        itl_ms=nan,
        tokens_s=nan,
        requests_s=nan,
        meets_sla=False,
    )
    return SearchResult(chosen=chosen, candidates=[chosen], configs_evaluated=1)


__all__ = ["NAIVE_BATCH", "WEIGHT_FRACTION", "naive_gpus", "naive_search"]
