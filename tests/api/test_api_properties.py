"""Property tests: whatever a user (or an old CRD) hands over, validation answers and never raises.

Specs are generated half plausible, half garbage (wrong types, negative numbers, NaN, None,
unknown keys), so the rules and the profiler's checks meet every shape of input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.dgdr import api
from controller.dgdr.validation import validate_dgdr
from profiler.errors import FieldError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
garbage = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, one time in eight garbage (so some objects come out valid)."""
    return st.integers(0, 7).flatmap(lambda i: garbage if i == 0 else good)


positive = st.one_of(st.integers(1, 100_000), st.floats(0.001, 1e6))
number = st.integers(0, 3).flatmap(
    lambda i: (
        st.one_of(st.integers(-10, 0), st.floats(allow_nan=True, allow_infinity=True))
        if i == 0
        else positive
    )
)


def obj(props: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=props)


model_names = maybe(st.sampled_from(["Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct", " "]))
sla_shapes = st.one_of(
    obj({"ttft": maybe(number), "itl": maybe(number)}),  # anything goes, incl. one of the two
    st.fixed_dictionaries({"ttft": maybe(number), "itl": maybe(number)}),
    st.fixed_dictionaries({"e2eLatency": maybe(number)}),
)
spec_fields: dict[str, st.SearchStrategy[Any]] = {
    "backend": maybe(st.sampled_from([*api.BACKENDS, "tensorrt"])),
    "image": maybe(st.sampled_from(["dynamo-planner:1.1.0", "", "img"])),
    "runtimeVersionOverride": maybe(st.sampled_from(["1.1.0", "0.9.12", "01.0.0", "1.2", ""])),
    "searchStrategy": maybe(st.sampled_from(["rapid", "thorough", "fast"])),
    "autoApply": maybe(st.booleans()),
    "hardware": maybe(
        obj(
            {
                "gpuSku": maybe(st.sampled_from([*api.GPU_SKUS, "H100-SXM5-80GB"])),
                "totalGpus": maybe(st.integers(-2, 64)),
                "numGpusPerNode": maybe(st.integers(-2, 16)),
                "vramMb": maybe(number),
                "interconnect": maybe(st.sampled_from(["nvlink", "pcie"])),
                "rdma": maybe(st.booleans()),
            }
        )
    ),
    "workload": maybe(
        obj(
            {
                "isl": maybe(st.integers(-5, 200_000)),
                "osl": maybe(st.integers(-5, 50_000)),
                "concurrency": maybe(number),
                "requestRate": maybe(number),
            }
        )
    ),
    "sla": maybe(
        st.builds(
            lambda shape, extra: {**shape, **extra},
            sla_shapes,
            obj(
                {
                    "e2eLatency": maybe(number),
                    "optimizationType": maybe(st.sampled_from(["latency", "throughput", "x"])),
                }
            ),
        )
    ),
    "modelCache": maybe(
        obj(
            {
                "pvcName": maybe(st.text(max_size=10)),
                "pvcModelPath": maybe(st.text(max_size=10)),
                "pvcMountPath": maybe(st.sampled_from(["/opt/model-cache", "rel", ""])),
            }
        )
    ),
    "overrides": maybe(
        obj(
            {
                "dgd": maybe(
                    obj(
                        {
                            "apiVersion": garbage,
                            "kind": garbage,
                            "metadata": garbage,
                            "spec": garbage,
                        }
                    )
                ),
                "profilingJob": garbage,
                "trustRemoteCode": maybe(st.booleans()),
            }
        )
    ),
    "features": maybe(
        obj(
            {
                "planner": maybe(st.dictionaries(st.text(max_size=8), garbage, max_size=3)),
                "mocker": maybe(obj({"enabled": maybe(st.booleans())})),
                "kvRouter": maybe(obj({"enabled": maybe(st.booleans())})),
            }
        )
    ),
}

