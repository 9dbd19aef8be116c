"""A Kubernetes structural schema (a CRD's ``openAPIV3Schema``) generated from pydantic models.

The DGDR API is written once, as models (``profiler/spec.py`` for the spec, shared by the
controller and the command line; ``controller/dgdr/api.py`` for the rest); the CRD's v1beta1
schema is generated from them (``python -m controller.dgdr.crdgen``) and a test fails when the
file and the models disagree. What the models say becomes schema as follows:

* the field name is its camelCase alias; required when the field has no default;
* ``str`` ``string``, ``int`` ``integer``, ``float`` ``number``, ``bool`` ``boolean``, a model
  ``object`` with its ``properties``, ``list[X]`` ``array`` with ``items``, ``dict`` ``object``;
* ``Literal[...]`` an ``enum``; ``Field(ge=, le=, min_length=, max_length=, pattern=)``
  ``minimum``, ``maximum``, ``minLength``/``minItems``, ``maxLength``/``maxItems``, ``pattern``;
* a default other than None (not a factory) ``default``; ``Field(description=)`` ``description``;
* ``Field(json_schema_extra=k8s(...))`` (on a field) or ``model_config``'s ``json_schema_extra``
  (on a model: an object's rules and description) is copied as is: ``format``, ``nullable``,
  ``x-kubernetes-*``, and the CEL rules (``x-kubernetes-validations``), which
  ``profiler/cel.py`` evaluates in Python with the messages written here.

``X | None`` is an optional field, not a nullable one: ``nullable`` is said explicitly.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# A key of json_schema_extra read by the generator, never written: {"default": False} leaves a
# model default out of the schema; {"schema": {...}} replaces the generated node.
GENERATOR_KEY = "x-crdgen"


@dataclass(frozen=True)
class Rule:
    """One CEL rule of ``x-kubernetes-validations``; the message names the field."""

    rule: str
    message: str
    reason: str = "FieldValueInvalid"
    field_path: str | None = None
    message_expression: str | None = None

    def as_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.message_expression is not None:
            out["messageExpression"] = self.message_expression
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        out["reason"] = self.reason
        return out


def k8s(*rules: Rule, **extra: Any) -> dict[str, Any]:
    """Schema keys for ``json_schema_extra``: CEL rules, then any keys (``format``, ``nullable``,
    ``x_kubernetes_preserve_unknown_fields`` written with underscores for dashes)."""
    out: dict[str, Any] = {k.replace("_", "-"): v for k, v in extra.items()}
    if rules:
        out["x-kubernetes-validations"] = [r.as_schema() for r in rules]
    return out


def gt_zero(path: str, unit: str = "") -> Rule:
    """The CRD's positivity rule of a ``number`` (a CEL rule, so its message names the field)."""
    suffix = f" ({unit})" if unit else ""
    return Rule("self > 0.0", f"{path} must be greater than 0{suffix}")


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of a model: an object with its properties."""
    node: dict[str, Any] = {"type": "object"}
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        props[key] = _field_schema(info)
        if info.is_required():
            required.append(key)
    extra = model.model_config.get("json_schema_extra")
    if isinstance(extra, dict):
        node.update(extra)
    if required:
        node["required"] = required
    if props:
        node["properties"] = props
    return node


def _field_schema(info: FieldInfo) -> dict[str, Any]:
    extra: dict[str, Any] = (
        dict(info.json_schema_extra) if isinstance(info.json_schema_extra, dict) else {}
    )
    options: dict[str, Any] = extra.pop(GENERATOR_KEY, {})
    if "schema" in options:
        node: dict[str, Any] = dict(options["schema"])
    else:
        node = _type_schema(info.annotation, list(info.metadata))
    default = info.default
    if (
        options.get("default", True)
        and default is not PydanticUndefined
        and default is not None
        and info.default_factory is None
    ):
        node["default"] = default
    if info.description:
        node["description"] = info.description
    node.update(extra)
    return node


def _type_schema(annotation: Any, metadata: list[Any]) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *more = typing.get_args(annotation)
        for m in more:
            if isinstance(m, FieldInfo):
                metadata += list(m.metadata)
                if isinstance(m.json_schema_extra, dict):
                    metadata.append(m.json_schema_extra)
            else:
                metadata.append(m)
        return _type_schema(base, metadata)
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no schema for a union of {args}")
        return _type_schema(args[0], metadata)
    node: dict[str, Any]
    if origin is typing.Literal:
        values = list(typing.get_args(annotation))
        node = {"type": "string", "enum": values}
    elif origin is list:
        (item,) = typing.get_args(annotation)
        node = {"type": "array", "items": _type_schema(item, [])}
    elif origin is dict or annotation is dict:
        node = {"type": "object"}
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        node = model_schema(annotation)
    elif annotation is bool:
        node = {"type": "boolean"}
    elif annotation is int:
        node = {"type": "integer"}
    elif annotation is float:
        node = {"type": "number"}
    elif annotation is str:
        node = {"type": "string"}
    else:
        raise TypeError(f"no schema for {annotation!r}")
    for m in metadata:
        _constrain(node, m)
    return node


def _constrain(node: dict[str, Any], m: Any) -> None:
    array = node["type"] == "array"
    if isinstance(m, dict):  # json_schema_extra of an Annotated alias (Int32Positive)
        node.update(m)
        return
    if isinstance(m, annotated_types.Ge):
        node["minimum"] = m.ge
    elif isinstance(m, annotated_types.Le):
        node["maximum"] = m.le
    elif isinstance(m, annotated_types.MinLen):
        node["minItems" if array else "minLength"] = m.min_length
    elif isinstance(m, annotated_types.MaxLen):
        node["maxItems" if array else "maxLength"] = m.max_length
    elif isinstance(m, annotated_types.Gt | annotated_types.Lt):
        raise TypeError("write gt/lt as a CEL rule (gt_zero), which names the field")
    elif getattr(m, "pattern", None) is not None:
        node["pattern"] = m.pattern
