"""Is this DGDR something the controller can act on? Every problem, each naming its field.

Three layers, all run, all collected, so a user fixes their manifest in one round trip:

1. structure: the typed models of ``api.py`` (types, enums, bounds, unknown fields);
2. the CRD's CEL rules again, on the raw object. The API server already enforces them, but an
   object may have been stored under an older CRD, or come from a file rather than the cluster;
3. the profiler's semantic checks (known model and SKU, a budget that can hold the model, ...),
   which need the profiler's tables and so cannot live in the CRD.

A problem with a field reported by an earlier layer is not repeated by a later one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from controller.dgdr.api import CONCRETE_BACKENDS, MAX_NAME_LENGTH, DynamoGraphDeploymentRequest
from profiler.errors import FieldError
from profiler.request import SLA_E2E, SLA_NULL, validate_spec

# The CEL rules' messages (deploy/crds/...dynamographdeploymentrequests.yaml), minus the field
# path that FieldError carries anyway. The SLA pairing messages are the profiler's (SLA_E2E,
# SLA_NULL), so the command line and the controller word a refusal alike.
LOAD_EXCLUSIVE = (
    "spec.workload.concurrency and spec.workload.requestRate are mutually exclusive; "
    "give at most one"
)
THOROUGH_BACKEND = (
    "must be vllm, sglang or trtllm when spec.searchStrategy is thorough "
    "(thorough profiling measures one concrete backend)"
)
RUNTIME_VERSION = (
    "must be a version MAJOR.MINOR.PATCH such as 1.1.0 (no leading zeros, at most 4 digits each)"
)
MOUNT_PATH_ABSOLUTE = "must be an absolute path (start with /)"
NAME_TOO_LONG = (
    f"must be at most {MAX_NAME_LENGTH} characters, because it is used as the value of the "
    "dgdr.nvidia.com/name label"
)

# Fields a user may leave out because the controller fills them in before planning: the
# hardware, discovered from the nodes.
FILLED_BY_CONTROLLER = frozenset(
    {
        "spec.hardware.gpuSku",
        "spec.hardware.numGpusPerNode",
        "spec.hardware.totalGpus",
        "spec.hardware.vramMb",
    }
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
# Field-specific wording where a pattern says nothing to a user.
_PATTERN_MESSAGES = {
    "spec.runtimeVersionOverride": RUNTIME_VERSION,
    "spec.modelCache.pvcMountPath": MOUNT_PATH_ABSOLUTE,
}


def validate_dgdr(
    obj: Mapping[str, Any], *, semantic: bool = True
) -> tuple[DynamoGraphDeploymentRequest | None, list[FieldError]]:
    """Parse and check a DGDR: bad input of any shape comes back as errors, never raised; an
    exception is a bug of this code, left to the caller's retry and error count.

    Returns the parsed model whenever the object has the right structure, even if a rule or a
    semantic check failed (the caller still needs its name and status to report the failure),
    and None when it does not parse. The errors are empty exactly when the DGDR is valid.

    The API lets a user leave out any hardware field: the controller fills them in (node
    discovery). The profiler's checks need them, so what they say about
    such a field while it is absent (required; a budget too small for the model) is not an
    error of this object and is dropped; the profiler says it again, with the discovered
    values, when planning. ``semantic=False`` skips the profiler's checks altogether.
    """
    if not isinstance(obj, Mapping):
        return None, [FieldError("spec", "is required: the object is not a mapping")]
    errors: list[FieldError] = []
    model: DynamoGraphDeploymentRequest | None = None
    try:
        model = DynamoGraphDeploymentRequest.model_validate(dict(obj))
    except ValidationError as exc:
        errors.extend(_structural_errors(exc))
    _merge(errors, rule_errors(obj))
    spec = model.spec.to_dict() if model is not None else obj.get("spec")
    if semantic and isinstance(spec, Mapping):
        _merge(errors, _semantic_errors(spec))
    return model, errors


def rule_errors(obj: Mapping[str, Any]) -> list[FieldError]:
    """The CRD's cross-field CEL rules on a raw object (types may be anything)."""
    errors: list[FieldError] = []
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        name = meta.get("name")
        if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
            errors.append(FieldError("metadata.name", NAME_TOO_LONG))
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return errors
    if spec.get("searchStrategy") == "thorough" and spec.get("backend", "auto") not in (
        *CONCRETE_BACKENDS,
        None,  # a null backend is a structural error already
    ):
        errors.append(FieldError("spec.backend", THOROUGH_BACKEND))
    sla = spec.get("sla")
    if isinstance(sla, Mapping):
        # A ttft or itl left out takes the profiler's default; only an explicit conflict is
        # refused: e2eLatency with a ttft or itl that has a value (the CEL rule), or one of them
        # null without e2eLatency. That one no CEL rule can see (a null field is a missing one to
        # CEL); ttft and itl are nullable in the CRD so the stored object keeps the null for it.
        e2e = sla.get("e2eLatency") is not None
        for key in ("ttft", "itl"):
            if not e2e and key in sla and sla[key] is None:
                errors.append(FieldError(f"spec.sla.{key}", SLA_NULL))
        if e2e and (sla.get("ttft") is not None or sla.get("itl") is not None):
            errors.append(FieldError("spec.sla.e2eLatency", SLA_E2E))
    workload = spec.get("workload")
    if (
        isinstance(workload, Mapping)
        and workload.get("concurrency") is not None
        and workload.get("requestRate") is not None
    ):
        errors.append(FieldError("spec.workload.concurrency", LOAD_EXCLUSIVE))
    overrides = spec.get("overrides")
    dgd = overrides.get("dgd") if isinstance(overrides, Mapping) else None
    if isinstance(dgd, Mapping):  # x-kubernetes-embedded-resource: apiVersion and kind required
        for key in ("apiVersion", "kind"):
            if not dgd.get(key):
                errors.append(FieldError(f"spec.overrides.dgd.{key}", "is required"))
    return errors


def path_of(loc: Sequence[int | str]) -> str:
    """``("spec", "sla", "ttft")`` -> ``spec.sla.ttft``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "spec"


def _structural_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        path = path_of(err["loc"])
        kind = err["type"]
        if kind == "string_pattern_mismatch" and path in _PATTERN_MESSAGES:
            message = _PATTERN_MESSAGES[path]
        elif kind in _MESSAGES:
            message = _MESSAGES[kind]
        else:
            message = err["msg"].removeprefix("Value error, ")
            message = message.replace("Input should be", "must be", 1)
            message = message.replace("String should", "must", 1)
        errors.append(FieldError(path, message))
    return errors


def _semantic_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    # An exception here is a bug, not bad input: it propagates to the worker, which logs it,
    # counts it in controller_runtime_reconcile_errors_total and retries with backoff.
    errors = list(validate_spec(spec))
    return [e for e in errors if not _filled_later(e.path, spec)]


def _filled_later(path: str, spec: Mapping[str, Any]) -> bool:
    """Whether ``path`` is a field the controller fills in and the user left out."""
    if path not in FILLED_BY_CONTROLLER:
        return False
    node: Any = spec
    for key in path.split(".")[1:]:
        if not isinstance(node, Mapping) or node.get(key) is None:
            return True
        node = node[key]
    return False


def _merge(errors: list[FieldError], more: list[FieldError]) -> None:
    """Add errors about fields not reported yet (nor any field that contains them)."""
    reported = [e.path for e in errors]
    for e in more:
        if not any(_within(e.path, p) for p in reported):
            errors.append(e)
            reported.append(e.path)


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "["))
