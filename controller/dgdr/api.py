"""The DynamoGraphDeploymentRequest API as typed models, and the names the controller writes.

The API is defined here once: the spec's models in ``profiler/spec.py`` (re-exported: the
command line validates through them too), the status and the object here. The CRD's v1beta1
schema in ``deploy/crds/nvidia.com_dynamographdeploymentrequests.yaml`` is generated from them
(``python -m controller.dgdr.crdgen``; ``profiler/openapi.py`` says how): the same camelCase
names, enums, bounds, defaults, descriptions and CEL rules, so an object the API server stored
parses here and dumps back (``by_alias=True, exclude_unset=True``) to an equal object. They are
strict (no ``"500"`` for a number, no ``1`` for a boolean) because the API server is: a loose
model would accept objects the cluster never could, and validation would disagree with
admission. Free-form subtrees the CRD preserves (``overrides.dgd``, ``overrides.profilingJob``,
``features.planner``, ``profilingResults.selectedConfig``) stay plain dicts.
``profilingResults.prediction`` is this project's extension of the status (see ``Prediction``).

The CEL rules (``x-kubernetes-validations``) are not run by pydantic: ``validation.py``
evaluates them with cel-python on raw objects too, so every problem is reported at once rather
than the first one a model hits.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.machinery.client import Resource
from profiler.openapi import GENERATOR_KEY, Rule, k8s, model_schema
from profiler.spec import (
    BACKENDS,
    COMMON_CONFIG,
    CONCRETE_BACKENDS,
    DEFAULT_AUTO_APPLY,
    DEFAULT_BACKEND,
    DEFAULT_ISL,
    DEFAULT_OSL,
    DEFAULT_PVC_MOUNT_PATH,
    DEFAULT_SEARCH_STRATEGY,
    GPU_SKUS,
    INT32_MAX,
    OPTIMIZATION_TYPES,
    RUNTIME_VERSION_PATTERN,
    SEARCH_STRATEGIES,
    SPEC_DESCRIPTION,
    Backend,
    DGDRSpec,
    FeaturesSpec,
    GpuSku,
    HardwareSpec,
    KvRouterSpec,
    MockerSpec,
    ModelCacheSpec,
    OptimizationType,
    OverridesSpec,
    SearchStrategy,
    SLASpec,
    WorkloadSpec,
)

# The spec's models and constants are defined in profiler/spec.py, where the command line
# validates through them too; they are this module's API as well.
__all__ = [
    "BACKENDS",
    "COMMON_CONFIG",
    "CONCRETE_BACKENDS",
    "DEFAULT_AUTO_APPLY",
    "DEFAULT_BACKEND",
    "DEFAULT_ISL",
    "DEFAULT_OSL",
    "DEFAULT_PVC_MOUNT_PATH",
    "DEFAULT_SEARCH_STRATEGY",
    "GPU_SKUS",
    "INT32_MAX",
    "OPTIMIZATION_TYPES",
    "RUNTIME_VERSION_PATTERN",
    "SEARCH_STRATEGIES",
    "SPEC_DESCRIPTION",
    "Backend",
    "DGDRSpec",
    "FeaturesSpec",
    "GpuSku",
    "HardwareSpec",
    "KvRouterSpec",
    "MockerSpec",
    "ModelCacheSpec",
    "OptimizationType",
    "OverridesSpec",
    "SLASpec",
    "SearchStrategy",
    "WorkloadSpec",
]

# ---- resources -----------------------------------------------------------------------------

GROUP = "nvidia.com"
DGDR_KIND = "DynamoGraphDeploymentRequest"
DGDR_API_VERSION = f"{GROUP}/v1beta1"
DGD_KIND = "DynamoGraphDeployment"
DGD_API_VERSION = f"{GROUP}/v1alpha1"

DGDR_CRD_NAME = "dynamographdeploymentrequests.nvidia.com"
DGDR_RESOURCE = Resource(GROUP, "v1beta1", "dynamographdeploymentrequests", DGDR_KIND)
# The generated DGD is v1alpha1 (a ``services`` map), like upstream's Dynamo 1.1 profiler emits,
# unless the cluster serves v1beta1 (a ``components`` list; the current upstream DGD CRD serves
# both and marks v1alpha1 deprecated): the controller asks API discovery at start.
DGD_RESOURCE = Resource(GROUP, "v1alpha1", "dynamographdeployments", DGD_KIND)
DGD_VERSIONS = ("v1alpha1", "v1beta1")


def dgd_resource(api_version: str) -> Resource:
    """The DGD resource of ``nvidia.com/v1alpha1`` or ``nvidia.com/v1beta1`` (or a bare version)."""
    version = api_version.rpartition("/")[2]
    if version not in DGD_VERSIONS:
        raise ValueError(f"no DynamoGraphDeployment version {api_version!r}")
    return Resource(GROUP, version, "dynamographdeployments", DGD_KIND)


SECRETS = Resource("", "v1", "secrets", "Secret")
PODS = Resource("", "v1", "pods", "Pod")
# The Hugging Face token of a namespace: upstream's profiling Job reads this key of the Secret
# named by the controller's --hf-token-secret (upstream: hf-token-secret).
HF_TOKEN_KEY = "HF_TOKEN"
# The label the Dynamo operator puts on every pod of a DGD (its consts.go
# KubeLabelDynamoGraphDeploymentName); upstream finds a DGD's pods by it.
LABEL_DGD_POD = "nvidia.com/dynamo-graph-deployment-name"

# ---- labels, annotations, finalizer ----------------------------------------------------------

LABEL_DGDR_NAME = "dgdr.nvidia.com/name"
LABEL_DGDR_NAMESPACE = "dgdr.nvidia.com/namespace"
LABEL_MANAGED_BY = "nvidia.com/managed-by"
MANAGED_BY = "dynamo-operator"  # upstream's value: tools that select on it keep working

ANNOTATION_GENERATED_DGD_SPEC = "nvidia.com/generated-dgd-spec"
ANNOTATION_ADDITIONAL_RESOURCES = "dgdr.nvidia.com/additional-resources"
# Upstream's cap on what it stores in one annotation or ConfigMap (Kubernetes allows 256 KiB).
MAX_ANNOTATION_BYTES = 250_000

FINALIZER = "nvidia.com/finalizer"

# ---- the spec: defined once, in profiler/spec.py (the command line validates through it too) --

MAX_NAME_LENGTH = 63  # metadata.name becomes the dgdr.nvidia.com/name label value

# ---- enums of the status -------------------------------------------------------------------


class Phase(StrEnum):
    """``status.phase``; an absent or empty phase means Pending."""

    PENDING = "Pending"
    PROFILING = "Profiling"
    READY = "Ready"
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    FAILED = "Failed"


PhaseName = Literal["Pending", "Profiling", "Ready", "Deploying", "Deployed", "Failed"]
# Phases in which the spec is frozen (docs/dgdr-contract.md#spec-changes).
IMMUTABLE_PHASES = frozenset({Phase.PROFILING, Phase.DEPLOYING, Phase.READY, Phase.DEPLOYED})


class ProfilingPhase(StrEnum):
    """``status.profilingPhase``: the profiler's sub-phase while in Profiling."""

    INITIALIZING = "Initializing"
    SWEEPING_PREFILL = "SweepingPrefill"
    SWEEPING_DECODE = "SweepingDecode"
    SELECTING_CONFIG = "SelectingConfig"
    BUILDING_CURVES = "BuildingCurves"
    GENERATING_DGD = "GeneratingDGD"
    DONE = "Done"


