"""What the search returns: workers, candidate deployments, the result, and the SLA as applied.

Plain frozen data, so a result crosses a process pool by pickling and reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def parallel_label(tp: int, pp: int, ep: int, dp: int) -> str:
    """Short label of a worker's parallelism.

    The usual shapes keep their names: TP4 (tensor), TEP8 (tensor + expert), DEP8 (attention
    data + expert), DP8 (attention data, experts tensor-parallel), and a PP suffix (TP8PP2).
    Other MoE splits name each size above 1, experts being spread over tp x dp GPUs of which
    ``ep`` ways expert-parallel: TP2DP4EP4 (attention TP2 x DP4, experts EP4 x TP2), TP2DP4EP8,
    DP8EP2 (experts EP2 x TP4), TP8EP4 (experts EP4 x TP2), TP2DP4 (experts TP8).
    """
    if dp == 1 and ep == 1:
        base = f"TP{tp}"
    elif dp == 1 and ep == tp:
        base = f"TEP{tp}"
    elif tp == 1 and ep == dp:
        base = f"DEP{dp}"
    elif tp == 1 and ep == 1:
        base = f"DP{dp}"
    else:
        parts = (("TP", tp), ("DP", dp), ("EP", ep))
        base = "".join(f"{name}{n}" for name, n in parts if n > 1)
    return base + (f"PP{pp}" if pp > 1 else "")


@dataclass(frozen=True)
class Worker:
    """One kind of worker in the deployment: its parallelism, batch and replica count.

    ``batch`` is what the worker was scored at and what the DGD caps it to: sequences in
    flight across the whole worker (all its attention-DP ranks); for a prefill worker, prompts
    prefilled together.
    """

    role: str  # agg | prefill | decode
    tp: int
    pp: int
    ep: int
    dp: int
    batch: int
    replicas: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def moe_tp(self) -> int:
        """Tensor-parallel ways within one expert: experts span tp * dp GPUs, ``ep`` of them
        expert-parallel (1 for dense models, where ep is 1 and tensor parallelism is tp)."""
        return max(self.tp * self.dp // max(self.ep, 1), 1)

    @property
    def parallel(self) -> str:
        """Short label: TP4, TP8PP2, TEP8 (tensor + expert parallel), DEP8 (data + expert),
        TP2DP4EP4 (other attention x MoE splits); see :func:`parallel_label`."""
        return parallel_label(self.tp, self.pp, self.ep, self.dp)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "parallel": self.parallel,
            "tp": self.tp,
            "pp": self.pp,
            "ep": self.ep,
            "dp": self.dp,
            "gpus": self.gpus,
            "batch": self.batch,
            "replicas": self.replicas,
        }


@dataclass(frozen=True)
class Candidate:
    """A complete deployment and what the performance model predicts for it."""

    mode: str  # agg | disagg
    backend: str
    workers: tuple[Worker, ...]
    gpus: int
    ttft_ms: float
    itl_ms: float
    tokens_s: float
    requests_s: float
    meets_sla: bool
    gpus_needed: int = 0  # load-match: GPUs the load needs (may exceed the budget)
    pareto: bool = False

    @property
    def tokens_s_per_gpu(self) -> float:
        return self.tokens_s / self.gpus if self.gpus else 0.0

    @property
    def tokens_s_per_user(self) -> float:
        return 1000.0 / self.itl_ms if self.itl_ms > 0 else 0.0

    def worker(self, role: str) -> Worker | None:
        return next((w for w in self.workers if w.role == role), None)

    @property
    def label(self) -> str:
        return " + ".join(f"{w.replicas}x{w.role}:{w.parallel}" for w in self.workers)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "backend": self.backend,
            "label": self.label,
            "workers": [w.to_json() for w in self.workers],
            "gpus": self.gpus,
            "ttft_ms": round(self.ttft_ms, 3),
            "itl_ms": round(self.itl_ms, 4),
            "tokens_s": round(self.tokens_s, 2),
            "requests_s": round(self.requests_s, 4),
            "tokens_s_per_gpu": round(self.tokens_s_per_gpu, 2),
            "tokens_s_per_user": round(self.tokens_s_per_user, 2),
            "meets_sla": self.meets_sla,
            "pareto": self.pareto,
        }


@dataclass
class SearchResult:
    chosen: Candidate
    candidates: list[Candidate]
    configs_evaluated: int
    warnings: list[str] = field(default_factory=list)
    pareto: list[Candidate] = field(default_factory=list)  # by tokens/s/user, ascending
    # Of ``configs_evaluated`` (every configuration the search covers), those the performance
    # model priced one by one; the rest were rate-matching cells of dominated pairs.
    configs_scored: int = 0


@dataclass(frozen=True)
class Targets:
    """The SLA as the search applies it: ttft + itl, or one end-to-end latency."""

    ttft_ms: float | None
    itl_ms: float | None
    e2e_ms: float | None
    osl: int

    def miss(self, ttft: F64, itl: F64) -> F64:
        """How far over the SLA (1.0 = exactly on it); <= 1 meets it."""
        if self.e2e_ms is not None:
            return np.asarray((ttft + self.osl * itl) / self.e2e_ms, dtype=np.float64)
        assert self.ttft_ms is not None and self.itl_ms is not None
        return np.asarray(np.maximum(ttft / self.ttft_ms, itl / self.itl_ms), dtype=np.float64)

    def ttft_limit(self, itl: F64) -> F64:
        """The largest TTFT that meets the SLA next to a time per output token of ``itl``."""
        if self.e2e_ms is not None:
            return np.asarray(self.e2e_ms - self.osl * itl, dtype=np.float64)
        assert self.ttft_ms is not None
        return np.full(np.shape(itl), float(self.ttft_ms))

    def side_limit(self, which: str) -> float:
        """One side's limit before the sides are paired: TTFT (``ttft``) or time per output
        token (``itl``); an end-to-end target bounds each side on its own."""
        if self.e2e_ms is not None:
            return self.e2e_ms if which == "ttft" else self.e2e_ms / self.osl
        value = self.ttft_ms if which == "ttft" else self.itl_ms
        assert value is not None
        return float(value)


__all__ = ["Candidate", "SearchResult", "Targets", "Worker", "parallel_label"]
