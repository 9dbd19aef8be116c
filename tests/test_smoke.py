"""The foundation works end to end: real apiserver, real kubectl, real kubernetes-asyncio."""

from __future__ import annotations

import json

import pytest
import yaml

from devtools.localplane import LocalControlPlane


@pytest.mark.cluster
def test_apiserver_reports_pinned_version(control_plane: LocalControlPlane, kubectl) -> None:
    assert control_plane.version()["gitVersion"].startswith("v1.36.")
    client = json.loads(kubectl("version", "-o", "json").stdout)
    assert client["clientVersion"]["minor"].rstrip("+") == "36"
    assert client["serverVersion"]["gitVersion"] == control_plane.version()["gitVersion"]


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_dgdr_roundtrip_kubectl_and_asyncio(
    crds, kubectl, namespace: str, api_client
) -> None:
    from kubernetes_asyncio import client

    api = client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": "smoke"},
        "spec": {"model": "Qwen/Qwen3-0.6B"},
    }
    created = await api.create_namespaced_custom_object(
        "nvidia.com", "v1beta1", namespace, "dynamographdeploymentrequests", body
    )
    assert created["metadata"]["uid"]

    got = yaml.safe_load(kubectl("get", "dgdr", "smoke", "-o", "yaml", namespace=namespace).stdout)
    assert got["spec"]["model"] == "Qwen/Qwen3-0.6B"
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    kubectl("delete", "dgdr", "smoke", "--wait=true", "--timeout=30s", namespace=namespace)
    gone = kubectl("get", "dgdr", "smoke", namespace=namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
