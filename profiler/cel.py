"""The CRD's CEL rules (``x-kubernetes-validations``), evaluated in Python with cel-python.

The rules and their messages are the ones the API server enforces: they are written once, on
the models, and reach the CRD through the generated schema (``profiler/openapi.py``). This
walks an object along that schema and evaluates each rule where the API server would, on the
value as the API server would see it: absent and null fields are missing (``has()`` is false),
a whole number in a ``number`` field is a double. A rule is evaluated only on a value of the
type its schema says (a wrong type is a structural error, reported by the models).

Not evaluated: transition rules (``oldSelf``; the controller enforces the spec-change rule
itself). A rule that cannot be evaluated on a well-typed value (a field the rule needs is
absent: ``metadata.name`` of a file with no name) reports nothing, where the API server would
refuse; there it always has the field.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from profiler.errors import FieldError

_ENV = celpy.Environment()


def _trim(value: celtypes.StringType) -> celtypes.StringType:
    """Kubernetes' CEL string extension ``trim()`` (leading and trailing white space), which
    cel-python, a plain CEL, lacks."""
    return celtypes.StringType(value.strip())


# Kubernetes CEL library functions the rules use that cel-python does not have.
KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {"trim": _trim}


@functools.lru_cache(maxsize=256)
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(rule), functions=KUBERNETES_FUNCTIONS)


def rule_errors(value: Any, schema: Mapping[str, Any], path: str) -> list[FieldError]:
    """Every rule of ``schema`` and of the nodes below it that ``value`` breaks, each reported
    at its field (``path`` plus the rule's ``fieldPath``) with the rule's message."""
    errors: list[FieldError] = []
    _walk(value, schema, path, errors)
    return errors


def _walk(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if value is None or not _typed(value, schema.get("type")):
        return
    props = schema.get("properties", {})
    if props and isinstance(value, Mapping):
        for key, sub in props.items():
            _walk(value.get(key), sub, f"{path}.{key}" if path else key, errors)
    items = schema.get("items")
    if items is not None and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, items, f"{path}[{i}]", errors)
    rules = schema.get("x-kubernetes-validations", [])
    if not rules:
        return
    try:
        self_ = json_to_cel(_as_seen(value, schema))
    except (ValueError, TypeError, OverflowError):  # beyond JSON the API server stores (2**64)
        return
    for rule in rules:
        if "oldSelf" in rule["rule"]:
            continue
        try:
            ok = _program(rule["rule"]).evaluate({"self": self_})
        except CELEvalError:
            continue
        if isinstance(ok, CELEvalError) or ok:
            continue
        where = path + rule.get("fieldPath", "")
        if not where:  # a rule of the whole object: the field its message names
            where = rule["message"].split(" ", 1)[0]
        errors.append(FieldError(where, _message(rule["message"], where)))


def _message(message: str, where: str) -> str:
    """The rule's message without the field path FieldError carries anyway, when it starts
    with it (``spec.sla.ttft must be ...`` -> ``must be ...``)."""
    rest = message.removeprefix(where + " ")
    return rest if rest != message and rest.split(" ", 1)[0] in ("must", "cannot") else message


def _typed(value: Any, kind: Any) -> bool:
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value))
        )
    return True


def _as_seen(value: Any, schema: Mapping[str, Any]) -> Any:
    """The value as CEL sees it: nulls dropped, numbers of ``number`` fields as doubles; a field
    of the wrong type (a structural error already) is left out, as if absent."""
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        return {
            k: _as_seen(v, props.get(k, {}))
            for k, v in value.items()
            if v is not None and _typed(v, props.get(k, {}).get("type"))
        }
    if isinstance(value, list):
        return [_as_seen(v, schema.get("items", {})) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
