"""The CRD on a real API server, driven by the real kubectl: what a user sees and is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from controller.dgdr import api
from controller.dgdr.validation import validate_dgdr
from profiler.request import PlanRequest
from tests.api.dgdr_cases import (
    INVALID,
    REFUSED_BY_CONTROLLER,
    SAMPLES_DIR,
    VALID_SLA,
    Invalid,
    load_samples,
    with_sla,
)
from tests.conftest import Kubectl
from tests.eventually import eventually

pytestmark = pytest.mark.cluster
SAMPLES = load_samples()


def _apply(kubectl: Kubectl, ns: str, obj: dict[str, Any], check: bool = True) -> Any:
    return kubectl("apply", "-f", "-", input=json.dumps(obj), namespace=ns, check=check)


def _get(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        kubectl("get", "dgdr", name, "-o", "json", namespace=ns).stdout
    )
    return out


def _set_status(kubectl: Kubectl, ns: str, name: str, status: dict[str, Any]) -> None:
    kubectl(
        "patch", "dgdr", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}), namespace=ns,
    )  # fmt: skip


def _patch_spec(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any]) -> Any:
    return kubectl(
        "patch", "dgdr", name, "--type=merge", "-p", json.dumps({"spec": spec}),
        namespace=ns, check=False,
    )  # fmt: skip


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


# ---- samples, round trip, defaults ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_applies_and_round_trips(
    crds: list[str], kubectl: Kubectl, namespace: str, name: str
) -> None:
    path = SAMPLES_DIR / f"{name}.yaml"
    out = kubectl("apply", "-f", str(path), namespace=namespace).stdout
    assert "created" in out
    stored = _get(kubectl, namespace, SAMPLES[name]["metadata"]["name"])
    model = api.DynamoGraphDeploymentRequest.model_validate(stored)
    assert model.to_dict() == stored
    # what the user wrote is there, unchanged, under the defaults the server added
    for key, value in SAMPLES[name]["spec"].items():
        if not isinstance(value, dict):
            assert stored["spec"][key] == value


def test_round_trip_with_a_full_status(crds: list[str], kubectl: Kubectl, namespace: str) -> None:
    obj = SAMPLES["auto-apply-false"]
    _apply(kubectl, namespace, obj)
    name = obj["metadata"]["name"]
    status = {
        "phase": "Ready",
        "dgdName": f"{name}-dgd",
        "profilingJobName": f"profile-{name}",
        "observedGeneration": 1,
        "conditions": [
            _condition("Validation", "True", "ValidationPassed", "DGDR spec validation passed"),
            _condition("Succeeded", "True", "SpecGenerated", "Profiling complete, spec available"),
        ],
        "profilingResults": {
            "selectedConfig": {
                "apiVersion": "nvidia.com/v1alpha1",
                "kind": "DynamoGraphDeployment",
                "metadata": {"name": f"{name}-dgd"},
                "spec": {"services": {"Frontend": {"replicas": 1}}},
            },
            "pareto": [{"config": {"tp": 2}}],
        },
        "deploymentInfo": {"replicas": 3, "availableReplicas": 2},
    }
    _set_status(kubectl, namespace, name, status)
    stored = _get(kubectl, namespace, name)
    assert stored["status"] == status
    model = api.DynamoGraphDeploymentRequest.model_validate(stored)
    assert model.phase is api.Phase.READY
    assert model.to_dict() == stored


def test_defaults_are_visible_on_the_stored_object(
    crds: list[str], kubectl: Kubectl, namespace: str
) -> None:
    obj = {
        "apiVersion": api.DGDR_API_VERSION,
        "kind": api.DGDR_KIND,
        "metadata": {"name": "defaults"},
        "spec": {
            "model": "Qwen/Qwen3-0.6B",
            "workload": {},
            "modelCache": {"pvcName": "cache"},
            "overrides": {},
            "features": {"mocker": {}, "kvRouter": {}},
        },
    }
    _apply(kubectl, namespace, obj)
    spec = _get(kubectl, namespace, "defaults")["spec"]
    assert spec["backend"] == api.DEFAULT_BACKEND == "auto"
    assert spec["searchStrategy"] == api.DEFAULT_SEARCH_STRATEGY == "rapid"
    assert spec["autoApply"] is True
    assert spec["workload"] == {"isl": 4000, "osl": 1000}
    assert spec["modelCache"] == {"pvcName": "cache", "pvcMountPath": "/opt/model-cache"}
    assert spec["overrides"] == {"trustRemoteCode": False}
    assert spec["features"] == {"mocker": {"enabled": False}, "kvRouter": {"enabled": False}}
    assert "sla" not in spec and "hardware" not in spec  # defaults only under a present parent
    # the models give the same defaults to the same input
    local = api.DGDRSpec.model_validate(obj["spec"]).model_dump(by_alias=True, exclude_none=True)
    assert local == spec


# ---- admission -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_request_is_rejected_naming_the_field(
    crds: list[str], kubectl: Kubectl, namespace: str, case: Invalid
) -> None:
    res = _apply(kubectl, namespace, case.obj(), check=False)
    assert res.returncode != 0, res.stdout
    assert case.field in res.stderr, res.stderr
    left = kubectl("get", "dgdr", "-o", "name", namespace=namespace).stdout
    assert left.strip() == ""


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("workload", "requestRate", 2e9),
        ("workload", "concurrency", 1e300),
        ("hardware", "vramMb", 2**31),
    ],
)
def test_the_api_server_bounds_the_load_and_vram_as_the_controller_does(
    crds: list[str], kubectl: Kubectl, namespace: str, section: str, field: str, value: float
) -> None:
    """Beyond the bounds the controller checks (the same constants, in the generated schema),
    the API server refuses the object itself, naming the field."""
    obj = Invalid("bounded", {section: {field: value}}, f"spec.{section}.{field}").obj()
    res = _apply(kubectl, namespace, obj, check=False)
    assert res.returncode != 0, res.stdout
    assert f"spec.{section}.{field}" in res.stderr and "less than or equal to" in res.stderr
    _, errors = validate_dgdr(obj)
    assert f"spec.{section}.{field}" in [e.path for e in errors]


@pytest.mark.parametrize(
    ("sla", "targets"), [c[1:] for c in VALID_SLA], ids=[c[0] for c in VALID_SLA]
)
def test_sla_pairing_is_upstreams(
    crds: list[str],
    kubectl: Kubectl,
    namespace: str,
    sla: dict[str, Any],
    targets: tuple[float | None, ...],
) -> None:
    """Only itl, only ttft, none, or e2eLatency (nulls beside it allowed): admitted as written,
    and what the controller then reads plans for upstream's defaults (ttft 2000, itl 30)."""
    # create, not apply: client-side apply drops nulls before they reach the server
    kubectl("create", "-f", "-", input=json.dumps(with_sla(sla)), namespace=namespace)
    stored = _get(kubectl, namespace, "sla")
    assert stored["spec"]["sla"] == sla
    model, errors = validate_dgdr(stored)
    assert errors == [] and model is not None
    req = PlanRequest.from_spec(model.spec.to_dict())
    assert (req.ttft_ms, req.itl_ms, req.e2e_latency_ms) == targets


