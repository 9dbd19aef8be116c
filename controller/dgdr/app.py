"""Wiring: the DGDR controller on the generic machinery, from a ``ControllerConfig``.

Informers: DGDRs; DGDs carrying the ``dgdr.nvidia.com/name`` label (mapped back to their DGDR),
in the version the cluster serves (v1beta1 when the DGD CRD serves it, else v1alpha1: API
discovery at start); Nodes, for GPU discovery; the Dynamo pods of each namespace that has a
followed DGD (``pods.PodWatch``, for ImagePullFailed). The profiling pool starts in every replica,
so a follower that takes over has warm worker processes; only the leader submits profiles.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import urllib.parse
from typing import Any

import prometheus_client

from controller.config import ControllerConfig
from controller.dgdr import api, conversion
from controller.dgdr.coexistence import DynamoOperatorGate
from controller.dgdr.discovery import PRODUCT_LABEL
from controller.dgdr.pods import PodWatch
from controller.dgdr.profile_tracker import ProfileTracker
from controller.dgdr.profiling import ProfileRunner, ProfilingConfig
from controller.dgdr.reconciler import DGDRReconciler, ReconcilerConfig
from controller.dgdr.thorough import (
    AiperfBenchmark,
    BenchmarkClient,
    HttpBenchmark,
    StrategyRunner,
    SweepConfig,
    ThoroughSweeper,
)
from controller.machinery.certs import CertManager, FileCertSource
from controller.machinery.client import NODES, ApiError, ClientOptions, KubeClient, Resource
from controller.machinery.events import EventRecorder
from controller.machinery.informer import InformerConfig
from controller.machinery.logging_setup import configure_logging
from controller.machinery.manager import Manager, ManagerConfig
from controller.machinery.webhook import ConversionTarget, WebhookServer
from controller.machinery.worker_pool import PoolConfig
from controller.machinery.workers import Controller

log = logging.getLogger(__name__)

CONTROLLER_NAME = "dynamographdeploymentrequest"
COMPONENT = "dgdr-controller"


def dgd_to_dgdr_keys(dgd: dict[str, Any]) -> list[str]:
    labels = (dgd.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(api.LABEL_DGDR_NAME), labels.get(api.LABEL_DGDR_NAMESPACE)
    return [f"{namespace}/{name}"] if name and namespace else []


async def served_dgd_version(client: KubeClient) -> str:
    """``nvidia.com/v1beta1`` when API discovery lists DynamoGraphDeployments under that version,
    else ``nvidia.com/v1alpha1`` (an older Dynamo platform, or this project's stand-in CRD).
    Discovery needs no RBAC beyond the ``system:discovery`` every authenticated user has."""
    group_version = Resource(api.GROUP, "v1beta1", "", "APIResourceList", namespaced=False)
    try:
        listing = await client.list(group_version)
    except ApiError as e:
        if e.status != 404:
            raise
        listing = {}
    served = {r.get("name") for r in listing.get("resources") or [] if isinstance(r, dict)}
    version = "v1beta1" if "dynamographdeployments" in served else "v1alpha1"
    return f"{api.GROUP}/{version}"


def manager_config(cfg: ControllerConfig) -> ManagerConfig:
    return ManagerConfig(
        namespaces=tuple(cfg.namespaces) if cfg.namespaces else None,
        leader_election=cfg.leader_elect,
        lease_name=cfg.lease_name,
        lease_namespace=cfg.lease_namespace,
        lease_duration=cfg.lease_duration,
        renew_deadline=cfg.renew_deadline,
        retry_period=cfg.retry_period,
        identity=cfg.identity,
        health_host=cfg.bind_address,
        health_port=cfg.ports()[0],
        metrics_port=cfg.ports()[1],
        informer=InformerConfig(
            watch_timeout=cfg.watch_timeout, watchdog_timeout=cfg.watchdog_timeout
        ),
        workers=cfg.workers,
        shutdown_timeout=cfg.shutdown_grace,
        # The Dynamo operator's Lease is looked at again as often as ours would expire.
        gate_interval=cfg.lease_duration,
    )


async def start_webhook(
    cfg: ControllerConfig, client: KubeClient, manager: Manager
) -> tuple[WebhookServer, list[asyncio.Task[None]]]:
    """The v1alpha1/v1beta1 conversion webhook, in every replica (a follower serves conversions
    too): the CRD pointed at it, its certificate (our own CA in a Secret, or cert-manager's
    files), the HTTPS server; each part is a readiness check."""
    assert cfg.webhook_port is not None
    if cfg.webhook_url:
        target = ConversionTarget(
            client,
            api.DGDR_CRD_NAME,
            url=cfg.webhook_url,
            inject_ca_from=cfg.webhook_inject_ca_from or None,
        )
    else:
        target = ConversionTarget(
            client,
            api.DGDR_CRD_NAME,
            service=(cfg.webhook_namespace, cfg.webhook_service, 443),
            inject_ca_from=cfg.webhook_inject_ca_from or None,
        )
    source: CertManager | FileCertSource
    if cfg.webhook_cert_dir:
        source = FileCertSource(cfg.webhook_cert_dir)
        source.load()
    else:
        host = urllib.parse.urlsplit(cfg.webhook_url).hostname if cfg.webhook_url else None
        is_ip = host is not None and _is_ip(host)
        source = CertManager(
            client,
            cfg.webhook_namespace,
            cfg.webhook_secret,
            cfg.webhook_service,
            [api.DGDR_CRD_NAME],
            extra_dns_names=[host] if host and not is_ip else (),
            ip_addresses=[host] if host and is_ip else (),
        )
    server = WebhookServer(conversion.convert, source, cfg.bind_address, cfg.webhook_port)
    await server.start()
    manager.add_readyz("conversion-webhook", server.ready)
    manager.add_readyz("conversion-target", target.ready)
    manager.add_readyz("webhook-certificate", source.ready)
    tasks = [
        asyncio.create_task(target.run(), name="conversion-target"),
        asyncio.create_task(source.run(), name="webhook-certificate"),
    ]
    return server, tasks


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def thorough_setup(cfg: ControllerConfig) -> tuple[BenchmarkClient, SweepConfig]:
    """The thorough sweep's benchmark client and bounds, from the ``--thorough-*`` flags."""
    bench: BenchmarkClient
    if cfg.thorough_benchmark == "aiperf":
        bench = AiperfBenchmark(
            command=cfg.thorough_aiperf,
            tokenizer=cfg.thorough_tokenizer,
            timeout=cfg.thorough_benchmark_timeout,
        )
    else:
        bench = HttpBenchmark(timeout=cfg.thorough_benchmark_timeout)
    sweep = SweepConfig(
        budget=cfg.thorough_candidates,
        parallel=cfg.thorough_parallel,
        ready_timeout=cfg.thorough_ready_timeout,
        requests=cfg.thorough_requests,
        levels=cfg.thorough_concurrency_levels,
        max_concurrency=cfg.thorough_max_concurrency,
        prefill_points=cfg.thorough_prefill_points,
        decode_contexts=cfg.thorough_decode_contexts,
        endpoint=cfg.thorough_endpoint,
    )
    return bench, sweep


async def run(cfg: ControllerConfig) -> int:
    """Run until SIGTERM (exit 0) or a lost lease (exit 1)."""
    configure_logging(cfg.log_level, log_format=cfg.log_format)
    # controller-runtime exports no *_created series; match it, so its dashboards read ours.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    # The identity in the User-Agent shows in the API server's audit log which replica wrote.
    client = await KubeClient.connect(
        cfg.kubeconfig,
        context=cfg.context,
        qps=cfg.qps,
        burst=cfg.burst,
        options=ClientOptions(user_agent=f"{COMPONENT}/0.1 ({cfg.identity})"),
    )
    runner = ProfileRunner(
        ProfilingConfig(
            pool=PoolConfig(
                size=cfg.pool_size,
                task_timeout=cfg.profile_timeout,
                max_retries=cfg.profile_retries,
            ),
            cache_bytes=cfg.profile_cache_mib * 2**20,
        )
    )
    tracker: ProfileTracker | None = None
    webhook: WebhookServer | None = None
    webhook_tasks: list[asyncio.Task[None]] = []
    try:
        await runner.start()
        manager = Manager(client, manager_config(cfg))
        dgd_version = await served_dgd_version(client)
        log.info("generating and following DynamoGraphDeployments as %s", dgd_version)
        dgdrs = manager.informer(api.DGDR_RESOURCE)
        dgds = manager.informer(api.dgd_resource(dgd_version), label_selector=api.LABEL_DGDR_NAME)
        # Only nodes that GPU feature discovery labelled: no cache of every node of a big cluster.
        nodes = manager.informer(NODES, label_selector=PRODUCT_LABEL) if cfg.discover_gpus else None
        controller: Controller | None = None

        def enqueue(key: str) -> None:
            if controller is not None:
                controller.enqueue(key)

        recorder = EventRecorder(client, COMPONENT)
        sweeper = ThoroughSweeper(client, recorder, *thorough_setup(cfg))
        tracker = ProfileTracker(StrategyRunner(runner, sweeper), enqueue)

        async def collect_orphans() -> None:
            await sweeper.collect_orphans(
                api.dgd_resource(dgd_version), cfg.namespaces, cfg.thorough_orphan_interval
            )

        manager.add_runnable("thorough-orphans", collect_orphans)

        def watch_pods(informer: object, to_keys: object) -> None:
            if controller is not None:
                controller.watch(informer, to_keys)  # type: ignore[arg-type]

        pods = PodWatch(manager, dgds.store, watch_pods)
        manager.on_stop(recorder.flush)  # repeat counts not yet written
        reconciler = DGDRReconciler(
            client,
            dgdrs.store,
            dgds.store,
            nodes.store if nodes is not None else None,
            recorder,
            tracker,
            ReconcilerConfig(
                default_image=cfg.default_image,
                hf_token_secret=cfg.hf_token_secret,
                hf_endpoint=cfg.hf_endpoint,
                hub_timeout=cfg.hub_timeout,
                progress_after=cfg.progress_after,
                wait_deadline=cfg.wait_deadline,
                dgd_api_version=dgd_version,
            ),
            pods,
        )
        if not cfg.allow_dynamo_operator:
            manager.add_gate(
                "dynamo-operator", DynamoOperatorGate(client, cfg.dynamo_operator_lease)
            )
        controller = manager.add_controller(
            CONTROLLER_NAME, reconciler.reconcile, workers=cfg.workers
        )
        controller.watch(dgdrs)
        controller.watch(dgds, dgd_to_dgdr_keys)
        if nodes is not None:
            # GPU nodes appearing or labelled: the DGDRs waiting for them go on at once.
            controller.watch(nodes, lambda _node: reconciler.waiting_for_gpu_nodes())
        if cfg.webhook_port is not None:
            webhook, webhook_tasks = await start_webhook(cfg, client, manager)
        return await manager.run()
    finally:
        for task in webhook_tasks:
            task.cancel()
        await asyncio.gather(*webhook_tasks, return_exceptions=True)
        if webhook is not None:
            await webhook.stop()
        if tracker is not None:
            await tracker.close()
        await runner.close()
        await client.close()
