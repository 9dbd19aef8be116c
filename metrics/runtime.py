"""controller-runtime compatible metric families: reconcile, workqueue and leader election.

Names, types, labels and buckets follow controller-runtime (``pkg/internal/controller/metrics``,
``pkg/internal/metrics/workqueue.go``, ``pkg/metrics/leaderelection.go``) so that dashboards and
alerts written for Go controllers read this one unchanged. The workqueue families carry both
``name`` and ``controller`` (controller-runtime sets both to the controller name);
``workqueue_depth`` also carries ``priority``, empty because this queue has no priorities.
"""

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

from metrics import REGISTRY


def _steps(start: float, stop: float, step: float) -> list[float]:
    count = round((stop - start) / step)
    return [round(start + i * step, 4) for i in range(count + 1)]


RECONCILE_TIME_BUCKETS: tuple[float, ...] = (
    *(0.005, 0.01, 0.025, 0.05),
    *_steps(0.1, 0.5, 0.05),
    *_steps(0.6, 1.0, 0.1),
    *(1.25, 1.5, 1.75),
    *_steps(2.0, 5.0, 0.5),
    *_steps(6.0, 10.0, 1.0),
    *(15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0),
)
"""controller-runtime's reconcile-time buckets (0.005 s ... 60 s)."""

WORKQUEUE_BUCKETS: tuple[float, ...] = tuple(10.0**exp for exp in range(-8, 4))
"""client-go's workqueue buckets: 1e-8 s ... 1e3 s, times ten each."""

RECONCILE_RESULTS = ("success", "error", "requeue", "requeue_after")

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
    registry=REGISTRY,
)
TERMINAL_RECONCILE_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors_total",
    "Total number of terminal reconciliation errors per controller",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_TIMEOUTS = Counter(
    "controller_runtime_reconcile_timeouts_total",
    "Total number of reconciliation timeouts per controller",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=RECONCILE_TIME_BUCKETS,
    registry=REGISTRY,
)
MAX_CONCURRENT_RECONCILES = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
    registry=REGISTRY,
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
    registry=REGISTRY,
)

WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth",
    "Current depth of workqueue",
    ["name", "controller", "priority"],
    registry=REGISTRY,
)
WORKQUEUE_ADDS = Counter(
    "workqueue_adds_total",
    "Total number of adds handled by workqueue",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name", "controller"],
    buckets=WORKQUEUE_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.",
    ["name", "controller"],
    buckets=WORKQUEUE_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_UNFINISHED_WORK = Gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed by "
    "work_duration. Large values indicate stuck threads.",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_LONGEST_RUNNING = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries_total",
    "Total number of retries handled by workqueue",
    ["name", "controller"],
    registry=REGISTRY,
)

LEADER_ELECTION_MASTER_STATUS = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 "
    "indicates master. 'name' is the string used to identify the lease.",
    ["name"],
    registry=REGISTRY,
)
LEADER_ELECTION_SLOWPATH = Counter(
    "leader_election_slowpath_total",
    "Total number of slow path exercised in renewing leader leases. 'name' is the string used to "
    "identify the lease.",
    ["name"],
    registry=REGISTRY,
)

EVENT_LOOP_LAG = Gauge(
    "controller_event_loop_lag_seconds",
    "How late the asyncio event loop last woke a timer: a blocked loop shows here first.",
    registry=REGISTRY,
)

# The process and runtime families controller-runtime exports (process_*, python_gc_*,
# python_info), registered into this project's registry rather than the global default one.
ProcessCollector(registry=REGISTRY)
for _collector in (GC_COLLECTOR, PLATFORM_COLLECTOR):
    REGISTRY.register(_collector)


def init_controller(controller: str, workers: int) -> None:
    """Create every child at zero so ``rate()`` works from the first scrape, as controller-runtime's
    ``initMetrics`` does."""
    for result in RECONCILE_RESULTS:
        RECONCILE_TOTAL.labels(controller, result)
    RECONCILE_ERRORS.labels(controller)
    TERMINAL_RECONCILE_ERRORS.labels(controller)
    RECONCILE_TIMEOUTS.labels(controller)
    RECONCILE_TIME.labels(controller)
    MAX_CONCURRENT_RECONCILES.labels(controller).set(workers)
    ACTIVE_WORKERS.labels(controller).set(0)


__all__ = [
    "ACTIVE_WORKERS",
    "EVENT_LOOP_LAG",
    "LEADER_ELECTION_MASTER_STATUS",
    "LEADER_ELECTION_SLOWPATH",
    "MAX_CONCURRENT_RECONCILES",
    "RECONCILE_ERRORS",
    "RECONCILE_RESULTS",
    "RECONCILE_TIME",
    "RECONCILE_TIMEOUTS",
    "RECONCILE_TIME_BUCKETS",
    "RECONCILE_TOTAL",
    "TERMINAL_RECONCILE_ERRORS",
    "WORKQUEUE_ADDS",
    "WORKQUEUE_BUCKETS",
    "WORKQUEUE_DEPTH",
    "WORKQUEUE_LONGEST_RUNNING",
    "WORKQUEUE_QUEUE_DURATION",
    "WORKQUEUE_RETRIES",
    "WORKQUEUE_UNFINISHED_WORK",
    "WORKQUEUE_WORK_DURATION",
    "init_controller",
]
