"""The DynamoGraphDeployment for a chosen configuration, shaped as upstream's profiler emits it.

Service names, worker arguments and feature layers follow dgdr-spec.md §6 so that a DGD from this
profiler is interchangeable with one from upstream: the same names show up in the operator, the
planner finds its workers, and a user's ``overrides.dgd`` written for upstream lands where they
meant it to.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from typing import Any

from profiler.request import (
    FRONTEND_SERVICE,
    PLANNER_SERVICE,
    SERVICE_NAMES,
    PlanRequest,
)
from profiler.search import Candidate, Worker

API_VERSION = "nvidia.com/v1alpha1"
KIND = "DynamoGraphDeployment"
HF_SECRET = "hf-token-secret"
RUNTIME_IMAGES = {
    "vllm": "vllm-runtime",
    "sglang": "sglang-runtime",
    "trtllm": "tensorrtllm-runtime",
}
PLANNER_IMAGE = "dynamo-planner"
WORKING_DIRS = {
    "vllm": "/workspace/examples/backends/vllm",
    "sglang": "/workspace/examples/backends/sglang",
    "trtllm": "/workspace/",
}
VLLM_KV_TRANSFER = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
# SGLang worker flags of upstream's templates (examples/backends/sglang/deploy/{agg,disagg}.yaml,
# profiler templates/dgd/sglang/): every worker pages KV by 16 tokens and leaves tokenizing to the
# frontend; a disaggregated one also moves KV with NIXL through a bootstrap port, listening on
# all addresses so its peer can reach it.
SGLANG_PAGE_SIZE = "16"
SGLANG_BOOTSTRAP_PORT = "12345"
# TRT-LLM engine settings of upstream's disaggregated engine configs (examples/backends/trtllm/
# engine_configs/*/{prefill,decode}.yaml): both roles move KV through the cache transceiver; a
# prefill-only worker cannot use the overlap scheduler.
TRTLLM_CACHE_TRANSCEIVER = {"backend": "DEFAULT"}
PLANNER_CONFIG_DIR = "/workspace/planner_config"
PLANNER_CONFIG_FILE = "planner_config.json"
PROFILE_DATA_DIR = "/workspace/profiling_results"


def derive_image(base: str, name: str) -> str:
    """``spec.image`` with only its last path component renamed; registry, path, tag and digest
    are kept (``.../dynamo-frontend:1.1.1`` + ``vllm-runtime`` -> ``.../vllm-runtime:1.1.1``)."""
    rest, at, digest = base.partition("@")
    slash = rest.rfind("/")
    head, last = rest[: slash + 1], rest[slash + 1 :]
    _, colon, tag = last.partition(":")
    return f"{head}{name}{colon}{tag}{at}{digest}"


def parallel_args(backend: str, w: Worker) -> list[str]:
    """TP/PP/EP/DP flags per backend (dgdr-spec.md §6.2 table), and the concurrency cap: the
    batch the worker was planned at, across its attention-DP ranks (vLLM and TRT-LLM cap each
    rank, SGLang's --max-running-requests is shared by its ranks)."""
    dep = w.dp > 1 and w.ep > 1
    tep = w.ep > 1 and not dep
    per_rank = -(-w.batch // w.dp)
    if backend == "vllm":
        args = ["--tensor-parallel-size", str(w.tp)]
        if w.pp > 1:
            args += ["--pipeline-parallel-size", str(w.pp)]
        if tep:
            args += ["--data-parallel-size", "1", "--enable-expert-parallel"]
        elif w.dp > 1:
            args += ["--data-parallel-size", str(w.dp)]
            if dep:
                args.append("--enable-expert-parallel")
        return [*args, "--max-num-seqs", str(per_rank)]
    if backend == "sglang":
        # --tp is the whole worker; --dp splits its attention, --ep its experts.
        args = ["--tp", str(w.tp * w.dp)]
        if w.dp > 1:
            args += ["--dp", str(w.dp), "--enable-dp-attention"]
        if w.ep > 1:
            args += ["--ep", str(w.ep)]
        if w.pp > 1:
            args += ["--pp-size", str(w.pp)]
        return [*args, "--max-running-requests", str(w.batch)]
    if backend == "trtllm":
        engine: dict[str, Any] = {
            "tensor_parallel_size": w.tp * w.dp,
            "pipeline_parallel_size": w.pp,
            "moe_expert_parallel_size": w.ep,
            "enable_attention_dp": w.dp > 1,
            "max_batch_size": per_rank,
        }
        if w.role != "agg":
            engine["cache_transceiver_config"] = dict(TRTLLM_CACHE_TRANSCEIVER)
        if w.role == "prefill":
            engine["disable_overlap_scheduler"] = True
        return ["--override-engine-args", json.dumps(engine, separators=(",", ":"))]
    raise ValueError(f"unknown backend {backend!r}")


def _model_args(req: PlanRequest, backend: str) -> list[str]:
    source = req.model_cache.model_dir if req.model_cache and req.model_cache.model_dir else None
    if backend == "vllm":
        args = ["--model", source or req.model]
        return [*args, "--served-model-name", req.model] if source else args
    return ["--model-path", source or req.model, "--served-model-name", req.model]


def _role_args(backend: str, role: str) -> list[str]:
    args = ["--skip-tokenizer-init"] if backend == "sglang" else []
    if role == "agg":
        return args
    args += ["--disaggregation-mode", role]
    if backend == "vllm" and role == "prefill":
        args += ["--kv-transfer-config", VLLM_KV_TRANSFER]
    if backend == "sglang":
        args += [
            "--disaggregation-transfer-backend",
            "nixl",
            "--disaggregation-bootstrap-port",
            SGLANG_BOOTSTRAP_PORT,
            "--host",
            "0.0.0.0",
        ]
    return args


def worker_service(req: PlanRequest, backend: str, w: Worker) -> dict[str, Any]:
    per_node = max(req.num_gpus_per_node, 1)
    args = _model_args(req, backend)
    if backend == "sglang":
        args += ["--page-size", SGLANG_PAGE_SIZE]
    args += parallel_args(backend, w) + _role_args(backend, w.role)
    if req.trust_remote_code and backend in ("vllm", "sglang"):
        args.append("--trust-remote-code")
    main: dict[str, Any] = {
        "image": derive_image(req.image, RUNTIME_IMAGES[backend]),
        "workingDir": WORKING_DIRS[backend],
        "command": ["python3", "-m", f"dynamo.{backend}"],
        "args": args,
    }
    if backend == "vllm":
        main["env"] = [{"name": "DYN_BENCHMARK_MODE", "value": w.role}]
    svc: dict[str, Any] = {"componentType": "worker"}
    if w.role != "agg":
        svc["subComponentType"] = w.role
    svc.update(
        {
            "envFromSecret": HF_SECRET,
            "replicas": w.replicas,
            "resources": {"limits": {"gpu": str(min(w.gpus, per_node))}},
            "extraPodSpec": {"mainContainer": main},
        }
    )
    if w.gpus > per_node:
        svc["multinode"] = {"nodeCount": math.ceil(w.gpus / per_node)}
    return svc


def mocker_service(req: PlanRequest, w: Worker, profile_data: bool) -> dict[str, Any]:
    """A simulated worker: no GPU, the DGDR image (it ships the mocker), disagg role flags."""
    args = ["--model-path", req.model, "--model-name", req.model]
    if profile_data:
        args += ["--planner-profile-data", PROFILE_DATA_DIR]
    args += ["--disaggregation-mode", w.role]
    return {
        "componentType": "worker",
        "subComponentType": w.role,
        "envFromSecret": HF_SECRET,
        "replicas": w.replicas,
        "extraPodSpec": {
            "mainContainer": {
                "image": req.image,
                "workingDir": "/workspace",
                "command": ["python3", "-m", "dynamo.mocker"],
                "args": args,
            }
        },
    }


def build_dgd(
    req: PlanRequest,
    chosen: Candidate,
    *,
    planner_configmap: str | None = None,
    profile_configmap: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The full DGD (before and after ``overrides.dgd``) and the warnings the merge produced."""
    backend = chosen.backend
    names = SERVICE_NAMES["mocker" if req.mocker else backend]
    frontend_image = req.image if req.mocker else derive_image(req.image, RUNTIME_IMAGES[backend])
    frontend: dict[str, Any] = {
        "componentType": "frontend",
        "replicas": 1,
        "extraPodSpec": {"mainContainer": {"image": frontend_image}},
    }
    if req.model_cache and req.model_cache.model_dir:
        frontend["extraPodSpec"]["mainContainer"].update(
            {
                "command": ["python3", "-m", "dynamo.frontend"],
                "args": ["--model-path", req.model_cache.model_dir, "--model-name", req.model],
            }
        )
    if req.kv_router:
        frontend["envs"] = [{"name": "DYN_ROUTER_MODE", "value": "kv"}]
    services: dict[str, Any] = {FRONTEND_SERVICE: frontend}
    for w in chosen.workers:
        if req.mocker:
            services[names[w.role]] = mocker_service(req, w, profile_configmap is not None)
        else:
            services[names[w.role]] = worker_service(req, backend, w)
    if req.planner_enabled:
        advisory = bool((req.planner or {}).get("advisory", False))
        for w in chosen.workers:
            if not advisory:
                services[names[w.role]]["scalingAdapter"] = {"enabled": True}
        services[PLANNER_SERVICE] = _planner_service(req, planner_configmap, profile_configmap)
    if profile_configmap is not None and req.mocker:
        for w in chosen.workers:
            _mount_configmap(services[names[w.role]], profile_configmap, PROFILE_DATA_DIR)
    spec: dict[str, Any] = {"services": services}
    if not req.mocker:
        spec["backendFramework"] = backend
    if req.model_cache is not None:
        cache = req.model_cache
        spec["pvcs"] = [{"name": cache.pvc_name, "create": False}]
        for svc in services.values():
            svc.setdefault("volumeMounts", []).append(
                {"name": cache.pvc_name, "mountPoint": cache.mount_path}
            )
            # On the container, not the service's envs (dgdr-spec.md §6.2).
            main = svc.setdefault("extraPodSpec", {}).setdefault("mainContainer", {})
            main.setdefault("env", []).append({"name": "HF_HOME", "value": cache.mount_path})
    # spec.runtimeVersionOverride is not copied into the DGD: a service of the v1alpha1 DGD CRD
    # this project targets (upstream's of 2026-05-20) has no such field, so the API server would
    # refuse it (strict) or drop it. Upstream added it to DGD components later (PR #10494) and
    # only then had its profiler copy the DGDR's value into them (PR #12072).
    for svc in services.values():
        if req.tolerations:
            pod = svc.setdefault("extraPodSpec", {})
            pod.setdefault("tolerations", []).extend(copy.deepcopy(list(req.tolerations)))
    meta: dict[str, Any] = {"name": req.dgd_name}
    if req.namespace:
        meta["namespace"] = req.namespace
    dgd: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
    warnings: list[str] = []
    if req.overrides_dgd:
        dgd, warnings = merge_overrides(dgd, req.overrides_dgd)
    return dgd, warnings


def _planner_service(
    req: PlanRequest, config_cm: str | None, profile_cm: str | None
) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "componentType": "planner",
        "replicas": 1,
        "extraPodSpec": {
            "mainContainer": {
                "image": derive_image(req.image, PLANNER_IMAGE),
                "workingDir": "/workspace/components/src/dynamo/planner",
                "command": ["python3", "-m", "dynamo.planner"],
                "args": ["--config", f"{PLANNER_CONFIG_DIR}/{PLANNER_CONFIG_FILE}"],
            }
        },
    }
    if config_cm is not None:
        _mount_configmap(svc, config_cm, PLANNER_CONFIG_DIR)
    if profile_cm is not None:
        _mount_configmap(svc, profile_cm, PROFILE_DATA_DIR)
    return svc


def _mount_configmap(svc: dict[str, Any], name: str, path: str) -> None:
    pod = svc.setdefault("extraPodSpec", {})
    pod.setdefault("volumes", []).append({"name": name, "configMap": {"name": name}})
    main = pod.setdefault("mainContainer", {})
    main.setdefault("volumeMounts", []).append({"name": name, "mountPath": path, "readOnly": True})


def merge_overrides(
    dgd: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Upstream's ``overrides.dgd`` semantics (dgdr-spec.md §6.2 step 5): dicts merge
    recursively; services the profiler did not generate are skipped with a warning (an override
    cannot add topology); a worker's ``extraPodSpec.mainContainer.args`` is appended to, other
    lists are replaced; ``apiVersion``/``kind`` are ignored; from ``metadata`` only labels and
    annotations merge (the name is chosen before generation)."""
    out = copy.deepcopy(dict(dgd))
    warnings: list[str] = []
    meta = overrides.get("metadata")
    if isinstance(meta, Mapping):
        for key in ("labels", "annotations"):
            if isinstance(meta.get(key), Mapping):
                target = out.setdefault("metadata", {}).setdefault(key, {})
                target.update(copy.deepcopy(dict(meta[key])))
    spec = overrides.get("spec")
    if not isinstance(spec, Mapping):
        return out, warnings
    out_spec = out.setdefault("spec", {})
    for key, value in spec.items():
        if key != "services":
            out_spec[key] = _merge(out_spec.get(key), value)
            continue
        if not isinstance(value, Mapping):
            continue
        services = out_spec.setdefault("services", {})
        for name, body in value.items():
            if name not in services:
                warnings.append(
                    f"overrides.dgd: service {name!r} is not in the generated DGD "
                    f"(it has {', '.join(sorted(services))}); skipped"
                )
                continue
            if not isinstance(body, Mapping):
                continue
            extra_args = _pop_args(body)
            services[name] = _merge(services[name], _without_args(body))
            if extra_args:
                main = services[name].setdefault("extraPodSpec", {}).setdefault("mainContainer", {})
                main["args"] = list(main.get("args", [])) + [str(a) for a in extra_args]
    return out, warnings


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _merge(base.get(k), v)
        return merged
    return copy.deepcopy(over)


def _pop_args(body: Mapping[str, Any]) -> list[Any]:
    pod = body.get("extraPodSpec")
    main = pod.get("mainContainer") if isinstance(pod, Mapping) else None
    args = main.get("args") if isinstance(main, Mapping) else None
    return list(args) if isinstance(args, list) else []


def _without_args(body: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(body))
    pod = out.get("extraPodSpec")
    if isinstance(pod, dict) and isinstance(pod.get("mainContainer"), dict):
        pod["mainContainer"].pop("args", None)
    return out
