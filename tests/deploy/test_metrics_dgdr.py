"""Per-DGDR metrics: the series exported for each phase, condition and removal."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from metrics import REGISTRY, dgdr

REPO = Path(__file__).resolve().parents[2]
_names = itertools.count()


@pytest.fixture
def obj() -> Iterator[tuple[str, str]]:
    """A DGDR name no other test uses, forgotten afterwards (the registry is process-wide)."""
    key = ("ns-metrics", f"dgdr-{next(_names)}")
    yield key
    dgdr.forget(*key)


def value(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def transitions(src: str, dst: str) -> float:
    return value("dgdr_phase_transitions_total", **{"from": src, "to": dst}) or 0.0


def failures(reason: str) -> float:
    return value("dgdr_failures_total", reason=reason) or 0.0


def object_samples(namespace: str, name: str) -> list[str]:
    text = generate_latest(REGISTRY).decode()
    needle = f'name="{name}"'
    return [
        line
        for line in text.splitlines()
        if needle in line and f'namespace="{namespace}"' in line and not line.startswith("#")
    ]


def test_phase_stateset_has_one_current_phase(obj: tuple[str, str]) -> None:
    ns, name = obj
    dgdr.observe_phase(ns, name, "Profiling", "SweepingPrefill")
    for phase in dgdr.PHASES:
        expected = 1.0 if phase == "Profiling" else 0.0
        assert value("dgdr_status_phase", namespace=ns, name=name, phase=phase) == expected
    for sub in dgdr.PROFILING_PHASES:
        expected = 1.0 if sub == "SweepingPrefill" else 0.0
        got = value("dgdr_status_profiling_phase", namespace=ns, name=name, profiling_phase=sub)
        assert got == expected


def test_empty_phase_means_pending(obj: tuple[str, str]) -> None:
    ns, name = obj
    dgdr.observe_phase(ns, name, "", None)
    assert value("dgdr_status_phase", namespace=ns, name=name, phase="Pending") == 1.0
    for sub in dgdr.PROFILING_PHASES:
        got = value("dgdr_status_profiling_phase", namespace=ns, name=name, profiling_phase=sub)
        assert got == 0.0


def test_transitions_counted_and_phase_time_observed(
    obj: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ns, name = obj
    clock = iter([1000.0, 1012.0, 1012.0, 1100.0])
    monkeypatch.setattr(dgdr, "_clock", lambda: next(clock))
    before = transitions("Pending", "Profiling")
    pending_sum = value("dgdr_phase_duration_seconds_sum", phase="Pending") or 0.0
    dgdr.observe_phase(ns, name, "Pending", None)
    assert value("dgdr_phase_start_time_seconds", namespace=ns, name=name, phase="Pending") == 1000
    dgdr.observe_phase(ns, name, "Profiling", "Initializing")
    dgdr.observe_phase(ns, name, "Profiling", "SelectingConfig")
    assert transitions("Pending", "Profiling") == before + 1
    assert value("dgdr_phase_duration_seconds_sum", phase="Pending") == pending_sum + 12.0
    start = value("dgdr_phase_start_time_seconds", namespace=ns, name=name, phase="Profiling")
    assert start == 1012.0
    # the old phase's start-time series is gone: only the current phase has one
    assert value("dgdr_phase_start_time_seconds", namespace=ns, name=name, phase="Pending") is None
    dgdr.observe_phase(ns, name, "Deploying", None)
    assert value("dgdr_phase_duration_seconds_sum", phase="Profiling") is not None


def test_first_seen_mid_life_counts_no_transition(obj: tuple[str, str]) -> None:
    """A new leader re-lists objects: seeing them must not look like fresh transitions."""
    ns, name = obj
    before_fail = failures("ValidationFailed")
    before = sum(transitions(src, "Failed") for src in dgdr.PHASES)
    dgdr.observe_phase(ns, name, "Failed", None)
    dgdr.observe_conditions(ns, name, [_cond("Validation", "False", "ValidationFailed")])
    assert sum(transitions(src, "Failed") for src in dgdr.PHASES) == before
    assert failures("ValidationFailed") == before_fail


def _cond(ctype: str, status: str, reason: str) -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": "m"}


def test_failure_counted_once_with_reason_either_order(obj: tuple[str, str]) -> None:
    ns, name = obj
    before = failures("SweepingPrefillFailed")
    dgdr.observe_phase(ns, name, "Pending", None)
    dgdr.observe_phase(ns, name, "Profiling", "SweepingPrefill")
    dgdr.observe_conditions(
        ns,
        name,
        [_cond("Succeeded", "False", "Profiling"), _cond("Profiling", "False", "SweepingPrefill")],
    )
    # phase written first: conditions still describe progress, nothing to count yet
    dgdr.observe_phase(ns, name, "Failed", "SweepingPrefill")
    assert failures("SweepingPrefillFailed") == before
    failed = [
        _cond("Succeeded", "False", "SweepingPrefillFailed"),
        _cond("Profiling", "False", "SweepingPrefillFailed"),
    ]
    dgdr.observe_conditions(ns, name, failed)
    dgdr.observe_conditions(ns, name, failed)
    dgdr.observe_phase(ns, name, "Failed", "SweepingPrefill")
    assert failures("SweepingPrefillFailed") == before + 1
    info = value(
        "dgdr_status_info",
        namespace=ns,
        name=name,
        phase="Failed",
        profiling_phase="SweepingPrefill",
        reason="SweepingPrefillFailed",
    )
    assert info == 1.0


def test_failure_counted_when_conditions_come_first(obj: tuple[str, str]) -> None:
    ns, name = obj
    before = failures("ValidationFailed")
    dgdr.observe_phase(ns, name, "Pending", None)
    dgdr.observe_conditions(
        ns,
        name,
        [_cond("Validation", "False", "ValidationFailed"), _cond("Succeeded", "False", "Failed")],
    )
    dgdr.observe_phase(ns, name, "Failed", None)
    assert failures("ValidationFailed") == before + 1


def test_conditions_stateset_and_reason_replaced(obj: tuple[str, str]) -> None:
    ns, name = obj
    dgdr.observe_phase(ns, name, "Deploying", None)
    dgdr.observe_conditions(
        ns,
        name,
        [_cond("DeploymentReady", "False", "DeploymentInProgress"), _cond("Extra", "x", "")],
    )
    labels = {"namespace": ns, "name": name, "type": "DeploymentReady"}
    assert value("dgdr_status_condition", **labels, status="false") == 1.0
    assert value("dgdr_status_condition", **labels, status="true") == 0.0
    assert value("dgdr_status_condition", **labels, status="unknown") == 0.0
    assert (
        value("dgdr_status_condition", namespace=ns, name=name, type="Extra", status="unknown") == 1
    )
    dgdr.observe_conditions(ns, name, [_cond("DeploymentReady", "True", "DeploymentReady")])
    assert value("dgdr_status_condition", **labels, status="true") == 1.0
    assert value("dgdr_status_condition_reason", **labels, reason="DeploymentReady") == 1.0
    assert value("dgdr_status_condition_reason", **labels, reason="DeploymentInProgress") is None
    gone = {"namespace": ns, "name": name, "type": "Extra", "status": "unknown"}
    assert value("dgdr_status_condition", **gone) is None


def test_forget_removes_every_series(obj: tuple[str, str]) -> None:
    ns, name = obj
    dgdr.observe_phase(ns, name, "Profiling", "Initializing")
    dgdr.observe_conditions(ns, name, [_cond("Profiling", "False", "Initializing")])
    assert len(object_samples(ns, name)) > 10
    dgdr.forget(ns, name)
    assert object_samples(ns, name) == []
    dgdr.forget(ns, name)  # idempotent
    assert (ns, name) not in dgdr.tracked()


def test_clear_removes_all_objects() -> None:
    keys = [("ns-clear", f"c{i}") for i in range(3)]
    for key in keys:
        dgdr.observe_phase(*key, "Deployed", None)
    dgdr.clear()
    for key in keys:
        assert object_samples(*key) == []
    assert dgdr.tracked() == []


def test_profile_histogram_and_pool() -> None:
    labels = {"backend": "vllm", "search_strategy": "rapid", "outcome": "success"}
    before = value("dgdr_profiling_duration_seconds_count", **labels) or 0.0
    dgdr.observe_profile("vllm", "rapid", 1.5, "success")
    assert value("dgdr_profiling_duration_seconds_count", **labels) == before + 1
    dgdr.set_pool(busy=2, queued=5)
    assert value("dgdr_profiling_pool_busy") == 2.0
    assert value("dgdr_profiling_pool_queued") == 5.0
    dgdr.set_pool(0, 0)


def test_known_failure_reasons_exported_before_any_failure() -> None:
    text = generate_latest(REGISTRY).decode()
    for reason in dgdr.KNOWN_FAILURE_REASONS:
        assert f'dgdr_failures_total{{reason="{reason}"}}' in text


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: dgdr.observe_phase("ns", "n", "Running", None), "phase"),
        (lambda: dgdr.observe_phase("ns", "n", "Profiling", "Sweeping"), "profiling_phase"),
        (lambda: dgdr.observe_phase("", "n", "Pending", None), "namespace"),
        (lambda: dgdr.observe_phase("ns", "n", "Pending", None, since=-1.0), "since"),
        (lambda: dgdr.observe_conditions("ns", "n", [{"status": "True"}]), "conditions[0].type"),
        (lambda: dgdr.observe_profile("vllm", "rapid", float("nan"), "ok"), "seconds"),
        (lambda: dgdr.observe_profile("vllm", "", 1.0, "ok"), "strategy"),
        (lambda: dgdr.set_pool(-1, 0), "busy"),
        (lambda: dgdr.set_pool(0, True), "queued"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_names_the_field(call: object, field: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(field)):
        call()  # type: ignore[operator]
    assert ("ns", "n") not in dgdr.tracked()


def test_known_label_values_exported_before_any_event() -> None:
    """rate() and histogram_quantile() see the first event only if the series existed before:
    a fresh process (this one's counters have moved) exports each known series at exactly 0."""
    fresh = subprocess.run(
        [sys.executable, "-c", _EXPOSITION],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(fresh)
        for s in family.samples
    }

    def at_start(metric: str, **labels: str) -> float | None:
        return samples.get((metric, tuple(sorted(labels.items()))))

    for phase in dgdr.PHASES:
        assert at_start("dgdr_phase_duration_seconds_count", phase=phase) == 0.0, phase
    for src, dst in dgdr.KNOWN_TRANSITIONS:
        got = at_start("dgdr_phase_transitions_total", **{"from": src, "to": dst})
        assert got == 0.0, (src, dst)
    for backend in dgdr.BACKENDS:
        labels = {"backend": backend, "search_strategy": "rapid", "outcome": "succeeded"}
        assert at_start("dgdr_profiling_duration_seconds_count", **labels) == 0.0, backend
    # and this process exports them too, whatever they count by now
    for src, dst in dgdr.KNOWN_TRANSITIONS:
        assert value("dgdr_phase_transitions_total", **{"from": src, "to": dst}) is not None


_EXPOSITION = (
    "from prometheus_client import generate_latest\n"
    "from metrics import REGISTRY, dgdr\n"
    "print(generate_latest(REGISTRY).decode())\n"
)
