"""The v1alpha1 <-> v1beta1 conversion of the DGDR (controller/dgdr/conversion.py), no cluster.

Round trips are property tests over objects generated from each version's openAPIV3Schema in the
CRD (spec and status), so every field either schema has is exercised, not only the ones a mapping
names; the examples pin upstream's mapping field by field.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from controller.dgdr import api, conversion
from tests.api.dgdr_cases import crd_version

# Reference data beside the repository (shared/), not part of it.
UPSTREAM_CRD = (
    Path(__file__).resolve().parents[3]
    / "shared/reference/upstream-crds/nvidia.com_dynamographdeploymentrequests.yaml"
)

# ---- schema -> strategy --------------------------------------------------------------------

SCALAR: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": 4},
        {"type": "integer", "minimum": -5, "maximum": 5000},
        {"type": "number", "minimum": -5, "maximum": 5000},
        {"type": "boolean"},
        {"type": "null"},
    ]
}
# A free-form (x-kubernetes-preserve-unknown-fields) object, kept small.
FREE: dict[str, Any] = {
    "type": "object",
    "maxProperties": 2,
    "additionalProperties": {
        "anyOf": [
            SCALAR,
            {"type": "array", "maxItems": 2, "items": SCALAR},
            {"type": "object", "maxProperties": 2, "additionalProperties": SCALAR},
        ]
    },
}


def _loose(*types: str) -> dict[str, Any]:
    """A value of the right type or of another (the blob and the profiling job are free-form)."""
    return {"anyOf": [*({"type": t} for t in types), SCALAR]}


# v1alpha1's profilingConfig.config: the keys upstream projects, with values of every type.
ALPHA_CONFIG: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sla": {
            "type": "object",
            "properties": {
                "ttft": {"anyOf": [{"type": "number", "minimum": 0.5, "maximum": 1e4}, SCALAR]},
                "itl": {"anyOf": [{"type": "number", "minimum": 0.5, "maximum": 1e4}, SCALAR]},
                "isl": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 2**33}, SCALAR]},
                "osl": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 10**4}, SCALAR]},
                "optimizationType": {
                    "anyOf": [{"enum": ["latency", "throughput", "other"]}, SCALAR]
                },
            },
            "additionalProperties": SCALAR,
            "maxProperties": 4,
        },
        "deployment": {
            "type": "object",
            "properties": {
                "modelCache": {
                    "type": "object",
                    "properties": {
                        "pvcName": _loose("string"),
                        "modelPathInPvc": _loose("string"),
                        "pvcMountPath": _loose("string"),
                    },
                    "additionalProperties": SCALAR,
                    "maxProperties": 3,
                },
            },
            "additionalProperties": SCALAR,
            "maxProperties": 2,
        },
        "planner": FREE,
    },
    "additionalProperties": SCALAR,
    "maxProperties": 4,
}
TOLERATION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "maxLength": 4},
        "operator": {"enum": ["Exists", "Equal"]},
        "effect": {"enum": ["NoSchedule", "NoExecute"]},
        "tolerationSeconds": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "additionalProperties": False,
}
RESOURCES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "limits": {
            "type": "object",
            "maxProperties": 2,
            "additionalProperties": {"anyOf": [{"type": "integer"}, {"enum": ["1", "4Gi"]}]},
        },
        "requests": {
            "type": "object",
            "maxProperties": 2,
            "additionalProperties": {"anyOf": [{"type": "integer"}, {"enum": ["1", "4Gi"]}]},
        },
    },
    "additionalProperties": False,
}
# v1beta1's overrides.profilingJob: a JobSpec whose profiler container, tolerations and node
# selector map to v1alpha1, mixed with what does not.
BETA_PROFILING_JOB: dict[str, Any] = {
    "type": "object",
    "properties": {
        "backoffLimit": {"type": "integer", "minimum": 0, "maximum": 3},
        "template": {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "containers": {
                            "type": "array",
                            "maxItems": 2,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"enum": ["profiler", "sidecar"]},
                                    "resources": {"anyOf": [RESOURCES, FREE]},
                                    "image": {"type": "string", "maxLength": 4},
                                },
                                "required": ["name", "resources"],
                            },
                        },
                        "tolerations": {
                            "anyOf": [{"type": "array", "maxItems": 2, "items": TOLERATION}, FREE]
                        },
                        "nodeSelector": {
                            "anyOf": [
                                {
                                    "type": "object",
                                    "maxProperties": 2,
                                    "additionalProperties": {"type": "string", "maxLength": 3},
                                },
                                FREE,
                            ]
                        },
                        "serviceAccountName": {"type": "string", "maxLength": 4},
                    },
                    "required": ["containers"],
                    "additionalProperties": False,
                },
            },
            "required": ["spec"],
            "additionalProperties": False,
        },
    },
    "required": ["template"],
    "additionalProperties": False,
}
REPLACE: dict[tuple[str, ...], dict[str, Any]] = {
    ("spec", "profilingConfig", "config"): ALPHA_CONFIG,
    ("spec", "overrides", "profilingJob"): BETA_PROFILING_JOB,
}


def strategy_schema(schema: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A CRD schema as plain, bounded JSON Schema that hypothesis-jsonschema can draw from.

    Kubernetes extensions go (int-or-string becomes integer-or-string, a preserve-unknown-fields
    object a small free-form one); formats and patterns go (they constrain values, not shape);
    strings, lists and maps are kept short so a hundred examples take seconds.
    """
    if path in REPLACE:
        return REPLACE[path]
    if schema.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 64}, {"enum": ["1", "2Gi"]}]}
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return FREE
    out: dict[str, Any] = {}
    for key in ("type", "enum", "required", "minimum", "maximum"):
        if key in schema:
            out[key] = copy.deepcopy(schema[key])
    if schema.get("type") == "string" and "enum" not in schema:
        out["maxLength"] = min(schema.get("maxLength", 6), 6)
        out["minLength"] = min(schema.get("minLength", 0), 1)
    if "properties" in schema:
        out["properties"] = {
            name: strategy_schema(sub, (*path, name)) for name, sub in schema["properties"].items()
        }
        out["additionalProperties"] = False
    elif isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strategy_schema(schema["additionalProperties"], (*path, "*"))
        out["maxProperties"] = 2
    if "items" in schema:
        out["items"] = strategy_schema(schema["items"], (*path, "[]"))
        out["maxItems"] = 2
    return out


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a bounded schema: objects and arrays drawn here, scalars by hypothesis-jsonschema.

    hypothesis-jsonschema 0.23.1 draws objects through a hypothesis internal (``many.more()``)
    that hypothesis 6.170 no longer has, so its ``from_schema`` is used for the leaves only.
    """
    if "anyOf" in schema:
        return st.one_of([strategy(s) for s in schema["anyOf"]])
    if schema.get("type") == "array":
        return st.lists(strategy(schema.get("items", SCALAR)), max_size=schema.get("maxItems", 2))
    if schema.get("type") != "object":
        return from_schema(schema)
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = st.fixed_dictionaries(
        {k: strategy(v) for k, v in properties.items() if k in required},
        optional={k: strategy(v) for k, v in properties.items() if k not in required},
    )
    extra = schema.get("additionalProperties", SCALAR if not properties else False)
    if extra is False:
        return fixed
    names = st.text(alphabet="abk./-", min_size=1, max_size=4).filter(lambda n: n not in properties)
    more = st.dictionaries(names, strategy(extra), max_size=schema.get("maxProperties", 2))
    return st.builds(lambda a, b: {**b, **a}, fixed, more)


def _version_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_version(name)["schema"]["openAPIV3Schema"]
    return {
        "type": "object",
        "properties": {
            "spec": strategy_schema(schema["properties"]["spec"], ("spec",)),
            "status": strategy_schema(schema["properties"]["status"], ("status",)),
        },
        "required": ["spec"],
        "additionalProperties": False,
    }


METADATA = st.fixed_dictionaries(
    {"name": st.just("dgdr"), "namespace": st.just("team")},
    optional={
        "annotations": st.dictionaries(
            st.sampled_from(["example.com/note", "kubectl.kubernetes.io/last-applied"]),
            st.text(max_size=4),
            min_size=1,
        ),
        "labels": st.dictionaries(st.just("app"), st.just("x"), min_size=1),
        "generation": st.integers(1, 5),
    },
)


def objects(version: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda body, metadata: {
            "apiVersion": f"nvidia.com/{version}",
            "kind": api.DGDR_KIND,
            "metadata": metadata,
            **body,
        },
        strategy(_version_schema(version)),
        METADATA,
    )


def canonical(value: Any) -> Any:
    """JSON as the wire sees it: an integral float is the integer, a boolean is not a number."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return ("number", int(value))
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return {k: canonical(v) for k, v in value.items()}


