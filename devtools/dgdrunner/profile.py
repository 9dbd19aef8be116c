"""The planner's profile data (``prefill_raw_data.json`` + ``decode_raw_data.json``, what the
profiler puts in the planner-profile-data ConfigMap) as the mocker's own timing table.

Dynamo's mocker reads a profiler results directory by fitting the planner's regression models
(``dynamo.planner``, which needs ``aisimulate_core``, a package no reachable registry serves); it
also takes the table directly: an NPZ with ``prefill_isl``/``prefill_ttft_ms`` and
``decode_itl[active_kv_tokens, context_length]``. This builds that table by interpolating the
profiler's own points, so the mocker simulates exactly the per-engine timing the profiler
predicted (prefill TTFT against ISL; decode ITL against batch and context).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

RESOLUTION = 100


def decode_itl_table(
    decode: Mapping[str, Any], resolution: int = RESOLUTION
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(active KV tokens grid, context length grid, ITL ms [kv, ctx])."""
    max_kv = float(decode["max_kv_tokens"])
    ctx = np.asarray(decode["y_context_length"], dtype=np.float64)
    kv = np.asarray(decode["x_kv_usage"], dtype=np.float64) * max_kv
    itl = np.asarray(decode["z_itl"], dtype=np.float64)
    batch = kv / ctx
    rows = []  # per sampled context length: ITL against batch
    for c in np.unique(ctx):
        sel = ctx == c
        order = np.argsort(batch[sel])
        rows.append((float(c), batch[sel][order], itl[sel][order]))
    kv_grid = np.linspace(0.0, max_kv, resolution)
    ctx_grid = np.linspace(1.0, max(c for c, _, _ in rows), resolution)
    row_ctx = np.array([c for c, _, _ in rows])
    table = np.zeros((resolution, resolution))
    for j, c in enumerate(ctx_grid):
        b = np.maximum(kv_grid / c, 1.0)
        per_row = np.array([np.interp(b, bx, by) for _, bx, by in rows])  # [rows, kv]
        if len(rows) == 1:
            table[:, j] = per_row[0]
        else:
            for i in range(resolution):
                table[i, j] = np.interp(c, row_ctx, per_row[:, i])
    return kv_grid, ctx_grid, table


def write_mocker_npz(data: Mapping[str, str], out: Path) -> Path:
    """``data``: the ConfigMap's two JSON files. Writes and returns ``out`` (an .npz)."""
    prefill = json.loads(data["prefill_raw_data.json"])
    decode = json.loads(data["decode_raw_data.json"])
    isl = np.asarray(prefill["prefill_isl"], dtype=np.float64)
    ttft = np.asarray(prefill["prefill_ttft"], dtype=np.float64)
    order = np.argsort(isl)
    kv_grid, ctx_grid, itl = decode_itl_table(decode)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        prefill_isl=isl[order],
        prefill_ttft_ms=ttft[order],
        decode_active_kv_tokens=kv_grid,
        decode_context_length=ctx_grid,
        decode_itl=itl,
    )
    return out


def max_kv_tokens(data: Mapping[str, str]) -> int:
    return int(float(json.loads(data["decode_raw_data.json"])["max_kv_tokens"]))
