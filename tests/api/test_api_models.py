"""The models and validate_dgdr on their own: samples pass, every invalid case names its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.dgdr import api
from controller.dgdr.validation import path_of, rule_errors, validate_dgdr
from profiler.errors import SpecError
from profiler.request import PlanRequest, validate_spec
from tests.api.dgdr_cases import (
    INVALID,
    NULL,
    REFUSED_BY_CONTROLLER,
    VALID_SLA,
    Invalid,
    as_planned,
    load_samples,
    with_sla,
)

SAMPLES = load_samples()


def test_the_seven_samples_are_there() -> None:
    assert set(SAMPLES) == {
        "minimal",
        "sla-ttft-itl",
        "e2e-latency-request-rate",
        "planner",
        "moe-multinode",
        "auto-apply-false",
        "model-cache",
    }
    assert SAMPLES["minimal"]["spec"] == {"model": "Qwen/Qwen3-0.6B"}
    for name, obj in SAMPLES.items():
        assert "image" not in obj["spec"], name  # the controller defaults it
        if name != "minimal":
            hw = obj["spec"]["hardware"]
            assert {"gpuSku", "numGpusPerNode", "totalGpus", "vramMb"} <= set(hw), name
    moe = SAMPLES["moe-multinode"]["spec"]["hardware"]
    assert moe["totalGpus"] > moe["numGpusPerNode"]  # really more than one node


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_valid_as_the_controller_plans_it(name: str) -> None:
    model, errors = validate_dgdr(as_planned(SAMPLES[name]))
    assert errors == []
    assert model is not None
    assert model.metadata.name == SAMPLES[name]["metadata"]["name"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_round_trips_through_the_models(name: str) -> None:
    obj = SAMPLES[name]
    model = api.DynamoGraphDeploymentRequest.model_validate(obj)
    assert model.to_dict() == obj


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_valid_as_written(name: str) -> None:
    """No image, maybe no hardware: the controller fills those in, so they are not errors."""
    assert validate_dgdr(SAMPLES[name])[1] == []


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"model": "Qwen/Qwen3-0.6B", "overrides": {"dgd": {
            "apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment",
            "spec": {"services": {"A": 1}}}}},
         "spec.overrides.dgd.spec.services.A"),
        ({"model": "deepseek-ai/DeepSeek-R1", "hardware": {"gpuSku": "l4", "totalGpus": 1}},
         "spec.hardware.totalGpus"),
        ({"model": "Qwen/Qwen3-0.6B", "features": {"planner": {"optimization_target": "x"}}},
         "spec.features.planner.optimization_target"),
    ],
)  # fmt: skip
def test_semantic_checks_report_what_the_schema_cannot(spec: dict[str, Any], path: str) -> None:
    model, errors = validate_dgdr({"metadata": {"name": "s"}, "spec": spec})
    assert model is not None
    assert path in [e.path for e in errors], [str(e) for e in errors]
    _, structural = validate_dgdr({"metadata": {"name": "s"}, "spec": spec}, semantic=False)
    assert structural == []


def test_a_model_only_the_hub_knows_is_checked_when_profiled_not_when_validated() -> None:
    """Validation makes no network call: the profiler fetches the model's config.json."""
    assert validate_dgdr({"metadata": {"name": "s"}, "spec": {"model": "no-such/model"}})[1] == []