ROUND_TRIP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- round trips ---------------------------------------------------------------------------


@ROUND_TRIP
@given(objects("v1alpha1"))
def test_v1alpha1_round_trip_through_v1beta1_is_lossless(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    beta = conversion.convert(obj, conversion.V1BETA1)
    assert obj == before  # the input is not modified
    assert beta["apiVersion"] == conversion.V1BETA1
    back = conversion.convert(beta, conversion.V1ALPHA1)
    assert canonical(back) == canonical(obj)
    _foreign_annotations_untouched(obj, beta)


@ROUND_TRIP
@given(objects("v1beta1"))
def test_v1beta1_round_trip_through_v1alpha1_is_lossless(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    alpha = conversion.convert(obj, conversion.V1ALPHA1)
    assert obj == before
    assert alpha["apiVersion"] == conversion.V1ALPHA1
    back = conversion.convert(alpha, conversion.V1BETA1)
    assert canonical(back) == canonical(obj)
    _foreign_annotations_untouched(obj, alpha)


@ROUND_TRIP
@given(objects("v1beta1"))
def test_repeated_round_trips_are_stable(obj: dict[str, Any]) -> None:
    """A stored object read and written back through v1alpha1 again and again stays the same."""
    alpha = conversion.to_v1alpha1(obj)
    for _ in range(2):
        beta = conversion.to_v1beta1(alpha)
        assert canonical(beta) == canonical(obj)
        again = conversion.to_v1alpha1(beta)
        assert canonical(again) == canonical(alpha)
        alpha = again


def _foreign_annotations_untouched(source: dict[str, Any], converted: dict[str, Any]) -> None:
    """Metadata passes through; only the two conversion annotations may be added."""
    ours = {conversion.ANNOTATION_SPEC, conversion.ANNOTATION_STATUS}
    got = dict(converted["metadata"].get("annotations", {}))
    for key in ours:
        got.pop(key, None)
    assert got == source["metadata"].get("annotations", {})
    rest = {k: v for k, v in converted["metadata"].items() if k != "annotations"}
    assert rest == {k: v for k, v in source["metadata"].items() if k != "annotations"}


# ---- upstream's mapping, field by field ----------------------------------------------------

ALPHA_MANIFEST = yaml.safe_load(
    """
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeploymentRequest
metadata:
  name: qwen
  namespace: team
  annotations: {example.com/owner: alice}
spec:
  model: Qwen/Qwen3-0.6B
  backend: vllm
  autoApply: true
  useMocker: true
  enableGpuDiscovery: true
  profilingConfig:
    profilerImage: nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1
    outputPVC: profiling-output
    configMapRef: {name: base-config, key: disagg.yaml}
    resources:
      requests: {cpu: "1", memory: 4Gi}
      limits: {nvidia.com/gpu: "1"}
    tolerations:
      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
    config:
      sla: {isl: 3000, osl: 150, ttft: 200.0, itl: 20.0, optimizationType: throughput}
      deployment:
        modelCache: {pvcName: model-cache, modelPathInPvc: qwen3, pvcMountPath: /models}
      planner: {plannerMinEndpoint: 2}
      sweep: {useAiConfigurator: false}
  deploymentOverrides:
    name: qwen-dgd
    namespace: serving
    labels: {team: a}
    annotations: {note: x}
    workersImage: nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1
status:
  state: Ready
  backend: vllm
  observedGeneration: 2
  profilingResults: configmap/qwen-profiling
  generatedDeployment:
    apiVersion: nvidia.com/v1alpha1
    kind: DynamoGraphDeployment
    metadata: {name: qwen-dgd}
    spec: {services: {}}
  deployment: {name: qwen-dgd, namespace: team, state: successful, created: true}
  conditions:
    - type: Ready
      status: "True"
      reason: Deployed
      message: the DGD is ready
      lastTransitionTime: "2026-01-01T00:00:00Z"
"""
)

EXPECTED_BETA_SPEC = {
    "model": "Qwen/Qwen3-0.6B",
    "backend": "vllm",
    "autoApply": True,
    "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1",
    "features": {"mocker": {"enabled": True}, "planner": {"plannerMinEndpoint": 2}},
    "sla": {"ttft": 200.0, "itl": 20.0, "optimizationType": "throughput"},
    "workload": {"isl": 3000, "osl": 150},
    "modelCache": {"pvcName": "model-cache", "pvcModelPath": "qwen3", "pvcMountPath": "/models"},
    "overrides": {
        "profilingJob": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "profiler",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "4Gi"},
                                "limits": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                }
            }
        }
    },
}


