"""Every DGD the profiler generates is accepted by upstream's own DGD CRD, on a real API server,
with strict field validation and no warning.

A control plane of its own (the session one serves the project's stand-in DGD CRD under the same
name) gets upstream's DGD CRD (reference data beside the repository); each generated DGD is
created with a server-side dry run and ``--validate=strict``: an unknown or misplaced field is an
error, a silently pruned one a warning. v1alpha1 is deprecated upstream, so its requests carry
exactly the CRD's deprecation warning and nothing else; v1beta1 requests carry none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.localplane import LocalControlPlane
from profiler.generate import build_dgd
from profiler.plan import plan
from profiler.request import DGD_V1ALPHA1, DGD_V1BETA1, PlanRequest
from tests.conftest import Kubectl, make_kubectl
from tests.eventually import eventually
from tests.profiler.test_generate import (
    AGG,
    BACKENDS,
    IMAGE,
    PREFILL,
    WIDE,
    candidate,
    everything,
    everything_beta,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT.parent / "shared/reference/upstream-crds/nvidia.com_dynamographdeployments.yaml"
SAMPLES = sorted((ROOT / "deploy/samples").glob("*.yaml"))


@pytest.fixture(scope="module")
def upstream_plane() -> Iterator[tuple[LocalControlPlane, Kubectl, str]]:
    if not UPSTREAM.is_file():
        pytest.skip(f"upstream DGD CRD not found at {UPSTREAM}")
    deprecation = next(
        v.get("deprecationWarning", "")
        for v in yaml.safe_load(UPSTREAM.read_text())["spec"]["versions"]
        if v["name"] == "v1alpha1"
    )
    plane = LocalControlPlane.start()
    try:
        kubectl = make_kubectl(plane)
        kubectl("apply", "--server-side", "-f", str(UPSTREAM))

        def established() -> bool:
            res = kubectl(
                "get", "crd", "dynamographdeployments.nvidia.com", "-o", "json", check=False
            )
            if res.returncode != 0:
                return False
            conditions = json.loads(res.stdout).get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        eventually(established, message="upstream's DGD CRD to be established")
        kubectl("create", "namespace", "team-a")
        yield plane, kubectl, deprecation
    finally:
        plane.stop()


def dry_run(kubectl: Kubectl, dgd: dict[str, Any], tmp_path: Path) -> tuple[int, str]:
    """Create ``dgd`` with a server-side dry run and strict field validation."""
    obj = json.loads(json.dumps(dgd))
    obj["metadata"]["namespace"] = "team-a"
    path = tmp_path / f"{obj['metadata']['name']}.json"
    path.write_text(json.dumps(obj))
    run = kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-o",
        "name",
        "-f",
        str(path),
        check=False,
    )
    return run.returncode, run.stderr


def assert_accepted(
    plane: tuple[LocalControlPlane, Kubectl, str], dgd: dict[str, Any], tmp_path: Path
) -> None:
    _, kubectl, deprecation = plane
    code, stderr = dry_run(kubectl, dgd, tmp_path)
    assert code == 0, stderr
    warnings = [ln for ln in stderr.splitlines() if ln.startswith("Warning:")]
    expected = [f"Warning: {deprecation}"] if dgd["apiVersion"] == DGD_V1ALPHA1 else []
    assert warnings == expected, stderr


@pytest.mark.parametrize("version", [DGD_V1ALPHA1, DGD_V1BETA1])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["agg", "disagg"])
def test_every_layout_with_every_generated_field(
    upstream_plane: tuple[LocalControlPlane, Kubectl, str],
    tmp_path: Path,
    version: str,
    backend: str,
    mode: str,
) -> None:
    """Model cache, KV router, tolerations, trust-remote-code, runtime version: all on."""
    req = everything(backend) if version == DGD_V1ALPHA1 else everything_beta(backend)
    workers = (AGG,) if mode == "agg" else (PREFILL, WIDE)
    dgd, _ = build_dgd(req, candidate(backend, mode, *workers))
    assert dgd["apiVersion"] == version
    assert_accepted(upstream_plane, dgd, tmp_path)


@pytest.mark.parametrize("version", [DGD_V1ALPHA1, DGD_V1BETA1])
@pytest.mark.parametrize(
    "features",
    [{"mocker": {"enabled": True}}, {"planner": {"optimization_target": "throughput"}}],
    ids=["mocker", "planner"],
)
def test_mocker_and_planner_deployments(
    upstream_plane: tuple[LocalControlPlane, Kubectl, str],
    tmp_path: Path,
    version: str,
    features: dict[str, Any],
) -> None:
    spec = {
        "model": "Qwen/Qwen3-30B-A3B",
        "backend": "vllm",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 32},
        "features": features,
    }
    req = PlanRequest.from_spec(spec, dgdr_name="gen", namespace="team-a", dgd_api_version=version)
    assert_accepted(upstream_plane, plan(req).dgd, tmp_path)


@pytest.mark.parametrize("version", [DGD_V1ALPHA1, DGD_V1BETA1])
def test_overrides_in_the_version_they_are_written_in(
    upstream_plane: tuple[LocalControlPlane, Kubectl, str], tmp_path: Path, version: str
) -> None:
    if version == DGD_V1ALPHA1:
        ov: dict[str, Any] = {
            "apiVersion": DGD_V1ALPHA1,
            "kind": "DynamoGraphDeployment",
            "spec": {
                "services": {
                    "VllmDecodeWorker": {
                        "replicas": 2,
                        "extraPodSpec": {"mainContainer": {"args": ["--enforce-eager"]}},
                    }
                }
            },
        }
    else:
        ov = {
            "apiVersion": DGD_V1BETA1,
            "kind": "DynamoGraphDeployment",
            "spec": {"components": [{"name": "VllmDecodeWorker", "replicas": 2}]},
        }
    spec = {
        "model": "Qwen/Qwen3-0.6B",
        "backend": "vllm",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
        "overrides": {"dgd": ov},
    }
    req = PlanRequest.from_spec(spec, dgdr_name="ov", namespace="team-a", dgd_api_version=version)
    dgd = plan(req).dgd
    assert dgd["apiVersion"] == version
    assert_accepted(upstream_plane, dgd, tmp_path)


@pytest.mark.parametrize("version", [DGD_V1ALPHA1, DGD_V1BETA1])
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample(
    upstream_plane: tuple[LocalControlPlane, Kubectl, str],
    tmp_path: Path,
    version: str,
    sample: Path,
) -> None:
    obj = yaml.safe_load(sample.read_text())
    spec = dict(obj["spec"])
    if spec.get("searchStrategy") == "thorough":
        pytest.skip("thorough profiling does not generate a DGD here")
    spec.setdefault("image", IMAGE)
    spec.setdefault("hardware", {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8})
    req = PlanRequest.from_spec(
        spec, dgdr_name=obj["metadata"]["name"], namespace="team-a", dgd_api_version=version
    )
    assert_accepted(upstream_plane, plan(req).dgd, tmp_path)
