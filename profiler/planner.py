"""Planner ConfigMaps (docs/dgdr-contract.md#planner-configmaps): the planner's config and the
performance curves it and the mocker read, computed from the same performance model that chose
the engines.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from profiler.estimator import Engine, Layout, decode_tpot_ms, kv_capacity_tokens, prefill_ttft_ms
from profiler.generate import PLANNER_CONFIG_FILE, PROFILE_DATA_DIR
from profiler.request import PlanRequest
from profiler.search import Candidate, Worker

# PlannerConfig fields that depend on where the planner runs; upstream leaves them out.
_ENV_FIELDS = frozenset(
    {
        "namespace",
        "prometheus_endpoint",
        "prometheus_token",
        "prometheus_tls",
        "prometheus_ca_file",
        "metric_reporting_prometheus_port",
    }
)
PREFILL_POINTS = 16  # upstream's prefill granularity
DECODE_ISLS = 6  # upstream's decode granularity
DECODE_OSL = 500  # upstream sweeps decode at a fixed OSL of 500


def configmap_name(prefix: str, req: PlanRequest) -> str:
    """``<prefix>-<16 hex>``: upstream uses a random suffix; a stable one keeps re-profiling of
    the same request from leaving orphans behind; 64 bits of sha256(namespace/DGD/prefix) keep
    two DGDs from sharing one (4 hex characters collided within a few hundred DGDs)."""
    key = f"{req.namespace or ''}/{req.dgd_name}/{prefix}".encode()
    return f"{prefix}-{hashlib.sha256(key).hexdigest()[:16]}"


def planner_config(req: PlanRequest, chosen: Candidate) -> dict[str, Any]:
    cfg = {k: v for k, v in (req.planner or {}).items() if k not in _ENV_FIELDS}
    prefill, decode = chosen.worker("prefill"), chosen.worker("decode")
    cfg["prefill_engine_num_gpu"] = prefill.gpus if prefill else 0
    cfg["decode_engine_num_gpu"] = decode.gpus if decode else 0
    cfg["profile_results_dir"] = PROFILE_DATA_DIR
    cfg["model_name"] = req.model
    cfg.setdefault("backend", "mocker" if req.mocker else chosen.backend)
    cfg.setdefault("mode", "disagg")
    cfg.setdefault("max_gpu_budget", req.total_gpus)
    if req.ttft_ms is not None and req.itl_ms is not None:
        cfg.setdefault("ttft_ms", req.ttft_ms)
        cfg.setdefault("itl_ms", req.itl_ms)
    return cfg


def _rows(w: Worker, n: int = 1) -> Layout:
    """``n`` copies of one worker's layout (the estimator broadcasts batches against rows)."""
    a = np.repeat(np.array([[w.tp, w.pp, w.ep, w.dp]], dtype=np.int64), n, axis=0)
    return Layout(tp=a[:, 0].copy(), pp=a[:, 1].copy(), ep=a[:, 2].copy(), dp=a[:, 3].copy())


def profile_data(req: PlanRequest, chosen: Candidate) -> dict[str, dict[str, Any]]:
    """Prefill TTFT and throughput per GPU against ISL; decode ITL and throughput per GPU over
    (KV usage, context length): the curves upstream's thorough sweep measures on GPUs."""
    prefill, decode = chosen.worker("prefill"), chosen.worker("decode")
    assert prefill is not None and decode is not None
    arch, gpu, quant, backend = req.arch, req.gpu, req.quant, chosen.backend
    max_ctx = int(min(getattr(arch, "max_context", 32768), max(4 * req.isl, 8192)))
    isls = np.unique(np.linspace(100, max_ctx - DECODE_OSL, PREFILL_POINTS).astype(np.int64))
    lay_p = _rows(prefill)
    ttft = [
        float(np.asarray(prefill_ttft_ms(Engine(arch, gpu, backend, quant, lay_p), int(s), 1))[0])
        for s in isls
    ]
    thpt = [float(s) / (t / 1000.0) / prefill.gpus for s, t in zip(isls, ttft, strict=True)]
    lay_d = _rows(decode)
    max_kv = float(np.asarray(kv_capacity_tokens(Engine(arch, gpu, "vllm", quant, lay_d)))[0])
    x: list[float] = []
    y: list[float] = []
    z_itl: list[float] = []
    z_thpt: list[float] = []
    for s in np.linspace(100, max_ctx - DECODE_OSL, DECODE_ISLS).astype(np.int64):
        ctx = float(s) + DECODE_OSL / 2
        most = max(1, int(max_kv / (s + DECODE_OSL)))
        conc = np.unique(np.linspace(1, most, 6).astype(np.int64))
        itl = np.asarray(
            decode_tpot_ms(
                Engine(arch, gpu, backend, quant, _rows(decode, conc.size)),
                int(s),
                DECODE_OSL,
                conc,
            ),
            np.float64,
        )
        for n, t in zip(conc, np.broadcast_to(itl, conc.shape), strict=True):
            x.append(ctx * float(n) / max_kv if max_kv > 0 else 0.0)
            y.append(ctx)
            z_itl.append(float(t))
            z_thpt.append(float(n) * 1000.0 / float(t) / decode.gpus)
    return {
        "prefill_raw_data.json": {
            "prefill_isl": [int(s) for s in isls],
            "prefill_ttft": ttft,
            "prefill_thpt_per_gpu": thpt,
        },
        "decode_raw_data.json": {
            "max_kv_tokens": max_kv,
            "x_kv_usage": x,
            "y_context_length": y,
            "z_itl": z_itl,
            "z_thpt_per_gpu": z_thpt,
        },
    }


def configmap(name: str, req: PlanRequest, data: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if req.namespace:
        meta["namespace"] = req.namespace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {k: json.dumps(v, indent=1, sort_keys=True) for k, v in data.items()},
    }


def planner_configmaps(
    req: PlanRequest, chosen: Candidate, curves: dict[str, dict[str, Any]] | None
) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """(config ConfigMap name, profile-data ConfigMap name, the ConfigMaps)."""
    out: list[dict[str, Any]] = []
    cfg_name: str | None = None
    data_name: str | None = None
    if req.planner_enabled:
        cfg_name = configmap_name("planner-config", req)
        out.append(configmap(cfg_name, req, {PLANNER_CONFIG_FILE: planner_config(req, chosen)}))
    if curves is not None:
        data_name = configmap_name("planner-profile-data", req)
        out.append(configmap(data_name, req, curves))
    return cfg_name, data_name, out