def test_fields_the_controller_fills_are_not_required_but_are_checked_when_given() -> None:
    # left out: the controller defaults the image and discovers the budget (maybe 32 GPUs)
    spec: dict[str, Any] = {"model": "deepseek-ai/DeepSeek-R1", "hardware": {"gpuSku": "h200_sxm"}}
    assert validate_dgdr({"spec": spec})[1] == []
    # given, and too small for the model: an error of this object
    spec["hardware"]["totalGpus"] = 1
    assert [e.path for e in validate_dgdr({"spec": spec})[1]] == ["spec.hardware.totalGpus"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_case_is_reported_at_its_field(case: Invalid) -> None:
    _, errors = validate_dgdr(case.obj())
    paths = [e.path for e in errors]
    assert case.field in paths, [str(e) for e in errors]
    assert all(e.message for e in errors)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_case_is_caught_without_the_profiler(case: Invalid) -> None:
    """Structure and the CEL rules alone catch every case, as the API server does."""
    _, errors = validate_dgdr(case.obj(), semantic=False)
    assert case.field in [e.path for e in errors]


def test_errors_are_collected_not_first_only() -> None:
    obj = Invalid("many", {}, "").obj()
    obj["spec"].update(
        model=" ",
        sla={"ttft": -1},
        workload={"concurrency": 1, "requestRate": 1},
        searchStrategy="thorough",
        backend="auto",
        runtimeVersionOverride="x",
        unknown=1,
    )
    obj["metadata"]["name"] = "n" * 80
    _, errors = validate_dgdr(obj)
    paths = {e.path for e in errors}
    assert {
        "spec.model",
        "spec.sla.ttft",
        "spec.workload.concurrency",
        "spec.backend",
        "spec.runtimeVersionOverride",
        "spec.unknown",
        "metadata.name",
    } <= paths
    assert len(paths) == len(errors), "one error per field: later layers do not repeat earlier ones"


def test_a_rule_failure_still_returns_the_model() -> None:
    """The caller needs the parsed object (name, status) to report the failure on it."""
    model, errors = validate_dgdr(Invalid("x", {"sla": {"itl": NULL}}, "").obj())
    assert errors and model is not None and model.metadata.name == "bad"


# ---- SLA pairing: one validator chain (CRD rules, validate_dgdr, the profiler's reader) --------


@pytest.mark.parametrize(
    ("sla", "targets"), [c[1:] for c in VALID_SLA], ids=[c[0] for c in VALID_SLA]
)
def test_sla_left_out_takes_upstreams_default(
    sla: dict[str, Any], targets: tuple[float | None, ...]
) -> None:
    obj = with_sla(sla)
    model, errors = validate_dgdr(obj)
    assert errors == [] and model is not None
    assert validate_spec(obj["spec"]) == []  # the raw spec, nulls and all, as a file gives it
    for spec in (obj["spec"], model.spec.to_dict()):
        req = PlanRequest.from_spec(spec)
        assert (req.ttft_ms, req.itl_ms, req.e2e_latency_ms) == targets


@pytest.mark.parametrize("case", REFUSED_BY_CONTROLLER, ids=lambda c: c.id)
def test_explicit_null_target_is_refused_by_the_rule_layer(case: Invalid) -> None:
    _, errors = validate_dgdr(case.obj(), semantic=False)
    assert case.field in [e.path for e in errors]
    assert all("must not be null" in e.message for e in errors), errors


SLA_CASES = [c for c in (*INVALID, *REFUSED_BY_CONTROLLER) if c.field.startswith("spec.sla.")]


@pytest.mark.parametrize("case", SLA_CASES, ids=lambda c: c.id)
def test_profiler_refuses_what_the_controller_refuses(case: Invalid) -> None:
    """``python -m profiler plan`` reads the same file the API server would refuse."""
    with pytest.raises(SpecError) as info:
        PlanRequest.from_spec(case.spec())
    assert case.field in {e.path for e in info.value.errors}


def test_structure_failure_returns_no_model() -> None:
    model, errors = validate_dgdr({"spec": {"model": 5}}, semantic=False)
    assert model is None
    assert [str(e) for e in errors] == ["spec.model: must be a string"]


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({}, "spec"),
        ({"spec": None}, "spec"),
        ({"spec": []}, "spec"),
        ({"spec": {"model": "m"}, "metadata": {"name": 3}}, "metadata.name"),
        ({"spec": {"model": "m"}, "metadata": {"labels": {"a": 1}}}, "metadata.labels.a"),
        ({"spec": {"model": "m"}, "status": {"phase": "Done"}}, "status.phase"),
        (
            {"spec": {"model": "m"}, "status": {"conditions": [{"type": "X"}]}},
            "status.conditions[0].status",
        ),
    ],
)
def test_structural_errors_name_the_path(obj: dict[str, Any], path: str) -> None:
    _, errors = validate_dgdr(obj, semantic=False)
    assert path in [e.path for e in errors], [str(e) for e in errors]


def test_not_a_mapping() -> None:
    model, errors = validate_dgdr(["not", "an", "object"])  # type: ignore[arg-type]
    assert model is None and errors[0].path == "spec"


def test_rule_errors_tolerate_any_types() -> None:
    weird: dict[str, Any] = {
        "metadata": [],
        "spec": {"sla": [1], "workload": "x", "overrides": {"dgd": 3}, "backend": {"a": 1}},
    }
    assert rule_errors(weird) == []
    weird["spec"]["searchStrategy"] = "thorough"
    assert [e.path for e in rule_errors(weird)] == ["spec.backend"]


def test_defaults_of_the_models() -> None:
    spec = api.DGDRSpec(model="Qwen/Qwen3-0.6B")
    assert (spec.backend, spec.search_strategy, spec.auto_apply) == ("auto", "rapid", True)
    assert (api.WorkloadSpec().isl, api.WorkloadSpec().osl) == (4000, 1000)
    assert api.ModelCacheSpec().pvc_mount_path == "/opt/model-cache"
    assert spec.to_dict() == {
        "model": "Qwen/Qwen3-0.6B",
        "backend": "auto",
        "searchStrategy": "rapid",
        "autoApply": True,
    }


def test_models_are_strict_like_the_api_server() -> None:
    for bad in (
        {"ttft": "500", "itl": 1},
        {"ttft": True, "itl": 1},
        {"ttft": float("nan"), "itl": 1},
    ):
        _, errors = validate_dgdr({"spec": {"model": "m", "sla": bad}}, semantic=False)
        assert [e.path for e in errors] == ["spec.sla.ttft"], bad


