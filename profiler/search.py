"""The SLA search: every worker layout, batch size and prefill:decode ratio, scored in bulk.

The grid is built as flat numpy arrays and costed with a handful of calls to the estimator per
backend, so a search over tens of thousands of deployments stays well inside a reconcile's time
budget. Each backend is searched over the layouts it runs (``profiler.layouts``) with its own
KV capacity, so ``backend: auto`` picks by each backend's predicted performance. Rows that
cannot hold their KV cache are dropped; the rest are kept even when they miss the SLA, because
when nothing meets it the user is owed the closest configuration and by how much it misses, not
a silent failure.

"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from profiler.candidates import Candidate, SearchResult, Targets, Worker
from profiler.errors import InfeasibleError
from profiler.estimator import (
    agg_serving,
    decode_tpot_ms,
    disagg_ttft_ms,
    kv_capacity_tokens,
    prefill_busy_ms,
    prefill_ttft_ms,
)
from profiler.layouts import layout_rows, min_gpus_to_fit, worker_layouts

if TYPE_CHECKING:
    from profiler.request import PlanRequest

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# AIConfigurator's default sweeps (profiler.md §1.4-1.5): concurrency per aggregated worker, and
# batch per decode worker; batches are per attention-DP rank, so they scale with dp.
AGG_BATCHES = np.array(
    [
        *range(1, 16),
        *range(16, 32, 4),
        *range(32, 64, 8),
        *range(64, 256, 16),
        *range(256, 512, 32),
        *(512, 640, 768, 896, 1024),
    ],
    dtype=np.int64,
)
DECODE_BATCHES = np.array(
    [*range(1, 16), *range(16, 32, 2), *range(32, 128, 4), *range(128, 512, 8), 512],
    dtype=np.int64,
)
PREFILL_TOKENS_PER_BATCH = 16384  # prefill batches up to floor(16384 / ISL) prompts, as AIC
MAX_WORKERS_PER_ROLE = 32  # x prefill and y decode workers per disagg unit, 1..32 each, as AIC
PREFILL_DERATE = 0.9  # pipeline bubbles between prefill and decode (AIC)
DECODE_DERATE = 0.92  # decode slots never all busy (AIC)
PREFILL_KEEP = 32  # best prefill rows kept per layout for rate matching (AIC: top 32)
DECODE_KEEP = 16  # best decode rows kept per layout for rate matching (AIC: top 16)
MAX_RATE_MATCH_WORK = 4_000_000  # (pair, x, y) cells per backend before keeps are halved
TOP_CANDIDATES = 10
PARETO_POINTS = 32  # the front is thinned to this many points for the result


# ------------------------------------------------------------------------------------------------
# The search


@dataclass
class _Pool:
    """Every scored deployment of the search, as parallel arrays (one row per deployment)."""

    mode: list[I64] = field(default_factory=list)  # 0 agg, 1 disagg
    backend: list[I64] = field(default_factory=list)
    ref: list[I64] = field(default_factory=list)  # row in the backend's agg or pair table
    sig: list[I64] = field(default_factory=list)  # layout signature (dedup of the top list)
    ttft: list[F64] = field(default_factory=list)
    itl: list[F64] = field(default_factory=list)
    gpus: list[I64] = field(default_factory=list)
    need: list[I64] = field(default_factory=list)
    tok: list[F64] = field(default_factory=list)
    req: list[F64] = field(default_factory=list)
    rep: list[I64] = field(default_factory=list)  # agg replicas, or disagg unit replicas
    xs: list[I64] = field(default_factory=list)
    eff: list[F64] = field(default_factory=list)  # per-GPU efficiency the autoscale pick ranks by
    ys: list[I64] = field(default_factory=list)

    def cat(self, name: str) -> NDArray[Any]:
        parts: list[NDArray[Any]] = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class _BackendTables:
    lay: I64  # (n, 4) tp, pp, ep, dp: the layouts this backend was searched over
    agg: dict[str, NDArray[Any]] = field(default_factory=dict)
    prefill: dict[str, NDArray[Any]] = field(default_factory=dict)
    decode: dict[str, NDArray[Any]] = field(default_factory=dict)
    pairs: tuple[I64, I64] = field(  # indices into the prefill and decode tables
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )


@dataclass(frozen=True)
class _Ctx:
    """What every part of one backend's search shares: the request, its targets, the backend
    and its layout table."""

    req: PlanRequest
    targets: Targets
    mode: str
    backend: str
    lay: I64  # (n, 4) tp, pp, ep, dp
    lay_gpus: I64
    cap: F64  # KV tokens per worker of each layout, on this backend


def _backend_layouts(req: PlanRequest, backend: str) -> tuple[I64, F64]:
    """The layouts ``backend`` runs within the budget and each one's KV capacity (0: the
    weights do not fit)."""
    layouts = worker_layouts(req.arch, req.gpu, req.total_gpus, backend)
    lay = np.asarray(layouts, dtype=np.int64).reshape(-1, 4)
    if lay.shape[0] == 0:
        return lay, np.zeros(0)
    cap = np.asarray(
        kv_capacity_tokens(req.arch, req.gpu, req.quant, layout_rows(lay), backend=backend),
        dtype=np.float64,
    )
    return lay, np.where(np.isfinite(cap), cap, 0.0)


def search(req: PlanRequest, progress: Callable[[str, str], None] | None = None) -> SearchResult:
    """Score the whole grid for every backend and pick per the request's mode (§5.5)."""
    quant = req.quant
    isl, osl, total = req.isl, req.osl, req.total_gpus
    grids = [_backend_layouts(req, b) for b in req.backends]
    if not any(lay.shape[0] for lay, _ in grids):
        raise InfeasibleError(f"no worker layout of {req.gpu_sku} GPUs fits a budget of {total}")
    if not any((cap >= isl + osl).any() for _, cap in grids):
        least = min_gpus_to_fit(req.arch, req.gpu, quant, isl, osl, total)
        needs = f"it needs at least {least} GPUs" if least else "no layout this profiler knows fits"
        raise InfeasibleError(
            f"{req.model} ({quant}) does not fit in {total} {req.gpu_sku} GPUs with isl {isl} + "
            f"osl {osl}; {needs}"
        )
    targets = Targets(req.ttft_ms, req.itl_ms, req.e2e_latency_ms, osl)
    mode = req.picking_mode
    disagg_only = mode == "autoscale" or req.mocker
    pool = _Pool()
    evaluated = 0
    tables: list[_BackendTables] = []
    for bi, (backend, (lay, cap)) in enumerate(zip(req.backends, grids, strict=True)):
        table = _BackendTables(lay)
        tables.append(table)
        if lay.shape[0] == 0:
            continue
        ctx = _Ctx(req, targets, mode, backend, lay, lay[:, 0] * lay[:, 1] * lay[:, 3], cap)
        if progress is not None:
            progress("SweepingPrefill", f"estimating {backend} on {lay.shape[0]} worker layouts")
        if not disagg_only:
            table.agg = _agg_rows(ctx, bi, pool)
            evaluated += int(table.agg["li"].size)
        evaluated += _disagg_rows(ctx, bi, pool, table)

    if progress is not None:
        progress("SelectingConfig", f"picking among {evaluated} configurations ({mode})")
    cols = {k: pool.cat(k) for k in pool.__dataclass_fields__}
    usable = cols["rep"] > 0 if pool.mode else np.zeros(0, bool)
    if not usable.any():
        why = (
            "; the planner and the mocker need a disaggregated deployment (a prefill and a decode "
            "worker), which does not fit"
            if disagg_only
            else ""
        )
        raise InfeasibleError(
            f"no configuration of {req.model} fits {total} {req.gpu_sku} GPUs{why}"
        )
    miss = targets.miss(cols["ttft"], cols["itl"])
    order = _rank(req, cols, miss, usable)
    order = order[usable[order]]
    top = _top_unique(order, cols["sig"] + cols["backend"] * 10**9 + cols["mode"] * 10**12)
    pareto = _pareto(cols, usable)
    cands = [_candidate(req, tables, cols, miss, int(i), bool(pareto[i])) for i in top]
    chosen = cands[0]
    warnings = _warnings(req, chosen, targets, miss[top[0]])
    front = np.nonzero(pareto)[0]
    front = front[np.argsort(1000.0 / cols["itl"][front])]
    if front.size > PARETO_POINTS:
        front = front[np.linspace(0, front.size - 1, PARETO_POINTS).round().astype(np.int64)]
    curve = [_candidate(req, tables, cols, miss, int(i), True) for i in front]
    return SearchResult(chosen, cands, evaluated, warnings, curve)


