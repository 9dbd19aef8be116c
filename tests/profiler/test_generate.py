"""Generated DGDs: the stand-in CRD's shape, and upstream's conventions
(docs/dgdr-contract.md#generated-dgd and #planner-configmaps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from profiler import PlanRequest, plan
from profiler.errors import SpecError
from profiler.generate import build_dgd, derive_image, merge_overrides
from profiler.search import Candidate, Worker

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example:5000/ai-dynamo/dynamo-frontend:1.1.1"
BACKENDS = ("vllm", "sglang", "trtllm")
WORKER_NAMES = {
    "vllm": {
        "agg": "VllmDecodeWorker",  # upstream's agg.yaml name, not backend_components' VllmWorker
        "prefill": "VllmPrefillWorker",
        "decode": "VllmDecodeWorker",
    },
    "sglang": {"agg": "decode", "prefill": "prefill", "decode": "decode"},
    "trtllm": {"agg": "TRTLLMWorker", "prefill": "prefill", "decode": "decode"},
}


@pytest.fixture(scope="module")
def dgd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "deploy/crds/nvidia.com_dynamographdeployments.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def request(backend: str = "vllm", **kw: Any) -> PlanRequest:
    s: dict[str, Any] = {
        "model": "Qwen/Qwen3-30B-A3B",
        "backend": backend,
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 32},
    }
    s.update(kw)
    return PlanRequest.from_spec(s, dgdr_name="gen", namespace="team-a")


def candidate(backend: str, mode: str, *workers: Worker) -> Candidate:
    return Candidate(
        mode=mode,
        backend=backend,
        workers=workers,
        gpus=sum(w.gpus * w.replicas for w in workers),
        ttft_ms=100.0,
        itl_ms=10.0,
        tokens_s=1000.0,
        requests_s=1.0,
        meets_sla=True,
    )


AGG = Worker("agg", tp=4, pp=1, ep=1, dp=1, batch=64, replicas=2)
PREFILL = Worker("prefill", tp=2, pp=1, ep=1, dp=1, batch=2, replicas=3)
DECODE = Worker("decode", tp=8, pp=1, ep=8, dp=1, batch=128, replicas=1)  # TEP8
WIDE = Worker("decode", tp=1, pp=1, ep=16, dp=16, batch=256, replicas=1)  # DEP16, two nodes


def args_of(svc: dict[str, Any]) -> list[str]:
    args: list[str] = svc["extraPodSpec"]["mainContainer"]["args"]
    return args


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["agg", "disagg"])
def test_every_backend_and_layout_matches_the_crd_and_conventions(
    backend: str, mode: str, dgd_schema: dict[str, Any]
) -> None:
    req = request(backend)
    workers = (AGG,) if mode == "agg" else (PREFILL, DECODE)
    dgd, warnings = build_dgd(req, candidate(backend, mode, *workers))
    jsonschema.validate(dgd, dgd_schema)
    assert warnings == []
    assert (dgd["apiVersion"], dgd["kind"]) == ("nvidia.com/v1alpha1", "DynamoGraphDeployment")
    assert dgd["metadata"] == {"name": "gen-dgd", "namespace": "team-a"}
    assert dgd["spec"]["backendFramework"] == backend
    services = dgd["spec"]["services"]
    names = WORKER_NAMES[backend]
    assert set(services) == {"Frontend"} | {names[w.role] for w in workers}
    runtime = {"vllm": "vllm-runtime", "sglang": "sglang-runtime", "trtllm": "tensorrtllm-runtime"}
    image = f"registry.example:5000/ai-dynamo/{runtime[backend]}:1.1.1"
    assert services["Frontend"]["componentType"] == "frontend"
    assert services["Frontend"]["extraPodSpec"]["mainContainer"]["image"] == image
    for w in workers:
        svc = services[names[w.role]]
        main = svc["extraPodSpec"]["mainContainer"]
        assert svc["componentType"] == "worker"
        assert svc.get("subComponentType") == (None if w.role == "agg" else w.role)
        assert svc["replicas"] == w.replicas
        assert svc["resources"]["limits"]["gpu"] == str(min(w.gpus, 8))
        assert svc["envFromSecret"] == "hf-token-secret"
        assert main["image"] == image
        assert main["command"] == ["python3", "-m", f"dynamo.{backend}"]
        args = args_of(svc)
        if w.role == "agg":
            assert "--disaggregation-mode" not in args
        else:
            assert flag(args, "--disaggregation-mode") == w.role
        if backend == "vllm":
            assert flag(args, "--model") == "Qwen/Qwen3-30B-A3B"
            assert flag(args, "--tensor-parallel-size") == str(w.tp)
            assert ("--enable-expert-parallel" in args) == (w.ep > 1)
            assert ("--kv-transfer-config" in args) == (w.role == "prefill")
            assert main["env"] == [{"name": "DYN_BENCHMARK_MODE", "value": w.role}]
        elif backend == "sglang":
            assert flag(args, "--model-path") == "Qwen/Qwen3-30B-A3B"
            assert flag(args, "--tp") == str(w.tp)
            assert ("--ep" in args) == (w.ep > 1)
            # upstream's sglang templates: every worker, and a disaggregated one's NIXL link
            assert flag(args, "--page-size") == "16"
            assert "--skip-tokenizer-init" in args
            if w.role != "agg":
                assert flag(args, "--disaggregation-transfer-backend") == "nixl"
                assert flag(args, "--disaggregation-bootstrap-port") == "12345"
                assert flag(args, "--host") == "0.0.0.0"
            else:
                assert "--host" not in args and "--disaggregation-bootstrap-port" not in args
        else:
            assert args.count("--override-engine-args") == 1
            engine = json.loads(flag(args, "--override-engine-args"))
            assert engine["tensor_parallel_size"] == w.tp
            assert engine["moe_expert_parallel_size"] == w.ep
            assert flag(args, "--served-model-name") == "Qwen/Qwen3-30B-A3B"
            # upstream's engine_configs/*/{prefill,decode}.yaml
            if w.role == "agg":
                assert "cache_transceiver_config" not in engine
            else:
                assert engine["cache_transceiver_config"] == {"backend": "DEFAULT"}
            assert engine.get("disable_overlap_scheduler", False) is (w.role == "prefill")


@pytest.mark.parametrize("backend", BACKENDS)
def test_dep_worker_spanning_nodes_gets_multinode_and_per_node_gpus(
    backend: str, dgd_schema: dict[str, Any]
) -> None:
    dgd, _ = build_dgd(request(backend), candidate(backend, "disagg", PREFILL, WIDE))
    jsonschema.validate(dgd, dgd_schema)
    svc = dgd["spec"]["services"][WORKER_NAMES[backend]["decode"]]
    assert svc["multinode"] == {"nodeCount": 2}
    assert svc["resources"]["limits"]["gpu"] == "8"
    args = args_of(svc)
    prefill = dgd["spec"]["services"][WORKER_NAMES[backend]["prefill"]]
    assert "multinode" not in prefill
    if backend == "vllm":
        assert flag(args, "--tensor-parallel-size") == "1"
        assert flag(args, "--data-parallel-size") == "16"
        assert "--enable-expert-parallel" in args
    elif backend == "sglang":
        assert [flag(args, f) for f in ("--tp", "--dp", "--ep")] == ["16", "16", "16"]
        assert "--enable-dp-attention" in args
    else:
        engine = json.loads(flag(args, "--override-engine-args"))
        assert engine["enable_attention_dp"] is True
        assert engine["tensor_parallel_size"] == 16


@pytest.mark.parametrize("backend", BACKENDS)
def test_planned_dgds_validate(backend: str, dgd_schema: dict[str, Any]) -> None:
    r = plan(request(backend))
    jsonschema.validate(r.dgd, dgd_schema)
    assert r.dgd["spec"]["backendFramework"] == backend


def test_images_keep_registry_path_tag_and_digest() -> None:
    assert derive_image("nvcr.io/nvidia/ai-dynamo/dynamo-frontend:1.1.1", "vllm-runtime") == (
        "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.1.1"
    )
    assert derive_image("host:5000/dynamo-planner", "sglang-runtime") == "host:5000/sglang-runtime"
    assert derive_image("r/x/dynamo-planner:1.2@sha256:ab", "dynamo-planner") == (
        "r/x/dynamo-planner:1.2@sha256:ab"
    )
    assert derive_image("dynamo-frontend:2.0", "tensorrtllm-runtime") == "tensorrtllm-runtime:2.0"


def test_model_cache_mounts_every_service_and_points_args_at_the_path() -> None:
    cache = {"pvcName": "models", "pvcModelPath": "hub/qwen/snap", "pvcMountPath": "/cache"}
    req = request("sglang", modelCache=cache)
    dgd, _ = build_dgd(req, candidate("sglang", "disagg", PREFILL, DECODE))
    assert dgd["spec"]["pvcs"] == [{"name": "models", "create": False}]
    for svc in dgd["spec"]["services"].values():
        assert {"name": "models", "mountPoint": "/cache"} in svc["volumeMounts"]
        # on the main container, not the service's envs
        assert {"name": "HF_HOME", "value": "/cache"} in svc["extraPodSpec"]["mainContainer"]["env"]
        assert "envs" not in svc
    front = args_of(dgd["spec"]["services"]["Frontend"])
    assert flag(front, "--model-path") == "/cache/hub/qwen/snap"
    assert flag(front, "--model-name") == "Qwen/Qwen3-30B-A3B"
    worker = args_of(dgd["spec"]["services"]["decode"])
    assert flag(worker, "--model-path") == "/cache/hub/qwen/snap"
    assert flag(worker, "--served-model-name") == "Qwen/Qwen3-30B-A3B"


def test_kv_router_trust_remote_code_runtime_version_and_tolerations() -> None:
    tol = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    extra = {
        "features": {"kvRouter": {"enabled": True}},
        "overrides": {
            "trustRemoteCode": True,
            "profilingJob": {"template": {"spec": {"containers": [], "tolerations": [tol]}}},
        },
        "runtimeVersionOverride": "1.2.0",
    }
    for backend in BACKENDS:
        dgd, _ = build_dgd(request(backend, **extra), candidate(backend, "agg", AGG))
        services = dgd["spec"]["services"]
        assert {"name": "DYN_ROUTER_MODE", "value": "kv"} in services["Frontend"]["envs"]
        worker = services[WORKER_NAMES[backend]["agg"]]
        assert ("--trust-remote-code" in args_of(worker)) == (backend != "trtllm")
        for svc in services.values():
            # not a field of a v1alpha1 DGD service in the targeted DGD CRD: not written
            assert "runtimeVersionOverride" not in svc
            assert svc["extraPodSpec"]["tolerations"] == [tol]
    plain, _ = build_dgd(request("vllm"), candidate("vllm", "agg", AGG))
    assert "envs" not in plain["spec"]["services"]["Frontend"]
    assert "--trust-remote-code" not in args_of(plain["spec"]["services"]["VllmDecodeWorker"])


def test_mocker_workers(dgd_schema: dict[str, Any]) -> None:
    r = plan(request("vllm", features={"mocker": {"enabled": True}}))
    jsonschema.validate(r.dgd, dgd_schema)
    services = r.dgd["spec"]["services"]
    assert set(services) == {"Frontend", "prefill", "decode"}
    for role in ("prefill", "decode"):
        main = services[role]["extraPodSpec"]["mainContainer"]
        assert main["command"] == ["python3", "-m", "dynamo.mocker"]
        assert main["image"] == IMAGE
        assert flag(main["args"], "--disaggregation-mode") == role
        assert "resources" not in services[role]


def test_planner_service_configmaps_and_scaling_adapters(dgd_schema: dict[str, Any]) -> None:
    r = plan(request("vllm", features={"planner": {"optimization_target": "throughput"}}))
    jsonschema.validate(r.dgd, dgd_schema)
    services = r.dgd["spec"]["services"]
    planner = services["Planner"]
    main = planner["extraPodSpec"]["mainContainer"]
    assert planner["componentType"] == "planner" and planner["replicas"] == 1
    assert main["image"] == "registry.example:5000/ai-dynamo/dynamo-planner:1.1.1"
    assert main["args"] == ["--config", "/workspace/planner_config/planner_config.json"]
    for name in ("VllmPrefillWorker", "VllmDecodeWorker"):
        assert services[name]["scalingAdapter"] == {"enabled": True}
    cfg_cm = next(c for c in r.configmaps if c["metadata"]["name"].startswith("planner-config-"))
    assert cfg_cm["metadata"]["namespace"] == "team-a"
    cfg = json.loads(cfg_cm["data"]["planner_config.json"])
    assert cfg["prefill_engine_num_gpu"] == r.chosen.workers[0].gpus
    assert cfg["decode_engine_num_gpu"] == r.chosen.workers[1].gpus
    assert cfg["backend"] == "vllm" and cfg["optimization_target"] == "throughput"
    mounted = {v["configMap"]["name"] for v in planner["extraPodSpec"]["volumes"]}
    assert mounted == {c["metadata"]["name"] for c in r.configmaps}
    data = next(c for c in r.configmaps if "profile-data" in c["metadata"]["name"])
    prefill = json.loads(data["data"]["prefill_raw_data.json"])
    assert len(prefill["prefill_isl"]) == len(prefill["prefill_ttft"]) > 4
    advisory = plan(request("vllm", features={"planner": {"advisory": True}}))
    assert all("scalingAdapter" not in s for s in advisory.dgd["spec"]["services"].values())


def test_overrides_merge_with_upstream_semantics() -> None:
    overrides = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "Something",
        "metadata": {"name": "custom", "labels": {"team": "a"}, "annotations": {"x": "y"}},
        "spec": {
            "envs": [{"name": "GLOBAL", "value": "1"}],
            "services": {
                "VllmDecodeWorker": {
                    "replicas": 5,
                    "envs": [{"name": "ONLY", "value": "this"}],
                    "extraPodSpec": {
                        "mainContainer": {"args": ["--enforce-eager"], "workingDir": "/w"}
                    },
                },
                "Router": {"replicas": 1},
            },
        },
    }
    req = request("vllm", overrides={"dgd": overrides})
    base, _ = build_dgd(request("vllm"), candidate("vllm", "disagg", PREFILL, DECODE))
    dgd, warnings = build_dgd(req, candidate("vllm", "disagg", PREFILL, DECODE))
    assert (dgd["apiVersion"], dgd["kind"]) == ("nvidia.com/v1alpha1", "DynamoGraphDeployment")
    assert dgd["metadata"]["name"] == "custom"  # the override picks the name
    assert dgd["metadata"]["labels"] == {"team": "a"}
    assert dgd["metadata"]["annotations"] == {"x": "y"}
    assert dgd["spec"]["envs"] == [{"name": "GLOBAL", "value": "1"}]
    decode = dgd["spec"]["services"]["VllmDecodeWorker"]
    assert decode["replicas"] == 5
    assert decode["envs"] == [{"name": "ONLY", "value": "this"}]  # other lists are replaced
    base_args = args_of(base["spec"]["services"]["VllmDecodeWorker"])
    assert args_of(decode) == [*base_args, "--enforce-eager"]  # args are appended
    assert decode["extraPodSpec"]["mainContainer"]["workingDir"] == "/w"
    assert decode["extraPodSpec"]["mainContainer"]["command"] == ["python3", "-m", "dynamo.vllm"]
    assert "Router" not in dgd["spec"]["services"]
    assert len(warnings) == 1 and "'Router'" in warnings[0]
    assert (
        dgd["spec"]["services"]["VllmPrefillWorker"]
        == base["spec"]["services"]["VllmPrefillWorker"]
    )


def test_merge_does_not_mutate_its_inputs() -> None:
    dgd = {"spec": {"services": {"A": {"replicas": 1, "extraPodSpec": {}}}}}
    ov = {"spec": {"services": {"A": {"extraPodSpec": {"mainContainer": {"args": ["--x"]}}}}}}
    before = json.dumps([dgd, ov], sort_keys=True)
    out, _ = merge_overrides(dgd, ov)
    assert out["spec"]["services"]["A"]["extraPodSpec"]["mainContainer"]["args"] == ["--x"]
    assert json.dumps([dgd, ov], sort_keys=True) == before


# ---- against upstream's DGD CRD (reference data beside the repository, when present) ----------

UPSTREAM_DGD_CRD = (
    ROOT.parent / "shared/reference/upstream-crds/nvidia.com_dynamographdeployments.yaml"
)


@pytest.fixture(scope="module")
def upstream_dgd_schema() -> dict[str, Any]:
    if not UPSTREAM_DGD_CRD.is_file():
        pytest.skip(f"upstream DGD CRD not found at {UPSTREAM_DGD_CRD}")
    crd = yaml.safe_load(UPSTREAM_DGD_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields a structural schema does not declare: what strict field validation refuses and
    pruning would silently drop."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            where = f"{path}.{key}"
            if props is not None and key in props:
                out += unknown_fields(sub, props[key], where)
            elif isinstance(extra, dict):
                out += unknown_fields(sub, extra, where)
            elif props is not None or extra is False:
                out.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def everything(backend: str) -> PlanRequest:
    """A request that switches on every generated field: cache, router, tolerations, version."""
    tol = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    return request(
        backend,
        modelCache={"pvcName": "models", "pvcModelPath": "hub/q", "pvcMountPath": "/cache"},
        features={"kvRouter": {"enabled": True}},
        overrides={
            "trustRemoteCode": True,
            "profilingJob": {"template": {"spec": {"containers": [], "tolerations": [tol]}}},
        },
        runtimeVersionOverride="1.2.0",
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["agg", "disagg"])
def test_generated_dgd_is_accepted_by_upstreams_dgd_crd(
    backend: str, mode: str, upstream_dgd_schema: dict[str, Any]
) -> None:
    workers = (AGG,) if mode == "agg" else (PREFILL, WIDE)
    dgd, _ = build_dgd(everything(backend), candidate(backend, mode, *workers))
    jsonschema.validate(dgd, upstream_dgd_schema)
    assert unknown_fields(dgd, upstream_dgd_schema) == []


@pytest.mark.parametrize(
    "features",
    [{"mocker": {"enabled": True}}, {"planner": {"optimization_target": "throughput"}}],
    ids=["mocker", "planner"],
)
def test_mocker_and_planner_dgds_are_accepted_by_upstreams_dgd_crd(
    features: dict[str, Any], upstream_dgd_schema: dict[str, Any]
) -> None:
    r = plan(request("vllm", features=features))
    jsonschema.validate(r.dgd, upstream_dgd_schema)
    assert unknown_fields(r.dgd, upstream_dgd_schema) == []


def test_unknown_fields_are_found() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}
    assert unknown_fields({"a": {"b": 1}, "c": 2}, schema) == [".a.b", ".c"]


def test_override_written_against_upstreams_agg_vllm_dgd_applies() -> None:
    """Upstream's aggregated vLLM DGD calls its worker VllmDecodeWorker; so does this one."""
    ov = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "spec": {"services": {"VllmDecodeWorker": {"replicas": 3}}},
    }
    dgd, warnings = build_dgd(request("vllm", overrides={"dgd": ov}), candidate("vllm", "agg", AGG))
    assert warnings == []
    assert dgd["spec"]["services"]["VllmDecodeWorker"]["replicas"] == 3


