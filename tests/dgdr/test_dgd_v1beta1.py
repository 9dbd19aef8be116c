"""A cluster whose DGD CRD serves ``nvidia.com/v1beta1``: the controller finds it by API discovery
and generates, creates and follows v1beta1 DGDs (a ``components`` list), ``overrides.dgd``
included. The stand-in CRD is given a v1beta1 version for this module only (same permissive
schema; v1alpha1 stays the storage version, as upstream's CRD has it) and restored after."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.dgdr.app import served_dgd_version
from controller.machinery.client import KubeClient
from devtools.localplane import LocalControlPlane
from tests.conftest import CRD_DIR, Kubectl
from tests.dgdr.conftest import (
    SMALL,
    ControllerProcess,
    apply_dgdr,
    get_json,
    running,
    wait_phase,
)
from tests.eventually import eventually

pytestmark = pytest.mark.cluster

STANDIN = CRD_DIR / "nvidia.com_dynamographdeployments.yaml"
BETA = "dynamographdeployments.v1beta1.nvidia.com"


def discovered(kubeconfig: str) -> str:
    async def ask() -> str:
        client = await KubeClient.connect(kubeconfig)
        try:
            return await served_dgd_version(client)
        finally:
            await client.close()

    return asyncio.run(ask())


def _wait_served(kubectl: Kubectl, served: bool) -> None:
    def listed() -> bool:
        res = kubectl("get", "--raw", "/apis/nvidia.com/v1beta1", check=False)
        return res.returncode == 0 and any(
            r.get("name") == "dynamographdeployments"
            for r in json.loads(res.stdout).get("resources", [])
        )

    eventually(lambda: listed() == served, timeout=60, message=f"v1beta1 DGDs served={served}")
    # kubectl caches discovery on disk (shared by every test's kubectl): refresh it, or later
    # modules would still address DGDs as v1beta1
    kubectl("api-resources", "--api-group=nvidia.com", "--cached=false")


@pytest.fixture(scope="module")
def v1beta1_served(kubectl: Kubectl, crds: list[str]) -> Iterator[None]:
    crd = yaml.safe_load(STANDIN.read_text())
    alpha = crd["spec"]["versions"][0]
    beta = copy.deepcopy(alpha)
    beta.update(name="v1beta1", storage=False)
    props = beta["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"] = {
        "backendFramework": {"type": "string", "enum": ["sglang", "vllm", "trtllm"]},
        "components": {
            "type": "array",
            "maxItems": 25,
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    props["status"]["properties"] = {
        "state": props["status"]["properties"]["state"],
        "components": props["status"]["properties"]["services"],
    }
    crd["spec"]["versions"].append(beta)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
    _wait_served(kubectl, True)
    try:
        yield
    finally:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(STANDIN))
        _wait_served(kubectl, False)


@pytest.fixture(scope="module")
def beta_controller(
    control_plane: LocalControlPlane,
    v1beta1_served: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControllerProcess]:
    with running(
        control_plane, tmp_path_factory.mktemp("beta"), "--lease-name", "dgdr-v1beta1"
    ) as c:
        yield c


def test_discovery_tells_which_dgd_version_is_served(
    control_plane: LocalControlPlane, kubectl: Kubectl, v1beta1_served: None
) -> None:
    assert discovered(control_plane.kubeconfig) == "nvidia.com/v1beta1"


def test_the_controller_creates_and_follows_a_v1beta1_dgd(
    beta_controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    override = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "spec": {"components": [{"name": "VllmDecodeWorker", "replicas": 3}]},
    }
    apply_dgdr(kubectl, namespace, "beta", **SMALL, overrides={"dgd": override})
    obj = wait_phase(kubectl, "beta", namespace, "Deploying")
    selected = obj["status"]["profilingResults"]["selectedConfig"]
    assert selected["apiVersion"] == "nvidia.com/v1beta1"
    name = obj["status"]["dgdName"]
    dgd = get_json(kubectl, BETA, name, namespace)
    assert dgd["apiVersion"] == "nvidia.com/v1beta1"
    comps = {c["name"]: c for c in dgd["spec"]["components"]}
    assert comps["Frontend"]["type"] == "frontend"
    assert comps["VllmDecodeWorker"]["replicas"] == 3  # the v1beta1 override
    main = comps["VllmDecodeWorker"]["podTemplate"]["spec"]["containers"][0]
    assert main["name"] == "main" and main["command"] == ["python3", "-m", "dynamo.vllm"]
    assert dgd["metadata"]["labels"]["dgdr.nvidia.com/name"] == "beta"
    status: dict[str, Any] = {
        "state": "successful",
        "components": {n: {"replicas": 1, "availableReplicas": 1} for n in comps},
    }
    kubectl(
        "patch", BETA, name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}), namespace=namespace,
    )  # fmt: skip
    deployed = wait_phase(kubectl, "beta", namespace, "Deployed")
    assert deployed["status"]["deploymentInfo"] == {"replicas": 2, "availableReplicas": 2}
    eventually(
        lambda: (
            (get_json(kubectl, "dgdr", "beta", namespace)["metadata"].get("annotations") or {}).get(
                "nvidia.com/generated-dgd-spec"
            )
            in ("", None)
        ),
        timeout=30,
        message="no generated-spec annotation once the DGD is seen "
        "(with autoApply it is created at once)",
    )


def test_stand_in_crd_file_is_untouched() -> None:
    versions = [v["name"] for v in yaml.safe_load(Path(STANDIN).read_text())["spec"]["versions"]]
    assert versions == ["v1alpha1"]
