"""Per-SKU kernel efficiencies and the disaggregated TTFT the search prices.

The efficiencies come from collected kernel tables and scale the prefill physics; the search
must price a disaggregated deployment's TTFT with the same loaded-prefill-worker function the
calibration fits (no second queueing factor on top).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from profiler import PlanRequest, plan
from profiler.calibrate import EFFICIENCY_ALIASES, kernel_efficiency
from profiler.disagg import PREFILL_DERATE, prefill_load
from profiler.estimator import Engine, Layout, disagg_ttft_ms, prefill_busy_ms, prefill_ttft_ms
from profiler.hardware import SKUS, get_gpu
from profiler.models import resolve_model
from profiler.physics import attention_efficiency, gemm_efficiency

IMAGE = "registry.example/ai-dynamo/dynamo-frontend:1.1.1"

HEADER = (
    "system,framework,version,op,dtype,size_key,size,n_shapes,median_latency_ms,"
    "compute_util_median,mem_bw_util_median\n"
)


def test_kernel_table_yields_prefill_gemm_medians_and_attention_curves(tmp_path: Path) -> None:
    rows = [
        "h100_sxm,vllm,1,gemm,bfloat16,m,1024,10,0.1,0.30,0.5",  # too small for prefill: ignored
        "h100_sxm,vllm,1,gemm,bfloat16,m,2048,10,0.1,0.70,0.1",
        "h100_sxm,vllm,1,gemm,bfloat16,m,4096,10,0.1,0.80,0.1",
        "h100_sxm,vllm,1,gemm,bfloat16,m,8192,10,0.1,0.90,0.1",
        "h100_sxm,vllm,1,gemm,fp8,m,4096,10,0.1,0.50,0.1",
        "gb200,vllm,1,context_attention_causal,bf16,b1_isl,128,1,0.1,0.01,",  # below 256
        "gb200,vllm,1,context_attention_causal,bf16,b1_isl,4096,1,0.1,0.40,",
        "gb200,vllm,1,context_attention_causal,bf16,b1_isl,1024,1,0.1,0.20,",
        "gb200,vllm,1,context_attention_causal,bf16,b8_isl,1024,1,0.1,0.90,",  # not batch 1
        "nosuchgpu,vllm,1,gemm,bfloat16,m,4096,10,0.1,0.99,0.1",  # unknown SKU: skipped
    ]
    path = tmp_path / "k.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    eff = kernel_efficiency(str(path))
    assert eff["gemm"] == {"h100_sxm": {"bf16": 0.8, "fp8": 0.5}}
    # System names are canonicalised to the hardware table's SKUs; curves sorted by length.
    assert eff["attention"] == {"gb200_sxm": [[1024.0, 0.2], [4096.0, 0.4]]}
    assert eff["aliases"] == EFFICIENCY_ALIASES


@pytest.mark.parametrize("sku", SKUS)
def test_shipped_efficiencies_are_physical(sku: str) -> None:
    for quant in ("bf16", "fp8", "fp4"):
        assert 0.0 < gemm_efficiency(sku, quant) <= 1.0
    isl = np.asarray([256.0, 512, 1024, 2048, 4096, 8192, 16384, 65536])
    curve = attention_efficiency(sku, isl)
    assert np.all((curve > 0) & (curve <= 1.0))
    assert np.all(np.diff(curve) >= 0), curve  # longer prompts keep the tensor cores busier


def test_generations_without_kernel_tables_borrow_their_siblings() -> None:
    assert gemm_efficiency("b300_sxm", "fp8") == gemm_efficiency("b200_sxm", "fp8")
    assert gemm_efficiency("gb300_sxm", "bf16") == gemm_efficiency("gb200_sxm", "bf16")
    # Blackwell FP8 GEMMs reach a smaller share of their (doubled) peak than Hopper's.
    assert gemm_efficiency("b200_sxm", "fp8") < gemm_efficiency("h100_sxm", "fp8")


def test_disagg_candidates_carry_the_loaded_prefill_worker_ttft() -> None:
    spec = {
        "model": "Qwen/Qwen3-8B",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
        "features": {"mocker": {"enabled": True}},  # forces a disaggregated pick
    }
    req = PlanRequest.from_spec(spec, dgdr_name="t")
    result = plan(req)
    disagg = [c for c in result.candidates if c.mode == "disagg"]
    assert disagg
    gpu = get_gpu("h100_sxm")
    for c in disagg:
        pw, dw = c.worker("prefill"), c.worker("decode")
        assert pw is not None and dw is not None
        lay = Layout.of(pw.tp, pw.pp, pw.ep, pw.dp)
        unloaded = prefill_ttft_ms(
            Engine(req.arch, gpu, c.backend, req.quant, lay), req.isl, pw.batch
        )
        # The prefill worker's load is the prompts at it at the rate the x:y match gives it
        # (not the whole deployment's concurrency): utilisation = its request rate over what
        # it prefills per second of GPU time.
        busy = prefill_busy_ms(Engine(req.arch, gpu, c.backend, req.quant, lay), req.isl, pw.batch)
        rho = c.requests_s / pw.replicas / (pw.batch * 1000.0 / float(busy[0]))
        assert 0 < rho <= PREFILL_DERATE + 1e-9
        load = prefill_load(np.asarray(rho), np.asarray(float(pw.batch)))
        loaded = disagg_ttft_ms(
            Engine(req.arch, gpu, c.backend, req.quant, lay),
            req.isl,
            load,
            osl=req.osl,
            tpot_ms=c.itl_ms,
            batch=pw.batch,
        )
        assert c.ttft_ms >= float(unloaded[0]) * (1 - 1e-9)
        assert c.ttft_ms == pytest.approx(max(float(loaded[0]), float(unloaded[0])), rel=1e-6)


@pytest.mark.parametrize("backend", ["vllm", "sglang", "trtllm"])
def test_prefill_busy_time_is_the_compute_part_of_the_ttft(backend: str) -> None:
    arch = resolve_model("meta-llama/Llama-3.1-70B-Instruct")
    gpu = get_gpu("h200_sxm")
    lay = Layout.of([2, 4, 8])
    isls = [256, 1024, 4096, 16384]
    busy = np.asarray([prefill_busy_ms(Engine(arch, gpu, backend, "fp8", lay), i) for i in isls])
    ttft = np.asarray([prefill_ttft_ms(Engine(arch, gpu, backend, "fp8", lay), i) for i in isls])
    assert np.all(busy > 0) and np.all(busy <= ttft)
    assert np.all(np.diff(busy, axis=0) > 0)  # longer prompts keep the worker busy longer
    assert np.all(np.diff(busy, axis=1) < 0)  # wider workers get through a prompt faster
    # A batch of prompts costs the worker more time than one, but less than one each.
    one = prefill_busy_ms(Engine(arch, gpu, backend, "fp8", lay), 2048, 1)
    four = prefill_busy_ms(Engine(arch, gpu, backend, "fp8", lay), 2048, 4)
    assert np.all(one < four) and np.all(four <= 4 * one * (1 + 1e-9))
