"""The CRD file alone, and against the pydantic models: one API described twice must agree."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from controller.dgdr import api
from tests.api.dgdr_cases import crd_schema, crd_version, load_crd

SPEC = crd_schema()["properties"]["spec"]
STATUS = crd_schema()["properties"]["status"]


def test_names_scope_and_version() -> None:
    crd = load_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "dynamographdeploymentrequests.nvidia.com"
    assert spec["group"] == "nvidia.com"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == api.DGDR_KIND == api.DGDR_RESOURCE.kind
    assert names["plural"] == api.DGDR_RESOURCE.plural
    assert names["singular"] == "dynamographdeploymentrequest"
    assert names["shortNames"] == ["dgdr"]
    assert "dynamo" in names["categories"]
    # v1beta1 stored; upstream's deprecated v1alpha1 served too (controller/dgdr/conversion.py)
    assert [v["name"] for v in spec["versions"]] == ["v1beta1", "v1alpha1"]
    version = crd_version()
    assert version["name"] == api.DGDR_RESOURCE.version == "v1beta1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    alpha = crd_version("v1alpha1")
    assert alpha["served"] and not alpha["storage"] and alpha["deprecated"]
    assert alpha["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    version = crd_version()
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(cols) == [
        "Model",
        "Backend",
        "Phase",
        "Profiling",
        "Reason",
        "Message",
        "DGD",
        "Age",
    ]
    assert cols["Reason"] == '.status.conditions[?(@.type=="Succeeded")].reason'
    assert cols["Message"] == '.status.conditions[?(@.type=="Succeeded")].message'
    assert cols["DGD"] == ".status.dgdName"


def _walk(schema: dict[str, Any], path: str) -> typing.Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_schema_is_structural_and_described() -> None:
    """Every node has a type (structural schema) and a description (kubectl explain)."""
    for path, node in _walk(crd_schema(), ""):
        assert "type" in node, f"{path} has no type"
        if path not in ("", ".metadata"):
            assert node.get("description", "").strip(), f"{path} has no description"


def test_every_cel_rule_names_a_field() -> None:
    rules = [
        r for _, node in _walk(crd_schema(), "") for r in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 12
    for rule in rules:
        text = rule.get("message", "") + rule.get("messageExpression", "")
        assert "spec." in text or "metadata." in text, rule


def test_sla_pairing_is_upstreams_in_the_crd() -> None:
    """No rule pairs ttft with itl (one left out takes its default); e2eLatency excludes both;
    ttft and itl are nullable so an explicit null reaches the controller, which refuses it
    (CEL cannot see it)."""
    sla = SPEC["properties"]["sla"]
    (rule,) = sla["x-kubernetes-validations"]
    assert rule["fieldPath"] == ".e2eLatency"
    assert rule["message"] == (
        "spec.sla.e2eLatency cannot be combined with spec.sla.ttft or spec.sla.itl: "
        "give one or the other"
    )
    props = sla["properties"]
    assert props["ttft"]["nullable"] is props["itl"]["nullable"] is True
    assert "nullable" not in props["e2eLatency"]


def test_free_form_fields_are_preserved() -> None:
    props = SPEC["properties"]
    dgd = props["overrides"]["properties"]["dgd"]
    assert dgd["x-kubernetes-embedded-resource"] and dgd["x-kubernetes-preserve-unknown-fields"]
    assert props["overrides"]["properties"]["profilingJob"]["x-kubernetes-preserve-unknown-fields"]
    assert props["features"]["properties"]["planner"]["x-kubernetes-preserve-unknown-fields"]
    selected = STATUS["properties"]["profilingResults"]["properties"]["selectedConfig"]
    assert selected["x-kubernetes-preserve-unknown-fields"]
    conds = STATUS["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map"
    assert conds["x-kubernetes-list-map-keys"] == ["type"]


def test_defaults_are_the_documented_ones() -> None:
    p = SPEC["properties"]
    assert p["backend"]["default"] == api.DEFAULT_BACKEND == "auto"
    assert p["searchStrategy"]["default"] == api.DEFAULT_SEARCH_STRATEGY == "rapid"
    assert p["autoApply"]["default"] is api.DEFAULT_AUTO_APPLY is True
    assert p["workload"]["properties"]["isl"]["default"] == api.DEFAULT_ISL == 4000
    assert p["workload"]["properties"]["osl"]["default"] == api.DEFAULT_OSL == 1000
    mount = p["modelCache"]["properties"]["pvcMountPath"]["default"]
    assert mount == api.DEFAULT_PVC_MOUNT_PATH == "/opt/model-cache"


def test_gpu_skus_match_the_profiler_table() -> None:
    from profiler.hardware import SKUS

    assert SPEC["properties"]["hardware"]["properties"]["gpuSku"]["enum"] == list(api.GPU_SKUS)
    assert set(api.GPU_SKUS) == set(SKUS)
    assert {"gb10", "b300_sxm"} <= set(api.GPU_SKUS)


def test_status_enums_match_the_constants() -> None:
    p = STATUS["properties"]
    assert p["phase"]["enum"] == [ph.value for ph in api.Phase]
    assert p["profilingPhase"]["enum"] == [ph.value for ph in api.ProfilingPhase]
    assert typing.get_args(api.PhaseName) == tuple(p["phase"]["enum"])
    assert typing.get_args(api.ProfilingPhaseName) == tuple(p["profilingPhase"]["enum"])


# ---- the models mirror the schema, level by level ------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if typing.get_origin(arg) is list:
            inner = _model_of(typing.get_args(arg)[0])
            if inner:
                return inner
    return None


def _literal_values(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            values = _literal_values(arg)
            if values:
                return values
    return None


def _compare(schema: dict[str, Any], model: type[BaseModel], path: str) -> list[str]:
    problems: list[str] = []
    fields: dict[str, FieldInfo] = {(f.alias or n): f for n, f in model.model_fields.items()}
    props = schema.get("properties", {})
    if set(fields) != set(props):
        problems.append(f"{path}: model {sorted(fields)} != CRD {sorted(props)}")
    required = set(schema.get("required", []))
    for name in set(fields) & set(props):
        info, node = fields[name], props[name]
        where = f"{path}.{name}"
        if info.is_required() != (name in required):
            problems.append(f"{where}: required differs")
        if "default" in node and info.get_default() != node["default"]:
            problems.append(f"{where}: default {info.get_default()!r} != {node['default']!r}")
        if "default" not in node and not info.is_required():
            default = info.get_default(call_default_factory=True)
            if default not in (None, []):
                problems.append(f"{where}: model default {default!r} not in the CRD")
        if "enum" in node and _literal_values(info.annotation) != node["enum"]:
            problems.append(f"{where}: enum {_literal_values(info.annotation)} != {node['enum']}")
        sub = _model_of(info.annotation)
        node_obj = node.get("items", node)
        if sub is not None:
            problems += _compare(node_obj, sub, where)
        elif node_obj.get("properties"):
            problems.append(f"{where}: the CRD has properties, the model a plain type")
    return problems


@pytest.mark.parametrize(
    ("schema", "model"),
    [(SPEC, api.DGDRSpec), (STATUS, api.DGDRStatus)],
    ids=["spec", "status"],
)
def test_models_mirror_the_crd(schema: dict[str, Any], model: type[BaseModel]) -> None:
    assert _compare(schema, model, model.__name__) == []


def test_profiler_defaults_are_the_api_ones() -> None:
    """Defined once, in profiler/spec.py: the controller's names and the profiler's are the same
    objects."""
    from profiler import request, spec

    for name in ("DEFAULT_ISL", "DEFAULT_OSL", "DEFAULT_PVC_MOUNT_PATH", "RUNTIME_VERSION_PATTERN"):
        assert getattr(api, name) is getattr(spec, name)
    assert request.DEFAULT_MOUNT_PATH == api.DEFAULT_PVC_MOUNT_PATH
    assert request.RUNTIME_VERSION_RE.pattern == api.RUNTIME_VERSION_PATTERN
    assert set(request.BACKENDS) == set(api.CONCRETE_BACKENDS)
