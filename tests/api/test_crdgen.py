"""One definition of the API: the CRD's v1beta1 schema is the one the models generate.

``python -m controller.dgdr.crdgen`` writes it; these tests fail while the file (or the Helm
chart's copy) says anything else, and show that a change on either side is noticed.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import Field, create_model

from controller.dgdr import api, crdgen
from profiler import spec as spec_models
from profiler.openapi import model_schema


def _drift(generated: Any, in_file: Any, path: str = "") -> list[str]:
    """Where two schemas differ, as readable paths (empty when they are equal)."""
    if isinstance(generated, dict) and isinstance(in_file, dict):
        out: list[str] = []
        for key in sorted(set(generated) | set(in_file), key=str):
            if key not in in_file:
                out.append(f"{path}/{key}: only in the models")
            elif key not in generated:
                out.append(f"{path}/{key}: only in the CRD")
            else:
                out += _drift(generated[key], in_file[key], f"{path}/{key}")
        return out
    if isinstance(generated, list) and isinstance(in_file, list) and len(generated) == len(in_file):
        return [
            d
            for i, (g, f) in enumerate(zip(generated, in_file, strict=True))
            for d in _drift(g, f, f"{path}[{i}]")
        ]
    if generated != in_file or type(generated) is not type(in_file):
        return [f"{path}: models {generated!r} != CRD {in_file!r}"]
    return []


@pytest.mark.parametrize("path", crdgen.CRD_FILES, ids=["deploy", "chart"])
def test_the_crd_schema_is_the_one_the_models_generate(path: Any) -> None:
    """The drift test: run ``python -m controller.dgdr.crdgen`` when it fails."""
    text = path.read_text()
    assert _drift(api.crd_schema(), crdgen.file_schema(text)) == []
    assert crdgen.render(text, api.crd_schema()) == text, "not the generator's layout"


def test_the_check_command_agrees() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "controller.dgdr.crdgen", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_the_command_rewrites_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for i, path in enumerate(crdgen.CRD_FILES):
        copy_ = tmp_path / str(i) / path.name
        copy_.parent.mkdir()
        copy_.write_text(path.read_text().replace("maxLength: 1024", "maxLength: 99", 1))
        files.append(copy_)
    monkeypatch.setattr(crdgen, "CRD_FILES", tuple(files))
    monkeypatch.setattr(crdgen, "REPO", tmp_path)
    assert crdgen.main(["--check"]) == 1
    assert capsys.readouterr().err.count("out of date") == 2
    assert crdgen.main([]) == 0
    assert crdgen.main(["--check"]) == 0
    assert [f.read_text() for f in files] == [p.read_text() for p in crdgen.CRD_FILES_IN_REPO]


def test_rendering_changes_only_the_v1beta1_schema() -> None:
    text = crdgen.CRD_FILES[0].read_text()
    schema = copy.deepcopy(api.crd_schema())
    schema["properties"]["spec"]["properties"]["model"]["maxLength"] = 7
    new = yaml.safe_load(crdgen.render(text, schema))
    old = yaml.safe_load(text)
    beta = new["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert beta["properties"]["spec"]["properties"]["model"]["maxLength"] == 7
    new["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = old["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    assert new == old  # header, conversion, printer columns, v1alpha1: untouched
    assert crdgen.render(crdgen.render(text, schema), api.crd_schema()) == text


# ---- a drift is detected: perturb the models (in memory) or the file ---------------------------


def _file_schema() -> dict[str, Any]:
    return crdgen.file_schema(crdgen.CRD_FILES[0].read_text())


def _with_spec(spec_model: type[spec_models.DGDRSpec]) -> dict[str, Any]:
    """The DGDR schema as it would be generated with another spec model."""
    root = copy.deepcopy(api.crd_schema())
    root["properties"]["spec"] = {
        **model_schema(spec_model),
        "description": root["properties"]["spec"]["description"],
    }
    return root


def _perturbed(**fields: Any) -> type[spec_models.DGDRSpec]:
    model: type[spec_models.DGDRSpec] = create_model(  # type: ignore[call-overload]
        "DGDRSpec", __base__=spec_models.DGDRSpec, **fields
    )
    return model


def test_unperturbed_spec_model_agrees() -> None:
    assert _drift(_with_spec(spec_models.DGDRSpec), _file_schema()) == []


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        # a bound
        (
            {"image": (str | None, Field(default=None, max_length=2048, description="x"))},
            "/properties/spec/properties/image/maxLength",
        ),
        # an enum value
        (
            {"backend": (Literal["auto", "vllm"], Field(default="auto", description="x"))},
            "/properties/spec/properties/backend/enum",
        ),
        # a type
        (
            {"image": (int | None, Field(default=None, description="x"))},
            "/properties/spec/properties/image/type",
        ),
        # a default
        (
            {"autoApply": (bool, Field(default=False, alias="autoApply", description="x"))},
            "/properties/spec/properties/autoApply/default",
        ),
        # a new field
        (
            {"priority": (int | None, Field(default=None, description="x"))},
            "/properties/spec/properties/priority",
        ),
        # required
        (
            {"image": (str, Field(max_length=1024, description="x"))},
            "/properties/spec/required",
        ),
    ],
    ids=["bound", "enum", "type", "default", "new-field", "required"],
)
def test_a_changed_model_is_drift(fields: dict[str, Any], where: str) -> None:
    drift = _drift(_with_spec(_perturbed(**fields)), _file_schema())
    assert any(d.startswith(where) for d in drift), drift


def test_a_changed_rule_is_drift() -> None:
    schema = copy.deepcopy(api.crd_schema())
    rules = schema["properties"]["spec"]["properties"]["sla"]["x-kubernetes-validations"]
    rules[0]["message"] = "something else"
    drift = _drift(schema, _file_schema())
    assert len(drift) == 1
    assert drift[0].startswith(
        "/properties/spec/properties/sla/x-kubernetes-validations[0]/message: models "
        "'something else' != CRD 'spec.sla.e2eLatency cannot be combined"
    )


def test_a_hand_edit_of_the_file_is_drift() -> None:
    edited = _file_schema()
    edited["properties"]["spec"]["properties"]["workload"]["properties"]["isl"]["maximum"] = 10
    drift = _drift(api.crd_schema(), edited)
    assert drift == [
        "/properties/spec/properties/workload/properties/isl/maximum: models 2147483647 != CRD 10"
    ]
    text = crdgen.CRD_FILES[0].read_text()
    hand_edited = text.replace("maximum: 2147483647", "maximum: 10", 1)
    assert hand_edited != text
    assert crdgen.render(hand_edited, api.crd_schema()) == text  # the command puts it back
