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


def test_thorough_is_refused_without_a_cluster(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"].update(searchStrategy="thorough", backend="vllm")
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 4
    assert "not available without a cluster" in p.stderr and "rapid" in p.stderr


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


# ---- at the edges -------------------------------------------------------------------------------


def _spec(**over: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(MANIFEST["spec"]))
    for section, values in over.items():
        spec[section] = {**spec.get(section, {}), **values}
    return spec


def test_json_input_is_read_as_json_so_exponents_are_numbers(tmp_path: Path) -> None:
    """A YAML 1.1 loader read `1e300` as the string '1e300'; JSON (and YAML 1.2, as kubectl)
    says it is a number, and an absurd one is refused naming its field."""
    path = tmp_path / "in.json"
    path.write_text(json.dumps(_spec(workload={"requestRate": 1e300})))
    assert "1e+300" in path.read_text()
    p = cli("plan", str(path))
    assert p.returncode == 2, p.stderr
    assert "spec.workload.requestRate: must be at most 1e+09, got 1e+300" in p.stderr
    # The same exponent in YAML is a number too.
    yml = tmp_path / "in.yaml"
    yml.write_text("model: Qwen/Qwen3-0.6B\nhardware: {gpuSku: h100_sxm, totalGpus: 8}\n"
                   "workload: {concurrency: 1E12}\n")  # fmt: skip
    p = cli("plan", str(yml))
    assert p.returncode == 2 and "spec.workload.concurrency: must be at most 1e+09" in p.stderr
    nan = tmp_path / "nan.json"
    nan.write_text('{"model": "Qwen/Qwen3-0.6B", "hardware": {"gpuSku": "h100_sxm", '
                   '"totalGpus": 8, "vramMb": NaN}}')  # fmt: skip
    p = cli("plan", str(nan))
    assert p.returncode == 2 and "spec.hardware.vramMb" in p.stderr


def test_a_vram_below_one_mib_names_vram_mb(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(_spec(hardware={"vramMb": 1e-9})))
    p = cli("plan", str(path))
    assert p.returncode == 2
    assert "spec.hardware.vramMb: must be at least 1, got 1e-09" in p.stderr
    assert "spec.hardware.gpuSku" not in p.stderr  # not blamed on another field


def test_a_large_but_finite_load_still_plans(tmp_path: Path) -> None:
    p = cli("plan", write(tmp_path, _spec(workload={"requestRate": 1e6})), "--json")
    assert p.returncode == 0, p.stderr
    assert "totalGpus budget" in p.stderr  # capped at the budget, and said so


def test_output_dash_writes_the_manifests_to_stdout(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["features"] = {"planner": {}}
    src = write(tmp_path, doc)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "profiler", "plan", src, "-o", "-"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(p.stdout)]
    assert kinds == ["ConfigMap", "ConfigMap", "DynamoGraphDeployment"]
    assert "\nchosen (" in p.stderr  # the table, out of the way of the manifests
    assert not (tmp_path / "-").exists()
    both = cli("plan", src, "-o", "-", "--json")
    assert both.returncode == 2 and "both write to stdout" in both.stderr


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`plan --json | head`: the reader goes away mid-output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "profiler", "plan", write(tmp_path, MANIFEST), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before a byte is written: every write fails with EPIPE
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141  # as a process killed by SIGPIPE (`cat big | head`)


def test_unknown_fields_the_api_server_refuses_are_refused_by_name(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["specs"] = {}
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 2 and "unknown field specs at the top of the manifest" in p.stderr
    doc = json.loads(json.dumps(MANIFEST))
    doc["spec"]["hardwre"] = {"gpuSku": "h100_sxm"}
    p = cli("plan", write(tmp_path, doc))
    assert p.returncode == 2 and "unknown field hardwre in spec" in p.stderr
    bare = cli("plan", "-", stdin=json.dumps({**MANIFEST["spec"], "slas": {}, "moddel": "x"}))
    assert bare.returncode == 2 and "unknown fields moddel, slas in the spec" in bare.stderr


def test_the_known_spec_fields_are_the_crds() -> None:
    from profiler.cli import MANIFEST_FIELDS, SPEC_FIELDS

    crd = yaml.safe_load(
        (ROOT / "deploy" / "crds" / "nvidia.com_dynamographdeploymentrequests.yaml").read_text()
    )
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert set(SPEC_FIELDS) == set(schema["spec"]["properties"])
    assert set(MANIFEST_FIELDS) == set(schema)
