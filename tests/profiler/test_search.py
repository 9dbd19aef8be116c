"""The search and the pick: SLA obeyed, picking modes, backends, layouts, closest miss."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from numpy.typing import ArrayLike, NDArray

import profiler.search as search_mod
from profiler import PlanRequest, PlanResult, plan
from profiler.disagg import PREFILL_DERATE, prefill_load
from profiler.estimator import (
    Engine,
    Layout,
    agg_serving,
    decode_tpot_ms,
    kv_capacity_tokens,
    load_calibration,
)
from profiler.generate import parallel_args
from profiler.hardware import SKUS, get_gpu
from profiler.models import resolve_model
from profiler.risk import RiskParams, expected_value, p_meets
from profiler.search import (
    AGG_BATCHES,
    DECODE_BATCHES,
    Candidate,
    SearchResult,
    Targets,
    Worker,
    min_gpus_to_fit,
    search,
    worker_layouts,
)

IMAGE = "registry.example/ai-dynamo/dynamo-frontend:1.1.1"


def run(**kw: Any) -> PlanResult:
    s: dict[str, Any] = {"model": "Qwen/Qwen3-8B", "image": IMAGE}
    s.update(kw)
    s.setdefault("hardware", {"gpuSku": "h100_sxm", "totalGpus": 8})
    return plan(PlanRequest.from_spec(s, dgdr_name="t"))


def meets(c: Candidate, ttft: float, itl: float) -> bool:
    return c.ttft_ms <= ttft and c.itl_ms <= itl


@pytest.mark.parametrize(("ttft", "itl"), [(2000, 30), (600, 15), (300, 8)])
def test_pick_obeys_the_sla(ttft: float, itl: float) -> None:
    r = run(sla={"ttft": ttft, "itl": itl})
    assert r.chosen.meets_sla, r.warnings
    assert meets(r.chosen, ttft, itl)
    assert r.chosen.gpus <= 8
    for c in r.candidates:  # the flag the table prints is the truth
        assert c.meets_sla == meets(c, ttft, itl)
    assert not any("misses" in w for w in r.warnings)


def test_a_looser_sla_never_yields_less_throughput() -> None:
    tight = run(sla={"ttft": 300, "itl": 8}).chosen
    loose = run(sla={"ttft": 2000, "itl": 40}).chosen
    assert loose.tokens_s >= tight.tokens_s
    assert loose.itl_ms > tight.itl_ms or loose.tokens_s == tight.tokens_s


def test_default_mode_fills_the_budget() -> None:
    r = run(hardware={"gpuSku": "h100_sxm", "totalGpus": 16}, sla={"ttft": 1000, "itl": 20})
    assert r.picking_mode == "default"
    assert 8 < r.chosen.gpus <= 16


def test_e2e_latency_is_ttft_plus_osl_itl() -> None:
    r = run(sla={"e2eLatency": 12000}, workload={"isl": 2000, "osl": 500})
    c = r.chosen
    assert c.meets_sla
    assert c.ttft_ms + 500 * c.itl_ms <= 12000


def test_unreachable_sla_picks_the_closest_and_says_by_how_much() -> None:
    r = run(sla={"ttft": 1, "itl": 0.01})
    assert not r.chosen.meets_sla
    text = " ".join(r.warnings)
    assert "misses the 1 ms target by" in text and "%" in text
    assert "ITL" in text and "closest" in text
    # the closest: no candidate has both a lower TTFT-miss and a lower ITL-miss ratio
    key = max(r.chosen.ttft_ms / 1, r.chosen.itl_ms / 0.01)
    assert all(max(c.ttft_ms / 1, c.itl_ms / 0.01) >= key - 1e-9 for c in r.candidates)


def test_load_match_picks_fewer_gpus_for_a_lower_rate() -> None:
    hw = {"gpuSku": "h100_sxm", "totalGpus": 64}
    low = run(hardware=hw, workload={"requestRate": 0.5})
    high = run(hardware=hw, workload={"requestRate": 40})
    assert low.picking_mode == high.picking_mode == "load_match"
    assert low.chosen.gpus < high.chosen.gpus
    assert low.chosen.requests_s >= 0.5 and high.chosen.requests_s >= 40
    assert low.chosen.meets_sla and high.chosen.meets_sla
    assert not low.warnings and not high.warnings


def test_load_match_by_concurrency() -> None:
    hw = {"gpuSku": "h100_sxm", "totalGpus": 64}
    few = run(hardware=hw, workload={"concurrency": 4}).chosen
    many = run(hardware=hw, workload={"concurrency": 400}).chosen
    assert few.gpus < many.gpus
    in_flight = sum(w.batch * w.replicas for w in many.workers if w.role in ("agg", "decode"))
    assert in_flight >= 400


def test_load_above_the_budget_warns_and_stays_within_it() -> None:
    r = run(hardware={"gpuSku": "h100_sxm", "totalGpus": 2}, workload={"requestRate": 500})
    assert r.chosen.gpus <= 2
    assert r.chosen.gpus_needed > 2
    assert any("more than the totalGpus budget of 2" in w for w in r.warnings)


def test_planner_picks_one_prefill_and_one_decode_worker() -> None:
    r = run(features={"planner": {}}, hardware={"gpuSku": "h100_sxm", "totalGpus": 16})
    assert r.picking_mode == "autoscale"
    assert r.chosen.mode == "disagg"
    assert [(w.role, w.replicas) for w in r.chosen.workers] == [("prefill", 1), ("decode", 1)]
    assert all(c.mode == "disagg" for c in r.candidates)
    assert [cm["metadata"]["name"].rsplit("-", 1)[0] for cm in r.configmaps] == [
        "planner-config",
        "planner-profile-data",
    ]


def test_mocker_forces_disagg() -> None:
    r = run(features={"mocker": {"enabled": True}})
    assert r.chosen.mode == "disagg"


def test_latency_optimisation_trades_throughput_for_latency() -> None:
    thr = run(sla={"ttft": 2000, "itl": 30, "optimizationType": "throughput"}).chosen
    lat = run(sla={"ttft": 2000, "itl": 30, "optimizationType": "latency"}).chosen
    assert lat.meets_sla and thr.meets_sla
    assert lat.ttft_ms + 1000 * lat.itl_ms <= thr.ttft_ms + 1000 * thr.itl_ms
    assert lat.tokens_s <= thr.tokens_s


def test_auto_evaluates_every_backend_and_a_concrete_backend_only_itself() -> None:
    auto = run()
    assert {c.backend for c in auto.candidates} == {"vllm", "sglang", "trtllm"}
    one = run(backend="sglang")
    assert {c.backend for c in one.candidates} == {"sglang"}
    assert auto.configs_evaluated > one.configs_evaluated
    assert auto.chosen.tokens_s >= one.chosen.tokens_s


def test_both_layouts_are_compared() -> None:
    r = run()
    assert {c.mode for c in r.candidates} == {"agg", "disagg"}


def test_search_space_is_no_smaller_than_aiconfigurators_default_run() -> None:
    # AIC's default agg sweep for a dense model on one 8-GPU node: TP {1,2,4,8} x its batch list
    # x chunk sizes 512..8192 (16); disagg adds prefill/decode sweeps and x:y rate matching.
    aic_agg = 4 * AGG_BATCHES.size * 16
    r = run()
    assert r.configs_evaluated >= aic_agg


def test_worker_layouts_follow_the_architecture() -> None:
    h100 = get_gpu("h100_sxm")
    dense = worker_layouts(resolve_model("Qwen/Qwen3-32B"), h100, 16)
    assert all(ep == 1 and dp == 1 for _, _, ep, dp in dense)
    assert {tp for tp, *_ in dense} == {1, 2, 4, 8}
    assert any(pp > 1 and tp == 8 for tp, pp, _, _ in dense)  # PP across nodes
    gqa = worker_layouts(resolve_model("Qwen/Qwen3-235B-A22B"), h100, 32)
    assert (8, 1, 1, 1) in gqa and (8, 1, 8, 1) in gqa and (1, 1, 16, 16) in gqa  # TP, TEP, DEP
    mla = worker_layouts(resolve_model("deepseek-ai/DeepSeek-R1"), h100, 32)
    assert (16, 1, 16, 1) in mla and (1, 1, 32, 32) in mla
    assert not any(tp > 1 and ep == 1 for tp, _, ep, _ in mla)  # no plain TP for MLA MoE


def test_moe_layouts_combine_attention_dp_with_moe_tp_and_ep_as_aiconfigurator() -> None:
    arch, h200 = resolve_model("Qwen/Qwen3-235B-A22B"), get_gpu("h200_sxm")
    every = worker_layouts(arch, h200, 32)
    # attention TP2 x DP4 on 8 GPUs, experts EP8, or EP4 x MoE-TP2, or MoE-TP8
    assert {(2, 1, 8, 4), (2, 1, 4, 4), (2, 1, 1, 4), (4, 1, 2, 2), (8, 1, 4, 1)} <= set(every)
    for tp, pp, ep, dp in every:
        assert pp == 1 and (tp * dp) % ep == 0 and arch.num_experts % ep == 0
        if tp * dp > 8:  # wider workers: AIC's wide-EP ladder, experts not tensor-split
            assert ep == tp * dp or (dp == 1 and ep == 1)
    per = {b: set(worker_layouts(arch, h200, 32, b)) for b in ("vllm", "sglang", "trtllm")}
    assert per["sglang"] == set(every)
    # TRT-LLM: attention tensor- or data-parallel, not both; vLLM: EP is 1 or TP x DP
    assert per["trtllm"] == {lay for lay in every if lay[0] == 1 or lay[3] == 1}
    assert per["vllm"] == {lay for lay in every if lay[2] in (1, lay[0] * lay[3])}
    assert (1, 1, 2, 8) in per["trtllm"] and (2, 1, 8, 4) in per["vllm"]
    # 470 GB of BF16 weights fit four 141 GB GPUs, whichever way they are split
    assert min_gpus_to_fit(arch, h200, "bf16", 4000, 1000, 32) == 4


@pytest.mark.parametrize(
    ("backend", "worker", "label", "expected"),
    [
        ("sglang", (2, 8, 4), "TP2DP4EP8", ["--tp", "8", "--dp", "4", "--enable-dp-attention"]),
        (
            "sglang",
            (2, 4, 4),
            "TP2DP4EP4",
            ["--tp", "8", "--dp", "4", "--enable-dp-attention", "--ep", "4"],
        ),
        ("sglang", (8, 4, 1), "TP8EP4", ["--tp", "8", "--ep", "4"]),
        ("sglang", (1, 8, 8), "DEP8", ["--tp", "8", "--dp", "8", "--enable-dp-attention"]),
        ("vllm", (2, 8, 4), "TP2DP4EP8", ["--tensor-parallel-size", "2", "--data-parallel-size"]),
        ("vllm", (2, 1, 4), "TP2DP4", ["--tensor-parallel-size", "2", "--data-parallel-size"]),
        ("trtllm", (1, 2, 8), "DP8EP2", []),
        ("trtllm", (8, 4, 1), "TP8EP4", []),
    ],
)
def test_mixed_moe_layouts_are_labelled_and_generated(
    backend: str, worker: tuple[int, int, int], label: str, expected: list[str]
) -> None:
    tp, ep, dp = worker
    w = Worker("decode", tp=tp, pp=1, ep=ep, dp=dp, batch=64 * dp, replicas=1)
    assert w.parallel == label and w.gpus == 8 and w.moe_tp == 8 // ep
    args = parallel_args(backend, w)
    text = " ".join(args)
    assert " ".join(expected) in text
    if backend == "vllm":
        assert ("--enable-expert-parallel" in args) == (ep > 1)
        assert args[args.index("--data-parallel-size") + 1] == str(dp)
    if backend == "sglang":
        assert ("--ep" in args) == (ep > 1)
    if backend == "trtllm":
        engine = json.loads(args[args.index("--override-engine-args") + 1])
        assert engine["tensor_parallel_size"] == 8
        assert engine["moe_expert_parallel_size"] == ep
        assert engine["enable_attention_dp"] == (dp > 1)


def test_moe_plans_use_expert_parallel_layouts() -> None:
    r = run(model="Qwen/Qwen3-235B-A22B", hardware={"gpuSku": "h200_sxm", "totalGpus": 16})
    assert r.chosen.gpus <= 16
    assert any(w.ep > 1 for c in r.candidates for w in c.workers)


@pytest.mark.parametrize("sku", SKUS)
def test_every_sku_yields_an_sla_aware_plan_for_a_small_dense_model(sku: str) -> None:
    r = plan(
        PlanRequest.from_spec(
            {
                "model": "Qwen/Qwen3-0.6B",
                "image": IMAGE,
                "hardware": {"gpuSku": sku},
                "sla": {"ttft": 1000, "itl": 25},
            },
            dgdr_name="small",
        )
    )
    c = r.chosen
    assert 0 < c.gpus <= get_gpu(sku).gpus_per_node
    assert len(r.dgd["spec"]["services"]) >= 2
    assert c.tokens_s > 0 and c.ttft_ms > 0 and c.itl_ms > 0
    if c.meets_sla:
        assert meets(c, 1000, 25)
    else:
        assert any("misses" in w for w in r.warnings)
    assert r.configs_evaluated > 100


def test_progress_reports_upstream_sub_phases_in_order_and_the_result_pickles() -> None:
    import pickle

    seen: list[str] = []
    req = PlanRequest.from_spec(
        {
            "model": "Qwen/Qwen3-8B",
            "image": IMAGE,
            "hardware": {"gpuSku": "h100_sxm"},
            "features": {"planner": {}},
        }
    )
    result = plan(req, progress=lambda phase, message: seen.append(phase))
    phases = list(dict.fromkeys(seen))
    assert phases == [
        "Initializing",
        "SweepingPrefill",
        "SelectingConfig",
        "BuildingCurves",
        "GeneratingDGD",
        "Done",
    ]
    back = pickle.loads(pickle.dumps(result))
    assert back.chosen == result.chosen and back.dgd == result.dgd
    assert back.to_json() == result.to_json()


def test_a_context_longer_than_the_model_supports_is_warned_about() -> None:
    r = run(model="Qwen/Qwen3-0.6B", workload={"isl": 60000, "osl": 1000})
    assert any("context length" in w for w in r.warnings)
    assert not any("context length" in w for w in run(model="Qwen/Qwen3-0.6B").warnings)


def test_pareto_curve_is_non_dominated() -> None:
    r = run()
    pts = [(c.tokens_s_per_user, c.tokens_s_per_gpu) for c in r.pareto]
    assert len(pts) >= 2
    assert [u for u, _ in pts] == sorted(u for u, _ in pts)
    for u, g in pts:
        assert not any(u2 >= u and g2 >= g and (u2, g2) != (u, g) for u2, g2 in pts)
    assert all(c.pareto for c in r.pareto)


def test_a_bigger_budget_never_serves_less() -> None:
    small = run(hardware={"gpuSku": "h100_sxm", "totalGpus": 8}).chosen
    big = run(hardware={"gpuSku": "h100_sxm", "totalGpus": 16}).chosen
    assert big.tokens_s >= small.tokens_s


# ------------------------------------------------------------------------------------------------
# The batch written into the DGD is the batch the pick was scored at


def dgd_cap(r: PlanResult, w: Worker) -> int:
    """The concurrency cap the generated DGD gives ``w``'s engine, across its DP ranks."""
    workers = [s for s in r.dgd["spec"]["services"].values() if s["componentType"] == "worker"]
    svc = next(s for s in workers if s.get("subComponentType", "agg") == w.role)
    args: list[str] = svc["extraPodSpec"]["mainContainer"]["args"]
    backend = r.chosen.backend
    if backend == "vllm":
        return int(args[args.index("--max-num-seqs") + 1]) * w.dp  # per DP rank
    if backend == "sglang":
        return int(args[args.index("--max-running-requests") + 1])  # shared by the ranks
    engine = json.loads(args[args.index("--override-engine-args") + 1])
    return int(engine["max_batch_size"]) * w.dp  # per attention-DP rank


