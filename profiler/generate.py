"""The DynamoGraphDeployment for a chosen configuration, shaped as upstream's profiler emits it.

Service names, worker arguments and feature layers follow upstream's (see
docs/dgdr-contract.md#generated-dgd) so that a DGD from this
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
    DGD_V1ALPHA1,
    DGD_V1BETA1,
    FRONTEND_SERVICE,
    PLANNER_SERVICE,
    SERVICE_NAMES,
    PlanRequest,
    override_api_version,
)
from profiler.search import Candidate, Worker

API_VERSION = DGD_V1ALPHA1
KIND = "DynamoGraphDeployment"
# v1beta1: the container of a component's pod template the operator fills in (upstream's name).
MAIN_CONTAINER = "main"
GPU_RESOURCE = "nvidia.com/gpu"
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
    """TP/PP/EP/DP flags per backend (docs/dgdr-contract.md#generated-dgd), and the concurrency
    cap: the batch the worker was planned at, across its attention-DP ranks (vLLM and TRT-LLM cap
    each rank, SGLang's --max-running-requests is shared by its ranks)."""
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
    """The full DGD, in ``req.dgd_api_version``, with ``overrides.dgd`` applied; and the warnings
    of the merge and of the conversion.

    The DGD is built as v1alpha1 (a services map), as upstream's profiler builds it. An override
    is merged in the version it is written in (upstream's rule since v1beta1 overrides: the
    blueprint is converted first): a v1alpha1 one onto the v1alpha1 DGD before any conversion,
    a v1beta1 one onto the converted v1beta1 DGD (see ``merge_overrides_v1beta1``).
    """
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
            # On the container, not the service's envs (as upstream does).
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
    ov = req.overrides_dgd
    written = override_api_version(ov) if ov else None
    if ov and written == DGD_V1ALPHA1:
        dgd, warnings = merge_overrides(dgd, ov)
    if req.dgd_api_version == DGD_V1BETA1:
        dgd, converted = to_v1beta1(dgd)
        warnings += converted
        if ov and written == DGD_V1BETA1:
            dgd, merged = merge_overrides_v1beta1(dgd, ov)
            warnings += merged
    elif ov and written == DGD_V1BETA1:  # the request's validation refuses this combination
        warnings.append("overrides.dgd is v1beta1 but the DGD is v1alpha1: not applied")
    return dgd, warnings


# ---- v1beta1 ------------------------------------------------------------------------------------

# v1alpha1 service fields and where they go in a v1beta1 component (upstream's conversion,
# deploy/operator/api/v1alpha1/shared_spec_conversion.go): kept as they are ...
_SAME_FIELDS = ("replicas", "multinode", "modelRef", "globalDynamoNamespace", "topologyConstraint")
# ... or folded into the component's pod template and its main container.
_POD_FIELDS = (
    "componentType",
    "subComponentType",
    "scalingAdapter",
    "resources",
    "envs",
    "envFromSecret",
    "volumeMounts",
    "extraPodSpec",
    "extraPodMetadata",
    "sharedMemory",
)
_SPEC_SAME = ("backendFramework", "annotations", "labels", "restart", "topologyConstraint")


def to_v1beta1(dgd: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A v1alpha1 DGD as v1beta1: each service becomes a component (``name``, ``type``,
    ``podTemplate`` with a ``main`` container), graph ``envs`` become ``env``. The main container
    gets the service's resources (``gpu`` as ``nvidia.com/gpu``), ``envs`` (then the container's
    own ``env``), ``envFromSecret`` (as ``envFrom``), volume mounts; ``extraPodSpec`` becomes the
    pod spec. A PVC of ``spec.pvcs`` (which v1beta1 lacks) becomes a pod volume of each component
    that mounts it. Fields with no v1beta1 equivalent are dropped with a warning."""
    warnings: list[str] = []
    src = dict(dgd.get("spec") or {})
    out: dict[str, Any] = {k: copy.deepcopy(src[k]) for k in _SPEC_SAME if k in src}
    if "envs" in src:
        out["env"] = copy.deepcopy(src["envs"])
    if "experimental" in src:
        out["experimental"] = copy.deepcopy(src["experimental"])
    pvcs = {
        str(p.get("name")): p
        for p in src.get("pvcs") or []
        if isinstance(p, Mapping) and "name" in p
    }
    handled = {"services", "envs", "pvcs", "experimental", *_SPEC_SAME}
    for key in src:
        if key not in handled:
            warnings.append(f"spec.{key} has no v1beta1 equivalent; dropped")
    components: list[dict[str, Any]] = []
    for name, svc in (src.get("services") or {}).items():
        if not isinstance(svc, Mapping):
            continue
        comp, dropped = _component(str(name), svc, pvcs)
        components.append(comp)
        warnings += [f"service {name}: {d} has no v1beta1 equivalent; dropped" for d in dropped]
    out["components"] = components
    meta = copy.deepcopy(dict(dgd.get("metadata") or {}))
    return {"apiVersion": DGD_V1BETA1, "kind": KIND, "metadata": meta, "spec": out}, warnings


def _component(
    name: str, svc: Mapping[str, Any], pvcs: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    ctype = str(svc.get("componentType") or "worker")
    sub = svc.get("subComponentType")
    comp: dict[str, Any] = {
        "name": name,
        "type": sub if ctype == "worker" and sub in ("prefill", "decode") else ctype,
    }
    comp.update({k: copy.deepcopy(svc[k]) for k in _SAME_FIELDS if k in svc})
    adapter = svc.get("scalingAdapter")
    if isinstance(adapter, Mapping) and adapter.get("enabled"):
        comp["scalingAdapter"] = {}  # presence means enabled
    shm = svc.get("sharedMemory")
    if isinstance(shm, Mapping) and not shm.get("disabled") and shm.get("size"):
        comp["sharedMemorySize"] = shm["size"]
    pod = copy.deepcopy(dict(svc.get("extraPodSpec") or {}))
    override = pod.pop("mainContainer", None) or {}
    main: dict[str, Any] = {"name": MAIN_CONTAINER}
    resources = _native_resources(svc.get("resources"))
    if resources:
        main["resources"] = resources
    env = list(copy.deepcopy(svc.get("envs") or []))
    if svc.get("envFromSecret"):
        main["envFrom"] = [{"secretRef": {"name": str(svc["envFromSecret"])}}]
    mounts: list[dict[str, Any]] = []
    for vm in svc.get("volumeMounts") or []:
        if not isinstance(vm, Mapping) or not vm.get("name"):
            continue
        path = vm.get("mountPoint") or vm.get("mountPath")
        mounts.append({"name": vm["name"], "mountPath": path})
        if vm["name"] in pvcs and not any(
            v.get("name") == vm["name"] for v in pod.get("volumes") or []
        ):
            pod.setdefault("volumes", []).append(
                {"name": vm["name"], "persistentVolumeClaim": {"claimName": vm["name"]}}
            )
    for key, value in override.items():
        if key == "env":
            env += copy.deepcopy(list(value or []))
        elif key == "volumeMounts":
            mounts += copy.deepcopy(list(value or []))
        elif key != "name":
            main[key] = copy.deepcopy(value)
    if env:
        main["env"] = env
    if mounts:
        main["volumeMounts"] = mounts
    others = [c for c in pod.get("containers") or [] if c.get("name") != MAIN_CONTAINER]
    pod["containers"] = [main, *others]
    template: dict[str, Any] = {"spec": pod}
    metadata = svc.get("extraPodMetadata")
    if isinstance(metadata, Mapping) and (metadata.get("labels") or metadata.get("annotations")):
        template["metadata"] = {
            k: copy.deepcopy(metadata[k]) for k in ("labels", "annotations") if metadata.get(k)
        }
    comp["podTemplate"] = template
    dropped = [k for k in svc if k not in _SAME_FIELDS and k not in _POD_FIELDS]
    return comp, dropped


def _native_resources(res: Any) -> dict[str, Any]:
    """v1alpha1 ``{requests,limits}.{cpu,memory,gpu,gpuType,custom}`` as a container's
    ResourceRequirements (``gpu`` under ``gpuType``, default ``nvidia.com/gpu``)."""
    if not isinstance(res, Mapping):
        return {}
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        src = res.get(part)
        if not isinstance(src, Mapping):
            continue
        native: dict[str, Any] = {}
        for key in ("cpu", "memory", "ephemeral-storage"):
            if src.get(key) is not None:
                native[key] = str(src[key])
        if src.get("gpu") is not None:
            native[str(src.get("gpuType") or GPU_RESOURCE)] = str(src["gpu"])
        if isinstance(src.get("custom"), Mapping):
            native.update({str(k): str(v) for k, v in src["custom"].items()})
        if native:
            out[part] = native
    return out


def merge_overrides_v1beta1(
    dgd: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """A v1beta1 ``overrides.dgd`` on a v1beta1 DGD: ``apiVersion``/``kind`` ignored, from
    ``metadata`` only labels and annotations; ``spec.components`` matched by ``name`` (a name
    the DGD lacks is skipped with a warning: an override cannot add topology); within a
    component dicts merge recursively, a pod template's ``containers`` are matched by ``name``
    (a new name is added: a sidecar), and every other list is replaced whole (v1beta1 lists are
    atomic, a main container's ``args`` included)."""
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
        if key != "components":
            out_spec[key] = _merge(out_spec.get(key), value)
            continue
        components = out_spec.setdefault("components", [])
        by_name = {c.get("name"): i for i, c in enumerate(components)}
        for body in value if isinstance(value, list) else []:
            if not isinstance(body, Mapping):
                continue
            name = body.get("name")
            if name not in by_name:
                warnings.append(
                    f"overrides.dgd: component {name!r} is not in the generated DGD (it has "
                    f"{', '.join(sorted(str(n) for n in by_name))}); skipped"
                )
                continue
            components[by_name[name]] = _merge_component(components[by_name[name]], body)
    return out, warnings


def _merge_component(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    over_pod = (over.get("podTemplate") or {}).get("spec") if isinstance(over, Mapping) else None
    containers = over_pod.get("containers") if isinstance(over_pod, Mapping) else None
    rest = copy.deepcopy(dict(over))
    if isinstance(containers, list):
        rest["podTemplate"]["spec"].pop("containers")
    merged: dict[str, Any] = _merge(base, rest)
    if isinstance(containers, list):
        pod = merged.setdefault("podTemplate", {}).setdefault("spec", {})
        current = list(pod.get("containers") or [])
        index = {c.get("name"): i for i, c in enumerate(current)}
        for c in containers:
            if not isinstance(c, Mapping):
                continue
            if c.get("name") in index:
                i = index[c.get("name")]
                current[i] = _merge(current[i], c)
            else:
                current.append(copy.deepcopy(dict(c)))
        pod["containers"] = current
    return merged


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
    """Upstream's ``overrides.dgd`` semantics (docs/dgdr-contract.md#generated-dgd): dicts merge
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
