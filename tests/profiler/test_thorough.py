"""Thorough profiling's pure part (profiler/thorough.py): which candidates are measured, the pick
from measurements under each picking mode, and the planner profile data built from them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from profiler.errors import SpecError
from profiler.plan import plan
from profiler.request import PlanRequest
from profiler.thorough import (
    BenchPoint,
    Measurement,
    Outcome,
    SweepFailedError,
    candidate_deployment,
    candidate_from_json,
    comparison,
    concurrency_levels,
    finish,
    measured_candidate,
    measured_profile_data,
    pick,
    sweep_candidates,
    sweep_isls,
    unit_of,
    units_in,
)

BASE: dict[str, Any] = {
    "model": "Qwen/Qwen3-0.6B",
    "backend": "vllm",
    "searchStrategy": "thorough",
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 4, "vramMb": 81559},
    "sla": {"ttft": 2000, "itl": 50},
    "workload": {"isl": 1000, "osl": 100},
}


def request(**changes: Any) -> PlanRequest:
    spec = json.loads(json.dumps(BASE))
    spec.update(changes)
    return PlanRequest.from_spec(spec, dgdr_name="t", namespace="ns")


def point(c: int, ttft: float, itl: float, tok_s: float, isl: int = 1000) -> BenchPoint:
    return BenchPoint(c, isl, 100, ttft, itl, tok_s, tok_s / 100)


def measurement(*decode: BenchPoint, prefill_ttft: float = 50.0) -> Measurement:
    return Measurement((point(1, prefill_ttft, 5.0, 100.0),), tuple(decode), 100_000.0)


def test_candidates_are_distinct_layouts_within_budget_best_of_each_mode_included() -> None:
    req = request()
    cands = sweep_candidates(req, 3)
    assert len(cands) == 3
    assert len({c.label for c in cands}) == 3
    assert {c.mode for c in cands} == {"agg", "disagg"}
    assert all(unit_of(c).gpus <= req.total_gpus for c in cands)
    # the first is rapid's own pick
    assert cands[0].label == plan(request(searchStrategy="rapid")).chosen.label
    assert len(sweep_candidates(req, 1)) == 1


def test_mocker_or_planner_sweeps_disaggregated_candidates_only() -> None:
    cands = sweep_candidates(request(features={"mocker": {"enabled": True}}), 3)
    assert cands and all(c.mode == "disagg" for c in cands)


def test_no_candidate_fits_fails_naming_why() -> None:
    """A model that fits no layout of the budget, or a planner's pair that does not, is refused
    before anything is deployed, saying what it needs (the DGDR goes Failed with it)."""
    spec_hw = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 1, "vramMb": 81559}
    with pytest.raises(SpecError, match="needs at least"):
        request(model="meta-llama/Llama-3.1-70B-Instruct", hardware=spec_hw)
    with pytest.raises(SpecError, match="needs at least 2 GPUs"):
        request(hardware=spec_hw, features={"planner": {}})
    with pytest.raises(ValueError, match="budget"):
        sweep_candidates(request(), 0)


def test_unit_divides_worker_counts_by_their_gcd() -> None:
    c = candidate_from_json(
        {
            "mode": "disagg",
            "backend": "vllm",
            "workers": [
                {"role": "prefill", "tp": 1, "pp": 1, "ep": 1, "dp": 1, "batch": 1, "replicas": 2},
                {"role": "decode", "tp": 1, "pp": 1, "ep": 1, "dp": 1, "batch": 8, "replicas": 4},
            ],
            "gpus": 6,
            "ttft_ms": 10.0,
            "itl_ms": 5.0,
            "tokens_s": 600.0,
            "requests_s": 6.0,
            "meets_sla": True,
        }
    )
    assert units_in(c) == 2
    u = unit_of(c)
    assert [w.replicas for w in u.workers] == [1, 2] and u.gpus == 3 and u.tokens_s == 300.0


def test_candidate_round_trips_through_json() -> None:
    for c in sweep_candidates(request(), 3):
        back = candidate_from_json(json.loads(json.dumps(c.to_json())))
        assert back.label == c.label and back.gpus == c.gpus and back.mode == c.mode


def test_concurrency_levels_run_from_one_to_the_kv_capacity_capped() -> None:
    req = request()
    unit = unit_of(sweep_candidates(req, 1)[0])
    levels = concurrency_levels(req, unit, 3, 64)
    assert levels[0] == 1 and levels[-1] == 64 and levels == sorted(set(levels))
    assert concurrency_levels(req, unit, 1, 64) == [64]
    assert concurrency_levels(req, unit, 4, 1) == [1]


def test_measured_figures_come_from_the_operating_point_meeting_the_sla() -> None:
    req = request()
    c = sweep_candidates(req, 1)[0]
    m = measurement(point(1, 60, 10, 100), point(8, 80, 30, 700), point(64, 900, 80, 3000))
    got = measured_candidate(req, c, m)
    # concurrency 64 misses the ITL target (80 > 50): the best point within the SLA is 8
    assert got.itl_ms == 30 and got.ttft_ms == 80 and got.meets_sla
    assert got.tokens_s == pytest.approx(700 * units_in(c))
    # nothing meets it: the closest miss, said so
    worse = measured_candidate(req, c, measurement(point(1, 60, 70, 100), point(8, 90, 90, 500)))
    assert not worse.meets_sla and worse.itl_ms == 70


def _measured(req: PlanRequest, n: int = 3) -> list[Outcome]:
    cands = sweep_candidates(req, n)
    figures = [(40.0, 20.0, 900.0), (60.0, 25.0, 1500.0), (30.0, 10.0, 400.0)]
    return [
        Outcome(c, measurement(point(4, t, i, tok)))
        for c, (t, i, tok) in zip(cands, figures, strict=False)
    ]


def test_pick_ranks_measurements_by_the_picking_mode() -> None:
    req = request()
    outcomes = _measured(req)
    measured = [
        measured_candidate(req, o.predicted, o.measurement) for o in outcomes if o.measurement
    ]
    by_label = {c.label: c for c in measured}
    best_tok = max(measured, key=lambda c: c.tokens_s)
    assert pick(req, measured).label == best_tok.label
    # optimizationType latency: least end-to-end latency
    lat = request(sla={"ttft": 2000, "itl": 50, "optimizationType": "latency"})
    fastest = min(measured, key=lambda c: c.ttft_ms + 100 * c.itl_ms)
    assert pick(lat, measured).label == fastest.label
    # an SLA only one meets: that one, however slow
    tight = request(sla={"ttft": 2000, "itl": 12})
    assert pick(tight, measured).itl_ms == 10.0
    assert by_label


def test_load_match_sizes_units_from_the_measured_capacity() -> None:
    req = request(workload={"isl": 1000, "osl": 100, "concurrency": 8})
    c = sweep_candidates(req, 1)[0]
    got = measured_candidate(req, c, measurement(point(4, 40, 20, 400)))
    unit = unit_of(c)
    assert got.gpus_needed == 2 * unit.gpus  # 8 concurrent / 4 per unit
    assert got.gpus == min(2, req.total_gpus // unit.gpus) * unit.gpus


def test_finish_generates_the_dgd_with_measured_curves_in_the_profile_data() -> None:
    req = request(features={"planner": {"enable_throughput_scaling": True}})
    outcomes = _measured(req, 2)
    phases: list[str] = []
    result = finish(req, outcomes, lambda p, _m: phases.append(p))
    assert phases == ["SelectingConfig", "BuildingCurves", "GeneratingDGD", "Done"]
    assert result.chosen.mode == "disagg"
    data = next(cm for cm in result.configmaps if "profile-data" in cm["metadata"]["name"])
    prefill = json.loads(data["data"]["prefill_raw_data.json"])
    decode = json.loads(data["data"]["decode_raw_data.json"])
    chosen = next(
        o
        for o in outcomes
        if measured_candidate(req, o.predicted, o.measurement).label  # type: ignore[arg-type]
        == result.chosen.label
    )
    assert chosen.measurement is not None
    assert prefill["prefill_ttft"] == [p.ttft_ms for p in chosen.measurement.prefill]
    assert decode["z_itl"] == [p.itl_ms for p in chosen.measurement.decode]
    assert set(decode) == {
        "max_kv_tokens",
        "x_kv_usage",
        "y_context_length",
        "z_itl",
        "z_thpt_per_gpu",
    }
    doc = result.to_json()
    assert doc["chosen"]["ttft_ms"] == pytest.approx(result.chosen.ttft_ms, abs=1e-3)
    assert doc["sla"]["met"] is True


def test_skipped_candidates_are_warned_and_all_skipped_fails_naming_each() -> None:
    req = request()
    outcomes = _measured(req, 2)
    skipped = Outcome(sweep_candidates(req, 3)[2], skipped="did not serve within 5 s")
    result = finish(req, [*outcomes, skipped])
    assert any("did not serve within 5 s" in w for w in result.warnings)
    with pytest.raises(SweepFailedError, match="did not serve within 5 s"):
        finish(req, [skipped])
    rows = comparison(req, [*outcomes, skipped])
    assert rows[-1]["skipped"] == "did not serve within 5 s" and "measured" in rows[0]


def test_measured_profile_data_places_points_by_kv_usage() -> None:
    req = request(features={"mocker": {"enabled": True}})
    unit = unit_of(sweep_candidates(req, 1)[0])
    m = Measurement(
        (point(1, 50, 5, 10, isl=500), point(1, 90, 5, 10)),
        (point(1, 60, 10, 100), point(8, 80, 12, 700)),
        10_000.0,
    )
    data = measured_profile_data(req, unit, m)
    assert data["prefill_raw_data.json"]["prefill_isl"] == [500, 1000]
    decode = data["decode_raw_data.json"]
    decoders = next(w for w in unit.workers if w.role == "decode").replicas
    assert decode["x_kv_usage"][1] == pytest.approx(1050 * 8 / decoders / 10_000)
    assert decode["y_context_length"] == [1050, 1050]


def test_candidate_deployment_is_built_like_the_final_dgd_without_a_planner() -> None:
    tol = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    req = request(
        image="registry.example/dynamo-planner:9.9",
        features={"mocker": {"enabled": True}, "planner": {}},
        overrides={"profilingJob": {"template": {"spec": {"tolerations": tol}}}},
    )
    unit = unit_of(sweep_candidates(req, 1)[0])
    dgd, cms = candidate_deployment(req, unit, "t-abc-0")
    assert dgd["metadata"]["name"] == "t-abc-0"
    services = dgd["spec"]["services"]
    assert "Planner" not in services
    for svc in services.values():
        assert svc["extraPodSpec"]["tolerations"] == tol
    assert services["decode"]["extraPodSpec"]["mainContainer"]["image"].startswith(
        "registry.example/"
    )
    assert [cm["metadata"]["name"] for cm in cms] == ["t-abc-0-profile"]


def test_input_lengths_end_at_the_target_isl() -> None:
    req = request()
    assert sweep_isls(req, 1) == [1000]
    assert sweep_isls(req, 3) == [250, 500, 1000]
    assert sweep_isls(req, 2) == [250, 1000]


def test_the_pick_reads_the_target_isl_and_the_curves_every_context() -> None:
    req = request(features={"mocker": {"enabled": True}})
    c = sweep_candidates(req, 1)[0]
    short = [point(1, 20, 2, 90, isl=250), point(8, 25, 3, 800, isl=250)]
    m = Measurement(
        (point(1, 30, 5, 10, isl=250), point(1, 90, 5, 10)),
        (*short, point(1, 60, 10, 100), point(8, 80, 12, 700)),
        10_000.0,
    )
    # the faster short-context points are not the deployment's figures
    got = measured_candidate(req, c, m)
    assert (got.ttft_ms, got.itl_ms) == (80, 12)
    decode = measured_profile_data(req, unit_of(c), m)["decode_raw_data.json"]
    assert sorted(set(decode["y_context_length"])) == [300, 1050]
    assert decode["z_itl"] == [2, 3, 10, 12]
