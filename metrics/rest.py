"""API-server request and list/watch metrics, named like client-go's where it has them.

``rest_client_requests_total`` keeps client-go's exact labels (``code``, ``method``, ``host``;
``method`` is the HTTP method, ``code`` is ``<error>`` when no response arrived). The latency
histogram is labelled by the Kubernetes verb (get, list, watch, create, update, patch, delete)
rather than the HTTP method: a LIST, a GET and the header latency of a WATCH are all HTTP GETs,
and mixing them in one histogram would make every quantile meaningless.
"""

from prometheus_client import Counter, Gauge, Histogram

from metrics import REGISTRY

REQUESTS = Counter(
    "rest_client_requests_total",
    "Number of HTTP requests to the API server, partitioned by status code, method, and host.",
    ["code", "method", "host"],
    registry=REGISTRY,
)

REQUEST_DURATION = Histogram(
    "rest_client_request_duration_seconds",
    "Request latency in seconds (for watches: until the response headers), by Kubernetes verb.",
    ["verb"],
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
    registry=REGISTRY,
)

RATE_LIMITER_WAIT = Histogram(
    "rest_client_rate_limiter_duration_seconds",
    "Time requests waited in the client-side rate limiter, by Kubernetes verb.",
    ["verb"],
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
    registry=REGISTRY,
)

RETRIES = Counter(
    "rest_client_request_retries_total",
    "Requests retried after a throttle, server error or transport failure, by code and verb.",
    ["code", "verb"],
    registry=REGISTRY,
)

# List/watch health, which client-go defines but does not export: how often watches restart and
# why, relists, and how fresh each informer is. ``resource`` is ``plural.group``.
WATCH_RESTARTS = Counter(
    "informer_watch_restarts_total",
    "Watches ended and reopened, by reason (timeout, silent, expired, error, short).",
    ["resource", "reason"],
    registry=REGISTRY,
)

RELISTS = Counter(
    "informer_relists_total",
    "Full lists (initial sync, after 410 Gone, after errors).",
    ["resource"],
    registry=REGISTRY,
)

WATCH_EVENTS = Counter(
    "informer_watch_events_total",
    "Watch events received, by type (ADDED, MODIFIED, DELETED, BOOKMARK).",
    ["resource", "type"],
    registry=REGISTRY,
)

STORE_OBJECTS = Gauge(
    "informer_store_objects",
    "Objects held in the informer's local cache.",
    ["resource"],
    registry=REGISTRY,
)

LAST_EVENT = Gauge(
    "informer_last_activity_timestamp_seconds",
    "Unix time of the last event, bookmark or successful list seen by the informer.",
    ["resource"],
    registry=REGISTRY,
)

__all__ = [
    "LAST_EVENT",
    "RATE_LIMITER_WAIT",
    "RELISTS",
    "REQUESTS",
    "REQUEST_DURATION",
    "RETRIES",
    "STORE_OBJECTS",
    "WATCH_EVENTS",
    "WATCH_RESTARTS",
]
