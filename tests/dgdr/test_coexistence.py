"""Never two controllers on one DGDR: while the Dynamo operator's leader-election Lease is held,
this controller does not act, says why, and stays ready; once the Lease is released it goes on.
``--allow-dynamo-operator`` acts regardless (an operator whose DGDR controller is turned off).

The "Dynamo operator" is its Lease, written here as upstream's operator writes it (holder,
duration, renew time); each controller of this module is the only one on its DGDRs.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl
from tests.dgdr.conftest import SMALL, ControllerProcess, apply_dgdr, running, wait_phase
from tests.eventually import consistently, eventually

pytestmark = pytest.mark.cluster

LEASE_NAMESPACE = "kube-system"


def hold_lease(kubectl: Kubectl, name: str, holder: str | None) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(lease))


@pytest.fixture
def operator_lease(kubectl: Kubectl) -> Iterator[str]:
    name = f"dynamo-{uuid.uuid4().hex[:8]}"
    hold_lease(kubectl, name, "dynamo-operator-controller-manager-7d9f_1234")
    yield name
    kubectl("delete", "lease", name, "-n", LEASE_NAMESPACE, "--ignore-not-found", check=False)


def start(
    plane: LocalControlPlane, tmp: pytest.TempPathFactory, lease: str, *args: str
) -> contextlib.AbstractContextManager[ControllerProcess]:
    """A controller that minds the test's "Dynamo operator" Lease; ready when the block starts
    (ready even while it stands aside: it keeps serving what every replica serves)."""
    return running(
        plane,
        tmp.mktemp("coexist"),
        "--lease-name",
        f"dgdr-coexist-{uuid.uuid4().hex[:6]}",
        "--dynamo-operator-lease",
        f"{LEASE_NAMESPACE}/{lease}",
        *args,
    )


def test_waits_while_the_dynamo_operator_runs_then_acts(
    control_plane: LocalControlPlane,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    kubectl: Kubectl,
    namespace: str,
    operator_lease: str,
) -> None:
    with start(control_plane, tmp_path_factory, operator_lease) as c:
        apply_dgdr(kubectl, namespace, "held", **{**SMALL, "autoApply": False})
        said = eventually(
            lambda: "controllers not started: the Dynamo operator" in c.tail(200),
            message="the refusal in the log",
        )
        assert said
        assert f"Lease {LEASE_NAMESPACE}/{operator_lease}" in c.tail(200)
        assert "--allow-dynamo-operator" in c.tail(200)
        # Leading, but not acting: nothing written on the DGDR for a while.
        eventually(c.is_leader, message="leadership")

        def unwritten() -> bool:
            obj = json.loads(kubectl("get", "dgdr", "held", "-n", namespace, "-o", "json").stdout)
            assert not obj.get("status"), obj.get("status")
            return True

        consistently(unwritten, duration=3, interval=0.3, message="no status on the DGDR")
        hold_lease(kubectl, operator_lease, None)  # the operator stopped: Lease released
        wait_phase(kubectl, "held", namespace, "Ready", timeout=60)
        assert "controllers may start" in c.tail(400)


def test_allow_dynamo_operator_acts_regardless(
    control_plane: LocalControlPlane,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    kubectl: Kubectl,
    namespace: str,
    operator_lease: str,
) -> None:
    with start(control_plane, tmp_path_factory, operator_lease, "--allow-dynamo-operator") as c:
        apply_dgdr(kubectl, namespace, "allowed", **{**SMALL, "autoApply": False})
        wait_phase(kubectl, "allowed", namespace, "Ready", timeout=60)
        assert "controllers not started" not in c.tail(400)


def test_a_lease_counts_only_while_held_and_renewed() -> None:
    from controller.dgdr.coexistence import live_holder, parse_lease_ref

    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    spec = {"holderIdentity": "op", "leaseDurationSeconds": 15}
    assert live_holder({"spec": {**spec, "renewTime": "2026-01-01T12:00:20.000000Z"}}, now) == "op"
    assert live_holder({"spec": {**spec, "renewTime": "2026-01-01T12:00:10.000000Z"}}, now) is None
    released = {**spec, "holderIdentity": None, "renewTime": "2026-01-01T12:00:29Z"}
    assert live_holder({"spec": released}, now) is None
    assert live_holder({}, now) is None
    assert parse_lease_ref("kube-system/dynamo.nvidia.com") == ("kube-system", "dynamo.nvidia.com")
    for bad in ("dynamo.nvidia.com", "/x", "a/", "a/b/c"):
        with pytest.raises(ValueError, match="namespace/name"):
            parse_lease_ref(bad)
