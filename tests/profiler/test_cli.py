"""The real command line, run as a user runs it: ``python -m profiler ...`` in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/ai-dynamo/dynamo-frontend:1.1.1"
MANIFEST = {
    "apiVersion": "nvidia.com/v1beta1",
    "kind": "DynamoGraphDeploymentRequest",
    "metadata": {"name": "qwen-small", "namespace": "team-a"},
    "spec": {
        "model": "Qwen/Qwen3-0.6B",
        "image": IMAGE,
        "hardware": {"gpuSku": "h100_sxm", "totalGpus": 8},
        "sla": {"ttft": 500, "itl": 20},
    },
}


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def write(tmp_path: Path, doc: Any, name: str = "in.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_plan_prints_a_table_and_the_chosen_configuration(tmp_path: Path) -> None:
    p = cli("plan", write(tmp_path, MANIFEST))
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    for col in ("mode", "backend", "GPUs", "TTFT", "ITL", "tok/s/GPU", "tok/s/user"):
        assert col in header
    assert " agg " in p.stdout and " disagg " in p.stdout
    assert "chosen (default):" in p.stdout
    assert "configurations evaluated" in p.stdout and "DGD qwen-small-dgd" in p.stdout


def test_plan_json_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "dgd.yaml"
    p = cli("plan", write(tmp_path, MANIFEST), "--json", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {"chosen", "candidates", "configs_evaluated", "elapsed_s", "dgd"} <= set(doc)
    chosen = doc["chosen"]
    for key in (
        "mode",
        "backend",
        "workers",
        "gpus",
        "ttft_ms",
        "itl_ms",
        "tokens_s_per_gpu",
        "tokens_s_per_user",
    ):
        assert key in chosen
    assert chosen["ttft_ms"] <= 500 and chosen["itl_ms"] <= 20
    assert doc["configs_evaluated"] > 0 and doc["elapsed_s"] > 0
    assert doc["dgd"]["metadata"]["name"] == "qwen-small-dgd"
    written = list(yaml.safe_load_all(out.read_text()))
    assert written[-1] == doc["dgd"]
    assert written[-1]["kind"] == "DynamoGraphDeployment"


def test_bare_json_spec_from_stdin() -> None:
    p = cli("plan", "-", "--json", stdin=json.dumps(MANIFEST["spec"]))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["dgd"]["metadata"]["name"] == "plan-dgd"


def test_planner_output_holds_configmaps_then_the_dgd(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["features"] = {"planner": {}}
    out = tmp_path / "final.yaml"
    p = cli("plan", write(tmp_path, doc), "-o", str(out))
    assert p.returncode == 0, p.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text())]
    assert kinds == ["ConfigMap", "ConfigMap", "DynamoGraphDeployment"]


def test_invalid_input_exits_non_zero_naming_the_fields(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["sla"] = {"ttft": -5, "itl": 20}
    doc["spec"]["hardware"]["gpuSku"] = "H100-SXM5-80GB"
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 2
    assert "spec.sla.ttft" in p.stderr and "spec.hardware.gpuSku" in p.stderr
    assert p.stdout == ""


def test_unreadable_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    assert cli("plan", str(bad)).returncode == 2
    missing = cli("plan", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    other = cli("plan", write(tmp_path, {"apiVersion": "v1", "kind": "ConfigMap"}))
    assert other.returncode == 2 and "DynamoGraphDeploymentRequest" in other.stderr


def test_infeasible_request_says_so(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["model"] = "meta-llama/Llama-3.1-405B"
    doc["spec"]["hardware"] = {"gpuSku": "l4", "totalGpus": 2}
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 3
    assert "infeasible" in p.stderr and "spec.hardware.totalGpus" in p.stderr
    assert "needs at least" in p.stderr


def test_thorough_is_refused_as_not_available_yet(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"].update(searchStrategy="thorough", backend="vllm")
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 4
    assert "not available yet" in p.stderr and "rapid" in p.stderr


def test_sla_miss_is_reported_not_silent(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["sla"] = {"ttft": 1, "itl": 0.05}
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 0, p.stderr
    assert "warning: no configuration meets the SLA" in p.stdout
    assert "misses the 1 ms target by" in p.stdout
    assert "error:" not in p.stderr  # without --strict a miss is a warning, not an error


def test_strict_exits_5_on_an_sla_miss_and_still_plans(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["sla"] = {"ttft": 1, "itl": 1}
    out = tmp_path / "dgd.yaml"
    p = cli("plan", write(tmp_path, doc), "--strict", "-o", str(out))
    assert p.returncode == 5, p.stderr
    # the closest configuration is still printed and written; stderr names each miss
    assert "chosen (default):" in p.stdout and out.exists()
    assert "error: SLA not met:" in p.stderr
    assert "TTFT" in p.stderr and "misses the 1 ms target by" in p.stderr and "%" in p.stderr
    j = cli("plan", write(tmp_path, doc), "--strict", "--json")
    assert j.returncode == 5
    sla = json.loads(j.stdout)["sla"]
    assert sla["met"] is False
    assert {m["target"] for m in sla["misses"]} <= {"ttft", "itl"} and sla["misses"]
    for m in sla["misses"]:
        assert m["predicted_ms"] > m["target_ms"] == 1 and m["percent"] >= 1
    assert "warning: no configuration meets the SLA" in j.stderr


def test_strict_exits_0_when_the_sla_is_met(tmp_path: Path) -> None:
    p = cli("plan", write(tmp_path, MANIFEST), "--strict", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sla"] == {"met": True, "misses": []}
    assert p.stderr == ""


def test_help_names_the_exit_codes() -> None:
    p = cli("plan", "--help")
    assert p.returncode == 0
    assert "--strict" in p.stdout and "exit codes:" in p.stdout
    assert "  5  --strict: the chosen (closest) configuration does not meet the SLA" in p.stdout


def test_estimate_adds_predictions(tmp_path: Path) -> None:
    row = {
        "id": "qwen3_8b_h100_vllm",
        "backend": "vllm",
        "backend_version": "0.19.0",
        "model_path": "Qwen/Qwen3-8B",
        "system": "h100_sxm",
        "precision": "bf16",
        "mode": "agg",
        "isl": 1024,
        "osl": 128,
        "gemm_quant_mode": "bf16",
        "moe_quant_mode": "bf16",
        "batch_size": 8,
        "tp_size": 1,
        "pp_size": 1,
        "attention_dp_size": 1,
        "moe_tp_size": 1,
        "moe_ep_size": 1,
        "silicon_ttft_ms": "",
        "silicon_tpot_ms": "",
    }
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    out = tmp_path / "out.csv"
    p = cli("estimate", "--input", str(src), "--output", str(out))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1
    assert float(rows[0]["pred_ttft_ms"]) > 0 and float(rows[0]["pred_tpot_ms"]) > 0
