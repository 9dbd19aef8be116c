"""The prediction a DGDR reports: status block, sentences, and the SLA miss in its conditions.

Pure: a real plan, no server. The cluster side is in test_lifecycle.py.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from controller.dgdr import api
from controller.dgdr.conditions import get_condition, set_condition, set_phase
from controller.dgdr.prediction import (
    describe_layout,
    describe_misses,
    describe_prediction,
    prediction_status,
)
from profiler import PlanRequest, plan
from tests.api.dgdr_cases import crd_schema

IMAGE = "registry.example/ai-dynamo/dynamo-frontend:1.1.1"
PREDICTION_SCHEMA = crd_schema()["properties"]["status"]["properties"]["profilingResults"][
    "properties"
]["prediction"]


def planned(sla: dict[str, Any], **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "model": "Qwen/Qwen3-0.6B",
        "backend": "vllm",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
        "sla": sla,
        **spec,
    }
    return plan(PlanRequest.from_spec(s, dgdr_name="p")).to_json()


@pytest.fixture(scope="module")
def missed() -> dict[str, Any]:
    return prediction_status(planned({"ttft": 1, "itl": 1}))


@pytest.fixture(scope="module")
def met() -> dict[str, Any]:
    return prediction_status(planned({"ttft": 2000, "itl": 50}))


def test_prediction_is_what_the_plan_chose_in_the_crd_shape(met: dict[str, Any]) -> None:
    result = planned({"ttft": 2000, "itl": 50})
    chosen = result["chosen"]
    jsonschema.validate(met, PREDICTION_SCHEMA)
    assert api.Prediction.model_validate(met).model_dump(by_alias=True, exclude_none=True) == met
    assert (met["mode"], met["backend"], met["totalGpus"]) == (
        chosen["mode"],
        chosen["backend"],
        chosen["gpus"],
    )
    assert met["ttftMs"] == pytest.approx(chosen["ttft_ms"], abs=0.01)
    assert met["itlMs"] == pytest.approx(chosen["itl_ms"], abs=0.01)
    assert met["e2eLatencyMs"] == pytest.approx(
        chosen["ttft_ms"] + result["request"]["workload"]["osl"] * chosen["itl_ms"], abs=0.01
    )
    assert met["tokensPerSecondPerGpu"] == pytest.approx(chosen["tokens_s_per_gpu"], abs=0.1)
    assert met["slaMet"] is True and met["slaMisses"] == []
    assert sum(w["replicas"] * w["gpus"] for w in met["workers"]) == met["totalGpus"]
    for w in met["workers"]:
        assert w["batch"] >= 1 and w["parallel"].startswith(("TP", "TEP", "DEP", "DP"))
    assert describe_misses(met) is None


def test_an_unmeetable_sla_names_each_miss(missed: dict[str, Any]) -> None:
    jsonschema.validate(missed, PREDICTION_SCHEMA)
    assert missed["slaMet"] is False
    targets = {m["target"]: m for m in missed["slaMisses"]}
    assert "ttft" in targets
    ttft = targets["ttft"]
    assert ttft["targetMs"] == 1 and ttft["predictedMs"] == missed["ttftMs"]
    assert ttft["missedByPercent"] == pytest.approx((ttft["predictedMs"] - 1) * 100, abs=1)
    text = describe_misses(missed)
    assert text is not None and text.startswith("SLA not met: TTFT ")
    assert f"misses the 1 ms target by {ttft['missedByPercent']} %" in text


def test_sentences() -> None:
    pred = {
        "mode": "disagg",
        "backend": "sglang",
        "workers": [
            {"role": "prefill", "parallel": "TP4", "replicas": 2, "batch": 2, "gpus": 4},
            {"role": "decode", "parallel": "TP8", "replicas": 1, "batch": 64, "gpus": 8},
        ],
        "totalGpus": 16,
        "ttftMs": 180.04,
        "itlMs": 12.5,
        "tokensPerSecondPerGpu": 1450.3,
        "tokensPerSecondPerUser": 80.0,
    }
    assert describe_layout(pred) == (
        "disagg sglang 2x prefill TP4 (batch 2) + 1x decode TP8 (batch 64) on 16 GPUs"
    )
    assert describe_prediction(pred).endswith(
        ": predicted TTFT 180 ms, ITL 12.5 ms, 1450 tok/s/GPU, 80.0 tok/s/user"
    )
    agg = {**pred, "mode": "agg", "workers": [{"role": "agg", "parallel": "TP2", "replicas": 4}]}
    agg["workers"][0]["batch"] = 32
    assert describe_layout(agg).startswith("agg sglang 4x TP2 (batch 32)")


def test_succeeded_carries_the_miss_after_generation(missed: dict[str, Any]) -> None:
    status: dict[str, Any] = {"profilingResults": {"prediction": missed}}
    set_condition(status, "SpecGenerated", "True", "SLANotMet", "closest", 1)
    text = describe_misses(missed)
    assert text is not None
    for phase, cond_status, reason, prefix in (
        ("Ready", "True", "SLANotMet", "Profiling complete, spec available; "),
        ("Deploying", "False", "Deploying", "Deployment is in progress; "),
        ("Deployed", "True", "SLANotMet", "Deployment is healthy; "),
    ):
        set_phase(status, phase, 1)
        succeeded = get_condition(status, "Succeeded")
        assert succeeded is not None
        assert (succeeded["status"], succeeded["reason"]) == (cond_status, reason), phase
        assert succeeded["message"] == prefix + text
    # a failure after generation is explained by the failing condition, not the SLA
    failed = copy.deepcopy(status)
    set_condition(failed, "DeploymentReady", "False", "DeploymentDeleted", "gone", 1)
    set_phase(failed, "Failed", 1)
    succeeded = get_condition(failed, "Succeeded")
    assert succeeded is not None and succeeded["reason"] == "DeploymentDeleted"
    assert "SLA" not in succeeded["message"]
    # re-profiling (e.g. a new runtimeVersionOverride) shows progress, not the old verdict
    set_phase(status, "Profiling", 1)
    succeeded = get_condition(status, "Succeeded")
    assert succeeded is not None and succeeded["message"] == "Profiling is in progress"


def test_a_met_sla_leaves_the_upstream_succeeded(met: dict[str, Any]) -> None:
    status: dict[str, Any] = {"profilingResults": {"prediction": met}}
    set_phase(status, "Ready", 1)
    succeeded = get_condition(status, "Succeeded")
    assert succeeded is not None
    assert (succeeded["reason"], succeeded["message"]) == (
        "SpecGenerated",
        "Profiling complete, spec available",
    )


def test_reasons_are_defined_once() -> None:
    assert api.Reason.SLA_NOT_MET == api.EventReason.SLA_NOT_MET == "SLANotMet"
    assert [r for r in api.Reason if r.value == "SLANotMet"] == [api.Reason.SLA_NOT_MET]
