"""``plan``: a validated request in, the chosen configuration and its manifests out.

The sub-phases it reports are upstream's ``profilingPhase`` values, so the controller can copy
them into the DGDR status as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from profiler.errors import FieldError, NotAvailableError, SpecError
from profiler.generate import build_dgd
from profiler.planner import planner_configmaps, profile_data
from profiler.request import PlanRequest, too_long_services
from profiler.search import Candidate, search

Progress = Callable[[str, str], None]

THOROUGH_MESSAGE = (
    "thorough profiling (sweeps on real GPUs) is not available yet; use searchStrategy: rapid"
)


@dataclass
class PlanResult:
    """What ``plan`` returns; plain data, so it crosses a process pool by pickling."""

    chosen: Candidate
    candidates: list[Candidate]
    configs_evaluated: int
    elapsed_s: float
    dgd: dict[str, Any]
    configmaps: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    picking_mode: str = "default"
    pareto: list[Candidate] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_json(),
            "candidates": [c.to_json() for c in self.candidates],
            "configs_evaluated": self.configs_evaluated,
            "elapsed_s": round(self.elapsed_s, 4),
            "picking_mode": self.picking_mode,
            "request": self.request,
            "warnings": list(self.warnings),
            "pareto": [c.to_json() for c in self.pareto],
            "dgd": self.dgd,
            "configmaps": self.configmaps,
        }


def plan(request: PlanRequest, progress: Progress | None = None) -> PlanResult:
    """Search, pick and generate; raises SpecError, InfeasibleError, NotAvailableError."""
    start = time.perf_counter()

    def report(phase: str, message: str) -> None:
        if progress is not None:
            progress(phase, message)

    report("Initializing", f"planning {request.model} on {request.total_gpus} {request.gpu_sku}")
    if request.search_strategy == "thorough":
        raise NotAvailableError(THOROUGH_MESSAGE)
    result = search(request, report)
    chosen = result.chosen
    warnings = list(result.warnings)
    context = request.isl + request.osl
    if context > request.arch.max_context:
        warnings.append(
            f"isl + osl ({context} tokens) is longer than {request.model}'s context length "
            f"({request.arch.max_context}); the engines need a longer --max-model-len (RoPE "
            "scaling) or requests will be cut"
        )
    curves = None
    if (request.planner_enabled or request.mocker) and chosen.mode == "disagg":
        report("BuildingCurves", "prefill and decode performance curves for the planner")
        curves = profile_data(request, chosen)
    report("GeneratingDGD", f"{chosen.mode} {chosen.backend}: {chosen.label}")
    long = too_long_services(
        request.dgd_name, chosen.backend, planner=request.planner_enabled, mocker=request.mocker
    )
    if long:
        raise SpecError(
            [
                FieldError(
                    "metadata.name",
                    f"DGD name {request.dgd_name!r} plus service name {long[0]!r} is longer than "
                    "45 characters; shorten the DGDR name",
                )
            ]
        )
    cfg_cm, data_cm, configmaps = planner_configmaps(request, chosen, curves)
    dgd, merge_warnings = build_dgd(
        request, chosen, planner_configmap=cfg_cm, profile_configmap=data_cm
    )
    warnings += merge_warnings
    elapsed = time.perf_counter() - start
    report("Done", f"{chosen.mode} {chosen.backend} on {chosen.gpus} GPUs in {elapsed:.2f} s")
    return PlanResult(
        chosen=chosen,
        candidates=result.candidates,
        configs_evaluated=result.configs_evaluated,
        elapsed_s=elapsed,
        dgd=dgd,
        configmaps=configmaps,
        warnings=warnings,
        picking_mode=request.picking_mode,
        pareto=result.pareto,
        request=_summary(request),
    )


def _summary(req: PlanRequest) -> dict[str, Any]:
    """What was planned for, with defaults applied, so a result can be read on its own."""
    sla: dict[str, Any] = (
        {"e2eLatency": req.e2e_latency_ms}
        if req.e2e_latency_ms is not None
        else {"ttft": req.ttft_ms, "itl": req.itl_ms}
    )
    if req.optimization_type:
        sla["optimizationType"] = req.optimization_type
    workload: dict[str, Any] = {"isl": req.isl, "osl": req.osl}
    if req.concurrency is not None:
        workload["concurrency"] = req.concurrency
    if req.request_rate is not None:
        workload["requestRate"] = req.request_rate
    return {
        "model": req.model,
        "quant": req.quant,
        "backends": list(req.backends),
        "gpuSku": req.gpu_sku,
        "numGpusPerNode": req.num_gpus_per_node,
        "totalGpus": req.total_gpus,
        "workload": workload,
        "sla": sla,
    }
