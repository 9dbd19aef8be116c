"""Upstream's deprecated v1alpha1 DGDRs, served through the controller's conversion webhook, and
the migration of a cluster that ran upstream's DGDR CRD with objects stored in v1alpha1.

Each test module here runs control planes of its own: the session one's CRD points at no
webhook, and these tests point the CRD at a controller on loopback (``--webhook-url``). The
"Dynamo operator" is the test: it writes the DGD's ``status.state``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.localplane import LocalControlPlane, free_port
from tests.conftest import Kubectl, make_kubectl
from tests.dgdr.conftest import ControllerProcess, running
from tests.eventually import consistently, eventually

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "deploy/crds").glob("*.yaml"))
DGDR_CRD = ROOT / "deploy/crds/nvidia.com_dynamographdeploymentrequests.yaml"
# Reference data beside the repository (shared/), not part of it.
UPSTREAM_DGDR_CRD = (
    ROOT.parent / "shared/reference/upstream-crds/nvidia.com_dynamographdeploymentrequests.yaml"
)
NS = "team-a"
ALPHA = "dynamographdeploymentrequests.v1alpha1.nvidia.com"
BETA = "dynamographdeploymentrequests.v1beta1.nvidia.com"


def alpha_manifest(name: str, *, auto_apply: bool = True) -> dict[str, Any]:
    """An upstream-style v1alpha1 DGDR, as in upstream's examples."""
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": "Qwen/Qwen3-0.6B",
            "backend": "vllm",
            "autoApply": auto_apply,
            "profilingConfig": {
                "profilerImage": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.1.1",
                "config": {
                    "sla": {"isl": 2000, "osl": 500, "ttft": 2000.0, "itl": 50.0},
                    "hardware": {"numGpusPerNode": 8, "gpuModel": "H100-SXM5-80GB"},
                },
                "nodeSelector": {"pool": "profiling"},
            },
            "deploymentOverrides": {"labels": {"team": "a"}},
        },
    }


def add_gpu_node(kubectl: Kubectl) -> None:
    """v1alpha1 has no hardware fields (upstream's mapping keeps profilingConfig.config's
    hardware in an annotation): the GPUs are discovered from GPU-feature-discovery labels."""
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": "81559",
    }
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-0", "labels": labels}}
    kubectl("apply", "-f", "-", input=json.dumps(node))


@contextlib.contextmanager
def webhooked(
    plane: LocalControlPlane, log_dir: Path, *args: str, name: str = "controller"
) -> Iterator[ControllerProcess]:
    """A controller serving the conversion webhook on loopback, the CRD pointed at it; ready
    (certificate made, caBundle injected) when the block starts."""
    port = free_port()
    with running(
        plane,
        log_dir,
        "--lease-name",
        "dgdr-v1alpha1",
        "--webhook-port",
        str(port),
        "--webhook-url",
        f"https://127.0.0.1:{port}/convert",
        "--webhook-namespace",
        "kube-system",
        *args,
        name=name,
        ready_timeout=90,
    ) as c:
        c.webhook_port = port
        yield c


def established(kubectl: Kubectl, crd: str) -> None:
    def check() -> bool:
        res = kubectl("get", "crd", crd, "-o", "json", check=False)
        conditions = json.loads(res.stdout).get("status", {}).get("conditions") or []
        return res.returncode == 0 and any(
            c["type"] == "Established" and c["status"] == "True" for c in conditions
        )

    eventually(check, timeout=60, message=f"CRD {crd} established")


def get(kubectl: Kubectl, resource: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", resource, name, "-n", NS, "-o", "json").stdout)  # type: ignore[no-any-return]


def wait_ready(kubectl: Kubectl, name: str) -> dict[str, Any]:
    """The DGDR, read as v1beta1, once the controller took it to Ready."""
    return eventually(  # type: ignore[no-any-return]
        lambda: (o := get(kubectl, BETA, name)).get("status", {}).get("phase") == "Ready" and o,
        timeout=90,
        message=f"{name} Ready",
    )


def apply(kubectl: Kubectl, obj: dict[str, Any]) -> None:
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj))


def play_dynamo_operator(kubectl: Kubectl, dgd: str) -> None:
    """The DGD the controller created becomes healthy, as the Dynamo operator would report."""
    eventually(
        lambda: kubectl("get", "dgd", dgd, "-n", NS, check=False).returncode == 0,
        timeout=60,
        message=f"DGD {dgd} created",
    )
    kubectl(
        "patch",
        "dgd",
        dgd,
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"state": "successful"}}),
    )


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalControlPlane, Kubectl]]:
    p = LocalControlPlane.start()
    try:
        kubectl = make_kubectl(p)
        for crd in CRDS:
            kubectl("apply", "--server-side", "-f", str(crd))
        established(kubectl, "dynamographdeploymentrequests.nvidia.com")
        established(kubectl, "dynamographdeployments.nvidia.com")
        kubectl("create", "namespace", NS)
        add_gpu_node(kubectl)
        yield p, kubectl
    finally:
        p.stop()