def test_upstream_v1alpha1_manifest_maps_to_the_v1beta1_spec() -> None:
    beta = conversion.to_v1beta1(ALPHA_MANIFEST)
    assert beta["apiVersion"] == "nvidia.com/v1beta1"
    assert beta["kind"] == api.DGDR_KIND
    assert beta["spec"] == EXPECTED_BETA_SPEC
    api.DGDRSpec.model_validate(beta["spec"])  # a valid spec of this project's v1beta1
    assert beta["status"] == {
        "phase": "Deployed",  # Ready with the DGD created
        "observedGeneration": 2,
        "conditions": ALPHA_MANIFEST["status"]["conditions"],
        "profilingResults": {"selectedConfig": ALPHA_MANIFEST["status"]["generatedDeployment"]},
        "dgdName": "qwen-dgd",
    }
    api.DGDRStatus.model_validate(beta["status"])
    annotations = beta["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "alice"
    assert set(annotations) == {
        "example.com/owner",
        conversion.ANNOTATION_SPEC,
        conversion.ANNOTATION_STATUS,
    }
    # what v1beta1 cannot hold rides in upstream's sparse shape: v1alpha1 fields by name
    saved_spec = json.loads(annotations[conversion.ANNOTATION_SPEC])
    assert saved_spec["enableGpuDiscovery"] is True
    assert saved_spec["profilingConfig"]["outputPVC"] == "profiling-output"
    assert saved_spec["profilingConfig"]["configMapRef"] == {
        "name": "base-config",
        "key": "disagg.yaml",
    }
    assert saved_spec["profilingConfig"]["config"] == {"sweep": {"useAiConfigurator": False}}
    assert saved_spec["deploymentOverrides"]["name"] == "qwen-dgd"
    saved_status = json.loads(annotations[conversion.ANNOTATION_STATUS])
    assert saved_status["backend"] == "vllm"
    assert saved_status["profilingResults"] == "configmap/qwen-profiling"
    assert saved_status["deployment"] == {
        "namespace": "team",
        "state": "successful",
        "created": True,
    }
    assert canonical(conversion.to_v1alpha1(beta)) == canonical(ALPHA_MANIFEST)


BETA_MANIFEST: dict[str, Any] = {
    "apiVersion": "nvidia.com/v1beta1",
    "kind": api.DGDR_KIND,
    "metadata": {"name": "qwen", "namespace": "team"},
    "spec": {
        "model": "Qwen/Qwen3-0.6B",
        "backend": "sglang",
        "image": "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.6.1",
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
        "workload": {"isl": 2048, "osl": 256, "concurrency": 32.0},
        "sla": {"ttft": 300.0, "itl": 25.0},
        "modelCache": {"pvcName": "cache"},
        "features": {"planner": {"mode": "sla"}, "mocker": {"enabled": False}},
        "searchStrategy": "thorough",
        "autoApply": False,
    },
    "status": {
        "phase": "Profiling",
        "profilingPhase": "SweepingDecode",
        "profilingJobName": "qwen-profile",
        "observedGeneration": 1,
    },
}


def test_v1beta1_maps_to_upstream_v1alpha1_fields() -> None:
    alpha = conversion.to_v1alpha1(BETA_MANIFEST)
    assert alpha["apiVersion"] == "nvidia.com/v1alpha1"
    spec = alpha["spec"]
    assert spec["model"] == "Qwen/Qwen3-0.6B"
    assert spec["backend"] == "sglang"
    assert spec["autoApply"] is False
    assert spec["useMocker"] is False
    assert spec["profilingConfig"] == {
        "profilerImage": "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.6.1",
        "config": {
            "sla": {"isl": 2048, "osl": 256, "ttft": 300.0, "itl": 25.0},
            "deployment": {"modelCache": {"pvcName": "cache"}},
            "planner": {"mode": "sla"},
        },
    }
    assert alpha["status"] == {"state": "Profiling", "observedGeneration": 1}
    saved = json.loads(alpha["metadata"]["annotations"][conversion.ANNOTATION_SPEC])
    assert saved["hardware"] == {"gpuSku": "h100_sxm", "totalGpus": 8}
    assert saved["workload"] == {"concurrency": 32.0}
    assert saved["searchStrategy"] == "thorough"
    saved_status = json.loads(alpha["metadata"]["annotations"][conversion.ANNOTATION_STATUS])
    assert saved_status["profilingPhase"] == "SweepingDecode"
    assert conversion.to_v1beta1(alpha) == BETA_MANIFEST


@pytest.mark.parametrize(
    ("state", "deployment", "phase"),
    [
        ("Initializing", None, "Pending"),
        ("Pending", None, "Pending"),
        ("Profiling", None, "Profiling"),
        ("Ready", None, "Ready"),
        ("Ready", {"name": "d", "state": "successful", "created": True}, "Deployed"),
        ("Deploying", {"name": "d", "state": "pending"}, "Deploying"),
        ("DeploymentDeleted", {"name": "d", "state": "failed"}, "Ready"),
        ("Failed", None, "Failed"),
    ],
)
def test_state_to_phase(state: str, deployment: dict[str, Any] | None, phase: str) -> None:
    status: dict[str, Any] = {"state": state}
    if deployment:
        status["deployment"] = deployment
    obj = {**ALPHA_MANIFEST, "status": status}
    assert conversion.to_v1beta1(obj)["status"]["phase"] == phase


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("Pending", "Pending"),
        ("Profiling", "Profiling"),
        ("Ready", "Ready"),
        ("Deploying", "Deploying"),
        ("Deployed", "Ready"),
        ("Failed", "Failed"),
    ],
)
def test_phase_to_state(phase: str, state: str) -> None:
    obj = {**BETA_MANIFEST, "status": {"phase": phase}}
    assert conversion.to_v1alpha1(obj)["status"]["state"] == state


