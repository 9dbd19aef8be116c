"""``plan``: a validated request in, the chosen configuration and its manifests out.

The sub-phases it reports are upstream's ``profilingPhase`` values, so the controller can copy
them into the DGDR status as they happen. The result carries an SLA verdict (``PlanResult.sla``):
when no configuration meets the targets the closest one is still planned, as upstream relaxes the
SLA with a warning, and the verdict says which target is missed and by how much.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from profiler.errors import FieldError, NotAvailableError, SpecError
from profiler.generate import build_dgd
from profiler.naive import naive_search
from profiler.planner import planner_configmaps, profile_data
from profiler.request import PlanRequest, too_long_services
from profiler.search import Candidate, search

Progress = Callable[[str, str], None]

THOROUGH_MESSAGE = (
    "thorough profiling is not available without a cluster: it deploys and benchmarks candidate "
    "configurations, which the controller does (profiler.thorough); use searchStrategy: rapid"
)


# The spec.sla field each target comes from, and how a message names it.
SLA_TARGETS: dict[str, str] = {"ttft": "TTFT", "itl": "ITL", "e2eLatency": "end-to-end latency"}
# A miss is reported in whole percent, at most this (a target of 1e-9 ms is missed "by a lot").
MAX_MISS_PERCENT = 10**9


def fmt_number(value: float) -> str:
    """A prediction for people: three significant figures or so (180, 12.5, 8.53)."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def miss_text(target: str, target_ms: float, predicted_ms: float, percent: int) -> str:
    """``TTFT 85.2 ms misses the 1 ms target by 8420 %``: one wording for the command line, the
    DGDR's conditions and its Events."""
    name = SLA_TARGETS.get(target, target)
    return f"{name} {fmt_number(predicted_ms)} ms misses the {target_ms:g} ms target by {percent} %"


@dataclass(frozen=True)
class SlaMiss:
    """One SLA target the chosen configuration misses: the target (a ``spec.sla`` field name:
    ``ttft``, ``itl`` or ``e2eLatency``), its value and the prediction, in milliseconds."""

    target: str
    target_ms: float
    predicted_ms: float

    @property
    def percent(self) -> int:
        """How far over the target, in whole percent: at least 1 (a miss is never "0 %"), at
        most ``MAX_MISS_PERCENT``."""
        over = (self.predicted_ms / self.target_ms - 1.0) * 100.0
        return int(max(1, round(min(MAX_MISS_PERCENT, over))))  # (NaN gives the bound)

    def describe(self) -> str:
        return miss_text(self.target, self.target_ms, self.predicted_ms, self.percent)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "target_ms": self.target_ms,
            "predicted_ms": self.predicted_ms,
            "percent": self.percent,
        }


@dataclass(frozen=True)
class SlaVerdict:
    """Whether the chosen configuration meets the request's SLA, and every target it misses.
    ``evaluated`` is false for a plan that is not performance-modelled: nothing was predicted,
    so the SLA was not checked (and ``met`` is false)."""

    met: bool
    misses: tuple[SlaMiss, ...] = ()
    evaluated: bool = True

    def describe(self) -> str:
        """``SLA met``, ``SLA not met: <each miss>``, or ``SLA not checked: ...``."""
        if not self.evaluated:
            return "SLA not checked: the plan is not performance-modelled"
        if self.met:
            return "SLA met"
        return "SLA not met: " + ", ".join(m.describe() for m in self.misses)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"met": self.met, "misses": [m.to_json() for m in self.misses]}
        if not self.evaluated:
            doc["evaluated"] = False
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SlaVerdict:
        misses = tuple(
            SlaMiss(str(m["target"]), float(m["target_ms"]), float(m["predicted_ms"]))
            for m in doc.get("misses") or ()
        )
        return cls(met=bool(doc["met"]), misses=misses, evaluated=bool(doc.get("evaluated", True)))