@pytest.mark.parametrize(
    ("model", "backend", "extra"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "vllm", {}),
        (
            "meta-llama/Llama-3.1-8B-Instruct",
            "trtllm",
            {"sla": {"ttft": 600, "itl": 15}},
        ),
        ("Qwen/Qwen3-8B", "sglang", {"workload": {"isl": 8000, "osl": 500}}),
        ("openai/gpt-oss-120b", "trtllm", {}),
        ("Qwen/Qwen3-30B-A3B", "vllm", {"workload": {"isl": 8000, "osl": 200}}),
    ],
)
def test_dgd_batch_cap_is_the_batch_the_pick_was_scored_at(
    model: str, backend: str, extra: dict[str, Any]
) -> None:
    r = run(model=model, backend=backend, **extra)
    c = r.chosen
    for w in c.workers:
        assert dgd_cap(r, w) == w.batch
    w = c.workers[-1]
    lay = Layout.of(w.tp, w.pp, w.ep, w.dp)
    req = PlanRequest.from_spec(
        {"model": model, "backend": backend, "image": IMAGE, **extra}
        | {"hardware": {"gpuSku": "h100_sxm", "totalGpus": 8}},
        dgdr_name="t",
    )
    # the predicted ITL is the estimator's at exactly that batch
    if c.mode == "agg":
        ttft, tpot = agg_serving(
            Engine(req.arch, req.gpu, backend, req.quant, lay), req.isl, req.osl, w.batch
        )
        assert c.ttft_ms == pytest.approx(float(ttft[0])) and c.itl_ms == pytest.approx(
            float(tpot[0])
        )
    else:
        tpot = decode_tpot_ms(
            Engine(req.arch, req.gpu, backend, req.quant, lay), req.isl, req.osl, w.batch
        )
        assert c.itl_ms == pytest.approx(float(tpot[0]))