unknown_keys = st.integers(0, 7).flatmap(
    lambda i: (
        st.dictionaries(st.text(max_size=6), garbage, min_size=1, max_size=2)
        if i == 0
        else st.just({})
    )
)
specs = maybe(
    st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries({"model": model_names}, optional=spec_fields),
        unknown_keys,
    )
)
metadata = st.one_of(
    obj(
        {"name": maybe(st.text(min_size=1, max_size=80)), "labels": garbage, "generation": garbage}
    ),
    garbage,
)
dgdrs = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.just(api.DGDR_API_VERSION),
        "kind": st.just(api.DGDR_KIND),
        "metadata": metadata,
        "spec": specs,
    },
)


def _names_spec_or_metadata(path: str) -> bool:
    return any(
        path == root or path.startswith((root + ".", root + "[")) for root in ("spec", "metadata")
    )


@SETTINGS
@given(dgdrs)
def test_validate_never_raises_and_every_error_names_a_field(obj: dict[str, Any]) -> None:
    model, errors = validate_dgdr(obj)
    assert isinstance(errors, list)
    for e in errors:
        assert isinstance(e, FieldError)
        assert _names_spec_or_metadata(e.path), e
        assert e.message.strip(), e
    if model is None:
        assert errors, "no model means the structure was wrong, which is an error"


@SETTINGS
@given(dgdrs)
def test_structural_and_rule_layer_alone(obj: dict[str, Any]) -> None:
    model, errors = validate_dgdr(obj, semantic=False)
    assert all(_names_spec_or_metadata(e.path) for e in errors)
    if not errors:
        # what passed re-serialises to what came in, and parses again to the same model
        assert model is not None
        assert model.to_dict() == obj
        assert api.DynamoGraphDeploymentRequest.model_validate(model.to_dict()) == model


@SETTINGS
@given(
    st.one_of(
        garbage, st.dictionaries(st.sampled_from(["spec", "metadata", "status", "x"]), garbage)
    )
)
def test_any_json_at_all(obj: Any) -> None:
    model, errors = validate_dgdr(obj)
    assert model is None or isinstance(model, api.DynamoGraphDeploymentRequest)
    assert all(isinstance(e, FieldError) and e.path for e in errors)


valid_specs = st.fixed_dictionaries(
    {"model": st.sampled_from(["Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct"])},
    optional={
        "backend": st.sampled_from(api.CONCRETE_BACKENDS),
        "searchStrategy": st.just("rapid"),
        "autoApply": st.booleans(),
        "runtimeVersionOverride": st.from_regex(api.RUNTIME_VERSION_PATTERN, fullmatch=True),
        "workload": st.one_of(
            obj(
                {
                    "isl": st.integers(1, 100_000),
                    "osl": st.integers(1, 10_000),
                    "concurrency": positive,
                }
            ),
            obj({"isl": st.integers(1, 100_000), "requestRate": positive}),
        ),
        "sla": st.one_of(
            st.fixed_dictionaries({"ttft": positive, "itl": positive}),
            obj({"ttft": positive, "itl": positive}),  # one left out takes its default
            st.fixed_dictionaries({"e2eLatency": positive}),
            st.fixed_dictionaries(
                {"e2eLatency": positive}, optional={"ttft": st.none(), "itl": st.none()}
            ),
        ),
        "features": obj(
            {
                "planner": st.dictionaries(st.text(max_size=8), garbage, max_size=3),
                "kvRouter": obj({"enabled": st.booleans()}),
            }
        ),
    },
)


@SETTINGS
@given(valid_specs)
def test_valid_specs_pass_structure_and_rules(spec: dict[str, Any]) -> None:
    model, errors = validate_dgdr({"metadata": {"name": "ok"}, "spec": spec}, semantic=False)
    assert errors == []
    assert model is not None and model.spec.model == spec["model"]
    assert model.to_dict()["spec"] == spec