ProfilingPhaseName = Literal[
    "Initializing", "SweepingPrefill", "SweepingDecode", "SelectingConfig", "BuildingCurves",
    "GeneratingDGD", "Done",
]  # fmt: skip


class ConditionType(StrEnum):
    SUCCEEDED = "Succeeded"  # the summary kubectl shows in Reason/Message
    VALIDATION = "Validation"
    PROFILING = "Profiling"
    SPEC_GENERATED = "SpecGenerated"
    DEPLOYMENT_READY = "DeploymentReady"


class Reason(StrEnum):
    """Condition reasons (docs/dgdr-contract.md#conditions-and-reasons); profiling sub-phase
    reasons equal the phase names."""

    # Validation
    VALIDATION_PASSED = "ValidationPassed"
    VALIDATION_FAILED = "ValidationFailed"
    # Profiling, in order
    DISCOVERING_HARDWARE = "DiscoveringHardware"
    INITIALIZING = "Initializing"
    PROFILING_RUNNING = "ProfilingRunning"
    SWEEPING_PREFILL = "SweepingPrefill"
    SWEEPING_DECODE = "SweepingDecode"
    SELECTING_CONFIG = "SelectingConfig"
    BUILDING_CURVES = "BuildingCurves"
    GENERATING_DGD = "GeneratingDGD"
    COMPLETED = "Completed"  # profilingPhase Done
    PROFILING_COMPLETED = "ProfilingCompleted"
    # Profiling failures: "<profilingPhase>Failed", or these
    INITIALIZING_FAILED = "InitializingFailed"
    SWEEPING_PREFILL_FAILED = "SweepingPrefillFailed"
    SWEEPING_DECODE_FAILED = "SweepingDecodeFailed"
    SELECTING_CONFIG_FAILED = "SelectingConfigFailed"
    BUILDING_CURVES_FAILED = "BuildingCurvesFailed"
    GENERATING_DGD_FAILED = "GeneratingDGDFailed"
    PROFILING_FAILED = "ProfilingFailed"
    JOB_CREATION_FAILED = "JobCreationFailed"
    # Pending, waiting for what may still appear (this project: upstream fails at once)
    WAITING_FOR_MODEL_CACHE = "WaitingForModelCache"
    WAITING_FOR_GPU_NODES = "WaitingForGPUNodes"
    # this project's profiler refusals (profiler.errors reasons)
    INFEASIBLE = "Infeasible"
    NOT_AVAILABLE = "NotAvailable"
    # SpecGenerated
    SPEC_GENERATED = "SpecGenerated"
    GENERATION_FAILED = "GenerationFailed"
    # This project's extension: SpecGenerated=True with this reason when the generated (closest)
    # configuration is predicted to miss the SLA; Succeeded takes it too in Ready and Deployed.
    SLA_NOT_MET = "SLANotMet"
    # This project's extension: SpecGenerated=True with this reason when the model cannot be
    # performance-modelled and upstream's fallback (a configuration sized by memory) was
    # generated; Succeeded takes it too in Ready and Deployed.
    NOT_PERFORMANCE_MODELLED = "NotPerformanceModelled"
    # DeploymentReady
    DEPLOYMENT_CREATED = "DeploymentCreated"
    DEPLOYMENT_IN_PROGRESS = "DeploymentInProgress"
    DEPLOYMENT_READY = "DeploymentReady"
    DEPLOYMENT_DEGRADED = "DeploymentDegraded"
    DEPLOYMENT_DELETED = "DeploymentDeleted"
    DEPLOYMENT_REJECTED = "DeploymentRejected"
    # Succeeded (the others it takes from the phase or from the failing condition)
    PENDING = "Pending"
    PROFILING = "Profiling"
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    FAILED = "Failed"


