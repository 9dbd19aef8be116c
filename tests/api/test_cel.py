"""The CRD's CEL rules, evaluated in Python by cel-python, and the profiler taking the model."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.dgdr import api
from controller.dgdr.validation import validate_dgdr
from profiler import cel
from profiler.errors import SpecError
from profiler.request import PlanRequest, validate_spec
from profiler.spec import DGDRSpec, check_spec
from tests.api.dgdr_cases import BASE_SPEC, crd_schema


def _rules(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, r) for r in schema.get("x-kubernetes-validations", [])]
    for key, sub in schema.get("properties", {}).items():
        out += _rules(sub, f"{path}.{key}" if path else key)
    return out


FILE_RULES = _rules(crd_schema())  # the CRD file's, not the models'


def test_every_rule_of_the_crd_file_compiles_in_cel_python() -> None:
    """All but the transition rule (``oldSelf``), which the reconciler enforces instead."""
    transition = [r for _, r in FILE_RULES if "oldSelf" in r["rule"]]
    assert len(transition) == 1
    for _, rule in FILE_RULES:
        if rule not in transition:
            cel._program(rule["rule"])  # raises when cel-python cannot compile it


# (path of the rule's node, a spec or object breaking it, the field reported)
BREAKING = [
    ("", {"metadata": {"name": "n" * 64}}, "metadata.name"),
    ("spec", {"spec": {"searchStrategy": "thorough", "backend": "auto"}}, "spec.backend"),
    ("spec.model", {"spec": {"model": " \t "}}, "spec.model"),
    ("spec.runtimeVersionOverride", {"spec": {"runtimeVersionOverride": "01.0.0"}}, None),
    ("spec.modelCache.pvcMountPath", {"spec": {"modelCache": {"pvcMountPath": "a/b"}}}, None),
    ("spec.hardware.vramMb", {"spec": {"hardware": {"vramMb": 0}}}, None),
    (
        "spec.workload",
        {"spec": {"workload": {"concurrency": 1, "requestRate": 1}}},
        "spec.workload.concurrency",
    ),
    ("spec.workload.concurrency", {"spec": {"workload": {"concurrency": -1}}}, None),
    ("spec.workload.requestRate", {"spec": {"workload": {"requestRate": 0}}}, None),
    ("spec.sla", {"spec": {"sla": {"e2eLatency": 9, "itl": 5}}}, "spec.sla.e2eLatency"),
    ("spec.sla.ttft", {"spec": {"sla": {"ttft": 0}}}, None),
    ("spec.sla.itl", {"spec": {"sla": {"itl": -3}}}, None),
    ("spec.sla.e2eLatency", {"spec": {"sla": {"e2eLatency": -1}}}, None),
]


def test_every_rule_is_broken_by_a_case() -> None:
    covered = {where for where, _, _ in BREAKING}
    assert covered == {where for where, r in FILE_RULES if "oldSelf" not in r["rule"]}


def _object(patch: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": api.DGDR_API_VERSION,
        "kind": api.DGDR_KIND,
        "metadata": {"name": "cel"},
        "spec": copy.deepcopy(BASE_SPEC),
    }
    obj["metadata"].update(patch.get("metadata", {}))
    obj["spec"].update(patch.get("spec", {}))  # a patched field is replaced whole
    return obj


@pytest.mark.parametrize(
    ("where", "patch", "field"), BREAKING, ids=[b[0] or "root" for b in BREAKING]
)
def test_a_broken_rule_is_reported_with_the_crd_files_message(
    where: str, patch: dict[str, Any], field: str | None
) -> None:
    field = field or where
    messages = [r["message"] for w, r in FILE_RULES if w == where]
    _, errors = validate_dgdr(_object(patch), semantic=False)
    mine = [e for e in errors if e.path == field]
    assert len(mine) == 1, errors
    # the CRD's message, without the field path the error carries anyway
    assert any(m.endswith(mine[0].message) for m in messages), (mine, messages)
    # and the command line refuses it alike, at the same field
    spec = _object(patch)["spec"]
    if field.startswith("spec."):
        assert field in {e.path for e in check_spec(spec)[1]}
        with pytest.raises(SpecError) as info:
            PlanRequest.from_spec(spec)
        assert field in {e.path for e in info.value.errors}


def test_numbers_are_doubles_to_cel_as_to_the_api_server() -> None:
    """``self > 0.0`` on a whole number: the API server converts it to a double (CEL has no
    int > double), so must we, or ``ttft: -1`` would escape the rule."""
    ttft = crd_schema()["properties"]["spec"]["properties"]["sla"]["properties"]["ttft"]
    assert [str(e) for e in cel.rule_errors(-1, ttft, "spec.sla.ttft")] == [
        "spec.sla.ttft: must be greater than 0 (milliseconds)"
    ]
    assert cel.rule_errors(5, ttft, "spec.sla.ttft") == []
    assert cel.rule_errors(0.5, ttft, "spec.sla.ttft") == []


def test_the_profiler_takes_the_validated_model() -> None:
    model = DGDRSpec.model_validate(BASE_SPEC)
    from_model = PlanRequest.from_spec(model, dgdr_name="m")
    assert from_model == PlanRequest.from_spec(BASE_SPEC, dgdr_name="m")
    assert validate_spec(model) == []


def test_a_model_is_checked_against_the_rules_too() -> None:
    """pydantic does not run the CEL rules: a model built in code may break one."""
    model = DGDRSpec.model_validate({**BASE_SPEC, "sla": {"ttft": -1}})
    with pytest.raises(SpecError) as info:
        PlanRequest.from_spec(model)
    assert [e.path for e in info.value.errors] == ["spec.sla.ttft"]


def test_unknown_fields_below_spec_are_refused_by_the_command_line_too() -> None:
    spec = {**BASE_SPEC, "sla": {"ttft": 500, "itl": 30, "p99": 1}}
    with pytest.raises(SpecError) as info:
        PlanRequest.from_spec(spec)
    assert [str(e) for e in info.value.errors] == ["spec.sla.p99: unknown field"]