def test_workers_image_is_the_image_without_a_profiler_image() -> None:
    alpha = copy.deepcopy(ALPHA_MANIFEST)
    del alpha["spec"]["profilingConfig"]["profilerImage"]
    alpha["spec"]["deploymentOverrides"]["workersImage"] = "workers:1"
    beta = conversion.to_v1beta1(alpha)
    assert beta["spec"]["image"] == "workers:1"
    assert canonical(conversion.to_v1alpha1(beta)) == canonical(alpha)


# ---- live fields win over saved ones -------------------------------------------------------


def test_an_edit_in_v1beta1_is_not_undone_by_the_saved_v1alpha1_fields() -> None:
    beta = conversion.to_v1beta1(ALPHA_MANIFEST)
    beta["spec"]["sla"]["ttft"] = 500.0
    beta["spec"]["image"] = "other:2"
    beta["status"]["dgdName"] = "another-dgd"
    alpha = conversion.to_v1alpha1(beta)
    assert alpha["spec"]["profilingConfig"]["config"]["sla"]["ttft"] == 500.0
    assert alpha["spec"]["profilingConfig"]["profilerImage"] == "other:2"
    # the saved deployment belongs to qwen-dgd: not grafted onto another DGD
    assert alpha["status"]["deployment"] == {"name": "another-dgd"}
    # fields v1beta1 cannot hold still come back
    assert alpha["spec"]["enableGpuDiscovery"] is True
    assert alpha["status"]["backend"] == "vllm"
    assert conversion.ANNOTATION_SPEC not in alpha["metadata"]["annotations"]


