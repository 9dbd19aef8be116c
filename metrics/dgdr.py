"""Per-DGDR state metrics, kube-state-metrics style, plus profiling histograms.

The controller exports one series per DGDR (phase, sub-phase, conditions) instead of shipping a
kube-state-metrics Custom Resource State config, so that the dashboard and alerts work with nothing
but the controller and Prometheus installed. Only the leader writes these series: a replica that
loses the lease calls ``clear()`` so that two replicas never report the same object.

Transitions are detected between successive ``observe_phase`` calls for the same object, so the
caller reports the phase it read before acting and the phase it wrote after. An object first seen
in a phase other than Pending (a restart or a failover) counts no transition and no failure: that
keeps ``increase()`` over the counters honest when a new leader re-lists every object.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from metrics import REGISTRY

PHASES: tuple[str, ...] = ("Pending", "Profiling", "Ready", "Deploying", "Deployed", "Failed")
PROFILING_PHASES: tuple[str, ...] = (
    "Initializing",
    "SweepingPrefill",
    "SweepingDecode",
    "SelectingConfig",
    "BuildingCurves",
    "GeneratingDGD",
    "Done",
)
CONDITION_STATUSES: tuple[str, ...] = ("true", "false", "unknown")
# Condition types whose False reason explains a failure, in the order the aggregate Succeeded
# condition picks them (docs/dgdr-contract.md#conditions-and-reasons).
FAILURE_CONDITION_TYPES: tuple[str, ...] = (
    "Validation",
    "Profiling",
    "SpecGenerated",
    "DeploymentReady",
)
# Succeeded reasons that describe progress, not failure: seeing one of them while the phase is
# Failed means the conditions have not been written yet.
_PROGRESS_REASONS = frozenset({"Pending", "Profiling", "Deploying", "SpecGenerated", "Deployed"})
_NON_FAILURE_REASONS = frozenset(
    {
        "ValidationPassed",
        "DiscoveringHardware",
        "ProfilingRunning",
        "ProfilingCompleted",
        "Completed",
        "DeploymentCreated",
        "DeploymentInProgress",
        "DeploymentReady",
        *PROFILING_PHASES,
    }
)
# Failure reasons known up front, pre-initialised to 0 so that rate() works from the first scrape.
KNOWN_FAILURE_REASONS: tuple[str, ...] = (
    "ValidationFailed",
    "JobCreationFailed",
    "ProfilingFailed",
    "InitializingFailed",
    "SweepingPrefillFailed",
    "SweepingDecodeFailed",
    "SelectingConfigFailed",
    "BuildingCurvesFailed",
    "GeneratingDGDFailed",
    "GenerationFailed",
    "DeploymentRejected",
    "DeploymentDeleted",
)

# Rapid profiling takes seconds here, thorough profiling hours upstream: cover both.
PROFILING_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)
PHASE_BUCKETS: tuple[float, ...] = (
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)

OBJECT_LABELS = ("namespace", "name")

# The per-object families: (name, help). Their series are not prometheus_client children (some 35
# objects per DGDR) but generated at scrape time from the compact state kept below.
STATUS_PHASE = (
    "dgdr_status_phase",
    "The DGDR's current phase: 1 for the phase it is in, 0 for the others.",
)
STATUS_PROFILING_PHASE = (
    "dgdr_status_profiling_phase",
    "The DGDR's profiling sub-phase: 1 for the current one, all 0 when not profiling.",
)
STATUS_CONDITION = (
    "dgdr_status_condition",
    "The DGDR's conditions: 1 for the condition's current status, 0 for the other two.",
)
STATUS_CONDITION_REASON = (
    "dgdr_status_condition_reason",
    "The current reason of each DGDR condition (always 1; one series per condition type).",
)
STATUS_INFO = (
    "dgdr_status_info",
    "One series per DGDR (always 1) carrying phase, sub-phase and reason for tables.",
)
PHASE_START_TIME = (
    "dgdr_phase_start_time_seconds",
    "Unix time the DGDR entered its current phase (as first seen by this controller).",
)
PHASE_DURATION = Histogram(
    "dgdr_phase_duration_seconds",
    "Time DGDRs spent in a phase, observed when they leave it.",
    ["phase"],
    buckets=PHASE_BUCKETS,
    registry=REGISTRY,
)
PHASE_TRANSITIONS = Counter(
    "dgdr_phase_transitions_total",
    "DGDR phase transitions seen by the controller.",
    ["from", "to"],
    registry=REGISTRY,
)
PROFILING_DURATION = Histogram(
    "dgdr_profiling_duration_seconds",
    "Wall time of one profiling run in the process pool.",
    ["backend", "search_strategy", "outcome"],
    buckets=PROFILING_BUCKETS,
    registry=REGISTRY,
)
PROFILING_POOL_BUSY = Gauge(
    "dgdr_profiling_pool_busy",
    "Profiling runs executing in the process pool now.",
    registry=REGISTRY,
)
PROFILING_POOL_QUEUED = Gauge(
    "dgdr_profiling_pool_queued",
    "Profiling runs waiting for a free worker of the process pool.",
    registry=REGISTRY,
)
FAILURES = Counter(
    "dgdr_failures_total",
    "DGDRs that entered the Failed phase, by the reason of the failing condition.",
    ["reason"],
    registry=REGISTRY,
)

# Label values known up front. Their children are created at import with value 0, the way
# controller-runtime's initMetrics does: a series born at its first event hides that event from
# rate() and histogram_quantile() (the first sample already holds it).
BACKENDS: tuple[str, ...] = ("auto", "vllm", "sglang", "trtllm")
SEARCH_STRATEGIES: tuple[str, ...] = ("rapid", "thorough")
PROFILE_OUTCOMES: tuple[str, ...] = ("succeeded", "failed")
# The transitions of the phase table (docs/dgdr-contract.md#phases).
KNOWN_TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("Pending", "Profiling"),
    ("Pending", "Failed"),
    ("Profiling", "Ready"),
    ("Profiling", "Deploying"),
    ("Profiling", "Failed"),
    ("Ready", "Deploying"),
    ("Deploying", "Ready"),
    ("Deploying", "Deployed"),
    ("Deploying", "Failed"),
    ("Deployed", "Deploying"),
    ("Deployed", "Failed"),
)

for _reason in KNOWN_FAILURE_REASONS:
    FAILURES.labels(_reason)
for _phase in PHASES:
    PHASE_DURATION.labels(_phase)
for _src, _dst in KNOWN_TRANSITIONS:
    PHASE_TRANSITIONS.labels(_src, _dst)
for _backend in BACKENDS:
    for _strategy in SEARCH_STRATEGIES:
        for _outcome in PROFILE_OUTCOMES:
            PROFILING_DURATION.labels(_backend, _strategy, _outcome)


@dataclass(slots=True)
class _ObjectState:
    """What this process knows of one DGDR: every per-object series is generated from it at scrape
    time (see ``_ObjectCollector``), so forgetting the state removes the series."""

    phase: str
    profiling_phase: str
    entered_at: float
    # True when the start of the current phase was seen (or given), so its duration is real.
    entry_known: bool
    failure_pending: bool = False
    condition_statuses: dict[str, str] = field(default_factory=dict)
    condition_reasons: dict[str, str] = field(default_factory=dict)


_lock = threading.Lock()
_objects: dict[tuple[str, str], _ObjectState] = {}
_clock: Callable[[], float] = time.time


def _require_name(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field_name} must be a non-empty string, got {value!r}")
    return value


def _normalise_phase(phase: str | None) -> str:
    value = phase or "Pending"
    if value not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    return sys.intern(value)


def _normalise_profiling_phase(profiling_phase: str | None) -> str:
    value = profiling_phase or ""
    if value and value not in PROFILING_PHASES:
        raise ValueError(
            f"profiling_phase must be empty or one of {', '.join(PROFILING_PHASES)}, "
            f"got {profiling_phase!r}"
        )
    return sys.intern(value)


def _key(namespace: object, name: object) -> tuple[str, str]:
    # Namespaces repeat across objects: one shared string each.
    return sys.intern(_require_name(namespace, "namespace")), _require_name(name, "name")


def observe_phase(
    namespace: str,
    name: str,
    phase: str | None,
    profiling_phase: str | None,
    *,
    since: float | None = None,
) -> None:
    """Export the DGDR's phase and sub-phase; count a transition when the phase changed.

    ``since`` is the Unix time the object entered ``phase`` when the caller knows it (for example
    from a condition's lastTransitionTime); without it the time of the first call in that phase is
    used. An empty phase means Pending, as the API does.
    """
    key = _key(namespace, name)
    new_phase = _normalise_phase(phase)
    new_sub = _normalise_profiling_phase(profiling_phase)
    if since is not None and (not math.isfinite(since) or since < 0):
        raise ValueError(f"since must be a non-negative Unix time, got {since!r}")
    now = _clock()
    with _lock:
        state = _objects.get(key)
        if state is None:
            # A new object starts in Pending; one first seen later in its life was observed
            # mid-phase (restart, failover), so its phase start is unknown unless given.
            state = _ObjectState(
                phase=new_phase,
                profiling_phase=new_sub,
                entered_at=since if since is not None else now,
                entry_known=since is not None or new_phase == "Pending",
            )
            _objects[key] = state
        elif state.phase != new_phase:
            if state.entry_known:
                PHASE_DURATION.labels(state.phase).observe(max(0.0, now - state.entered_at))
            PHASE_TRANSITIONS.labels(state.phase, new_phase).inc()
            state.failure_pending = new_phase == "Failed"
            state.phase = new_phase
            state.entered_at = since if since is not None else now
            state.entry_known = True
        elif since is not None and not state.entry_known:
            state.entered_at = since
            state.entry_known = True
        state.profiling_phase = new_sub
        _maybe_count_failure(state)


def _condition_status(value: object) -> str:
    text = str(value).lower() if value is not None else "unknown"
    return text if text in CONDITION_STATUSES else "unknown"


def observe_conditions(namespace: str, name: str, conditions: Sequence[Mapping[str, Any]]) -> None:
    """Export the DGDR's conditions (status and reason per type); drop types that disappeared."""
    key = _key(namespace, name)
    statuses: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for index, condition in enumerate(conditions):
        if not isinstance(condition, Mapping):
            raise ValueError(f"conditions[{index}] must be a mapping, got {condition!r}")
        ctype = condition.get("type")
        if not isinstance(ctype, str) or not ctype:
            raise ValueError(f"conditions[{index}].type must be a non-empty string")
        # Types, statuses and reasons come from a small vocabulary: share one string each.
        ctype = sys.intern(ctype)
        statuses[ctype] = sys.intern(_condition_status(condition.get("status")))
        reasons[ctype] = sys.intern(str(condition.get("reason") or ""))
    with _lock:
        state = _objects.get(key)
        if state is None:
            # Conditions before the first phase report: the object is Pending by definition.
            state = _ObjectState(
                phase="Pending", profiling_phase="", entered_at=_clock(), entry_known=False
            )
            _objects[key] = state
        # Replaced whole, never mutated: a scrape reading the old dicts sees a consistent pair.
        state.condition_statuses = statuses
        state.condition_reasons = reasons
        _maybe_count_failure(state)


def _failure_reason(state: _ObjectState) -> str | None:
    """The reason a Failed DGDR failed, or None while its conditions still describe progress."""
    succeeded = state.condition_reasons.get("Succeeded")
    if (
        succeeded
        and state.condition_statuses.get("Succeeded") == "false"
        and succeeded not in _PROGRESS_REASONS
        and succeeded != "Failed"
    ):
        return succeeded
    for ctype in FAILURE_CONDITION_TYPES:
        reason = state.condition_reasons.get(ctype)
        if (
            reason
            and state.condition_statuses.get(ctype) == "false"
            and reason not in _NON_FAILURE_REASONS
        ):
            return reason
    return None


def _maybe_count_failure(state: _ObjectState) -> None:
    if not state.failure_pending or state.phase != "Failed":
        return
    reason = _failure_reason(state)
    if reason is not None:
        FAILURES.labels(reason).inc()
        state.failure_pending = False


def _display_reason(state: _ObjectState) -> str:
    if state.phase == "Failed":
        return _failure_reason(state) or state.condition_reasons.get("Succeeded", "")
    return state.condition_reasons.get("Succeeded", "")


def observe_profile(backend: str, strategy: str, seconds: float, outcome: str) -> None:
    """Record one profiling run's wall time by backend, search strategy and outcome."""
    _require_name(backend, "backend")
    _require_name(strategy, "strategy")
    _require_name(outcome, "outcome")
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a non-negative finite number, got {seconds!r}")
    PROFILING_DURATION.labels(backend, strategy, outcome).observe(float(seconds))


def set_pool(busy: int, queued: int) -> None:
    """Export how many profiling runs execute and wait in the process pool."""
    for value, field_name in ((busy, "busy"), (queued, "queued")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{field_name} must be a non-negative int, got {value!r}")
    PROFILING_POOL_BUSY.set(busy)
    PROFILING_POOL_QUEUED.set(queued)


def forget(namespace: str, name: str) -> None:
    """Remove every series of a deleted DGDR (a no-op for an object never observed)."""
    with _lock:
        _objects.pop((namespace, name), None)


def clear() -> None:
    """Remove every per-object series: called when this replica stops being the leader."""
    with _lock:
        _objects.clear()


def tracked() -> list[tuple[str, str]]:
    """The (namespace, name) pairs that have series now, for resyncs against the informer store."""
    with _lock:
        return sorted(_objects)


class _LazyGaugeFamily(Metric):
    """A gauge family whose samples are produced while the exposition writes them, one at a time,
    instead of a list of every sample of every DGDR built first."""

    def __init__(self, name: str, documentation: str, samples: Iterable[Sample]) -> None:
        super().__init__(name, documentation, "gauge")
        # prometheus_client only iterates ``samples`` (once per collect()).
        self.samples = samples  # type: ignore[assignment]


def _snapshot() -> list[tuple[tuple[str, str], _ObjectState]]:
    with _lock:
        return list(_objects.items())


def _phase_samples(
    objects: list[tuple[tuple[str, str], _ObjectState]],
) -> Iterator[Sample]:
    metric = STATUS_PHASE[0]
    for (namespace, name), state in objects:
        current = state.phase
        for value in PHASES:
            labels = {"namespace": namespace, "name": name, "phase": value}
            yield Sample(metric, labels, 1.0 if value == current else 0.0)


def _profiling_phase_samples(
    objects: list[tuple[tuple[str, str], _ObjectState]],
) -> Iterator[Sample]:
    metric = STATUS_PROFILING_PHASE[0]
    for (namespace, name), state in objects:
        current = state.profiling_phase
        for value in PROFILING_PHASES:
            labels = {"namespace": namespace, "name": name, "profiling_phase": value}
            yield Sample(metric, labels, 1.0 if value == current else 0.0)


def _condition_samples(
    objects: list[tuple[tuple[str, str], _ObjectState]],
) -> Iterator[Sample]:
    metric = STATUS_CONDITION[0]
    for (namespace, name), state in objects:
        for ctype, status in state.condition_statuses.items():
            for value in CONDITION_STATUSES:
                labels = {"namespace": namespace, "name": name, "type": ctype, "status": value}
                yield Sample(metric, labels, 1.0 if value == status else 0.0)


def _condition_reason_samples(
    objects: list[tuple[tuple[str, str], _ObjectState]],
) -> Iterator[Sample]:
    metric = STATUS_CONDITION_REASON[0]
    for (namespace, name), state in objects:
        for ctype, reason in state.condition_reasons.items():
            labels = {"namespace": namespace, "name": name, "type": ctype, "reason": reason}
            yield Sample(metric, labels, 1.0)


def _info_samples(objects: list[tuple[tuple[str, str], _ObjectState]]) -> Iterator[Sample]:
    metric = STATUS_INFO[0]
    for (namespace, name), state in objects:
        labels = {
            "namespace": namespace,
            "name": name,
            "phase": state.phase,
            "profiling_phase": state.profiling_phase,
            "reason": _display_reason(state),
        }
        yield Sample(metric, labels, 1.0)


def _start_time_samples(
    objects: list[tuple[tuple[str, str], _ObjectState]],
) -> Iterator[Sample]:
    metric = PHASE_START_TIME[0]
    for (namespace, name), state in objects:
        labels = {"namespace": namespace, "name": name, "phase": state.phase}
        yield Sample(metric, labels, float(state.entered_at))


_FAMILIES: tuple[
    tuple[
        tuple[str, str],
        Callable[[list[tuple[tuple[str, str], _ObjectState]]], Iterator[Sample]],
    ],
    ...,
] = (
    (STATUS_PHASE, _phase_samples),
    (STATUS_PROFILING_PHASE, _profiling_phase_samples),
    (STATUS_CONDITION, _condition_samples),
    (STATUS_CONDITION_REASON, _condition_reason_samples),
    (STATUS_INFO, _info_samples),
    (PHASE_START_TIME, _start_time_samples),
)


class _ObjectCollector(Collector):
    """Yields the per-DGDR families from ``_objects`` on each scrape (kube-state-metrics style):
    the series of a forgotten object are simply no longer generated."""

    def describe(self) -> Iterable[Metric]:
        return [_LazyGaugeFamily(name, doc, ()) for (name, doc), _ in _FAMILIES]

    def collect(self) -> Iterable[Metric]:
        objects = _snapshot()
        for (name, doc), samples in _FAMILIES:
            yield _LazyGaugeFamily(name, doc, samples(objects))


REGISTRY.register(_ObjectCollector())


__all__ = [
    "FAILURES",
    "PHASES",
    "PROFILING_PHASES",
    "clear",
    "forget",
    "observe_conditions",
    "observe_phase",
    "observe_profile",
    "set_pool",
    "tracked",
]
