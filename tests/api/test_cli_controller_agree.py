"""The command line and the controller accept and refuse the same specs.

``python -m profiler plan`` (its ``main``, in-process) and the controller's ``validate_dgdr`` see
the same manifests: generated specs, half plausible and half wrong in every field (the property
tests' generators), with the hardware the controller would discover filled in where the spec
leaves it out (the only input the two take differently, by design), as the API server stores
them (nulls of fields that are not nullable dropped). A spec the controller refuses must make
the command refuse it (exit 2, invalid, or 3, infeasible), and one it accepts must not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from controller.dgdr import api
from controller.dgdr.validation import validate_dgdr
from profiler import cli
from tests.api.dgdr_cases import DISCOVERED_HARDWARE
from tests.api.test_api_properties import spec_fields, unknown_keys

# Catalog models, and names that are wrong without asking the Hub (no network in this test).
models = st.sampled_from(
    ["Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-30B-A3B", "", " "]
)
specs = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({"model": models}, optional=spec_fields),
    unknown_keys,
)


def _finite(value: Any) -> bool:
    """JSON (what the API server and the command read) has no NaN or infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _admitted(value: Any, path: str = "spec") -> Any:
    """What the API server stores: a null in a field that is not nullable is dropped before
    defaulting (only ``spec.sla.ttft`` and ``spec.sla.itl`` are nullable)."""
    if isinstance(value, dict):
        return {
            k: _admitted(v, f"{path}.{k}")
            for k, v in value.items()
            if v is not None or f"{path}.{k}" in ("spec.sla.ttft", "spec.sla.itl")
        }
    if isinstance(value, list):
        return [_admitted(v, path) for v in value]
    return value


def _discovered(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    hw = out.get("hardware")
    if hw is None:
        out["hardware"] = dict(DISCOVERED_HARDWARE)
    elif isinstance(hw, dict):
        out["hardware"] = {**DISCOVERED_HARDWARE, **hw}
    return out


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=specs)
def test_plan_command_and_controller_agree(
    spec: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assume(_finite(spec))
    manifest = {
        "apiVersion": api.DGDR_API_VERSION,
        "kind": api.DGDR_KIND,
        "metadata": {"name": "agree"},
        "spec": _discovered(_admitted(spec)),
    }
    _, errors = validate_dgdr(manifest)
    path = tmp_path / "dgdr.json"
    path.write_text(json.dumps(manifest))
    code = cli.main(["plan", str(path), "--json"])
    out = capsys.readouterr()
    event("both refuse" if errors else "both accept")  # --hypothesis-show-statistics
    refused = (cli.EXIT_INVALID, cli.EXIT_INFEASIBLE)  # infeasible is a verdict on the spec too
    if errors:
        assert code in refused, (errors, code, out.err[-2000:])
    else:
        assert code not in refused, (code, out.err[-2000:])
