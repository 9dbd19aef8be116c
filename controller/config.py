"""The controller's configuration: flags, each with an environment variable as fallback.

Every timing is here with its default, so tests and the demo can shorten them and an admin can set
them in the Deployment without a code change. A flag given on the command line wins over its
environment variable, which wins over the default; a malformed value of either is a usage error
that names the flag or the variable.

Every variable carries the prefix ``DGDR_`` (``DGDR_WORKERS``, ``DGDR_QPS``...), so a generic
name set in the pod for another program (``WORKERS``, ``QPS``) is never taken for ours. The
unprefixed names of 0.1 are refused: one set in the environment is a usage error naming its
replacement, so a setting meant for the controller is never silently dropped. ``KUBECONFIG``
and ``HF_ENDPOINT`` keep their usual names, and
``POD_NAME``, ``POD_UID`` and ``POD_NAMESPACE`` (the downward API) are read as they are.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.dgdr.coexistence import DEFAULT_LEASE as DEFAULT_DYNAMO_OPERATOR_LEASE
from controller.dgdr.coexistence import parse_lease_ref
from controller.machinery.logging_setup import LOG_FORMATS
from controller.machinery.manager import default_identity, default_lease_namespace
from profiler.hub import DEFAULT_ENDPOINT
from profiler.request import DEFAULT_IMAGE

ENV_PREFIX = "DGDR_"
# The unprefixed variables 0.1 read: refused, naming their replacement (a name that 0.1 never
# read, such as CONTEXT, may well be set for another program and is simply not ours).
RETIRED_VARIABLES = frozenset(
    {
        "WATCH_NAMESPACES", "WORKERS", "POOL_SIZE", "PROFILE_TIMEOUT", "PROFILE_RETRIES",
        "BIND_ADDRESS", "HEALTH_PORT", "LEADER_ELECT", "LEASE_NAME", "LEASE_NAMESPACE",
        "LEADER_IDENTITY", "LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD", "WATCH_TIMEOUT",
        "WATCHDOG_TIMEOUT", "DEFAULT_IMAGE", "DISCOVER_GPUS", "QPS", "BURST", "SHUTDOWN_GRACE",
        "LOG_LEVEL",
    }
)  # fmt: skip
# Variables with a meaning of their own in the ecosystem, read under their usual names.
STANDARD_VARIABLES = frozenset({"KUBECONFIG", "HF_ENDPOINT"})
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_limit(cgroup_root: Path | None = None) -> int:
    """CPUs this process may use: the cgroup CPU quota (a container's ``resources.limits.cpu``,
    rounded up) when there is one, else the CPUs it may be scheduled on; at least 1.

    ``os.cpu_count()`` sees the node's CPUs, so a pod limited to 2 CPUs on a 64-core node would
    start 64 profiling processes that the quota then throttles."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(CGROUP_ROOT if cgroup_root is None else cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path) -> float | None:
    """The CPU quota in CPUs from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; None if
    unlimited or unreadable."""
    try:
        quota, _, period = (root / "cpu.max").read_text().strip().partition(" ")
        if quota != "max":
            return int(quota) / int(period or "100000")
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


@dataclass
class ControllerConfig:
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: list[str] | None = None  # None: all namespaces
    workers: int = 4
    pool_size: int = field(default_factory=cpu_limit)
    profile_timeout: float = 120.0
    profile_retries: int = 2
    progress_after: float = 1.0
    wait_deadline: float = 3600.0
    profile_cache_mib: int = 16
    bind_address: str = "0.0.0.0"
    probe_port: int = 8081
    metrics_port: int = 8080
    health_port: int | None = None  # deprecated: probes and metrics on this one port
    webhook_port: int | None = None  # None: no conversion webhook (the manifests serve 9443)
    webhook_namespace: str = field(default_factory=default_lease_namespace)
    webhook_service: str = "dgdr-controller-webhook"
    webhook_secret: str = "dgdr-controller-webhook-cert"
    webhook_cert_dir: str = ""
    webhook_url: str = ""
    webhook_inject_ca_from: str = ""
    leader_elect: bool = True
    lease_name: str = "dgdr-controller"
    lease_namespace: str = field(default_factory=default_lease_namespace)
    identity: str = ""
    dynamo_operator_lease: str = DEFAULT_DYNAMO_OPERATOR_LEASE
    allow_dynamo_operator: bool = False
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    watch_timeout: float = 300.0
    watchdog_timeout: float = 70.0
    default_image: str = DEFAULT_IMAGE
    hf_token_secret: str = "hf-token-secret"
    hf_endpoint: str = DEFAULT_ENDPOINT
    hub_timeout: float = 20.0
    discover_gpus: bool = True
    qps: float = 50.0
    burst: int = 100
    shutdown_grace: float = 30.0
    log_level: str = "INFO"
    log_format: str = "json"
    # searchStrategy: thorough (controller/dgdr/thorough.py)
    thorough_candidates: int = 3
    thorough_parallel: int = 1
    thorough_ready_timeout: float = 600.0
    thorough_requests: int = 16
    thorough_concurrency_levels: int = 3
    thorough_max_concurrency: int = 64
    thorough_prefill_points: int = 3
    thorough_decode_contexts: int = 2
    thorough_benchmark: str = "http"
    thorough_aiperf: str = "aiperf"
    thorough_tokenizer: str = ""
    thorough_benchmark_timeout: float = 600.0
    thorough_endpoint: str = "http://{name}-frontend.{namespace}.svc:8000"
    thorough_orphan_interval: float = 300.0
    # Not options: what reading the configuration found worth a warning, logged at start.
    warnings: list[str] = field(default_factory=list)

    def ports(self) -> tuple[int, int | None]:
        """(probe port, metrics port); the metrics port is None when the deprecated
        ``--health-port`` puts /metrics on the probe port."""
        if self.health_port is not None:
            return self.health_port, None
        return self.probe_port, self.metrics_port


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _benchmark(text: str) -> str:
    if text not in ("http", "aiperf"):
        raise ValueError(f"must be http or aiperf, got {text!r}")
    return text


