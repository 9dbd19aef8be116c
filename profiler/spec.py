"""The DGDR ``spec`` as typed models: the one definition of what a request may say.

The controller (``controller/dgdr/api.py`` re-exports these) and the command line
(``PlanRequest.from_spec``) validate through the same models and the same CEL rules, so they
accept and refuse the same specs. The CRD's v1beta1 schema is generated from them
(``python -m controller.dgdr.crdgen``; ``profiler/openapi.py`` says how): edit a field here,
run the command, and the CRD follows; a test fails if it does not.

The models are strict (no ``"500"`` for a number, no ``1`` for a boolean) because the API
server is; unknown fields are errors, as kubectl's strict field validation makes them.
Bounds the API server checks with a CEL rule (a positive number, a version pattern) are
``Rule``s in ``json_schema_extra``, evaluated by ``profiler/cel.py``, not by pydantic.
Free-form subtrees the CRD preserves (``overrides.dgd``, ``overrides.profilingJob``,
``features.planner``) stay plain dicts.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from profiler import cel
from profiler.errors import FieldError
from profiler.openapi import Rule, gt_zero, k8s, model_schema

Backend = Literal["auto", "sglang", "trtllm", "vllm"]
BACKENDS: tuple[Backend, ...] = ("auto", "sglang", "trtllm", "vllm")
CONCRETE_BACKENDS: tuple[Backend, ...] = ("sglang", "trtllm", "vllm")

GpuSku = Literal[
    "gb200_sxm", "gb10", "b300_sxm", "b200_sxm", "h200_sxm", "h100_sxm", "h100_pcie",
    "a100_sxm", "a100_pcie", "a30", "l40s", "l40", "l4", "v100_sxm", "v100_pcie", "t4",
    "mi200", "mi300",
]  # fmt: skip
GPU_SKUS: tuple[GpuSku, ...] = (
    "gb200_sxm", "gb10", "b300_sxm", "b200_sxm", "h200_sxm", "h100_sxm", "h100_pcie",
    "a100_sxm", "a100_pcie", "a30", "l40s", "l40", "l4", "v100_sxm", "v100_pcie", "t4",
    "mi200", "mi300",
)  # fmt: skip

SearchStrategy = Literal["rapid", "thorough"]
SEARCH_STRATEGIES: tuple[SearchStrategy, ...] = ("rapid", "thorough")

OptimizationType = Literal["latency", "throughput"]
OPTIMIZATION_TYPES: tuple[OptimizationType, ...] = ("latency", "throughput")

DEFAULT_BACKEND: Backend = "auto"
DEFAULT_SEARCH_STRATEGY: SearchStrategy = "rapid"
DEFAULT_AUTO_APPLY = True
DEFAULT_ISL = 4000
DEFAULT_OSL = 1000
DEFAULT_PVC_MOUNT_PATH = "/opt/model-cache"

INT32_MAX = 2**31 - 1
# Beyond any deployment (1e300 overflowed the estimator): the CRD's maximum of concurrency and
# requestRate, checked by the controller and the command line with the same bound.
MAX_LOAD = 1e9
RUNTIME_VERSION_PATTERN = r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$"

# What kubectl explain says of each field (the CRD's descriptions), by path below spec.
DESCRIPTIONS: dict[str, str] = {
    "model": (
        "The model to serve: a Hugging Face id such as Qwen/Qwen3-0.6B or\n"
        "meta-llama/Llama-3.1-8B-Instruct, or the served name of a private model.\n"
        "Required."
    ),
    "backend": (
        "The inference backend of the generated workers: vllm, sglang or trtllm, or\n"
        "auto to let the profiler choose the best one. searchStrategy thorough needs\n"
        "a concrete backend."
    ),
    "image": (
        "The Dynamo planner image (for example dynamo-planner:1.1.0) that worker and\n"
        "planner images of the generated deployment are derived from. Defaulted by\n"
        "the controller when empty."
    ),
    "runtimeVersionOverride": (
        "The Dynamo runtime version MAJOR.MINOR.PATCH (for example 1.1.0) of the\n"
        "images, for an image with no version tag. Checked and kept on the DGDR; not\n"
        "written into the generated v1alpha1 DGD, whose services have no such field in\n"
        "the DGD CRD this controller targets. May change while spec.autoApply is false\n"
        "in phase Profiling or Ready."
    ),
    "modelCache": (
        "A PersistentVolumeClaim (ReadWriteMany) that already holds the model weights,\n"
        "mounted into the generated workers so they do not download the model."
    ),
    "modelCache.pvcName": "Name of the PersistentVolumeClaim, in the request's namespace.",
    "modelCache.pvcModelPath": (
        "Path of the model directory inside the claim, for example\n"
        "hub/models--Qwen--Qwen3-0.6B/snapshots/<commit>."
    ),
    "modelCache.pvcMountPath": "Absolute path at which the claim is mounted in the workers.",
    "hardware": (
        "The GPUs to plan for. Fields left out are discovered from the cluster's\n"
        "nodes (GPU feature discovery labels); give gpuSku, numGpusPerNode, vramMb and\n"
        "totalGpus to plan without node discovery."
    ),
    "hardware.gpuSku": (
        "GPU type, lower case with form factor (h100_sxm, not H100-SXM5-80GB).\n"
        "Also selects which nodes discovery counts."
    ),
    "hardware.vramMb": "Memory of one GPU in MiB (for example 81559 for an H100 SXM 80GB).",
    "hardware.totalGpus": (
        "The GPU budget for the whole deployment. Discovered as GPUs per node x\n"
        "matching nodes, capped at 32, when left out."
    ),
    "hardware.numGpusPerNode": "GPUs in one node; bounds tensor parallelism within a node.",
    "hardware.interconnect": "GPU interconnect (nvlink or pcie). Informational.",
    "hardware.rdma": "Whether nodes have RDMA networking. Informational.",
    "workload": "The traffic to plan for.",
    "workload.isl": "Mean input sequence length, in tokens.",
    "workload.osl": "Mean output sequence length, in tokens.",
    "workload.concurrency": (
        "Target number of requests in flight. When given, the plan is sized to\n"
        "serve this load at the SLA. Mutually exclusive with requestRate."
    ),
    "workload.requestRate": (
        "Target request rate in requests per second. When given, the plan is\n"
        "sized to serve this load at the SLA. Mutually exclusive with concurrency."
    ),
    "sla": (
        "Latency targets, in milliseconds: ttft and itl, or e2eLatency alone. A ttft\n"
        "or itl left out takes the profiler's default (ttft 2000, itl 30): a spec\n"
        "with only itl targets ttft 2000. Refused: e2eLatency together with a ttft or\n"
        "itl value, and ttft or itl null without e2eLatency (that one by the\n"
        "controller: the API server's rules see a null field as a missing one)."
    ),
    "sla.ttft": (
        "Target time to first token, in milliseconds; 2000 when left out (unless\n"
        "e2eLatency is given). Null is accepted only next to e2eLatency."
    ),
    "sla.itl": (
        "Target inter-token latency, in milliseconds; 30 when left out (unless\n"
        "e2eLatency is given). Null is accepted only next to e2eLatency."
    ),
    "sla.e2eLatency": (
        "Target end-to-end request latency, in milliseconds. An alternative to\n"
        "ttft and itl; not together with them."
    ),
    "sla.optimizationType": (
        "What to favour among configurations that meet the targets: latency or\nthroughput."
    ),
    "overrides": "Expert escape hatches merged into what the controller generates.",
    "overrides.profilingJob": (
        "A batch/v1 JobSpec merged into upstream's profiling Job. Accepted for\n"
        "compatibility; this controller profiles in-process and ignores it."
    ),
    "overrides.dgd": (
        "A partial DynamoGraphDeployment (apiVersion, kind and any fields) merged\n"
        "into the generated one; metadata.name, when given, names the generated\n"
        "DGD."
    ),
    "overrides.trustRemoteCode": "Add --trust-remote-code to generated vLLM and SGLang workers.",
    "features": "Optional features of the generated deployment.",
    "features.planner": (
        "Planner configuration (a Dynamo PlannerConfig, for example\n"
        "{optimization_target: throughput}). Its presence, even empty ({}),\n"
        "adds an autoscaling planner to the generated deployment."
    ),
    "features.mocker": "Simulated workers, for trying the flow without GPUs.",
    "features.mocker.enabled": "Deploy mocker workers instead of real engines.",
    "features.kvRouter": "KV-cache-aware request routing in the generated frontend.",
    "features.kvRouter.enabled": "Route by KV-cache overlap (frontend env DYN_ROUTER_MODE=kv).",
    "searchStrategy": (
        "rapid plans from a performance model in seconds; thorough measures on real\n"
        "GPUs and needs a concrete backend (not offered by this controller: it fails\n"
        "with reason NotAvailable)."
    ),
    "autoApply": (
        "Create the generated DynamoGraphDeployment when profiling is done. When\n"
        "false the request stops in phase Ready with the generated deployment in\n"
        "status.profilingResults.selectedConfig, to apply by hand."
    ),
}
SPEC_DESCRIPTION = (
    "What to serve and under which targets. Immutable once profiling has started\n"
    "(see the object description)."
)

COMMON_CONFIG = ConfigDict(
    strict=True,
    populate_by_name=True,
    alias_generator=to_camel,
    allow_inf_nan=False,
    protected_namespaces=(),
)


class Strict(BaseModel):
    """Spec parts: unknown fields are errors, as kubectl's strict field validation makes them."""

    model_config = ConfigDict(**COMMON_CONFIG, extra="forbid")


