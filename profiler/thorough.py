"""Thorough profiling, the pure part: which deployments to measure, and the pick from what was
measured (docs/dgdr-contract.md#search-strategies-and-picking-modes).

``rapid`` trusts the performance model for every figure. ``thorough`` uses the model only to
choose *what* to measure: the best few configurations of the search, one per worker layout and
parallelism, each of which fits the GPUs' memory and the DGDR's ``totalGpus``. Something else
(the controller's sweep, ``controller/dgdr/thorough.py``) deploys each candidate, benchmarks it
and hands the figures back here; the pick then ranks *measured* TTFT, ITL and throughput with the
same picking modes as rapid, and the planner profile data is built from the measured curves in
upstream's format (``profiler.planner.profile_data``'s keys), so the planner and the mocker read
measurements instead of predictions.

Candidates are measured as one *unit*: the search's worker counts divided by their greatest
common divisor (one aggregated worker; x prefill : y decode workers), so a candidate costs the
fewest GPUs that still show its behaviour, several fit the budget at once, and the whole
deployment's throughput is the unit's times the number of units the search placed.

The pick does not weight by the estimator's risk (``profiler.risk``): that models the error of a
prediction, and these figures are not predictions.

Nothing here talks to Kubernetes or to a server: plain data in, plain data out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from profiler.candidates import Candidate, Targets, Worker
from profiler.errors import InfeasibleError, ProfilerError
from profiler.estimator import Engine, kv_capacity_tokens
from profiler.generate import build_dgd
from profiler.layouts import layout_rows
from profiler.naive import naive_search
from profiler.plan import PlanResult, generate, plan_summary, sla_verdict
from profiler.planner import configmap, profile_data
from profiler.request import PlanRequest
from profiler.search import search

Progress = Callable[[str, str], None]

DEFAULT_BUDGET = 3  # candidates measured per DGDR
DEFAULT_LEVELS = 3  # decode concurrency levels per candidate
DEFAULT_MAX_CONCURRENCY = 64  # the highest decode concurrency benchmarked, whatever the KV allows
DEFAULT_PREFILL_POINTS = 3  # prefill ISLs measured, the target's included
DEFAULT_DECODE_CONTEXTS = 2  # decode input lengths measured, the target's included


class SweepFailedError(ProfilerError):
    """No candidate could be measured: each one failed to start, timed out or could not be
    benchmarked. The message names every candidate and why."""

    reason = "ProfilingFailed"


# ------------------------------------------------------------------------------------------------
# Measurements


@dataclass(frozen=True)
class BenchPoint:
    """One benchmark run against a deployment's frontend: ``requests`` requests of ``isl`` input
    and ``osl`` output tokens, ``concurrency`` at a time. Times are means in milliseconds;
    ``tokens_s`` is output tokens per second of the whole deployment measured."""

    concurrency: int
    isl: int
    osl: int
    ttft_ms: float
    itl_ms: float
    tokens_s: float
    requests_s: float
    requests: int = 0
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "isl": self.isl,
            "osl": self.osl,
            "ttftMs": round(self.ttft_ms, 3),
            "itlMs": round(self.itl_ms, 4),
            "tokensPerSecond": round(self.tokens_s, 2),
            "requestsPerSecond": round(self.requests_s, 4),
            "requests": self.requests,
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BenchPoint:
        return cls(
            concurrency=int(doc["concurrency"]),
            isl=int(doc["isl"]),
            osl=int(doc["osl"]),
            ttft_ms=float(doc["ttftMs"]),
            itl_ms=float(doc["itlMs"]),
            tokens_s=float(doc["tokensPerSecond"]),
            requests_s=float(doc["requestsPerSecond"]),
            requests=int(doc.get("requests", 0)),
            errors=int(doc.get("errors", 0)),
        )


@dataclass(frozen=True)
class Measurement:
    """What the sweep measured for one candidate unit: prefill TTFT at the target ISL (one
    request at a time), and decode ITL and throughput over concurrency up to its KV capacity."""

    prefill: tuple[BenchPoint, ...]
    decode: tuple[BenchPoint, ...]
    max_kv_tokens: float  # KV tokens of one decode (or aggregated) worker, as the model sizes it

    def to_json(self) -> dict[str, Any]:
        return {
            "prefill": [p.to_json() for p in self.prefill],
            "decode": [p.to_json() for p in self.decode],
            "maxKvTokens": self.max_kv_tokens,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Measurement:
        return cls(
            prefill=tuple(BenchPoint.from_json(p) for p in doc.get("prefill") or ()),
            decode=tuple(BenchPoint.from_json(p) for p in doc.get("decode") or ()),
            max_kv_tokens=float(doc.get("maxKvTokens") or 0.0),
        )


# ------------------------------------------------------------------------------------------------
# Candidates


def candidate_from_json(doc: Mapping[str, Any]) -> Candidate:
    """The inverse of ``Candidate.to_json`` (what the sweep persists between leaders)."""
    workers = tuple(
        Worker(
            str(w["role"]),
            int(w["tp"]),
            int(w["pp"]),
            int(w["ep"]),
            int(w["dp"]),
            int(w["batch"]),
            int(w["replicas"]),
        )
        for w in doc["workers"]
    )

    def num(key: str) -> float:
        value = doc.get(key)
        return float("nan") if value is None else float(value)

    return Candidate(
        mode=str(doc["mode"]),
        backend=str(doc["backend"]),
        workers=workers,
        gpus=int(doc["gpus"]),
        ttft_ms=num("ttft_ms"),
        itl_ms=num("itl_ms"),
        tokens_s=num("tokens_s"),
        requests_s=num("requests_s"),
        meets_sla=bool(doc.get("meets_sla")),
        pareto=bool(doc.get("pareto")),
    )


def units_in(c: Candidate) -> int:
    """How many copies of its smallest unit the search placed (gcd of the worker counts)."""
    return max(1, reduce(math.gcd, (w.replicas for w in c.workers), 0))


def unit_of(c: Candidate) -> Candidate:
    """The candidate's smallest unit: worker counts divided by ``units_in``; predicted
    throughput scaled to it, latencies unchanged."""
    n = units_in(c)
    workers = tuple(dataclasses.replace(w, replicas=w.replicas // n) for w in c.workers)
    return dataclasses.replace(
        c,
        workers=workers,
        gpus=sum(w.gpus * w.replicas for w in workers),
        tokens_s=c.tokens_s / n,
        requests_s=c.requests_s / n,
    )


def sweep_candidates(req: PlanRequest, budget: int = DEFAULT_BUDGET) -> list[Candidate]:
    """The configurations to measure, best predicted first: the search's top configurations
    (one per worker layout and parallelism, all fitting memory and ``totalGpus``), the best of
    each serving mode (aggregated, disaggregated) among the first, up to ``budget``.

    Raises ``InfeasibleError`` (from the search) when nothing fits, naming why."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if req.not_modelled is not None:
        found = naive_search(
            req.arch,
            req.gpu,
            req.quant,
            req.backends[0],
            req.num_gpus_per_node,
            req.total_gpus,
        )
    else:
        found = search(req)
    ranked = [c for c in found.candidates if unit_of(c).gpus <= req.total_gpus]
    chosen: list[Candidate] = ranked[:1]
    for mode in ("agg", "disagg"):
        best = next((c for c in ranked if c.mode == mode), None)
        if best is not None and best not in chosen and len(chosen) < budget:
            chosen.append(best)
    chosen += [c for c in ranked if c not in chosen][: budget - len(chosen)]
    if not chosen:
        raise InfeasibleError(
            f"no configuration of {req.model} fits {req.total_gpus} {req.gpu_sku} GPUs"
        )
    return chosen


