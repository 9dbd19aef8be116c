"""Reading and checking a DGDR spec: defaults, every error at once, each naming its field."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from profiler import PlanRequest, plan, validate_spec
from profiler.errors import NotAvailableError, SpecError

IMAGE = "registry.example/ai-dynamo/dynamo-frontend:1.1.1"


# overrides.dgd is an embedded resource: apiVersion and kind are required (the CRD's rule).
DGD_KIND = {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment"}


def spec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "Qwen/Qwen3-0.6B",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm"},
    }
    base.update(kw)
    return base


def paths(s: dict[str, Any]) -> set[str]:
    return {e.path for e in validate_spec(s)}


def test_minimal_spec_gets_dgdr_and_profiler_defaults() -> None:
    req = PlanRequest.from_spec(spec(), dgdr_name="small", namespace="team-a")
    assert req.backend == "auto" and req.backends == ("vllm", "sglang", "trtllm")
    assert req.search_strategy == "rapid"
    assert (req.isl, req.osl) == (4000, 1000)
    assert (req.ttft_ms, req.itl_ms, req.e2e_latency_ms) == (2000.0, 30.0, None)
    assert req.num_gpus_per_node == 8 and req.total_gpus == 8  # one node of the hardware table
    assert req.dgd_name == "small-dgd"
    assert req.picking_mode == "default"
    assert pickle.loads(pickle.dumps(req)) == req


def test_every_error_is_reported_at_once_with_its_field_path() -> None:
    bad = spec(
        backend="tensorflow",
        hardware={"gpuSku": "H100-SXM5-80GB", "totalGpus": -2},
        workload={"isl": 0, "concurrency": 4, "requestRate": 2},
        sla={"ttft": -1, "itl": 10},
        runtimeVersionOverride="v1.2",
    )
    with pytest.raises(SpecError) as info:
        PlanRequest.from_spec(bad)
    got = {e.path for e in info.value.errors}
    assert {
        "spec.backend",
        "spec.hardware.gpuSku",
        "spec.hardware.totalGpus",
        "spec.workload.isl",
        "spec.workload.concurrency",
        "spec.sla.ttft",
        "spec.runtimeVersionOverride",
    } <= got
    assert got == paths(bad)
    assert "spec.sla.ttft: must be greater than 0" in str(info.value)


def test_sla_rules() -> None:
    assert "spec.sla.e2eLatency" in paths(spec(sla={"e2eLatency": 9000, "ttft": 500, "itl": 20}))
    assert "spec.sla.optimizationType" in paths(spec(sla={"optimizationType": "cheapest"}))
    req = PlanRequest.from_spec(spec(sla={"e2eLatency": 9000}))
    assert (req.ttft_ms, req.itl_ms, req.e2e_latency_ms) == (None, None, 9000.0)
    assert validate_spec(spec(sla={"ttft": 300, "itl": 12, "optimizationType": "latency"})) == []


@pytest.mark.parametrize(
    ("sla", "targets"),
    [
        ({"itl": 20}, (2000.0, 20.0)),  # upstream's SLASpec default ttft 2000 ms
        ({"ttft": 400}, (400.0, 30.0)),  # ... and itl 30 ms
        ({"itl": 20, "optimizationType": "throughput"}, (2000.0, 20.0)),
        ({}, (2000.0, 30.0)),
    ],
    ids=["only-itl", "only-ttft", "only-itl-with-type", "neither"],
)
def test_sla_target_left_out_takes_its_default(
    sla: dict[str, Any], targets: tuple[float, float]
) -> None:
    assert validate_spec(spec(sla=sla)) == []
    req = PlanRequest.from_spec(spec(sla=sla))
    assert (req.ttft_ms, req.itl_ms, req.e2e_latency_ms) == (*targets, None)


@pytest.mark.parametrize(
    ("sla", "field"),
    [
        ({"ttft": None, "itl": 20}, "spec.sla.ttft"),  # explicitly null: a conflict, no default
        ({"ttft": 400, "itl": None}, "spec.sla.itl"),
        ({"ttft": None}, "spec.sla.ttft"),
        ({"e2eLatency": 9000, "ttft": 500}, "spec.sla.e2eLatency"),
        ({"e2eLatency": 9000, "itl": 20}, "spec.sla.e2eLatency"),
        ({"e2eLatency": 9000, "ttft": None, "itl": 20}, "spec.sla.e2eLatency"),
    ],
    ids=["null-ttft", "null-itl", "only-null-ttft", "e2e-and-ttft", "e2e-and-itl", "e2e-null-itl"],
)
def test_sla_explicit_conflict_is_refused(sla: dict[str, Any], field: str) -> None:
    assert paths(spec(sla=sla)) == {field}
    with pytest.raises(SpecError) as info:
        PlanRequest.from_spec(spec(sla=sla))
    assert f"{field}: " in str(info.value)


def test_sla_nulls_beside_e2e_latency_are_upstreams_e2e_only_form() -> None:
    req = PlanRequest.from_spec(spec(sla={"e2eLatency": 9000, "ttft": None, "itl": None}))
    assert (req.ttft_ms, req.itl_ms, req.e2e_latency_ms) == (None, None, 9000.0)


@pytest.mark.parametrize(
    ("sla", "refused"),
    [({"itl": 25}, None), ({"ttft": None, "itl": 25}, "spec.sla.ttft")],
    ids=["only-itl", "null-ttft"],
)
def test_plan_command_accepts_and_refuses_as_the_controller(
    tmp_path: Path, sla: dict[str, Any], refused: str | None
) -> None:
    """``python -m profiler plan FILE`` on a manifest the API server would admit or refuse."""
    manifest = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": "pairing"},
        "spec": spec(backend="vllm", sla=sla),
    }
    path = tmp_path / "dgdr.yaml"
    path.write_text(yaml.safe_dump(manifest))
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-m", "profiler", "plan", str(path), "--json"],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
    )
    if refused is None:
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["dgd"]["metadata"]["name"] == "pairing-dgd"
    else:
        assert run.returncode == 2 and refused in run.stderr, run.stderr


def test_load_fields_select_load_match_and_are_exclusive() -> None:
    assert PlanRequest.from_spec(spec(workload={"requestRate": 3})).picking_mode == "load_match"
    assert PlanRequest.from_spec(spec(workload={"concurrency": 30})).picking_mode == "load_match"
    errs = validate_spec(spec(workload={"requestRate": 3, "concurrency": 30}))
    assert [e.path for e in errs] == ["spec.workload.concurrency"]
    assert "mutually exclusive" in errs[0].message


def test_thorough_needs_a_concrete_backend_and_is_refused_at_plan_time() -> None:
    errs = validate_spec(spec(searchStrategy="thorough"))
    assert [e.path for e in errs] == ["spec.backend"]
    req = PlanRequest.from_spec(spec(searchStrategy="thorough", backend="vllm"))
    with pytest.raises(NotAvailableError, match="not available without a cluster"):
        plan(req)


def test_hardware_is_required_for_planning_and_the_sku_must_be_known() -> None:
    errs = validate_spec({"model": "Qwen/Qwen3-0.6B", "image": IMAGE})
    assert [e.path for e in errs] == ["spec.hardware.gpuSku"]
    assert "required" in errs[0].message
    errs = validate_spec(spec(hardware={"gpuSku": "h100"}))
    assert [e.path for e in errs] == ["spec.hardware.gpuSku"] and "h100_sxm" in errs[0].message


def test_node_shape_and_vram_from_the_spec_override_the_table() -> None:
    req = PlanRequest.from_spec(
        spec(hardware={"gpuSku": "a100_sxm", "numGpusPerNode": 4, "vramMb": 40960})
    )
    assert req.num_gpus_per_node == 4 and req.total_gpus == 4
    assert req.gpu.memory_gib == pytest.approx(40.0)


def test_unknown_model_asks_for_a_config_json() -> None:
    # Validating makes no network call: a model only the Hub may know is checked when profiled.
    assert validate_spec(spec(model="acme/never-heard-of-it-7b")) == []
    # Planning with no Hub to ask: the error says how to give the model's config.json.
    with pytest.raises(SpecError) as err:
        PlanRequest.from_spec(spec(model="acme/never-heard-of-it-7b"))
    assert [e.path for e in err.value.errors] == ["spec.model"]
    assert "config.json" in err.value.errors[0].message and "HF_ENDPOINT" in str(err.value)


def test_unknown_model_resolves_from_the_model_cache_config_json(tmp_path: Path) -> None:
    model_dir = tmp_path / "hub" / "acme-7b"
    model_dir.mkdir(parents=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16",
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    s = spec(
        model="acme/acme-7b",
        modelCache={
            "pvcName": "cache",
            "pvcMountPath": str(tmp_path),
            "pvcModelPath": "hub/acme-7b",
        },
    )
    assert validate_spec(s) == []
    req = PlanRequest.from_spec(s)
    assert req.arch.layers == 32 and req.arch.kv_heads == 8
    assert req.model_cache is not None and req.model_cache.model_dir == str(model_dir)


def test_budget_too_small_says_how_many_gpus_the_model_needs() -> None:
    errs = validate_spec(spec(model="meta-llama/Llama-3.1-405B", hardware={"gpuSku": "l4"}))
    assert [e.path for e in errs] == ["spec.hardware.totalGpus"]
    assert "needs at least" in errs[0].message and "budget is 8" in errs[0].message
    need = int(errs[0].message.split("needs at least ")[1].split()[0])
    ok = spec(model="meta-llama/Llama-3.1-405B", hardware={"gpuSku": "l4", "totalGpus": need})
    assert validate_spec(ok) == []


def test_planner_gate_checks() -> None:
    no_sweep = {"optimization_target": "sla", "pre_deployment_sweeping_mode": "none"}
    assert "spec.features.planner.pre_deployment_sweeping_mode" in paths(
        spec(features={"planner": no_sweep})
    )
    mocker = {"planner": {"pre_deployment_sweeping_mode": "none"}, "mocker": {"enabled": True}}
    assert "spec.features.mocker.enabled" in paths(spec(features=mocker))
    assert "spec.features.planner" in paths(spec(features={"planner": "yes"}))
    intervals = {
        "throughput_adjustment_interval_seconds": 10,
        "load_adjustment_interval_seconds": 30,
    }
    assert "spec.features.planner.load_adjustment_interval_seconds" in paths(
        spec(features={"planner": intervals})
    )
    # {} is a default PlannerConfig: load scaling on, so the planner is enabled
    assert PlanRequest.from_spec(spec(features={"planner": {}})).picking_mode == "autoscale"
    off = {"optimization_target": "sla", "enable_throughput_scaling": False}
    assert PlanRequest.from_spec(spec(features={"planner": off})).planner_enabled is False


def test_dgd_name_plus_service_name_is_limited_to_45_characters() -> None:
    long_name = "a-very-long-dgdr-name-for-testing-limits"  # + "-dgd-" + service > 45
    with pytest.raises(SpecError) as info:
        PlanRequest.from_spec(spec(), dgdr_name=long_name)
    assert [e.path for e in info.value.errors] == ["metadata.name"]
    assert "shorten" in str(info.value).lower()
    # an override name that fits is accepted, and becomes the DGD name
    ov = {"dgd": {**DGD_KIND, "metadata": {"name": "short"}}}
    req = PlanRequest.from_spec(spec(overrides=ov), dgdr_name=long_name)
    assert req.dgd_name == "short"
    # a name only short enough for sglang/trtllm's short service names drops vllm from auto
    mid = "x" * (45 - len("-dgd-VllmPrefillWorker") + 1)
    req = PlanRequest.from_spec(spec(), dgdr_name=mid)
    assert "vllm" not in req.backends and req.backends


def test_trtllm_is_rejected_on_amd_and_left_out_of_auto() -> None:
    assert "spec.backend" in paths(spec(backend="trtllm", hardware={"gpuSku": "mi300"}))
    req = PlanRequest.from_spec(spec(hardware={"gpuSku": "mi300"}))
    assert req.backends == ("vllm", "sglang")


def test_overrides_and_features_are_read() -> None:
    tol = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    req = PlanRequest.from_spec(
        spec(
            runtimeVersionOverride="1.2.0",
            features={"kvRouter": {"enabled": True}, "mocker": {"enabled": True}},
            overrides={
                "trustRemoteCode": True,
                "dgd": {**DGD_KIND, "spec": {"services": {"Frontend": {"replicas": 2}}}},
                "profilingJob": {"template": {"spec": {"containers": [], "tolerations": [tol]}}},
            },
        )
    )
    assert req.kv_router and req.mocker and req.trust_remote_code
    assert req.runtime_version_override == "1.2.0"
    assert req.tolerations == (tol,)
    assert req.overrides_dgd == {**DGD_KIND, "spec": {"services": {"Frontend": {"replicas": 2}}}}
    assert "spec.overrides.trustRemoteCode" in paths(spec(overrides={"trustRemoteCode": "yes"}))
    assert "spec.overrides.dgd.metadata.name" in paths(
        spec(overrides={"dgd": {**DGD_KIND, "metadata": {"name": "Not_A_Name"}}})
    )


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"model": 5, "sla": "fast", "hardware": [], "workload": {"isl": "long"}},
        {"model": "", "features": {"mocker": {"enabled": "on"}}},
    ],
)
def test_validate_spec_never_raises_and_names_fields(garbage: dict[str, Any]) -> None:
    errs = validate_spec(garbage)
    assert errs and all(e.path.startswith("spec") for e in errs)


def test_before_hardware_discovery_a_missing_sku_is_not_an_error() -> None:
    s = {"model": "Qwen/Qwen3-8B", "image": IMAGE, "sla": {"ttft": -1, "itl": 10}}
    assert [e.path for e in validate_spec(s, require_hardware=False)] == ["spec.sla.ttft"]
    assert "spec.hardware.gpuSku" in paths(s)
    unknown = {**s, "hardware": {"gpuSku": "tpu"}}
    assert "spec.hardware.gpuSku" in {
        e.path for e in validate_spec(unknown, require_hardware=False)
    }


def test_planner_needs_room_for_a_prefill_and_a_decode_worker() -> None:
    s = spec(hardware={"gpuSku": "h100_sxm", "totalGpus": 1}, features={"planner": {}})
    errs = validate_spec(s)
    assert [e.path for e in errs] == ["spec.hardware.totalGpus"]
    assert "at least 2 GPUs" in errs[0].message
    s["hardware"]["totalGpus"] = 2
    assert validate_spec(s) == []
