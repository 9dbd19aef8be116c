"""Thorough profiling: deploy each candidate configuration, benchmark it, pick from what was
measured (docs/dgdr-contract.md#search-strategies-and-picking-modes).

**Where it runs: work owned by the leader, not a Kubernetes Job.** Upstream runs thorough
profiling as a Job whose pod deploys candidate DGDs and runs aiperf. Here the sweep is an asyncio
task of the leading controller replica, started through the same ``ProfileTracker`` as a rapid
profile (``StrategyRunner`` sends a ``thorough`` spec here instead of to the worker pool), because

* the local control plane has no kubelet: a Job would never run there, and the whole flow could
  not be tested end to end; the leader can, against the local DGD runner (devtools/dgdrunner);
* the sweep is I/O bound (creating DGDs, waiting, sending requests): it costs the controller a
  task per DGDR, not CPU, and needs no image pull, pod start or second copy of the profiler;
* progress and cancellation reuse what the reconciler already has (sub-phases reported as they
  happen, ``cancel`` on deletion or a spec change, a new leader starting the profile again).

The trade-off: the benchmark client runs in the controller's pod, so on a cluster it reaches the
candidate's frontend through its Service (``--thorough-endpoint``, the Dynamo operator's
``<dgd>-frontend`` Service) across the network rather than from a pod placed next to it, and it
shares the controller's CPU limit (aiperf at high concurrency wants a core or two: give the
controller that, or use the built-in client, ``--thorough-benchmark http``). A Job would isolate
both; it is the better home on a large cluster and could run this same module.

**Survives a new leader.** The sweep's candidates and every finished measurement are persisted
in a ConfigMap owned by the DGDR (labelled ``dgdr.nvidia.com/sweep``); a new leader starts the
profile again, finds it and measures only the candidates not finished. A test DGD the old leader
left is adopted if its candidate is still pending, deleted otherwise.

**Stops on deletion.** Deleting the DGDR cancels the task (the reconciler forgets the key);
cancellation deletes the test DGDs in flight and, when the DGDR is gone, every test DGD labelled
to it and the sweep ConfigMap. Test DGDs and ConfigMaps also carry an ownerReference to the DGDR,
so a cluster's garbage collector removes them even when no leader is running; where there is no
collector (the local control plane), the leader looks for sweep objects whose DGDR is gone every
``--thorough-orphan-interval`` seconds (``collect_orphans``).

Test DGDs: named ``<dgdr>-t<hash>-<i>`` (the hash of the DGDR's namespace, name and uid: two
DGDRs, or two lives of one name, cannot collide), labelled with ``dgdr.nvidia.com/name`` and
``/namespace`` plus ``dgdr.nvidia.com/sweep-candidate``, built like the final DGD (the DGDR's
image, ``overrides.dgd``, the profiling Job's tolerations; see
``profiler.thorough.candidate_deployment``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from controller.dgdr import api
from controller.dgdr.profiling import PlanOutcome, ProfileRunner
from controller.machinery.client import CONFIGMAPS, ApiError, KubeClient
from controller.machinery.events import EventRecorder
from profiler.candidates import Candidate
from profiler.hub import HubSettings
from profiler.request import DGD_V1ALPHA1, PlanRequest
from profiler.thorough import (
    BenchPoint,
    Measurement,
    Outcome,
    candidate_deployment,
    candidate_from_json,
    comparison,
    concurrency_levels,
    finish,
    kv_tokens,
    measured_candidate,
    sweep_candidates,
    sweep_isls,
    unit_of,
)

log = logging.getLogger(__name__)
JSON = dict[str, Any]
OnProgress = Callable[[str, str], Awaitable[None] | None]

LABEL_SWEEP = "dgdr.nvidia.com/sweep"
LABEL_CANDIDATE = "dgdr.nvidia.com/sweep-candidate"
STATE_KEY = "sweep.json"
ENDPOINT_ANNOTATION = "dgdrunner.local/endpoint"  # the local DGD runner's frontend URL
DEFAULT_ENDPOINT = "http://{name}-frontend.{namespace}.svc:8000"  # the operator's Service
PREFILL_OSL = 4  # output tokens of a prefill measurement: TTFT is what is timed
EVENT_MEASURED = "ProfilingCandidateMeasured"
EVENT_SKIPPED = "ProfilingCandidateSkipped"


class BenchmarkError(RuntimeError):
    """A benchmark run produced no usable figure (every request failed, the client crashed)."""


# ------------------------------------------------------------------------------------------------
# Benchmark clients


class BenchmarkClient(Protocol):
    async def run(
        self, url: str, model: str, *, isl: int, osl: int, concurrency: int, requests: int
    ) -> BenchPoint: ...


def synthetic_prompt(tokens: int, seed: int) -> str:
    """About ``tokens`` tokens of words ``w<n>``: one token each for the local runner's
    tokenizer (devtools/dgdrunner/modeldir.py), roughly one for a real model's."""
    return " ".join(f"w{(seed * 7919 + i * 104729) % 31000 + 1}" for i in range(max(tokens, 1)))


