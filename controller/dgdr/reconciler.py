"""The DGDR reconcile: one handler per phase, each idempotent and re-reading the world.

``reconcile(key)`` reads the DGDR from the informer's store, picks the handler for its phase and
returns a ``Result``; it never loops. Handlers decide the next status with the helpers of
``conditions`` and hand it to the ``StatusWriter``; a 409 (someone changed the object since it was
read) re-reads it from the API server and decides again. The behaviour is the upstream
controller's (docs/dgdr-contract.md#phases), with profiling run in-process by the worker pool.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from controller.dgdr import api
from controller.dgdr.api import ConditionType, Reason
from controller.dgdr.conditions import (
    get_condition,
    mark_false,
    mark_true,
    remove_condition,
    seconds_since,
    set_phase,
)
from controller.dgdr.discovery import DiscoveryError, discover, enrich, needs_discovery
from controller.dgdr.pods import PodWatch, pull_failures
from controller.dgdr.prediction import (
    describe_layout,
    describe_misses,
    describe_prediction,
    modelled,
    prediction_status,
)
from controller.dgdr.profile_tracker import ProfileTracker
from controller.dgdr.status_writer import StatusWriter
from controller.dgdr.validation import validate_dgdr
from controller.machinery.client import CONFIGMAPS, PVCS, ApiError, KubeClient
from controller.machinery.events import EventRecorder
from controller.machinery.worker_pool import TaskTimeoutError, WorkerCrashedError
from controller.machinery.workers import Result
from metrics import dgdr as dgdr_metrics
from profiler.errors import ProfilerError
from profiler.hub import DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, HubSettings
from profiler.plan import not_modelled_text
from profiler.request import DEFAULT_IMAGE, DGD_V1ALPHA1

log = logging.getLogger(__name__)
JSON = dict[str, Any]

# Where older versions kept the spec last accepted (user-writable, and a copy of the whole spec);
# it now lives in status.acceptedSpec, and the annotation is migrated from and removed.
ACCEPTED_SPEC_ANNOTATION = "dgdr.nvidia.com/accepted-spec"
# The fields that may change after profiling started (docs/dgdr-contract.md#spec-changes);
# status.acceptedSpec keeps their
# accepted values and a hash of everything else.
MUTABLE_FIELDS = ("autoApply", "runtimeVersionOverride")
ANNOTATION_LIMIT = api.MAX_ANNOTATION_BYTES
TOTAL_ANNOTATIONS_LIMIT = 256 * 1024
SPEC_CHANGE_REJECTED = (
    "Cannot modify spec in phase '{phase}'. DynamoGraphDeploymentRequest is immutable once "
    "profiling starts. Create a new resource with a different name instead."
)


class ProfilingBugError(RuntimeError):
    """Profiling raised something that is not a verdict on the spec: a bug, or the pool going
    away. It is logged, counted and retried with backoff, never written as the user's Failed."""


def is_verdict(error: BaseException) -> bool:
    """Whether a profiling failure is a verdict on the DGDR (bad input, infeasible, a profile
    that ran out of time or killed its worker every try) rather than a bug to retry."""
    return isinstance(error, ProfilerError | TaskTimeoutError | WorkerCrashedError)


@dataclass(frozen=True)
class Waiting:
    """Profiling cannot start yet for a reason that may go away (a PVC or GPU nodes to come):
    the DGDR stays Pending with a Profiling condition of this reason, and is looked at again."""

    reason: Reason
    message: str


WAITING_REASONS = frozenset({Reason.WAITING_FOR_MODEL_CACHE, Reason.WAITING_FOR_GPU_NODES})


class ReadStore(Protocol):
    """What the reconciler reads from an informer's cache (one namespace or several)."""

    def get(self, key: str) -> JSON | None: ...

    def list(self) -> list[JSON]: ...


# ImagePullFailed events remembered per DGDR (pod, container, image), so each is said once.
MAX_PULL_FAILURES_REMEMBERED = 256


@dataclass
class ReconcilerConfig:
    default_image: str = DEFAULT_IMAGE
    # Where a model the catalog lacks is fetched from, and the Secret (in the DGDR's namespace)
    # holding the token for it (key HF_TOKEN; "" reads none).
    hf_token_secret: str = "hf-token-secret"
    hf_endpoint: str = DEFAULT_ENDPOINT
    hub_timeout: float = DEFAULT_TIMEOUT
    hub_cache_dir: str | None = None
    # The DGD version generated and created: what the cluster serves (API discovery at start).
    dgd_api_version: str = DGD_V1ALPHA1
    # A look at every deploying/deployed DGDR this often, whatever the watches say: a safety net
    # for a DGD whose labels someone removed, which the DGD informer then no longer brings us.
    resync_period: float = 300.0
    conflict_attempts: int = 3
    # A profile is written as phase Profiling (and its sub-phases as they come) only once it has
    # run this long; a quicker one is written once, when done (fewer API writes per DGDR).
    progress_after: float = 1.0
    # A DGDR waiting for something that may appear (its model-cache PVC, GPU-labelled nodes) is
    # looked at again after this long, doubling up to wait_recheck_cap (node changes also
    # bring it back at once).
    wait_recheck: float = 2.0
    wait_recheck_cap: float = 60.0
    # ... and fails after waiting this long in all (0: waits for ever), counted from the
    # Profiling condition's lastTransitionTime, so a restart or a new leader keeps the count.
    wait_deadline: float = 3600.0


@dataclass
class Ctx:
    """One reconcile's view of one DGDR: the object, its accepted spec and the status to write."""

    obj: JSON
    spec: JSON
    generation: int
    status: JSON = field(default_factory=dict)
    note: str = ""  # said alongside the next Event (e.g. what discovery found)
    # A rejected spec change is in metadata.generation: ctx.spec is not the accepted spec (only
    # its autoApply and runtimeVersionOverride are), so it must not be profiled again.
    stale_spec: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "Pending")

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("annotations") or {})

    @property
    def auto_apply(self) -> bool:
        return self.spec.get("autoApply") is not False