def test_the_chosen_aggregated_batch_is_the_best_that_meets_the_sla() -> None:
    """Among the batches of the chosen layout that meet the SLA, none serves more per GPU in
    expectation (predicted throughput x P(meets SLA)^aversion, profiler.risk)."""
    r = run(model="meta-llama/Llama-3.1-8B-Instruct", backend="trtllm")
    c = r.chosen
    if c.mode != "agg":
        pytest.skip("the estimator prefers disaggregation here")
    w = c.workers[0]
    req = PlanRequest.from_spec(
        {"model": "meta-llama/Llama-3.1-8B-Instruct", "backend": "trtllm", "image": IMAGE}
        | {"hardware": {"gpuSku": "h100_sxm", "totalGpus": 8}},
        dgdr_name="t",
    )
    b = AGG_BATCHES * w.dp
    lay = Layout.of(np.full(b.size, w.tp), w.pp, w.ep, w.dp)
    cap = float(kv_capacity_tokens(Engine(req.arch, req.gpu, "trtllm", req.quant, lay))[0])
    ttft, tpot = agg_serving(
        Engine(req.arch, req.gpu, "trtllm", req.quant, lay), req.isl, req.osl, b
    )
    ok = (ttft <= 2000) & (tpot <= 30) & (b * (req.isl + req.osl) <= cap)
    per_req = b / (ttft + (req.osl - 1) * tpot)
    risk = RiskParams.from_calibration(load_calibration())
    p = p_meets(ttft, tpot, ttft_target=2000, itl_target=30, params=risk)
    value = expected_value(per_req, p, risk)
    assert w.batch in b[ok]
    assert value[b == w.batch][0] >= value[ok].max() * (1 - 1e-9)