@dataclass
class HttpBenchmark:
    """The built-in client: streaming chat completions from ``concurrency`` loops, each
    request ``isl`` prompt tokens and ``osl`` output tokens (``ignore_eos``). TTFT is the time
    to the first content chunk, ITL the mean gap between chunks after it."""

    timeout: float = 300.0

    async def run(
        self, url: str, model: str, *, isl: int, osl: int, concurrency: int, requests: int
    ) -> BenchPoint:
        ttfts: list[float] = []
        itls: list[float] = []
        tokens = 0
        errors = 0
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(max(requests, concurrency)):
            queue.put_nowait(i)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=concurrency)

        async def one(session: aiohttp.ClientSession, i: int) -> None:
            nonlocal tokens, errors
            body = {
                "model": model,
                "messages": [{"role": "user", "content": synthetic_prompt(isl, i)}],
                "max_tokens": osl,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            start = time.perf_counter()
            stamps: list[float] = []
            usage: int | None = None
            try:
                async with session.post(f"{url.rstrip('/')}/v1/chat/completions", json=body) as r:
                    if r.status != 200:
                        errors += 1
                        return
                    async for raw in r.content:
                        line = raw.decode(errors="replace").strip()
                        if not line.startswith("data:") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[5:])
                        if chunk.get("usage"):
                            usage = int(chunk["usage"].get("completion_tokens") or 0) or None
                        for choice in chunk.get("choices") or ():
                            if (choice.get("delta") or {}).get("content"):
                                stamps.append(time.perf_counter())
            except (aiohttp.ClientError, TimeoutError, ValueError):
                errors += 1
                return
            if not stamps:
                errors += 1
                return
            ttfts.append((stamps[0] - start) * 1000.0)
            if len(stamps) > 1:
                itls.append((stamps[-1] - stamps[0]) * 1000.0 / (len(stamps) - 1))
            tokens += usage or len(stamps)

        async def loop(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                await one(session, queue.get_nowait())

        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            began = time.perf_counter()
            await asyncio.gather(*(loop(session) for _ in range(concurrency)))
            wall = max(time.perf_counter() - began, 1e-9)
        if not ttfts:
            raise BenchmarkError(f"all {errors} requests to {url} failed")
        return BenchPoint(
            concurrency=concurrency,
            isl=isl,
            osl=osl,
            ttft_ms=sum(ttfts) / len(ttfts),
            itl_ms=sum(itls) / len(itls) if itls else 0.0,
            tokens_s=tokens / wall,
            requests_s=len(ttfts) / wall,
            requests=len(ttfts),
            errors=errors,
        )


@dataclass
class AiperfBenchmark:
    """aiperf's command line (``aiperf profile``), as upstream's thorough profiler drives it;
    reads its JSON export. ``tokenizer`` defaults to the model id (a cluster with access to
    the Hub); the local runner's model directory stands in for it here."""

    command: str = "aiperf"
    tokenizer: str = ""
    timeout: float = 600.0
    workdir: str = ""

    async def run(
        self, url: str, model: str, *, isl: int, osl: int, concurrency: int, requests: int
    ) -> BenchPoint:
        with tempfile.TemporaryDirectory(prefix="aiperf-", dir=self.workdir or None) as out:
            cmd = [
                self.command, "profile", "--model", model, "--url", url,
                "--endpoint-type", "chat", "--streaming", "--tokenizer", self.tokenizer or model,
                "--synthetic-input-tokens-mean", str(isl), "--synthetic-input-tokens-stddev", "0",
                "--output-tokens-mean", str(osl), "--output-tokens-stddev", "0",
                "--extra-inputs", "ignore_eos:true",
                "--concurrency", str(concurrency),
                "--request-count", str(max(requests, concurrency)),
                "--artifact-dir", out, "--ui-type", "none", "--random-seed", "1",
                "--no-gpu-telemetry", "--no-server-metrics",
            ]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise
            export = Path(out) / "profile_export_aiperf.json"
            if proc.returncode != 0 or not export.exists():
                tail = output.decode(errors="replace")[-600:]
                raise BenchmarkError(f"aiperf exited {proc.returncode}: {tail}")
            m = json.loads(export.read_text())
        return point_from_aiperf(m, concurrency=concurrency, isl=isl, osl=osl)


def point_from_aiperf(m: Mapping[str, Any], *, concurrency: int, isl: int, osl: int) -> BenchPoint:
    """A ``BenchPoint`` from aiperf's ``profile_export_aiperf.json`` (means)."""

    def avg(key: str) -> float:
        entry = m.get(key) or {}
        return float(entry.get("avg") or 0.0) if isinstance(entry, Mapping) else 0.0

    errors = sum(int(e.get("count", 0)) for e in m.get("error_summary") or [])
    done = int(avg("request_count"))
    if done <= 0 or avg("time_to_first_token") <= 0:
        raise BenchmarkError(f"aiperf measured no successful request ({errors} errors)")
    return BenchPoint(
        concurrency=concurrency,
        isl=isl,
        osl=osl,
        ttft_ms=avg("time_to_first_token"),
        itl_ms=avg("inter_token_latency"),
        tokens_s=avg("output_token_throughput"),
        requests_s=avg("request_throughput"),
        requests=done,
        errors=errors,
    )


# ------------------------------------------------------------------------------------------------
# The sweep


@dataclass(frozen=True)
class SweepConfig:
    """``budget`` candidates, ``parallel`` deployed at once (within ``totalGpus``), each given
    ``ready_timeout`` seconds to serve; ``requests`` per benchmark run, prefill at
    ``prefill_points`` ISLs, decode at ``decode_contexts`` ISLs x ``levels`` concurrencies up to
    the KV capacity or ``max_concurrency`` (the target ISL always among them)."""

    budget: int = 3
    parallel: int = 1
    ready_timeout: float = 600.0
    requests: int = 16
    levels: int = 3
    max_concurrency: int = 64
    prefill_points: int = 3
    decode_contexts: int = 2
    poll: float = 1.0
    endpoint: str = DEFAULT_ENDPOINT

    def __post_init__(self) -> None:
        for name in (
            "budget",
            "parallel",
            "requests",
            "levels",
            "max_concurrency",
            "prefill_points",
            "decode_contexts",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.ready_timeout > 0:
            raise ValueError(f"ready_timeout must be > 0, got {self.ready_timeout}")


def _hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def sweep_names(namespace: str, name: str, uid: str) -> tuple[str, str]:
    """(the sweep ConfigMap's name, the test DGDs' prefix), both unique to this DGDR's life."""
    digest = _hash(namespace, name, uid)
    return f"{name[:40].rstrip('-')}-sweep-{digest[:8]}", f"{name[:12].rstrip('-')}-t{digest[:6]}"


# Spec fields that may change while profiling (docs/dgdr-contract.md#spec-changes) and do not
# change what is measured: a sweep survives them.
UNMEASURED_FIELDS = ("autoApply", "runtimeVersionOverride")


def spec_hash(spec: Mapping[str, Any]) -> str:
    """What the persisted sweep was made for: a different hash starts the sweep afresh."""
    measured = {k: v for k, v in spec.items() if k not in UNMEASURED_FIELDS}
    return _hash(json.dumps(measured, sort_keys=True, separators=(",", ":")))[:16]


@dataclass
class _Slot:
    """One candidate's entry in the persisted state."""

    index: int
    name: str
    predicted: JSON
    status: str = "pending"  # pending | measured | skipped
    reason: str = ""
    measurement: JSON | None = None

    def to_json(self) -> JSON:
        doc: JSON = {
            "index": self.index,
            "name": self.name,
            "predicted": self.predicted,
            "status": self.status,
        }
        if self.reason:
            doc["reason"] = self.reason
        if self.measurement is not None:
            doc["measurement"] = self.measurement
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Slot:
        return cls(
            index=int(doc["index"]),
            name=str(doc["name"]),
            predicted=dict(doc["predicted"]),
            status=str(doc.get("status") or "pending"),
            reason=str(doc.get("reason") or ""),
            measurement=doc.get("measurement"),
        )


@dataclass
class _Sweep:
    """One DGDR's sweep in progress: its request, state, and the API objects it writes."""

    key: str
    namespace: str
    name: str
    uid: str
    dgdr: JSON
    request: PlanRequest
    cm_name: str
    prefix: str
    spec_hash: str
    slots: list[_Slot] = field(default_factory=list)
    cm_version: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: set[str] = field(default_factory=set)

    def owner(self) -> JSON:
        return {
            "apiVersion": api.DGDR_RESOURCE.api_version,
            "kind": api.DGDR_KIND,
            "name": self.name,
            "uid": self.uid,
        }

    def labels(self) -> dict[str, str]:
        return {
            api.LABEL_DGDR_NAME: self.name,
            api.LABEL_DGDR_NAMESPACE: self.namespace,
            LABEL_SWEEP: "true",
        }

    def state(self) -> JSON:
        return {
            "uid": self.uid,
            "specHash": self.spec_hash,
            "candidates": [s.to_json() for s in self.slots],
        }


class ThoroughSweeper:
    """Runs thorough profiles in the leader; ``run`` has ``ProfileRunner.run``'s signature."""

    def __init__(
        self,
        client: KubeClient,
        recorder: EventRecorder | None,
        bench: BenchmarkClient,
        config: SweepConfig | None = None,
    ) -> None:
        self._client = client
        self._events = recorder
        self._bench = bench
        self._config = config or SweepConfig()

    def cancel(self, key: str) -> bool:
        """Nothing to do: the tracker cancels the task, whose cancellation cleans up."""
        return False

    async def run(
        self,
        key: str,
        spec: Mapping[str, Any],
        *,
        dgdr_name: str,
        namespace: str,
        on_progress: OnProgress | None = None,
        hub: HubSettings | None = None,
        dgd_api_version: str = DGD_V1ALPHA1,
    ) -> PlanOutcome:
        started = time.monotonic()
        dgdr = await self._client.get(api.DGDR_RESOURCE, dgdr_name, namespace)
        uid = str(dgdr["metadata"].get("uid") or "")
        request = await asyncio.to_thread(
            PlanRequest.from_spec,
            spec,
            dgdr_name=dgdr_name,
            namespace=namespace,
            hub=hub,
            dgd_api_version=dgd_api_version,
        )
        cm_name, prefix = sweep_names(namespace, dgdr_name, uid)
        sweep = _Sweep(
            key, namespace, dgdr_name, uid, dgdr, request, cm_name, prefix, spec_hash(spec)
        )

        async def progress(phase: str, message: str) -> None:
            if on_progress is not None:
                maybe = on_progress(phase, message)
                if maybe is not None:
                    await maybe

        try:
            await progress("Initializing", f"thorough: planning candidates for {request.model}")
            await self._load_or_plan(sweep)
            await self._drop_leftovers(sweep)
            await self._sweep(sweep, progress)
            outcomes = [self._outcome(s) for s in sweep.slots]
            phases: list[tuple[str, str]] = []
            result = await asyncio.to_thread(
                finish, request, outcomes, lambda p, m: phases.append((p, m))
            )
            for phase, message in phases:
                await progress(phase, message)
        except asyncio.CancelledError:
            await self._cleanup(sweep)
            raise
        doc = result.to_json()
        doc.pop("pareto", None)
        doc["elapsed_s"] = round(time.monotonic() - started, 3)
        doc["thorough"] = {
            "configMap": cm_name,
            "candidates": comparison(request, outcomes),
        }
        return PlanOutcome(
            result=doc,
            dgd=doc["dgd"],
            configmaps=doc.get("configmaps", []),
            seconds=time.monotonic() - started,
            source="computed",
        )

    # -- state ----------------------------------------------------------------------------------

    async def _load_or_plan(self, sweep: _Sweep) -> None:
        """Resume from the sweep ConfigMap of this DGDR's life and spec, else plan afresh."""
        try:
            cm = await self._client.get(CONFIGMAPS, sweep.cm_name, sweep.namespace)
        except ApiError as e:
            if e.status != 404:
                raise
            cm = None
        if cm is not None:
            state = json.loads((cm.get("data") or {}).get(STATE_KEY) or "{}")
            if state.get("uid") == sweep.uid and state.get("specHash") == sweep.spec_hash:
                sweep.slots = [_Slot.from_json(s) for s in state.get("candidates") or ()]
                sweep.cm_version = cm["metadata"].get("resourceVersion")
                done = sum(s.status != "pending" for s in sweep.slots)
                log.info("%s: resuming the sweep, %d of %d done", sweep.key, done, len(sweep.slots))
                return
            await self._client.delete(CONFIGMAPS, sweep.cm_name, sweep.namespace)
        cands = await asyncio.to_thread(sweep_candidates, sweep.request, self._config.budget)
        sweep.slots = [_Slot(i, f"{sweep.prefix}-{i}", c.to_json()) for i, c in enumerate(cands)]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": sweep.cm_name,
                "namespace": sweep.namespace,
                "labels": sweep.labels(),
                "ownerReferences": [sweep.owner()],
            },
            "data": {STATE_KEY: json.dumps(sweep.state(), indent=1)},
        }
        created = await self._client.create(CONFIGMAPS, body, sweep.namespace)
        sweep.cm_version = created["metadata"].get("resourceVersion")

    async def _save(self, sweep: _Sweep) -> None:
        """Write the state (the caller holds ``sweep.lock``): one writer, the leader's task."""
        patch = {
            "metadata": {"resourceVersion": sweep.cm_version},
            "data": {STATE_KEY: json.dumps(sweep.state(), indent=1)},
        }
        saved = await self._client.patch(CONFIGMAPS, sweep.cm_name, patch, sweep.namespace)
        sweep.cm_version = saved["metadata"].get("resourceVersion")

    @staticmethod
    def _outcome(slot: _Slot) -> Outcome:
        predicted = candidate_from_json(slot.predicted)
        if slot.status == "measured" and slot.measurement is not None:
            return Outcome(predicted, measurement=Measurement.from_json(slot.measurement))
        return Outcome(predicted, skipped=slot.reason or "not measured")

    # -- the sweep -------------------------------------------------------------------------------

    async def _sweep(self, sweep: _Sweep, progress: Callable[[str, str], Awaitable[None]]) -> None:
        """Measure every pending candidate: at most ``parallel`` deployed at once, their GPUs
        together within ``totalGpus``."""
        pending = [s for s in sweep.slots if s.status == "pending"]
        total = len(sweep.slots)
        running: dict[asyncio.Task[None], int] = {}
        budget = sweep.request.total_gpus
        try:
            while pending or running:
                used = sum(running.values())
                while pending and len(running) < self._config.parallel:
                    gpus = unit_of(candidate_from_json(pending[0].predicted)).gpus
                    if running and used + gpus > budget:
                        break
                    slot = pending.pop(0)
                    task = asyncio.create_task(
                        self._candidate(sweep, slot, total, progress),
                        name=f"sweep {sweep.key} {slot.name}",
                    )
                    running[task] = gpus
                    used += gpus
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _candidate(
        self,
        sweep: _Sweep,
        slot: _Slot,
        total: int,
        progress: Callable[[str, str], Awaitable[None]],
    ) -> None:
        predicted = candidate_from_json(slot.predicted)
        unit = unit_of(predicted)
        what = f"candidate {slot.index + 1}/{total} {unit.label} ({slot.name})"
        sweep.in_flight.add(slot.name)
        try:
            await progress("SweepingPrefill", f"{what}: deploying")
            url = await self._deploy(sweep, slot, unit)
            measurement = await self._measure(sweep, unit, url, what, progress)
        except asyncio.CancelledError:
            raise
        except ApiError as e:
            if e.status >= 500 or e.status in (0, 429):
                raise  # the API server's trouble, not the candidate's: retried, then resumed
            await self._record(sweep, slot, None, f"the API server refused it: {e}")
            return
        except (SkipError, BenchmarkError, aiohttp.ClientError, OSError) as e:
            await self._record(sweep, slot, None, f"{e}")
            return
        finally:
            sweep.in_flight.discard(slot.name)
            with contextlib.suppress(ApiError, OSError, aiohttp.ClientError):
                await self._delete_test(sweep, slot.name)
        await self._record(sweep, slot, measurement, "")

    async def _record(
        self, sweep: _Sweep, slot: _Slot, measurement: Measurement | None, reason: str
    ) -> None:
        async with sweep.lock:
            if measurement is not None:
                slot.status, slot.measurement = "measured", measurement.to_json()
            else:
                slot.status, slot.reason = "skipped", reason
            await self._save(sweep)
        label = candidate_from_json(slot.predicted).label
        if measurement is not None:
            c = measured_candidate(sweep.request, candidate_from_json(slot.predicted), measurement)
            message = (
                f"candidate {label} measured: TTFT {c.ttft_ms:.1f} ms, ITL {c.itl_ms:.2f} ms, "
                f"{c.tokens_s_per_gpu:.0f} tokens/s/GPU"
            )
            log.info("%s: %s", sweep.key, message)
            await self._event(sweep, "Normal", EVENT_MEASURED, message)
        else:
            message = f"candidate {label} skipped: {reason}"
            log.info("%s: %s", sweep.key, message)
            await self._event(sweep, "Warning", EVENT_SKIPPED, message)

    async def _event(self, sweep: _Sweep, type_: str, reason: str, message: str) -> None:
        if self._events is not None:
            await self._events.record(sweep.dgdr, type_, reason, message[:1000])

    async def _deploy(self, sweep: _Sweep, slot: _Slot, unit: Candidate) -> str:
        """Create the candidate's test DGD (adopting one a previous leader left) and wait for it
        to serve; its frontend's URL. Raises ``SkipError`` when it does not serve in time."""
        req = sweep.request
        dgd, configmaps = candidate_deployment(req, unit, slot.name)
        labels = {**sweep.labels(), LABEL_CANDIDATE: str(slot.index)}
        resource = api.dgd_resource(req.dgd_api_version)
        for obj in [*configmaps, dgd]:
            meta = obj.setdefault("metadata", {})
            meta["namespace"] = sweep.namespace
            meta.setdefault("labels", {}).update(labels)
            meta["ownerReferences"] = [sweep.owner()]
        for cm in configmaps:
            await self._create(CONFIGMAPS, cm, sweep)
        await self._create(resource, dgd, sweep)
        deadline = time.monotonic() + self._config.ready_timeout
        state = None
        while True:
            try:
                obj = await self._client.get(resource, slot.name, sweep.namespace)
            except ApiError as e:
                if e.status != 404:
                    raise
                raise SkipError("its test DGD was deleted before it served") from e
            state = (obj.get("status") or {}).get("state")
            if state == "successful":
                annotations = obj["metadata"].get("annotations") or {}
                url = annotations.get(ENDPOINT_ANNOTATION) or self._config.endpoint.format(
                    name=slot.name, namespace=sweep.namespace
                )
                return str(url)
            if state == "failed":
                raise SkipError(f"its test DGD failed to start ({_conditions(obj)})")
            if time.monotonic() >= deadline:
                raise SkipError(
                    f"its test DGD did not serve within {self._config.ready_timeout:g} s "
                    f"(state {state or 'unset'}{_conditions(obj)})"
                )
            await asyncio.sleep(self._config.poll)

    async def _create(self, resource: Any, body: JSON, sweep: _Sweep) -> None:
        """Create, or adopt what a previous leader created for the same candidate; one being
        deleted is waited out (bounded by the ready timeout) and created again."""
        name = body["metadata"]["name"]
        deadline = time.monotonic() + self._config.ready_timeout
        while True:
            try:
                await self._client.create(resource, body, sweep.namespace)
                return
            except ApiError as e:
                if e.status != 409:
                    raise
            try:
                found = await self._client.get(resource, name, sweep.namespace)
            except ApiError as e:
                if e.status == 404:
                    continue
                raise
            labels = found["metadata"].get("labels") or {}
            mine = labels.get(api.LABEL_DGDR_NAME) == sweep.name and labels.get(LABEL_SWEEP)
            if not mine:
                raise SkipError(f"{resource.kind} {name} exists and is not this DGDR's")
            if not found["metadata"].get("deletionTimestamp"):
                return  # left by a previous leader for this very candidate: adopt it
            if time.monotonic() >= deadline:
                raise SkipError(f"{resource.kind} {name} is still being deleted")
            await asyncio.sleep(self._config.poll)

    async def _measure(
        self,
        sweep: _Sweep,
        unit: Candidate,
        url: str,
        what: str,
        progress: Callable[[str, str], Awaitable[None]],
    ) -> Measurement:
        req, cfg = sweep.request, self._config
        model = req.model
        prefill: list[BenchPoint] = []
        for isl in sweep_isls(req, cfg.prefill_points):
            await progress("SweepingPrefill", f"{what}: prefill TTFT at ISL {isl}")
            prefill.append(
                await self._bench.run(
                    url, model, isl=isl, osl=PREFILL_OSL, concurrency=1, requests=cfg.requests
                )
            )
        levels = await asyncio.to_thread(
            concurrency_levels, req, unit, cfg.levels, cfg.max_concurrency
        )
        decode: list[BenchPoint] = []
        for isl in sweep_isls(req, cfg.decode_contexts):
            for c in levels:
                await progress(
                    "SweepingDecode", f"{what}: decode at ISL {isl}, concurrency {c} of {levels}"
                )
                decode.append(
                    await self._bench.run(
                        url, model, isl=isl, osl=req.osl, concurrency=c, requests=cfg.requests
                    )
                )
        kv = await asyncio.to_thread(kv_tokens, req, unit)
        return Measurement(prefill=tuple(prefill), decode=tuple(decode), max_kv_tokens=kv)

    # -- cleanup ---------------------------------------------------------------------------------

    async def _delete_test(self, sweep: _Sweep, name: str) -> None:
        resource = api.dgd_resource(sweep.request.dgd_api_version)
        await self._client.delete(resource, name, sweep.namespace)
        await self._client.delete(CONFIGMAPS, f"{name}-profile", sweep.namespace)

    async def _labelled(self, sweep: _Sweep) -> set[str]:
        """Names of the test DGDs labelled to this DGDR, and of every candidate of its sweep.
        ConfigMaps are never listed (the controller may not list them: deploy/controller/
        rbac.yaml); a test DGD's are found by name, ``<test DGD>-profile``."""
        selector = f"{api.LABEL_DGDR_NAME}={sweep.name},{LABEL_CANDIDATE}"
        resource = api.dgd_resource(sweep.request.dgd_api_version)
        listing = await self._client.list(resource, sweep.namespace, label_selector=selector)
        names = {str(o["metadata"]["name"]) for o in listing.get("items") or ()}
        return names | {s.name for s in sweep.slots}

    async def _drop_leftovers(self, sweep: _Sweep) -> None:
        """Test objects of candidates already finished (a leader that died between recording
        and deleting); a pending candidate's are adopted when it is deployed."""
        pending = {s.name for s in sweep.slots if s.status == "pending"}
        for name in await self._labelled(sweep) - pending:
            await self._delete_test(sweep, name)

    async def collect_orphans(
        self, dgd_resource: Any, namespaces: Sequence[str] | None, interval: float
    ) -> None:
        """Leader-only, for ever: every ``interval`` seconds, delete sweep objects whose DGDR is
        gone. A DGDR deleted while no leader ran (its sweep was not there to clean up) leaves
        its test DGDs behind on a cluster without a garbage collector, as the local control
        plane is; a cluster's collector removes them by their ownerReference anyway."""
        while True:
            try:
                gone = await self.collect_once(dgd_resource, namespaces)
                if gone:
                    log.info("deleted %d object(s) of thorough sweeps whose DGDR is gone", gone)
            except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as e:
                log.warning("collecting orphaned thorough sweep objects failed: %s", e)
            await asyncio.sleep(interval)

    async def collect_once(self, dgd_resource: Any, namespaces: Sequence[str] | None) -> int:
        """One pass of ``collect_orphans``; how many test DGDs it deleted. Each goes with its
        ``-profile`` ConfigMap and its sweep's state ConfigMap, found by name (ConfigMaps are
        not listed: the controller may not list them). A sweep's state left without any test
        DGD is left to the garbage collector."""
        deleted = 0
        live: dict[tuple[str, str], str | None] = {}
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        for ns in scopes:
            listing = await self._client.list(dgd_resource, ns, label_selector=LABEL_SWEEP)
            for obj in listing.get("items") or ():
                meta = obj["metadata"]
                owners = [
                    str(o.get("uid"))
                    for o in meta.get("ownerReferences") or ()
                    if o.get("kind") == api.DGDR_KIND
                ]
                labels = meta.get("labels") or {}
                key = (str(meta["namespace"]), str(labels.get(api.LABEL_DGDR_NAME) or ""))
                if key not in live:
                    live[key] = await self._dgdr_uid(*key)
                if live[key] is not None and live[key] in owners:
                    continue
                name = str(meta["name"])
                await self._client.delete(dgd_resource, name, key[0])
                await self._client.delete(CONFIGMAPS, f"{name}-profile", key[0])
                for uid in owners:
                    state, _ = sweep_names(key[0], key[1], uid)
                    await self._client.delete(CONFIGMAPS, state, key[0])
                deleted += 1
        return deleted

    async def _dgdr_uid(self, namespace: str, name: str) -> str | None:
        """The uid of the live DGDR of that name (None: absent or being deleted)."""
        if not name:
            return None
        try:
            obj = await self._client.get(api.DGDR_RESOURCE, name, namespace)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        if obj["metadata"].get("deletionTimestamp"):
            return None
        return str(obj["metadata"].get("uid") or "")

    async def _cleanup(self, sweep: _Sweep) -> None:
        """Cancelled: delete the test DGDs in flight; when the DGDR is gone (or is another one
        now), everything the sweep made. Bounded: shutdown waits for it."""
        try:
            async with asyncio.timeout(10.0):
                for name in list(sweep.in_flight):
                    await self._delete_test(sweep, name)
                try:
                    now = await self._client.get(api.DGDR_RESOURCE, sweep.name, sweep.namespace)
                    gone = bool(now["metadata"].get("deletionTimestamp")) or (
                        now["metadata"].get("uid") != sweep.uid
                    )
                except ApiError as e:
                    if e.status != 404:
                        raise
                    gone = True
                if gone:
                    for name in await self._labelled(sweep):
                        await self._delete_test(sweep, name)
                    await self._client.delete(CONFIGMAPS, sweep.cm_name, sweep.namespace)
                    log.info("%s: deleted; the sweep's test DGDs and state removed", sweep.key)
        except (TimeoutError, ApiError, OSError, aiohttp.ClientError) as e:
            log.warning("%s: sweep cleanup incomplete: %s", sweep.key, e)