def profiling_failed_reason(profiling_phase: str | None) -> Reason:
    """``<phase>Failed`` for a known sub-phase, else ``ProfilingFailed``
    (docs/dgdr-contract.md#conditions-and-reasons)."""
    known = {p.value for p in ProfilingPhase} - {ProfilingPhase.DONE.value}
    if profiling_phase in known:
        return Reason(f"{profiling_phase}Failed")
    return Reason.PROFILING_FAILED


class EventReason(StrEnum):
    INITIALIZED = "Initialized"
    VALIDATION_FAILED = "ValidationFailed"
    PROFILING_JOB_CREATED = "ProfilingJobCreated"
    PROFILING_JOB_FAILED = "ProfilingJobFailed"
    PROFILING_CHECK_FAILED = "ProfilingCheckFailed"
    SPEC_GENERATED = "SpecGenerated"
    SLA_NOT_MET = "SLANotMet"  # Warning, with the spec generated: this project's extension
    NOT_PERFORMANCE_MODELLED = "NotPerformanceModelled"  # Warning, likewise
    GENERATION_FAILED = "GenerationFailed"
    CONFIGMAP_CREATION_FAILED = "ConfigMapCreationFailed"
    SPEC_CHANGE_REJECTED = "SpecChangeRejected"
    DEPLOYMENT_CREATED = "DeploymentCreated"
    DEPLOYMENT_CREATION_FAILED = "DeploymentCreationFailed"
    DEPLOYMENT_READY = "DeploymentReady"
    DEPLOYMENT_DEGRADED = "DeploymentDegraded"
    DEPLOYMENT_DELETED = "DeploymentDeleted"
    IMAGE_PULL_FAILED = "ImagePullFailed"


