"""A small async Kubernetes API client that speaks plain JSON dicts.

Configuration (kubeconfig contexts, inline or file certificates, exec and OIDC credentials,
in-cluster service-account tokens that rotate) comes from ``kubernetes_asyncio.config``: that
code is subtle and already right. The requests themselves go through one aiohttp session of our
own, built from the loaded ``Configuration`` (host, CA, client cert, TLS server name, bearer token
through its refresh hook), rather than through ``kubernetes_asyncio.ApiClient``, because:

- a controller of custom resources works on dicts; the ApiClient deserialises into generated
  model classes (slow, and lossy for CRDs) and picks the wrong patch content type for custom
  objects unless told otherwise;
- its REST layer sets no read timeout, so a half-open watch blocks forever, and each ``Watch``
  opens a session of its own;
- a single choke point is where the client-side rate limit, the retries with backoff, the
  per-request timeout and the ``rest_client_*`` metrics belong. Wrapping the generated API for
  that would be more code than these few methods.

Every request waits for a token of a qps/burst bucket, is bounded by a timeout, and is counted.
Idempotent reads (and deletes) are retried on 429, 5xx and transport failures with exponential
backoff and jitter, honouring ``Retry-After``; writes are retried only when the server certainly
did not process them: 429, the 503 of an apiserver still installing its handlers after a
restart, and connection failures that happened before anything was sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp

from controller.machinery.kube_config import Configuration
from controller.machinery.kube_config import config as kube_config
from metrics.rest import RATE_LIMITER_WAIT, REQUEST_DURATION, REQUESTS, RETRIES

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# A JSON patch body; a module-level alias because ``KubeClient.list`` shadows the builtin.
JSONPatch = JSON | list[Any]
T = TypeVar("T")

# One watch line holds one object; etcd caps a request at 1.5 MiB, so 16 MiB is a safe ceiling.
_MAX_WATCH_LINE = 16 * 2**20

_PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",  # a JSON body is valid YAML
}


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST tree; ``group`` is ``""`` for the core group."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path; a namespaced kind without namespace means "in all namespaces"."""
        if namespace is not None and not self.namespaced:
            raise ValueError(f"namespace: {self.kind} is cluster-scoped, got {namespace!r}")
        if name is not None and not name:
            raise ValueError("name: must not be empty")
        if subresource is not None and name is None:
            raise ValueError(f"name: the {subresource!r} subresource needs an object name")
        if name is not None and self.namespaced and namespace is None:
            raise ValueError(f"namespace: {self.kind} is namespaced; give a namespace for {name!r}")
        parts = ["/api" if not self.group else "/apis", self.api_version]
        if namespace is not None:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
EVENTS = Resource("events.k8s.io", "v1", "events", "Event")
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)
CORE_EVENTS = Resource("", "v1", "events", "Event")


