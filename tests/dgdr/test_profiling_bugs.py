"""Which profiling failures are the user's (a terminal Failed) and which are bugs (retried)."""

from __future__ import annotations

from controller.dgdr.reconciler import is_verdict
from controller.machinery.worker_pool import (
    PoolClosedError,
    RemoteError,
    TaskTimeoutError,
    WorkerCrashedError,
)
from profiler.errors import FieldError, InfeasibleError, NotAvailableError, SpecError


def test_verdicts_on_the_spec_fail_the_dgdr() -> None:
    assert is_verdict(SpecError([FieldError("spec.model", "unknown")]))
    assert is_verdict(InfeasibleError("does not fit"))
    assert is_verdict(NotAvailableError("thorough is not available"))
    assert is_verdict(TaskTimeoutError("t", 60.0))
    assert is_verdict(WorkerCrashedError("t", 3, -9))


def test_bugs_and_a_closing_pool_are_retried() -> None:
    assert not is_verdict(KeyError("num_experts"))
    assert not is_verdict(RemoteError("ZeroDivisionError", "division by zero"))
    assert not is_verdict(PoolClosedError("closed"))