# ------------------------------------------------------------------------------------------------
# Disaggregated pricing, on a synthetic performance model: disaggregation wins where aggregated
# serving's prefill interference breaks the ITL, and the decode batch is the ITL target's.


SPEED: dict[str, float] = {"vllm": 1.0, "sglang": 1.0, "trtllm": 1.0}
PREFILL_MS_PER_1K = 50.0  # at TP1


def _f(x: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(x, dtype=np.float64)


def _prefill(backend: str, layout: Layout, isl: int, batch: ArrayLike) -> NDArray[np.float64]:
    return SPEED[backend] * PREFILL_MS_PER_1K * isl / 1000.0 * _f(batch) / _f(layout.tp)


def _step(backend: str, layout: Layout, batch: ArrayLike) -> NDArray[np.float64]:
    return SPEED[backend] * (8.0 / _f(layout.tp) + 2.0 + 0.02 * _f(batch) / _f(layout.dp))


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """A performance model with the mechanisms that matter and none of the calibration: decode
    steps grow with the batch, an aggregated step also carries its share of prefills, and a
    disaggregated TTFT grows steeply with the prompts queued at the prefill worker."""
    speed = dict.fromkeys(SPEED, 1.0)
    monkeypatch.setattr(f"{__name__}.SPEED", speed)

    def agg(e: Engine, isl: int, osl: int, b: ArrayLike):  # type: ignore[no-untyped-def]
        one = _prefill(e.backend, e.layout, isl, 1)
        tpot = _step(e.backend, e.layout, b) + _f(b) / _f(e.layout.dp) * one / osl
        return one * (1 + 0.1 * np.log2(np.maximum(_f(b), 1))), tpot

    def dtpot(e: Engine, isl: int, osl: int, b: ArrayLike):  # type: ignore[no-untyped-def]
        return _step(e.backend, e.layout, b) * np.ones(len(e.layout))

    def pttft(e: Engine, isl: int, b: ArrayLike = 1):  # type: ignore[no-untyped-def]
        return _prefill(e.backend, e.layout, isl, b) * np.ones(len(e.layout))

    def dttft(
        e: Engine,
        isl: int,
        load: ArrayLike,
        *,
        osl: int,
        tpot_ms: ArrayLike,
        batch: ArrayLike = 1,
    ):  # type: ignore[no-untyped-def]
        return _prefill(e.backend, e.layout, isl, batch) * (1 + np.log2(np.maximum(_f(load), 1)))

    def kv(e: Engine):  # type: ignore[no-untyped-def]
        return np.full(len(e.layout), 1e7) * _f(e.layout.dp)

    for name, fn in (
        ("agg_serving", agg),
        ("decode_tpot_ms", dtpot),
        ("prefill_ttft_ms", pttft),
        ("prefill_busy_ms", pttft),
        ("disagg_ttft_ms", dttft),
        ("kv_capacity_tokens", kv),
    ):
        monkeypatch.setattr(search_mod, name, fn)
    return speed


def synthetic_search(**kw: Any) -> SearchResult:
    s: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
    }
    s.update(kw)
    return search(PlanRequest.from_spec(s, dgdr_name="syn"))