Int32Positive = Annotated[
    int, Field(ge=1, le=INT32_MAX), Field(json_schema_extra=k8s(format="int32"))
]
PRESERVE = k8s(x_kubernetes_preserve_unknown_fields=True)


def _number(path: str, unit: str = "", **extra: Any) -> Any:
    return Field(
        default=None,
        json_schema_extra=k8s(gt_zero(path, unit), **extra),
        **_doc(path.removeprefix("spec.")),
    )


def _doc(path: str) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[path]}


def _int32(path: str, default: int | None = None) -> Any:
    return Field(default=default, json_schema_extra=k8s(format="int32"), **_doc(path))


class ModelCacheSpec(Strict):
    pvc_name: str | None = Field(default=None, max_length=253, **_doc("modelCache.pvcName"))
    pvc_model_path: str | None = Field(
        default=None, max_length=4096, **_doc("modelCache.pvcModelPath")
    )
    pvc_mount_path: str = Field(
        default=DEFAULT_PVC_MOUNT_PATH,
        max_length=4096,
        json_schema_extra=k8s(
            Rule(
                "self.startsWith('/')",
                "spec.modelCache.pvcMountPath must be an absolute path (start with /)",
            )
        ),
        **_doc("modelCache.pvcMountPath"),
    )


class HardwareSpec(Strict):
    gpu_sku: GpuSku | None = Field(default=None, **_doc("hardware.gpuSku"))
    vram_mb: float | None = _number("spec.hardware.vramMb", maximum=INT32_MAX)
    total_gpus: Int32Positive | None = Field(default=None, **_doc("hardware.totalGpus"))
    num_gpus_per_node: Int32Positive | None = Field(default=None, **_doc("hardware.numGpusPerNode"))
    interconnect: str | None = Field(default=None, max_length=64, **_doc("hardware.interconnect"))
    rdma: bool | None = Field(default=None, **_doc("hardware.rdma"))


