"""Predicting rows in the calibration CSV layout, and the fitting it relies on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from profiler.calibrate import fit, fit_relative, main, nnls
from profiler.estimate_csv import CalRow, estimate_csv, read_rows

HEADER = [
    "id",
    "silicon_data_source",
    "backend",
    "backend_version",
    "model_path",
    "system",
    "precision",
    "mode",
    "isl",
    "osl",
    "gemm_quant_mode",
    "moe_quant_mode",
    "batch_size",
    "tp_size",
    "pp_size",
    "attention_dp_size",
    "moe_tp_size",
    "moe_ep_size",
    "prefill_batch_size",
    "prefill_num_workers",
    "prefill_tp_size",
    "prefill_pp_size",
    "prefill_attention_dp_size",
    "prefill_moe_tp_size",
    "prefill_moe_ep_size",
    "decode_batch_size",
    "decode_num_workers",
    "decode_tp_size",
    "decode_pp_size",
    "decode_attention_dp_size",
    "decode_moe_tp_size",
    "decode_moe_ep_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
]


def _row(**kw: str) -> dict[str, str]:
    row = dict.fromkeys(HEADER, "")
    row.update(kw)
    return row


AGG = _row(
    id="llama-agg",
    silicon_data_source="silicon_concurrency=32",
    backend="vllm",
    model_path="meta-llama/Llama-3.1-8B-Instruct",
    system="h100_sxm",
    precision="bf16",
    mode="agg",
    isl="1024",
    osl="1024",
    batch_size="32",
    tp_size="1",
    pp_size="1",
    attention_dp_size="1",
    moe_tp_size="1",
    moe_ep_size="1",
    silicon_ttft_ms="120",
    silicon_tpot_ms="9.5",
)
DISAGG = _row(
    id="ds-disagg",
    silicon_data_source="silicon_concurrency=64",
    backend="trtllm",
    model_path="deepseek-ai/DeepSeek-R1",
    system="b200_sxm",
    precision="fp8",
    mode="disagg",
    isl="1024",
    osl="1024",
    prefill_batch_size="1",
    prefill_num_workers="2",
    prefill_tp_size="8",
    prefill_pp_size="1",
    prefill_attention_dp_size="1",
    prefill_moe_tp_size="1",
    prefill_moe_ep_size="8",
    decode_batch_size="32",
    decode_num_workers="2",
    decode_tp_size="8",
    decode_pp_size="1",
    decode_attention_dp_size="1",
    decode_moe_tp_size="1",
    decode_moe_ep_size="8",
)


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HEADER)
        w.writeheader()
        w.writerows(rows)


def test_estimate_csv_adds_predictions_and_errors(tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    rows = [
        AGG,
        DISAGG,
        {**AGG, "id": "unknown-model", "model_path": "acme/Nope-9B"},
        {**AGG, "id": "unknown-sku", "system": "h300_sxm"},
        {**AGG, "id": "no-fit", "model_path": "meta-llama/Llama-3.1-405B", "system": "l4"},
    ]
    _write(src, rows)
    assert estimate_csv(str(src), str(out)) == 5
    with open(out, newline="") as fh:
        got = {r["id"]: r for r in csv.DictReader(fh)}
    assert list(got) == [r["id"] for r in rows]
    for key in ("llama-agg", "ds-disagg"):
        assert got[key]["error"] == ""
        assert float(got[key]["pred_ttft_ms"]) > 0 and float(got[key]["pred_tpot_ms"]) > 0
        assert got[key]["model_path"] == {r["id"]: r for r in rows}[key]["model_path"]
    # The 8B model on one H100 at 32 concurrent requests: a few ms to a few tens per token.
    assert 3 < float(got["llama-agg"]["pred_tpot_ms"]) < 40
    assert "Nope-9B" in got["unknown-model"]["error"] and got["unknown-model"]["pred_tpot_ms"] == ""
    assert "h300_sxm" in got["unknown-sku"]["error"]
    assert "cannot hold" in got["no-fit"]["error"]


def test_disagg_row_reads_both_layouts(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    _write(src, [DISAGG])
    _, _, parsed = read_rows(str(src))
    row = parsed[0]
    assert isinstance(row, CalRow)
    assert row.layout == (8, 1, 8, 1) and row.p_layout == (8, 1, 8, 1)
    assert (row.p_workers, row.d_workers, row.concurrency, row.batch) == (2, 2, 64.0, 32.0)
    assert np.isnan(row.ttft_ms)


def test_nnls_matches_the_constrained_optimum() -> None:
    rng = np.random.default_rng(7)
    a = rng.random((40, 4))
    truth = np.asarray([0.5, 0.0, 2.0, 1.0])
    b = a @ truth
    assert np.allclose(nnls(a, b), truth, atol=1e-8)
    # A target that wants a negative weight gets it clamped at zero.
    x = nnls(np.asarray([[1.0, 0.0], [0.0, 1.0]]), np.asarray([1.0, -1.0]))
    assert np.allclose(x, [1.0, 0.0])


def test_fit_relative_recovers_exact_weights_and_respects_floors() -> None:
    rng = np.random.default_rng(3)
    feats = rng.random((200, 3)) + 0.1
    truth = np.asarray([0.9, 0.2, 1.5])
    y = feats @ truth
    assert np.allclose(fit_relative(feats, y), truth, rtol=1e-3)
    floored = fit_relative(feats, y, lower=np.asarray([1.2, 0.0, 0.0]))
    assert floored[0] >= 1.2 - 1e-12


def test_fit_reproduces_its_own_predictions(tmp_path: Path) -> None:
    """Rows whose 'measurements' are the model's own predictions are fitted back exactly."""
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    rows = []
    for i, (tp, b, isl) in enumerate(
        [(t, b, s) for t in (1, 2, 4, 8) for b in (1, 8, 32, 128) for s in (512, 2048, 8192)]
    ):
        rows.append(
            {
                **AGG,
                "id": f"r{i}",
                "tp_size": str(tp),
                "batch_size": str(b),
                "silicon_data_source": f"silicon_concurrency={b}",
                "isl": str(isl),
            }
        )
    _write(src, rows)
    estimate_csv(str(src), str(out))
    with open(out, newline="") as fh:
        pred = list(csv.DictReader(fh))
    for r, p in zip(rows, pred, strict=True):
        r["silicon_ttft_ms"], r["silicon_tpot_ms"] = p["pred_ttft_ms"], p["pred_tpot_ms"]
    _write(src, rows)
    _, _, parsed = read_rows(str(src))
    cal = [p for p in parsed if isinstance(p, CalRow)]
    coefs = fit(cal, min_rows=10)
    assert set(coefs["tpot"]) == {"*", "vllm"}
    from profiler.estimate_csv import predict

    ttft, tpot = predict(cal, coefs)
    meas_tpot = np.asarray([c.tpot_ms for c in cal])
    meas_ttft = np.asarray([c.ttft_ms for c in cal])
    assert np.abs(tpot / meas_tpot - 1).mean() < 0.02
    assert np.abs(ttft / meas_ttft - 1).mean() < 0.05


def test_calibrate_cli_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c.json")]) == 2
    assert "--data" in capsys.readouterr().err
