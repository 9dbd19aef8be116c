"""Extract kernel-efficiency tables from AIConfigurator's per-operation database.

``aiconfigurator-core`` (PyPI, Apache-2.0) ships latencies of individual kernels measured per
GPU, framework and version (``systems/data/<system>/<op>/<framework>/<version>/*.parquet``:
GEMM, MoE, attention, MLA, all-reduce). Only these kernel-level measurements are read; its
end-to-end serving table (``systems/silicon_sample.csv``) is never opened: it overlaps the
data the estimator is judged on.

What is kept is small: per SKU x framework x dtype, the share of the roofline (peak FLOPs or
peak memory bandwidth of ``data/hardware.json``) grouped MoE expert GEMMs and causal prefill
attention reach, binned by size (``util = roofline time / measured time``), and the engines'
all-reduce latency by GPU count and message size. (Dense GEMM and decode attention tables were
tried and left out: their small-shape latencies carry per-kernel costs the engines fuse, and
the decisions on measured serving data got worse; see ``bench/decision``.)
``profiler.kernels`` reads the result (``data/kernels.json``, about 120 KB) at run time, so
neither the 80 MB wheel nor a parquet reader is a runtime dependency.

Usage (development only; needs ``pyarrow``, from the ``dev`` extra)::

    pip download --no-deps aiconfigurator-core==0.12.0 -d /tmp/aic
    python -m profiler.kernel_tables --wheel /tmp/aic/aiconfigurator_core-0.12.0-*.whl
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import re
import sys
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from profiler.errors import ProfilerError
from profiler.hardware import GpuSpec, get_gpu

F64 = NDArray[np.float64]
OUT = Path(__file__).parent / "data" / "kernels.json"
AIC_VERSION = "0.12.0"
FRAMEWORKS = ("vllm", "sglang", "trtllm")

# Size bins (log2) of every table; the run-time lookup interpolates between bin centres.
TPE_BINS = list(range(-6, 11))  # MoE tokens per expert: 1/64 .. 1024
EW_BINS = list(range(24, 37))  # MoE expert bytes on one GPU: 16 MiB .. 64 GiB
ISL_BINS = list(range(6, 18))  # prefill attention sequence length: 64 .. 131072
AR_BINS = list(range(7, 29))  # all-reduce message elements: 128 .. 256 Mi

_MOE_DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8b", "nvfp4": "fp4"}
_WB = {"bf16": 2.0, "fp8": 1.0, "fp8b": 1.0, "fp4": 0.5625}


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


class Source:
    """The ``systems/data`` tree, from an unpacked directory or straight from the wheel."""

    def __init__(self, path: str) -> None:
        self.zip: zipfile.ZipFile | None = None
        if path.endswith(".whl") or zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            self.names = [n for n in self.zip.namelist() if "/systems/data/" in n]
        else:
            root = Path(path)
            self.names = [str(p) for p in root.rglob("*.parquet")]
        if any(n.endswith("silicon_sample.csv") for n in self.names):  # pragma: no cover
            raise ProfilerError("refusing a tree that holds end-to-end measurements")

    def files(self, op: str, pattern: str) -> list[tuple[str, str, str]]:
        """(system, framework, file) of ``op`` matching ``pattern``, newest version first.

        Tables are filled newest first and never overwritten, so a dtype an older version
        measured still counts where a newer one re-measured only part of the dtypes.
        """
        found: list[tuple[tuple[int, ...], str, str, str]] = []
        rx = re.compile(rf"systems/data/([^/]+)/{op}/([^/]+)/([^/]+)/{pattern}$")
        for n in self.names:
            m = rx.search(n.replace("\\", "/"))
            if m:
                found.append((_version_key(m.group(3)), m.group(1), m.group(2).lower(), n))
        found.sort(key=lambda f: (f[1], f[2], tuple(-x for x in f[0])))
        return [(system, fw, name) for _, system, fw, name in found]

    def table(self, name: str) -> dict[str, F64 | NDArray[Any]]:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        if self.zip is not None:
            data = pq.read_table(io.BytesIO(self.zip.read(name)))
        else:
            data = pq.read_table(name)
        return {c: data.column(c).to_numpy(zero_copy_only=False) for c in data.column_names}


def _sku(system: str) -> GpuSpec | None:
    try:
        return get_gpu(system)
    except (ProfilerError, ValueError):
        return None


def _peak(gpu: GpuSpec, dtype: str) -> float:
    if dtype == "fp4" and gpu.fp4_tflops:
        return gpu.fp4_tflops * 1e12
    if dtype in ("fp8", "fp8b", "fp4") and gpu.fp8_tflops:
        return gpu.fp8_tflops * 1e12
    return gpu.bf16_tflops * 1e12


def _grid2(
    x: F64, y: F64, v: F64, xb: Sequence[int], yb: Sequence[int], util: bool = True
) -> list[list[float]]:
    """Median of ``v`` per (round(x), round(y)) bin; empty bins take the nearest filled one.

    Utilisations are clipped to a sane range; latencies (``util=False``) are kept as measured.
    """
    out = np.full((len(xb), len(yb)), np.nan)
    xi = np.clip(np.rint(x).astype(int) - xb[0], 0, len(xb) - 1)
    yi = np.clip(np.rint(y).astype(int) - yb[0], 0, len(yb) - 1)
    cells: dict[tuple[int, int], list[float]] = defaultdict(list)
    for a, b, c in zip(xi, yi, v, strict=True):
        if np.isfinite(c) and c > 0:
            cells[(int(a), int(b))].append(float(c))
    for (a, b), vals in cells.items():
        out[a, b] = float(np.median(vals))
    filled = np.argwhere(np.isfinite(out))
    if not len(filled):
        return []
    for a in range(len(xb)):
        for b in range(len(yb)):
            if not np.isfinite(out[a, b]):
                d = (filled[:, 0] - a) ** 2 * 4 + (filled[:, 1] - b) ** 2
                fa, fb = filled[int(np.argmin(d))]
                out[a, b] = out[fa, fb]
    if util:
        return [[round(float(c), 4) for c in row] for row in np.clip(out, 0.005, 1.5)]
    return [[float(f"{c:.4g}") for c in row] for row in out]


def _grid1(x: F64, v: F64, xb: Sequence[int], util: bool = True) -> list[float]:
    rows = _grid2(x, np.zeros_like(x), v, xb, [0], util)
    return [r[0] for r in rows]


def _col(t: dict[str, Any], name: str, default: object) -> NDArray[Any]:
    """Column ``name``, or ``default`` for every row where an older table lacks it."""
    if name in t:
        return np.asarray(t[name])
    return np.full(len(t["latency"]), default)


def _each(src: Source, op: str, pattern: str) -> Iterator[tuple[str, str, GpuSpec, dict[str, Any]]]:
    for system, fw, name in src.files(op, pattern):
        gpu = _sku(system)
        if gpu is None or fw not in FRAMEWORKS:
            continue
        yield gpu.sku, fw, gpu, src.table(name)


def moe_tables(src: Source) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sku, fw, gpu, t in _each(src, "moe", r"moe_perf\.parquet"):
        f = {
            c: t[c].astype(np.float64)
            for c in (
                "num_tokens",
                "hidden_size",
                "inter_size",
                "topk",
                "num_experts",
                "moe_tp_size",
                "moe_ep_size",
            )
        }
        lat = t["latency"].astype(np.float64) / 1e3
        dts = t["moe_dtype"].astype(str)
        dist = t["distribution"].astype(str)
        pref = "power_law_1.01" if (dist == "power_law_1.01").any() else "balanced"
        for raw, dt in _MOE_DTYPES.items():
            sel = (dts == raw) & (dist == pref)
            if sel.sum() < 50:
                continue
            g = {c: v[sel] for c, v in f.items()}
            e_loc = g["num_experts"] / g["moe_ep_size"]
            per_expert = 3 * g["hidden_size"] * g["inter_size"] * _WB[dt] / g["moe_tp_size"]
            touched = e_loc * (1 - np.power(1 - g["topk"] / g["num_experts"], g["num_tokens"]))
            flops = (
                2
                * g["num_tokens"]
                * g["topk"]
                * 3
                * g["hidden_size"]
                * g["inter_size"]
                / (g["moe_tp_size"] * g["moe_ep_size"])
            )
            sol = np.maximum(touched * per_expert / (gpu.mem_bw_gbps * 1e9), flops / _peak(gpu, dt))
            tpe = np.log2(g["num_tokens"] * g["topk"] / g["num_experts"])
            grid = _grid2(tpe, np.log2(e_loc * per_expert), sol / lat[sel], TPE_BINS, EW_BINS)
            out.setdefault(sku, {}).setdefault(fw, {}).setdefault(dt, grid)
    return out


def attention_tables(src: Source) -> dict[str, Any]:
    """Causal prefill attention: share of BF16 peak by sequence length."""
    ctx: dict[str, Any] = {}
    for sku, fw, gpu, t in _each(src, "attention", r"context_attention_perf\.parquet"):
        sel = (
            (_col(t, "window_size", 0) == 0)
            & (_col(t, "attn_dtype", "bfloat16").astype(str) == "bfloat16")
            & (t["batch_size"] <= 4)
            & (t["num_heads"] >= 8)
        )
        b, s = t["batch_size"][sel].astype(float), t["isl"][sel].astype(float)
        h, d = t["num_heads"][sel].astype(float), t["head_dim"][sel].astype(float)
        flops = b * 2 * h * d * s * s  # QK^T and PV, causal half of 2 * 2 * h * d * s^2
        util = flops / (gpu.bf16_tflops * 1e12) / (t["latency"][sel].astype(float) / 1e3)
        ctx.setdefault(sku, {}).setdefault(fw, _grid1(np.log2(s), util, ISL_BINS))
    return {"context": ctx}


def allreduce_tables(src: Source) -> dict[str, Any]:
    """Latency (s) of the engines' own all-reduce by GPU count and message size (elements)."""
    out: dict[str, Any] = {}
    for sku, fw, _gpu, t in _each(src, "comm", r"custom_allreduce_perf\.parquet"):
        src_col = t.get("backend", t["kernel_source"]).astype(str)
        graph = np.asarray(["eager" not in s for s in src_col])
        for n in sorted({int(x) for x in t["num_gpus"]}):
            sel = graph & (t["num_gpus"] == n)
            if sel.sum() < 5:
                continue
            lat = t["latency"][sel].astype(float) / 1e3
            size = np.log2(t["message_size"][sel].astype(float))
            out.setdefault(sku, {}).setdefault(fw, {}).setdefault(
                str(n), _grid1(size, lat, AR_BINS, util=False)
            )
    return out


def extract(path: str) -> dict[str, Any]:
    src = Source(path)
    return {
        "note": "Share of roofline each kernel reaches (util = roofline / measured), binned by "
        "size (log2), per SKU x framework x dtype; all-reduce latency in seconds. Extracted "
        f"from aiconfigurator-core=={AIC_VERSION} kernel tables (systems/data, Apache-2.0) by "
        "python -m profiler.kernel_tables; no end-to-end measurement is read.",
        "bins": {
            "tpe": TPE_BINS,
            "ew": EW_BINS,
            "isl": ISL_BINS,
            "ar": AR_BINS,
        },
        "moe": moe_tables(src),
        "attention": attention_tables(src),
        "allreduce": allreduce_tables(src),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiler.kernel_tables", description=__doc__)
    ap.add_argument("--wheel", required=True, help="aiconfigurator-core wheel, or its data dir")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    paths = glob.glob(args.wheel)
    if not paths:
        print(f"--wheel: nothing at {args.wheel!r}", file=sys.stderr)
        return 2
    doc = extract(paths[0])
    Path(args.out).write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"kernel tables -> {args.out} ({Path(args.out).stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
