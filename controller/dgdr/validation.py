"""Is this DGDR something the controller can act on? Every problem, each naming its field.

Three layers, all run, all collected, so a user fixes their manifest in one round trip:

1. structure: the typed models of ``api.py`` (types, enums, bounds, unknown fields);
2. the CRD's rules again, on the raw object: its CEL rules (``x-kubernetes-validations``, with
   their messages), evaluated by cel-python from the schema generated from the models
   (``profiler/cel.py``), and the null and embedded-resource checks CEL cannot make
   (``profiler.spec.rule_errors``). The API server already enforces them, but an object may
   have been stored under an older CRD, or come from a file rather than the cluster;
3. the profiler's semantic checks (known model and SKU, a budget that can hold the model, ...),
   which need the profiler's tables and so cannot live in the CRD.

The command line (``PlanRequest.from_spec``) runs the same layers on a spec, through the same
models and rules. A problem with a field reported by an earlier layer is not repeated by a
later one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from controller.dgdr.api import DGDRSpec, DynamoGraphDeploymentRequest, crd_schema
from profiler import cel
from profiler.errors import FieldError
from profiler.request import validate_spec
from profiler.spec import merge_errors as _merge
from profiler.spec import null_and_embedded_errors
from profiler.spec import path_of as path_of
from profiler.spec import structural_errors as _structural_errors

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
    spec = model.spec if model is not None else obj.get("spec")
    if semantic and isinstance(spec, DGDRSpec | Mapping):
        _merge(errors, _semantic_errors(spec))
    return model, errors


def rule_errors(obj: Mapping[str, Any]) -> list[FieldError]:
    """The CRD's rules on a raw object (types may be anything): its CEL rules, evaluated from
    the generated schema, and the spec's checks CEL cannot make."""
    errors = cel.rule_errors(obj, crd_schema(), "")
    return _merge(errors, null_and_embedded_errors(obj.get("spec")))


def _semantic_errors(spec: DGDRSpec | Mapping[str, Any]) -> list[FieldError]:
    # An exception here is a bug, not bad input: it propagates to the worker, which logs it,
    # counts it in controller_runtime_reconcile_errors_total and retries with backoff.
    errors = validate_spec(spec)
    given = spec.to_dict() if isinstance(spec, DGDRSpec) else spec
    return [e for e in errors if not _filled_later(e.path, given)]


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