def _lease_ref(text: str) -> str:
    parse_lease_ref(text)
    return text


def _log_format(text: str) -> str:
    if text not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return text


def _namespaces(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


@dataclass(frozen=True)
class _Option:
    dest: str
    env: str  # without the prefix; the STANDARD_VARIABLES are read as they are
    help: str
    parse: Callable[[str], Any] = str

    @property
    def variable(self) -> str:
        return self.env if self.env in STANDARD_VARIABLES else ENV_PREFIX + self.env


# One row per setting: the flag is --<dest with dashes>; the variable DGDR_<env> is read when no
# flag is given.
_OPTIONS: tuple[_Option, ...] = (
    _Option(
        "kubeconfig",
        "KUBECONFIG",
        "kubeconfig file; in-cluster configuration in a pod, else ~/.kube/config",
    ),
    _Option("context", "CONTEXT", "kubeconfig context to use (default: its current context)"),
    _Option(
        "namespaces",
        "WATCH_NAMESPACES",
        "namespace to watch (repeatable; the variable is comma separated); all when absent",
    ),
    _Option(
        "workers", "WORKERS", "concurrent reconciles (a key is never reconciled twice at once)", int
    ),
    _Option(
        "pool_size",
        "POOL_SIZE",
        "profiling worker processes (default: the container's CPU limit, rounded up)",
        int,
    ),
    _Option(
        "profile_timeout",
        "PROFILE_TIMEOUT",
        "seconds one profile may run before its worker is killed",
        float,
    ),
    _Option(
        "progress_after",
        "PROGRESS_AFTER",
        "seconds a profile runs before phase Profiling and its sub-phases are written "
        "(a quicker profile is written once, when done)",
        float,
    ),
    _Option(
        "wait_deadline",
        "WAIT_DEADLINE",
        "seconds a DGDR may stay Pending for what may still appear (its model-cache PVC, "
        "GPU-labelled nodes) before it fails (0: waits for ever)",
        float,
    ),
    _Option(
        "profile_retries",
        "PROFILE_RETRIES",
        "retries of a profile whose worker process crashed",
        int,
    ),
    _Option(
        "profile_cache_mib",
        "PROFILE_CACHE_MIB",
        "MiB of finished profiles (compressed) kept to answer a DGDR reconciled again",
        int,
    ),
    _Option("bind_address", "BIND_ADDRESS", "address of the probe and metrics servers"),
    _Option("probe_port", "PROBE_PORT", "port of /healthz and /readyz (0: pick a free one)", int),
    _Option("metrics_port", "METRICS_PORT", "port of /metrics (0: pick a free one)", int),
    _Option(
        "health_port",
        "HEALTH_PORT",
        "deprecated: serve /healthz, /readyz and /metrics on this one port (replaces "
        "--probe-port and --metrics-port)",
        int,
    ),
    _Option(
        "webhook_port",
        "WEBHOOK_PORT",
        "serve the CRD's v1alpha1/v1beta1 conversion webhook over HTTPS on this port, in every "
        "replica (not given: no webhook)",
        int,
    ),
    _Option(
        "webhook_namespace",
        "WEBHOOK_NAMESPACE",
        "namespace of the webhook's Service and certificate Secret",
    ),
    _Option(
        "webhook_service",
        "WEBHOOK_SERVICE",
        "the Service the API server reaches the webhook through (the CRD is pointed at it)",
    ),
    _Option(
        "webhook_secret",
        "WEBHOOK_SECRET",
        "Secret where the controller keeps its webhook CA and serving certificate",
    ),
    _Option(
        "webhook_cert_dir",
        "WEBHOOK_CERT_DIR",
        "read tls.crt/tls.key from this directory (cert-manager) instead of managing a Secret",
    ),
    _Option(
        "webhook_url",
        "WEBHOOK_URL",
        "point the CRD at this URL instead of the Service (a local API server on loopback)",
    ),
    _Option(
        "webhook_inject_ca_from",
        "WEBHOOK_INJECT_CA_FROM",
        "namespace/name of the cert-manager Certificate whose CA cainjector puts in the CRD",
        _lease_ref,
    ),
    _Option("leader_elect", "LEADER_ELECT", "elect one acting replica through a Lease", _bool),
    _Option("lease_name", "LEASE_NAME", "the coordination.k8s.io/v1 Lease of leader election"),
    _Option(
        "dynamo_operator_lease",
        "DYNAMO_OPERATOR_LEASE",
        "namespace/name of the Dynamo operator's leader-election Lease: while it is held, that "
        "operator reconciles DGDRs and this controller does not act",
        _lease_ref,
    ),
    _Option(
        "allow_dynamo_operator",
        "ALLOW_DYNAMO_OPERATOR",
        "act even while the Dynamo operator runs (only when its DGDR controller is turned off)",
        _bool,
    ),
    _Option(
        "lease_namespace",
        "LEASE_NAMESPACE",
        "namespace of the Lease (default: the pod's own, from POD_NAMESPACE or the service "
        "account; 'default' outside a cluster)",
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
        "hf_token_secret",
        "HF_TOKEN_SECRET",
        "Secret (key HF_TOKEN) in a DGDR's namespace whose Hugging Face token fetches the "
        "config.json of a model the catalog lacks ('': no token)",
    ),
    _Option(
        "hf_endpoint",
        "HF_ENDPOINT",
        "Hugging Face Hub, or a mirror serving its file API, for models the catalog lacks",
    ),
    _Option(
        "hub_timeout", "HUB_TIMEOUT", "seconds one config.json fetch from the Hub may take", float
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
        "thorough_candidates",
        "THOROUGH_CANDIDATES",
        "searchStrategy thorough: candidate configurations deployed and measured per DGDR",
        int,
    ),
    _Option(
        "thorough_parallel",
        "THOROUGH_PARALLEL",
        "searchStrategy thorough: candidates deployed at once (their GPUs within totalGpus)",
        int,
    ),
    _Option(
        "thorough_ready_timeout",
        "THOROUGH_READY_TIMEOUT",
        "searchStrategy thorough: seconds a candidate's test DGD may take to serve before it "
        "is skipped",
        float,
    ),
    _Option(
        "thorough_requests",
        "THOROUGH_REQUESTS",
        "searchStrategy thorough: requests per benchmark run (at least the concurrency)",
        int,
    ),
    _Option(
        "thorough_concurrency_levels",
        "THOROUGH_CONCURRENCY_LEVELS",
        "searchStrategy thorough: decode concurrencies benchmarked per candidate, from 1 up to "
        "its KV capacity",
        int,
    ),
    _Option(
        "thorough_max_concurrency",
        "THOROUGH_MAX_CONCURRENCY",
        "searchStrategy thorough: the highest decode concurrency benchmarked",
        int,
    ),
    _Option(
        "thorough_prefill_points",
        "THOROUGH_PREFILL_POINTS",
        "searchStrategy thorough: input lengths of the prefill measurement, up to the DGDR's ISL "
        "(one: the ISL only; the planner fits its curves through several)",
        int,
    ),
    _Option(
        "thorough_decode_contexts",
        "THOROUGH_DECODE_CONTEXTS",
        "searchStrategy thorough: input lengths of the decode measurement, up to the DGDR's ISL "
        "(the planner's decode interpolation needs more than one)",
        int,
    ),
    _Option(
        "thorough_benchmark",
        "THOROUGH_BENCHMARK",
        "searchStrategy thorough: benchmark client, http (built in) or aiperf (its command line)",
        _benchmark,
    ),
    _Option(
        "thorough_aiperf",
        "THOROUGH_AIPERF",
        "searchStrategy thorough: the aiperf command (with --thorough-benchmark aiperf)",
    ),
    _Option(
        "thorough_tokenizer",
        "THOROUGH_TOKENIZER",
        "searchStrategy thorough: aiperf's --tokenizer (default: the DGDR's model)",
    ),
    _Option(
        "thorough_benchmark_timeout",
        "THOROUGH_BENCHMARK_TIMEOUT",
        "searchStrategy thorough: seconds one benchmark run may take",
        float,
    ),
    _Option(
        "thorough_endpoint",
        "THOROUGH_ENDPOINT",
        "searchStrategy thorough: a test DGD's frontend URL, {name} and {namespace} filled in "
        "(the local DGD runner's dgdrunner.local/endpoint annotation wins)",
    ),
    _Option(
        "thorough_orphan_interval",
        "THOROUGH_ORPHAN_INTERVAL",
        "searchStrategy thorough: seconds between the leader's looks for test DGDs and sweep "
        "ConfigMaps whose DGDR is gone (deleted while no leader ran)",
        float,
    ),
    _Option("log_level", "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    _Option(
        "log_format",
        "LOG_FORMAT",
        "json (one object per line on stderr, for log collectors) or console (one line for a "
        "person at a terminal)",
        _log_format,
    ),
)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    defaults = ControllerConfig()
    for opt in _OPTIONS:
        flag = "--" + opt.dest.replace("_", "-")
        default = getattr(defaults, opt.dest)
        if opt.dest == "pool_size":
            default = "CPU limit"
        elif opt.dest in ("lease_namespace", "webhook_namespace"):
            default = "the pod's namespace"
        text = f"{opt.help} [env {opt.variable}; default {default}]"
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
    warnings: list[str] = []
    for opt in _OPTIONS:
        given = getattr(ns, opt.dest, None)
        if given is not None:
            values[opt.dest] = given
        elif env.get(opt.variable):
            parse = _namespaces if opt.dest == "namespaces" else opt.parse
            try:
                values[opt.dest] = parse(env[opt.variable])
            except ValueError as e:
                fail(f"environment variable {opt.variable}: {e}")
        if opt.env in RETIRED_VARIABLES and opt.env in env:
            # Refused rather than ignored: a setting meant for this controller must not be
            # silently dropped (the deployment would run with a default its admin did not want).
            fail(
                f"environment variable {opt.env} is no longer read: set {opt.variable} instead "
                f"(variables carry the prefix {ENV_PREFIX} since 0.2), and unset {opt.env}"
            )
    for name in ("lease_namespace", "webhook_namespace"):
        if name not in values and env.get("POD_NAMESPACE"):
            values[name] = env["POD_NAMESPACE"]
    known = {f.name for f in fields(ControllerConfig)}
    cfg = ControllerConfig(**{k: v for k, v in values.items() if k in known})
    cfg.warnings = warnings
    if not cfg.identity:
        cfg.identity = default_identity()
    for name in (
        "workers",
        "pool_size",
        "thorough_candidates",
        "thorough_parallel",
        "thorough_requests",
        "thorough_concurrency_levels",
        "thorough_max_concurrency",
        "thorough_prefill_points",
        "thorough_decode_contexts",
    ):
        if getattr(cfg, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.wait_deadline) and cfg.wait_deadline >= 0):
        fail(f"--wait-deadline must be a number of seconds >= 0, got {cfg.wait_deadline}")
    for name in (
        "thorough_ready_timeout",
        "thorough_benchmark_timeout",
        "thorough_orphan_interval",
    ):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            fail(f"--{name.replace('_', '-')} must be a number of seconds > 0, got {value}")
    if cfg.profile_cache_mib < 0:
        fail(f"--profile-cache-mib must be >= 0, got {cfg.profile_cache_mib}")
    for name in ("probe_port", "metrics_port", "health_port", "webhook_port"):
        port = getattr(cfg, name)
        if port is not None and not 0 <= port <= 65535:
            fail(f"--{name.replace('_', '-')} must be a port, 0..65535, got {port}")
    if cfg.health_port is not None:
        warnings.append(
            "--health-port is deprecated: probes and metrics are served on it together; use "
            "--probe-port and --metrics-port"
        )
    elif cfg.probe_port == cfg.metrics_port and cfg.probe_port != 0:
        fail(f"--probe-port and --metrics-port must differ, both are {cfg.probe_port}")
    if cfg.webhook_port and cfg.webhook_port in (cfg.probe_port, cfg.metrics_port, cfg.health_port):
        fail(f"--webhook-port must differ from the probe and metrics ports, got {cfg.webhook_port}")
    if cfg.webhook_url and not cfg.webhook_url.startswith("https://"):
        fail(f"--webhook-url must be an https:// URL, got {cfg.webhook_url!r}")
    return cfg
