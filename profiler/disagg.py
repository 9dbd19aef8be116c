"""Disaggregated pricing: the prefill queue at a given utilisation, the utilisation the TTFT
target allows, and rate matching x prefill to y decode workers.

As AIConfigurator does: a prefill worker is priced at its own prefill batch and a
decode worker at the batch its ITL allows; x prefill and y decode workers are rate-matched with
its derates (0.9 prefill, 0.92 decode). Unlike it, the TTFT is priced at the arrival rate the
unit sustains: requests queue at a prefill worker by its utilisation, so the search caps each
pair's prefill utilisation where its TTFT still meets the target, and rate-matches within that.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

MAX_WORKERS_PER_ROLE = 32  # x prefill and y decode workers per disagg unit, 1..32 each, as AIC
PREFILL_DERATE = 0.9  # pipeline bubbles between prefill and decode (AIC): utilisation ceiling
DECODE_DERATE = 0.92  # decode slots never all busy (AIC)
# Prefill utilisations at which each prefill row's TTFT is priced before rate matching; the
# TTFT is flat until about 0.59 (under one prompt at the worker), so the grid is fine above.
UTILISATION_GRID = np.array(
    [0.1, 0.3, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, PREFILL_DERATE], dtype=np.float64
)


def prefill_load(rho: F64, batch: F64) -> F64:
    """Prompts at one prefill worker (waiting or being prefilled) at utilisation ``rho``.

    Batches of ``batch`` prompts take a fixed service time S; at utilisation rho the worker
    sees ``rho * batch / S`` prompts per second, each waiting the M/D/1 queue
    ``rho / (2 (1 - rho)) * S`` before its S of service (Little's law: rate x time). This is the
    concurrency the prefill worker serves, which ``disagg_ttft_ms`` takes as its load; it is
    never less than the batch being prefilled.
    """
    r = np.clip(np.asarray(rho, dtype=np.float64), 0.0, 0.99)
    b = np.asarray(batch, dtype=np.float64)
    load: F64 = np.maximum(r * b * (1.0 + r / (2.0 * (1.0 - r))), b)
    return load


def utilisation_caps(curve: F64, limit: F64) -> F64:
    """Per row, the highest utilisation of :data:`UTILISATION_GRID` whose TTFT (``curve``, one
    non-decreasing row per pair, one column per grid point) is within ``limit``; where even the
    lowest misses, the highest at which the TTFT is still its unloaded value (the closest miss,
    without idling the worker)."""
    n_ok = (curve <= limit[:, None]).sum(axis=1)
    flat = (curve <= curve[:, :1] * (1.0 + 1e-9)).sum(axis=1)
    idx = np.where(n_ok > 0, n_ok, flat) - 1
    caps: F64 = UTILISATION_GRID[np.clip(idx, 0, UTILISATION_GRID.size - 1)]
    return caps


def ttft_at(curve: F64, rho: F64) -> F64:
    """Each row's TTFT at utilisation ``rho``: its ``curve`` over :data:`UTILISATION_GRID`,
    linear in between (held below the first point, whose load is already the batch's)."""
    grid = UTILISATION_GRID
    r = np.clip(rho, grid[0], grid[-1])
    j = np.clip(np.searchsorted(grid, r, side="left"), 1, grid.size - 1)
    rows = np.arange(curve.shape[0])
    lo, hi = curve[rows, j - 1], curve[rows, j]
    w = (r - grid[j - 1]) / (grid[j] - grid[j - 1])
    out: F64 = lo + w * (hi - lo)
    return out


def undominated(group: I64, crit: F64) -> I64:
    """Indices of the rows no other row of the same ``group`` beats: one at least as good on
    every column of ``crit`` (larger is better) and better on one, or identical and earlier.

    Pairing a dominated prefill or decode worker can only yield deployments that the same pairing
    with the row dominating it matches or beats (same GPUs, at least the rate, no worse latency),
    so rate matching skips them.
    """
    keep = np.zeros(group.size, bool)
    for g in np.unique(group):
        idx = np.nonzero(group == g)[0]
        c = crit[idx]
        if c.shape[1] == 2:
            # Two counts: by the first descending (ties: second descending, then earlier), a
            # row survives when its second beats every row before it.
            order = np.lexsort((np.arange(idx.size), -c[:, 1], -c[:, 0]))
            second = c[order, 1]
            best = np.maximum.accumulate(np.concatenate([[-np.inf], second[:-1]]))
            keep[idx[order[second > best]]] = True
            continue
        ge = (c[None, :, :] >= c[:, None, :]).all(axis=2)  # [i, j]: j at least as good as i
        gt = (c[None, :, :] > c[:, None, :]).any(axis=2)
        earlier = np.arange(idx.size)[None, :] < np.arange(idx.size)[:, None]
        beaten = (ge & (gt | earlier)).any(axis=1)
        keep[idx[~beaten]] = True
    out: I64 = np.nonzero(keep)[0].astype(np.int64)
    return out


def keep_per_layout(li: I64, per_gpu: F64, lat: F64, limit: float, keep: int) -> I64:
    """The best rows per layout for rate matching: top ``keep`` by throughput per GPU among rows
    within ``limit``, plus the fastest row (so a closest miss is always there)."""
    if li.size == 0:
        return np.zeros(0, np.int64)
    ok = lat <= limit
    # Sort by layout, then limit-meeting first, then throughput per GPU descending.
    order = np.lexsort((-per_gpu, ~ok, li))
    sli = li[order]
    first = np.searchsorted(sli, sli, side="left")
    rank = np.arange(sli.size) - first
    chosen = order[(rank < keep) & ok[order]]
    fastest = np.lexsort((lat, li))
    fl = li[fastest]
    head = np.ones(fl.size, bool)
    head[1:] = fl[1:] != fl[:-1]
    out: I64 = np.unique(np.concatenate([chosen, fastest[head]])).astype(np.int64)
    return out


def covered_cells(mode: str, total: int, gp: I64, gd: I64) -> int:
    """(pair, x, y) cells rate matching covers for every pairing of prefill rows of widths
    ``gp`` with decode rows of widths ``gd``: those it scores, and those of pairs it skips
    because another pair dominates them."""
    if gp.size == 0 or gd.size == 0:
        return 0
    if mode == "autoscale":
        return int(gp.size * gd.size)
    k = np.arange(1, MAX_WORKERS_PER_ROLE + 1, dtype=np.int64)
    xs, ys = (a.ravel() for a in np.meshgrid(k, k, indexing="ij"))
    up, np_ = np.unique(gp, return_counts=True)
    ud, nd = np.unique(gd, return_counts=True)
    cells = 0
    for g_p, n_p in zip(up, np_, strict=True):
        for g_d, n_d in zip(ud, nd, strict=True):
            valid = int((xs * int(g_p) + ys * int(g_d) <= total).sum())
            cells += int(n_p) * int(n_d) * max(valid, 1)
    return cells


def rate_match(
    mode: str,
    total: int,
    gp: I64,
    gd: I64,
    p_cap: F64,
    d_rate: F64,
    d_batch: I64,
    rate: float | None,
    conc: float | None,
) -> tuple[I64, I64, I64, I64, F64, int]:
    """Per (prefill, decode) pair, the best x prefill : y decode workers (1..32 each) in a unit.

    ``p_cap`` is what one prefill worker may be given (its request rate at the utilisation its
    TTFT allows, at most AIC's 0.9 derate), ``d_rate`` one decode worker's request rate. A unit
    serves min(x p_cap, 0.92 y d_rate) requests/s on x gp + y gd GPUs; the budget holds
    floor(total / unit) units. Default mode maximises what the budget serves; load-match takes
    the fewest GPUs that carry the load; autoscale is one prefill and one decode worker.
    Returns (x, y, units placed, GPUs needed, unit request rate, cells evaluated).
    """
    n = gp.size
    if mode == "autoscale":
        one = np.ones(n, np.int64)
        unit = gp + gd
        r = np.minimum(p_cap, DECODE_DERATE * d_rate)
        rep = (unit <= total).astype(np.int64)
        return one, one.copy(), rep, unit, r, n
    k = np.arange(1, MAX_WORKERS_PER_ROLE + 1, dtype=np.int64)
    xs, ys = (a.ravel() for a in np.meshgrid(k, k, indexing="ij"))
    best_x = np.ones(n, np.int64)
    best_y = np.ones(n, np.int64)
    best_rep = np.zeros(n, np.int64)
    best_need = np.full(n, np.iinfo(np.int64).max // 4, np.int64)
    best_rate = np.zeros(n, np.float64)
    evaluated = 0
    # Pairs share few distinct (gp, gd); each group costs one broadcast over its valid (x, y).
    keys = gp * 4096 + gd
    for key in np.unique(keys):
        idx = np.nonzero(keys == key)[0]
        g_p, g_d = int(gp[idx[0]]), int(gd[idx[0]])
        unit = xs * g_p + ys * g_d
        valid = unit <= total
        if not valid.any():
            valid = unit == unit.min()  # over budget: keep the smallest unit, capped below
        vx, vy, vu = xs[valid], ys[valid], unit[valid]
        evaluated += idx.size * vx.size
        r = np.minimum(
            p_cap[idx, None] * vx[None, :],
            DECODE_DERATE * d_rate[idx, None] * vy[None, :],
        )
        fit = np.maximum(total // vu, 0)[None, :]
        rows = np.arange(idx.size)
        if mode == "load_match":
            if rate is not None:
                want = np.ceil(rate / np.maximum(r, 1e-12))
            else:
                assert conc is not None
                cap_c = (d_batch[idx, None] * vy[None, :]).astype(np.float64)
                want = np.ceil(conc / cap_c)
            want = np.maximum(want, 1)
            need = want * vu[None, :]
            # fewest GPUs, then most requests/s per GPU
            score = -need * 1e6 + r / vu[None, :]
            j = np.argmax(score, axis=1)
            rep = np.minimum(want[rows, j], fit[0, j]).astype(np.int64)
            best_need[idx] = need[rows, j].astype(np.int64)
        else:
            served = r * fit
            # most served within the budget, then fewest GPUs
            score = served - 1e-9 * (fit * vu[None, :])
            j = np.argmax(score, axis=1)
            rep = fit[0, j].astype(np.int64)
            best_need[idx] = (rep * vu[j]).astype(np.int64)
        best_x[idx], best_y[idx] = vx[j], vy[j]
        best_rep[idx] = rep
        best_rate[idx] = r[rows, j]
    return best_x, best_y, best_rep, best_need, best_rate, evaluated


__all__ = [
    "DECODE_DERATE",
    "MAX_WORKERS_PER_ROLE",
    "PREFILL_DERATE",
    "UTILISATION_GRID",
    "covered_cells",
    "keep_per_layout",
    "prefill_load",
    "rate_match",
    "ttft_at",
    "undominated",
    "utilisation_caps",
]
