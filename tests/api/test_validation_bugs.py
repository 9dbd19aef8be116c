"""A bug in validation is not bad input: it propagates (the worker logs, counts and retries it)
instead of turning into a permanent Failed that blames the user's spec."""

from __future__ import annotations

from typing import Any

import pytest

import profiler.request
from controller.dgdr.validation import validate_dgdr
from tests.api.dgdr_cases import with_sla


def test_an_exception_in_a_semantic_check_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(profiler.request, "_parse", broken)
    with pytest.raises(KeyError):
        validate_dgdr(with_sla({"ttft": 500, "itl": 30}))


def test_bad_input_is_still_an_error_naming_the_field() -> None:
    obj = with_sla({"ttft": 500, "itl": 30})
    obj["spec"]["hardware"] = {"gpuSku": "not-a-gpu", "totalGpus": 8}
    _, errors = validate_dgdr(obj)
    assert any(e.path == "spec.hardware.gpuSku" for e in errors), errors