# ---- models --------------------------------------------------------------------------------
# The CRD's v1beta1 schema is generated from these models and those of profiler/spec.py
# (python -m controller.dgdr.crdgen); the descriptions are what kubectl explain shows.

# What kubectl explain says of each status field, by path below status.
STATUS_DESCRIPTIONS: dict[str, str] = {
    "": "Observed state, written by the controller only.",
    "phase": (
        "Lifecycle phase: Pending (validating, discovering hardware), Profiling,\n"
        "Ready (spec generated, autoApply false), Deploying, Deployed, Failed\n"
        "(terminal; see the Succeeded condition)."
    ),
    "profilingPhase": (
        "Profiler sub-phase while in phase Profiling; kept on failure to show where\n"
        "profiling stopped, absent otherwise."
    ),
    "dgdName": "Name of the generated DynamoGraphDeployment.",
    "profilingJobName": "Name of the profiling job (profile-<name>).",
    "observedGeneration": "The metadata.generation the controller last accepted.",
    "acceptedSpec": (
        "The spec the controller accepted when profiling started (or by a later\n"
        "allowed change), as the spec-change rule needs it: spec.autoApply and\n"
        "spec.runtimeVersionOverride, the only fields that may change afterwards, and\n"
        "a hash of everything else. Written by the controller only."
    ),
    "acceptedSpec.generation": "The metadata.generation of the accepted spec.",
    "acceptedSpec.hash": (
        "sha256 of the accepted spec without autoApply and runtimeVersionOverride."
    ),
    "acceptedSpec.autoApply": "The accepted spec.autoApply.",
    "acceptedSpec.runtimeVersionOverride": "The accepted spec.runtimeVersionOverride, if set.",
    "conditions": (
        "Succeeded (summary), Validation, Profiling, SpecGenerated and\n"
        "DeploymentReady. Extension of this project: when the generated (closest)\n"
        "configuration is predicted to miss spec.sla, SpecGenerated is True with\n"
        "reason SLANotMet and a message naming each missed target and by how much\n"
        "(see status.profilingResults.prediction), and Succeeded carries the miss at\n"
        "the end of its message while the phase is Ready, Deploying or Deployed, with\n"
        "reason SLANotMet where it is True (Ready, Deployed)."
    ),
    "conditions[]": "One aspect of the request's state (metav1.Condition).",
    "conditions[].type": "Condition type, in CamelCase.",
    "conditions[].status": "True, False or Unknown.",
    "conditions[].observedGeneration": "The metadata.generation the condition was set for.",
    "conditions[].lastTransitionTime": "When the status last changed.",
    "conditions[].reason": "Machine-readable CamelCase reason for the last transition.",
    "conditions[].message": "Human-readable details.",
    "profilingResults": "What profiling produced.",
    "profilingResults.selectedConfig": (
        "The generated DynamoGraphDeployment manifest; apply it by hand when\n"
        "spec.autoApply is false."
    ),
    "profilingResults.prediction": (
        "Extension of this project (not in upstream Dynamo's API): the layout the\n"
        "profiler chose, what its performance model predicts for it, and whether\n"
        "that meets spec.sla. Predictions, not measurements. When no configuration\n"
        "meets the SLA the closest one is still generated (upstream relaxes the\n"
        "SLA with a warning): slaMet is false, slaMisses says by how much, the\n"
        "SpecGenerated condition (True) has reason SLANotMet and a Warning event\n"
        "SLANotMet is recorded. Latencies are numbers in milliseconds, like\n"
        "spec.sla, so that each can be compared with its target; they are rounded\n"
        "to 0.01 ms, throughputs to 0.1 tokens/s."
    ),
    "profilingResults.prediction.mode": (
        "agg (every worker prefills and decodes) or disagg (separate prefill\nand decode workers)."
    ),
    "profilingResults.prediction.backend": (
        "The inference backend chosen (spec.backend auto lets the profiler choose)."
    ),
    "profilingResults.prediction.workers": (
        "The worker roles of the layout, each with its parallelism and replicas."
    ),
    "profilingResults.prediction.workers[]": "One worker role of the chosen layout.",
    "profilingResults.prediction.workers[].role": "The worker's role (agg when mode is agg).",
    "profilingResults.prediction.workers[].parallel": (
        "Short label of the parallelism: TP4 (tensor), TP4PP2 (plus\n"
        "pipeline), TEP8 (tensor + expert), DEP8 (attention data +\n"
        "expert)."
    ),
    "profilingResults.prediction.workers[].tp": "Tensor-parallel size of one worker.",
    "profilingResults.prediction.workers[].pp": "Pipeline-parallel size of one worker.",
    "profilingResults.prediction.workers[].ep": (
        "Expert-parallel size of one worker (1 for dense models)."
    ),
    "profilingResults.prediction.workers[].dp": "Attention data-parallel size of one worker.",
    "profilingResults.prediction.workers[].replicas": "Number of workers of this role.",
    "profilingResults.prediction.workers[].batch": (
        "Concurrency cap of one worker, written into the generated\n"
        "deployment (vllm --max-num-seqs, sglang\n"
        "--max-running-requests, trtllm max_batch_size); for prefill\n"
        "workers, prompts per batch."
    ),
    "profilingResults.prediction.workers[].gpus": "GPUs of one worker (tp x pp x dp).",
    "profilingResults.prediction.totalGpus": (
        "GPUs the whole layout uses (replicas x gpus, summed over roles)."
    ),
    "profilingResults.prediction.ttftMs": (
        "Predicted time to first token, in milliseconds (compare spec.sla.ttft)."
    ),
    "profilingResults.prediction.itlMs": (
        "Predicted inter-token latency, in milliseconds (compare spec.sla.itl)."
    ),
    "profilingResults.prediction.e2eLatencyMs": (
        "Predicted end-to-end latency of one request, ttftMs + osl x itlMs, in\n"
        "milliseconds (compare spec.sla.e2eLatency)."
    ),
    "profilingResults.prediction.tokensPerSecondPerGpu": (
        "Predicted output tokens per second per GPU, at the layout's load."
    ),
    "profilingResults.prediction.tokensPerSecondPerUser": (
        "Predicted output tokens per second seen by one request (1000 / itlMs)."
    ),
    "profilingResults.prediction.slaMet": "Whether the predictions meet every target of spec.sla.",
    "profilingResults.prediction.slaMisses": (
        "Each target of spec.sla the predictions miss; empty when slaMet."
    ),
    "profilingResults.prediction.slaMisses[]": "One missed target.",
    "profilingResults.prediction.slaMisses[].target": "The spec.sla field missed.",
    "profilingResults.prediction.slaMisses[].targetMs": "The target, in milliseconds.",
    "profilingResults.prediction.slaMisses[].predictedMs": "The prediction, in milliseconds.",
    "profilingResults.prediction.slaMisses[].missedByPercent": (
        "How far the prediction is over the target, in whole percent\n"
        "(at least 1): (predictedMs / targetMs - 1) x 100."
    ),
    "profilingResults.pareto": "Deprecated upstream and not populated; kept for compatibility.",
    "profilingResults.pareto[]": "One configuration on the Pareto front.",
    "profilingResults.pareto[].config": "A partial DynamoGraphDeployment.",
    "deploymentInfo": "Replica counts of the created DynamoGraphDeployment.",
    "deploymentInfo.replicas": "Desired replicas, summed over components.",
    "deploymentInfo.availableReplicas": "Available replicas, summed over components.",
}


