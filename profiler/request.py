"""The planning request: a DGDR ``.spec`` read once, checked completely, then trusted.

A spec is checked in the controller's layers: the models of ``profiler/spec.py`` and the CRD's
rules (the same the controller validates through), then the semantic checks here, which need
the profiler's tables. ``PlanRequest.from_spec`` takes the validated model or a raw spec.
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
from profiler.layouts import min_gpus_to_fit
from profiler.models import (
    ModelArch,
    UnsupportedArchitectureError,
    in_catalog,
    quant_for,
    resolve_model,
)
from profiler.naive import naive_gpus
from profiler.spec import (
    DEFAULT_PVC_MOUNT_PATH,
    INT32_MAX,
    MAX_LOAD,
    RUNTIME_VERSION_PATTERN,
    DGDRSpec,
    FeaturesSpec,
    HardwareSpec,
    ModelCacheSpec,
    OverridesSpec,
    SLASpec,
    WorkloadSpec,
    check_spec,
    merge_errors,
    rule_errors,
)

# The Dynamo release this project targets (Dynamo 1.1.x: docs/dgdr-contract.md#versions).
DYNAMO_VERSION = "1.1.0"
# The image worker, frontend and planner images are derived from when a spec names none:
# upstream's default, the one its mutating webhook writes into spec.image on CREATE
# (``nvcr.io/nvidia/ai-dynamo/dynamo-planner:<operator version>``, defaulting/
# dynamographdeploymentrequest_handler.go). The controller's --default-image replaces it.
DEFAULT_IMAGE = f"nvcr.io/nvidia/ai-dynamo/dynamo-planner:{DYNAMO_VERSION}"

BACKENDS = ("vllm", "sglang", "trtllm")
DEFAULT_TTFT_MS = 2000.0
DEFAULT_ITL_MS = 30.0
DEFAULT_MOUNT_PATH = DEFAULT_PVC_MOUNT_PATH
# Grove builds pod names from "<dgd>-<service>"; upstream rejects anything longer than this.
MAX_DGD_SERVICE_NAME = 45
# Loads beyond any deployment (requests per second, or concurrent requests): 1e300 overflowed the
# estimator's arithmetic and silently changed the plan.
RUNTIME_VERSION_RE = re.compile(RUNTIME_VERSION_PATTERN)
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
        spec: DGDRSpec | Mapping[str, Any],
        *,
        dgdr_name: str = "plan",
        namespace: str | None = None,
        hub: HubSettings | None = None,
        dgd_api_version: str = DGD_V1ALPHA1,
    ) -> PlanRequest:
        """Check a DGDR spec, the validated model or a raw one, and read it; raises
        ``SpecError`` holding every problem found.

        A raw spec goes through the models and the CRD's rules first (``profiler.spec``), as
        the controller's does, so the command line and the controller refuse the same specs.
        A model the catalog does not know is looked up on the Hub when ``hub`` is given (a
        network call: ``HubUnavailableError`` when the Hub does not answer, which is not the
        spec's fault and so is raised as is, never folded into the ``SpecError``).
        """
        if dgd_api_version not in DGD_API_VERSIONS:
            raise ValueError(f"dgd_api_version must be one of {DGD_API_VERSIONS}")
        model, errors = _checked(spec)
        if model is None:
            raise SpecError(errors)
        parsed = _parse(model, dgdr_name=dgdr_name, hub=hub, dgd_api_version=dgd_api_version)
        merge_errors(errors, parsed.errors)
        if errors:
            raise SpecError(errors)
        assert parsed.request_kwargs is not None
        return cls(
            dgdr_name=dgdr_name,
            namespace=namespace,
            dgd_api_version=dgd_api_version,
            **parsed.request_kwargs,
        )


def validate_spec(
    spec: DGDRSpec | Mapping[str, Any], *, require_hardware: bool = True
) -> list[FieldError]:
    """Every problem of a DGDR spec: structure and the CRD's rules (``profiler.spec``), then the
    semantic checks: SKU, budget; the model when it is in the catalog (a model only the Hub
    knows is checked when it is profiled: validating makes no network call). Bad input is
    returned as field errors; an exception is a bug and propagates, so the controller logs,
    counts and retries it instead of failing the user's DGDR for good.

    ``require_hardware=False`` is for a controller that validates before it discovers the
    cluster's GPUs: a missing ``gpuSku`` is then not an error (checks that need it are skipped).
    """
    model, errors = _checked(spec)
    if model is None:
        return errors
    parsed = _parse(
        model, dgdr_name=None, require_hardware=require_hardware, defer_unknown_model=True
    )
    return merge_errors(errors, parsed.errors)


def _checked(spec: DGDRSpec | Mapping[str, Any]) -> tuple[DGDRSpec | None, list[FieldError]]:
    """The model and the structural and rule errors: a model is checked against the rules
    (pydantic does not run them), a raw spec parsed first."""
    if isinstance(spec, DGDRSpec):
        return spec, rule_errors(spec.to_dict())
    if not isinstance(spec, Mapping):
        return None, [FieldError("spec", "must be an object")]
    return check_spec(spec)


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
    """Typed access to a free-form object the CRD keeps as is (the planner config, a partial
    DGD, the profiling Job), recording a FieldError instead of raising."""

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

    def string(self, parent: Mapping[str, Any], key: str, path: str) -> str | None:
        value: str | None = self._typed(parent, key, path, str, "a string")
        return value

    def boolean(self, parent: Mapping[str, Any], key: str, path: str) -> bool:
        return bool(self._typed(parent, key, path, bool, "true or false"))

    def positive(self, parent: Mapping[str, Any], key: str, path: str) -> float | None:
        """A finite number > 0: infinite, NaN and integers beyond any float are refused here,
        naming the field, instead of overflowing the estimator's arithmetic."""
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"must be a number, got {value!r}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.add(path, f"must be a finite number, got {value!r}")
        elif not number > 0:
            self.add(path, f"must be greater than 0, got {value!r}")
        else:
            return number
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
    m: DGDRSpec,
    *,
    dgdr_name: str | None,
    require_hardware: bool = True,
    hub: HubSettings | None = None,
    defer_unknown_model: bool = False,
    dgd_api_version: str | None = None,
) -> _Parsed:
    """The semantic checks, on a spec the models parsed (types, enums and bounds hold; a value
    may still break a CRD rule, which ``check_spec`` has reported: it is read, not trusted)."""
    errors: list[FieldError] = []
    r = _Reader(errors)

    # --- model, backend, strategy, image -------------------------------------------------------
    model: str | None = m.model if m.model.strip() else None  # blank: a CRD rule's error
    backend: str = m.backend
    strategy: str = m.search_strategy
    # Upstream's mutating webhook defaults the image; the controller passes its --default-image.
    image = m.image if m.image and m.image.strip() else DEFAULT_IMAGE
    rvo = m.runtime_version_override

    # --- model cache ---------------------------------------------------------------------------
    mc = m.model_cache or ModelCacheSpec()
    model_cache: ModelCache | None = None
    if mc.pvc_name:
        model_cache = ModelCache(
            pvc_name=mc.pvc_name, mount_path=mc.pvc_mount_path, model_path=mc.pvc_model_path
        )
    elif mc.pvc_model_path:
        r.add("spec.modelCache.pvcName", "required when spec.modelCache.pvcModelPath is set")

    # --- hardware ------------------------------------------------------------------------------
    hw = m.hardware or HardwareSpec()
    sku = hw.gpu_sku
    vram = hw.vram_mb
    # At least one whole MiB (the hardware table counts whole MiB; 1e-9 would be 0).
    if vram is not None and (vram < 1 or vram > INT32_MAX):
        bound = "at least 1" if vram < 1 else f"at most {INT32_MAX:g}"
        r.add("spec.hardware.vramMb", f"must be {bound}, got {vram!r}")
        vram = None
    per_node = hw.num_gpus_per_node
    total = hw.total_gpus
    gpu: GpuSpec | None = None
    if sku is None and not require_hardware:
        pass
    elif sku is None:
        r.add(
            "spec.hardware.gpuSku",
            f"required for planning (one of {', '.join(SKUS)}); the controller discovers it "
            "from the cluster's nodes, the command line needs it in the spec",
        )
    else:
        try:
            gpu = get_gpu(
                sku, vram_mb=int(vram) if vram is not None else None, gpus_per_node=per_node
            )
        except ValueError as exc:
            r.add("spec.hardware.gpuSku", str(exc))
    gpus_per_node = per_node if per_node is not None else (gpu.gpus_per_node if gpu else 0)
    total_gpus = total if total is not None else gpus_per_node

    # --- workload ------------------------------------------------------------------------------
    wl = m.workload or WorkloadSpec()
    isl, osl = wl.isl, wl.osl
    concurrency, rate = wl.concurrency, wl.request_rate
    for path, load in (
        ("spec.workload.concurrency", concurrency),
        ("spec.workload.requestRate", rate),
    ):
        # Beyond any deployment: 1e300 overflowed the estimator and silently changed the plan.
        if load is not None and load > MAX_LOAD:
            r.add(path, f"must be at most {MAX_LOAD:g}, got {load!r}")

    # --- SLA -----------------------------------------------------------------------------------
    # Upstream's pairing (its SLASpec defaults ttft 2000 and itl 30): one left out takes its
    # default; e2eLatency replaces both (the CRD's rule refuses it next to either).
    sla = m.sla or SLASpec()
    e2e, opt = sla.e2e_latency, sla.optimization_type
    if e2e is not None:
        ttft_t: float | None = None
        itl_t: float | None = None
    else:
        ttft_t = sla.ttft if sla.ttft is not None else DEFAULT_TTFT_MS
        itl_t = sla.itl if sla.itl is not None else DEFAULT_ITL_MS

    # --- features ------------------------------------------------------------------------------
    feats = m.features or FeaturesSpec()
    planner_cfg = dict(feats.planner) if feats.planner is not None else None
    if planner_cfg is not None:
        _check_planner(r, planner_cfg)
    mocker = feats.mocker is not None and feats.mocker.enabled
    kv_router = feats.kv_router is not None and feats.kv_router.enabled
    if mocker and (planner_cfg or {}).get("pre_deployment_sweeping_mode") == "none":
        r.add(
            "spec.features.mocker.enabled",
            "mocker workers need performance data: the planner's pre_deployment_sweeping_mode "
            "must not be none",
        )

    # --- overrides -----------------------------------------------------------------------------
    ov = m.overrides or OverridesSpec()
    trust = ov.trust_remote_code
    dgd_ov = dict(ov.dgd) if ov.dgd is not None else None
    if dgd_ov is not None:
        _check_dgd_override(r, dgd_ov, dgd_api_version)
    tolerations = _job_tolerations(r, ov.profiling_job or {})

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

    # No arch or GPU without an error: validation deferred the model, or the hardware.
    if errors or arch is None or gpu is None:
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
    base = "spec.overrides.dgd"  # apiVersion and kind required: profiler.spec's check
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


def _job_tolerations(r: _Reader, job: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Tolerations the user gave the profiling Job; upstream copies them onto every service."""
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
