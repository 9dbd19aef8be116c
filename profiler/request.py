"""The planning request: a DGDR ``.spec`` read once, checked completely, then trusted.

Every check collects into one list so a user fixes their manifest in one round trip, and every
message starts with the path of the field it is about (``spec.sla.ttft``), which is what the
controller puts in its ``Failed`` condition and what the command line prints.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from profiler.errors import FieldError, ProfilerError, SpecError
from profiler.hardware import SKUS, GpuSpec, get_gpu
from profiler.hub import HubError, HubSettings
from profiler.models import (
    ModelArch,
    UnsupportedArchitectureError,
    in_catalog,
    quant_for,
    resolve_model,
)
from profiler.naive import naive_gpus
from profiler.search import min_gpus_to_fit

# The Dynamo release this project targets (Dynamo 1.1.x: docs/dgdr-contract.md#versions).
DYNAMO_VERSION = "1.1.0"
# The image worker, frontend and planner images are derived from when a spec names none:
# upstream's default, the one its mutating webhook writes into spec.image on CREATE
# (``nvcr.io/nvidia/ai-dynamo/dynamo-planner:<operator version>``, defaulting/
# dynamographdeploymentrequest_handler.go). The controller's --default-image replaces it.
DEFAULT_IMAGE = f"nvcr.io/nvidia/ai-dynamo/dynamo-planner:{DYNAMO_VERSION}"

BACKENDS = ("vllm", "sglang", "trtllm")
DEFAULT_ISL = 4000
DEFAULT_OSL = 1000
DEFAULT_TTFT_MS = 2000.0
DEFAULT_ITL_MS = 30.0
DEFAULT_MOUNT_PATH = "/opt/model-cache"
# Grove builds pod names from "<dgd>-<service>"; upstream rejects anything longer than this.
MAX_DGD_SERVICE_NAME = 45
# The CRD's bound on its integer fields (format int32), applied to every whole number here.
INT32_MAX = 2**31 - 1
# Loads beyond any deployment (requests per second, or concurrent requests): 1e300 overflowed the
# estimator's arithmetic and silently changed the plan.
MAX_LOAD = 1e9
RUNTIME_VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Worker service names per backend and layout, as upstream's generated DGDs have them: the
# disaggregated names of backend_components.py; for an aggregated vLLM worker the name of the
# agg.yaml template it is built from (``VllmDecodeWorker``, not backend_components' ``VllmWorker``),
# so an ``overrides.dgd`` written against upstream's output lands on it.
SERVICE_NAMES: dict[str, dict[str, str]] = {
    "vllm": {
        "agg": "VllmDecodeWorker",
        "prefill": "VllmPrefillWorker",
        "decode": "VllmDecodeWorker",
    },
    "sglang": {"agg": "decode", "prefill": "prefill", "decode": "decode"},
    "trtllm": {"agg": "TRTLLMWorker", "prefill": "prefill", "decode": "decode"},
    "mocker": {"agg": "decode", "prefill": "prefill", "decode": "decode"},
}
FRONTEND_SERVICE = "Frontend"
PLANNER_SERVICE = "Planner"

# The two versions of upstream's DGD CRD: v1alpha1 (a ``services`` map; what the Dynamo 1.1
# profiler generates) and v1beta1 (a ``components`` list with native pod templates; served by the
# current CRD, which marks v1alpha1 deprecated). The controller generates what the cluster serves.
DGD_V1ALPHA1 = "nvidia.com/v1alpha1"
DGD_V1BETA1 = "nvidia.com/v1beta1"
DGD_API_VERSIONS = (DGD_V1ALPHA1, DGD_V1BETA1)

SLA_NULL = (
    "must not be null: leave it out to take its default (ttft 2000 ms, itl 30 ms), or give "
    "spec.sla.e2eLatency instead of ttft and itl"
)
SLA_E2E = "cannot be combined with spec.sla.ttft or spec.sla.itl: give one or the other"

_PLANNER_TARGETS = ("throughput", "latency", "load", "sla")
_PLANNER_SWEEP_MODES = ("none", "rapid", "thorough")
_PLANNER_MODES = ("disagg", "prefill", "decode", "agg")
_PLANNER_BACKENDS = ("vllm", "sglang", "trtllm", "mocker")


@dataclass(frozen=True)
class ModelCache:
    """Where the weights live on a PVC; the generated workers mount it and read from it."""

    pvc_name: str
    mount_path: str = DEFAULT_MOUNT_PATH
    model_path: str | None = None

    @property
    def model_dir(self) -> str | None:
        """The model directory inside the container (``pvcModelPath`` may already be absolute)."""
        if not self.model_path:
            return None
        if self.model_path.startswith("/"):
            return self.model_path
        return self.mount_path.rstrip("/") + "/" + self.model_path


@dataclass(frozen=True)
class PlanRequest:
    """Everything ``plan`` needs, with defaults applied; built by ``from_spec`` after validation."""

    dgdr_name: str
    namespace: str | None
    model: str
    arch: ModelArch
    quant: str
    backend: str  # auto | vllm | sglang | trtllm
    backends: tuple[str, ...]  # the concrete backends to evaluate
    image: str
    search_strategy: str
    gpu: GpuSpec
    gpu_sku: str
    num_gpus_per_node: int
    total_gpus: int
    isl: int
    osl: int
    concurrency: float | None = None
    request_rate: float | None = None
    ttft_ms: float | None = DEFAULT_TTFT_MS
    itl_ms: float | None = DEFAULT_ITL_MS
    e2e_latency_ms: float | None = None
    optimization_type: str | None = None
    planner: dict[str, Any] | None = None
    mocker: bool = False
    kv_router: bool = False
    trust_remote_code: bool = False
    runtime_version_override: str | None = None
    model_cache: ModelCache | None = None
    overrides_dgd: dict[str, Any] | None = None
    tolerations: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # Why the performance model cannot describe this model (None: it can). Such a request gets
    # upstream's fallback: a tensor-parallel configuration sized by memory, with no predictions.
    not_modelled: str | None = None
    dgd_api_version: str = DGD_V1ALPHA1

    @property
    def modelled(self) -> bool:
        return self.not_modelled is None

    @property
    def dgd_name(self) -> str:
        return dgd_name_for(self.dgdr_name, self.overrides_dgd)

    @property
    def planner_enabled(self) -> bool:
        return self.planner is not None and planner_enabled(self.planner)

    @property
    def picking_mode(self) -> str:
        """``autoscale`` | ``load_match`` | ``default``, chosen automatically
        (docs/dgdr-contract.md#search-strategies-and-picking-modes)."""
        if self.planner_enabled:
            return "autoscale"
        if self.concurrency is not None or self.request_rate is not None:
            return "load_match"
        return "default"

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        dgdr_name: str = "plan",
        namespace: str | None = None,
        hub: HubSettings | None = None,
        dgd_api_version: str = DGD_V1ALPHA1,
    ) -> PlanRequest:
        """Parse and check a DGDR spec; raises ``SpecError`` holding every problem found.

        A model the catalog does not know is looked up on the Hub when ``hub`` is given (a
        network call: ``HubUnavailableError`` when the Hub does not answer, which is not the
        spec's fault and so is raised as is, never folded into the ``SpecError``).
        """
        if dgd_api_version not in DGD_API_VERSIONS:
            raise ValueError(f"dgd_api_version must be one of {DGD_API_VERSIONS}")
        parsed = _parse(spec, dgdr_name=dgdr_name, hub=hub, dgd_api_version=dgd_api_version)
        if parsed.errors:
            raise SpecError(parsed.errors)
        assert parsed.request_kwargs is not None
        return cls(
            dgdr_name=dgdr_name,
            namespace=namespace,
            dgd_api_version=dgd_api_version,
            **parsed.request_kwargs,
        )