def _doc(path: str, **extra: Any) -> Any:
    """A status field: optional, described, with schema keys (``format``...) when given."""
    return Field(
        default=None, description=STATUS_DESCRIPTIONS[path], json_schema_extra=k8s(**extra)
    )


def _item(path: str) -> ConfigDict:
    """The config of a model that is the item of an array: its description is the item's."""
    return ConfigDict(json_schema_extra={"description": STATUS_DESCRIPTIONS[path]})


class _Open(BaseModel):
    """Status and metadata: written by others, so fields this version does not know are kept."""

    model_config = ConfigDict(**COMMON_CONFIG, extra="allow")


class Condition(_Open):
    """A ``metav1.Condition``."""

    model_config = _item("conditions[]")

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description=STATUS_DESCRIPTIONS["conditions[].type"],
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description=STATUS_DESCRIPTIONS["conditions[].status"]
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description=STATUS_DESCRIPTIONS["conditions[].observedGeneration"],
        json_schema_extra=k8s(format="int64"),
    )
    last_transition_time: str = Field(
        description=STATUS_DESCRIPTIONS["conditions[].lastTransitionTime"],
        json_schema_extra=k8s(format="date-time"),
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description=STATUS_DESCRIPTIONS["conditions[].reason"],
    )
    message: str = Field(max_length=32768, description=STATUS_DESCRIPTIONS["conditions[].message"])


