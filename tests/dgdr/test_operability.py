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

from controller.dgdr.reconciler import ACCEPTED_SPEC_ANNOTATION as ACCEPTED
from controller.dgdr.reconciler import accepted_spec, spec_changes
from controller.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    ControllerProcess,
    apply_dgdr,
    dgdr_manifest,
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
        "metadata": {
            "name": "oldfin",
            "finalizers": ["nvidia.com/finalizer"],
            "annotations": {ACCEPTED: json.dumps({**SMALL, "autoApply": False})},
        },
        "spec": {**SMALL, "autoApply": False},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body), namespace=namespace)
    controllers()

    def migrated() -> bool:
        meta = get_json(kubectl, "dgdr", "oldfin", namespace)["metadata"]
        return not meta.get("finalizers") and ACCEPTED not in (meta.get("annotations") or {})

    wait_for("finalizer and accepted-spec annotation removed", migrated, timeout=60)
    obj = wait_phase(kubectl, "oldfin", namespace, "Ready")
    assert obj["status"]["acceptedSpec"]["hash"].startswith("sha256:")


def test_accepted_spec_is_in_status_with_no_size_cliff(
    controllers: Start, kubectl: Kubectl, namespace: str
) -> None:
    """The accepted spec was a copy of the whole spec in a (user-writable) annotation: a 600 KB
    spec failed with "metadata.annotations: Too long". Now a fixed-size record in status."""
    controllers()
    big = {"template": {"metadata": {"annotations": {"note": "x" * 600_000}}}}
    # create, not apply: apply would copy the spec into last-applied-configuration
    manifest = dgdr_manifest("big", **SMALL, autoApply=False, overrides={"profilingJob": big})
    kubectl("create", "-f", "-", input=manifest, namespace=namespace)
    obj = wait_phase(kubectl, "big", namespace, "Ready")
    assert ACCEPTED not in (obj["metadata"].get("annotations") or {})
    accepted = obj["status"]["acceptedSpec"]
    assert accepted["generation"] == obj["metadata"]["generation"]
    assert accepted["autoApply"] is False
    assert len(json.dumps(accepted)) < 200
    # The C rule still reads it: autoApply flipped in Ready is accepted and deploys.
    kubectl(
        "patch",
        "dgdr",
        "big",
        "--type=merge",
        "-p",
        '{"spec":{"autoApply":true}}',
        namespace=namespace,
    )
    wait_phase(kubectl, "big", namespace, "Deploying")


def test_spec_changes_are_told_from_the_hash() -> None:
    spec = {**SMALL, "autoApply": False}
    record = accepted_spec(spec, 3)
    assert record["generation"] == 3 and record["autoApply"] is False
    assert spec_changes(record, spec) == set()
    assert spec_changes(record, {**spec, "autoApply": True}) == {"autoApply"}
    assert spec_changes(record, {**spec, "runtimeVersionOverride": "1.2.0"}) == {
        "runtimeVersionOverride"
    }
    assert spec_changes(record, {**spec, "workload": {"isl": 1, "osl": 1}}) == {"spec"}
