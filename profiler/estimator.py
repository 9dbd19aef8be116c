"""Serving-performance model: roofline physics per operator, scaled by fitted constants.

Every function takes an :class:`Engine` (one model, one GPU, one backend and precision, and
arrays of candidate worker layouts, one row per candidate) and returns one figure per row, so
the search can cost thousands of candidates in one numpy pass.

The physics (``profiler.physics``) yields nominal times of the parts of a step (GEMM weight
reads and FLOPs, attention and KV reads, collectives); ``profiler.features`` turns them into
columns, and the fitted constants in ``data/calibration.json`` (made by
``python -m profiler.calibrate``) weight those columns per backend and serving mode, because
engines differ in kernels and scheduling more than in physics.
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
from profiler.features import TPOT_COLUMNS, TTFT_COLUMNS, decode_features, ttft_features
from profiler.hardware import GpuSpec
from profiler.physics import Layout, StepPhysics, kv_capacity_from

__all__ = [
    "BACKENDS",
    "DEFAULT_COEFS",
    "TPOT_COLUMNS",
    "TTFT_COLUMNS",
    "Engine",
    "Layout",
    "agg_serving",
    "decode_tpot_ms",
    "disagg_ttft_ms",
    "kv_capacity_tokens",
    "load_calibration",
    "prefill_busy_ms",
    "prefill_ttft_ms",
]

F64 = NDArray[np.float64]

BACKENDS = ("vllm", "sglang", "trtllm")

# ---------------------------------------------------------------------------------------------
# calibration constants


_CAL_PATH = Path(__file__).parent / "data" / "calibration.json"

# Feature weights before calibration: physical times count once, plus small fixed overheads.
DEFAULT_COEFS: dict[str, list[float]] = {
    "tpot": [1.0, 1.0, 1.0, 30e-6, 1e-3, 1.0, 0.0, 0.0, 1.0, 60e-6, 1.0, 0.0],
    "ttft": [1.0, 0.0, 0.5, 1.0, 2e-4, 5e-2, 1.0, 0.0, 0.0, 1.0, 0.5, 1.0],
    "dtpot": [1.0, 1.0, 1.0, 30e-6, 1e-3, 0.0, 0.0, 0.0, 1.0, 60e-6, 1.0, 0.0],
    "dttft": [1.0, 0.0, 0.5, 0.0, 2e-4, 5e-2, 1.0, 0.0, 0.0, 1.0, 0.5, 0.0],
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
# contract functions


@dataclass(frozen=True, eq=False)
class Engine:
    """One engine's shape, as the estimator prices it: the model, the GPU, the serving backend
    (one of ``BACKENDS``), the weight quantisation (``bf16``, ``fp8``, ``fp4``) and the parallel
    layout of a worker.

    ``layout`` may hold many candidate layouts, one row each; every function below then returns
    one figure per row. The backend and quantisation are checked when a function prices it.
    """

    model: ModelArch
    gpu: GpuSpec
    backend: str
    quant: str
    layout: Layout


def _phys(engine: Engine) -> StepPhysics:
    if engine.backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {engine.backend!r}; expected one of {', '.join(BACKENDS)}"
        )
    if engine.quant not in WEIGHT_BYTES:
        raise ValueError(f"unknown quantisation {engine.quant!r}; expected bf16, fp8 or fp4")
    return StepPhysics(engine.model, engine.gpu, engine.backend, engine.quant, engine.layout)


def kv_capacity_tokens(engine: Engine) -> F64:
    """KV-cache tokens one worker holds after weights and activations; <= 0: does not fit."""
    return kv_capacity_from(_phys(engine))


def _ms(features: F64, coefs: F64) -> F64:
    k = min(features.shape[1], coefs.shape[0])
    out: F64 = features[:, :k] @ coefs[:k] * 1e3
    return out


def prefill_ttft_ms(
    engine: Engine,
    isl: int,
    batch: ArrayLike = 1,
) -> F64:
    """TTFT of a prefill worker prefilling ``batch`` requests together, without queueing."""
    ph = _phys(engine)
    return _ms(ttft_features(ph, isl, batch, load=1, agg=False), _coefs("dttft", engine.backend))


# The TTFT column that occupies the prefill worker's GPUs (GEMMs, attention, collectives), as
# opposed to latency a request sees while the worker serves others (fixed per-request path, KV
# transfer, queueing; per-layer TTFT weights fitted on few engines absorb such constants too):
# only it limits how many prompts a prefill worker gets through.
_BUSY_COLUMNS = (TTFT_COLUMNS.index("prefill"),)


def prefill_busy_ms(
    engine: Engine,
    isl: int,
    batch: ArrayLike = 1,
) -> F64:
    """GPU time a prefill worker spends on one batch of ``batch`` prompts: its service time.

    The part of :func:`prefill_ttft_ms` that keeps the worker busy; a prefill worker's request
    rate is ``batch`` over this, not over the TTFT, whose fixed latency overlaps other prompts.
    """
    ph = _phys(engine)
    feats = ttft_features(ph, isl, batch, load=1, agg=False)
    coefs = _coefs("dttft", engine.backend)
    cols = [c for c in _BUSY_COLUMNS if c < coefs.shape[0]]
    out: F64 = feats[:, cols] @ coefs[cols] * 1e3
    return out


def disagg_ttft_ms(
    engine: Engine,
    isl: int,
    load: ArrayLike,
    *,
    osl: int,
    tpot_ms: ArrayLike,
    batch: ArrayLike = 1,
) -> F64:
    """TTFT at a prefill worker with ``load`` requests in flight per prefill worker.

    ``tpot_ms`` is the decode workers' time per token: with ``osl`` it sets how often each
    request comes back for a prefill, hence the prefill worker's utilisation and queueing. The
    calibration fits this on measured disaggregated runs with :func:`decode_tpot_ms`'s figure
    there, so pass that figure, and apply no further queueing factor to the result.
    """
    ph = _phys(engine)
    step_s = np.asarray(tpot_ms, dtype=np.float64) / 1e3
    feats = ttft_features(ph, isl, batch, load=load, osl=osl, agg=False, decode_step_s=step_s)
    return _ms(feats, _coefs("dttft", engine.backend))


def decode_tpot_ms(
    engine: Engine,
    isl: int,
    osl: int,
    batch: ArrayLike,
) -> F64:
    """Mean time per output token of a decode worker at ``batch`` concurrent requests.

    ``batch`` is taken as running: check it against :func:`kv_capacity_tokens` first.
    """
    ph = _phys(engine)
    return _ms(decode_features(ph, isl, osl, batch, agg=False), _coefs("dtpot", engine.backend))


def agg_serving(
    engine: Engine,
    isl: int,
    osl: int,
    batch: ArrayLike,
) -> tuple[F64, F64]:
    """(TTFT ms, TPOT ms) of an aggregated worker serving ``batch`` concurrent requests.

    TTFT includes the wait for a KV slot when ``batch`` requests do not fit; TPOT takes them
    all as running (check :func:`kv_capacity_tokens`).
    """
    ph = _phys(engine)
    tpot = _ms(decode_features(ph, isl, osl, batch, agg=True), _coefs("tpot", engine.backend))
    ttft = _ms(
        ttft_features(ph, isl, 1, load=batch, osl=osl, agg=True), _coefs("ttft", engine.backend)
    )
    return ttft, tpot
