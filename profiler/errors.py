"""Errors the profiler raises, shared with the controller.

Every user-facing error carries the path of the spec field it is about (``spec.sla.ttft``), so the
controller can put it in a ``Failed`` condition and the command line can print it, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of the request, e.g. ``spec.hardware.gpuSku: unknown SKU``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ProfilerError(Exception):
    """Base class: anything the profiler refuses or cannot do, said in words a user can act on."""

    reason = "ProfilingFailed"


class SpecError(ProfilerError):
    """The request is invalid; holds every problem found, not only the first."""

    reason = "ValidationFailed"

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("SpecError needs at least one FieldError")
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[FieldError]]]:
        # Exception pickling replays ``args`` (the joined message) into __init__; replay the list.
        return (SpecError, (self.errors,))


class InfeasibleError(ProfilerError):
    """The request is valid but cannot be served: the model does not fit the GPU budget."""

    reason = "Infeasible"


class NotAvailableError(ProfilerError):
    """A feature the API names that this profiler lacks (``searchStrategy: thorough``)."""

    reason = "NotAvailable"
