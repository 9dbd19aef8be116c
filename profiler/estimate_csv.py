"""Predict TTFT/TPOT for rows in the column layout of the silicon calibration CSV.

The same row reading serves the calibration script and the accuracy bench, so what is fitted,
what is measured and what the command line predicts all read a row the same way: aggregated rows
carry one worker layout (``batch_size`` is per attention-DP rank), disaggregated rows carry a
prefill and a decode layout with worker counts (``decode_batch_size`` is per decode DP rank).
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from profiler.arch import ModelArch
from profiler.errors import ProfilerError
from profiler.estimator import BACKENDS, Engine, kv_capacity_tokens
from profiler.features import decode_features, ttft_features
from profiler.hardware import GpuSpec, get_gpu
from profiler.models import quant_for, resolve_model
from profiler.physics import Layout, StepPhysics

F64 = NDArray[np.float64]
NFEAT = 12  # width of every feature matrix (shorter ones are zero-padded)

_PRECISION = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "fp4": "fp4", "int4": "fp4"}
_GEMM_MODE = {"fp8": "fp8", "fp8_block": "fp8", "nvfp4": "fp4", "int4_wo": "fp4", "bf16": "bf16"}


@dataclass(frozen=True)
class CalRow:
    """One measured (or to-be-predicted) serving point, read from a CSV row."""

    index: int
    model_id: str
    arch: ModelArch
    quant: str
    gpu: GpuSpec
    sku: str
    backend: str
    mode: str  # agg | disagg
    isl: int
    osl: int
    layout: tuple[int, int, int, int]  # agg worker, or the decode worker (tp, pp, ep, dp)
    batch: float  # concurrent requests per (decode) worker
    p_layout: tuple[int, int, int, int]  # prefill worker (disagg)
    p_batch: float
    p_workers: int
    d_workers: int
    concurrency: float
    ttft_ms: float  # measured, nan when absent
    tpot_ms: float
    source: str = ""  # the row's silicon_data_source
    workers_recorded: bool = True  # disagg: prefill/decode worker counts were in the row


def _int(row: dict[str, str], key: str, default: int = 1) -> int:
    raw = (row.get(key) or "").strip()
    if not raw:
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise ValueError(f"column {key}: not a number: {raw!r}") from None


def _float(row: dict[str, str], key: str) -> float:
    raw = (row.get(key) or "").strip()
    try:
        return float(raw) if raw else math.nan
    except ValueError:
        return math.nan


def _layout(row: dict[str, str], prefix: str, arch: ModelArch) -> tuple[int, int, int, int]:
    tp = max(_int(row, f"{prefix}tp_size"), 1)
    pp = max(_int(row, f"{prefix}pp_size"), 1)
    ep = max(_int(row, f"{prefix}moe_ep_size"), 1)
    dp = max(_int(row, f"{prefix}attention_dp_size"), 1)
    if arch.is_moe and dp == 1 and tp > 1 and (arch.heads % tp or (arch.is_mla and tp > 8)):
        # Attention heads cannot be split this many ways (or MLA, whose latent KV every TP rank
        # would replicate): the run was attention-data-parallel with experts over every GPU.
        # Some dumps record that DEP width as tp_size.
        tp, dp, ep = 1, tp, tp
    return tp, pp, min(ep, tp * dp), dp


def parse_row(index: int, row: dict[str, str]) -> CalRow:
    """Read one CSV row; ValueError / ProfilerError name what is outside the model."""
    model_id = (row.get("model_path") or "").strip()
    arch = resolve_model(model_id)
    sku = (row.get("system") or "").strip()
    gpu = get_gpu(sku)
    backend = (row.get("backend") or "").strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"column backend: unsupported {backend!r}")
    prec = (row.get("precision") or "").strip().lower()
    quant = _PRECISION.get(prec) or _GEMM_MODE.get(
        (row.get("gemm_quant_mode") or "").strip().lower(), ""
    )
    if not quant:
        quant = quant_for(model_id, arch)
    mode = (row.get("mode") or "agg").strip().lower()
    isl, osl = _int(row, "isl", 0), _int(row, "osl", 0)
    if isl <= 0 or osl <= 0:
        raise ValueError("columns isl/osl must be positive")
    src = row.get("silicon_data_source") or ""
    m = re.search(r"silicon_concurrency=(\d+)", src)
    conc_src = float(m.group(1)) if m else math.nan
    if mode == "agg":
        lay = _layout(row, "", arch)
        # batch_size is per attention-DP rank where the run's concurrency is recorded, and the
        # whole worker's concurrency in the sweeps that do not record it.
        bs = max(_int(row, "batch_size", 1), 1)
        batch = conc_src if not math.isnan(conc_src) else float(bs)
        conc = batch
        p_lay, p_batch, x, y = lay, 1.0, 1, 1
    elif mode == "disagg":
        lay = _layout(row, "decode_", arch)
        p_lay = _layout(row, "prefill_", arch)
        x = max(_int(row, "prefill_num_workers"), 1)
        y = max(_int(row, "decode_num_workers"), 1)
        # Some dumps leave decode_batch_size at 1; the run's concurrency is authoritative.
        per_rank = float(max(_int(row, "decode_batch_size", 1), 1) * lay[3])
        conc = conc_src if not math.isnan(conc_src) else per_rank * y
        batch = max(conc / y, 1.0)
        p_batch = float(max(_int(row, "prefill_batch_size", 1), 1))
    else:
        raise ValueError(f"column mode: unsupported {mode!r}")
    for name, lay_ in (("decode" if mode == "disagg" else "worker", lay), ("prefill", p_lay)):
        cap = kv_capacity_tokens(Engine(arch, gpu, backend, quant, Layout.of(*lay_)))
        if float(cap[0]) <= 0:
            raise ValueError(
                f"{name} layout tp={lay_[0]} pp={lay_[1]} dp={lay_[3]} cannot hold "
                f"{model_id} at {quant} on {sku}"
            )
    return CalRow(
        index=index,
        model_id=model_id,
        arch=arch,
        quant=quant,
        gpu=gpu,
        sku=sku,
        backend=backend,
        mode=mode,
        isl=isl,
        osl=osl,
        layout=lay,
        batch=float(batch),
        p_layout=p_lay,
        p_batch=p_batch,
        p_workers=x,
        d_workers=y,
        concurrency=float(conc),
        ttft_ms=_float(row, "silicon_ttft_ms"),
        tpot_ms=_float(row, "silicon_tpot_ms"),
        source=src,
        workers_recorded=mode == "agg"
        or (
            bool((row.get("prefill_num_workers") or "").strip())
            and bool((row.get("decode_num_workers") or "").strip())
        ),
    )


def read_rows(path: str) -> tuple[list[str], list[dict[str, str]], list[CalRow | str]]:
    """(header, raw rows, parsed rows or the error text of each row)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        raw = list(reader)
    parsed: list[CalRow | str] = []
    for i, r in enumerate(raw):
        try:
            parsed.append(parse_row(i, r))
        except (ValueError, ProfilerError) as exc:
            parsed.append(str(exc))
    return header, raw, parsed