class ParetoEntry(_Open):
    model_config = _item("profilingResults.pareto[]")

    config: dict[str, Any] | None = _doc(
        "profilingResults.pareto[].config", x_kubernetes_preserve_unknown_fields=True
    )


ServingMode = Literal["agg", "disagg"]
WorkerRole = Literal["agg", "prefill", "decode"]
SLATarget = Literal["ttft", "itl", "e2eLatency"]
_W = "profilingResults.prediction.workers[]"
_M = "profilingResults.prediction.slaMisses[]"
_P = "profilingResults.prediction"


class PredictedWorker(_Open):
    """One kind of worker of the chosen layout (``profilingResults.prediction.workers[]``)."""

    model_config = _item(_W)

    role: WorkerRole | None = _doc(f"{_W}.role")
    parallel: str | None = Field(
        default=None, max_length=64, description=STATUS_DESCRIPTIONS[f"{_W}.parallel"]
    )
    tp: int | None = _doc(f"{_W}.tp", format="int32")
    pp: int | None = _doc(f"{_W}.pp", format="int32")
    ep: int | None = _doc(f"{_W}.ep", format="int32")
    dp: int | None = _doc(f"{_W}.dp", format="int32")
    replicas: int | None = _doc(f"{_W}.replicas", format="int32")
    batch: int | None = _doc(f"{_W}.batch", format="int32")
    gpus: int | None = _doc(f"{_W}.gpus", format="int32")


class SLAMiss(_Open):
    """One SLA target the chosen configuration is predicted to miss."""

    model_config = _item(_M)

    target: SLATarget | None = _doc(f"{_M}.target")
    target_ms: float | None = _doc(f"{_M}.targetMs")
    predicted_ms: float | None = _doc(f"{_M}.predictedMs")
    missed_by_percent: int | None = _doc(f"{_M}.missedByPercent", format="int64")


class Prediction(_Open):
    """``status.profilingResults.prediction``, an extension of this project (upstream has no
    such field): the chosen layout, what the performance model predicts for it, and the SLA
    verdict.

    Numbers are ``type: number`` (JSON decimals) in the units of ``spec.sla``, which are numbers
    too: a prediction is compared with its target (``ttftMs`` with ``spec.sla.ttft``), so it
    keeps the target's type and unit rather than becoming integer micro-units or a quantity
    string. Kubernetes discourages floats mostly for spec fields that must round-trip exactly;
    these are written only by the controller, rounded once (0.01 ms, 0.1 tokens/s), so a read
    and rewrite never changes them. Counts (GPUs, replicas, batch, percent) are integers.
    """

    mode: ServingMode | None = _doc(f"{_P}.mode")
    backend: Literal["sglang", "trtllm", "vllm"] | None = _doc(f"{_P}.backend")
    workers: list[PredictedWorker] | None = Field(
        default=None, max_length=8, description=STATUS_DESCRIPTIONS[f"{_P}.workers"]
    )
    total_gpus: int | None = _doc(f"{_P}.totalGpus", format="int32")
    ttft_ms: float | None = _doc(f"{_P}.ttftMs")
    itl_ms: float | None = _doc(f"{_P}.itlMs")
    e2e_latency_ms: float | None = Field(
        default=None, alias="e2eLatencyMs", description=STATUS_DESCRIPTIONS[f"{_P}.e2eLatencyMs"]
    )
    tokens_per_second_per_gpu: float | None = _doc(f"{_P}.tokensPerSecondPerGpu")
    tokens_per_second_per_user: float | None = _doc(f"{_P}.tokensPerSecondPerUser")
    sla_met: bool | None = _doc(f"{_P}.slaMet")
    sla_misses: list[SLAMiss] | None = Field(
        default=None, max_length=3, description=STATUS_DESCRIPTIONS[f"{_P}.slaMisses"]
    )


class ProfilingResults(_Open):
    selected_config: dict[str, Any] | None = _doc(
        "profilingResults.selectedConfig", x_kubernetes_preserve_unknown_fields=True
    )
    prediction: Prediction | None = _doc(_P)
    pareto: list[ParetoEntry] | None = _doc("profilingResults.pareto")


