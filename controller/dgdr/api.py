"""The DynamoGraphDeploymentRequest API as typed models, and the names the controller writes.

The models mirror ``deploy/crds/nvidia.com_dynamographdeploymentrequests.yaml`` field for field:
the same camelCase names, enums, bounds and defaults, so an object the API server stored parses
here and dumps back (``by_alias=True, exclude_unset=True``) to an equal object. They are strict
(no ``"500"`` for a number, no ``1`` for a boolean) because the API server is: a loose model
would accept objects the cluster never could, and validation would disagree with admission.
Free-form subtrees the CRD preserves (``overrides.dgd``, ``overrides.profilingJob``,
``features.planner``, ``profilingResults.selectedConfig``) stay plain dicts.
``profilingResults.prediction`` is this project's extension of the status (see ``Prediction``).

Cross-field rules (``ttft`` with ``itl``, ...) live in ``validation.py``, which checks raw
objects too, so every problem is reported at once rather than the first one a model hits.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.machinery.client import Resource

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

# ---- enums of the spec ---------------------------------------------------------------------

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

# Defaults, equal to the CRD's (a test holds them together).
DEFAULT_BACKEND: Backend = "auto"
DEFAULT_SEARCH_STRATEGY: SearchStrategy = "rapid"
DEFAULT_AUTO_APPLY = True
DEFAULT_ISL = 4000
DEFAULT_OSL = 1000
DEFAULT_PVC_MOUNT_PATH = "/opt/model-cache"

INT32_MAX = 2**31 - 1
MAX_NAME_LENGTH = 63  # metadata.name becomes the dgdr.nvidia.com/name label value
RUNTIME_VERSION_PATTERN = r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$"

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

MODEL_BLANK = "must not be empty or blank"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(MODEL_BLANK)
    return value


_COMMON = ConfigDict(
    strict=True,
    populate_by_name=True,
    alias_generator=to_camel,
    allow_inf_nan=False,
    protected_namespaces=(),
)


class _Strict(BaseModel):
    """Spec parts: unknown fields are errors, as kubectl's strict field validation makes them."""

    model_config = ConfigDict(**_COMMON, extra="forbid")


class _Open(BaseModel):
    """Status and metadata: written by others, so fields this version does not know are kept."""

    model_config = ConfigDict(**_COMMON, extra="allow")


Positive = Annotated[float, Field(gt=0)]
Int32Positive = Annotated[int, Field(ge=1, le=INT32_MAX)]


class ModelCacheSpec(_Strict):
    pvc_name: str | None = Field(default=None, max_length=253)
    pvc_model_path: str | None = Field(default=None, max_length=4096)
    pvc_mount_path: str = Field(default=DEFAULT_PVC_MOUNT_PATH, max_length=4096, pattern=r"^/")


class HardwareSpec(_Strict):
    gpu_sku: GpuSku | None = None
    vram_mb: Positive | None = None
    total_gpus: Int32Positive | None = None
    num_gpus_per_node: Int32Positive | None = None
    interconnect: str | None = Field(default=None, max_length=64)
    rdma: bool | None = None


class WorkloadSpec(_Strict):
    isl: Int32Positive = DEFAULT_ISL
    osl: Int32Positive = DEFAULT_OSL
    concurrency: Positive | None = None
    request_rate: Positive | None = None


class SLASpec(_Strict):
    ttft: Positive | None = None
    itl: Positive | None = None
    e2e_latency: Positive | None = Field(default=None, alias="e2eLatency")
    optimization_type: OptimizationType | None = None


class OverridesSpec(_Strict):
    profiling_job: dict[str, Any] | None = None
    dgd: dict[str, Any] | None = None
    trust_remote_code: bool = False


class ToggleSpec(_Strict):
    enabled: bool = False


class FeaturesSpec(_Strict):
    planner: dict[str, Any] | None = None  # present (even {}) = planner on
    mocker: ToggleSpec | None = None
    kv_router: ToggleSpec | None = None