def test_a_phase_change_in_v1alpha1_drops_the_saved_profiling_sub_phase() -> None:
    alpha = conversion.to_v1alpha1(BETA_MANIFEST)
    alpha["status"]["state"] = "Failed"
    beta = conversion.to_v1beta1(alpha)
    assert beta["status"]["phase"] == "Failed"
    assert "profilingPhase" not in beta["status"]
    assert "profilingJobName" not in beta["status"]
    assert beta["spec"]["hardware"] == BETA_MANIFEST["spec"]["hardware"]


def test_a_payload_written_by_upstream_only_fills_empty_fields() -> None:
    """Upstream's operator saves a sparse spec without this module's guards."""
    alpha = copy.deepcopy(ALPHA_MANIFEST)
    alpha["metadata"]["annotations"][conversion.ANNOTATION_SPEC] = json.dumps(
        {"model": "", "hardware": {"gpuSku": "a100_sxm"}, "searchStrategy": "thorough"}
    )
    beta = conversion.to_v1beta1(alpha)
    assert beta["spec"]["model"] == "Qwen/Qwen3-0.6B"
    assert beta["spec"]["hardware"] == {"gpuSku": "a100_sxm"}
    assert beta["spec"]["searchStrategy"] == "thorough"


def test_a_damaged_annotation_is_dropped() -> None:
    alpha = copy.deepcopy(ALPHA_MANIFEST)
    alpha["metadata"]["annotations"][conversion.ANNOTATION_STATUS] = "{not json"
    beta = conversion.to_v1beta1(alpha)
    assert canonical(conversion.to_v1alpha1(beta)) == canonical(
        {**alpha, "metadata": ALPHA_MANIFEST["metadata"]}
    )