class DeploymentInfo(_Open):
    replicas: int | None = _doc("deploymentInfo.replicas", format="int32")
    available_replicas: int | None = _doc("deploymentInfo.availableReplicas", format="int32")


class AcceptedSpec(_Open):
    """``status.acceptedSpec``: the spec the controller accepted, as the spec-change rule needs
    it (the fields that may change, a hash of the rest); kept where users cannot edit it."""

    generation: int | None = _doc("acceptedSpec.generation", format="int64")
    hash: str | None = _doc("acceptedSpec.hash")
    auto_apply: bool | None = _doc("acceptedSpec.autoApply")
    runtime_version_override: str | None = _doc("acceptedSpec.runtimeVersionOverride")


class DGDRStatus(_Open):
    phase: PhaseName | None = _doc("phase")
    profiling_phase: ProfilingPhaseName | None = _doc("profilingPhase")
    dgd_name: str | None = _doc("dgdName")
    profiling_job_name: str | None = _doc("profilingJobName")
    observed_generation: int | None = _doc("observedGeneration", format="int64")
    accepted_spec: AcceptedSpec | None = _doc("acceptedSpec")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=STATUS_DESCRIPTIONS["conditions"],
        json_schema_extra=k8s(x_kubernetes_list_type="map", x_kubernetes_list_map_keys=["type"]),
    )
    profiling_results: ProfilingResults | None = _doc("profilingResults")
    deployment_info: DeploymentInfo | None = _doc("deploymentInfo")

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class ObjectMeta(_Open):
    """The parts of ``metadata`` the controller reads; everything else is kept as is."""

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None


NAME_RULE = Rule(
    f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters, because it is used as the "
    "value of the dgdr.nvidia.com/name label",
)
# The spec-change rule as a transition rule (docs/dgdr-contract.md#spec-changes): the API server
# enforces it; the controller enforces the whole rule itself (the reconciler, with
# status.acceptedSpec), so it is not evaluated in Python.
_SAME = (
    "(has(self.spec.{f}) == has(oldSelf.spec.{f})"
    " && (!has(self.spec.{f}) || self.spec.{f} == oldSelf.spec.{f}))"
)
_SAME_OPT = "self.spec.?{p}.orValue(false) == oldSelf.spec.?{p}.orValue(false)"
_SAME_SET = "self.spec.?{p}.hasValue() == oldSelf.spec.?{p}.hasValue()"
IMMUTABLE_RULE = Rule(
    "!(oldSelf.?status.?phase.orValue('') in ['Profiling', 'Deploying', 'Ready', 'Deployed'])\n"
    "|| (self.spec.model == oldSelf.spec.model\n"
    + "".join(
        f"    && {_SAME.format(f=f)}\n"
        for f in ("backend", "image", "searchStrategy", "modelCache", "hardware", "workload", "sla")
    )
    + f"    && {_SAME_OPT.format(p='overrides.?trustRemoteCode')}\n"
    + f"    && {_SAME_SET.format(p='overrides.?dgd')}\n"
    + f"    && {_SAME_SET.format(p='overrides.?profilingJob')}\n"
    + f"    && {_SAME_SET.format(p='features.?planner')}\n"
    + f"    && {_SAME_OPT.format(p='features.?mocker.?enabled')}\n"
    + f"    && {_SAME_OPT.format(p='features.?kvRouter.?enabled')}\n"
    "    && (oldSelf.status.phase in ['Profiling', 'Ready'] && oldSelf.spec.?autoApply == "
    "optional.of(false)\n"
    "        ? (oldSelf.status.phase == 'Ready' || self.spec.?autoApply == optional.of(false))\n"
    "        : (self.spec.?autoApply == oldSelf.spec.?autoApply\n"
    f"           && {_SAME.format(f='runtimeVersionOverride')})))",
    "spec is immutable once profiling has started: only spec.autoApply and "
    "spec.runtimeVersionOverride may change, and only while spec.autoApply is false in phase "
    "Profiling or Ready; delete and recreate the DynamoGraphDeploymentRequest to change anything "
    "else",
    reason="FieldValueForbidden",
    field_path=".spec",
    message_expression="'spec is immutable in phase ' + oldSelf.status.phase + ': only "
    "spec.autoApply and spec.runtimeVersionOverride may change, and only while spec.autoApply is "
    "false in phase Profiling or Ready (spec.autoApply may become true only in phase Ready); "
    "delete and recreate the DynamoGraphDeploymentRequest to change anything else'",
)
DGDR_DESCRIPTION = (
    "DynamoGraphDeploymentRequest asks for a model to be served under latency targets\n"
    "within a GPU budget. The controller validates the request, profiles it (searches\n"
    "parallelism and replica layouts against a performance model), generates the\n"
    "DynamoGraphDeployment that meets the targets at the best throughput per GPU and,\n"
    "when spec.autoApply is true, creates it and follows its health.\n"
    "\n"
    "Lifecycle (status.phase): Pending -> Profiling -> Deploying -> Deployed, or\n"
    "Pending -> Profiling -> Ready when spec.autoApply is false; Failed is terminal.\n"
    "\n"
    "The spec is immutable once profiling has started (phase Profiling, Deploying, Ready\n"
    "or Deployed). The one exception: while spec.autoApply is false in phase Profiling or\n"
    "Ready, spec.autoApply and spec.runtimeVersionOverride may change, and spec.autoApply\n"
    "may become true only in phase Ready. To change anything else, delete and recreate\n"
    "the request. The API server enforces this with a transition rule on every typed\n"
    "field and on the presence of the free-form objects (overrides.dgd,\n"
    "overrides.profilingJob, features.planner), whose content is too large for a CEL\n"
    "comparison; the controller enforces the whole rule (it compares metadata.generation\n"
    "with status.observedGeneration), ignores any change that reaches it and records a\n"
    "Warning event SpecChangeRejected."
)