# ---- v1beta1: what the controller generates when the cluster serves that DGD version -----------


@pytest.fixture(scope="module")
def upstream_v1beta1_schema() -> dict[str, Any]:
    if not UPSTREAM_DGD_CRD.is_file():
        pytest.skip(f"upstream DGD CRD not found at {UPSTREAM_DGD_CRD}")
    crd = yaml.safe_load(UPSTREAM_DGD_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def beta(backend: str = "vllm", **kw: Any) -> PlanRequest:
    s: dict[str, Any] = {
        "model": "Qwen/Qwen3-30B-A3B",
        "backend": backend,
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 32},
    }
    s.update(kw)
    return PlanRequest.from_spec(
        s, dgdr_name="gen", namespace="team-a", dgd_api_version="nvidia.com/v1beta1"
    )


def everything_beta(backend: str) -> PlanRequest:
    base = everything(backend)
    spec = {
        "model": base.model,
        "backend": backend,
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 32},
        "modelCache": {"pvcName": "models", "pvcModelPath": "hub/q", "pvcMountPath": "/cache"},
        "features": {"kvRouter": {"enabled": True}},
        "overrides": {
            "trustRemoteCode": True,
            "profilingJob": {"template": {"spec": {"containers": [], "tolerations": [TOL]}}},
        },
        "runtimeVersionOverride": "1.2.0",
    }
    return PlanRequest.from_spec(
        spec, dgdr_name="gen", namespace="team-a", dgd_api_version="nvidia.com/v1beta1"
    )