class WorkloadSpec(Strict):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            Rule(
                "!(has(self.concurrency) && has(self.requestRate))",
                "spec.workload.concurrency and spec.workload.requestRate are mutually "
                "exclusive; give at most one",
                reason="FieldValueForbidden",
                field_path=".concurrency",
            )
        )
    )

    isl: Int32Positive = Field(default=DEFAULT_ISL, **_doc("workload.isl"))
    osl: Int32Positive = Field(default=DEFAULT_OSL, **_doc("workload.osl"))
    concurrency: float | None = _number("spec.workload.concurrency", maximum=MAX_LOAD)
    request_rate: float | None = _number("spec.workload.requestRate", maximum=MAX_LOAD)


class SLASpec(Strict):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            Rule(
                "!has(self.e2eLatency) || !(has(self.ttft) || has(self.itl))",
                "spec.sla.e2eLatency cannot be combined with spec.sla.ttft or spec.sla.itl: "
                "give one or the other",
                reason="FieldValueForbidden",
                field_path=".e2eLatency",
            )
        )
    )

    # Nullable so an explicit null reaches the controller, which refuses it (CEL cannot see it).
    ttft: float | None = _number("spec.sla.ttft", "milliseconds", nullable=True)
    itl: float | None = _number("spec.sla.itl", "milliseconds", nullable=True)
    e2e_latency: float | None = Field(
        default=None,
        alias="e2eLatency",
        json_schema_extra=k8s(gt_zero("spec.sla.e2eLatency", "milliseconds")),
        **_doc("sla.e2eLatency"),
    )
    optimization_type: OptimizationType | None = Field(default=None, **_doc("sla.optimizationType"))


