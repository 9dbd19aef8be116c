"""What the API tests share: the CRD, the samples, and one table of invalid requests.

The same table drives the API server test (admission must reject each case, naming the field)
and the pure test (``validate_dgdr`` must report the same field), so the two layers cannot drift.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from profiler.request import DEFAULT_IMAGE

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "deploy" / "crds" / "nvidia.com_dynamographdeploymentrequests.yaml"
SAMPLES_DIR = REPO / "deploy" / "samples"
# What the controller fills in before planning: a default image (DEFAULT_IMAGE, upstream's), and
# discovered hardware.
DISCOVERED_HARDWARE = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8, "vramMb": 81559}


def load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return crd


def crd_version(name: str = "v1beta1") -> dict[str, Any]:
    """One version of the CRD: v1beta1 (this project's schema, stored) or v1alpha1 (upstream's)."""
    version: dict[str, Any] = next(v for v in load_crd()["spec"]["versions"] if v["name"] == name)
    return version


def crd_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd_version()["schema"]["openAPIV3Schema"]
    return schema


def load_samples() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(SAMPLES_DIR.glob("*.yaml"))}


def as_planned(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the controller plans it: image defaulted, missing hardware discovered."""
    out = copy.deepcopy(obj)
    out["spec"].setdefault("image", DEFAULT_IMAGE)
    out["spec"].setdefault("hardware", dict(DISCOVERED_HARDWARE))
    return out


BASE_SPEC: dict[str, Any] = {
    "model": "Qwen/Qwen3-0.6B",
    "backend": "vllm",
    "image": DEFAULT_IMAGE,
    "hardware": dict(DISCOVERED_HARDWARE),
    "sla": {"ttft": 500, "itl": 30},
}


class _Null:
    """A patch value that sets the key to an explicit null (``None`` in a patch removes it)."""

    def __repr__(self) -> str:
        return "NULL"


NULL: Any = _Null()


@dataclass(frozen=True)
class Invalid:
    id: str
    patch: dict[str, Any]  # merged into BASE_SPEC; None removes the key, NULL sets it to null
    field: str  # the field both the API server and validate_dgdr must name
    name: str = "bad"
    drop: tuple[str, ...] = field(default_factory=tuple)  # top-level spec keys to remove

    def spec(self) -> dict[str, Any]:
        spec = _merge(copy.deepcopy(BASE_SPEC), self.patch)
        for key in self.drop:
            spec.pop(key, None)
        return spec

    def obj(self) -> dict[str, Any]:
        return {
            "apiVersion": "nvidia.com/v1beta1",
            "kind": "DynamoGraphDeploymentRequest",
            "metadata": {"name": self.name},
            "spec": self.spec(),
        }


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is NULL:
            base[key] = None
        elif value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