def sla_verdict(request: PlanRequest, chosen: Candidate) -> SlaVerdict:
    """Judge ``chosen`` against the request's targets, as the search does: ``e2eLatency`` is
    TTFT + osl x ITL; otherwise TTFT and ITL each against their own target. A prediction that is
    not a number never meets a target."""
    targets: dict[str, float | None]
    if request.e2e_latency_ms is not None:
        predicted = {"e2eLatency": chosen.ttft_ms + request.osl * chosen.itl_ms}
        targets = {"e2eLatency": request.e2e_latency_ms}
    else:
        predicted = {"ttft": chosen.ttft_ms, "itl": chosen.itl_ms}
        targets = {"ttft": request.ttft_ms, "itl": request.itl_ms}
    misses = tuple(
        SlaMiss(name, float(target), float(predicted[name]))
        for name, target in targets.items()
        if target is not None and not predicted[name] <= target
    )
    return SlaVerdict(met=not misses, misses=misses)


@dataclass
class PlanResult:
    """What ``plan`` returns; plain data, so it crosses a process pool by pickling."""

    chosen: Candidate
    candidates: list[Candidate]
    configs_evaluated: int
    elapsed_s: float
    dgd: dict[str, Any]
    sla: SlaVerdict
    configmaps: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    picking_mode: str = "default"
    pareto: list[Candidate] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    # Why the plan is not performance-modelled (upstream's fallback), None when it is.
    not_modelled: str | None = None

    @property
    def modelled(self) -> bool:
        return self.not_modelled is None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: a prediction that is not a number (nothing modelled) is null."""
        return {
            "chosen": _finite(self.chosen.to_json()),
            "candidates": [_finite(c.to_json()) for c in self.candidates],
            "configs_evaluated": self.configs_evaluated,
            "elapsed_s": round(self.elapsed_s, 4),
            "picking_mode": self.picking_mode,
            "request": self.request,
            "sla": self.sla.to_json(),
            "warnings": list(self.warnings),
            "pareto": [_finite(c.to_json()) for c in self.pareto],
            "dgd": self.dgd,
            "configmaps": self.configmaps,
            "modelled": self.modelled,
            "not_modelled": self.not_modelled,
        }


def _finite(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in doc.items()}


def not_modelled_text(model: str, why: str) -> str:
    """The warning of a plan that is not performance-modelled (command line, conditions, Events)."""
    return (
        f"{model} is not performance-modelled ({why}); generated upstream's fallback, a simple "
        "tensor-parallel configuration sized by memory: TTFT, ITL and throughput are not "
        "predicted and the SLA is not checked"
    )


def plan(request: PlanRequest, progress: Progress | None = None) -> PlanResult:
    """Search, pick and generate; raises SpecError, InfeasibleError, NotAvailableError."""
    start = time.perf_counter()

    def report(phase: str, message: str) -> None:
        if progress is not None:
            progress(phase, message)

    report("Initializing", f"planning {request.model} on {request.total_gpus} {request.gpu_sku}")
    if request.search_strategy == "thorough":
        raise NotAvailableError(THOROUGH_MESSAGE)
    if request.not_modelled is not None:
        report("SweepingPrefill", "not performance-modelled: sizing by memory")
        result = naive_search(
            request.arch,
            request.gpu,
            request.quant,
            request.backends[0],
            request.num_gpus_per_node,
            request.total_gpus,
        )
        result.warnings.append(not_modelled_text(request.model, request.not_modelled))
        report("SelectingConfig", f"{result.chosen.label} sized by memory")
    else:
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
    dgd, configmaps, merge_warnings = generate(request, chosen, curves)
    warnings += merge_warnings
    elapsed = time.perf_counter() - start
    report("Done", f"{chosen.mode} {chosen.backend} on {chosen.gpus} GPUs in {elapsed:.2f} s")
    return PlanResult(
        chosen=chosen,
        candidates=result.candidates,
        configs_evaluated=result.configs_evaluated,
        elapsed_s=elapsed,
        dgd=dgd,
        sla=sla_verdict(request, chosen)
        if request.modelled
        else SlaVerdict(met=False, evaluated=False),
        configmaps=configmaps,
        warnings=warnings,
        picking_mode=request.picking_mode,
        pareto=result.pareto,
        request=plan_summary(request),
        not_modelled=request.not_modelled,
    )


def generate(
    request: PlanRequest, chosen: Candidate, curves: dict[str, dict[str, Any]] | None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The DGD and planner ConfigMaps of the chosen configuration (from modelled or measured
    curves), and the overrides' merge warnings; a DGDR name too long for the services fails."""
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
    return dgd, configmaps, merge_warnings


def plan_summary(req: PlanRequest) -> dict[str, Any]:
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