def _agg_rows(ctx: _Ctx, bi: int, pool: _Pool) -> dict[str, NDArray[Any]]:
    """Aggregated workers: every layout at every concurrency, replicated to the mode's need."""
    req, lay = ctx.req, ctx.lay
    isl, osl = req.isl, req.osl
    li, b = _grid(lay.shape[0], AGG_BATCHES)
    b = b * lay[li, 3]
    fits = ctx.cap[li] >= b * (isl + osl)
    li, b = li[fits], b[fits]
    ttft, tpot = agg_serving(
        req.arch, req.gpu, ctx.backend, req.quant, layout_rows(lay[li]), isl, osl, b
    )
    ttft, tpot = np.asarray(ttft, np.float64), np.asarray(tpot, np.float64)
    ok = np.isfinite(ttft) & np.isfinite(tpot) & (ttft > 0) & (tpot > 0)
    li, b, ttft, tpot = li[ok], b[ok], ttft[ok], tpot[ok]
    req_s = b * 1000.0 / (ttft + max(osl - 1, 1) * tpot)  # per worker, Little's law
    g = ctx.lay_gpus[li]
    rep, need = _replicas(
        ctx.mode, req.total_gpus, g, req_s, b.astype(np.float64), req.request_rate, req.concurrency
    )
    n = li.size
    pool.mode.append(np.zeros(n, np.int64))
    pool.backend.append(np.full(n, bi, np.int64))
    pool.ref.append(np.arange(n, dtype=np.int64))
    pool.sig.append(li.astype(np.int64))
    pool.ttft.append(ttft)
    pool.itl.append(tpot)
    pool.gpus.append(rep * g)
    pool.need.append(need)
    pool.tok.append(rep * req_s * osl)
    pool.req.append(rep * req_s)
    pool.rep.append(rep)
    pool.xs.append(np.ones(n, np.int64))
    pool.ys.append(np.zeros(n, np.int64))
    pool.eff.append(req_s * osl / g)
    return {"li": li, "b": b, "ttft": ttft, "tpot": tpot}