def validate_spec(spec: Mapping[str, Any], *, require_hardware: bool = True) -> list[FieldError]:
    """Semantic checks of a DGDR spec: SKU, budget, CRD rules; the model when it is in the
    catalog (a model only the Hub knows is checked when it is profiled: validating makes no
    network call). Bad input is returned as field errors; an exception is a bug and propagates,
    so the controller logs, counts and retries it instead of failing the user's DGDR for good.

    ``require_hardware=False`` is for a controller that validates before it discovers the
    cluster's GPUs: a missing ``gpuSku`` is then not an error (checks that need it are skipped).
    """
    return _parse(
        spec, dgdr_name=None, require_hardware=require_hardware, defer_unknown_model=True
    ).errors


def dgd_name_for(dgdr_name: str, overrides_dgd: Mapping[str, Any] | None) -> str:
    """``overrides.dgd.metadata.name`` when given, else ``<dgdr>-dgd``
    (docs/dgdr-contract.md#generated-dgd)."""
    if overrides_dgd:
        meta = overrides_dgd.get("metadata")
        if isinstance(meta, Mapping) and isinstance(meta.get("name"), str) and meta["name"]:
            return str(meta["name"])
    return f"{dgdr_name}-dgd"


def planner_enabled(cfg: Mapping[str, Any]) -> bool:
    """Upstream's PlannerConfig coercion: targets other than ``sla`` force load scaling on."""
    ets, els = _planner_scaling(cfg)
    return ets or els


