"""Fit the estimator's constants to measured serving points; write ``data/calibration.json``.

Each prediction is a non-negative weighted sum of feature columns (``profiler.features``:
GEMM, attention/KV reads, collectives, per-layer and per-step overheads, prefill interference,
queueing), so fitting is a bounded least-squares problem per metric (aggregated TPOT and TTFT,
decode-worker TPOT, prefill-worker TTFT), with physics weights shared by all engines and
overhead weights per backend. The loss is the mean absolute relative error (iteratively
reweighted), i.e. what the accuracy bench reports as MAPE. A fit takes about a second, which
makes leave-one-model-out evaluation cheap.

Usage (from the repository root, next to the ``shared`` data checkout):
``python -m profiler.calibrate --data ../shared/ground_truth/silicon_calibration.csv``;
``--kernels ../shared/ground_truth/kernel_efficiency.csv`` first rewrites ``data/efficiency.json``
(per-SKU prefill GEMM and attention efficiencies) from collected kernel tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from profiler.estimate_csv import CalRow, feature_blocks, metric_keys, read_rows
from profiler.estimator import DEFAULT_COEFS, TPOT_COLUMNS, TTFT_COLUMNS

F64 = NDArray[np.float64]
METRICS = ("tpot", "ttft", "dtpot", "dttft")
DEFAULT_DATA = Path("..") / "shared" / "ground_truth" / "silicon_calibration.csv"
DEFAULT_OUT = Path(__file__).parent / "data" / "calibration.json"
EFFICIENCY_OUT = Path(__file__).parent / "data" / "efficiency.json"

# SKUs without collected kernels borrow the nearest measured part of the same generation.
EFFICIENCY_ALIASES = {
    "b300_sxm": "b200_sxm",
    "gb300_sxm": "gb200_sxm",
    "gb10": "gb200_sxm",
    "h100_pcie": "h100_sxm",
    "a100_pcie": "a100_sxm",
    "a30": "a100_sxm",
    "l40": "l40s",
    "l4": "l40s",
}


def kernel_efficiency(path: str) -> dict[str, object]:
    """Per-SKU prefill efficiencies from a kernel table (``kernel_efficiency.csv`` layout).

    GEMM: median share of peak FLOPs for m in [2048, 16384] per dtype (prefill-sized); causal
    attention: share of BF16 peak vs sequence length at batch 1 (one prompt per prefill).
    """
    from profiler.hardware import get_gpu

    gemm: dict[str, dict[str, list[float]]] = {}
    attn: dict[str, list[list[float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                sku = get_gpu(row["system"]).sku
                size, util = float(row["size"]), float(row["compute_util_median"])
            except (KeyError, ValueError):
                continue
            if row["op"] == "gemm" and 2048 <= size <= 16384:
                key = "bf16" if row["dtype"] in ("bfloat16", "bf16") else row["dtype"]
                gemm.setdefault(sku, {}).setdefault(key, []).append(util)
            elif (
                row["op"] == "context_attention_causal"
                and row["size_key"] == "b1_isl"
                and (size >= 256)
            ):
                attn.setdefault(sku, []).append([size, round(util, 4)])
    return {
        "note": "Share of peak FLOPs of prefill GEMMs (m 2048-16384, median) and of causal "
        "prefill attention (batch 1, by ISL), from collected vLLM kernel tables; written by "
        "python -m profiler.calibrate --kernels.",
        "data": Path(path).name,
        "gemm": {
            s: {k: round(float(np.median(v)), 4) for k, v in sorted(d.items())}
            for s, d in sorted(gemm.items())
        },
        "attention": {s: sorted(v) for s, v in sorted(attn.items())},
        "aliases": EFFICIENCY_ALIASES,
    }


def distinct_measurements(rows: Sequence[CalRow]) -> list[CalRow]:
    """One row per measurement: the data repeats runs across dumps, some without worker counts.

    A run is identified by what was measured (model, SKU, engine, precision, mode, lengths,
    concurrency and the two measured figures, which repeat to the last digit). Of its copies
    the one that records the prefill/decode worker counts is kept: a copy without them reads as
    one decode worker carrying the whole concurrency, a different deployment with the same
    figures. Exact repeats would otherwise weigh a run two or three times in the fit.
    """
    best: dict[tuple[object, ...], CalRow] = {}
    for r in rows:
        key = (
            r.arch.name,
            r.sku,
            r.backend,
            r.quant,
            r.mode,
            r.isl,
            r.osl,
            r.concurrency,
            round(r.ttft_ms, 3),
            round(r.tpot_ms, 3),
        )
        cur = best.get(key)
        if cur is None or (r.workers_recorded and not cur.workers_recorded):
            best[key] = r
    keep = {id(r) for r in best.values()}
    return [r for r in rows if id(r) in keep]


def nnls(a: F64, b: F64, max_iter: int = 200) -> F64:
    """Lawson-Hanson non-negative least squares: argmin ||a x - b|| subject to x >= 0."""
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    tol = 1e-10 * max(1.0, float(np.abs(w).max(initial=0.0)))
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= tol).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = float(np.min(x[neg] / (x[neg] - z[neg])))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0.0
            if not passive.any():
                break
        w = a.T @ (b - a @ x)
    return x


def fit_relative(
    feats: F64, y: F64, lower: F64 | None = None, iters: int = 12, log_loss: bool = False
) -> F64:
    """Weights >= ``lower`` (default 0) minimising mean |pred/y - 1| (IRLS on L1 relative error).

    With ``log_loss`` the mean |log(pred/y)| is minimised instead (started from the relative
    fit): median-unbiased in ratio, where the relative loss leans to under-prediction on noisy
    data. Lower bounds keep the physical parts (weight and KV reads, collectives, prefill
    compute) in every fit, so a backend fitted on few models still scales with ISL, batch and TP.
    """
    lb = np.zeros(feats.shape[1]) if lower is None else np.asarray(lower, dtype=np.float64)
    cols = np.flatnonzero(np.abs(feats).sum(axis=0) > 0)
    a = feats[:, cols] / y[:, None]
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)
    a = a / scale
    lb_s = lb[cols] * scale
    target = 1.0 - a @ lb_s
    wts = np.ones(len(y))
    extra = np.zeros(len(cols))
    for _ in range(iters):
        sw = np.sqrt(wts * len(y) / wts.sum())
        extra = nnls(a * sw[:, None], target * sw)
        resid = np.abs(a @ (lb_s + extra) - 1.0)
        wts = 1.0 / np.maximum(resid, 0.02)
    if log_loss:
        for _ in range(iters):
            q0 = np.maximum(a @ (lb_s + extra), 1e-9)
            lq = np.log(q0)
            wts = 1.0 / np.maximum(np.abs(lq), 0.02)
            sw = np.sqrt(wts * len(y) / wts.sum()) / q0
            rhs = (1.0 - lq) - (a @ lb_s) / q0
            extra = nnls(a * sw[:, None], rhs * sw * q0)
    out = lb.copy()
    out[cols] = (lb_s + extra) / scale
    return out


# Physical parts never vanish from a fit, and never beat the hardware: weight and KV reads no
# faster than peak bandwidth (their nominal time assumes 0.8 of it), prefill compute no faster
# than 0.6 of peak FLOPs; collectives may beat the per-direction link figure (NVLS, in-switch
# reduction) by at most 2x.
_READS = {"gemm": 0.8, "attention": 0.8, "attention_mla": 0.8, "comm": 0.5, "alltoall": 0.5}
_FLOORS = {
    "tpot": _READS,
    "dtpot": _READS,
    "ttft": {"prefill": 1.0},
    "dttft": {"prefill": 1.0},
}


def _lower(metric: str) -> F64:
    names = TPOT_COLUMNS if metric in ("tpot", "dtpot") else TTFT_COLUMNS
    floors = _FLOORS.get(metric, {})
    return np.asarray([floors.get(c, 0.0) for c in names], dtype=np.float64)


# Engines share the physics; what differs between them is framework overhead: a fixed cost per
# step (scheduling, sampling, detokenising; per request for TTFT) and per layer (kernel launches),
# and for TTFT how much of a burst of simultaneous arrivals a request waits for (scheduler
# policy). TTFT keeps its per-layer cost shared: fitted per engine, on an engine measured on one
# model family, it turns into a per-request constant divided by that family's layer count.
# Only those columns get a weight per backend; everything else is fitted once over all rows, so
# a backend seen on few models still prices the physics of every model correctly.
_PER_BACKEND = {
    "tpot": ("step", "layers_scaled"),
    "dtpot": ("step", "layers_scaled"),
    "ttft": ("request", "burst"),
    "dttft": ("request", "burst"),
}


# TPOT is fitted on log error (median-unbiased, and also the lower leave-one-model-out MAPE);
# TTFT on relative error: its measurements carry large unmodelled queueing tails, where a
# log fit doubles the MAPE while only moving the median error by a point.
_LOG_LOSS = {"tpot": True, "dtpot": True, "ttft": True, "dttft": True}


def fit_joint(
    feats: F64,
    y: F64,
    backends: NDArray[np.str_],
    per_backend: Sequence[int],
    lower: F64,
    log_loss: bool = False,
) -> dict[str, F64]:
    """One fit over all rows: shared weights plus, for ``per_backend`` columns, one per backend.

    Returns a full weight vector per backend, and ``*`` (per-backend columns fitted pooled) for
    a backend without rows.
    """
    width = feats.shape[1]
    shared = [j for j in range(width) if j not in per_backend]
    names = sorted(set(backends.tolist()))
    blocks = [feats[:, shared]]
    lows = [lower[shared]]
    for be in names:
        mask = (backends == be)[:, None]
        blocks.append(np.where(mask, feats[:, list(per_backend)], 0.0))
        lows.append(lower[list(per_backend)])
    theta = fit_relative(np.hstack(blocks), y, np.concatenate(lows), log_loss=log_loss)
    out: dict[str, F64] = {}
    k = len(per_backend)
    for i, be in enumerate(names):
        vec = np.zeros(width)
        vec[shared] = theta[: len(shared)]
        vec[list(per_backend)] = theta[len(shared) + i * k : len(shared) + (i + 1) * k]
        out[be] = vec
    out["*"] = fit_relative(feats, y, lower, log_loss=log_loss)
    return out


def fit(rows: Sequence[CalRow], min_rows: int = 20) -> dict[str, dict[str, list[float]]]:
    """Coefficients per metric and backend (see ``_PER_BACKEND``), plus a pooled ``*`` set.

    A backend with fewer than ``min_rows`` measured rows for a metric gets no own set and is
    priced with the pooled one.
    """
    ftpot, fttft = feature_blocks(rows)
    tk, fk = metric_keys(rows)
    tpot = np.asarray([r.tpot_ms for r in rows]) / 1e3
    ttft = np.asarray([r.ttft_ms for r in rows]) / 1e3
    backends = np.asarray([r.backend for r in rows])
    out: dict[str, dict[str, list[float]]] = {}
    for metric in METRICS:
        if metric == "dttft" and out.get("dtpot"):
            # Prefill-worker queueing is priced with the fitted decode TPOT, as the search does.
            _, fttft = feature_blocks(rows, out)
        is_tpot = metric in ("tpot", "dtpot")
        feats, y = (ftpot, tpot) if is_tpot else (fttft, ttft)
        keys = np.asarray(tk if is_tpot else fk)
        valid = np.isfinite(y) & (y > 0)
        ok = (keys == metric) & valid
        if metric == "dtpot":
            # A decode worker's TPOT depends on its batch, which a disaggregated row without
            # worker counts overstates (the whole concurrency on one worker).
            ok &= np.asarray([r.workers_recorded for r in rows], dtype=bool)
        if ok.sum() < 8:
            out[metric] = {}
            continue
        names = TPOT_COLUMNS if is_tpot else TTFT_COLUMNS
        width = len(DEFAULT_COEFS[metric])
        per_backend = [names.index(c) for c in _PER_BACKEND[metric]]
        fitted = fit_joint(
            feats[ok][:, :width],
            y[ok],
            backends[ok],
            per_backend,
            _lower(metric)[:width],
            log_loss=_LOG_LOSS[metric],
        )
        counts = {be: int((backends[ok] == be).sum()) for be in fitted}
        out[metric] = {
            be: vec.tolist() for be, vec in fitted.items() if be == "*" or counts[be] >= min_rows
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiler.calibrate", description=__doc__)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="measured CSV (silicon layout)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="where to write calibration.json")
    ap.add_argument("--kernels", help="kernel table CSV: rewrite data/efficiency.json first")
    args = ap.parse_args(argv)
    if args.kernels:
        try:
            eff = kernel_efficiency(args.kernels)
        except OSError as exc:
            print(f"--kernels: cannot read {args.kernels!r}: {exc}", file=sys.stderr)
            return 2
        EFFICIENCY_OUT.write_text(json.dumps(eff, indent=1) + "\n", encoding="utf-8")
        print(f"kernel efficiencies -> {EFFICIENCY_OUT}")
    try:
        _, _, parsed = read_rows(args.data)
    except OSError as exc:
        print(f"--data: cannot read {args.data!r}: {exc}", file=sys.stderr)
        return 2
    rows = distinct_measurements([p for p in parsed if isinstance(p, CalRow)])
    skipped = len(parsed) - len(rows)
    coefs = fit(rows)
    doc = {
        "note": "Fitted by python -m profiler.calibrate; weights of the estimator's feature "
        "columns (seconds per nominal second, or seconds per layer / per step).",
        "data": Path(args.data).name,
        "rows_used": len(rows),
        "rows_skipped": skipped,
        "rows_note": "skipped: rows outside the model, and repeated measurements (one kept)",
        "coefs": coefs,
    }
    previous = Path(args.out)
    if previous.is_file():
        # The pick's risk parameters are chosen on decisions by bench/decision, not fitted here.
        old = json.loads(previous.read_text(encoding="utf-8"))
        doc.update({k: old[k] for k in ("decision", "decision_note") if k in old})
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"fitted on {len(rows)} rows ({skipped} skipped) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