INVALID: tuple[Invalid, ...] = (
    # model non-empty
    Invalid("model-missing", {}, "spec.model", drop=("model",)),
    Invalid("model-empty", {"model": ""}, "spec.model"),
    Invalid("model-blank", {"model": "   "}, "spec.model"),
    # SLA numbers > 0
    Invalid("ttft-zero", {"sla": {"ttft": 0}}, "spec.sla.ttft"),
    Invalid("itl-negative", {"sla": {"itl": -5}}, "spec.sla.itl"),
    Invalid(
        "e2e-zero", {"sla": {"ttft": None, "itl": None, "e2eLatency": 0}}, "spec.sla.e2eLatency"
    ),
    Invalid("ttft-not-a-number", {"sla": {"ttft": "fast"}}, "spec.sla.ttft"),
    # SLA pairing: one of ttft/itl left out takes its default (VALID_SLA); e2eLatency next to a
    # ttft or itl value is a conflict (an explicit null is the other one: REFUSED_BY_CONTROLLER)
    Invalid("e2e-with-ttft-itl", {"sla": {"e2eLatency": 5000}}, "spec.sla.e2eLatency"),
    Invalid("e2e-with-ttft", {"sla": {"itl": None, "e2eLatency": 5000}}, "spec.sla.e2eLatency"),
    Invalid(
        "e2e-with-itl-and-null-ttft",
        {"sla": {"ttft": NULL, "e2eLatency": 5000}},
        "spec.sla.e2eLatency",
    ),
    # concurrency xor requestRate
    Invalid(
        "concurrency-and-rate",
        {"workload": {"concurrency": 8, "requestRate": 2}},
        "spec.workload.concurrency",
    ),
    Invalid("concurrency-zero", {"workload": {"concurrency": 0}}, "spec.workload.concurrency"),
    Invalid("rate-negative", {"workload": {"requestRate": -1}}, "spec.workload.requestRate"),
    Invalid("isl-zero", {"workload": {"isl": 0}}, "spec.workload.isl"),
    # thorough needs a concrete backend
    Invalid("thorough-auto", {"backend": "auto", "searchStrategy": "thorough"}, "spec.backend"),
    Invalid(
        "thorough-default-backend",
        {"searchStrategy": "thorough"},
        "spec.backend",
        drop=("backend",),
    ),
    # runtimeVersionOverride pattern
    Invalid(
        "version-leading-zero", {"runtimeVersionOverride": "01.2.3"}, "spec.runtimeVersionOverride"
    ),
    Invalid("version-two-parts", {"runtimeVersionOverride": "1.2"}, "spec.runtimeVersionOverride"),
    Invalid(
        "version-v-prefix", {"runtimeVersionOverride": "v1.2.3"}, "spec.runtimeVersionOverride"
    ),
    # enums
    Invalid("backend-unknown", {"backend": "tensorrt"}, "spec.backend"),
    Invalid(
        "sku-product-string", {"hardware": {"gpuSku": "H100-SXM5-80GB"}}, "spec.hardware.gpuSku"
    ),
    Invalid("strategy-unknown", {"searchStrategy": "fast"}, "spec.searchStrategy"),
    Invalid(
        "optimization-hybrid", {"sla": {"optimizationType": "hybrid"}}, "spec.sla.optimizationType"
    ),
    # hardware bounds
    Invalid("total-gpus-zero", {"hardware": {"totalGpus": 0}}, "spec.hardware.totalGpus"),
    Invalid(
        "gpus-per-node-negative",
        {"hardware": {"numGpusPerNode": -8}},
        "spec.hardware.numGpusPerNode",
    ),
    Invalid("vram-zero", {"hardware": {"vramMb": 0}}, "spec.hardware.vramMb"),
    # model cache
    Invalid(
        "mount-path-relative",
        {"modelCache": {"pvcName": "c", "pvcMountPath": "cache"}},
        "spec.modelCache.pvcMountPath",
    ),
    # embedded DGD override needs apiVersion and kind
    Invalid(
        "dgd-override-no-kind",
        {"overrides": {"dgd": {"spec": {}}}},
        "spec.overrides.dgd.apiVersion",
    ),
    # types and unknown fields
    Invalid("auto-apply-string", {"autoApply": "yes"}, "spec.autoApply"),
    Invalid("unknown-field", {"replicas": 3}, "spec.replicas"),
    # the name becomes a label value
    Invalid("name-too-long", {}, "metadata.name", name="x" * 64),
)


# Admitted by the API server, refused by the controller (validate_dgdr) and the profiler alike:
# ttft or itl explicitly null without e2eLatency. To CEL a null field is a missing one, so no CRD
# rule can tell it from a left-out target; ttft and itl are nullable, so the stored object keeps
# the null for the controller to see. (kubectl apply, client-side, drops nulls before sending.)
REFUSED_BY_CONTROLLER: tuple[Invalid, ...] = (
    Invalid("ttft-null", {"sla": {"ttft": NULL}}, "spec.sla.ttft"),
    Invalid("itl-null", {"sla": {"itl": NULL}}, "spec.sla.itl"),
    Invalid("only-ttft-null", {"sla": {"ttft": NULL, "itl": None}}, "spec.sla.ttft"),
    Invalid("ttft-and-itl-null", {"sla": {"ttft": NULL, "itl": NULL}}, "spec.sla.itl"),
)

# SLA blocks the API server, the controller and the profiler all accept, with the targets the
# profiler plans for: (ttft, itl, e2eLatency) in ms. Upstream's defaults: ttft 2000, itl 30.
VALID_SLA: tuple[
    tuple[str, dict[str, Any], tuple[float | None, float | None, float | None]], ...
] = (
    ("only-itl", {"itl": 20}, (2000.0, 20.0, None)),
    ("only-ttft", {"ttft": 400}, (400.0, 30.0, None)),
    ("none", {}, (2000.0, 30.0, None)),
    ("both", {"ttft": 400, "itl": 20}, (400.0, 20.0, None)),
    ("e2e", {"e2eLatency": 9000}, (None, None, 9000.0)),
    ("e2e-with-nulls", {"e2eLatency": 9000, "ttft": None, "itl": None}, (None, None, 9000.0)),
    ("only-itl-with-type", {"itl": 20, "optimizationType": "latency"}, (2000.0, 20.0, None)),
)


def with_sla(sla: dict[str, Any], name: str = "sla") -> dict[str, Any]:
    """A valid DGDR (BASE_SPEC) whose spec.sla is exactly ``sla``."""
    spec = copy.deepcopy(BASE_SPEC)
    spec["sla"] = copy.deepcopy(sla)
    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": name},
        "spec": spec,
    }