class SkipError(RuntimeError):
    """A candidate that cannot be measured (did not start, timed out): skipped, not fatal."""


def _conditions(obj: Mapping[str, Any]) -> str:
    conds = (obj.get("status") or {}).get("conditions") or []
    texts = [
        f"{c.get('type')}: {c.get('message')}"
        for c in conds
        if isinstance(c, Mapping) and c.get("status") == "False" and c.get("message")
    ]
    return "; " + "; ".join(texts)[:300] if texts else ""


# ------------------------------------------------------------------------------------------------
# Dispatch


class StrategyRunner:
    """What the ``ProfileTracker`` runs: ``searchStrategy: thorough`` goes to the sweep, every
    other spec to the rapid profiler's worker pool."""

    def __init__(self, rapid: ProfileRunner, thorough: ThoroughSweeper | None) -> None:
        self._rapid = rapid
        self._thorough = thorough

    async def run(
        self,
        key: str,
        spec: dict[str, Any],
        *,
        dgdr_name: str,
        namespace: str,
        on_progress: Callable[[str, str], Any],
        hub: Any = None,
        dgd_api_version: str = DGD_V1ALPHA1,
    ) -> PlanOutcome:
        if spec.get("searchStrategy") == "thorough" and self._thorough is not None:
            return await self._thorough.run(
                key,
                spec,
                dgdr_name=dgdr_name,
                namespace=namespace,
                on_progress=on_progress,
                hub=hub,
                dgd_api_version=dgd_api_version,
            )
        return await self._rapid.run(
            key,
            spec,
            dgdr_name=dgdr_name,
            namespace=namespace,
            on_progress=on_progress,
            hub=hub,
            dgd_api_version=dgd_api_version,
        )

    def cancel(self, key: str) -> bool:
        found = self._rapid.cancel(key)
        if self._thorough is not None:
            found = self._thorough.cancel(key) or found
        return found


__all__ = [
    "AiperfBenchmark",
    "BenchmarkClient",
    "BenchmarkError",
    "HttpBenchmark",
    "SkipError",
    "StrategyRunner",
    "SweepConfig",
    "ThoroughSweeper",
    "point_from_aiperf",
    "sweep_names",
]