def _planner_scaling(cfg: Mapping[str, Any]) -> tuple[bool, bool]:
    target = cfg.get("optimization_target", "throughput")
    if target != "sla":
        return False, True
    return bool(cfg.get("enable_throughput_scaling", True)), bool(
        cfg.get("enable_load_scaling", False)
    )


def too_long_services(dgd_name: str, backend: str, *, planner: bool, mocker: bool) -> list[str]:
    """Services whose ``<dgd>-<service>`` would pass the 45-character limit."""
    names = set(SERVICE_NAMES["mocker" if mocker else backend].values()) | {FRONTEND_SERVICE}
    if planner:
        names.add(PLANNER_SERVICE)
    return sorted(n for n in names if len(dgd_name) + 1 + len(n) > MAX_DGD_SERVICE_NAME)


@dataclass
class _Parsed:
    errors: list[FieldError]
    request_kwargs: dict[str, Any] | None


class _Reader:
    """Typed access to a nested camelCase dict that records a FieldError instead of raising."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def _typed(self, parent: Mapping[str, Any], key: str, path: str, kind: type, what: str) -> Any:
        value = parent.get(key)
        if value is None or isinstance(value, kind):
            return value
        self.add(path, f"must be {what}, got {value!r}")
        return None

    def obj(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value: Mapping[str, Any] | None = self._typed(parent, key, path, Mapping, "an object")
        return value if value is not None else {}

    def raw_object(
        self, parent: Mapping[str, Any], key: str, path: str, what: str
    ) -> dict[str, Any] | None:
        """A free-form object the CRD keeps as is (PlannerConfig, a partial DGD); None if absent."""
        value = self._typed(parent, key, path, Mapping, f"an object ({what})")
        return dict(value) if value is not None else None

    def string(self, parent: Mapping[str, Any], key: str, path: str) -> str | None:
        value: str | None = self._typed(parent, key, path, str, "a string")
        return value

    def boolean(self, parent: Mapping[str, Any], key: str, path: str) -> bool:
        return bool(self._typed(parent, key, path, bool, "true or false"))

    def positive(
        self,
        parent: Mapping[str, Any],
        key: str,
        path: str,
        *,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        """A number > 0 (and >= ``minimum``, <= ``maximum``); a whole one, at most the CRD's
        int32 bound, with ``integer``. Infinite, NaN and absurdly large values are refused
        here, naming the field, instead of overflowing the estimator's arithmetic."""
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"must be a number, got {value!r}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"must be a finite number, got {value!r}")
            return None
        limit = maximum if maximum is not None else (INT32_MAX if integer else None)
        if limit is not None and value > limit:
            self.add(path, f"must be at most {limit:g}, got {value!r}")
            return None
        if integer and isinstance(value, float) and not value.is_integer():
            self.add(path, f"must be a whole number, got {value!r}")
            return None
        if not value > 0:
            self.add(path, f"must be greater than 0, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.add(path, f"must be at least {minimum:g}, got {value!r}")
            return None
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            self.add(path, f"must be a finite number, got {value!r}")
            return None

    def choice(
        self, parent: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]
    ) -> str | None:
        value = self.string(parent, key, path)
        if value is not None and value not in allowed:
            self.add(path, f"must be one of {', '.join(allowed)}; got {value!r}")
            return None
        return value