def _disagg_rows(ctx: _Ctx, bi: int, pool: _Pool, table: _BackendTables) -> int:
    """Prefill workers (layout x prompts per batch) and decode workers (layout x concurrency),
    the best of each per layout paired, and each pair rate-matched into x:y workers."""
    req, lay, lay_gpus, targets = ctx.req, ctx.lay, ctx.lay_gpus, ctx.targets
    arch, gpu, quant, backend = req.arch, req.gpu, req.quant, ctx.backend
    isl, osl, total = req.isl, req.osl, req.total_gpus
    pmax = max(1, PREFILL_TOKENS_PER_BATCH // isl)
    pli, pb = _grid(lay.shape[0], np.arange(1, pmax + 1, dtype=np.int64))
    pb = pb * lay[pli, 3]
    keep = ctx.cap[pli] >= pb * isl
    pli, pb = pli[keep], pb[keep]
    # Unloaded prefill time: what sets a prefill worker's throughput, and a lower bound of its
    # TTFT that pre-selects rows; the TTFT under load is priced once x:y is known (below).
    pttft = np.asarray(
        prefill_ttft_ms(arch, gpu, backend, quant, layout_rows(lay[pli]), isl, pb), np.float64
    )
    dli, db = _grid(lay.shape[0], DECODE_BATCHES)
    db = db * lay[dli, 3]
    keep = ctx.cap[dli] >= db * (isl + osl)
    dli, db = dli[keep], db[keep]
    dtpot = np.asarray(
        decode_tpot_ms(arch, gpu, backend, quant, layout_rows(lay[dli]), isl, osl, db), np.float64
    )
    pbusy = np.asarray(
        prefill_busy_ms(arch, gpu, backend, quant, layout_rows(lay[pli]), isl, pb), np.float64
    )
    okp = np.isfinite(pttft) & (pttft > 0) & np.isfinite(pbusy) & (pbusy > 0)
    okd = np.isfinite(dtpot) & (dtpot > 0)
    pli, pb, pttft, pbusy = pli[okp], pb[okp], pttft[okp], pbusy[okp]
    dli, db, dtpot = dli[okd], db[okd], dtpot[okd]
    evaluated = int(pli.size + dli.size)
    p_rate = pb * 1000.0 / pbusy  # requests/s of one prefill worker (its GPU time per batch)
    d_rate = db * 1000.0 / (dtpot * max(osl - 1, 1))  # requests/s of one decode worker
    # Large budgets make every x:y ratio fit; fewer rows per layout keep the cost bounded.
    ratios = min(total * total // 4 + total, MAX_WORKERS_PER_ROLE**2)
    pkeep, dkeep = PREFILL_KEEP, DECODE_KEEP
    while True:
        psel = _keep_per_layout(pli, p_rate / lay_gpus[pli], pttft, targets, "ttft", pkeep)
        dsel = _keep_per_layout(dli, d_rate / lay_gpus[dli], dtpot, targets, "itl", dkeep)
        if psel.size * dsel.size * ratios <= MAX_RATE_MATCH_WORK or pkeep == dkeep == 1:
            break
        pkeep, dkeep = max(pkeep // 2, 1), max(dkeep // 2, 1)
    pi, di = (a.ravel() for a in np.meshgrid(psel, dsel, indexing="ij"))
    table.prefill = {"li": pli, "b": pb, "ttft": pttft, "rate": p_rate}
    table.decode = {"li": dli, "b": db, "tpot": dtpot, "rate": d_rate}
    table.pairs = (pi, di)
    if pi.size == 0:
        return evaluated
    gp, gd = lay_gpus[pli[pi]], lay_gpus[dli[di]]
    x, y, rep, need, rate, n_eval = _rate_match(
        ctx.mode, total, gp, gd, p_rate[pi], d_rate[di], db[di], req.request_rate, req.concurrency
    )
    n = pi.size
    # TTFT at the prefill worker with the unit's requests in flight: y decode workers of db
    # requests share x prefill workers. This is the quantity the calibration fits on measured
    # disaggregated runs (load per prefill worker), so no extra queueing factor applies.
    load = y * db[di] / np.maximum(x, 1)
    ttft = np.asarray(
        disagg_ttft_ms(
            arch,
            gpu,
            backend,
            quant,
            layout_rows(lay[pli[pi]]),
            isl,
            load,
            osl=osl,
            tpot_ms=dtpot[di],
            batch=pb[pi],
        ),
        np.float64,
    )
    ttft = np.where(np.isfinite(ttft), np.maximum(ttft, pttft[pi]), np.inf)
    pool.mode.append(np.ones(n, np.int64))
    pool.backend.append(np.full(n, bi, np.int64))
    pool.ref.append(np.arange(n, dtype=np.int64))
    pool.sig.append(lay.shape[0] + pli[pi] * lay.shape[0] + dli[di])
    pool.ttft.append(ttft)
    pool.itl.append(dtpot[di])
    pool.gpus.append(rep * (x * gp + y * gd))
    pool.need.append(need)
    pool.tok.append(rep * rate * osl)
    pool.req.append(rep * rate)
    pool.rep.append(rep)
    pool.xs.append(x)
    pool.ys.append(y)
    # Balanced pools (what a planner converges to): 1 / (GPU-seconds per request).
    pool.eff.append(osl / (gp / (PREFILL_DERATE * p_rate[pi]) + gd / (DECODE_DERATE * d_rate[di])))
    return evaluated + n_eval


def _grid(n_layouts: int, batches: I64) -> tuple[I64, I64]:
    li = np.repeat(np.arange(n_layouts, dtype=np.int64), batches.size)
    b = np.tile(batches, n_layouts)
    return li, b


def _replicas(
    mode: str,
    total: int,
    unit_gpus: I64,
    unit_req_s: F64,
    unit_conc: F64,
    rate: float | None,
    conc: float | None,
) -> tuple[I64, I64]:
    """(replicas placed, GPUs the load needs): the budget tiled, or the load matched and capped."""
    fit = (total // unit_gpus).astype(np.int64)
    if mode != "load_match":
        return fit, fit * unit_gpus
    if rate is not None:
        want = np.ceil(rate / np.maximum(unit_req_s, 1e-12))
    else:
        assert conc is not None
        want = np.ceil(conc / np.maximum(unit_conc, 1e-12))
    want = np.maximum(want, 1).astype(np.int64)
    return np.minimum(want, fit), want * unit_gpus


def _keep_per_layout(
    li: I64, per_gpu: F64, lat: F64, targets: Targets, which: str, keep: int
) -> I64:
    """The best rows per layout for rate matching: top ``keep`` by throughput per GPU among rows
    that meet their side of the SLA, plus the fastest row (so a closest miss is always there)."""
    if li.size == 0:
        return np.zeros(0, np.int64)
    if targets.e2e_ms is not None:
        limit = targets.e2e_ms if which == "ttft" else targets.e2e_ms / targets.osl
    else:
        limit = float(targets.ttft_ms if which == "ttft" else targets.itl_ms)  # type: ignore[arg-type]
    ok = lat <= limit
    # Sort by layout, then SLA-meeting first, then throughput per GPU descending.
    order = np.lexsort((-per_gpu, ~ok, li))
    sli = li[order]
    first = np.searchsorted(sli, sli, side="left")
    rank = np.arange(sli.size) - first
    chosen = order[(rank < keep) & ok[order]]
    fastest = np.lexsort((lat, li))
    fl = li[fastest]
    head = np.ones(fl.size, bool)
    head[1:] = fl[1:] != fl[:-1]
    return np.unique(np.concatenate([chosen, fastest[head]]))


def _rate_match(
    mode: str,
    total: int,
    gp: I64,
    gd: I64,
    p_rate: F64,
    d_rate: F64,
    d_batch: I64,
    rate: float | None,
    conc: float | None,
) -> tuple[I64, I64, I64, I64, F64, int]:
    """Per (prefill, decode) pair, the best x prefill : y decode workers (1..32 each) in a unit.

    A unit serves min(0.9 x P, 0.92 y D) requests/s on x gp + y gd GPUs; the budget holds
    floor(total / unit) units. Default mode maximises what the budget serves; load-match takes
    the fewest GPUs that carry the load; autoscale is one prefill and one decode worker.
    """
    n = gp.size
    if mode == "autoscale":
        one = np.ones(n, np.int64)
        unit = gp + gd
        r = np.minimum(PREFILL_DERATE * p_rate, DECODE_DERATE * d_rate)
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
            PREFILL_DERATE * p_rate[idx, None] * vx[None, :],
            DECODE_DERATE * d_rate[idx, None] * vy[None, :],
        )
        fit = np.maximum(total // vu, 0)[None, :]
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
            rows = np.arange(idx.size)
            rep = np.minimum(want[rows, j], fit[0, j]).astype(np.int64)
            best_need[idx] = need[rows, j].astype(np.int64)
        else:
            served = r * fit
            # most served within the budget, then fewest GPUs
            score = served - 1e-9 * (fit * vu[None, :])
            j = np.argmax(score, axis=1)
            rows = np.arange(idx.size)
            rep = fit[0, j].astype(np.int64)
            best_need[idx] = (rep * vu[j]).astype(np.int64)
        best_x[idx], best_y[idx] = vx[j], vy[j]
        best_rep[idx] = rep
        best_rate[idx] = r[rows, j]
    return best_x, best_y, best_rep, best_need, best_rate, evaluated


def _rank(req: PlanRequest, c: dict[str, NDArray[Any]], miss: F64, usable: NDArray[Any]) -> I64:
    """Row order, best first: SLA-meeting rows before misses (closest miss first), then the
    mode's objective (§5.5) and ``sla.optimizationType``."""
    met = (miss <= 1.0) & usable
    any_met = bool(met.any())
    miss_key = np.where(met, 0.0, miss) if any_met else miss
    miss_key = np.where(usable, miss_key, np.inf)
    gpus = c["gpus"].astype(np.float64)
    tok = c["tok"]
    per_gpu = tok / np.maximum(gpus, 1)
    latency = c["ttft"] + req.osl * c["itl"]
    user = 1000.0 / c["itl"]
    mode = req.picking_mode
    keys: tuple[NDArray[Any], ...]
    if req.optimization_type == "latency":
        keys = (-per_gpu, latency, miss_key)
    elif mode == "load_match":
        keys = (-user, -per_gpu, c["need"].astype(np.float64), miss_key)
    elif mode == "autoscale":
        keys = (-user, -c["eff"], miss_key)
    else:
        keys = (-user, gpus, -tok, miss_key)
    order: I64 = np.lexsort(keys).astype(np.int64)
    return order


def _top_unique(order: I64, sig: I64) -> list[int]:
    """The best row of each distinct layout, in rank order, up to TOP_CANDIDATES, plus the best
    aggregated, disaggregated and per-backend rows when not already in, so the table compares
    them."""
    s = sig[order]
    _, first = np.unique(s, return_index=True)
    firsts = order[np.sort(first)]
    top = [int(i) for i in firsts[:TOP_CANDIDATES]]
    for group in (sig // 10**12, (sig // 10**9) % 1000):
        for g in np.unique(group[firsts]):
            if not any(int(group[i]) == int(g) for i in top):
                top.append(int(firsts[group[firsts] == g][0]))
    return top


def _pareto(c: dict[str, NDArray[Any]], usable: NDArray[Any]) -> NDArray[np.bool_]:
    """Rows on the front of tokens/s/GPU against tokens/s/user (none better in both)."""
    y = np.where(usable, c["tok"] / np.maximum(c["gpus"], 1), -np.inf)
    x = 1000.0 / c["itl"]
    order = np.lexsort((-y, -x))
    best = np.maximum.accumulate(y[order])
    prev = np.concatenate([[-np.inf], best[:-1]])
    front = np.zeros(x.size, bool)
    front[order] = (y[order] > prev) & usable[order]
    return front


def _candidate(
    req: PlanRequest,
    tables: list[_BackendTables],
    c: dict[str, NDArray[Any]],
    miss: F64,
    i: int,
    pareto: bool,
) -> Candidate:
    backend = req.backends[int(c["backend"][i])]
    t = tables[int(c["backend"][i])]
    lay = t.lay
    ref, rep = int(c["ref"][i]), int(c["rep"][i])
    if int(c["mode"][i]) == 0:
        tp, pp, ep, dp = (int(v) for v in lay[int(t.agg["li"][ref])])
        workers: tuple[Worker, ...] = (Worker("agg", tp, pp, ep, dp, int(t.agg["b"][ref]), rep),)
        mode = "agg"
    else:
        pi, di = int(t.pairs[0][ref]), int(t.pairs[1][ref])
        ptp, ppp, pep, pdp = (int(v) for v in lay[int(t.prefill["li"][pi])])
        dtp, dpp, dep, ddp = (int(v) for v in lay[int(t.decode["li"][di])])
        x, y = int(c["xs"][i]), int(c["ys"][i])
        workers = (
            Worker("prefill", ptp, ppp, pep, pdp, int(t.prefill["b"][pi]), x * rep),
            Worker("decode", dtp, dpp, dep, ddp, int(t.decode["b"][di]), y * rep),
        )
        mode = "disagg"
    return Candidate(
        mode=mode,
        backend=backend,
        workers=workers,
        gpus=int(c["gpus"][i]),
        ttft_ms=float(c["ttft"][i]),
        itl_ms=float(c["itl"][i]),
        tokens_s=float(c["tok"][i]),
        requests_s=float(c["req"][i]),
        meets_sla=bool(miss[i] <= 1.0),
        gpus_needed=int(c["need"][i]),
        pareto=pareto,
    )


def _pct(value: float, target: float) -> str:
    return f"{(value / target - 1.0) * 100.0:.0f} %"


def _warnings(req: PlanRequest, chosen: Candidate, targets: Targets, miss: float) -> list[str]:
    out: list[str] = []
    if miss > 1.0:
        if targets.e2e_ms is not None:
            e2e = chosen.ttft_ms + req.osl * chosen.itl_ms
            out.append(
                f"no configuration meets the SLA: best end-to-end latency {e2e:.0f} ms misses "
                f"the {targets.e2e_ms:.0f} ms target by {_pct(e2e, targets.e2e_ms)}"
            )
        else:
            assert targets.ttft_ms is not None and targets.itl_ms is not None
            parts = []
            if chosen.ttft_ms > targets.ttft_ms:
                parts.append(
                    f"best TTFT {chosen.ttft_ms:.0f} ms misses the {targets.ttft_ms:.0f} ms target"
                    f" by {_pct(chosen.ttft_ms, targets.ttft_ms)}"
                )
            if chosen.itl_ms > targets.itl_ms:
                parts.append(
                    f"best ITL {chosen.itl_ms:.1f} ms misses the {targets.itl_ms:.1f} ms target"
                    f" by {_pct(chosen.itl_ms, targets.itl_ms)}"
                )
            out.append("no configuration meets the SLA: " + "; ".join(parts))
        out[-1] += "; the closest configuration was picked"
    if req.picking_mode == "load_match" and chosen.gpus_needed > req.total_gpus:
        load = (
            f"{req.request_rate:g} requests/s"
            if req.request_rate is not None
            else f"concurrency {req.concurrency:g}"
        )
        out.append(
            f"the load ({load}) needs {chosen.gpus_needed} GPUs, more than the "
            f"totalGpus budget of {req.total_gpus}; the plan is capped at {chosen.gpus} GPUs"
        )
    return out


__all__ = [
    "AGG_BATCHES",
    "DECODE_BATCHES",
    "Candidate",
    "SearchResult",
    "Targets",
    "Worker",
    "min_gpus_to_fit",
    "search",
    "worker_layouts",
]