class DGDRReconciler:
    def __init__(
        self,
        client: KubeClient,
        dgdrs: ReadStore,
        dgds: ReadStore,
        nodes: ReadStore | None,
        recorder: EventRecorder,
        profiles: ProfileTracker,
        config: ReconcilerConfig,
        pods: PodWatch | None = None,
    ) -> None:
        self._client = client
        self._dgdrs = dgdrs
        self._dgds = dgds
        self._nodes = nodes
        self._events = recorder
        self._profiles = profiles
        self._config = config
        self._write = StatusWriter(client, api.DGDR_RESOURCE)
        self._rejected: dict[str, int] = {}
        self._pods = pods
        self._dgd_resource = api.dgd_resource(config.dgd_api_version)
        self._pull_failures: dict[str, set[tuple[str, str, str]]] = {}
        # Per DGDR: (generation, monotonic start, ProfilingJobCreated message) of its profile.
        self._started: dict[str, tuple[int, float, str]] = {}
        self._counted: dict[str, int] = {}  # the generation whose profile the metrics counted
        self._waits: dict[str, int] = {}  # rechecks so far of a DGDR waiting (backoff)

    # ---- entry --------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result:
        cached = self._dgdrs.get(key)
        obj = await self._write.current(key, cached) if cached is not None else None
        if obj is None:
            self._forget(key)
            return Result()
        for attempt in range(self._config.conflict_attempts):
            try:
                return await self._sync(obj)
            except ApiError as e:
                if e.status != 409 or attempt == self._config.conflict_attempts - 1:
                    raise
                # Someone changed it since we read it: read it again and decide again.
                ns, name = key.split("/", 1)
                try:
                    obj = await self._client.get(api.DGDR_RESOURCE, name, ns)
                except ApiError as ge:
                    if ge.status == 404:
                        self._forget(key)
                        return Result()
                    raise
        raise AssertionError("unreachable: the last attempt re-raises")

    def _forget(self, key: str) -> None:
        self._profiles.forget(key)
        self._write.forget(key)
        self._rejected.pop(key, None)
        self._pull_failures.pop(key, None)
        self._started.pop(key, None)
        self._counted.pop(key, None)
        self._waits.pop(key, None)
        ns, name = key.split("/", 1)
        dgdr_metrics.forget(ns, name)

    async def _sync(self, obj: JSON) -> Result:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return await self._finalize(obj)
        status = copy.deepcopy(obj.get("status") or {})
        generation = int(meta.get("generation") or 1)
        observed = int(status.get("observedGeneration") or 0)
        old_accepted = (meta.get("annotations") or {}).get(ACCEPTED_SPEC_ANNOTATION)
        if old_accepted is not None and "acceptedSpec" not in status:
            # Migration: the next status write carries it (the Ready, Deployed, Deploying and
            # Failed handlers write; Profiling does when its profile is done).
            spec = _load_json(old_accepted)
            if isinstance(spec, dict):
                status["acceptedSpec"] = accepted_spec(spec, observed or generation)
        if api.FINALIZER in (meta.get("finalizers") or []) or old_accepted is not None:
            # Older versions put a finalizer on every DGDR; there is nothing it guards (see
            # _finalize), and it blocked deletion while the controller was down: drop it. And
            # the accepted spec moved from an annotation to status.acceptedSpec.
            obj = await self._write.metadata(
                obj,
                finalizers=_without_finalizer(obj),
                annotations={ACCEPTED_SPEC_ANNOTATION: None},
            )
            meta = obj["metadata"]
        ctx = Ctx(
            obj=obj, spec=copy.deepcopy(obj.get("spec") or {}), generation=generation, status=status
        )
        handler = {
            "Pending": self._pending,
            "Profiling": self._profiling,
            "Ready": self._ready,
            "Deploying": self._deploying,
            "Deployed": self._deployed,
            "Failed": self._failed,
        }.get(ctx.phase)
        if handler is None:
            # Only a cluster with a laxer CRD lets an unknown phase in; never export it.
            mark_false(
                ctx.status,
                ConditionType.VALIDATION,
                Reason.VALIDATION_FAILED,
                f"Invalid state: status.phase {ctx.phase!r} is not a known phase",
                ctx.generation,
            )
            return await self._fail(ctx)
        # Report the phase as read before acting, so the metrics see every transition this
        # reconcile makes, the first one (e.g. straight to Failed) included.
        self._write.observe(obj)
        if ctx.phase in api.IMMUTABLE_PHASES and observed and observed != generation:
            outcome = await self._spec_changed(ctx, observed)
            if outcome is not None:
                return outcome
        return await handler(ctx)

    # ---- writes and events ---------------------------------------------------------------------

    async def _commit(self, ctx: Ctx, phase: str) -> None:
        set_phase(ctx.status, phase, ctx.generation)
        ctx.obj = await self._write.status(ctx.obj, ctx.status)

    async def _event(self, ctx: Ctx, type_: str, reason: str, message: str) -> None:
        await self._events.record(ctx.obj, type_, reason, message)

    async def _fail(self, ctx: Ctx, event: tuple[str, str] | None = None) -> Result:
        await self._commit(ctx, "Failed")
        if event is not None:
            await self._event(ctx, "Warning", *event)
        return Result()

    # ---- deletion and spec changes ------------------------------------------------------------

    async def _finalize(self, obj: JSON) -> Result:
        """A DGDR being deleted: stop its profile. No finalizer is added any more (the DGD has
        no ownerReference and is left serving, the planner ConfigMaps are owned by the DGD, and
        a running profile is cancelled as well when the informer reports the deletion), so
        deletion never waits for the controller; one left by an older version is removed."""
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        self._profiles.cancel(key)
        if api.FINALIZER in (obj["metadata"].get("finalizers") or []):
            await self._write.metadata(obj, finalizers=_without_finalizer(obj))
        return Result()

    async def _spec_changed(self, ctx: Ctx, observed: int) -> Result | None:
        """Accept the changes allowed after profiling started (autoApply, runtimeVersionOverride:
        docs/dgdr-contract.md#spec-changes); reject the rest.

        A rejected change keeps the DGDR working on the spec it accepted: it still follows its
        DGD, and observedGeneration stays where it was so the rejection stays visible.
        """
        accepted = ctx.status.get("acceptedSpec")
        new = ctx.spec
        if isinstance(accepted, dict):
            changed = spec_changes(accepted, new)
            accepted_auto = accepted.get("autoApply") is not False
            flip = not accepted_auto and new.get("autoApply") is not False
            allowed = (
                not accepted_auto
                and ctx.phase in ("Profiling", "Ready")
                and changed <= set(MUTABLE_FIELDS)
                and not (flip and ctx.phase == "Profiling")
            )
            if allowed:
                ctx.status["acceptedSpec"] = accepted_spec(new, ctx.generation)
                if "runtimeVersionOverride" in changed:
                    # The generated DGD carries the runtime version: generate it again.
                    return await self._start_profiling(ctx)
                await self._commit(ctx, "Deploying" if flip else ctx.phase)
                return Result(requeue=flip)
            # Keep working on what was accepted: its autoApply and runtimeVersionOverride; the
            # rest of the spec is known only by its hash.
            ctx.spec = {k: v for k, v in new.items() if k not in MUTABLE_FIELDS}
            ctx.spec["autoApply"] = accepted_auto
            if accepted.get("runtimeVersionOverride") is not None:
                ctx.spec["runtimeVersionOverride"] = accepted["runtimeVersionOverride"]
            ctx.stale_spec = bool(changed - set(MUTABLE_FIELDS))
        if self._rejected.get(ctx.key) != ctx.generation:
            self._rejected[ctx.key] = ctx.generation
            await self._event(
                ctx, "Warning", "SpecChangeRejected", SPEC_CHANGE_REJECTED.format(phase=ctx.phase)
            )
        ctx.generation = observed
        return None

    # ---- phases -------------------------------------------------------------------------------

    async def _pending(self, ctx: Ctx) -> Result:
        if self._profiles.was_applied(ctx.key, ctx.generation):
            return Result()  # our own write moved it on; the cache has not caught up yet
        if self._profiles.running(ctx.key, ctx.generation) or self._profiles.outcome(
            ctx.key, ctx.generation
        ):
            # Started by an earlier reconcile and not written yet (see progress_after): what
            # that reconcile decided goes into the first write.
            self._validated(ctx)
            ctx.status["acceptedSpec"] = accepted_spec(ctx.spec, ctx.generation)
            return await self._profiling(ctx)
        observed = int(ctx.status.get("observedGeneration") or 0)
        if observed != ctx.generation:
            _, errors = validate_dgdr(ctx.obj)
            if errors:
                message = "; ".join(str(e) for e in errors)
                mark_false(
                    ctx.status,
                    ConditionType.VALIDATION,
                    Reason.VALIDATION_FAILED,
                    message,
                    ctx.generation,
                )
                return await self._fail(ctx, ("ValidationFailed", message))
            self._validated(ctx)
        # No Pending write of its own: validated, it goes straight on to profiling, and the
        # first write says both (the Validation condition is in it).
        return await self._start_profiling(ctx)

    @staticmethod
    def _validated(ctx: Ctx) -> None:
        mark_true(
            ctx.status,
            ConditionType.VALIDATION,
            Reason.VALIDATION_PASSED,
            "DGDR spec validation passed",
            ctx.generation,
        )

    async def _profiling_spec(self, ctx: Ctx) -> JSON | str | Waiting:
        """The spec the profiler gets (hardware discovered, image defaulted), or why it can't."""
        spec = copy.deepcopy(ctx.spec)
        spec.setdefault("image", self._config.default_image)
        hardware = spec.get("hardware") or {}
        if needs_discovery(hardware):
            if self._nodes is None:
                if not hardware.get("gpuSku"):
                    return (
                        "GPU discovery is disabled and spec.hardware.gpuSku is not set; set "
                        "spec.hardware.gpuSku, numGpusPerNode and totalGpus"
                    )
            else:
                try:
                    found = discover(self._nodes.list(), hardware.get("gpuSku"))
                    spec["hardware"] = enrich(hardware, found)
                    hw = spec["hardware"]
                    ctx.note = (
                        f"; hardware discovered from node labels ({found.product} on "
                        f"{found.nodes} node(s)): gpuSku {hw['gpuSku']}, numGpusPerNode "
                        f"{hw['numGpusPerNode']}, totalGpus {hw['totalGpus']}, "
                        f"vramMb {hw.get('vramMb')}"
                    )
                except DiscoveryError as e:
                    if not hardware.get("gpuSku"):
                        return Waiting(
                            Reason.WAITING_FOR_GPU_NODES,
                            f"GPU hardware discovery failed: {e}; waiting for nodes labelled "
                            "by GPU feature discovery (or set spec.hardware.gpuSku, "
                            "numGpusPerNode and totalGpus)",
                        )
        cache = spec.get("modelCache") or {}
        if cache.get("pvcName"):
            try:
                await self._client.get(PVCS, cache["pvcName"], ctx.namespace)
            except ApiError as e:
                if e.status == 404:
                    return Waiting(
                        Reason.WAITING_FOR_MODEL_CACHE,
                        f"spec.modelCache.pvcName: PersistentVolumeClaim {cache['pvcName']!r} "
                        f"not found in namespace {ctx.namespace!r}; waiting for it to be created",
                    )
                raise
        return spec

    async def _hub_settings(self, ctx: Ctx) -> HubSettings:
        """Where the profiler fetches a model the catalog lacks, with the token of the DGDR's
        namespace: key HF_TOKEN of the Secret --hf-token-secret names (upstream's convention,
        hf-token-secret). No Secret, no key, or no permission to read it: no token."""
        token: str | None = None
        name = self._config.hf_token_secret
        if name:
            try:
                secret = await self._client.get(api.SECRETS, name, ctx.namespace)
            except ApiError as e:
                if e.status not in (403, 404):
                    raise
                if e.status == 403:
                    log.warning("cannot read Secret %s/%s: %s", ctx.namespace, name, e.message)
                secret = {}
            raw = (secret.get("data") or {}).get(api.HF_TOKEN_KEY)
            if isinstance(raw, str) and raw:
                try:
                    token = base64.b64decode(raw, validate=True).decode().strip() or None
                except (binascii.Error, UnicodeDecodeError):
                    log.warning("Secret %s/%s: %s is not base64", ctx.namespace, name, "HF_TOKEN")
        return HubSettings(
            endpoint=self._config.hf_endpoint,
            token=token,
            timeout=self._config.hub_timeout,
            cache_dir=self._config.hub_cache_dir,
        )

    async def _start_profiling(self, ctx: Ctx) -> Result:
        spec = await self._profiling_spec(ctx)
        if isinstance(spec, Waiting):
            return await self._wait(ctx, spec)
        self._waits.pop(ctx.key, None)
        if isinstance(spec, str):
            mark_false(
                ctx.status,
                ConditionType.PROFILING,
                Reason.JOB_CREATION_FAILED,
                spec,
                ctx.generation,
            )
            return await self._fail(ctx, ("ProfilingJobFailed", spec))
        ctx.status["acceptedSpec"] = accepted_spec(ctx.spec, ctx.generation)
        self._profiles.start(
            ctx.key,
            ctx.generation,
            spec,
            name=ctx.name,
            namespace=ctx.namespace,
            options={
                "hub": await self._hub_settings(ctx),
                "dgd_api_version": self._config.dgd_api_version,
            },
        )
        where = (
            "the controller's thorough sweep of candidate deployments"
            if spec.get("searchStrategy") == "thorough"
            else "the controller's worker pool"
        )
        message = f"Profiling started in {where}" + ctx.note
        self._started[ctx.key] = (ctx.generation, time.monotonic(), message)
        if ctx.phase == "Profiling":
            # A restart or a new leader: the phase is written already; the profile runs again.
            ctx.status["profilingPhase"] = "Initializing"
            mark_false(
                ctx.status, ConditionType.PROFILING, Reason.INITIALIZING, message, ctx.generation
            )
            await self._commit(ctx, "Profiling")
            return Result()
        # Nothing written yet: a profile done within progress_after is written once, when done;
        # the tracker enqueues the DGDR on completion, this requeue covers a slow one.
        return Result(requeue_after=self._config.progress_after)

    def _announce(self, ctx: Ctx) -> tuple[str, float]:
        """The ProfilingJobCreated message of this DGDR's profile and how long it has run."""
        started = self._started.get(ctx.key)
        if started is None or started[0] != ctx.generation:
            return "Profiling started in the controller's worker pool", float("inf")
        return started[2], time.monotonic() - started[1]

    async def _wait(self, ctx: Ctx, waiting: Waiting) -> Result:
        """Pending, saying what is missing (a Warning event when that changes); looked at again
        with backoff, and at once on node changes (see app.py)."""
        before = get_condition(ctx.status, "Profiling") or {}
        if before.get("reason") not in WAITING_REASONS:
            # A fresh condition: its transition time is when the wait began.
            remove_condition(ctx.status, "Profiling")
        mark_false(
            ctx.status, ConditionType.PROFILING, waiting.reason, waiting.message, ctx.generation
        )
        deadline = self._config.wait_deadline
        waited = seconds_since(
            (get_condition(ctx.status, "Profiling") or {}).get("lastTransitionTime")
        )
        if deadline > 0 and waited >= deadline:
            message = (
                f"{waiting.message}; gave up after waiting {waited:.0f}s "
                f"(the controller's --wait-deadline is {deadline:g}s)"
            )
            mark_false(ctx.status, ConditionType.PROFILING, waiting.reason, message, ctx.generation)
            self._waits.pop(ctx.key, None)
            return await self._fail(ctx, (waiting.reason, message))
        await self._commit(ctx, "Pending")
        if before.get("reason") != waiting.reason:
            await self._event(ctx, "Warning", waiting.reason, waiting.message)
        n = self._waits.get(ctx.key, 0)
        self._waits[ctx.key] = n + 1
        delay = min(self._config.wait_recheck_cap, self._config.wait_recheck * 2**n)
        if deadline > 0:
            delay = min(delay, max(deadline - waited, 0.0) + 0.01)
        return Result(requeue_after=delay)

    def waiting_for_gpu_nodes(self) -> list[str]:
        """Keys of the DGDRs waiting for GPU-labelled nodes (a node change looks at them)."""
        keys = []
        for obj in self._dgdrs.list():
            status = obj.get("status") or {}
            if (get_condition(status, "Profiling") or {}).get(
                "reason"
            ) == Reason.WAITING_FOR_GPU_NODES:
                meta = obj["metadata"]
                keys.append(f"{meta['namespace']}/{meta['name']}")
        return keys

    async def _profiling(self, ctx: Ctx) -> Result:
        written = ctx.phase == "Profiling"  # else: Pending, started and not written yet
        outcome = self._profiles.outcome(ctx.key, ctx.generation)
        if outcome is None and not written:
            if not self._profiles.running(ctx.key, ctx.generation):
                return await self._start_profiling(ctx)
            message, ran = self._announce(ctx)
            if ran < self._config.progress_after:
                return Result(requeue_after=self._config.progress_after - ran)
            # A slow profile: say so now, and its sub-phases from here on.
            progress = self._profiles.progress.get(ctx.key)
            phase = (
                progress.phase
                if progress is not None and progress.generation == ctx.generation
                else "Initializing"
            )
            ctx.status["profilingPhase"] = phase
            mark_false(ctx.status, ConditionType.PROFILING, Reason(phase), message, ctx.generation)
            await self._commit(ctx, "Profiling")
            await self._event(ctx, "Normal", "Initialized", "DGDR validated and initialized")
            await self._event(ctx, "Normal", "ProfilingJobCreated", message)
            return Result()
        if outcome is None:
            if self._profiles.was_applied(ctx.key, ctx.generation):
                return Result()  # our own write moved it on; the cache has not caught up yet
            if not self._profiles.running(ctx.key, ctx.generation):
                # A new leader, or a restart: nothing is running for this DGDR, so run it again.
                if ctx.stale_spec:
                    message = (
                        "profiling was interrupted (controller restart) after a spec change was "
                        "rejected; the accepted spec is known only by its hash, so it cannot be "
                        "profiled again: delete and recreate the DGDR"
                    )
                    mark_false(
                        ctx.status,
                        ConditionType.PROFILING,
                        Reason.PROFILING_FAILED,
                        message,
                        ctx.generation,
                    )
                    return await self._fail(ctx, ("ProfilingJobFailed", message))
                return await self._start_profiling(ctx)
            progress = self._profiles.progress.get(ctx.key)
            if progress is not None and progress.generation == ctx.generation:
                reason = Reason.COMPLETED if progress.phase == "Done" else Reason(progress.phase)
                ctx.status["profilingPhase"] = progress.phase
                mark_false(
                    ctx.status,
                    ConditionType.PROFILING,
                    reason,
                    progress.message or f"Profiling: {progress.phase}",
                    ctx.generation,
                )
            elif (get_condition(ctx.status, "Profiling") or {}).get("reason") == "Initializing":
                mark_false(
                    ctx.status,
                    ConditionType.PROFILING,
                    Reason.PROFILING_RUNNING,
                    "Profiling is in progress",
                    ctx.generation,
                )
            await self._commit(ctx, "Profiling")
            return Result()
        strategy = str(ctx.spec.get("searchStrategy") or "rapid")
        backend = str(ctx.spec.get("backend") or "auto")
        if outcome.error is not None and not is_verdict(outcome.error):
            err = outcome.error
            self._profiles.cancel(ctx.key)  # drop the outcome: the retry profiles again
            raise ProfilingBugError(
                f"profiling raised {type(err).__name__}: {err}; retrying (not the spec's fault)"
            ) from err
        if not written:
            # Profiled in memory, never written as Profiling: the metrics (phase durations,
            # transitions) still see the DGDR pass through that phase, as the user's story does.
            dgdr_metrics.observe_phase(ctx.namespace, ctx.name, "Profiling", None)
        if outcome.error is not None:
            # Where it died: the last progress the profiler reported, written or not yet.
            progress = self._profiles.progress.get(ctx.key)
            if progress is not None and progress.generation == ctx.generation:
                ctx.status["profilingPhase"] = progress.phase
            elif not written:
                ctx.status["profilingPhase"] = "Initializing"
            reason = api.profiling_failed_reason(ctx.status.get("profilingPhase"))
            err = outcome.error
            message = str(err) if isinstance(err, ProfilerError) else f"{type(err).__name__}: {err}"
            mark_false(ctx.status, ConditionType.PROFILING, reason, message, ctx.generation)
            ctx.status["phase"] = "Failed"
            await self._commit_keep_subphase(ctx)
            self._profiles.applied(ctx.key, ctx.generation)
            dgdr_metrics.observe_profile(backend, strategy, outcome.seconds, "failed")
            # The profiler itself failed (upstream: ProfilingCheckFailed; ProfilingJobFailed is for
            # failures to start profiling).
            await self._event(
                ctx,
                "Warning",
                api.EventReason.PROFILING_CHECK_FAILED.value,
                f"profiling failed: {message}",
            )
            return Result()
        # Counted before the status write a user (or a test) may be waiting for, once.
        if self._counted.get(ctx.key) != ctx.generation:
            self._counted[ctx.key] = ctx.generation
            dgdr_metrics.observe_profile(backend, strategy, outcome.seconds, "succeeded")
        if not written:
            # A quick profile: its start is told with its result. With autoApply, in the
            # SpecGenerated event's message (create -> Deployed stays within 6 API writes).
            message, _ = self._announce(ctx)
            if ctx.auto_apply:
                ctx.note = f" ({message})"
            else:
                await self._event(ctx, "Normal", "ProfilingJobCreated", message)
        result = await self._spec_generated(ctx, outcome.result)
        self._profiles.applied(ctx.key, ctx.generation)
        self._started.pop(ctx.key, None)
        return result

    async def _record(
        self,
        ctx: Ctx,
        fail_as: tuple[ConditionType, Reason, str],
        *,
        annotations: dict[str, str | None] | None = None,
        finalizers: list[str] | None = None,
    ) -> Result | None:
        """Write our metadata; if the API server refuses it (400/422, e.g. annotations too
        large), fail the DGDR saying so instead of retrying what cannot succeed."""
        try:
            ctx.obj = await self._write.metadata(
                ctx.obj, annotations=annotations, finalizers=finalizers
            )
            return None
        except ApiError as e:
            if e.status not in (400, 422):
                raise
            type_, reason, event = fail_as
            message = f"the API server refused the DGDR's metadata: {e.message}"
            mark_false(ctx.status, type_, reason, message, ctx.generation)
            return await self._fail(ctx, (event, message))

    async def _commit_keep_subphase(self, ctx: Ctx) -> None:
        """Failed, but keep profilingPhase so users see where profiling died (upstream does)."""
        sub = ctx.status.get("profilingPhase")
        set_phase(ctx.status, "Failed", ctx.generation)
        if sub:
            ctx.status["profilingPhase"] = sub
        ctx.obj = await self._write.status(ctx.obj, ctx.status)

    async def _spec_generated(self, ctx: Ctx, result: Any) -> Result:
        dgd = copy.deepcopy(result.dgd)
        configmaps = [copy.deepcopy(c) for c in result.configmaps]
        labels = self._labels(ctx)
        for o in [dgd, *configmaps]:
            o.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
            o["metadata"]["namespace"] = ctx.namespace
        dgd_yaml = yaml.safe_dump(dgd, sort_keys=False)
        extra_yaml = yaml.safe_dump_all(configmaps, sort_keys=False) if configmaps else ""
        too_big = [
            n
            for n, v in (("generated DGD", dgd_yaml), ("planner ConfigMaps", extra_yaml))
            if len(v.encode()) > ANNOTATION_LIMIT
        ]
        # The API server also caps all annotations of an object together (256 KiB).
        kept = {
            k: v
            for k, v in ctx.annotations.items()
            if k not in (api.ANNOTATION_GENERATED_DGD_SPEC, api.ANNOTATION_ADDITIONAL_RESOURCES)
        }
        total = sum(len(k) + len(v.encode()) for k, v in kept.items())
        total += len(dgd_yaml.encode()) + len(extra_yaml.encode())
        if not too_big and total > TOTAL_ANNOTATIONS_LIMIT:
            too_big = [f"all annotations together ({total} bytes)"]
        # The profile did complete, whatever happens to its output below.
        mark_true(
            ctx.status,
            ConditionType.PROFILING,
            Reason.PROFILING_COMPLETED,
            "Profiling completed successfully",
            ctx.generation,
        )
        for cm in configmaps:
            foreign = await self._foreign_configmap(ctx, str(cm["metadata"]["name"]))
            if foreign is not None:
                mark_false(
                    ctx.status,
                    ConditionType.SPEC_GENERATED,
                    Reason.GENERATION_FAILED,
                    foreign,
                    ctx.generation,
                )
                return await self._fail(ctx, ("GenerationFailed", foreign))
        if too_big:
            message = (
                f"{' and '.join(too_big)} larger than the API server accepts "
                f"({ANNOTATION_LIMIT} bytes an annotation, {TOTAL_ANNOTATIONS_LIMIT} in all)"
            )
            mark_false(
                ctx.status,
                ConditionType.SPEC_GENERATED,
                Reason.GENERATION_FAILED,
                message,
                ctx.generation,
            )
            return await self._fail(ctx, ("GenerationFailed", message))
        if not ctx.auto_apply:
            # Ready: the user applies it by hand (or flips autoApply), from the annotations.
            annotations: dict[str, str | None] = {api.ANNOTATION_GENERATED_DGD_SPEC: dgd_yaml}
            if extra_yaml:
                annotations[api.ANNOTATION_ADDITIONAL_RESOURCES] = extra_yaml
            refused = await self._record(
                ctx,
                (ConditionType.SPEC_GENERATED, Reason.GENERATION_FAILED, "GenerationFailed"),
                annotations=annotations,
            )
            if refused is not None:
                return refused
            for cm in configmaps:
                await self._ensure_configmap(ctx, cm)
        ctx.status["dgdName"] = dgd["metadata"]["name"]
        prediction = prediction_status(result.result)
        ctx.status["profilingResults"] = {"selectedConfig": dgd, "prediction": prediction}
        generated = (
            "DynamoGraphDeployment spec generated successfully"
            if ctx.auto_apply
            else f"Generated spec is available in annotation {api.ANNOTATION_GENERATED_DGD_SPEC}"
        )
        spec_message = f"{generated}; chosen {describe_prediction(prediction)}"
        # An SLA no configuration meets still yields the closest one (upstream relaxes the SLA
        # with a warning); the condition stays True, since the spec was generated, and says
        # the miss first, where `kubectl describe` readers look.
        missed = describe_misses(prediction)
        reason, message = Reason.SPEC_GENERATED, spec_message
        request = result.result.get("request") or {}
        not_modelled = (
            None
            if modelled(prediction)
            else not_modelled_text(
                str(request.get("model") or ctx.spec.get("model")),
                str(result.result.get("not_modelled") or "unknown architecture"),
            )
        )
        if not_modelled is not None:
            reason = Reason.NOT_PERFORMANCE_MODELLED
            message = f"{not_modelled}: {describe_layout(prediction)}. {generated}"
        elif missed is not None:
            reason = Reason.SLA_NOT_MET
            message = (
                f"{missed}; generated the closest configuration, "
                f"{describe_prediction(prediction)}. {generated}"
            )
        mark_true(ctx.status, ConditionType.SPEC_GENERATED, reason, message, ctx.generation)
        if ctx.auto_apply:
            # Created at once, and written with it in one status write (Deploying): the
            # generated DGD never needs to wait in an annotation.
            await self._event(
                ctx, "Normal", api.EventReason.SPEC_GENERATED.value, spec_message + ctx.note
            )
            await self._generation_warnings(ctx, prediction, not_modelled, missed)
            return await self._create_dgd(ctx, dgd_yaml, configmaps)
        await self._commit(ctx, "Ready")
        await self._event(ctx, "Normal", api.EventReason.SPEC_GENERATED.value, spec_message)
        await self._generation_warnings(ctx, prediction, not_modelled, missed)
        return Result()

    async def _generation_warnings(
        self, ctx: Ctx, prediction: Any, not_modelled: str | None, missed: str | None
    ) -> None:
        if not_modelled is not None:
            await self._event(
                ctx,
                "Warning",
                api.EventReason.NOT_PERFORMANCE_MODELLED.value,
                f"{not_modelled}: {describe_layout(prediction)}",
            )
        elif missed is not None:
            await self._event(
                ctx,
                "Warning",
                api.EventReason.SLA_NOT_MET.value,
                f"{missed}; generated the closest configuration: {describe_layout(prediction)}",
            )

    async def _foreign_configmap(self, ctx: Ctx, name: str) -> str | None:
        """Why the planner ConfigMap ``name`` cannot be ours: it exists, not labelled for this
        DGDR (a name clash must not make two DGDs share one). None: absent or ours."""
        try:
            existing = await self._client.get(CONFIGMAPS, name, ctx.namespace)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        labels = existing.get("metadata", {}).get("labels") or {}
        if (
            labels.get(api.LABEL_DGDR_NAME) == ctx.name
            and labels.get(api.LABEL_DGDR_NAMESPACE) == ctx.namespace
        ):
            return None
        return (
            f"planner ConfigMap {name} already exists in namespace {ctx.namespace} and is not "
            f"this DGDR's (labels {api.LABEL_DGDR_NAME}={labels.get(api.LABEL_DGDR_NAME)!r}); "
            "delete or rename it, or recreate the DGDR under another name"
        )

    async def _ensure_configmap(self, ctx: Ctx, cm: JSON) -> None:
        try:
            await self._client.create(CONFIGMAPS, cm, ctx.namespace)
        except ApiError as e:
            if e.status == 409:
                # Ours (made by an earlier attempt) is success; a foreign one created since the
                # check in _spec_generated is said, never shared silently.
                foreign = await self._foreign_configmap(ctx, str(cm["metadata"].get("name")))
                if foreign is not None:
                    await self._event(ctx, "Warning", "ConfigMapCreationFailed", foreign)
                return
            await self._event(
                ctx,
                "Warning",
                "ConfigMapCreationFailed",
                f"ConfigMap {cm['metadata'].get('name')}: {e.message}",
            )

    async def _adopt_configmaps(self, ctx: Ctx, dgd: JSON) -> None:
        """Give the planner ConfigMaps the DGD as owner (upstream's fix #8766): they were made
        ownerless, since the DGD did not exist yet, and must not outlive it."""
        text = ctx.annotations.get(api.ANNOTATION_ADDITIONAL_RESOURCES)
        if not text:
            return
        owner = _owner(dgd)
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
                continue
            patch = {"metadata": {"ownerReferences": [owner]}}
            try:
                await self._client.patch(CONFIGMAPS, doc["metadata"]["name"], patch, ctx.namespace)
            except ApiError as e:
                if e.status != 404:
                    raise

    async def _ready(self, ctx: Ctx) -> Result:
        await self._commit(ctx, "Ready")
        return Result()

    async def _failed(self, ctx: Ctx) -> Result:
        await self._commit_keep_subphase(ctx)
        return Result()

    async def _get_dgd(self, ctx: Ctx) -> JSON | None:
        name = ctx.status.get("dgdName")
        if not name:
            return None
        found = self._dgds.get(f"{ctx.namespace}/{name}")
        if found is not None:
            return found
        # An adopted DGD need not carry our labels, so it may be outside the informer's selection.
        try:
            return await self._client.get(self._dgd_resource, name, ctx.namespace)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def _deploying(self, ctx: Ctx) -> Result:
        if not ctx.auto_apply:
            await self._commit(ctx, "Ready")
            return Result()
        dgd = await self._get_dgd(ctx)
        generated = ctx.annotations.get(api.ANNOTATION_GENERATED_DGD_SPEC)
        if dgd is None:
            if generated:
                return await self._create_dgd(ctx, generated, None)
            return await self._dgd_deleted(ctx)
        if get_condition(ctx.status, "DeploymentReady") is None:
            # It was there before we created anything (the read was fresh: see StatusWriter).
            return await self._adopt(ctx, dgd["metadata"]["name"])
        return await self._follow(ctx, dgd, deployed=False)

    def _labels(self, ctx: Ctx) -> dict[str, str]:
        """The labels that tie a DGD or ConfigMap to its DGDR (there is no ownerReference)."""
        return {
            api.LABEL_DGDR_NAME: ctx.name,
            api.LABEL_DGDR_NAMESPACE: ctx.namespace,
            api.LABEL_MANAGED_BY: api.MANAGED_BY,
        }

    async def _adopt(self, ctx: Ctx, name: str) -> Result:
        """Adopt a DGD that already exists, as upstream does: its spec untouched, our labels on
        it, so that the DGD informer (which selects on them) brings its health changes to us."""
        labels = {k: v for k, v in self._labels(ctx).items() if k != api.LABEL_MANAGED_BY}
        await self._client.patch(
            self._dgd_resource, name, {"metadata": {"labels": labels}}, ctx.namespace
        )
        message = f"DGD {name} already exists; adopted it, waiting for Ready"
        return await self._created(ctx, name, message)

    async def _created(self, ctx: Ctx, name: str, message: str) -> Result:
        ctx.status["dgdName"] = name
        mark_false(
            ctx.status,
            ConditionType.DEPLOYMENT_READY,
            Reason.DEPLOYMENT_CREATED,
            message,
            ctx.generation,
        )
        await self._commit(ctx, "Deploying")
        await self._event(ctx, "Normal", "DeploymentCreated", message)
        return Result(requeue_after=self._config.resync_period)

    async def _create_dgd(self, ctx: Ctx, generated: str, configmaps: list[JSON] | None) -> Result:
        """Create the DGD; ``configmaps`` (the planner's, when created together with the DGD)
        are created after it, owned by it."""
        try:
            body = yaml.safe_load(generated)
            name = str(body["metadata"]["name"])
        except (yaml.YAMLError, TypeError, KeyError) as e:
            # Someone edited the annotation: retrying cannot mend it.
            message = (
                f"annotation {api.ANNOTATION_GENERATED_DGD_SPEC} is not a DGD manifest "
                f"({type(e).__name__}: {e}); delete and recreate the DGDR"
            )
            mark_false(
                ctx.status,
                ConditionType.DEPLOYMENT_READY,
                Reason.DEPLOYMENT_REJECTED,
                message,
                ctx.generation,
            )
            return await self._fail(ctx, ("DeploymentCreationFailed", message))
        body["metadata"]["namespace"] = ctx.namespace
        body["metadata"].setdefault("labels", {}).update(self._labels(ctx))
        try:
            # The version the DGD was generated in (the one discovery found served).
            resource = api.dgd_resource(str(body.get("apiVersion") or api.DGD_API_VERSION))
            created = await self._client.create(resource, body, ctx.namespace)
        except ApiError as e:
            if e.status in (400, 403, 422):
                message = f"DGD {name} was rejected by the API server: {e.message}"
                mark_false(
                    ctx.status,
                    ConditionType.DEPLOYMENT_READY,
                    Reason.DEPLOYMENT_REJECTED,
                    message,
                    ctx.generation,
                )
                return await self._fail(ctx, ("DeploymentCreationFailed", message))
            if e.status != 409:
                raise
            if configmaps:
                await self._owned_configmaps(ctx, configmaps, await self._get_dgd(ctx))
            return await self._adopt(ctx, name)
        if configmaps:
            await self._owned_configmaps(ctx, configmaps, created)
        return await self._created(ctx, name, f"DGD {name} created, waiting for Ready")

    async def _owned_configmaps(self, ctx: Ctx, configmaps: list[JSON], dgd: JSON | None) -> None:
        for cm in configmaps:
            if dgd is not None:
                cm["metadata"]["ownerReferences"] = [_owner(dgd)]
            await self._ensure_configmap(ctx, cm)

    async def _dgd_deleted(self, ctx: Ctx) -> Result:
        name = ctx.status.pop("dgdName", None) or "(unknown)"
        ctx.status.pop("deploymentInfo", None)
        message = (
            f"DGD {name} was deleted. DGDR will not recreate it; "
            "delete and recreate the DGDR to deploy again"
        )
        mark_false(
            ctx.status,
            ConditionType.DEPLOYMENT_READY,
            Reason.DEPLOYMENT_DELETED,
            message,
            ctx.generation,
        )
        return await self._fail(ctx, ("DeploymentDeleted", message))

    async def _deployed(self, ctx: Ctx) -> Result:
        dgd = await self._get_dgd(ctx)
        if dgd is None:
            return await self._dgd_deleted(ctx)
        return await self._follow(ctx, dgd, deployed=True)

    async def _follow(self, ctx: Ctx, dgd: JSON, *, deployed: bool) -> Result:
        name = dgd["metadata"]["name"]
        if ctx.annotations.get(api.ANNOTATION_GENERATED_DGD_SPEC):
            # The DGD is observed: the planner ConfigMaps now live as long as it does, and from
            # now on its absence means the user deleted it.
            await self._adopt_configmaps(ctx, dgd)
            ctx.obj = await self._write.metadata(
                ctx.obj, annotations={api.ANNOTATION_GENERATED_DGD_SPEC: ""}
            )
        dgd_status = dgd.get("status") or {}
        current = (get_condition(ctx.status, "DeploymentReady") or {}).get("reason")
        await self._report_pull_failures(ctx, name)
        if not dgd_status and current == "DeploymentCreated" and not deployed:
            # Just created, and its operator has said nothing yet: nothing new to write.
            return Result(requeue_after=self._config.resync_period)
        state = str(dgd_status.get("state") or "initializing")
        ctx.status["deploymentInfo"] = deployment_info(dgd_status)
        if state == "successful":
            mark_true(
                ctx.status,
                ConditionType.DEPLOYMENT_READY,
                Reason.DEPLOYMENT_READY,
                f"DGD {name} is ready",
                ctx.generation,
            )
            await self._commit(ctx, "Deployed")
            if not deployed:
                await self._event(ctx, "Normal", "DeploymentReady", f"DGD {name} is ready")
            return Result(requeue_after=self._config.resync_period)
        if deployed or current == "DeploymentDegraded":
            message = f"DGD {name} is in {state} state (was ready)"
            mark_false(
                ctx.status,
                ConditionType.DEPLOYMENT_READY,
                Reason.DEPLOYMENT_DEGRADED,
                message,
                ctx.generation,
            )
            await self._commit(ctx, "Deploying")
            if deployed:
                await self._event(ctx, "Warning", "DeploymentDegraded", message)
            return Result(requeue_after=self._config.resync_period)
        mark_false(
            ctx.status,
            ConditionType.DEPLOYMENT_READY,
            Reason.DEPLOYMENT_IN_PROGRESS,
            f"DGD {name} is in {state} state",
            ctx.generation,
        )
        await self._commit(ctx, "Deploying")
        return Result(requeue_after=self._config.resync_period)

    async def _report_pull_failures(self, ctx: Ctx, dgd_name: str) -> None:
        """A Warning ImagePullFailed event for each pod, container and image of the DGD that
        cannot pull (upstream's event); each once, not on every resync."""
        if self._pods is None:
            return
        self._pods.ensure(ctx.namespace)
        seen = self._pull_failures.setdefault(ctx.key, set())
        for pod in self._pods.pods_of(ctx.namespace, dgd_name):
            for failure in pull_failures(pod):
                mark = (failure.uid or failure.pod, failure.container, failure.image)
                if mark in seen:
                    continue
                if len(seen) >= MAX_PULL_FAILURES_REMEMBERED:
                    seen.clear()
                seen.add(mark)
                await self._event(
                    ctx, "Warning", api.EventReason.IMAGE_PULL_FAILED.value, failure.describe()
                )