def assert_decode_batch_set_by_the_itl(c: Candidate, itl: float) -> None:
    """The decode batch is the largest the ITL allows on its layout, unless the prefill side
    bounds the unit (a larger batch would then serve no more, only slower)."""
    d = c.worker("decode")
    assert d is not None
    allowed = DECODE_BATCHES * d.dp
    ok = allowed[_step("vllm", Layout.of(np.full(allowed.size, d.tp)), allowed) <= itl]
    lay = Layout.of(d.tp, d.pp, d.ep, d.dp)
    assert c.itl_ms == pytest.approx(float(_step("vllm", lay, d.batch)[0]))
    d_rate = d.batch * 1000.0 / (c.itl_ms * 499)
    assert d.batch == ok.max() or c.requests_s / d.replicas < 0.92 * d_rate * (1 - 1e-9)


def test_disaggregation_wins_where_prefill_interference_breaks_the_itl(
    synthetic: dict[str, float],
) -> None:
    # Long prompts, tight ITL: an aggregated worker's decode steps carry 0.8 ms of prefill per
    # request in flight (TP1), so few fit under 12 ms; a decode worker fits 100.
    r = synthetic_search(
        workload={"isl": 8000, "osl": 500}, sla={"ttft": 1500, "itl": 12}, backend="vllm"
    )
    c = r.chosen
    assert c.mode == "disagg" and c.meets_sla, c
    best_agg = max(
        (x for x in r.candidates if x.mode == "agg" and x.meets_sla),
        key=lambda x: x.tokens_s,
    )
    assert c.tokens_s > best_agg.tokens_s
    # The decode batch is chosen by the ITL target, not squeezed by the deployment's
    # concurrency under the TTFT.
    d = c.worker("decode")
    assert d is not None and d.batch >= 64
    assert_decode_batch_set_by_the_itl(c, 12)
    # TTFT from the prefill side, at the utilisation the rate match gives the prefill workers.
    p = c.worker("prefill")
    assert p is not None
    busy = float(_prefill("vllm", Layout.of(p.tp), 8000, p.batch)[0])
    rho = c.requests_s / p.replicas / (p.batch * 1000.0 / busy)
    assert 0 < rho <= PREFILL_DERATE + 1e-9
    load = float(prefill_load(np.asarray(rho), np.asarray(float(p.batch))))
    expected = busy * (1 + np.log2(max(load, 1.0)))
    assert c.ttft_ms == pytest.approx(expected)
    assert c.ttft_ms <= 1500