@pytest.mark.parametrize("case", REFUSED_BY_CONTROLLER, ids=lambda c: c.id)
def test_explicit_null_target_is_kept_for_the_controller_to_refuse(
    crds: list[str], kubectl: Kubectl, namespace: str, case: Invalid
) -> None:
    """CEL sees a null field as a missing one: the API server admits ``ttft: null``, keeps the
    null (the field is nullable), and the controller's validation refuses it as the profiler's
    command line does, naming the field."""
    obj = case.obj()
    kubectl("create", "-f", "-", input=json.dumps(obj), namespace=namespace)
    stored = _get(kubectl, namespace, obj["metadata"]["name"])
    assert stored["spec"]["sla"] == obj["spec"]["sla"]  # the null is there
    _, errors = validate_dgdr(stored)
    assert case.field in [e.path for e in errors], errors


# ---- kubectl UX ----------------------------------------------------------------------------


def test_kubectl_explain_teaches_the_sla(crds: list[str], kubectl: Kubectl) -> None:
    # The OpenAPI document is published a moment after the CRD is Established.
    def explained() -> Any:
        res = kubectl("explain", "dgdr.spec.sla", check=False)
        assert res.returncode == 0, res.stderr
        return res

    res = eventually(explained, timeout=60, interval=0.5, message="kubectl explain dgdr.spec.sla")
    text = " ".join(res.stdout.split())
    assert "KIND: DynamoGraphDeploymentRequest" in text
    assert "VERSION: nvidia.com/v1beta1" in text or "VERSION: v1beta1" in text
    assert "Latency targets, in milliseconds" in text
    for field, words in {
        "ttft": "Target time to first token",
        "itl": "Target inter-token latency",
        "e2eLatency": "Target end-to-end request latency",
        "optimizationType": "What to favour",
    }.items():
        assert field in text and words in text, field
    enum = " ".join(kubectl("explain", "dgdr.spec.sla.optimizationType").stdout.split())
    assert "ENUM: latency throughput" in enum
    top = " ".join(kubectl("explain", "dgdr").stdout.split())
    assert "immutable once profiling has started" in top
    hw = " ".join(kubectl("explain", "dgdr.spec.hardware.gpuSku").stdout.split())
    assert "h100_sxm" in hw and "gb10" in hw


