"""The SLA search: every worker layout, batch size and prefill:decode ratio, scored in bulk.

The grid is built as flat numpy arrays and costed with a handful of calls to the estimator per
backend, so a search over tens of thousands of deployments stays well inside a reconcile's time
budget. Each backend is searched over the layouts it runs (``profiler.layouts``) with its own
KV capacity, so ``backend: auto`` picks by each backend's predicted performance. Rows that
cannot hold their KV cache are dropped; the rest are kept even when they miss the SLA, because
when nothing meets it the user is owed the closest configuration and by how much it misses, not
a silent failure.

Every worker's ``batch`` is the concurrency it was scored at, and the DGD caps it there.
Aggregated workers are scored at every concurrency of AIConfigurator's sweep; disaggregated
deployments as AIConfigurator prices them (``profiler.disagg``): prefill workers at their own
prefill batch, decode workers at every batch (the ITL target picks the largest), x:y workers
rate-matched, and the TTFT taken on the prefill side at the arrival rate the unit sustains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from profiler.candidates import Candidate, SearchResult, Targets, Worker
from profiler.disagg import (
    DECODE_DERATE,
    MAX_WORKERS_PER_ROLE,
    PREFILL_DERATE,
    UTILISATION_GRID,
    covered_cells,
    keep_per_layout,
    prefill_load,
    rate_match,
    undominated,
    utilisation_caps,
)
from profiler.errors import InfeasibleError
from profiler.estimator import (
    Engine,
    agg_serving,
    decode_tpot_ms,
    disagg_ttft_ms,
    kv_capacity_tokens,
    load_calibration,
    prefill_busy_ms,
    prefill_ttft_ms,
)
from profiler.layouts import layout_rows, min_gpus_to_fit, worker_layouts
from profiler.risk import RiskParams, expected_value, p_meets

if TYPE_CHECKING:
    from profiler.request import PlanRequest

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# AIConfigurator's default sweeps: concurrency per aggregated worker, and
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
        kv_capacity_tokens(Engine(req.arch, req.gpu, backend, req.quant, layout_rows(lay))),
        dtype=np.float64,
    )
    return lay, np.where(np.isfinite(cap), cap, 0.0)


def search(req: PlanRequest, progress: Callable[[str, str], None] | None = None) -> SearchResult:
    """Score the whole grid for every backend and pick per the request's picking mode
    (docs/dgdr-contract.md#search-strategies-and-picking-modes)."""
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
    evaluated = scored = 0
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
            scored += int(table.agg["li"].size)
        covered, cells = _disagg_rows(ctx, bi, pool, table)
        evaluated, scored = evaluated + covered, scored + cells

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
    return SearchResult(chosen, cands, evaluated, warnings, curve, scored)


def _agg_rows(ctx: _Ctx, bi: int, pool: _Pool) -> dict[str, NDArray[Any]]:
    """Aggregated workers: every layout at every concurrency, replicated to the mode's need."""
    req, lay = ctx.req, ctx.lay
    isl, osl = req.isl, req.osl
    li, b = _grid(lay.shape[0], AGG_BATCHES)
    b = b * lay[li, 3]
    fits = ctx.cap[li] >= b * (isl + osl)
    li, b = li[fits], b[fits]
    ttft, tpot = agg_serving(
        Engine(req.arch, req.gpu, ctx.backend, req.quant, layout_rows(lay[li])), isl, osl, b
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


def _disagg_rows(ctx: _Ctx, bi: int, pool: _Pool, table: _BackendTables) -> tuple[int, int]:
    """Prefill workers (layout x prompts per batch) and decode workers (layout x concurrency),
    the best of each per layout paired, each pair rate-matched into x:y workers within the
    prefill utilisation its TTFT target allows, and priced at that utilisation.

    Returns (configurations covered, configurations scored): the x:y cells of pairs skipped as
    dominated count as covered, not as scored."""
    req, lay, lay_gpus, targets = ctx.req, ctx.lay, ctx.lay_gpus, ctx.targets
    arch, gpu, quant, backend = req.arch, req.gpu, req.quant, ctx.backend
    isl, osl, total = req.isl, req.osl, req.total_gpus
    pmax = max(1, PREFILL_TOKENS_PER_BATCH // isl)
    pli, pb = _grid(lay.shape[0], np.arange(1, pmax + 1, dtype=np.int64))
    pb = pb * lay[pli, 3]
    keep = ctx.cap[pli] >= pb * isl
    pli, pb = pli[keep], pb[keep]
    # A prefill worker alone: its TTFT, and its service time (GPU time per batch), which sets
    # its request rate; the queue in front of it is priced once the x:y match sets its load.
    pttft = np.asarray(
        prefill_ttft_ms(Engine(arch, gpu, backend, quant, layout_rows(lay[pli])), isl, pb),
        np.float64,
    )
    pbusy = np.asarray(
        prefill_busy_ms(Engine(arch, gpu, backend, quant, layout_rows(lay[pli])), isl, pb),
        np.float64,
    )
    dli, db = _grid(lay.shape[0], DECODE_BATCHES)
    db = db * lay[dli, 3]
    keep = ctx.cap[dli] >= db * (isl + osl)
    dli, db = dli[keep], db[keep]
    dtpot = np.asarray(
        decode_tpot_ms(Engine(arch, gpu, backend, quant, layout_rows(lay[dli])), isl, osl, db),
        np.float64,
    )
    okp = np.isfinite(pttft) & (pttft > 0) & np.isfinite(pbusy) & (pbusy > 0)
    okd = np.isfinite(dtpot) & (dtpot > 0)
    pli, pb, pttft, pbusy = pli[okp], pb[okp], pttft[okp], pbusy[okp]
    dli, db, dtpot = dli[okd], db[okd], dtpot[okd]
    evaluated = int(pli.size + dli.size)
    p_rate = pb * 1000.0 / pbusy  # requests/s of one prefill worker kept busy
    d_rate = db * 1000.0 / (dtpot * max(osl - 1, 1))  # requests/s of one decode worker
    table.prefill = {"li": pli, "b": pb, "ttft": pttft, "rate": p_rate}
    table.decode = {"li": dli, "b": db, "tpot": dtpot, "rate": d_rate}
    if pli.size == 0 or dli.size == 0:
        return evaluated, evaluated
    # Per layout, AIC's best 32 prefill and 16 decode rows (within their side of the SLA, plus
    # the fastest). Each kept prefill row's TTFT over a ladder of utilisations (non-decreasing);
    # the fastest decode step of all brings requests back soonest, so it bounds every pair's.
    p_lim, d_lim = targets.side_limit("ttft"), targets.side_limit("itl")
    psel = keep_per_layout(pli, p_rate / lay_gpus[pli], pttft, p_lim, PREFILL_KEEP)
    dsel = keep_per_layout(dli, d_rate / lay_gpus[dli], dtpot, d_lim, DECODE_KEEP)
    curve_all = _ttft_curve(ctx, lay[pli[psel]], pb[psel], float(dtpot[dsel].min()))
    curve_all = np.maximum.accumulate(np.maximum(curve_all, pttft[psel][:, None]), axis=1)
    evaluated += int(curve_all.size)
    psel_all = psel
    # A prefill or decode row that another of the same width beats on every count pairs no
    # better than that one does: rate matching skips it (its pairs count as covered). Large
    # budgets make every x:y ratio fit; fewer rows per layout keep the cost bounded.
    ratios = min(total * total // 4 + total, MAX_WORKERS_PER_ROLE**2)
    pkeep, dkeep = PREFILL_KEEP, DECODE_KEEP
    while True:
        curve = curve_all[np.searchsorted(psel_all, psel)]
        pfront = undominated(lay_gpus[pli[psel]], np.column_stack([p_rate[psel], -curve]))
        dcrit = [d_rate[dsel], -dtpot[dsel]]
        if ctx.mode == "load_match" and req.request_rate is None:
            dcrit.append(db[dsel].astype(np.float64))  # a concurrency target counts slots
        dfront = undominated(lay_gpus[dli[dsel]], np.column_stack(dcrit))
        if pfront.size * dfront.size * ratios <= MAX_RATE_MATCH_WORK or pkeep == dkeep == 1:
            break
        pkeep, dkeep = max(pkeep // 2, 1), max(dkeep // 2, 1)
        psel = keep_per_layout(pli, p_rate / lay_gpus[pli], pttft, p_lim, pkeep)
        dsel = keep_per_layout(dli, d_rate / lay_gpus[dli], dtpot, d_lim, dkeep)
    covered = evaluated + covered_cells(ctx.mode, total, lay_gpus[pli[psel]], lay_gpus[dli[dsel]])
    pj, dj = (a.ravel() for a in np.meshgrid(pfront, dfront, indexing="ij"))
    pi, di = psel[pj], dsel[dj]
    pc = curve[pj]
    table.pairs = (pi, di)
    pc = curve[pj]
    rho_cap = utilisation_caps(pc, targets.ttft_limit(dtpot[di]))
    p_cap = np.minimum(rho_cap, PREFILL_DERATE) * p_rate[pi]
    gp, gd = lay_gpus[pli[pi]], lay_gpus[dli[di]]
    x, y, rep, need, rate, cells = rate_match(
        ctx.mode, total, gp, gd, p_cap, d_rate[di], db[di], req.request_rate, req.concurrency
    )
    n = pi.size
    # TTFT at the prefill worker at the utilisation the match gives it (the unit's rate over its
    # x workers): each prompt waits behind the prompts that rate queues there.
    rho = rate / (np.maximum(x, 1) * p_rate[pi])
    ttft = np.asarray(
        disagg_ttft_ms(
            Engine(arch, gpu, backend, quant, layout_rows(lay[pli[pi]])),
            isl,
            prefill_load(rho, pb[pi].astype(np.float64)),
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
    pool.eff.append(osl / (gp / p_cap + gd / (DECODE_DERATE * d_rate[di])))
    return covered, evaluated + cells


def _ttft_curve(ctx: _Ctx, lay: I64, batch: I64, tpot_ms: float) -> F64:
    """(rows, grid) TTFT of prefill workers at each utilisation of ``UTILISATION_GRID``."""
    req = ctx.req
    k = UTILISATION_GRID.size
    load = prefill_load(UTILISATION_GRID[None, :], batch.astype(np.float64)[:, None])
    rows = np.repeat(lay, k, axis=0)
    out = disagg_ttft_ms(
        Engine(req.arch, req.gpu, ctx.backend, req.quant, layout_rows(rows)),
        req.isl,
        load.ravel(),
        osl=req.osl,
        tpot_ms=tpot_ms,
        batch=np.repeat(batch, k),
    )
    curve = np.asarray(out, np.float64).reshape(lay.shape[0], k)
    return np.where(np.isfinite(curve), curve, np.inf)


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


def _rank(req: PlanRequest, c: dict[str, NDArray[Any]], miss: F64, usable: NDArray[Any]) -> I64:
    """Row order, best first: SLA-meeting rows before misses (closest miss first), then the
    picking mode's objective (docs/dgdr-contract.md#search-strategies-and-picking-modes) and
    ``sla.optimizationType``.

    Throughput is ranked as expected throughput (``profiler.risk``): a deployment predicted on
    the edge of the SLA is a coin toss on real hardware, so it yields to a slightly slower one
    well inside it, by the spreads and risk aversion ``bench/decision`` chose on measured data.
    The reported predictions are unchanged.
    """
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
        keys = (-user, gpus, -_expected(req, c, tok), miss_key)
    order: I64 = np.lexsort(keys).astype(np.int64)
    return order


def _expected(req: PlanRequest, c: dict[str, NDArray[Any]], value: F64) -> F64:
    params = RiskParams.from_calibration(load_calibration())
    p = p_meets(
        c["ttft"],
        c["itl"],
        ttft_target=req.ttft_ms,
        itl_target=req.itl_ms,
        e2e_target=req.e2e_latency_ms,
        osl=req.osl,
        params=params,
    )
    return expected_value(value, p, params)


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