def test_short_prompts_and_a_loose_itl_stay_aggregated(synthetic: dict[str, float]) -> None:
    r = synthetic_search(
        workload={"isl": 500, "osl": 500}, sla={"ttft": 1500, "itl": 40}, backend="vllm"
    )
    assert r.chosen.mode == "agg" and r.chosen.meets_sla


def test_a_tight_ttft_caps_the_prefill_utilisation_instead_of_the_decode_batch(
    synthetic: dict[str, float],
) -> None:
    # Prefill takes 400 ms per prompt at TP1, 200 ms at TP2; a 500 ms TTFT allows a load of
    # 2**0.25 and 2**1.5 prompts: those prefill workers run below the 0.9 derate (more of them
    # per decode worker) while the decode batch stays where the ITL puts it.
    r = synthetic_search(
        workload={"isl": 8000, "osl": 500}, sla={"ttft": 500, "itl": 12}, backend="vllm"
    )
    disagg = [c for c in r.candidates if c.mode == "disagg" and c.meets_sla]
    assert disagg
    capped = 0
    for c in disagg:
        p, d = c.worker("prefill"), c.worker("decode")
        assert p is not None and d is not None
        busy = float(_prefill("vllm", Layout.of(p.tp), 8000, p.batch)[0])
        rho = c.requests_s / p.replicas / (p.batch * 1000.0 / busy)
        load = float(prefill_load(np.asarray(rho), np.asarray(float(p.batch))))
        assert busy * (1 + np.log2(max(load, 1.0))) <= 500 + 1e-9
        assert_decode_batch_set_by_the_itl(c, 12)
        capped += p.tp <= 2 and rho < PREFILL_DERATE - 1e-9
    assert capped


