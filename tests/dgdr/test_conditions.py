"""The status rules that every phase handler relies on."""

from __future__ import annotations

from controller.dgdr.conditions import get_condition, same_status, set_condition, set_phase


def test_transition_time_moves_only_when_status_flips() -> None:
    status: dict = {}
    set_condition(status, "Profiling", "False", "Initializing", "started", 1)
    first = get_condition(status, "Profiling")
    assert first is not None
    first_time = first["lastTransitionTime"]
    status["conditions"][0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    set_condition(status, "Profiling", "False", "SweepingPrefill", "sweeping", 2)
    again = get_condition(status, "Profiling")
    assert again is not None
    assert again["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert again["reason"] == "SweepingPrefill" and again["observedGeneration"] == 2
    set_condition(status, "Profiling", "True", "ProfilingCompleted", "done", 2)
    flipped = get_condition(status, "Profiling")
    assert flipped is not None and flipped["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert first_time


def test_succeeded_follows_phase_and_names_first_failure() -> None:
    status: dict = {}
    set_condition(status, "Validation", "True", "ValidationPassed", "ok", 3)
    set_condition(status, "Profiling", "False", "SweepingPrefillFailed", "model does not fit", 3)
    set_phase(status, "Failed", 3)
    succeeded = get_condition(status, "Succeeded")
    assert succeeded is not None
    assert succeeded["status"] == "False"
    assert succeeded["reason"] == "SweepingPrefillFailed"
    assert succeeded["message"] == "Profiling failed: model does not fit"
    assert status["observedGeneration"] == 3

    set_phase(status, "Ready", 3)
    ready = get_condition(status, "Succeeded")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "SpecGenerated")
    set_phase(status, "Deployed", 3)
    deployed = get_condition(status, "Succeeded")
    assert deployed is not None and (deployed["status"], deployed["reason"]) == ("True", "Deployed")


def test_profiling_phase_cleared_outside_profiling() -> None:
    status = {"profilingPhase": "GeneratingDGD"}
    set_phase(status, "Profiling", 1)
    assert status["profilingPhase"] == "GeneratingDGD"
    set_phase(status, "Ready", 1)
    assert "profilingPhase" not in status


def test_same_status_ignores_only_timestamps() -> None:
    a: dict = {}
    set_phase(a, "Pending", 1)
    b = {
        **a,
        "conditions": [
            {**c, "lastTransitionTime": "2000-01-01T00:00:00Z"} for c in a["conditions"]
        ],
    }
    assert same_status(a, b)
    set_phase(b, "Profiling", 1)
    assert not same_status(a, b)