def test_camel_case_aliases_and_snake_case_names_both_work() -> None:
    by_alias = api.SLASpec.model_validate({"e2eLatency": 100, "optimizationType": "latency"})
    by_name = api.SLASpec(e2e_latency=100, optimization_type="latency")
    assert by_alias == by_name
    assert by_alias.model_dump(by_alias=True, exclude_none=True) == {
        "e2eLatency": 100.0,
        "optimizationType": "latency",
    }


def test_status_round_trips_with_fields_this_version_does_not_know() -> None:
    obj = copy.deepcopy(SAMPLES["auto-apply-false"])
    obj["status"] = {
        "phase": "Ready",
        "observedGeneration": 1,
        "dgdName": "llama-8b-review-dgd",
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "SpecGenerated",
                "message": "Profiling complete, spec available",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "profilingResults": {"selectedConfig": {"apiVersion": "nvidia.com/v1alpha1", "x": [1]}},
        "deploymentInfo": {"replicas": 2, "availableReplicas": 1},
        "futureField": {"kept": True},
    }
    model = api.DynamoGraphDeploymentRequest.model_validate(obj)
    assert model.phase is api.Phase.READY
    assert model.status is not None
    cond = model.status.condition("Succeeded")
    assert cond is not None and cond.reason == api.Reason.SPEC_GENERATED
    assert model.to_dict() == obj


def test_phase_defaults_to_pending() -> None:
    model = api.DynamoGraphDeploymentRequest.model_validate({"spec": {"model": "m"}})
    assert model.phase is api.Phase.PENDING
    model = api.DynamoGraphDeploymentRequest.model_validate({"spec": {"model": "m"}, "status": {}})
    assert model.phase is api.Phase.PENDING


def test_path_of() -> None:
    assert path_of(("spec", "sla", "ttft")) == "spec.sla.ttft"
    assert path_of(("status", "conditions", 2, "type")) == "status.conditions[2].type"
    assert path_of(()) == "spec"


@pytest.mark.parametrize(
    ("phase", "reason"),
    [
        ("SweepingPrefill", "SweepingPrefillFailed"),
        ("GeneratingDGD", "GeneratingDGDFailed"),
        ("Done", "ProfilingFailed"),
        (None, "ProfilingFailed"),
        ("Bogus", "ProfilingFailed"),
    ],
)
def test_profiling_failed_reason(phase: str | None, reason: str) -> None:
    assert api.profiling_failed_reason(phase) == reason
    assert reason in {r.value for r in api.Reason}


def test_every_profiling_phase_has_a_reason() -> None:
    reasons = {r.value for r in api.Reason}
    for phase in api.ProfilingPhase:
        if phase is not api.ProfilingPhase.DONE:
            assert phase.value in reasons and f"{phase.value}Failed" in reasons


def test_dgd_status_sums_replicas_and_tolerates_unknown_shapes() -> None:
    dgd = api.DynamoGraphDeployment.model_validate(
        {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": "d"},
            "spec": {"services": {}},
            "status": {
                "state": "successful",
                "services": {
                    "Frontend": {"replicas": 1, "availableReplicas": 1},
                    "VllmWorker": {"replicas": 3, "availableReplicas": 2, "extra": "kept"},
                },
                "somethingNew": [1, 2],
            },
        }
    )
    assert dgd.status is not None and dgd.status.state == api.DGD_STATE_SUCCESSFUL
    info = dgd.status.deployment_info()
    assert (info.replicas, info.available_replicas) == (4, 3)


def test_resources_and_names() -> None:
    assert api.DGDR_RESOURCE.path("ns", "x") == (
        "/apis/nvidia.com/v1beta1/namespaces/ns/dynamographdeploymentrequests/x"
    )
    assert api.DGD_RESOURCE.api_version == api.DGD_API_VERSION == "nvidia.com/v1alpha1"
    assert api.DGDR_RESOURCE.api_version == api.DGDR_API_VERSION
    assert api.FINALIZER == "nvidia.com/finalizer"
    assert (api.LABEL_DGDR_NAME, api.LABEL_DGDR_NAMESPACE) == (
        "dgdr.nvidia.com/name",
        "dgdr.nvidia.com/namespace",
    )
    assert api.ANNOTATION_GENERATED_DGD_SPEC == "nvidia.com/generated-dgd-spec"
    assert api.ANNOTATION_ADDITIONAL_RESOURCES == "dgdr.nvidia.com/additional-resources"


@pytest.mark.parametrize("name", sorted(n for n in SAMPLES if "hardware" in SAMPLES[n]["spec"]))
def test_sample_with_hardware_plans_without_node_discovery(name: str) -> None:
    from profiler.plan import plan
    from profiler.request import PlanRequest

    model, errors = validate_dgdr(as_planned(SAMPLES[name]))
    assert model is not None and errors == []
    result = plan(PlanRequest.from_spec(model.spec.to_dict(), dgdr_name=name))
    assert result.dgd["metadata"]["name"] == f"{name}-dgd"
    assert result.chosen.gpus <= SAMPLES[name]["spec"]["hardware"]["totalGpus"]