def test_kubectl_get_shows_the_columns(crds: list[str], kubectl: Kubectl, namespace: str) -> None:
    obj = SAMPLES["sla-ttft-itl"]
    name = obj["metadata"]["name"]
    _apply(kubectl, namespace, obj)
    _set_status(
        kubectl, namespace, name,
        {
            "phase": "Profiling",
            "profilingPhase": "SweepingPrefill",
            "dgdName": f"{name}-dgd",
            "conditions": [_condition("Succeeded", "False", "Profiling", "Profiling-in-progress")],
        },
    )  # fmt: skip
    lines = kubectl("get", "dgdr", namespace=namespace).stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "MODEL", "BACKEND", "PHASE", "PROFILING", "REASON", "DGD", "AGE",
    ]  # fmt: skip
    row = lines[1].split()
    assert row[:7] == [
        name, obj["spec"]["model"], "vllm", "Profiling", "SweepingPrefill", "Profiling",
        f"{name}-dgd",
    ]  # fmt: skip
    # The long message (priority 1) only with -o wide.
    wide = kubectl("get", "dgdr", "-o", "wide", namespace=namespace).stdout.splitlines()
    assert wide[0].split() == [
        "NAME", "MODEL", "BACKEND", "PHASE", "PROFILING", "REASON", "MESSAGE", "DGD", "AGE",
    ]  # fmt: skip
    assert "Profiling-in-progress" in wide[1]
    # the short name, the full name and the category all find it
    for resource in ("dynamographdeploymentrequests", "dynamographdeploymentrequest", "dynamo"):
        out = kubectl("get", resource, "-o", "name", namespace=namespace).stdout
        assert f"dynamographdeploymentrequest.nvidia.com/{name}" in out, resource


def test_kubectl_wait_on_the_succeeded_condition(
    crds: list[str], kubectl: Kubectl, namespace: str
) -> None:
    obj = SAMPLES["minimal"]
    name = obj["metadata"]["name"]
    _apply(kubectl, namespace, obj)
    _set_status(
        kubectl, namespace, name,
        {"phase": "Deployed", "observedGeneration": 1,
         "conditions": [_condition("Succeeded", "True", "Deployed", "Deployment is healthy")]},
    )  # fmt: skip
    kubectl(
        "wait", f"dgdr/{name}", "--for=condition=Succeeded", "--timeout=20s", namespace=namespace
    )


# ---- immutability --------------------------------------------------------------------------