class DGDRSpec(_Strict):
    model: Annotated[str, Field(max_length=512), AfterValidator(_not_blank)]
    backend: Backend = DEFAULT_BACKEND
    image: str | None = Field(default=None, max_length=1024)
    runtime_version_override: str | None = Field(
        default=None, max_length=16, pattern=RUNTIME_VERSION_PATTERN
    )
    model_cache: ModelCacheSpec | None = None
    hardware: HardwareSpec | None = None
    workload: WorkloadSpec | None = None
    sla: SLASpec | None = None
    overrides: OverridesSpec | None = None
    features: FeaturesSpec | None = None
    search_strategy: SearchStrategy = DEFAULT_SEARCH_STRATEGY
    auto_apply: bool = DEFAULT_AUTO_APPLY

    def to_dict(self) -> dict[str, Any]:
        """The camelCase spec the profiler takes (``PlanRequest.from_spec``), defaults included."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Condition(_Open):
    """A ``metav1.Condition``."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    message: str = Field(max_length=32768)


class ParetoEntry(_Open):
    config: dict[str, Any] | None = None


ServingMode = Literal["agg", "disagg"]
WorkerRole = Literal["agg", "prefill", "decode"]
SLATarget = Literal["ttft", "itl", "e2eLatency"]


class PredictedWorker(_Open):
    """One kind of worker of the chosen layout (``profilingResults.prediction.workers[]``)."""

    role: WorkerRole | None = None
    parallel: str | None = None
    tp: int | None = None
    pp: int | None = None
    ep: int | None = None
    dp: int | None = None
    replicas: int | None = None
    batch: int | None = None
    gpus: int | None = None


class SLAMiss(_Open):
    """One SLA target the chosen configuration is predicted to miss."""

    target: SLATarget | None = None
    target_ms: float | None = None
    predicted_ms: float | None = None
    missed_by_percent: int | None = None


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

    mode: ServingMode | None = None
    backend: Literal["sglang", "trtllm", "vllm"] | None = None
    workers: list[PredictedWorker] | None = None
    total_gpus: int | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None
    e2e_latency_ms: float | None = Field(default=None, alias="e2eLatencyMs")
    tokens_per_second_per_gpu: float | None = None
    tokens_per_second_per_user: float | None = None
    sla_met: bool | None = None
    sla_misses: list[SLAMiss] | None = None


class ProfilingResults(_Open):
    selected_config: dict[str, Any] | None = None
    prediction: Prediction | None = None
    pareto: list[ParetoEntry] | None = None


class DeploymentInfo(_Open):
    replicas: int | None = None
    available_replicas: int | None = None


class AcceptedSpec(_Open):
    """``status.acceptedSpec``: the spec the controller accepted, as the spec-change rule needs
    it (the fields that may change, a hash of the rest); kept where users cannot edit it."""

    generation: int | None = None
    hash: str | None = None
    auto_apply: bool | None = None
    runtime_version_override: str | None = None


class DGDRStatus(_Open):
    phase: PhaseName | None = None
    profiling_phase: ProfilingPhaseName | None = None
    dgd_name: str | None = None
    profiling_job_name: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    profiling_results: ProfilingResults | None = None
    deployment_info: DeploymentInfo | None = None
    accepted_spec: AcceptedSpec | None = None

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


class DynamoGraphDeploymentRequest(_Open):
    api_version: str = DGDR_API_VERSION
    kind: str = DGDR_KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DGDRSpec
    status: DGDRStatus | None = None

    @property
    def phase(self) -> Phase:
        """The phase, Pending when the controller has not written one yet."""
        raw = self.status.phase if self.status else None
        return Phase(raw) if raw else Phase.PENDING

    def to_dict(self) -> dict[str, Any]:
        """Back to the JSON shape, with only the fields the source had (round-trips)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


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
