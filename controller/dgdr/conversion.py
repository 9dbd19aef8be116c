"""Conversion of a DynamoGraphDeploymentRequest between ``nvidia.com/v1alpha1`` and ``v1beta1``.

Upstream Dynamo serves both versions of the DGDR (v1alpha1 deprecated, v1beta1 stored) and
converts in its operator's webhook; this module is the same conversion as pure functions on
whole objects (plain dicts: apiVersion, kind, metadata, spec, status), so a webhook, a test or a
CLI can call it without a cluster. v1beta1 is the hub. The mapping is upstream's, read from
ai-dynamo/dynamo ``deploy/operator/api/v1alpha1/dynamographdeploymentrequest_conversion.go``
(the sparse-annotation version, functions ``ConvertTo``/``ConvertFrom``):

====================================================  ============================================
v1alpha1                                              v1beta1
====================================================  ============================================
spec.model                                            spec.model
spec.backend                                          spec.backend
spec.autoApply (absent = false)                       spec.autoApply (absent = true)
spec.useMocker: true                                  spec.features.mocker.enabled
spec.profilingConfig.profilerImage, else              spec.image
spec.deploymentOverrides.workersImage
spec.profilingConfig.config.sla.ttft / .itl           spec.sla.ttft / .itl
spec.profilingConfig.config.sla.optimizationType      spec.sla.optimizationType
spec.profilingConfig.config.sla.isl / .osl            spec.workload.isl / .osl
spec.profilingConfig.config.deployment.modelCache     spec.modelCache.pvcName / .pvcModelPath /
.pvcName / .modelPathInPvc / .pvcMountPath            .pvcMountPath
spec.profilingConfig.config.planner                   spec.features.planner
spec.profilingConfig.resources                        spec.overrides.profilingJob.template.spec
                                                      .containers[name=profiler].resources
spec.profilingConfig.tolerations / .nodeSelector      spec.overrides.profilingJob.template.spec
                                                      .tolerations / .nodeSelector
status.state (Initializing/Pending, Profiling,        status.phase (Pending, Profiling, Ready or
Ready, Deploying, DeploymentDeleted, Failed)          Deployed if status.deployment.created,
                                                      Deploying, Ready, Failed); back:
                                                      Deployed -> Ready
status.observedGeneration, status.conditions          the same fields
status.generatedDeployment                            status.profilingResults.selectedConfig
status.deployment.name                                status.dgdName
====================================================  ============================================

Everything else has no home in the other version (v1alpha1: enableGpuDiscovery,
profilingConfig.configMapRef / outputPVC, the rest of the config blob, deploymentOverrides,
status.backend / profilingResults / deployment.namespace/state/created; v1beta1: hardware,
workload.concurrency/requestRate, sla.e2eLatency, overrides.dgd/trustRemoteCode, the rest of the
profiling job, features.kvRouter, a disabled mocker, searchStrategy, runtimeVersionOverride,
status.profilingPhase / profilingJobName / profilingResults.pareto/prediction / deploymentInfo /
acceptedSpec, the Deployed phase). Like upstream, it rides along in two annotations of the
converted object, ``nvidia.com/dgdr-spec`` and ``nvidia.com/dgdr-status`` (upstream's keys), and is
restored (and the annotations removed) when the object is converted back, so
``v1alpha1 -> v1beta1 -> v1alpha1`` and ``v1beta1 -> v1alpha1 -> v1beta1`` give back the object.

What is saved is computed, not listed: after converting, the converted part is projected back,
and every leaf where that projection differs from the source is saved (a value to set, or a path
to remove). That makes the round trip lossless by construction (``_apply(p, _diff(s, p)) == s``),
including values the mapping alters (``Deployed`` -> ``Ready``, defaults of autoApply, blob keys of
the wrong type). The payload is upstream's shape, a sparse object of the source version holding
the values to set, plus one key upstream ignores, ``dgdrConversion``, holding the paths to remove
and what the projection showed at each saved path when it was saved. Live fields win, as
upstream's do: a saved leaf is restored only while the projection of the live object still shows
there what it showed at saving (and, for a few dependent status fields, while the field they
belong to is unchanged, e.g. ``status.deployment.*`` only for the same DGD name, as upstream's
``restoreDGDRDeploymentStatus``), so a field edited in the other version is not overwritten by a
stale saved value. A payload without ``dgdrConversion`` (written by upstream's operator) only fills
fields the live object leaves empty. Upstream's retired per-field annotations
(``nvidia.com/dgdr-profiling-config`` etc.) are neither read nor removed; no other annotation is
touched.

Departures from upstream's Go, all on values Go cannot hold or would change: an absent field maps
to an absent field (Go has no absent bool or string); a blob ``isl``/``osl`` is projected only when
it is an integer within int32 (Go truncates 3.5 to 3); the profiling pod fields are projected
only when their shape fits the v1alpha1 schema (the API server would prune the rest); anything
not projected stays in the annotation.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

GROUP: Final = "nvidia.com"
KIND: Final = "DynamoGraphDeploymentRequest"
V1ALPHA1: Final = f"{GROUP}/v1alpha1"
V1BETA1: Final = f"{GROUP}/v1beta1"
VERSIONS: Final = (V1ALPHA1, V1BETA1)

# Upstream's keys (annDGDRSpec, annDGDRStatus): what the converted object's version cannot hold.
ANNOTATION_SPEC: Final = "nvidia.com/dgdr-spec"
ANNOTATION_STATUS: Final = "nvidia.com/dgdr-status"
# The key of a payload holding this module's removals and guards (upstream's decoder ignores it).
PAYLOAD_META: Final = "dgdrConversion"

# Upstream's name of the profiling Job container that v1alpha1's profilingConfig.resources is.
PROFILER_CONTAINER: Final = "profiler"
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

JSON = dict[str, Any]
Path = tuple[str, ...]


class _Missing:
    """The value at a path that does not exist (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# ---- public API ------------------------------------------------------------------------------


def convert(obj: JSON, desired_api_version: str) -> JSON:
    """``obj`` as ``desired_api_version`` (``nvidia.com/v1alpha1`` or ``nvidia.com/v1beta1``).

    Returns a new object; ``obj`` is not modified. The same version gives an unchanged copy.
    """
    desired = _full_version(desired_api_version)
    source = _full_version(str(obj.get("apiVersion", "")))
    if source == desired:
        return copy.deepcopy(obj)
    if desired == V1BETA1:
        return to_v1beta1(obj)
    return to_v1alpha1(obj)


def to_v1beta1(obj: JSON) -> JSON:
    """A v1alpha1 (or v1beta1, copied) DGDR as v1beta1, the hub."""
    if _full_version(str(obj.get("apiVersion", ""))) == V1BETA1:
        return copy.deepcopy(obj)
    return _convert(obj, V1BETA1, _SPEC_A2B, _STATUS_A2B)


def to_v1alpha1(obj: JSON) -> JSON:
    """A v1beta1 (or v1alpha1, copied) DGDR as the deprecated v1alpha1."""
    if _full_version(str(obj.get("apiVersion", ""))) == V1ALPHA1:
        return copy.deepcopy(obj)
    return _convert(obj, V1ALPHA1, _SPEC_B2A, _STATUS_B2A)


def _full_version(api_version: str) -> str:
    full = api_version if "/" in api_version else f"{GROUP}/{api_version}"
    if full not in VERSIONS:
        raise ValueError(
            f"unknown DynamoGraphDeploymentRequest apiVersion {api_version!r}; "
            f"known: {', '.join(VERSIONS)}"
        )
    return full


# ---- the generic part: project, restore, save what the projection cannot carry -------------


@dataclass(frozen=True)
class _Direction:
    """One part (spec or status) in one direction: the projection and its way back."""

    annotation: str
    forward: Callable[[JSON], JSON]
    back: Callable[[JSON], JSON]
    # Saved leaves under a prefix apply only while these paths are unchanged (upstream's
    # dependent-field rules); one table for the source version's fields, one for the target's.
    source_context: dict[Path, tuple[Path, ...]]
    target_context: dict[Path, tuple[Path, ...]]


def _convert(obj: JSON, version: str, spec_dir: _Direction, status_dir: _Direction) -> JSON:
    out: JSON = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = version
    metadata = out.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    annotations = metadata.get("annotations")
    annotations = dict(annotations) if isinstance(annotations, dict) else {}
    touched = False
    for part, direction in (("spec", spec_dir), ("status", status_dir)):
        payload = annotations.pop(direction.annotation, None)
        touched = touched or payload is not None
        source = obj.get(part)
        target, residual = _convert_part(_dict(source), payload, direction)
        if isinstance(source, dict) or target:
            out[part] = target
        elif part in obj:
            out[part] = copy.deepcopy(source)  # null stays null
        if residual is not None:
            annotations[direction.annotation] = residual
            touched = True
    if touched and annotations:
        metadata["annotations"] = annotations
    elif touched:
        metadata.pop("annotations", None)  # only this module's annotations were there
    if metadata or "metadata" in obj:
        out["metadata"] = metadata
    return out


def _convert_part(src: JSON, payload: Any, direction: _Direction) -> tuple[JSON, str | None]:
    """The converted part, and the annotation that brings ``src`` back (None if not needed)."""
    target = direction.forward(src)
    if isinstance(payload, str):
        _restore(target, payload, direction.target_context)
    projected = direction.back(target)
    sets, unsets = _diff(src, projected)
    if not sets and not unsets:
        return target, None
    guards: dict[Path, Any] = {}
    for path in [*sets, *unsets]:
        for guard in (path, *_context_paths(path, direction.source_context)):
            value = _get(projected, guard)
            if value is not MISSING:
                guards[guard] = value
    body = _nest(sets)
    body[PAYLOAD_META] = {
        "unset": sorted(list(p) for p in unsets),
        "was": [[list(p), guards[p]] for p in sorted(guards)],
    }
    return target, json.dumps(body, sort_keys=True, separators=(",", ":"))


def _restore(target: JSON, payload: str, context: dict[Path, tuple[Path, ...]]) -> None:
    """Apply a saved payload onto ``target`` (the projection of the live object), in place."""
    try:
        body = json.loads(payload)
    except ValueError:
        return  # a damaged annotation is dropped, as upstream drops one it cannot decode
    if not isinstance(body, dict):
        return
    meta = body.pop(PAYLOAD_META, None)
    sets = dict(_flatten(body))
    if not isinstance(meta, dict):
        # Upstream's operator wrote it: its saved values only fill what the live object lacks.
        for path, value in sets.items():
            if _get(target, path) is MISSING:
                _set(target, path, value)
        return
    was = {tuple(p): v for p, v in meta.get("was", []) if isinstance(p, list)}

    def holds(path: Path) -> bool:
        return all(
            _same(_get(target, g), was.get(g, MISSING))
            for g in (path, *_context_paths(path, context))
        )

    unsets = [tuple(p) for p in meta.get("unset", []) if isinstance(p, list)]
    applicable_sets = [(p, v) for p, v in sets.items() if holds(p)]
    applicable_unsets = [p for p in unsets if holds(p)]
    for path in applicable_unsets:
        _unset(target, path)
    for path, value in applicable_sets:
        _set(target, path, value)


def _context_paths(path: Path, context: dict[Path, tuple[Path, ...]]) -> tuple[Path, ...]:
    return tuple(g for prefix, gs in context.items() if path[: len(prefix)] == prefix for g in gs)


def _flatten(value: JSON, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """The leaves of a dict: non-dict values and empty dicts, by path (lists are leaves)."""
    for key, child in value.items():
        path = (*prefix, key)
        if isinstance(child, dict) and child:
            yield from _flatten(child, path)
        else:
            yield path, child


def _nest(leaves: dict[Path, Any]) -> JSON:
    out: JSON = {}
    for path, value in leaves.items():
        _set(out, path, value)
    return out


def _diff(source: JSON, projected: JSON) -> tuple[dict[Path, Any], list[Path]]:
    """What turns ``projected`` into ``source``: leaves to set, and leaf paths to remove."""
    want = dict(_flatten(source))
    have = dict(_flatten(projected))
    sets = {p: v for p, v in want.items() if p not in have or not _same(have[p], v)}
    unsets = [p for p in have if p not in want]
    return sets, unsets


def _get(value: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def _set(target: JSON, path: Path, value: Any) -> None:
    node = target
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = copy.deepcopy(value)


def _unset(target: JSON, path: Path) -> None:
    """Remove a leaf, and the dicts its removal leaves empty."""
    chain: list[JSON] = [target]
    for key in path[:-1]:
        child = chain[-1].get(key)
        if not isinstance(child, dict):
            return
        chain.append(child)
    chain[-1].pop(path[-1], None)
    for depth in range(len(chain) - 1, 0, -1):
        if chain[depth]:
            break
        chain[depth - 1].pop(path[depth - 1], None)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but a boolean is not the number 1 or 0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


# ---- value checks --------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_int32(value: Any) -> int | None:
    """An integral JSON number within int32 as an int (upstream's ``int32(v)`` of a float64)."""
    if not _is_number(value):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    number = int(value)
    return number if INT32_MIN <= number <= INT32_MAX else None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


_TOLERATION_STR_KEYS: Final = frozenset({"effect", "key", "operator", "value"})


def _is_toleration(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for key, field in value.items():
        if key in _TOLERATION_STR_KEYS:
            if not isinstance(field, str):
                return False
        elif key == "tolerationSeconds":
            if not isinstance(field, int) or isinstance(field, bool):
                return False
        else:
            return False
    return True


def _is_quantity_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
        for v in value.values()
    )


def _is_claim(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "name" in value
        and set(value) <= {"name", "request"}
        and all(isinstance(v, str) for v in value.values())
    )


def _is_resources(value: Any) -> bool:
    """A ``corev1.ResourceRequirements`` the v1alpha1 schema keeps as it is (nothing pruned)."""
    if not isinstance(value, dict) or not set(value) <= {"claims", "limits", "requests"}:
        return False
    claims = value.get("claims", [])
    return (
        isinstance(claims, list)
        and all(_is_claim(c) for c in claims)
        and all(_is_quantity_map(value[k]) for k in ("limits", "requests") if k in value)
    )


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


# ---- spec ----------------------------------------------------------------------------------

_OPTIMIZATION_TYPES: Final = ("latency", "throughput")
_POD_SPEC: Final = ("overrides", "profilingJob", "template", "spec")
# v1alpha1 config blob key of the model cache -> v1beta1 modelCache key
_MODEL_CACHE_KEYS: Final = (
    ("pvcName", "pvcName"),
    ("modelPathInPvc", "pvcModelPath"),
    ("pvcMountPath", "pvcMountPath"),
)


def _spec_alpha_to_beta(alpha: JSON) -> JSON:
    beta: JSON = {}
    for key in ("model", "backend"):
        if key in alpha:
            beta[key] = copy.deepcopy(alpha[key])
    # v1alpha1's autoApply defaults to false, v1beta1's to true: an absent one keeps its meaning.
    beta["autoApply"] = copy.deepcopy(alpha.get("autoApply", False))
    profiling = _dict(alpha.get("profilingConfig"))
    overrides = _dict(alpha.get("deploymentOverrides"))
    if _nonempty_str(profiling.get("profilerImage")):
        beta["image"] = profiling["profilerImage"]
    elif _nonempty_str(overrides.get("workersImage")):
        beta["image"] = overrides["workersImage"]
    if alpha.get("useMocker") is True:
        _set(beta, ("features", "mocker", "enabled"), True)

    blob = _dict(profiling.get("config"))
    sla = _dict(blob.get("sla"))
    for key in ("ttft", "itl"):
        if _is_number(sla.get(key)):
            _set(beta, ("sla", key), sla[key])
    if sla.get("optimizationType") in _OPTIMIZATION_TYPES:
        _set(beta, ("sla", "optimizationType"), sla["optimizationType"])
    for key in ("isl", "osl"):
        number = _as_int32(sla.get(key))
        if number is not None:
            _set(beta, ("workload", key), number)
    cache = _dict(_dict(blob.get("deployment")).get("modelCache"))
    for alpha_key, beta_key in _MODEL_CACHE_KEYS:
        if _nonempty_str(cache.get(alpha_key)):
            _set(beta, ("modelCache", beta_key), cache[alpha_key])
    planner = blob.get("planner")
    if isinstance(planner, dict) and planner:
        _set(beta, ("features", "planner"), copy.deepcopy(planner))

    if _is_resources(profiling.get("resources")):
        container = {"name": PROFILER_CONTAINER, "resources": copy.deepcopy(profiling["resources"])}
        _set(beta, (*_POD_SPEC, "containers"), [container])
    tolerations = profiling.get("tolerations")
    if isinstance(tolerations, list) and tolerations and all(map(_is_toleration, tolerations)):
        _set(beta, (*_POD_SPEC, "tolerations"), copy.deepcopy(tolerations))
    node_selector = profiling.get("nodeSelector")
    if _is_str_map(node_selector) and node_selector:
        _set(beta, (*_POD_SPEC, "nodeSelector"), dict(node_selector))
    return beta


def _spec_beta_to_alpha(beta: JSON) -> JSON:
    alpha: JSON = {}
    for key in ("model", "backend"):
        if key in beta:
            alpha[key] = copy.deepcopy(beta[key])
    alpha["autoApply"] = copy.deepcopy(beta.get("autoApply", True))
    if _nonempty_str(beta.get("image")):
        _set(alpha, ("profilingConfig", "profilerImage"), beta["image"])
    mocker = _dict(_dict(beta.get("features")).get("mocker"))
    if isinstance(mocker.get("enabled"), bool):
        alpha["useMocker"] = mocker["enabled"]

    blob: JSON = {}
    sla = _dict(beta.get("sla"))
    for key in ("ttft", "itl"):
        if _is_number(sla.get(key)):
            _set(blob, ("sla", key), sla[key])
    if sla.get("optimizationType") in _OPTIMIZATION_TYPES:
        _set(blob, ("sla", "optimizationType"), sla["optimizationType"])
    workload = _dict(beta.get("workload"))
    for key in ("isl", "osl"):
        number = _as_int32(workload.get(key))
        if number is not None:
            _set(blob, ("sla", key), number)
    cache = _dict(beta.get("modelCache"))
    for alpha_key, beta_key in _MODEL_CACHE_KEYS:
        if _nonempty_str(cache.get(beta_key)):
            _set(blob, ("deployment", "modelCache", alpha_key), cache[beta_key])
    planner = _dict(beta.get("features")).get("planner")
    if isinstance(planner, dict) and planner:
        blob["planner"] = copy.deepcopy(planner)
    if blob:
        _set(alpha, ("profilingConfig", "config"), blob)

    pod = _get(beta, _POD_SPEC)
    pod = pod if isinstance(pod, dict) else {}
    containers = pod.get("containers")
    profiler = next(
        (
            c
            for c in (containers if isinstance(containers, list) else [])
            if isinstance(c, dict) and c.get("name") == PROFILER_CONTAINER
        ),
        {},
    )
    if _is_resources(profiler.get("resources")):
        _set(alpha, ("profilingConfig", "resources"), copy.deepcopy(profiler["resources"]))
    tolerations = pod.get("tolerations")
    if isinstance(tolerations, list) and tolerations and all(map(_is_toleration, tolerations)):
        _set(alpha, ("profilingConfig", "tolerations"), copy.deepcopy(tolerations))
    node_selector = pod.get("nodeSelector")
    if _is_str_map(node_selector) and node_selector:
        _set(alpha, ("profilingConfig", "nodeSelector"), dict(node_selector))
    return alpha


# ---- status --------------------------------------------------------------------------------

# upstream's dgdrStateToPhase (Ready with a created deployment is Deployed; unknown is Pending)
_STATE_TO_PHASE: Final = {
    "": "Pending",
    "Initializing": "Pending",
    "Pending": "Pending",
    "Profiling": "Profiling",
    "Ready": "Ready",
    "Deploying": "Deploying",
    "DeploymentDeleted": "Ready",
    "Failed": "Failed",
}
# upstream's dgdrPhaseToState (Deployed is Ready; unknown is Pending)
_PHASE_TO_STATE: Final = {
    "Pending": "Pending",
    "Profiling": "Profiling",
    "Ready": "Ready",
    "Deploying": "Deploying",
    "Deployed": "Ready",
    "Failed": "Failed",
}


def _status_alpha_to_beta(alpha: JSON) -> JSON:
    beta: JSON = {}
    deployment = _dict(alpha.get("deployment"))
    if "state" in alpha:
        state = alpha["state"]
        phase = _STATE_TO_PHASE.get(state, "Pending") if isinstance(state, str) else "Pending"
        if phase == "Ready" and state == "Ready" and deployment.get("created") is True:
            phase = "Deployed"
        beta["phase"] = phase
    for key in ("observedGeneration", "conditions"):
        if key in alpha:
            beta[key] = copy.deepcopy(alpha[key])
    if isinstance(alpha.get("generatedDeployment"), dict):
        _set(beta, ("profilingResults", "selectedConfig"), alpha["generatedDeployment"])
    if _nonempty_str(deployment.get("name")):
        beta["dgdName"] = deployment["name"]
    return beta


def _status_beta_to_alpha(beta: JSON) -> JSON:
    alpha: JSON = {}
    if "phase" in beta:
        phase = beta["phase"]
        alpha["state"] = _PHASE_TO_STATE.get(phase, "Pending") if isinstance(phase, str) else ""
    for key in ("observedGeneration", "conditions"):
        if key in beta:
            alpha[key] = copy.deepcopy(beta[key])
    selected = _dict(beta.get("profilingResults")).get("selectedConfig")
    if isinstance(selected, dict):
        alpha["generatedDeployment"] = copy.deepcopy(selected)
    if _nonempty_str(beta.get("dgdName")):
        _set(alpha, ("deployment", "name"), beta["dgdName"])
    return alpha


# Dependent fields (upstream's restore rules): v1alpha1's status.deployment belongs to the DGD
# it names; v1beta1's profiling sub-phase and Job to the phase, deploymentInfo to the DGD.
_ALPHA_STATUS_CONTEXT: Final[dict[Path, tuple[Path, ...]]] = {
    ("deployment",): (("deployment", "name"),),
}
_BETA_STATUS_CONTEXT: Final[dict[Path, tuple[Path, ...]]] = {
    ("profilingPhase",): (("phase",),),
    ("profilingJobName",): (("phase",),),
    ("deploymentInfo",): (("dgdName",),),
}

_SPEC_A2B: Final = _Direction(ANNOTATION_SPEC, _spec_alpha_to_beta, _spec_beta_to_alpha, {}, {})
_SPEC_B2A: Final = _Direction(ANNOTATION_SPEC, _spec_beta_to_alpha, _spec_alpha_to_beta, {}, {})
_STATUS_A2B: Final = _Direction(
    ANNOTATION_STATUS,
    _status_alpha_to_beta,
    _status_beta_to_alpha,
    _ALPHA_STATUS_CONTEXT,
    _BETA_STATUS_CONTEXT,
)
_STATUS_B2A: Final = _Direction(
    ANNOTATION_STATUS,
    _status_beta_to_alpha,
    _status_alpha_to_beta,
    _BETA_STATUS_CONTEXT,
    _ALPHA_STATUS_CONTEXT,
)