def deployment_info(dgd_status: JSON) -> dict[str, int]:
    """Replica counts summed over the DGD's services (v1alpha1) or components (v1beta1)."""
    parts = dgd_status.get("services") or dgd_status.get("components") or {}
    values = parts.values() if isinstance(parts, dict) else parts
    replicas = available = 0
    for s in values:
        if isinstance(s, dict):
            replicas += int(s.get("replicas") or 0)
            available += int(s.get("availableReplicas") or 0)
    return {"replicas": replicas, "availableReplicas": available}


def _spec_hash(spec: JSON) -> str:
    rest = {k: v for k, v in spec.items() if k not in MUTABLE_FIELDS}
    return "sha256:" + hashlib.sha256(_dump_json(rest).encode()).hexdigest()


def accepted_spec(spec: JSON, generation: int) -> JSON:
    """``status.acceptedSpec``: what the spec-change rule needs of an accepted spec — the fields
    it lets change, and a hash of the rest (a fixed size, whatever the spec's)."""
    record: JSON = {
        "generation": generation,
        "hash": _spec_hash(spec),
        "autoApply": spec.get("autoApply") is not False,
    }
    if spec.get("runtimeVersionOverride") is not None:
        record["runtimeVersionOverride"] = spec["runtimeVersionOverride"]
    return record


def spec_changes(accepted: JSON, new: JSON) -> set[str]:
    """The mutable fields that differ from the accepted ones, plus "spec" if anything else does."""
    changed: set[str] = set()
    if accepted.get("hash") != _spec_hash(new):
        changed.add("spec")
    if (accepted.get("autoApply") is not False) != (new.get("autoApply") is not False):
        changed.add("autoApply")
    if accepted.get("runtimeVersionOverride") != new.get("runtimeVersionOverride"):
        changed.add("runtimeVersionOverride")
    return changed


def _owner(dgd: JSON) -> JSON:
    return {
        "apiVersion": dgd["apiVersion"],
        "kind": dgd["kind"],
        "name": dgd["metadata"]["name"],
        "uid": dgd["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _without_finalizer(obj: JSON) -> list[str]:
    return [f for f in obj["metadata"].get("finalizers") or [] if f != api.FINALIZER]


def _dump_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _load_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