# ---- the entry point -----------------------------------------------------------------------


def test_same_version_is_an_unchanged_copy() -> None:
    for obj in (ALPHA_MANIFEST, BETA_MANIFEST):
        out = conversion.convert(obj, obj["apiVersion"])
        assert out == obj and out is not obj
        out["spec"]["model"] = "changed"
        assert obj["spec"]["model"] == "Qwen/Qwen3-0.6B"


def test_unknown_versions_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"nvidia\.com/v2"):
        conversion.convert(ALPHA_MANIFEST, "nvidia.com/v2")
    with pytest.raises(ValueError, match=r"example\.com/v1"):
        conversion.convert({**ALPHA_MANIFEST, "apiVersion": "example.com/v1"}, "nvidia.com/v1beta1")


def test_bare_versions_are_accepted() -> None:
    assert conversion.convert(ALPHA_MANIFEST, "v1beta1")["apiVersion"] == "nvidia.com/v1beta1"


# ---- the CRD -------------------------------------------------------------------------------


@pytest.mark.skipif(not UPSTREAM_CRD.exists(), reason="upstream's CRD is not in this checkout")
def test_the_v1alpha1_version_is_upstreams() -> None:
    upstream = yaml.safe_load(UPSTREAM_CRD.read_text())
    (theirs,) = (v for v in upstream["spec"]["versions"] if v["name"] == "v1alpha1")
    ours = crd_version("v1alpha1")
    assert ours == theirs  # schema, printer columns, deprecation warning, served, not stored
    assert ours["deprecated"] and ours["served"] and not ours["storage"]
    assert crd_version("v1beta1")["storage"]
