"""The controller's configuration, from flags with environment fallbacks.

Every timing is here with its default, so tests and the demo can shorten them and an admin can set
them in the Deployment without a code change. Flags win over environment variables.
"""

from __future__ import annotations

import argparse
import os
import socket
import uuid
from dataclasses import dataclass, field

from profiler.request import DEFAULT_IMAGE


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ControllerConfig:
    kubeconfig: str | None = None
    namespaces: list[str] | None = None  # None: all namespaces
    workers: int = 4
    pool_size: int = field(default_factory=lambda: os.cpu_count() or 1)
    profile_timeout: float = 120.0
    profile_retries: int = 2
    bind_address: str = "0.0.0.0"
    health_port: int = 8081
    leader_elect: bool = True
    lease_name: str = "dgdr-controller"
    lease_namespace: str = "dgdr-system"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    watch_timeout: float = 300.0
    watchdog_timeout: float = 70.0
    default_image: str = DEFAULT_IMAGE
    discover_gpus: bool = True
    qps: float = 50.0
    burst: int = 100
    shutdown_grace: float = 30.0
    log_level: str = "INFO"


def default_identity() -> str:
    """Pod name + uid in a cluster (downward API), else host + a random suffix."""
    pod, uid = os.environ.get("POD_NAME"), os.environ.get("POD_UID")
    if pod:
        return f"{pod}_{uid}" if uid else pod
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    d = ControllerConfig()
    namespaces = [n for n in _env("WATCH_NAMESPACES", "").split(",") if n] or None
    add = ap.add_argument
    add(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file; in-cluster configuration when absent",
    )
    add(
        "--namespace",
        dest="namespaces",
        action="append",
        default=namespaces,
        help="namespace to watch (repeatable; env WATCH_NAMESPACES, comma separated); "
        "all namespaces when absent",
    )
    add(
        "--workers",
        type=int,
        default=int(_env("WORKERS", str(d.workers))),
        help="concurrent reconciles (one key is never reconciled twice at once)",
    )
    add(
        "--pool-size",
        type=int,
        default=int(_env("POOL_SIZE", str(d.pool_size))),
        help="profiling worker processes",
    )
    add(
        "--profile-timeout",
        type=float,
        default=float(_env("PROFILE_TIMEOUT", str(d.profile_timeout))),
        help="seconds one profile may run before its worker is killed",
    )
    add(
        "--profile-retries",
        type=int,
        default=int(_env("PROFILE_RETRIES", str(d.profile_retries))),
        help="retries of a profile whose worker process crashed",
    )
    add(
        "--bind-address",
        default=_env("BIND_ADDRESS", d.bind_address),
        help="address of the health and metrics server",
    )
    add(
        "--health-port",
        type=int,
        default=int(_env("HEALTH_PORT", str(d.health_port))),
        help="port of /healthz, /readyz and /metrics (0: pick a free one)",
    )
    add(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("LEADER_ELECT", d.leader_elect),
        help="elect one acting replica through a Lease",
    )
    add(
        "--lease-name",
        default=_env("LEASE_NAME", d.lease_name),
        help="the coordination.k8s.io/v1 Lease used for leader election",
    )
    add(
        "--lease-namespace",
        default=_env("LEASE_NAMESPACE", _env("POD_NAMESPACE", d.lease_namespace)),
        help="namespace of the Lease (env LEASE_NAMESPACE, else POD_NAMESPACE)",
    )
    add(
        "--identity",
        default=_env("LEADER_IDENTITY", ""),
        help="leader-election identity (default: POD_NAME_POD_UID, else host_random)",
    )
    add(
        "--lease-duration",
        type=float,
        default=d.lease_duration,
        help="seconds a follower waits before taking an unrenewed lease",
    )
    add(
        "--renew-deadline",
        type=float,
        default=d.renew_deadline,
        help="seconds the leader may fail to renew before it stops acting",
    )
    add(
        "--retry-period",
        type=float,
        default=d.retry_period,
        help="seconds between lease acquire/renew attempts",
    )
    add(
        "--watch-timeout",
        type=float,
        default=d.watch_timeout,
        help="server-side watch timeout (jittered up to twice this)",
    )
    add(
        "--watchdog-timeout",
        type=float,
        default=d.watchdog_timeout,
        help="a watch silent this long (no event, no bookmark) is restarted",
    )
    add(
        "--default-image",
        default=_env("DEFAULT_IMAGE", d.default_image),
        help="profiling/planner image used when a DGDR sets no spec.image",
    )
    add(
        "--discover-gpus",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("DISCOVER_GPUS", d.discover_gpus),
        help="read GPU-feature-discovery node labels (needs node list/watch)",
    )
    add("--qps", type=float, default=d.qps, help="client-side API request rate (0: no limit)")
    add("--burst", type=int, default=d.burst, help="client-side API request burst")
    add(
        "--shutdown-grace",
        type=float,
        default=d.shutdown_grace,
        help="seconds in-flight reconciles get to finish on SIGTERM",
    )
    add(
        "--log-level",
        default=_env("LOG_LEVEL", d.log_level),
        help="DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr",
    )


def from_args(ns: argparse.Namespace) -> ControllerConfig:
    cfg = ControllerConfig(
        **{k: v for k, v in vars(ns).items() if k in ControllerConfig.__dataclass_fields__}
    )
    if not cfg.identity:
        cfg.identity = default_identity()
    for name in ("workers", "pool_size"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    return cfg
