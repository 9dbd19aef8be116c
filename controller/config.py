"""The controller's configuration: flags, each with an environment variable as fallback.

Every timing is here with its default, so tests and the demo can shorten them and an admin can set
them in the Deployment without a code change. A flag given on the command line wins over its
environment variable, which wins over the default; a malformed value of either is a usage error
that names the flag or the variable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from controller.machinery.manager import default_identity
from profiler.request import DEFAULT_IMAGE


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


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _namespaces(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


@dataclass(frozen=True)
class _Option:
    dest: str
    env: str
    help: str
    parse: Callable[[str], Any] = str


# One row per setting: the flag is --<dest with dashes>; the variable is read when no flag is given.
_OPTIONS: tuple[_Option, ...] = (
    _Option("kubeconfig", "KUBECONFIG", "kubeconfig file; in-cluster configuration when absent"),
    _Option(
        "namespaces",
        "WATCH_NAMESPACES",
        "namespace to watch (repeatable; the variable is comma separated); all when absent",
    ),
    _Option(
        "workers", "WORKERS", "concurrent reconciles (a key is never reconciled twice at once)", int
    ),
    _Option("pool_size", "POOL_SIZE", "profiling worker processes", int),
    _Option(
        "profile_timeout",
        "PROFILE_TIMEOUT",
        "seconds one profile may run before its worker is killed",
        float,
    ),
    _Option(
        "profile_retries",
        "PROFILE_RETRIES",
        "retries of a profile whose worker process crashed",
        int,
    ),
    _Option("bind_address", "BIND_ADDRESS", "address of the health and metrics server"),
    _Option(
        "health_port",
        "HEALTH_PORT",
        "port of /healthz, /readyz and /metrics (0: pick a free one)",
        int,
    ),
    _Option("leader_elect", "LEADER_ELECT", "elect one acting replica through a Lease", _bool),
    _Option("lease_name", "LEASE_NAME", "the coordination.k8s.io/v1 Lease of leader election"),
    _Option(
        "lease_namespace",
        "LEASE_NAMESPACE",
        "namespace of the Lease (else the variable POD_NAMESPACE)",
    ),
    _Option(
        "identity",
        "LEADER_IDENTITY",
        "leader-election identity (default: POD_NAME_POD_UID, else host_random)",
    ),
    _Option(
        "lease_duration",
        "LEASE_DURATION",
        "seconds a follower waits before taking an unrenewed lease",
        float,
    ),
    _Option(
        "renew_deadline",
        "RENEW_DEADLINE",
        "seconds the leader may fail to renew before it stops acting",
        float,
    ),
    _Option("retry_period", "RETRY_PERIOD", "seconds between lease acquire/renew attempts", float),
    _Option(
        "watch_timeout",
        "WATCH_TIMEOUT",
        "server-side watch timeout (jittered up to twice this)",
        float,
    ),
    _Option(
        "watchdog_timeout",
        "WATCHDOG_TIMEOUT",
        "a watch silent this long (no event, no bookmark) is restarted",
        float,
    ),
    _Option(
        "default_image",
        "DEFAULT_IMAGE",
        "image the generated DGD's images derive from when a DGDR sets no spec.image",
    ),
    _Option(
        "discover_gpus",
        "DISCOVER_GPUS",
        "read GPU-feature-discovery node labels (needs node list/watch)",
        _bool,
    ),
    _Option("qps", "QPS", "client-side API request rate (0: no limit)", float),
    _Option("burst", "BURST", "client-side API request burst", int),
    _Option(
        "shutdown_grace",
        "SHUTDOWN_GRACE",
        "seconds in-flight reconciles get to finish on SIGTERM",
        float,
    ),
    _Option(
        "log_level", "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr"
    ),
)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    defaults = ControllerConfig()
    for opt in _OPTIONS:
        flag = "--" + opt.dest.replace("_", "-")
        text = f"{opt.help} [env {opt.env}; default {getattr(defaults, opt.dest)}]"
        if opt.dest == "namespaces":
            ap.add_argument("--namespace", dest="namespaces", action="append", help=text)
        elif opt.parse is _bool:
            ap.add_argument(
                flag, dest=opt.dest, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            ap.add_argument(flag, dest=opt.dest, type=opt.parse, default=None, help=text)


def from_args(
    ns: argparse.Namespace,
    ap: argparse.ArgumentParser | None = None,
    environ: dict[str, str] | None = None,
) -> ControllerConfig:
    """Flag, else environment variable, else default; ``ap.error`` on a malformed value."""
    env = os.environ if environ is None else environ

    def fail(message: str) -> None:
        if ap is not None:
            ap.error(message)  # exits 2 with the usage line
        raise SystemExit(message)

    values: dict[str, Any] = {}
    for opt in _OPTIONS:
        given = getattr(ns, opt.dest, None)
        if given is not None:
            values[opt.dest] = given
        elif env.get(opt.env):
            parse = _namespaces if opt.dest == "namespaces" else opt.parse
            try:
                values[opt.dest] = parse(env[opt.env])
            except ValueError as e:
                fail(f"environment variable {opt.env}: {e}")
    if "lease_namespace" not in values and env.get("POD_NAMESPACE"):
        values["lease_namespace"] = env["POD_NAMESPACE"]
    known = {f.name for f in fields(ControllerConfig)}
    cfg = ControllerConfig(**{k: v for k, v in values.items() if k in known})
    if not cfg.identity:
        cfg.identity = default_identity()
    for name in ("workers", "pool_size"):
        if getattr(cfg, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    return cfg