def _create(kubectl: Kubectl, ns: str, auto_apply: bool = True) -> str:
    obj = yaml.safe_load((SAMPLES_DIR / "sla-ttft-itl.yaml").read_text())
    obj["spec"]["autoApply"] = auto_apply
    _apply(kubectl, ns, obj)
    name: str = obj["metadata"]["name"]
    return name


@pytest.mark.parametrize("phase", ["Pending", "Failed"])
def test_spec_may_change_before_profiling_and_after_failure(
    crds: list[str], kubectl: Kubectl, namespace: str, phase: str
) -> None:
    name = _create(kubectl, namespace)
    _set_status(kubectl, namespace, name, {"phase": phase})
    res = _patch_spec(kubectl, namespace, name, {"sla": {"ttft": 250}})
    assert res.returncode == 0, res.stderr
    assert _get(kubectl, namespace, name)["spec"]["sla"]["ttft"] == 250


@pytest.mark.parametrize("phase", ["Profiling", "Deploying", "Ready", "Deployed"])
def test_spec_is_frozen_once_profiling_has_started(
    crds: list[str], kubectl: Kubectl, namespace: str, phase: str
) -> None:
    name = _create(kubectl, namespace)
    _set_status(kubectl, namespace, name, {"phase": phase})
    for change in (
        {"sla": {"ttft": 250}},
        {"model": "Qwen/Qwen3-0.6B"},
        {"hardware": {"totalGpus": 4}},
        {"autoApply": False},
        {"runtimeVersionOverride": "1.2.0"},
        {"features": {"planner": {}}},  # adding a free-form object is seen too
    ):
        res = _patch_spec(kubectl, namespace, name, change)
        assert res.returncode != 0, change
        assert f"spec is immutable in phase {phase}" in res.stderr, res.stderr
    # metadata and status stay writable: finalizers, annotations, the controller's status
    kubectl(
        "patch", "dgdr", name, "--type=merge",
        "-p", json.dumps({"metadata": {"finalizers": [api.FINALIZER], "annotations": {"a": "b"}}}),
        namespace=namespace,
    )  # fmt: skip
    _set_status(kubectl, namespace, name, {"phase": phase, "dgdName": "x"})
    # and the finalizer can be removed during deletion
    kubectl("delete", "dgdr", name, "--wait=false", namespace=namespace)
    unfinalize = '[{"op": "remove", "path": "/metadata/finalizers"}]'
    kubectl("patch", "dgdr", name, "--type=json", "-p", unfinalize, namespace=namespace)
    kubectl("wait", f"dgdr/{name}", "--for=delete", "--timeout=20s", namespace=namespace)


def test_auto_apply_false_may_be_switched_on_in_ready_only(
    crds: list[str], kubectl: Kubectl, namespace: str
) -> None:
    name = _create(kubectl, namespace, auto_apply=False)
    _set_status(kubectl, namespace, name, {"phase": "Profiling"})
    # in Profiling: the runtime version may change, autoApply may not become true
    assert (
        _patch_spec(kubectl, namespace, name, {"runtimeVersionOverride": "1.2.0"}).returncode == 0
    )
    res = _patch_spec(kubectl, namespace, name, {"autoApply": True})
    assert res.returncode != 0 and "spec is immutable in phase Profiling" in res.stderr
    assert _patch_spec(kubectl, namespace, name, {"sla": {"ttft": 999}}).returncode != 0
    # in Ready: autoApply may become true; after that the spec is frozen for good
    _set_status(kubectl, namespace, name, {"phase": "Ready"})
    assert (
        _patch_spec(kubectl, namespace, name, {"runtimeVersionOverride": "1.3.0"}).returncode == 0
    )
    assert _patch_spec(kubectl, namespace, name, {"autoApply": True}).returncode == 0
    res = _patch_spec(kubectl, namespace, name, {"autoApply": False})
    assert res.returncode != 0 and "spec is immutable in phase Ready" in res.stderr
    spec = _get(kubectl, namespace, name)["spec"]
    assert (spec["autoApply"], spec["runtimeVersionOverride"]) == (True, "1.3.0")