TOL = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def main_of(component: dict[str, Any]) -> dict[str, Any]:
    containers = component["podTemplate"]["spec"]["containers"]
    main: dict[str, Any] = next(c for c in containers if c["name"] == "main")
    return main


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["agg", "disagg"])
def test_v1beta1_dgd_is_accepted_by_upstreams_crd_and_says_the_same(
    backend: str, mode: str, upstream_v1beta1_schema: dict[str, Any]
) -> None:
    workers = (AGG,) if mode == "agg" else (PREFILL, WIDE)
    cand = candidate(backend, mode, *workers)
    dgd, warnings = build_dgd(everything_beta(backend), cand)
    assert warnings == []
    jsonschema.validate(dgd, upstream_v1beta1_schema)
    assert unknown_fields(dgd, upstream_v1beta1_schema) == []
    assert (dgd["apiVersion"], dgd["kind"]) == ("nvidia.com/v1beta1", "DynamoGraphDeployment")
    assert dgd["metadata"] == {"name": "gen-dgd", "namespace": "team-a"}
    alpha, _ = build_dgd(everything(backend), cand)
    comps = {c["name"]: c for c in dgd["spec"]["components"]}
    assert list(comps) == list(alpha["spec"]["services"])  # same names, same order
    assert dgd["spec"]["backendFramework"] == backend
    for name, svc in alpha["spec"]["services"].items():
        comp, main = comps[name], main_of(comps[name])
        sub = svc.get("subComponentType")
        assert comp["type"] == (sub or svc["componentType"])
        assert comp.get("replicas") == svc.get("replicas")
        assert comp.get("multinode") == svc.get("multinode")
        alpha_main = svc["extraPodSpec"]["mainContainer"]
        for key in ("image", "command", "args", "workingDir"):
            assert main.get(key) == alpha_main.get(key), (name, key)
        assert main["env"] == [*svc.get("envs", []), *alpha_main.get("env", [])]
        if "resources" in svc:
            assert main["resources"] == {
                "limits": {"nvidia.com/gpu": svc["resources"]["limits"]["gpu"]}
            }
        if svc.get("envFromSecret"):
            assert main["envFrom"] == [{"secretRef": {"name": "hf-token-secret"}}]
        # the model cache: a PVC volume of the pod, mounted in the main container
        pod = comp["podTemplate"]["spec"]
        assert {"name": "models", "persistentVolumeClaim": {"claimName": "models"}} in pod[
            "volumes"
        ]
        assert {"name": "models", "mountPath": "/cache"} in main["volumeMounts"]
        assert pod["tolerations"] == [TOL]
    assert {"name": "DYN_ROUTER_MODE", "value": "kv"} in main_of(comps["Frontend"])["env"]