class OverridesSpec(Strict):
    profiling_job: dict[str, Any] | None = Field(
        default=None, json_schema_extra=PRESERVE, **_doc("overrides.profilingJob")
    )
    dgd: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=k8s(
            x_kubernetes_embedded_resource=True, x_kubernetes_preserve_unknown_fields=True
        ),
        **_doc("overrides.dgd"),
    )
    trust_remote_code: bool = Field(default=False, **_doc("overrides.trustRemoteCode"))


class MockerSpec(Strict):
    enabled: bool = Field(default=False, **_doc("features.mocker.enabled"))


class KvRouterSpec(Strict):
    enabled: bool = Field(default=False, **_doc("features.kvRouter.enabled"))


class FeaturesSpec(Strict):
    planner: dict[str, Any] | None = Field(  # present (even {}) = planner on
        default=None, json_schema_extra=PRESERVE, **_doc("features.planner")
    )
    mocker: MockerSpec | None = Field(default=None, **_doc("features.mocker"))
    kv_router: KvRouterSpec | None = Field(default=None, **_doc("features.kvRouter"))


class DGDRSpec(Strict):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            Rule(
                "!has(self.searchStrategy) || self.searchStrategy != 'thorough' || "
                "(has(self.backend) && self.backend != 'auto')",
                "spec.backend must be vllm, sglang or trtllm when spec.searchStrategy is "
                "thorough (thorough profiling measures one concrete backend)",
                field_path=".backend",
            )
        )
    )

    model: str = Field(
        min_length=1,
        max_length=512,
        json_schema_extra=k8s(
            Rule(
                "self.trim().size() > 0",
                "spec.model must not be empty or blank",
                reason="FieldValueRequired",
            )
        ),
        **_doc("model"),
    )
    backend: Backend = Field(default=DEFAULT_BACKEND, **_doc("backend"))
    image: str | None = Field(default=None, max_length=1024, **_doc("image"))
    runtime_version_override: str | None = Field(
        default=None,
        max_length=16,
        json_schema_extra=k8s(
            Rule(
                f"self.matches('{RUNTIME_VERSION_PATTERN.replace(chr(92), chr(92) * 2)}')",
                "spec.runtimeVersionOverride must be a version MAJOR.MINOR.PATCH such as 1.1.0 "
                "(no leading zeros, at most 4 digits each)",
            )
        ),
        **_doc("runtimeVersionOverride"),
    )
    model_cache: ModelCacheSpec | None = Field(default=None, **_doc("modelCache"))
    hardware: HardwareSpec | None = Field(default=None, **_doc("hardware"))
    workload: WorkloadSpec | None = Field(default=None, **_doc("workload"))
    sla: SLASpec | None = Field(default=None, **_doc("sla"))
    overrides: OverridesSpec | None = Field(default=None, **_doc("overrides"))
    features: FeaturesSpec | None = Field(default=None, **_doc("features"))
    search_strategy: SearchStrategy = Field(
        default=DEFAULT_SEARCH_STRATEGY, **_doc("searchStrategy")
    )
    auto_apply: bool = Field(default=DEFAULT_AUTO_APPLY, **_doc("autoApply"))

    def to_dict(self) -> dict[str, Any]:
        """The camelCase spec the profiler reads, defaults included."""
        return self.model_dump(by_alias=True, exclude_none=True)