@pytest.fixture(scope="module")
def controller(
    plane: tuple[LocalControlPlane, Kubectl], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    with webhooked(plane[0], tmp_path_factory.mktemp("v1alpha1")) as c:
        yield c


def test_a_v1alpha1_dgdr_reaches_deployed_and_reads_the_same_in_both_versions(
    plane: tuple[LocalControlPlane, Kubectl], controller: ControllerProcess
) -> None:
    _, kubectl = plane
    res = kubectl(
        "apply", "--server-side", "-f", "-", input=json.dumps(alpha_manifest("old-style"))
    )
    assert "nvidia.com/v1alpha1 DynamoGraphDeploymentRequest is deprecated" in res.stderr
    # v1beta1 is what the controller works on: upstream's mapping put the fields in their place.
    beta = eventually(
        lambda: (o := get(kubectl, BETA, "old-style")).get("status", {}).get("dgdName") and o,
        timeout=90,
        message="the controller to create the DGD",
    )
    spec = beta["spec"]
    assert spec["image"] == "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.1.1"
    assert (spec["workload"], spec["sla"]["ttft"], spec["sla"]["itl"]) == (
        {"isl": 2000, "osl": 500},
        2000.0,
        50.0,
    )
    play_dynamo_operator(kubectl, beta["status"]["dgdName"])
    eventually(
        lambda: get(kubectl, BETA, "old-style")["status"].get("phase") == "Deployed",
        timeout=60,
        message="phase Deployed",
    )
    alpha = get(kubectl, ALPHA, "old-style")
    assert alpha["apiVersion"] == "nvidia.com/v1alpha1"
    assert alpha["status"]["state"] == "Ready"
    assert alpha["status"]["deployment"]["name"] == beta["status"]["dgdName"]
    for field in ("model", "backend", "autoApply", "profilingConfig", "deploymentOverrides"):
        assert alpha["spec"][field] == alpha_manifest("old-style")["spec"][field], field
    names = {
        version: json.loads(kubectl("get", version, "-n", NS, "-o", "json").stdout)["items"]
        for version in (ALPHA, BETA)
    }
    assert [o["metadata"]["name"] for o in names[ALPHA]] == [
        o["metadata"]["name"] for o in names[BETA]
    ]
    assert {o["apiVersion"] for o in names[ALPHA]} == {"nvidia.com/v1alpha1"}


def test_a_v1alpha1_object_edited_through_v1beta1_keeps_its_v1alpha1_fields(
    plane: tuple[LocalControlPlane, Kubectl], controller: ControllerProcess
) -> None:
    _, kubectl = plane
    apply(kubectl, alpha_manifest("edited", auto_apply=False))
    wait_ready(kubectl, "edited")
    before = get(kubectl, ALPHA, "edited")
    # An edit through v1beta1: a label, and autoApply (the one spec change accepted once Ready).
    beta = get(kubectl, BETA, "edited")
    beta["metadata"].setdefault("labels", {})["owner"] = "platform"
    beta["spec"]["autoApply"] = True
    kubectl("replace", "-f", "-", input=json.dumps(beta))
    after = get(kubectl, ALPHA, "edited")
    assert after["metadata"]["labels"]["owner"] == "platform"
    assert after["spec"]["autoApply"] is True
    # What has no home in v1beta1 came back unchanged.
    for field in ("profilingConfig", "deploymentOverrides", "model", "backend"):
        assert after["spec"][field] == before["spec"][field], field
    # Fields with no home in the other version ride in upstream's annotation (nvidia.com/
    # dgdr-spec) of each view; the stored v1beta1 spec is the one written.
    stored = get(kubectl, BETA, "edited")
    assert stored["spec"] == beta["spec"]


def test_a_follower_serves_conversions_while_the_leader_acts(
    plane: tuple[LocalControlPlane, Kubectl],
    controller: ControllerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Every replica serves the webhook: a second replica (same Lease, so a follower) points
    the CRD at itself on loopback, serves every v1alpha1 read from then on, and shares the
    leader's CA (one Secret)."""
    control_plane, kubectl = plane
    eventually(controller.is_leader, timeout=30, message="the module's controller leads")
    secret_before = kubectl(
        "get",
        "secret",
        "dgdr-controller-webhook-cert",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ).stdout
    with webhooked(control_plane, tmp_path_factory.mktemp("follower"), name="b") as follower:
        url = f"https://127.0.0.1:{follower.webhook_port}/convert"

        def pointed_at_follower() -> bool:
            crd = json.loads(
                kubectl(
                    "get", "crd", "dynamographdeploymentrequests.nvidia.com", "-o", "json"
                ).stdout
            )
            return bool(crd["spec"]["conversion"]["webhook"]["clientConfig"].get("url") == url)

        eventually(pointed_at_follower, timeout=30, message="the CRD pointed at the follower")
        apply(kubectl, alpha_manifest("via-follower", auto_apply=False))
        wait_ready(kubectl, "via-follower")
        assert get(kubectl, ALPHA, "via-follower")["status"]["state"] == "Ready"
        assert controller.is_leader() and not follower.is_leader()
        secret_after = kubectl(
            "get",
            "secret",
            "dgdr-controller-webhook-cert",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ).stdout
        assert secret_after == secret_before != ""
    # The follower gone, the leader takes the CRD back at its next resync (a minute); the
    # next tests need it now.
    leader_url = f"https://127.0.0.1:{controller.webhook_port}/convert"
    patch = {"spec": {"conversion": {"webhook": {"clientConfig": {"url": leader_url}}}}}
    kubectl(
        "patch",
        "crd",
        "dynamographdeploymentrequests.nvidia.com",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )


def test_webhook_down_is_a_clear_api_error_and_nothing_is_lost(
    plane: tuple[LocalControlPlane, Kubectl],
    controller: ControllerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    control_plane, kubectl = plane
    apply(kubectl, alpha_manifest("survivor", auto_apply=False))
    wait_ready(kubectl, "survivor")
    before = get(kubectl, ALPHA, "survivor")
    controller.stop()
    res = kubectl("get", ALPHA, "survivor", "-n", NS, "-o", "json", check=False)
    assert res.returncode != 0
    assert "conversion webhook" in res.stderr and "127.0.0.1" in res.stderr, res.stderr
    # v1beta1, the stored version, needs no conversion: still readable.
    assert get(kubectl, BETA, "survivor")["status"]["phase"] == "Ready"
    with webhooked(control_plane, tmp_path_factory.mktemp("again"), name="again"):
        after = get(kubectl, ALPHA, "survivor")
        assert after["spec"] == before["spec"]
        assert after["status"]["state"] == before["status"]["state"]


# ---- migration from upstream's CRD ------------------------------------------------------------


def legacy_crd() -> dict[str, Any]:
    """Upstream's DGDR CRD as an older Dynamo platform installed it: v1alpha1 the stored
    version (so status.storedVersions lists it), no conversion webhook."""
    crd: dict[str, Any] = yaml.safe_load(UPSTREAM_DGDR_CRD.read_text())
    crd = copy.deepcopy(crd)
    crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    crd["spec"]["versions"][0]["storage"] = True
    crd["spec"].pop("conversion", None)
    return crd


@pytest.mark.skipif(not UPSTREAM_DGDR_CRD.is_file(), reason="upstream's DGDR CRD not found")
def test_migration_from_upstreams_crd_with_objects_stored_in_v1alpha1(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The path of deploy/README.md ("Next to a Dynamo platform"), run: objects stored by an
    older Dynamo platform in v1alpha1; this project's CRD applied over upstream's (accepted:
    it still serves v1alpha1); the controller started; `migrate-storage` rewrites every object
    in v1beta1 and leaves storedVersions [v1beta1]; the old objects then reach Ready."""
    p = LocalControlPlane.start()
    try:
        kubectl = make_kubectl(p)
        kubectl("apply", "--server-side", "-f", "-", input=json.dumps(legacy_crd()))
        established(kubectl, "dynamographdeploymentrequests.nvidia.com")
        kubectl("create", "namespace", NS)
        for i in range(3):
            apply(kubectl, alpha_manifest(f"legacy-{i}", auto_apply=False))
        crd = json.loads(
            kubectl("get", "crd", "dynamographdeploymentrequests.nvidia.com", "-o", "json").stdout
        )
        assert crd["status"]["storedVersions"] == ["v1alpha1"]

        # This project's CRDs over upstream's.
        for path in CRDS:
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        established(kubectl, "dynamographdeployments.nvidia.com")
        add_gpu_node(kubectl)
        with webhooked(p, tmp_path_factory.mktemp("migrate")):
            migrate_and_check(p, kubectl)
        # Stored in v1beta1 now: the webhook down, v1beta1 reads go on.
        consistently(
            lambda: get(kubectl, BETA, "legacy-0")["status"]["phase"] == "Ready",
            duration=1,
            message="v1beta1 readable without the webhook",
        )
    finally:
        p.stop()


def migrate_and_check(p: LocalControlPlane, kubectl: Kubectl) -> None:
    """`migrate-storage` as an admin runs it, then every old object Ready in both versions."""
    res = subprocess.run(
        [sys.executable, "-m", "controller", "migrate-storage", "--kubeconfig", p.kubeconfig],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "3 DGDRs rewritten in v1beta1" in res.stdout
    crd = json.loads(
        kubectl("get", "crd", "dynamographdeploymentrequests.nvidia.com", "-o", "json").stdout
    )
    assert crd["status"]["storedVersions"] == ["v1beta1"]
    for i in range(3):
        wait_ready(kubectl, f"legacy-{i}")
        alpha = get(kubectl, ALPHA, f"legacy-{i}")
        assert alpha["spec"]["profilingConfig"]["nodeSelector"] == {"pool": "profiling"}
        assert alpha["status"]["state"] == "Ready"
