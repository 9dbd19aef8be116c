"""A DGDR waiting for what may still appear fails after the controller's ``--wait-deadline``,
and the controller's console log tells that story: the wait, each reconcile's outcome (DEBUG)
and the failure (INFO), each line naming the DGDR.

The module runs a controller of its own (short deadline, console format, DEBUG), replacing the
package's module-scoped one, so no other controller reconciles these DGDRs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    ControllerProcess,
    apply_dgdr,
    condition,
    events_for,
    phase_of,
    running,
    wait_phase,
)
from tests.eventually import consistently, eventually

pytestmark = pytest.mark.cluster

DEADLINE = 4.0


@pytest.fixture(scope="module")
def controller(
    control_plane: LocalControlPlane, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    with running(
        control_plane,
        tmp_path_factory.mktemp("controller"),
        "--lease-name",
        "dgdr-waiting",
        "--wait-deadline",
        str(DEADLINE),
        "--log-format",
        "console",
        "--log-level",
        "DEBUG",
    ) as c:
        yield c


def test_a_wait_past_the_deadline_fails_naming_what_was_missing(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {**SMALL, "autoApply": False, "modelCache": {"pvcName": "never", "pvcModelPath": "x"}}
    apply_dgdr(kubectl, namespace, "stuck", **spec)
    failed = wait_phase(kubectl, "stuck", namespace, "Failed", timeout=DEADLINE + 30)
    profiling = condition(failed, "Profiling")
    assert (profiling["status"], profiling["reason"]) == ("False", "WaitingForModelCache")
    assert "spec.modelCache.pvcName" in profiling["message"]
    assert "gave up after waiting" in profiling["message"]
    succeeded = condition(failed, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "WaitingForModelCache")
    assert "--wait-deadline" in succeeded["message"]
    warnings = [r for t, r, _ in events_for(kubectl, "stuck", namespace) if t == "Warning"]
    # The wait is announced once, the failure once more.
    assert warnings.count("WaitingForModelCache") == 2, warnings

    key = f"{namespace}/stuck"
    log = eventually(
        lambda: text if f"dgdr {key} failed" in (text := controller.log_path.read_text()) else None,
        message="the failure in the console log",
    )
    lines = [line for line in log.splitlines() if f"[{key} " in line]
    # Console format: time, level, logger, [key reconcile-id], message.
    pattern = (
        rf"^\d\d:\d\d:\d\d\.\d{{3}} (DEBUG|INFO|WARNING) +\S+ \[{re.escape(key)} [0-9a-f]{{8}}\] "
    )
    assert lines and all(re.match(pattern, line) for line in lines), lines[:5]
    outcomes = [line for line in lines if " DEBUG " in line and f"reconciled {key}: " in line]
    assert any("requeue_after" in line for line in outcomes), outcomes
    assert any(": success in " in line for line in outcomes), outcomes
    failure = next(line for line in lines if f"dgdr {key} failed (Pending -> Failed)" in line)
    assert " INFO " in failure and "WaitingForModelCache" in failure


def test_without_a_deadline_the_dgdr_keeps_waiting(
    control_plane: LocalControlPlane,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    kubectl: Kubectl,
    namespace: str,
    controller: ControllerProcess,
) -> None:
    """--wait-deadline 0 waits for ever: the DGDR stays Pending past the other controller's
    deadline. (This module's controller is stopped first: one controller per DGDR.)"""
    controller.stop()
    with running(
        control_plane,
        tmp_path_factory.mktemp("patient"),
        "--lease-name",
        "dgdr-waiting",
        "--wait-deadline",
        "0",
    ):
        spec = {**SMALL, "autoApply": False, "modelCache": {"pvcName": "nope", "pvcModelPath": "x"}}
        apply_dgdr(kubectl, namespace, "patient", **spec)
        eventually(
            lambda: (
                "WaitingForModelCache"
                in [r for _, r, _ in events_for(kubectl, "patient", namespace)]
            ),
            message="waiting for the model cache",
        )
        consistently(
            lambda: phase_of(kubectl, "patient", namespace) == "Pending",
            duration=DEADLINE * 2,
            message="still Pending past the other controller's deadline",
        )
