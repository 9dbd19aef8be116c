"""Profiler errors cross process boundaries (the profiling pool) intact."""

from __future__ import annotations

import pickle

from profiler.errors import FieldError, SpecError


def test_spec_error_pickles_with_its_field_errors() -> None:
    err = SpecError([FieldError("spec.sla.ttft", "must be > 0"), FieldError("spec.model", "empty")])
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, SpecError)
    assert back.errors == err.errors
    assert str(back) == "spec.sla.ttft: must be > 0; spec.model: empty"