def _parse(
    spec: Mapping[str, Any],
    *,
    dgdr_name: str | None,
    require_hardware: bool = True,
    hub: HubSettings | None = None,
    defer_unknown_model: bool = False,
    dgd_api_version: str | None = None,
) -> _Parsed:
    errors: list[FieldError] = []
    r = _Reader(errors)
    if not isinstance(spec, Mapping):
        return _Parsed([FieldError("spec", "must be an object")], None)

    # --- model, backend, strategy, image -------------------------------------------------------
    model = r.string(spec, "model", "spec.model")
    if model is not None and not model.strip():
        r.add("spec.model", "must not be empty")
        model = None
    elif spec.get("model") is None:
        r.add("spec.model", "required: the Hugging Face id or served name of the model")
    backend = r.choice(spec, "backend", "spec.backend", ("auto", *BACKENDS)) or "auto"
    strategy = (
        r.choice(spec, "searchStrategy", "spec.searchStrategy", ("rapid", "thorough")) or "rapid"
    )
    if strategy == "thorough" and backend == "auto":
        r.add(
            "spec.backend",
            "searchStrategy thorough needs a concrete backend (vllm, sglang or trtllm), not auto",
        )
    r.boolean(spec, "autoApply", "spec.autoApply")  # the controller's; checked alike
    image = r.string(spec, "image", "spec.image")
    if image is None or not image.strip():
        # Upstream's mutating webhook defaults it; the controller passes its own --default-image.
        image = DEFAULT_IMAGE
    rvo = r.string(spec, "runtimeVersionOverride", "spec.runtimeVersionOverride")
    if rvo is not None and not RUNTIME_VERSION_RE.match(rvo):
        r.add("spec.runtimeVersionOverride", f"must be a version like 1.2.0, got {rvo!r}")
        rvo = None

    # --- model cache ---------------------------------------------------------------------------
    mc = r.obj(spec, "modelCache", "spec.modelCache")
    model_cache: ModelCache | None = None
    pvc = r.string(mc, "pvcName", "spec.modelCache.pvcName")
    given_mount = r.string(mc, "pvcMountPath", "spec.modelCache.pvcMountPath")
    mount = DEFAULT_MOUNT_PATH if given_mount is None else given_mount
    model_path = r.string(mc, "pvcModelPath", "spec.modelCache.pvcModelPath")
    if not mount.startswith("/"):
        r.add("spec.modelCache.pvcMountPath", f"must be an absolute path, got {mount!r}")
    if pvc:
        model_cache = ModelCache(pvc_name=pvc, mount_path=mount, model_path=model_path)
    elif model_path:
        r.add("spec.modelCache.pvcName", "required when spec.modelCache.pvcModelPath is set")

    # --- hardware ------------------------------------------------------------------------------
    hw = r.obj(spec, "hardware", "spec.hardware")
    sku = r.string(hw, "gpuSku", "spec.hardware.gpuSku")
    r.boolean(hw, "rdma", "spec.hardware.rdma")  # informational; checked as the CRD does
    link = r.string(hw, "interconnect", "spec.hardware.interconnect")
    if link is not None and len(link) > 64:
        r.add("spec.hardware.interconnect", "must be at most 64 characters")
    # At least one whole MiB (the hardware table counts whole MiB; 1e-9 would be 0).
    vram = r.positive(hw, "vramMb", "spec.hardware.vramMb", minimum=1, maximum=INT32_MAX)
    per_node = r.positive(hw, "numGpusPerNode", "spec.hardware.numGpusPerNode", integer=True)
    total = r.positive(hw, "totalGpus", "spec.hardware.totalGpus", integer=True)
    gpu: GpuSpec | None = None
    if sku is None and not require_hardware:
        pass
    elif sku is None:
        r.add(
            "spec.hardware.gpuSku",
            f"required for planning (one of {', '.join(SKUS)}); the controller discovers it "
            "from the cluster's nodes, the command line needs it in the spec",
        )
    elif sku not in SKUS:
        r.add("spec.hardware.gpuSku", f"unknown GPU SKU {sku!r}; must be one of {', '.join(SKUS)}")
    else:
        try:
            gpu = get_gpu(
                sku,
                vram_mb=int(vram) if vram is not None else None,
                gpus_per_node=int(per_node) if per_node is not None else None,
            )
        except ValueError as exc:
            r.add("spec.hardware.gpuSku", str(exc))
    gpus_per_node = int(per_node) if per_node is not None else (gpu.gpus_per_node if gpu else 0)
    total_gpus = int(total) if total is not None else gpus_per_node

    # --- workload ------------------------------------------------------------------------------
    wl = r.obj(spec, "workload", "spec.workload")
    isl = r.positive(wl, "isl", "spec.workload.isl", integer=True) or DEFAULT_ISL
    osl = r.positive(wl, "osl", "spec.workload.osl", integer=True) or DEFAULT_OSL
    concurrency = r.positive(wl, "concurrency", "spec.workload.concurrency", maximum=MAX_LOAD)
    rate = r.positive(wl, "requestRate", "spec.workload.requestRate", maximum=MAX_LOAD)
    if wl.get("concurrency") is not None and wl.get("requestRate") is not None:
        r.add(
            "spec.workload.concurrency",
            "concurrency and requestRate are mutually exclusive; give one of them",
        )

    # --- SLA -----------------------------------------------------------------------------------
    sla = r.obj(spec, "sla", "spec.sla")
    ttft = r.positive(sla, "ttft", "spec.sla.ttft")
    itl = r.positive(sla, "itl", "spec.sla.itl")
    e2e = r.positive(sla, "e2eLatency", "spec.sla.e2eLatency")
    opt = r.choice(sla, "optimizationType", "spec.sla.optimizationType", ("latency", "throughput"))
    # Upstream's pairing (its SLASpec defaults ttft 2000 and itl 30): one left out takes its
    # default; only an explicit conflict is refused. The controller refuses the same: the CRD's
    # rule the e2eLatency one, controller/dgdr/validation.py an explicit null (CEL cannot see it).
    has_e2e = sla.get("e2eLatency") is not None
    for key in ("ttft", "itl"):
        if not has_e2e and key in sla and sla[key] is None:
            r.add(f"spec.sla.{key}", SLA_NULL)
    if has_e2e and (sla.get("ttft") is not None or sla.get("itl") is not None):
        r.add("spec.sla.e2eLatency", SLA_E2E)
    if has_e2e:
        ttft_t: float | None = None
        itl_t: float | None = None
    else:
        ttft_t = ttft if ttft is not None else DEFAULT_TTFT_MS
        itl_t = itl if itl is not None else DEFAULT_ITL_MS

    # --- features ------------------------------------------------------------------------------
    feats = r.obj(spec, "features", "spec.features")
    planner_cfg = r.raw_object(feats, "planner", "spec.features.planner", "a PlannerConfig")
    if planner_cfg is not None:
        _check_planner(r, planner_cfg)
    mocker = r.boolean(
        r.obj(feats, "mocker", "spec.features.mocker"), "enabled", "spec.features.mocker.enabled"
    )
    kv_router = r.boolean(
        r.obj(feats, "kvRouter", "spec.features.kvRouter"),
        "enabled",
        "spec.features.kvRouter.enabled",
    )
    if mocker and (planner_cfg or {}).get("pre_deployment_sweeping_mode") == "none":
        r.add(
            "spec.features.mocker.enabled",
            "mocker workers need performance data: the planner's pre_deployment_sweeping_mode "
            "must not be none",
        )

    # --- overrides -----------------------------------------------------------------------------
    ov = r.obj(spec, "overrides", "spec.overrides")
    trust = r.boolean(ov, "trustRemoteCode", "spec.overrides.trustRemoteCode")
    dgd_ov = r.raw_object(ov, "dgd", "spec.overrides.dgd", "a partial DynamoGraphDeployment")
    if dgd_ov is not None:
        _check_dgd_override(r, dgd_ov, dgd_api_version)
    tolerations = _job_tolerations(r, ov)

    # --- model (needs the cache path) ----------------------------------------------------------
    arch: ModelArch | None = None
    quant = "bf16"
    not_modelled: str | None = None
    if model is not None:
        config_path = _config_path(model_cache)
        # Validating makes no network call: a model only the Hub knows is checked when profiled.
        deferred = (
            defer_unknown_model
            and config_path is None
            and not in_catalog(model)
            and not os.path.isdir(model)
        )
        try:
            if not deferred:
                arch = resolve_model(model, config_path=config_path, hub=hub)
        except UnsupportedArchitectureError as exc:
            arch, not_modelled = exc.arch, exc.why
        except HubError as exc:
            if exc.transient:
                raise  # the Hub's trouble, not the spec's: the caller retries
            r.add("spec.model", str(exc))
        except ProfilerError as exc:
            r.add("spec.model", str(exc))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            r.add("spec.modelCache.pvcModelPath", f"could not read the model's config.json: {exc}")
        if arch is not None:
            quant = quant_for(model, arch)

    # --- backends ------------------------------------------------------------------------------
    amd = gpu is not None and gpu.vendor.lower() == "amd"
    if backend == "trtllm" and amd:
        r.add("spec.backend", f"TensorRT-LLM does not run on AMD GPUs ({sku}); use vllm or sglang")
    backends = tuple(b for b in BACKENDS if not (b == "trtllm" and amd))
    if backend != "auto":
        backends = (backend,)
    with_planner = planner_cfg is not None and planner_enabled(planner_cfg)
    if not_modelled is not None:
        if backend == "auto":
            backends = ("vllm",)  # upstream's fallback: auto means vLLM
        for on, path, what in (
            (with_planner, "spec.features.planner", "the planner"),
            (mocker, "spec.features.mocker.enabled", "mocker workers"),
        ):
            if on:
                r.add(
                    path,
                    f"{what} need performance data, and {model} cannot be performance-modelled "
                    f"({not_modelled}); leave it out to get a simple configuration sized by memory",
                )
    override_name = dgd_name_for("", dgd_ov) if dgd_ov is not None else "-dgd"
    if dgdr_name is not None or override_name != "-dgd":
        name = dgd_name_for(dgdr_name or "", dgd_ov)
        path = "metadata.name" if override_name == "-dgd" else "spec.overrides.dgd.metadata.name"
        fitting = tuple(
            b
            for b in backends
            if not too_long_services(name, b, planner=with_planner, mocker=mocker)
        )
        if not fitting:
            long = too_long_services(name, backends[-1], planner=with_planner, mocker=mocker)
            r.add(
                path,
                f"DGD name {name!r} plus service name {long[0]!r} is longer than "
                f"{MAX_DGD_SERVICE_NAME} characters; shorten the DGDR name",
            )
        else:
            backends = fitting

    # --- budget --------------------------------------------------------------------------------
    if arch is not None and gpu is not None and total_gpus > 0 and not_modelled is not None:
        naive_need = naive_gpus(arch, gpu, quant)
        if naive_need > total_gpus:
            r.add(
                "spec.hardware.totalGpus",
                f"infeasible: {model} ({quant}, about {arch.params_b:.1f}B parameters) needs at "
                f"least {naive_need} {sku} GPUs to hold its weights; the budget is {total_gpus}",
            )
    elif arch is not None and gpu is not None and total_gpus > 0:
        need = min_gpus_to_fit(arch, gpu, quant, int(isl), int(osl), total_gpus)
        if need is None or need > total_gpus:
            needs = (
                f"needs at least {need} {sku} GPUs"
                if need is not None
                else f"does not fit on any layout of {sku} GPUs this profiler knows"
            )
            r.add(
                "spec.hardware.totalGpus",
                f"infeasible: {model} ({quant}) with isl {int(isl)} + osl {int(osl)} {needs}; "
                f"the budget is {total_gpus}",
            )
        elif (with_planner or mocker) and 2 * need > total_gpus:
            r.add(
                "spec.hardware.totalGpus",
                f"infeasible: the {'planner' if with_planner else 'mocker'} deploys one prefill "
                f"and one decode worker of {model}, at least {need} {sku} GPUs each, so it needs "
                f"at least {2 * need} GPUs; the budget is {total_gpus}",
            )

    if errors or arch is None:  # no arch without an error: validation deferred the model
        return _Parsed(errors, None)
    assert model is not None and arch is not None and gpu is not None and image is not None
    assert sku is not None
    return _Parsed(
        errors,
        {
            "model": model,
            "arch": arch,
            "quant": quant,
            "backend": backend,
            "backends": backends,
            "image": image,
            "search_strategy": strategy,
            "gpu": gpu,
            "gpu_sku": sku,
            "num_gpus_per_node": gpus_per_node,
            "total_gpus": total_gpus,
            "isl": int(isl),
            "osl": int(osl),
            "concurrency": concurrency,
            "request_rate": rate,
            "ttft_ms": ttft_t,
            "itl_ms": itl_t,
            "e2e_latency_ms": e2e,
            "optimization_type": opt,
            "planner": planner_cfg,
            "mocker": mocker,
            "kv_router": kv_router,
            "trust_remote_code": trust,
            "runtime_version_override": rvo,
            "model_cache": model_cache,
            "overrides_dgd": dgd_ov,
            "tolerations": tolerations,
            "not_modelled": not_modelled,
        },
    )