@pytest.mark.parametrize("fast", ["vllm", "sglang", "trtllm"])
def test_backend_auto_picks_the_backend_predicted_fastest(
    synthetic: dict[str, float], fast: str
) -> None:
    synthetic[fast] = 0.8
    r = synthetic_search(workload={"isl": 2000, "osl": 500}, sla={"ttft": 1500, "itl": 20})
    assert r.chosen.backend == fast
    assert {c.backend for c in r.candidates} == {"vllm", "sglang", "trtllm"}


def test_each_backend_is_searched_with_its_own_kv_capacity() -> None:
    # TRT-LLM keeps an FP8 checkpoint's KV cache in FP8: twice the tokens of vLLM's BF16 cache,
    # so it runs batches vLLM cannot hold.
    req = PlanRequest.from_spec(
        {
            "model": "meta-llama/Llama-3.1-70B-Instruct",
            "image": IMAGE,
            "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
            "overrides": {},
        },
        dgdr_name="kv",
    )
    caps = {b: search_mod._backend_layouts(req, b)[1] for b in req.backends}
    lays = {b: search_mod._backend_layouts(req, b)[0] for b in req.backends}
    for b in req.backends:
        expected = kv_capacity_tokens(
            Engine(req.arch, req.gpu, b, req.quant, search_mod.layout_rows(lays[b]))
        )
        assert np.allclose(caps[b], np.where(np.isfinite(expected), expected, 0.0))


def test_targets_ttft_limit_leaves_room_for_the_decode_side() -> None:
    t = Targets(None, None, 10000.0, 500)
    assert np.allclose(t.ttft_limit(np.array([10.0, 19.0])), [5000.0, 500.0])
    assert Targets(800.0, 20.0, None, 500).side_limit("itl") == 20.0
