"""The manager: shared informers, controllers, leader election and the health server, in order.

Lifecycle of :meth:`Manager.run`, modelled on controller-runtime's manager:

1. the health/metrics server and every informer start (followers too: their caches stay warm and
   their workqueues fill, so a new leader starts on every key at once, with no cold list);
2. the caches sync, within ``cache_sync_timeout``;
3. the manager campaigns for the Lease (or, without leader election, leads at once);
4. as leader it starts the controllers' workers and the leader-only runnables;
5. SIGTERM / SIGINT (or :meth:`Manager.stop`): intake stops, keys in flight finish within
   ``shutdown_timeout`` (a second signal cancels them at once), the lease is released,
   informers stop, the client is closed; exit 0;
6. a lost lease: workers are cancelled at once, nothing is drained or released (another process
   may already be acting); exit 1, so Kubernetes restarts the pod as a follower.

The manager owns the :class:`KubeClient` it is given and closes it on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from controller.machinery.client import KubeClient, Resource
from controller.machinery.health import HealthServer, MetricsServer
from controller.machinery.informer import Informer, InformerConfig
from controller.machinery.leader import LeaderElectionConfig, LeaderElectionLost, LeaderElector
from controller.machinery.multi_namespace import MultiNamespaceInformer
from controller.machinery.store import Transform
from controller.machinery.workers import Controller, Reconciler
from controller.machinery.workqueue import default_rate_limiter

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1

Runnable = Callable[[], Coroutine[Any, Any, None]]
# A gate check: a reason why controllers must not start yet, or None (see Manager.add_gate).
Gate = Callable[[], Awaitable[str | None]]


def default_identity() -> str:
    """Pod name + UID when the downward API provides them, else hostname + a random suffix:
    two incarnations of one pod never share an identity."""
    pod, uid = os.environ.get("POD_NAME"), os.environ.get("POD_UID")
    if pod and uid:
        return f"{pod}_{uid}"
    return f"{pod or socket.gethostname()}_{uuid.uuid4()}"


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_lease_namespace() -> str:
    """The pod's own namespace (downward API ``POD_NAMESPACE``, else the service-account
    mount, as controller-runtime does), or ``default`` outside a cluster."""
    if namespace := os.environ.get("POD_NAMESPACE"):
        return namespace
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True)
class ManagerConfig:
    """Everything the manager needs, with controller-runtime's defaults; seconds throughout."""

    namespaces: tuple[str, ...] | None = None  # None: all namespaces
    leader_election: bool = True
    lease_name: str = "controller-leader"
    lease_namespace: str = field(default_factory=default_lease_namespace)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = field(default_factory=default_identity)
    health_host: str = "0.0.0.0"
    health_port: int | None = 8081  # probes; None: no server; 0: any free port
    # /metrics on its own port (0: any free port); None: on the probe server's port.
    metrics_port: int | None = None
    informer: InformerConfig = field(default_factory=InformerConfig)
    workers: int = 1  # per controller, unless add_controller says otherwise
    cache_sync_timeout: float = 120.0
    shutdown_timeout: float = 30.0
    reconcile_timeout: float | None = None
    retry_base_delay: float = 0.005
    retry_max_delay: float = 1000.0
    retry_qps: float = 10.0
    retry_burst: int = 100
    handle_signals: bool = True
    # How often a closed gate (see Manager.add_gate) is looked at again.
    gate_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.namespaces is not None:
            if not self.namespaces or not all(self.namespaces):
                raise ValueError("namespaces must be None (all) or non-empty names")
            object.__setattr__(self, "namespaces", tuple(self.namespaces))
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for name in ("cache_sync_timeout", "shutdown_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.leader_election:
            self.election_config()  # validates the durations, naming the bad one

    def election_config(self) -> LeaderElectionConfig:
        return LeaderElectionConfig(
            lease_name=self.lease_name,
            lease_namespace=self.lease_namespace,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )


AnyInformer = Informer | MultiNamespaceInformer


class Manager:
    """Runs informers always and controllers only while leader; see the module docstring."""

    def __init__(self, client: KubeClient, config: ManagerConfig) -> None:
        self.client = client
        self.config = config
        self.controllers: list[Controller] = []
        self._informers: dict[tuple[Resource, str | None, str | None], AnyInformer] = {}
        self._runnables: list[tuple[str, Runnable]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._informer_tasks: list[asyncio.Task[None]] = []
        self._runnable_tasks: list[asyncio.Task[None]] = []
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._force: asyncio.Event | None = None  # a second signal: stop waiting for workers
        self._running = False
        self.elector: LeaderElector | None = None
        self.health: HealthServer | None = None
        self.metrics: MetricsServer | None = None
        self._leading_without_election = False
        self._workers_started = False
        self._gates: list[tuple[str, Gate]] = []
        self._readyz: list[tuple[str, Callable[[], bool | str]]] = []
        self.gate_reason: str | None = None  # why controllers wait, while a gate is closed

    # ---- setup --------------------------------------------------------------------------------

    def informer(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        transform: Transform | None = None,
    ) -> AnyInformer:
        """The shared informer for this resource, namespace and selector (made on first use).

        With no ``namespace``, a namespaced resource is watched in the configured namespaces
        (one watch each) or cluster-wide when none are configured. ``transform`` trims each
        object before it is cached (controller-runtime's cache transform; managedFields are
        stripped anyway); a shared informer has one transform, so asking again with another
        is an error."""
        spaces: tuple[str, ...] | None = None
        if resource.namespaced and namespace is None and self.config.namespaces is not None:
            if len(self.config.namespaces) == 1:
                namespace = self.config.namespaces[0]
            else:
                spaces = self.config.namespaces
        if not resource.namespaced:
            namespace = None
        key = (resource, namespace if spaces is None else ",".join(spaces), label_selector)
        found = self._informers.get(key)
        if found is not None:
            if transform is not None and found.transform is not transform:
                raise ValueError(
                    f"transform: the informer of {resource.plural} already has another transform"
                )
            return found
        made: AnyInformer
        if spaces is not None:
            made = MultiNamespaceInformer(
                [
                    Informer(
                        self.client,
                        resource,
                        namespace=ns,
                        label_selector=label_selector,
                        config=self.config.informer,
                        transform=transform,
                    )
                    for ns in spaces
                ]
            )
        else:
            made = Informer(
                self.client,
                resource,
                namespace=namespace,
                label_selector=label_selector,
                config=self.config.informer,
                transform=transform,
            )
        self._informers[key] = made
        if self._running:
            self._start_informer(made)
        return made

    def add_controller(
        self, name: str, reconcile: Reconciler, *, workers: int | None = None
    ) -> Controller:
        cfg = self.config
        if any(c.name == name for c in self.controllers):
            raise ValueError(f"controller name {name!r} is already used")
        controller = Controller(
            name,
            reconcile,
            workers=workers if workers is not None else cfg.workers,
            rate_limiter=default_rate_limiter(
                base_delay=cfg.retry_base_delay,
                max_delay=cfg.retry_max_delay,
                qps=cfg.retry_qps,
                burst=cfg.retry_burst,
            ),
            reconcile_timeout=cfg.reconcile_timeout,
        )
        self.controllers.append(controller)
        if self._workers_started:  # added while leading: start at once
            controller.start()
        return controller

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` at shutdown once work has stopped, while the client is still open (e.g. to
        flush buffered events); bounded by a few seconds, its errors only logged."""
        self._on_stop.append(fn)

    def add_gate(self, name: str, check: Gate) -> None:
        """A condition to meet before this replica's controllers start, even as leader (e.g. no
        other controller reconciles the same objects): while ``check`` returns a reason, the
        controllers wait; the reason is logged at ERROR when it appears or changes, and looked
        at again every ``gate_interval`` seconds. Readiness is not affected (the replica keeps
        serving what every replica serves, such as a conversion webhook)."""
        self._gates.append((name, check))

    def add_readyz(self, name: str, check: Callable[[], bool | str]) -> None:
        """A readiness check of another part of the process (e.g. a webhook server)."""
        self._readyz.append((name, check))
        if self.health is not None:
            self.health.add_readyz(name, check)

    def add_runnable(self, name: str, fn: Runnable) -> None:
        """A leader-only background task (e.g. a periodic sweep); cancelled when leading ends."""
        self._runnables.append((name, fn))

    @property
    def is_leader(self) -> bool:
        if self.elector is not None:
            return self.elector.is_leader
        return self._leading_without_election

    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully (what SIGTERM does)."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    # ---- run ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped or the lease is lost; returns the process exit code."""
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        signals = self._install_signals()
        lost = False
        code = EXIT_FAILED
        try:
            await self._start_health()
            self._running = True
            for informer in self._informers.values():
                self._start_informer(informer)
            if not await self._wait_synced():
                code = EXIT_OK if self._stop.is_set() else EXIT_FAILED  # stopped while syncing
                return code
            if self.config.leader_election:
                self.elector = LeaderElector(self.client, self.config.election_config())
                election = asyncio.create_task(self.elector.run(), name="leader-election")
                lost = await self._lead(election)
            elif not self._stop.is_set():
                self._leading_without_election = True
                gates = asyncio.create_task(self._open_gates(), name="manager-gates")
                stop = asyncio.create_task(self._stop.wait())
                await asyncio.wait({gates, stop}, return_when="FIRST_COMPLETED")
                for task in (gates, stop):
                    task.cancel()
                await asyncio.gather(gates, stop, return_exceptions=True)
                if not self._stop.is_set():
                    self._start_leading()
                    await self._stop.wait()
            code = EXIT_FAILED if lost else EXIT_OK
            return code
        finally:
            await self._shutdown(lost)
            self._remove_signals(signals)
            log.info("manager stopped", extra={"exit_code": code})

    async def _lead(self, election: asyncio.Task[None]) -> bool:
        """Wait for leadership, lead until stopped or lost; ``True`` when the lease was lost."""
        assert self.elector is not None and self._stop is not None
        stop = asyncio.create_task(self._stop.wait())
        leading = asyncio.create_task(self.elector.leading.wait())
        try:
            done, _ = await asyncio.wait({election, stop, leading}, return_when="FIRST_COMPLETED")
            if leading in done and election not in done and stop not in done:
                gates = asyncio.create_task(self._open_gates(), name="manager-gates")
                done, _ = await asyncio.wait({election, stop, gates}, return_when="FIRST_COMPLETED")
                if gates in done:
                    gates.result()
                    self._start_leading()
                    done, _ = await asyncio.wait({election, stop}, return_when="FIRST_COMPLETED")
                else:
                    gates.cancel()
                    await asyncio.gather(gates, return_exceptions=True)
            if election in done:
                err = election.exception()
                if isinstance(err, LeaderElectionLost):
                    log.error("leader election lost: %s; stopping at once", err)
                    await self._abort_leading()
                    return True
                if err is not None:
                    log.error("leader election failed", exc_info=err)
                    await self._abort_leading()
                    return True
                return False
            # Graceful stop: finish in-flight work first, then release the lease.
            await self._stop_leading()
            self.elector.stop()
            try:
                async with asyncio.timeout(2 * self.config.election_config().request_timeout + 1):
                    await election
            except (TimeoutError, LeaderElectionLost):
                pass
            return False
        finally:
            for task in (stop, leading):
                task.cancel()
            if not election.done():
                election.cancel()
            await asyncio.gather(stop, leading, election, return_exceptions=True)

    def _start_leading(self) -> None:
        log.info("starting controllers", extra={"controllers": [c.name for c in self.controllers]})
        self._workers_started = True
        for controller in self.controllers:
            controller.start()
        for name, fn in self._runnables:
            self._runnable_tasks.append(asyncio.create_task(fn(), name=name))

    async def _open_gates(self) -> None:
        """Return once every gate is open; a gate whose check fails unexpectedly stays closed
        (logged with its traceback) and is looked at again."""
        said: str | None = None
        while True:
            reasons = []
            for name, check in self._gates:
                try:
                    reason = await check()
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # a bug or an API outage: wait, never act blind
                    log.warning("gate %s could not be checked: %s", name, err, exc_info=err)
                    reason = f"gate {name} could not be checked: {err}"
                if reason:
                    reasons.append(reason)
            if not reasons:
                if said is not None:
                    log.info("controllers may start: %s no longer holds", said)
                self.gate_reason = None
                return
            text = "; ".join(reasons)
            self.gate_reason = text
            if text != said:
                log.error("controllers not started: %s", text)
                said = text
            await asyncio.sleep(self.config.gate_interval)

    async def _stop_leading(self) -> None:
        """Let keys in flight finish within the grace period, unless a second signal says
        not to wait."""
        self._workers_started = False
        grace = self.config.shutdown_timeout

        async def stop_all() -> None:
            await asyncio.gather(*(c.stop(grace) for c in self.controllers))

        stopping = asyncio.create_task(stop_all())
        if self._force is not None and not stopping.done():
            forced = asyncio.create_task(self._force.wait())
            done, _ = await asyncio.wait({stopping, forced}, return_when="FIRST_COMPLETED")
            forced.cancel()
            await asyncio.gather(forced, return_exceptions=True)
            if forced in done:
                log.warning("second signal: cancelling the reconciles in flight")
                await asyncio.gather(*(c.abort() for c in self.controllers))
        await stopping
        await self._cancel(self._runnable_tasks)

    async def _abort_leading(self) -> None:
        self._workers_started = False
        await asyncio.gather(*(c.abort() for c in self.controllers))
        await self._cancel(self._runnable_tasks)

    async def _wait_synced(self) -> bool:
        """Every informer synced within ``cache_sync_timeout``; ``False`` on timeout or stop."""
        assert self._stop is not None
        informers = list(self._informers.values())
        if not informers:
            return not self._stop.is_set()

        async def all_synced() -> None:
            for informer in informers:
                await informer.synced.wait()

        synced = asyncio.create_task(all_synced())
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {synced, stop},
                timeout=self.config.cache_sync_timeout,
                return_when="FIRST_COMPLETED",
            )
        finally:
            stop.cancel()
            synced.cancel()
            await asyncio.gather(stop, synced, return_exceptions=True)
        if synced in done and not synced.cancelled():
            log.info("caches synced", extra={"informers": len(informers)})
            return True
        if stop not in done:
            log.error("caches did not sync within %ss", self.config.cache_sync_timeout)
        return False

    async def _shutdown(self, lost: bool) -> None:
        """Stop whatever still runs; after a lost lease nothing waits for in-flight work."""
        if lost:
            await self._abort_leading()
        else:
            await self._stop_leading()
        self._running = False
        for fn in self._on_stop:
            try:
                async with asyncio.timeout(5.0):
                    await fn()
            except Exception:  # shutdown goes on whatever a hook does
                log.exception("shutdown hook failed")
        await self._cancel(self._informer_tasks)
        if self.health is not None:
            await self.health.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.client.close()

    # ---- helpers ------------------------------------------------------------------------------

    def _start_informer(self, informer: AnyInformer) -> None:
        self._informer_tasks.append(asyncio.create_task(informer.run(), name=informer.name))

    async def _start_health(self) -> None:
        cfg = self.config
        if cfg.metrics_port is not None:
            self.metrics = MetricsServer(cfg.health_host, cfg.metrics_port)
            await self.metrics.start()
        if cfg.health_port is None:
            return
        self.health = HealthServer(
            cfg.health_host, cfg.health_port, serve_metrics=cfg.metrics_port is None
        )
        self.health.add_healthz("informers", self._informers_healthy)
        self.health.add_healthz("leader-election", self._election_healthy)
        self.health.add_readyz("ping", lambda: True)
        self.health.add_readyz("informers-synced", self._informers_synced)
        if cfg.leader_election:
            self.health.add_readyz("leader-election", self._election_ready)
        for name, check in self._readyz:
            self.health.add_readyz(name, check)
        await self.health.start()

    def _informers_healthy(self) -> bool | str:
        bad = [i.name for i in self._informers.values() if not i.healthy()]
        return f"informers not healthy: {bad}" if bad else True

    def _informers_synced(self) -> bool | str:
        waiting = [i.name for i in self._informers.values() if not i.synced.is_set()]
        return f"informers not synced: {waiting}" if waiting else True

    def _election_ready(self) -> bool | str:
        """Ready once the campaign can read the Lease (leading or following); a Lease that cannot
        be used (its namespace does not exist, RBAC) keeps the replica unready, with the reason
        in the log, instead of a ready replica that will never act."""
        if self.elector is None:
            return "leader election has not started (caches not synced yet)"
        return self.elector.ready()

    def _election_healthy(self) -> bool | str:
        if self.elector is None or self.elector.healthy():
            return True
        return "leader but the lease was not renewed for a whole lease duration"

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await task
                except Exception:
                    log.exception("task %s failed", task.get_name())
        tasks.clear()

    def _install_signals(self) -> list[signal.Signals]:
        if not self.config.handle_signals:
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no signals on this platform
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop_requested and self._force is not None:
            log.warning("received %s again, stopping without waiting for workers", sig.name)
            self._force.set()
            return
        log.info("received %s, shutting down gracefully", sig.name)
        self.stop()

    @staticmethod
    def _remove_signals(signals: list[signal.Signals]) -> None:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)


__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "Manager",
    "ManagerConfig",
    "Runnable",
    "default_identity",
    "default_lease_namespace",
]
