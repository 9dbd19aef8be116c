"""The SLA verdict on a plan: met or not, and for each missed target by how much."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import pytest

from profiler import PlanRequest, plan
from profiler.plan import MAX_MISS_PERCENT, SlaMiss, SlaVerdict, miss_text, sla_verdict

IMAGE = "registry.example/ai-dynamo/dynamo-frontend:1.1.1"


def request(**kw: Any) -> PlanRequest:
    s: dict[str, Any] = {"model": "Qwen/Qwen3-0.6B", "backend": "vllm", "image": IMAGE}
    s.update(kw)
    s.setdefault("hardware", {"gpuSku": "h100_sxm", "totalGpus": 8})
    return PlanRequest.from_spec(s, dgdr_name="t")


def test_an_unmeetable_sla_is_planned_with_a_verdict_naming_each_miss() -> None:
    r = plan(request(sla={"ttft": 1, "itl": 1}))
    assert not r.sla.met and not r.chosen.meets_sla
    by_target = {m.target: m for m in r.sla.misses}
    assert "ttft" in by_target  # no configuration prefills in 1 ms
    for m in r.sla.misses:
        assert m.target_ms == 1
        predicted = r.chosen.ttft_ms if m.target == "ttft" else r.chosen.itl_ms
        assert m.predicted_ms == predicted > 1
        assert m.percent == round((predicted - 1) * 100)
    text = r.sla.describe()
    assert text.startswith("SLA not met: TTFT ")
    assert f"misses the 1 ms target by {by_target['ttft'].percent} %" in text
    # the warning the search wrote says the same miss
    assert any(f"by {by_target['ttft'].percent} %" in w for w in r.warnings)
    # a manifest is still generated: the closest configuration, as upstream relaxes the SLA
    assert r.dgd["kind"] == "DynamoGraphDeployment"
    doc = r.to_json()["sla"]
    assert doc["met"] is False and doc["misses"][0]["target"] == "ttft"
    assert SlaVerdict.from_json(doc) == r.sla


def test_a_met_sla_has_no_misses() -> None:
    r = plan(request(sla={"ttft": 2000, "itl": 50}))
    assert r.sla == SlaVerdict(met=True) and r.chosen.meets_sla
    assert r.to_json()["sla"] == {"met": True, "misses": []}
    assert r.sla.describe() == "SLA met"


def test_e2e_latency_is_judged_as_ttft_plus_osl_itl() -> None:
    req = request(sla={"e2eLatency": 5}, workload={"isl": 1000, "osl": 200})
    r = plan(req)
    (miss,) = r.sla.misses
    assert miss.target == "e2eLatency" and miss.target_ms == 5
    assert miss.predicted_ms == pytest.approx(r.chosen.ttft_ms + 200 * r.chosen.itl_ms)
    assert "end-to-end latency" in r.sla.describe()


def test_verdict_agrees_with_the_search_flag_and_judges_each_target() -> None:
    req = request(sla={"ttft": 2000, "itl": 50})
    chosen = plan(req).chosen
    only_itl = replace(req, ttft_ms=chosen.ttft_ms * 10, itl_ms=chosen.itl_ms / 2)
    v = sla_verdict(only_itl, chosen)
    assert not v.met and [m.target for m in v.misses] == ["itl"]
    assert v.misses[0].percent == 100
    on_the_line = replace(req, ttft_ms=chosen.ttft_ms, itl_ms=chosen.itl_ms)
    assert sla_verdict(on_the_line, chosen).met  # exactly on a target meets it
    nan = replace(chosen, ttft_ms=float("nan"))
    (nan_miss,) = sla_verdict(req, nan).misses
    assert nan_miss.target == "ttft" and nan_miss.percent == MAX_MISS_PERCENT


def test_percent_is_whole_at_least_one_and_bounded() -> None:
    assert SlaMiss("itl", 10.0, 10.001).percent == 1  # a miss is never "0 %"
    assert SlaMiss("ttft", 100.0, 250.0).percent == 150
    assert SlaMiss("ttft", 1e-300, 5.0).percent == MAX_MISS_PERCENT
    assert miss_text("itl", 0.5, 12.345, 2369) == "ITL 12.3 ms misses the 0.5 ms target by 2369 %"


def test_result_with_its_verdict_survives_pickling() -> None:
    """The process pool pickles results: the verdict must be plain data."""
    r = plan(request(sla={"ttft": 1, "itl": 1}))
    back = pickle.loads(pickle.dumps(r))
    assert back.sla == r.sla and back.to_json()["sla"] == r.to_json()["sla"]