@pytest.mark.parametrize(
    "features",
    [{"mocker": {"enabled": True}}, {"planner": {"optimization_target": "throughput"}}],
    ids=["mocker", "planner"],
)
def test_v1beta1_mocker_and_planner_dgds_are_accepted_by_upstreams_crd(
    features: dict[str, Any], upstream_v1beta1_schema: dict[str, Any]
) -> None:
    r = plan(beta("vllm", features=features))
    jsonschema.validate(r.dgd, upstream_v1beta1_schema)
    assert unknown_fields(r.dgd, upstream_v1beta1_schema) == []
    comps = {c["name"]: c for c in r.dgd["spec"]["components"]}
    if "planner" in features:
        assert comps["Planner"]["type"] == "planner"
        mounts = {m["mountPath"] for m in main_of(comps["Planner"])["volumeMounts"]}
        assert "/workspace/planner_config" in mounts
        for name in ("VllmPrefillWorker", "VllmDecodeWorker"):
            assert comps[name]["scalingAdapter"] == {}
    else:
        assert {comps["prefill"]["type"], comps["decode"]["type"]} == {"prefill", "decode"}


def test_v1alpha1_override_applies_to_a_v1beta1_dgd() -> None:
    ov = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "spec": {
            "services": {
                "VllmDecodeWorker": {
                    "replicas": 5,
                    "extraPodSpec": {"mainContainer": {"args": ["--enforce-eager"]}},
                }
            }
        },
    }
    base, _ = build_dgd(beta("vllm"), candidate("vllm", "disagg", PREFILL, DECODE))
    dgd, warnings = build_dgd(
        beta("vllm", overrides={"dgd": ov}), candidate("vllm", "disagg", PREFILL, DECODE)
    )
    assert warnings == []
    comps = {c["name"]: c for c in dgd["spec"]["components"]}
    decode = comps["VllmDecodeWorker"]
    base_decode = next(c for c in base["spec"]["components"] if c["name"] == "VllmDecodeWorker")
    assert decode["replicas"] == 5
    assert main_of(decode)["args"] == [*main_of(base_decode)["args"], "--enforce-eager"]