class DynamoGraphDeploymentRequest(_Open):
    model_config = ConfigDict(
        json_schema_extra={"description": DGDR_DESCRIPTION, **k8s(NAME_RULE, IMMUTABLE_RULE)}
    )

    api_version: str = Field(
        default=DGDR_API_VERSION,
        description="APIVersion defines the versioned schema of this representation of an object.",
        json_schema_extra={GENERATOR_KEY: {"default": False}},
    )
    kind: str = Field(
        default=DGDR_KIND,
        description="Kind is a string value representing the REST resource this object represents.",
        json_schema_extra={GENERATOR_KEY: {"default": False}},
    )
    metadata: ObjectMeta = Field(
        default_factory=ObjectMeta,
        json_schema_extra={GENERATOR_KEY: {"schema": {"type": "object"}}},
    )
    spec: DGDRSpec = Field(description=SPEC_DESCRIPTION)
    status: DGDRStatus | None = _doc("")

    @property
    def phase(self) -> Phase:
        """The phase, Pending when the controller has not written one yet."""
        raw = self.status.phase if self.status else None
        return Phase(raw) if raw else Phase.PENDING

    def to_dict(self) -> dict[str, Any]:
        """Back to the JSON shape, with only the fields the source had (round-trips)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


@functools.cache
def crd_schema() -> dict[str, Any]:
    """The CRD's v1beta1 ``openAPIV3Schema``, generated from the models."""
    return model_schema(DynamoGraphDeploymentRequest)


# ---- the DGD fields the controller reads ---------------------------------------------------


class _Lenient(BaseModel):
    """The DGD belongs to the Dynamo platform; read what is needed, never reject its shape."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, protected_namespaces=()
    )


class DGDServiceStatus(_Lenient):
    replicas: int | None = None
    available_replicas: int | None = None


class DGDStatus(_Lenient):
    state: str | None = None  # initializing | pending | successful | failed
    services: dict[str, DGDServiceStatus] | None = None
    conditions: list[dict[str, Any]] | None = None

    def deployment_info(self) -> DeploymentInfo:
        """Replicas summed over services, as ``status.deploymentInfo`` reports them."""
        services = (self.services or {}).values()
        return DeploymentInfo(
            replicas=sum(s.replicas or 0 for s in services),
            available_replicas=sum(s.available_replicas or 0 for s in services),
        )


DGD_STATE_SUCCESSFUL = "successful"


class DynamoGraphDeployment(_Lenient):
    api_version: str = DGD_API_VERSION
    kind: str = DGD_KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: dict[str, Any] = Field(default_factory=dict)
    status: DGDStatus | None = None