# ---- checking a spec: the models, then the CRD's rules ----------------------------------------

# Refused by the controller and the command line, not by a CRD rule: CEL sees a null field as a
# missing one, so only Python can tell ``ttft: null`` from no ttft.
SLA_NULL = (
    "must not be null: leave it out to take its default (ttft 2000 ms, itl 30 ms), or give "
    "spec.sla.e2eLatency instead of ttft and itl"
)

# pydantic error types whose stock message reads badly in a Kubernetes condition.
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be a boolean",
    "finite_number": "must be a finite number",
}


def path_of(loc: Sequence[int | str]) -> str:
    """``("spec", "sla", "ttft")`` -> ``spec.sla.ttft``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "spec"


def structural_errors(exc: ValidationError, prefix: Sequence[str] = ()) -> list[FieldError]:
    """A model's validation errors as field errors, in words for a Kubernetes condition."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        path = path_of((*prefix, *err["loc"]))
        if err["type"] in _MESSAGES:
            message = _MESSAGES[err["type"]]
        else:
            message = err["msg"].removeprefix("Value error, ")
            message = message.replace("Input should be", "must be", 1)
            message = message.replace("String should", "must", 1)
        errors.append(FieldError(path, message))
    return errors


@functools.cache
def spec_schema() -> dict[str, Any]:
    """The CRD's schema of ``spec``, generated from ``DGDRSpec``."""
    return model_schema(DGDRSpec)


def rule_errors(spec: Any, path: str = "spec") -> list[FieldError]:
    """The CRD's rules on a raw spec (any types): its CEL rules, evaluated by cel-python, and
    the checks of ``null_and_embedded_errors``."""
    return cel.rule_errors(spec, spec_schema(), path) + null_and_embedded_errors(spec, path)


def null_and_embedded_errors(spec: Any, path: str = "spec") -> list[FieldError]:
    """What the CRD says without CEL that the models cannot check: an explicit null SLA target
    (``nullable``: CEL cannot tell it from a missing one) and ``overrides.dgd``'s apiVersion and
    kind (``x-kubernetes-embedded-resource``)."""
    errors: list[FieldError] = []
    if not isinstance(spec, Mapping):
        return errors
    sla = spec.get("sla")
    if isinstance(sla, Mapping) and sla.get("e2eLatency") is None:
        errors += [
            FieldError(f"{path}.sla.{key}", SLA_NULL)
            for key in ("ttft", "itl")
            if key in sla and sla[key] is None
        ]
    overrides = spec.get("overrides")
    dgd = overrides.get("dgd") if isinstance(overrides, Mapping) else None
    if isinstance(dgd, Mapping):
        errors += [
            FieldError(f"{path}.overrides.dgd.{key}", "is required")
            for key in ("apiVersion", "kind")
            if not dgd.get(key)
        ]
    return errors


def check_spec(spec: Any) -> tuple[DGDRSpec | None, list[FieldError]]:
    """A raw spec through the models and the CRD's rules: the model when it has the right
    structure (even if a rule failed), and every problem found, each naming its field."""
    model: DGDRSpec | None = None
    errors: list[FieldError] = []
    try:
        model = DGDRSpec.model_validate(spec)
    except ValidationError as exc:
        errors = structural_errors(exc, ("spec",))
    merge_errors(errors, rule_errors(spec))
    return model, errors


def merge_errors(errors: list[FieldError], more: Sequence[FieldError]) -> list[FieldError]:
    """Add errors about fields not reported yet (nor any field that contains them)."""
    reported = [e.path for e in errors]
    for e in more:
        if not any(_within(e.path, p) for p in reported):
            errors.append(e)
            reported.append(e.path)
    return errors


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "["))
