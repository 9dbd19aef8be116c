"""How DGDR status conditions are set, and how the aggregate ``Succeeded`` is derived.

One place decides this (cluster-api's condition helpers are the model): a handler says which
condition it sets and the phase it moves to; ``set_phase`` recomputes ``Succeeded`` from them,
stamps ``observedGeneration`` on every condition it touches, and keeps ``lastTransitionTime``
unless the condition's status really changed, so ``kubectl wait`` and alerts see true transitions.

One extension of upstream's rules: once a spec is generated whose prediction misses the SLA
(``status.profilingResults.prediction.slaMet`` false), ``Succeeded`` says so while the DGDR is
Ready, Deploying or Deployed: its message ends with the miss, and where it is True (Ready,
Deployed) its reason is ``SLANotMet``, so ``kubectl get dgdr`` shows it in Reason and Message.
Likewise a plan that is not performance-modelled (upstream's fallback for a model the estimator
cannot describe; its prediction has no ``ttftMs``) gives reason ``NotPerformanceModelled``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.dgdr.api import ConditionType, Reason
from controller.dgdr.prediction import describe_misses, modelled, of_status

JSON = dict[str, Any]

# Condition types whose first False explains a Failed DGDR, with the prefix Succeeded shows.
_FAILURE_ORDER: tuple[tuple[str, str], ...] = (
    ("Validation", "Validation failed: "),
    ("Profiling", "Profiling failed: "),
    ("SpecGenerated", "Spec generation failed: "),
    ("DeploymentReady", "Deployment failed: "),
)

_SUCCEEDED_BY_PHASE: dict[str, tuple[str, str, str]] = {
    "Pending": ("False", "Pending", "DGDR is pending"),
    "Profiling": ("False", "Profiling", "Profiling is in progress"),
    "Ready": ("True", "SpecGenerated", "Profiling complete, spec available"),
    "Deploying": ("False", "Deploying", "Deployment is in progress"),
    "Deployed": ("True", "Deployed", "Deployment is healthy"),
    "Failed": ("False", "Failed", "DGDR has failed"),
}


# What Succeeded adds for upstream's fallback (a model the performance model cannot describe).
NOT_MODELLED_NOTE = "not performance-modelled: sized by memory, the SLA not checked"

# Phases after a spec was generated, in which Succeeded carries an SLA miss.
_SLA_PHASES = frozenset({"Ready", "Deploying", "Deployed"})


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: JSON, type_: str) -> JSON | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def set_condition(
    status: JSON, type_: str, cond_status: str, reason: str, message: str, generation: int
) -> None:
    """Upsert one condition in place; the transition time moves only when the status flips."""
    conds: list[JSON] = list(status.get("conditions") or [])
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            ltt = c.get("lastTransitionTime") if c.get("status") == cond_status else None
            conds[i] = _condition(type_, cond_status, reason, message, generation, ltt)
            break
    else:
        conds.append(_condition(type_, cond_status, reason, message, generation, None))
    status["conditions"] = conds


def mark_true(
    status: JSON, type_: ConditionType, reason: Reason, message: str, generation: int
) -> None:
    """Condition ``type_`` is True for ``reason``: the typed way the reconciler writes one."""
    set_condition(status, type_.value, "True", reason.value, message, generation)


def mark_false(
    status: JSON, type_: ConditionType, reason: Reason, message: str, generation: int
) -> None:
    """Condition ``type_`` is False for ``reason``."""
    set_condition(status, type_.value, "False", reason.value, message, generation)


def remove_condition(status: JSON, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


def seconds_since(timestamp: object) -> float:
    """Seconds from an RFC 3339 time (a condition's lastTransitionTime) to now; 0 when absent
    or malformed (a user-edited status must not fail a DGDR early)."""
    if not isinstance(timestamp, str):
        return 0.0
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max((datetime.now(UTC) - then).total_seconds(), 0.0)


def _condition(
    type_: str,
    cond_status: str,
    reason: str,
    message: str,
    generation: int,
    last_transition: str | None,
) -> JSON:
    return {
        "type": type_,
        "status": cond_status,
        "reason": reason,
        # The API server requires a message field; an empty one is allowed but says nothing.
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": last_transition or now_rfc3339(),
    }


def set_phase(status: JSON, phase: str, generation: int) -> None:
    """Move to ``phase`` and recompute Succeeded from it and the other conditions."""
    status["phase"] = phase
    status["observedGeneration"] = generation
    if phase != "Profiling":
        status.pop("profilingPhase", None)
    cond_status, reason, message = _SUCCEEDED_BY_PHASE.get(
        phase, ("False", "Failed", "Invalid state")
    )
    if phase == "Failed":
        for type_, prefix in _FAILURE_ORDER:
            c = get_condition(status, type_)
            if c is not None and c.get("status") == "False":
                reason, message = str(c["reason"]), prefix + str(c.get("message", ""))
                break
    elif phase in _SLA_PHASES and (missed := describe_misses(of_status(status))) is not None:
        reason = Reason.SLA_NOT_MET.value if cond_status == "True" else reason
        message = f"{message}; {missed}"
    elif phase in _SLA_PHASES and not modelled(of_status(status)):
        reason = Reason.NOT_PERFORMANCE_MODELLED.value if cond_status == "True" else reason
        message = f"{message}; {NOT_MODELLED_NOTE}"
    set_condition(status, "Succeeded", cond_status, reason, message, generation)


def same_status(a: JSON, b: JSON) -> bool:
    """Equal but for condition timestamps: decides whether a status write is needed at all."""

    def strip(s: JSON) -> JSON:
        out = dict(s)
        out["conditions"] = sorted(
            (
                {k: v for k, v in c.items() if k != "lastTransitionTime"}
                for c in s.get("conditions") or []
            ),
            key=lambda c: str(c.get("type")),
        )
        return out

    return strip(a) == strip(b)