def _pad(a: F64) -> F64:
    out = np.zeros((a.shape[0], NFEAT))
    out[:, : a.shape[1]] = a
    return out


def _lay(rows: Sequence[CalRow], attr: str) -> Layout:
    arr = np.asarray([getattr(r, attr) for r in rows], dtype=np.int64)
    return Layout.of(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def feature_blocks(
    rows: Sequence[CalRow], coefs: dict[str, dict[str, list[float]]] | None = None
) -> tuple[F64, F64]:
    """(TPOT features, TTFT features), one row per input row, computed group-wise.

    A prefill worker's queueing depends on how long requests spend decoding: with ``coefs``
    holding a fitted ``dtpot`` set, that is the predicted decode-worker TPOT, exactly what the
    search passes to ``disagg_ttft_ms``; without, the nominal decode step.
    """
    n = len(rows)
    ftpot = np.zeros((n, NFEAT))
    fttft = np.zeros((n, NFEAT))
    groups: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r.arch.name, r.quant, r.sku, r.backend, r.mode)].append(i)
    for idx in groups.values():
        rs = [rows[i] for i in idx]
        r0 = rs[0]
        isl = np.asarray([r.isl for r in rs], dtype=np.float64)
        osl = np.asarray([r.osl for r in rs], dtype=np.float64)
        batch = np.asarray([r.batch for r in rs], dtype=np.float64)
        ph = StepPhysics(r0.arch, r0.gpu, r0.backend, r0.quant, _lay(rs, "layout"))
        agg = r0.mode == "agg"
        ftpot[idx] = _pad(decode_features(ph, isl, osl, batch, agg=agg, cap_batch=True))
        if agg:
            fttft[idx] = _pad(ttft_features(ph, isl, 1, load=batch, osl=osl, agg=True))
        else:
            pph = StepPhysics(r0.arch, r0.gpu, r0.backend, r0.quant, _lay(rs, "p_layout"))
            pb = np.asarray([r.p_batch for r in rs], dtype=np.float64)
            load = np.asarray([r.concurrency / r.p_workers for r in rs], dtype=np.float64)
            if coefs and coefs.get("dtpot"):
                dstep = ftpot[idx] @ _coef_vec(coefs, "dtpot", r0.backend)
            else:
                dstep = ftpot[idx][:, :3].sum(axis=1)  # nominal decode step
            fttft[idx] = _pad(
                ttft_features(pph, isl, pb, load=load, osl=osl, agg=False, decode_step_s=dstep)
            )
    return ftpot, fttft