class ApiError(Exception):
    """A failed API request; ``status`` is the HTTP code, 0 when no response arrived."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: JSON | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body: JSON = body if body is not None else {}
        self.retry_after = retry_after


class TransportError(ApiError):
    """No HTTP response: connection refused or cut, TLS failure, or a timeout.

    ``before_send`` says the request certainly never reached the server (connect failed), so
    even a write may be retried.
    """

    def __init__(self, message: str, *, before_send: bool = False) -> None:
        super().__init__(0, "TransportError", message)
        self.before_send = before_send


# What a kube-apiserver answers (503) between opening its port and installing every handler, e.g.
# right after a restart while /readyz may already say ok. Nothing was done: safe to resend.
NOT_READY_MESSAGE = "before all known HTTP paths have been installed"

# Status codes of failures that pass by themselves: no response (0), timeouts, conflicts (a
# stale read; the next reconcile reads again), throttling, and server or gateway trouble.
TRANSIENT_STATUSES = frozenset({0, 408, 409, 429, 500, 502, 503, 504})


def not_ready_yet(exc: BaseException) -> bool:
    """The apiserver refused the request because it is still starting (503, nothing done)."""
    return isinstance(exc, ApiError) and exc.status == 503 and NOT_READY_MESSAGE in exc.message


def is_transient(exc: BaseException) -> bool:
    """A failure of the API or the network that retrying later fixes, as opposed to a bug or a
    refusal (400, 403, 404, 422...): worth a one-line warning and a backed-off retry, not a
    traceback."""
    if isinstance(exc, ApiError):
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, TimeoutError | ConnectionError | aiohttp.ClientError)


def _error_from_status(status: int, body: JSON, retry_after: float | None = None) -> ApiError:
    """Build an ApiError from a ``Status`` object (HTTP error body or watch ERROR event)."""
    code = body.get("code")
    return ApiError(
        code if isinstance(code, int) and code else status,
        str(body.get("reason") or "Unknown"),
        str(body.get("message") or ""),
        body,
        retry_after=retry_after,
    )


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class ClientOptions:
    """Timings and retry policy; all seconds. Tests shorten them."""

    request_timeout: float = 30.0
    connect_timeout: float = 10.0
    # A watch is cut by the client this long after the server's own timeoutSeconds ...
    watch_grace: float = 30.0
    # ... and when no byte arrives for this long (a backstop for callers without a watchdog).
    watch_read_timeout: float | None = 300.0
    max_retries: int = 4
    retry_base: float = 0.2
    retry_cap: float = 10.0
    user_agent: str = "controller-machinery/0.1"
    pool_size: int = 100

    def __post_init__(self) -> None:
        for name in ("request_timeout", "connect_timeout", "retry_base", "retry_cap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries: must be >= 0, got {self.max_retries!r}")


class TokenBucket:
    """Client-side rate limit: ``qps`` tokens a second, at most ``burst`` saved up.

    Reservation style (like Go's rate.Limiter): a caller takes its token at once, possibly
    going into debt, and sleeps until the debt is paid, so waiters are served in order without
    a polling loop. ``qps <= 0`` disables the limit (controller-runtime's choice, relying on
    the server's priority and fairness).
    """

    def __init__(self, qps: float, burst: int) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"burst: must be >= 1 when qps > 0, got {burst!r}")
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        if self.qps <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: ``base * 2**attempt`` capped, times 1..2."""
    return float(min(cap, base * 2**attempt) * (1.0 + random.random()))


class KubeconfigError(Exception):
    """The API server's address and credentials could not be loaded; the message says why."""


def _kubeconfig_source(path: str | None) -> str:
    """Where the kubeconfig comes from, checked to exist: the path given, else ``$KUBECONFIG``,
    else ``~/.kube/config``. A list of paths (``a:b``, as in ``$KUBECONFIG``) needs one file
    that exists, as kubectl does."""
    hint = ""
    if path is None:
        path = os.environ.get("KUBECONFIG") or ""
        hint = " (from $KUBECONFIG)"
    if not path:
        path = os.path.expanduser("~/.kube/config")
        hint = " (no --kubeconfig, no $KUBECONFIG, and not in a pod)"
    listed = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.isfile(os.path.expanduser(p)) for p in listed):
        raise KubeconfigError(f"kubeconfig file not found: {path}{hint}")
    return path


def _ssl_context(cfg: Configuration) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class KubeClient:
    """One session to one API server; share it between informers, writers and elections."""

    def __init__(
        self,
        configuration: Configuration,
        *,
        qps: float = 50,
        burst: int = 100,
        options: ClientOptions | None = None,
        reload_credentials: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._cfg = configuration
        self._opts = options or ClientOptions()
        self._limiter = TokenBucket(qps, burst)
        self._reload = reload_credentials
        self.server = str(configuration.host).rstrip("/")
        self.host = urlsplit(self.server).netloc or self.server
        connector = aiohttp.TCPConnector(
            limit=self._opts.pool_size, ssl=_ssl_context(configuration)
        )
        self._session = aiohttp.ClientSession(connector=connector, read_bufsize=2**21)
        self._server_hostname: str | None = getattr(configuration, "tls_server_name", None)
        self._proxy: str | None = getattr(configuration, "proxy", None)

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        context: str | None = None,
        qps: float = 50,
        burst: int = 100,
        options: ClientOptions | None = None,
    ) -> KubeClient:
        """Load credentials: the kubeconfig if given, in-cluster in a pod, else the default
        (``$KUBECONFIG``, else ``~/.kube/config``). :class:`KubeconfigError` says in one line
        what is wrong: a file that does not exist, an unknown context, a broken file."""
        cfg = Configuration()
        reload: Callable[[], Awaitable[None]] | None = None
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            except kube_config.ConfigException as exc:
                raise KubeconfigError(f"in-cluster configuration: {exc}") from exc
        else:
            source = _kubeconfig_source(kubeconfig)
            try:
                loader = await kube_config.load_kube_config(
                    config_file=kubeconfig,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
            except (kube_config.ConfigException, OSError, ValueError) as exc:
                what = f"context {context!r} of " if context else ""
                raise KubeconfigError(f"{what}kubeconfig {source}: {exc}") from exc

            async def reload_from_kubeconfig() -> None:
                # Exec and OIDC credentials expire; the loader fetches fresh ones.
                await loader.load_and_set(cfg)

            reload = reload_from_kubeconfig
        return cls(cfg, qps=qps, burst=burst, options=options, reload_credentials=reload)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    # -- public verbs -------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        return await self._json("get", "GET", res.path(namespace, name))

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> JSON:
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if limit is not None:
            params["limit"] = str(limit)
        if continue_:
            params["continue"] = continue_
        return await self._json("list", "GET", res.path(namespace), params=params)

    async def create(self, res: Resource, body: JSON, namespace: str | None = None) -> JSON:
        if namespace is None and res.namespaced:
            namespace = (body.get("metadata") or {}).get("namespace")
            if not namespace:
                raise ValueError(f"metadata.namespace: {res.kind} is namespaced; give a namespace")
        return await self._json("create", "POST", res.path(namespace), body=body)

    async def replace(
        self,
        res: Resource,
        name: str,
        body: JSON,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JSON:
        return await self._json("update", "PUT", res.path(namespace, name, subresource), body=body)

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: JSONPatch,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
        field_manager: str | None = None,
        force: bool = False,
    ) -> JSON:
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(
                f"patch_type: expected one of {sorted(_PATCH_CONTENT_TYPES)}, got {patch_type!r}"
            )
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if patch_type == "apply":
            if not field_manager:
                raise ValueError("field_manager: server-side apply needs a field manager")
            if force:
                params["force"] = "true"
        elif force:
            raise ValueError("force: only meaningful with patch_type='apply'")
        return await self._json(
            "patch",
            "PATCH",
            res.path(namespace, name, subresource),
            params=params,
            body=patch,
            content_type=content_type,
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
    ) -> JSON | None:
        """Delete; ``None`` when the object was already gone."""
        body = {"propagationPolicy": propagation_policy} if propagation_policy else None
        try:
            return await self._json("delete", "DELETE", res.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        send_initial_events: bool = False,
        read_timeout: float | None = None,
    ) -> AsyncGenerator[JSON, None]:
        """Yield watch events ``{"type", "object"}`` (BOOKMARK included) until the server ends.

        An ERROR event is raised as ApiError with the Status code (410 when the resource
        version is too old), never yielded. The stream is cut by the client at
        ``timeout_seconds + watch_grace`` and after ``read_timeout`` seconds without a byte.
        ``send_initial_events`` asks for a streaming list (WatchList): the current objects as
        ADDED, then a BOOKMARK annotated ``k8s.io/initial-events-end``, then live events.
        """
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds: must be > 0, got {timeout_seconds!r}")
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        if allow_bookmarks or send_initial_events:
            params["allowWatchBookmarks"] = "true"
        if send_initial_events:
            params["sendInitialEvents"] = "true"
            params["resourceVersionMatch"] = "NotOlderThan"
        if label_selector:
            params["labelSelector"] = label_selector
        timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + self._opts.watch_grace,
            sock_connect=self._opts.connect_timeout,
            sock_read=read_timeout if read_timeout is not None else self._opts.watch_read_timeout,
        )
        resp = await self._send("watch", "GET", res.path(namespace), params, None, None, timeout)
        try:
            if resp.status >= 400:
                raise await self._error(resp)
            while True:
                try:
                    line = await resp.content.readline(max_line_length=_MAX_WATCH_LINE)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise TransportError(f"watch {res.plural}: {exc!r}") from exc
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise ApiError(resp.status, "InvalidWatchEvent", str(exc)) from exc
                if event.get("type") == "ERROR":
                    raise _error_from_status(resp.status, event.get("object") or {})
                yield event
        finally:
            resp.close()  # never hand a half-read stream back to the pool

    # -- plumbing -----------------------------------------------------------------------------

    async def _json(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: JSONPatch | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        data = None if body is None else json.dumps(body).encode()
        timeout = aiohttp.ClientTimeout(
            total=self._opts.request_timeout, sock_connect=self._opts.connect_timeout
        )
        idempotent = method in ("GET", "DELETE")
        attempt = 0
        reloaded = False
        while True:
            try:
                resp = await self._send(verb, method, path, params, data, content_type, timeout)
                try:
                    if resp.status >= 400:
                        raise await self._error(resp)
                    try:
                        raw = await resp.read()
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        raise TransportError(f"{verb} {path}: reading body: {exc!r}") from exc
                finally:
                    resp.release()
                if not raw:
                    return {}
                try:
                    result = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(resp.status, "InvalidResponse", str(exc)) from exc
                return result if isinstance(result, dict) else {"items": result}
            except ApiError as exc:
                if exc.status == 401 and self._reload is not None and not reloaded:
                    reloaded = True
                    await self._reload()
                    continue
                if attempt >= self._opts.max_retries or not self._retriable(exc, idempotent):
                    raise
                delay = backoff_delay(attempt, self._opts.retry_base, self._opts.retry_cap)
                if exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), self._opts.retry_cap)
                RETRIES.labels(str(exc.status or "<error>"), verb).inc()
                log.info("retrying %s %s in %.2fs after %s", verb, path, delay, exc)
                attempt += 1
                await asyncio.sleep(delay)

    @staticmethod
    def _retriable(exc: ApiError, idempotent: bool) -> bool:
        if exc.status == 429 or not_ready_yet(exc):
            return True  # the server did not act on the request: even a write may be resent
        if isinstance(exc, TransportError):
            return idempotent or exc.before_send
        return idempotent and exc.status in (500, 502, 503, 504)

    async def _send(
        self,
        verb: str,
        method: str,
        path: str,
        params: dict[str, str] | None,
        data: bytes | None,
        content_type: str | None,
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send one request and return the response once its headers arrived (not released)."""
        waited = await self._limiter.acquire()
        RATE_LIMITER_WAIT.labels(verb).observe(waited)
        headers = {"Accept": "application/json", "User-Agent": self._opts.user_agent}
        if content_type is not None and data is not None:
            headers["Content-Type"] = content_type
        token = await self._cfg.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token
        elif self._cfg.username:
            headers["Authorization"] = self._cfg.get_basic_auth_token()
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        if self._proxy:
            kwargs["proxy"] = self._proxy
        start = time.monotonic()
        try:
            resp = await self._session.request(
                method,
                self.server + path,
                params=params,
                data=data,
                headers=headers,
                timeout=limits,
                **kwargs,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            REQUESTS.labels("<error>", method, self.host).inc()
            REQUEST_DURATION.labels(verb).observe(time.monotonic() - start)
            before_send = isinstance(exc, aiohttp.ClientConnectorError)
            raise TransportError(f"{verb} {path}: {exc!r}", before_send=before_send) from exc
        REQUESTS.labels(str(resp.status), method, self.host).inc()
        REQUEST_DURATION.labels(verb).observe(time.monotonic() - start)
        return resp

    @staticmethod
    async def _error(resp: aiohttp.ClientResponse) -> ApiError:
        retry_after = _retry_after(resp.headers)
        try:
            raw = await resp.read()
            body = json.loads(raw) if raw else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            body = {}
        if not isinstance(body, dict) or body.get("kind") != "Status":
            text = json.dumps(body)[:200] if body else (resp.reason or "")
            return ApiError(resp.status, resp.reason or "Unknown", text, retry_after=retry_after)
        return _error_from_status(resp.status, body, retry_after)


async def retry_on_conflict(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    backoff: float = 0.01,
    factor: float = 2.0,
    jitter: float = 0.1,
) -> T:
    """Run ``fn`` (which must re-read what it writes) again while it fails with 409 Conflict.

    Modelled on client-go's ``retry.RetryOnConflict``; the last conflict is re-raised.
    """
    if attempts < 1:
        raise ValueError(f"attempts: must be >= 1, got {attempts!r}")
    delay = backoff
    for attempt in range(attempts):
        try:
            return await fn()
        except ApiError as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
        await asyncio.sleep(delay * (1.0 + jitter * random.random()))
        delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover


def key_of(obj: JSON) -> str:
    """The store key: ``namespace/name``, or ``name`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("metadata.name: missing")
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else str(name)


__all__ = [
    "CONFIGMAPS",
    "CORE_EVENTS",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "NOT_READY_MESSAGE",
    "PVCS",
    "TRANSIENT_STATUSES",
    "ApiError",
    "ClientOptions",
    "KubeClient",
    "KubeconfigError",
    "Resource",
    "TokenBucket",
    "TransportError",
    "backoff_delay",
    "is_transient",
    "key_of",
    "not_ready_yet",
    "retry_on_conflict",
]
