"""Plan a Dynamo deployment from a DGDR spec: search, pick and generate, with no cluster needed."""

from profiler.plan import PlanResult, plan
from profiler.request import PlanRequest, validate_spec

__all__ = ["PlanRequest", "PlanResult", "plan", "validate_spec"]
