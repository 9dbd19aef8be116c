"""The runner reads from a generated DGD what the profiler put there: for every backend, agg and
disagg, both DGD versions, each worker's role, engine, data parallelism and concurrency cap.
Pure: no processes, no cluster."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from devtools.dgdrunner.modeldir import VOCAB_SIZE, catalog_config, ensure_model_dir
from devtools.dgdrunner.spec import parse, served_model
from profiler.generate import build_dgd
from profiler.plan import plan
from profiler.request import DGD_V1ALPHA1, DGD_V1BETA1, PlanRequest

SPEC = {
    "model": "Qwen/Qwen3-30B-A3B",
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 16, "vramMb": 81559},
    "sla": {"ttft": 1000, "itl": 30},
    "workload": {"isl": 2000, "osl": 300},
}


@pytest.mark.parametrize("version", [DGD_V1ALPHA1, DGD_V1BETA1])
@pytest.mark.parametrize("backend", ["vllm", "sglang", "trtllm"])
def test_workers_read_as_planned(backend: str, version: str) -> None:
    req = PlanRequest.from_spec({**SPEC, "backend": backend}, dgd_api_version=version)
    result = plan(req)
    modes = set()
    for cand in result.candidates[:40]:
        dgd, _ = build_dgd(req, cand)
        graph = parse(dgd)
        assert graph.version == version.split("/")[1]
        workers = {s.role: s for s in graph.services if s.kind == "worker"}
        assert sorted(workers) == sorted(w.role for w in cand.workers)
        for w in cand.workers:
            svc = workers[w.role]
            assert (svc.engine, svc.dp, svc.replicas) == (backend, w.dp, w.replicas), cand.label
            assert svc.max_num_seqs == math.ceil(w.batch / w.dp), cand.label
            assert svc.model == SPEC["model"]
        assert [s.kind for s in graph.services].count("frontend") == 1
        assert served_model(graph) == SPEC["model"]
        modes.add(cand.mode)
    assert modes == {"agg", "disagg"}


def test_mocker_and_planner_dgd() -> None:
    spec = {
        **SPEC,
        "backend": "vllm",
        "features": {"mocker": {"enabled": True}, "planner": {"enable_throughput_scaling": True}},
    }
    req = PlanRequest.from_spec(spec)
    result = plan(req)
    graph = parse(result.dgd)
    roles = {s.role: s for s in graph.services if s.kind == "worker"}
    assert sorted(roles) == ["decode", "prefill"]
    assert all(s.profile_data_path and s.configmap_mounts for s in roles.values())
    planner = graph.service("Planner")
    assert planner is not None and planner.kind == "planner" and not planner.runnable


def test_model_directory(tmp_path: Path) -> None:
    out = ensure_model_dir(tmp_path, "Qwen/Qwen3-0.6B")
    assert ensure_model_dir(tmp_path, "Qwen/Qwen3-0.6B") == out
    cfg = json.loads((out / "config.json").read_text())
    real = catalog_config("Qwen/Qwen3-0.6B")
    assert real is not None and cfg["num_hidden_layers"] == real["num_hidden_layers"]
    assert cfg["vocab_size"] == VOCAB_SIZE
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) == VOCAB_SIZE and vocab["w31999"] == VOCAB_SIZE - 1
    assert "chat_template" in json.loads((out / "tokenizer_config.json").read_text())