def decode_worker(c: Candidate) -> Worker:
    """The worker that decodes: the decode worker, or the aggregated one."""
    w = c.worker("decode") or c.worker("agg")
    assert w is not None, c
    return w


def prefill_worker(c: Candidate) -> Worker:
    w = c.worker("prefill") or c.worker("agg")
    assert w is not None, c
    return w


def kv_tokens(req: PlanRequest, c: Candidate) -> float:
    """KV-cache tokens of one decoding worker of ``c``, as the performance model sizes it (the
    engine reports its own on a GPU; the mocker is sized with this one)."""
    w = decode_worker(c)
    cap = kv_capacity_tokens(
        Engine(req.arch, req.gpu, c.backend, req.quant, layout_rows([(w.tp, w.pp, w.ep, w.dp)]))
    )
    value = float(np.asarray(cap)[0])
    return value if math.isfinite(value) and value > 0 else 0.0


def sweep_isls(req: PlanRequest, points: int) -> list[int]:
    """Input lengths to measure: ``points`` of them, geometrically spaced from a quarter of the
    target ISL up to the target, which is always one. One is what the pick needs; the planner
    fits curves through several (upstream's sweep measures a grid of ISLs for prefill and of
    context lengths for decode), and its decode interpolation needs more than one context."""
    if points <= 1:
        return [req.isl]
    low = max(1, req.isl // 4)
    grid = np.unique(np.round(np.geomspace(low, req.isl, points)).astype(np.int64))
    return sorted({int(v) for v in grid} | {req.isl})


def concurrency_levels(
    req: PlanRequest,
    unit: Candidate,
    levels: int = DEFAULT_LEVELS,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> list[int]:
    """Decode concurrencies to benchmark: ``levels`` of them, geometrically spaced from 1 up to
    what the unit's KV cache holds at ISL + OSL (upstream's thorough decode sweep goes up to the
    KV capacity), capped at ``max_concurrency``."""
    w = decode_worker(unit)
    per_worker = kv_tokens(req, unit) / max(req.isl + req.osl, 1)
    most = int(max(1, min(max_concurrency, per_worker * w.replicas)))
    if levels <= 1 or most == 1:
        return [most]
    grid = np.unique(np.round(np.geomspace(1, most, levels)).astype(np.int64))
    return [int(v) for v in grid]


# ------------------------------------------------------------------------------------------------
# The test deployments


def candidate_deployment(
    req: PlanRequest, unit: Candidate, name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The DGD that measures ``unit`` (named ``name``) and the ConfigMaps it mounts.

    Built as the final DGD is (``build_dgd``: the DGDR's image, ``overrides.dgd``, the profiling
    Job's tolerations), without a planner: a planner would scale the workers being measured.
    With ``features.mocker`` the workers mount the performance model's curves for this unit, so
    the mocker simulates this configuration's predicted timing (on GPUs, real engines need none).
    """
    test_req = dataclasses.replace(req, planner=None)
    configmaps: list[dict[str, Any]] = []
    profile_cm: str | None = None
    if req.mocker and unit.mode == "disagg":
        profile_cm = f"{name}-profile"
        configmaps.append(configmap(profile_cm, req, profile_data(req, unit)))
    dgd, _warnings = build_dgd(test_req, unit, profile_configmap=profile_cm)
    dgd["metadata"]["name"] = name
    return dgd, configmaps


# ------------------------------------------------------------------------------------------------
# The pick


def _targets(req: PlanRequest) -> Targets:
    return Targets(req.ttft_ms, req.itl_ms, req.e2e_latency_ms, req.osl)


def _miss(req: PlanRequest, ttft_ms: float, itl_ms: float) -> float:
    value = float(_targets(req).miss(np.array([ttft_ms]), np.array([itl_ms]))[0])
    return value if math.isfinite(value) else math.inf


def operating_point(req: PlanRequest, m: Measurement) -> BenchPoint:
    """The decode point the deployment would run at: the most throughput among the points
    meeting the SLA (each point's own TTFT, queueing included), else the closest miss."""
    if not m.decode:
        raise ValueError("a measurement needs at least one decode point")
    at_target = [p for p in m.decode if p.isl == req.isl] or list(m.decode)
    meets = [p for p in at_target if _miss(req, p.ttft_ms, p.itl_ms) <= 1.0]
    if meets:
        return max(meets, key=lambda p: (p.tokens_s, -p.concurrency))
    return min(at_target, key=lambda p: (_miss(req, p.ttft_ms, p.itl_ms), p.concurrency))


def measured_candidate(req: PlanRequest, predicted: Candidate, m: Measurement) -> Candidate:
    """``predicted``'s deployment with measured figures: TTFT and ITL at its operating point
    (TTFT no lower than the prefill measurement at the target ISL), throughput the unit's times
    the units placed; with a load to match (``workload.concurrency``/``requestRate``), the units
    the measured capacity needs, capped by ``totalGpus``."""
    point = operating_point(req, m)
    unit = unit_of(predicted)
    prefill_ttft = min((p.ttft_ms for p in m.prefill if p.isl == req.isl), default=point.ttft_ms)
    ttft = max(point.ttft_ms, prefill_ttft) if point.concurrency == 1 else point.ttft_ms
    fit = max(1, req.total_gpus // max(unit.gpus, 1))
    units = units_in(predicted)
    need = units * unit.gpus
    if req.picking_mode == "load_match":
        if req.request_rate is not None:
            want = math.ceil(req.request_rate / max(point.requests_s, 1e-12))
        else:
            assert req.concurrency is not None
            want = math.ceil(req.concurrency / max(point.concurrency, 1))
        want = max(1, want)
        units, need = min(want, fit), want * unit.gpus
    workers = tuple(dataclasses.replace(w, replicas=w.replicas * units) for w in unit.workers)
    return Candidate(
        mode=predicted.mode,
        backend=predicted.backend,
        workers=workers,
        gpus=unit.gpus * units,
        ttft_ms=ttft,
        itl_ms=point.itl_ms,
        tokens_s=point.tokens_s * units,
        requests_s=point.requests_s * units,
        meets_sla=_miss(req, ttft, point.itl_ms) <= 1.0,
        gpus_needed=need,
    )


def pick(req: PlanRequest, measured: Sequence[Candidate]) -> Candidate:
    """The best measured candidate by the request's picking mode, as rapid ranks predictions
    (``profiler.search._rank``): SLA-meeting first (else the closest miss), then
    ``optimizationType: latency`` (least end-to-end latency), ``load_match`` (fewest GPUs the
    load needs), ``autoscale`` (most throughput per GPU of the engines), ``default`` (most
    throughput in the budget, then fewer GPUs)."""
    if not measured:
        raise ValueError("nothing measured to pick from")

    def key(c: Candidate) -> tuple[float, ...]:
        miss = _miss(req, c.ttft_ms, c.itl_ms)
        miss_key = 0.0 if miss <= 1.0 else miss
        latency = c.ttft_ms + req.osl * c.itl_ms
        per_gpu = c.tokens_s_per_gpu
        if req.optimization_type == "latency":
            return (miss_key, latency, -per_gpu)
        mode = req.picking_mode
        if mode == "load_match":
            return (miss_key, float(c.gpus_needed), -per_gpu, -c.tokens_s_per_user)
        if mode == "autoscale":
            return (miss_key, -per_gpu, -c.tokens_s_per_user)
        return (miss_key, -c.tokens_s, float(c.gpus), -c.tokens_s_per_user)

    return min(measured, key=key)


def measured_profile_data(
    req: PlanRequest, unit: Candidate, m: Measurement
) -> dict[str, dict[str, Any]]:
    """The planner profile data (upstream's ``prefill_raw_data.json`` and
    ``decode_raw_data.json``, the keys of ``profiler.planner.profile_data``) from measurements:
    prefill TTFT and throughput per GPU against ISL; decode ITL and throughput per GPU against
    KV usage and context length (each point's ISL + OSL/2, as the predicted curves place it)."""
    pw, dw = prefill_worker(unit), decode_worker(unit)
    pgpus = max(pw.gpus * pw.replicas, 1)
    dgpus = max(dw.gpus * dw.replicas, 1)
    prefill = sorted(m.prefill, key=lambda p: p.isl)
    max_kv = m.max_kv_tokens or float(max(p.concurrency for p in m.decode) * (req.isl + req.osl))
    decode = sorted(m.decode, key=lambda p: (p.isl, p.concurrency))

    def ctx(p: BenchPoint) -> float:
        return p.isl + p.osl / 2

    return {
        "prefill_raw_data.json": {
            "prefill_isl": [p.isl for p in prefill],
            "prefill_ttft": [p.ttft_ms for p in prefill],
            "prefill_thpt_per_gpu": [p.isl / (p.ttft_ms / 1000.0) / pgpus for p in prefill],
        },
        "decode_raw_data.json": {
            "max_kv_tokens": max_kv,
            "x_kv_usage": [ctx(p) * p.concurrency / max(dw.replicas, 1) / max_kv for p in decode],
            "y_context_length": [ctx(p) for p in decode],
            "z_itl": [p.itl_ms for p in decode],
            "z_thpt_per_gpu": [p.tokens_s / dgpus for p in decode],
        },
    }


@dataclass(frozen=True)
class Outcome:
    """One candidate's sweep outcome: its measurement, or why it was skipped."""

    predicted: Candidate
    measurement: Measurement | None = None
    skipped: str | None = None


def finish(
    req: PlanRequest, outcomes: Sequence[Outcome], progress: Progress | None = None
) -> PlanResult:
    """Pick among the measured candidates and generate the DGD and planner ConfigMaps, the
    profile data built from the chosen unit's measured curves. Raises ``SweepFailedError``
    when nothing was measured, naming each candidate and why."""

    def report(phase: str, message: str) -> None:
        if progress is not None:
            progress(phase, message)

    measured = [
        (o, measured_candidate(req, o.predicted, o.measurement)) for o in outcomes if o.measurement
    ]
    if not measured:
        why = "; ".join(f"{o.predicted.label}: {o.skipped or 'not measured'}" for o in outcomes)
        raise SweepFailedError(
            f"no candidate of the thorough sweep could be measured ({len(outcomes)} tried): {why}"
        )
    report(
        "SelectingConfig",
        f"picking among {len(measured)} measured configurations ({req.picking_mode})",
    )
    chosen = pick(req, [c for _, c in measured])
    source = next(o for o, c in measured if c is chosen)
    assert source.measurement is not None
    warnings = [
        f"candidate {o.predicted.label} skipped: {o.skipped}" for o in outcomes if o.skipped
    ]
    verdict = sla_verdict(req, chosen)
    if not verdict.met:
        warnings.append(
            f"no measured configuration meets the SLA: {verdict.describe()}; the closest "
            "configuration was picked"
        )
    curves = None
    if (req.planner_enabled or req.mocker) and chosen.mode == "disagg":
        report("BuildingCurves", "prefill and decode curves from the measurements")
        curves = measured_profile_data(req, unit_of(source.predicted), source.measurement)
    report("GeneratingDGD", f"{chosen.mode} {chosen.backend}: {chosen.label} (measured)")
    dgd, configmaps, merge_warnings = generate(req, chosen, curves)
    report("Done", f"{chosen.mode} {chosen.backend} on {chosen.gpus} GPUs, measured")
    return PlanResult(
        chosen=chosen,
        candidates=[c for _, c in measured],
        configs_evaluated=len(outcomes),
        elapsed_s=0.0,
        dgd=dgd,
        sla=verdict,
        configmaps=configmaps,
        warnings=warnings + merge_warnings,
        picking_mode=req.picking_mode,
        request=plan_summary(req),
    )


def comparison(req: PlanRequest, outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Per candidate: the rapid prediction and the measured figures of the same deployment
    (None when skipped), for the result's ``thorough`` block and ``bench/thorough``'s table."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"label": o.predicted.label, "mode": o.predicted.mode}
        row["predicted"] = {
            "ttftMs": round(o.predicted.ttft_ms, 2),
            "itlMs": round(o.predicted.itl_ms, 3),
            "tokensPerSecondPerGpu": round(o.predicted.tokens_s_per_gpu, 1),
        }
        if o.measurement is not None:
            c = measured_candidate(req, o.predicted, o.measurement)
            row["measured"] = {
                "ttftMs": round(c.ttft_ms, 2),
                "itlMs": round(c.itl_ms, 3),
                "tokensPerSecondPerGpu": round(c.tokens_s_per_gpu, 1),
            }
        else:
            row["skipped"] = o.skipped
        rows.append(row)
    return rows