def _config_path(cache: ModelCache | None) -> str | None:
    """The model's config.json on the cache, when this process can see it (the command line can;
    a controller that does not mount the PVC falls back to the catalog)."""
    if cache is None or cache.model_dir is None:
        return None
    path = os.path.join(cache.model_dir, "config.json")
    return path if os.path.isfile(path) else None


def _check_planner(r: _Reader, cfg: Mapping[str, Any]) -> None:
    base = "spec.features.planner"
    target = r.choice(cfg, "optimization_target", f"{base}.optimization_target", _PLANNER_TARGETS)
    r.choice(cfg, "mode", f"{base}.mode", _PLANNER_MODES)
    r.choice(cfg, "backend", f"{base}.backend", _PLANNER_BACKENDS)
    sweep = r.choice(
        cfg,
        "pre_deployment_sweeping_mode",
        f"{base}.pre_deployment_sweeping_mode",
        (_PLANNER_SWEEP_MODES),
    )
    for key in ("ttft_ms", "itl_ms", "max_gpu_budget", "min_endpoint"):
        r.positive(cfg, key, f"{base}.{key}")
    for key in ("enable_throughput_scaling", "enable_load_scaling", "advisory"):
        r.boolean(cfg, key, f"{base}.{key}")
    ets, _ = _planner_scaling(cfg)
    if target == "sla" and ets and sweep in (None, "none"):
        r.add(
            f"{base}.pre_deployment_sweeping_mode",
            "throughput scaling needs pre-deployment performance data: set "
            "pre_deployment_sweeping_mode to rapid",
        )
    thr = cfg.get("throughput_adjustment_interval_seconds", 180)
    load = cfg.get("load_adjustment_interval_seconds", 5)
    if (
        isinstance(thr, int | float)
        and isinstance(load, int | float)
        and not isinstance(thr, bool)
        and not isinstance(load, bool)
        and load >= thr
    ):
        r.add(
            f"{base}.load_adjustment_interval_seconds",
            f"must be shorter than throughput_adjustment_interval_seconds ({thr})",
        )


