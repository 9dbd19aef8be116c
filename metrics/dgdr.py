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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
# condition picks them (dgdr-spec.md section 3).
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

STATUS_PHASE = Gauge(
    "dgdr_status_phase",
    "The DGDR's current phase: 1 for the phase it is in, 0 for the others.",
    [*OBJECT_LABELS, "phase"],
    registry=REGISTRY,
)
STATUS_PROFILING_PHASE = Gauge(
    "dgdr_status_profiling_phase",
    "The DGDR's profiling sub-phase: 1 for the current one, all 0 when not profiling.",
    [*OBJECT_LABELS, "profiling_phase"],
    registry=REGISTRY,
)
STATUS_CONDITION = Gauge(
    "dgdr_status_condition",
    "The DGDR's conditions: 1 for the condition's current status, 0 for the other two.",
    [*OBJECT_LABELS, "type", "status"],
    registry=REGISTRY,
)
STATUS_CONDITION_REASON = Gauge(
    "dgdr_status_condition_reason",
    "The current reason of each DGDR condition (always 1; one series per condition type).",
    [*OBJECT_LABELS, "type", "reason"],
    registry=REGISTRY,
)
STATUS_INFO = Gauge(
    "dgdr_status_info",
    "One series per DGDR (always 1) carrying phase, sub-phase and reason for tables.",
    [*OBJECT_LABELS, "phase", "profiling_phase", "reason"],
    registry=REGISTRY,
)
PHASE_START_TIME = Gauge(
    "dgdr_phase_start_time_seconds",
    "Unix time the DGDR entered its current phase (as first seen by this controller).",
    [*OBJECT_LABELS, "phase"],
    registry=REGISTRY,
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
# The transitions of the phase table (dgdr-spec.md section 1.2).
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


@dataclass
class _ObjectState:
    """What this process last exported for one DGDR, so that stale series can be removed."""

    phase: str
    profiling_phase: str
    entered_at: float
    # True when the start of the current phase was seen (or given), so its duration is real.
    entry_known: bool
    failure_pending: bool = False
    condition_statuses: dict[str, str] = field(default_factory=dict)
    condition_reasons: dict[str, str] = field(default_factory=dict)
    info_labels: tuple[str, str, str] | None = None


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
    return value


def _normalise_profiling_phase(profiling_phase: str | None) -> str:
    value = profiling_phase or ""
    if value and value not in PROFILING_PHASES:
        raise ValueError(
            f"profiling_phase must be empty or one of {', '.join(PROFILING_PHASES)}, "
            f"got {profiling_phase!r}"
        )
    return value


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
    key = (_require_name(namespace, "namespace"), _require_name(name, "name"))
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
            PHASE_START_TIME.remove(*key, state.phase)
            state.failure_pending = new_phase == "Failed"
            state.phase = new_phase
            state.entered_at = since if since is not None else now
            state.entry_known = True
        elif since is not None and not state.entry_known:
            state.entered_at = since
            state.entry_known = True
        state.profiling_phase = new_sub
        for value in PHASES:
            STATUS_PHASE.labels(*key, value).set(1.0 if value == new_phase else 0.0)
        for value in PROFILING_PHASES:
            STATUS_PROFILING_PHASE.labels(*key, value).set(1.0 if value == new_sub else 0.0)
        PHASE_START_TIME.labels(*key, new_phase).set(state.entered_at)
        _maybe_count_failure(state)
        _export_info(key, state)


def _condition_status(value: object) -> str:
    text = str(value).lower() if value is not None else "unknown"
    return text if text in CONDITION_STATUSES else "unknown"


def observe_conditions(namespace: str, name: str, conditions: Sequence[Mapping[str, Any]]) -> None:
    """Export the DGDR's conditions (status and reason per type); drop types that disappeared."""
    key = (_require_name(namespace, "namespace"), _require_name(name, "name"))
    statuses: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for index, condition in enumerate(conditions):
        if not isinstance(condition, Mapping):
            raise ValueError(f"conditions[{index}] must be a mapping, got {condition!r}")
        ctype = condition.get("type")
        if not isinstance(ctype, str) or not ctype:
            raise ValueError(f"conditions[{index}].type must be a non-empty string")
        statuses[ctype] = _condition_status(condition.get("status"))
        reasons[ctype] = str(condition.get("reason") or "")
    with _lock:
        state = _objects.get(key)
        if state is None:
            # Conditions before the first phase report: the object is Pending by definition.
            state = _ObjectState(
                phase="Pending", profiling_phase="", entered_at=_clock(), entry_known=False
            )
            _objects[key] = state
            for value in PHASES:
                STATUS_PHASE.labels(*key, value).set(1.0 if value == "Pending" else 0.0)
            for value in PROFILING_PHASES:
                STATUS_PROFILING_PHASE.labels(*key, value).set(0.0)
            PHASE_START_TIME.labels(*key, "Pending").set(state.entered_at)
        for ctype in state.condition_statuses.keys() - statuses.keys():
            for value in CONDITION_STATUSES:
                STATUS_CONDITION.remove(*key, ctype, value)
        for ctype, reason in state.condition_reasons.items():
            if reasons.get(ctype) != reason:
                STATUS_CONDITION_REASON.remove(*key, ctype, reason)
        for ctype, status in statuses.items():
            for value in CONDITION_STATUSES:
                STATUS_CONDITION.labels(*key, ctype, value).set(1.0 if value == status else 0.0)
            STATUS_CONDITION_REASON.labels(*key, ctype, reasons[ctype]).set(1.0)
        state.condition_statuses = statuses
        state.condition_reasons = reasons
        _maybe_count_failure(state)
        _export_info(key, state)


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


def _export_info(key: tuple[str, str], state: _ObjectState) -> None:
    labels = (state.phase, state.profiling_phase, _display_reason(state))
    if state.info_labels == labels:
        return
    if state.info_labels is not None:
        STATUS_INFO.remove(*key, *state.info_labels)
    STATUS_INFO.labels(*key, *labels).set(1.0)
    state.info_labels = labels


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
    key = (namespace, name)
    with _lock:
        state = _objects.pop(key, None)
        if state is not None:
            _remove_object_series(key)


def clear() -> None:
    """Remove every per-object series: called when this replica stops being the leader."""
    with _lock:
        for key in _objects:
            _remove_object_series(key)
        _objects.clear()


def tracked() -> list[tuple[str, str]]:
    """The (namespace, name) pairs that have series now, for resyncs against the informer store."""
    with _lock:
        return sorted(_objects)


_OBJECT_GAUGES: tuple[Gauge, ...] = (
    STATUS_PHASE,
    STATUS_PROFILING_PHASE,
    STATUS_CONDITION,
    STATUS_CONDITION_REASON,
    STATUS_INFO,
    PHASE_START_TIME,
)


def _remove_object_series(key: tuple[str, str]) -> None:
    labels = dict(zip(OBJECT_LABELS, key, strict=True))
    for gauge in _OBJECT_GAUGES:
        gauge.remove_by_labels(labels)


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