def metric_keys(rows: Sequence[CalRow]) -> tuple[list[str], list[str]]:
    """Which fitted coefficient set prices each row's TPOT and TTFT."""
    tk = [("tpot" if r.mode == "agg" else "dtpot") for r in rows]
    fk = [("ttft" if r.mode == "agg" else "dttft") for r in rows]
    return tk, fk


def predict(rows: Sequence[CalRow], coefs: dict[str, dict[str, list[float]]]) -> tuple[F64, F64]:
    """(TTFT ms, TPOT ms) per row under ``coefs`` (metric -> backend -> weights)."""
    ftpot, fttft = feature_blocks(rows, coefs)
    tk, fk = metric_keys(rows)
    tpot = np.empty(len(rows))
    ttft = np.empty(len(rows))
    for i, r in enumerate(rows):
        tpot[i] = ftpot[i] @ _coef_vec(coefs, tk[i], r.backend) * 1e3
        ttft[i] = fttft[i] @ _coef_vec(coefs, fk[i], r.backend) * 1e3
    return ttft, tpot


def _coef_vec(coefs: dict[str, dict[str, list[float]]], metric: str, backend: str) -> F64:
    from profiler.estimator import DEFAULT_COEFS

    table = coefs.get(metric, {})
    vals = table.get(backend) or table.get("*") or DEFAULT_COEFS[metric]
    out = np.zeros(NFEAT)
    out[: len(vals)] = vals
    return out


def estimate_csv(in_path: str, out_path: str) -> int:
    """Write ``in_path``'s rows plus pred_ttft_ms, pred_tpot_ms and error; return rows written."""
    from profiler.estimator import load_calibration

    header, raw, parsed = read_rows(in_path)
    ok = [p for p in parsed if isinstance(p, CalRow)]
    coefs = load_calibration().get("coefs", {})
    ttft, tpot = predict(ok, coefs) if ok else (np.zeros(0), np.zeros(0))
    pred = {r.index: (t, p) for r, t, p in zip(ok, ttft, tpot, strict=True)}
    cols = header + [c for c in ("pred_ttft_ms", "pred_tpot_ms", "error") if c not in header]
    with open(out_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for i, r in enumerate(raw):
            out = dict(r)
            item = parsed[i]
            if isinstance(item, str):
                out.update(pred_ttft_ms="", pred_tpot_ms="", error=item)
            else:
                t, p = pred[i]
                out.update(pred_ttft_ms=f"{t:.4f}", pred_tpot_ms=f"{p:.4f}", error="")
            writer.writerow(out)
    return len(raw)