def override_api_version(dgd: Mapping[str, Any]) -> str:
    """The DGD version an ``overrides.dgd`` is written in, by its shape first: ``spec.components``
    is v1beta1, ``spec.services`` v1alpha1 (Dynamo 1.1 ignored ``apiVersion``, so an override
    written for it may carry any); otherwise its ``apiVersion``, v1alpha1 when it has none
    (upstream's legacy rule)."""
    spec = dgd.get("spec")
    if isinstance(spec, Mapping) and "components" in spec:
        return DGD_V1BETA1
    if isinstance(spec, Mapping) and "services" in spec:
        return DGD_V1ALPHA1
    return DGD_V1BETA1 if dgd.get("apiVersion") == DGD_V1BETA1 else DGD_V1ALPHA1


def _check_dgd_override(r: _Reader, dgd: Mapping[str, Any], target: str | None) -> None:
    base = "spec.overrides.dgd"
    for key in ("apiVersion", "kind"):  # x-kubernetes-embedded-resource: both required
        if not dgd.get(key):
            r.add(f"{base}.{key}", "is required")
    written = override_api_version(dgd)
    if target == DGD_V1ALPHA1 and written == DGD_V1BETA1:
        r.add(
            f"{base}.apiVersion",
            f"a {DGD_V1BETA1} override cannot be applied: the cluster serves DynamoGraphDeployments"
            f" only as {DGD_V1ALPHA1}; write the override in that version (a services map)",
        )
    meta = r.obj(dgd, "metadata", f"{base}.metadata")
    name = r.string(meta, "name", f"{base}.metadata.name")
    if name is not None and (len(name) > 253 or not DNS_SUBDOMAIN_RE.match(name)):
        r.add(
            f"{base}.metadata.name",
            f"must be a DNS-1123 name (lowercase, digits, '-', '.'), got {name!r}",
        )
    spec = r.obj(dgd, "spec", f"{base}.spec")
    if written == DGD_V1BETA1:
        components = spec.get("components")
        if components is not None and not isinstance(components, list):
            r.add(f"{base}.spec.components", "must be a list of components")
        for i, comp in enumerate(components if isinstance(components, list) else []):
            if not isinstance(comp, Mapping) or not isinstance(comp.get("name"), str):
                r.add(f"{base}.spec.components[{i}]", "must be an object with a name")
        return
    services = r.obj(spec, "services", f"{base}.spec.services")
    for svc, body in services.items():
        if body is not None and not isinstance(body, Mapping):
            r.add(f"{base}.spec.services.{svc}", "must be an object")


def _job_tolerations(r: _Reader, ov: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Tolerations the user gave the profiling Job; upstream copies them onto every service."""
    job = r.obj(ov, "profilingJob", "spec.overrides.profilingJob")
    if not job:
        return ()
    tmpl = job.get("template")
    pod = tmpl.get("spec") if isinstance(tmpl, Mapping) else None
    tols = pod.get("tolerations") if isinstance(pod, Mapping) else None
    if tols is None:
        return ()
    if not isinstance(tols, list) or not all(isinstance(t, Mapping) for t in tols):
        r.add("spec.overrides.profilingJob.template.spec.tolerations", "must be a list of objects")
        return ()
    return tuple(dict(t) for t in tols)