def test_v1beta1_override_merges_components_and_containers_by_name() -> None:
    ov = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "env": [{"name": "GLOBAL", "value": "1"}],
            "components": [
                {
                    "name": "VllmDecodeWorker",
                    "replicas": 4,
                    "podTemplate": {
                        "spec": {
                            "nodeSelector": {"pool": "gpu"},
                            "containers": [
                                {"name": "main", "args": ["--model", "x"]},
                                {"name": "sidecar", "image": "busybox"},
                            ],
                        }
                    },
                },
                {"name": "Router", "replicas": 1},
            ],
        },
    }
    req = beta("vllm", overrides={"dgd": ov})
    base, _ = build_dgd(beta("vllm"), candidate("vllm", "agg", AGG))
    dgd, warnings = build_dgd(req, candidate("vllm", "agg", AGG))
    assert len(warnings) == 1 and "'Router'" in warnings[0]
    assert dgd["metadata"]["labels"] == {"team": "a"}
    assert dgd["spec"]["env"] == [{"name": "GLOBAL", "value": "1"}]
    comps = {c["name"]: c for c in dgd["spec"]["components"]}
    worker = comps["VllmDecodeWorker"]
    assert worker["replicas"] == 4
    assert worker["podTemplate"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    main = main_of(worker)
    assert main["args"] == ["--model", "x"]  # v1beta1 lists are atomic
    base_main = main_of(
        next(c for c in base["spec"]["components"] if c["name"] == "VllmDecodeWorker")
    )
    assert main["image"] == base_main["image"] and main["command"] == base_main["command"]
    names = [c["name"] for c in worker["podTemplate"]["spec"]["containers"]]
    assert names == ["main", "sidecar"]
    assert "Router" not in comps


def test_v1beta1_override_is_refused_where_only_v1alpha1_is_served() -> None:
    ov = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "spec": {"components": [{"name": "Frontend"}]},
    }
    with pytest.raises(SpecError, match=r"spec.overrides.dgd.apiVersion"):
        request("vllm", overrides={"dgd": ov})
    assert build_dgd(beta("vllm", overrides={"dgd": ov}), candidate("vllm", "agg", AGG))[1] == []
