"""Operability at the edges (issue 15): deletion that never waits for the controller.

Each test runs its own controller watching only its namespace, with a lease of its own, so it can
stop the controller without touching other modules.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    ControllerProcess,
    apply_dgdr,
    get_json,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.cluster

Start = Callable[..., ControllerProcess]


@pytest.fixture
def controllers(
    control_plane: LocalControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[Start]:
    started: list[ControllerProcess] = []

    def start(*extra: str) -> ControllerProcess:
        c = ControllerProcess(
            control_plane,
            tmp_path,
            "--namespace",
            namespace,
            "--lease-name",
            f"dgdr-{namespace}",
            *extra,
            name=f"c{len(started)}",
        )
        started.append(c)
        c.wait_ready()
        return c

    yield start
    for c in started:
        c.stop(signal.SIGKILL if c.proc.poll() is None else signal.SIGTERM)
    wait_for("pool workers gone", lambda: not any(c.pids() for c in started), timeout=15)


def test_no_finalizer_so_delete_completes_with_the_controller_stopped(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    c = controllers()
    apply_dgdr(kubectl, namespace, "nofin", **SMALL, autoApply=False)
    obj = wait_phase(kubectl, "nofin", namespace, "Ready")
    assert not obj["metadata"].get("finalizers")
    c.stop()
    kubectl("delete", "dgdr", "nofin", "--timeout=30s", namespace=namespace)
    assert kubectl("get", "dgdr", "nofin", namespace=namespace, check=False).returncode != 0


def test_finalizer_of_an_older_version_is_removed(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    body = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": "oldfin", "finalizers": ["nvidia.com/finalizer"]},
        "spec": {**SMALL, "autoApply": False},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body), namespace=namespace)
    controllers()
    wait_for(
        "finalizer removed",
        lambda: not get_json(kubectl, "dgdr", "oldfin", namespace)["metadata"].get("finalizers"),
        timeout=60,
    )
    wait_phase(kubectl, "oldfin", namespace, "Ready")
