"""An HTTPS server for CRD conversion webhooks (``POST /convert``) and its ``/readyz``.

The API server sends an ``apiextensions.k8s.io/v1`` ``ConversionReview`` whose request holds a
``uid``, the ``desiredAPIVersion`` and the ``objects``; the answer echoes the uid with the
``convertedObjects`` and ``result.status`` ``Success``, or ``Failure`` with a message the API
server passes on to its caller. The conversion itself is injected (``converter(object,
desired_api_version) -> object``), so the server serves any CRD. Every answer to a well-formed
request is a 200 ConversionReview; a converter that raises gives ``Failure`` naming the object and
both versions (and is logged with its traceback), never a bare 500.

TLS: the certificate comes from a :class:`~controller.machinery.certs.CertSource`, asked at each
new handshake. The listening context has no certificate of its own; its SNI callback (called for
every ClientHello, with or without a server name) switches the connection to a context built for
the source's current pair, rebuilt only when the pair changes. A rotated certificate is
therefore served from the next handshake on, with no restart and without disturbing connections
already open. Until the source has a pair, handshakes fail and ``/readyz`` says why.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from controller.machinery.certs import CRDS, CertSource, KeyPair
from controller.machinery.client import KubeClient

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Converter = Callable[[JSON, str], JSON]
"""``converter(object, desired_api_version)`` returns the object in that version, or raises."""

DEFAULT_PORT = 9443  # controller-runtime's webhook port


def _describe(obj: Any) -> str:
    """``Kind namespace/name`` for messages, from whatever the object has."""
    if not isinstance(obj, dict):
        return f"a non-object ({type(obj).__name__})"
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("name") or "<no name>"
    namespace = meta.get("namespace")
    return f"{obj.get('kind') or '<no kind>'} {f'{namespace}/{name}' if namespace else name}"


class WebhookServer:
    """Serves ``/convert`` and ``/readyz`` over HTTPS on its own port (0 picks a free one)."""

    def __init__(
        self,
        converter: Converter,
        cert_source: CertSource,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        *,
        path: str = "/convert",
        max_request_bytes: int = 64 * 2**20,
        shutdown_timeout: float = 5.0,
        keepalive_timeout: float = 3630.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"webhook port must be 0..65535, got {port}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        self.converter = converter
        self.cert_source = cert_source
        self.host = host
        self.port = port
        self.path = path
        # A list is converted in one review holding every item: far above aiohttp's 1 MiB.
        self.max_request_bytes = max_request_bytes
        self.shutdown_timeout = shutdown_timeout
        # aiohttp's default, far above the API server's 90 s idle timeout: the client closes an
        # idle connection first, so a POST never races the server's close (it is not retried).
        self.keepalive_timeout = keepalive_timeout
        # Handshakes served per certificate fingerprint: which certificate clients really got.
        self.handshakes: collections.Counter[str] = collections.Counter()
        self._runner: web.AppRunner | None = None
        self._pair: KeyPair | None = None
        self._context: ssl.SSLContext | None = None
        self._bad_pair: KeyPair | None = None
        self._bad_reason = ""

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; ``OSError`` when the port is taken. Serves once the source has a pair."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=self.max_request_bytes)
        app.router.add_post(self.path, self._convert)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self.keepalive_timeout,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner,
                self.host,
                self.port,
                ssl_context=self._listening_context(),
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0 and runner.addresses:
            self.port = int(runner.addresses[0][1])
        self._current_context()  # load the certificate now if there is one, to log problems early
        log.info("webhook server listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def ready(self) -> bool | str:
        """A :data:`~controller.machinery.health.Check`: listening with a usable certificate."""
        if self._runner is None:
            return "webhook server not listening"
        if self._current_context() is None:
            if self._bad_pair is not None:
                return f"webhook certificate unusable: {self._bad_reason}"
            return "no webhook certificate yet"
        if self._pair is not None and self._pair.not_after <= datetime.now(UTC):
            return f"webhook certificate expired at {self._pair.not_after.isoformat()}"
        return True

    @property
    def serving_pair(self) -> KeyPair | None:
        """The pair new handshakes get (after :meth:`ready` or a handshake looked at the source)."""
        return self._pair

    # ---- TLS ----------------------------------------------------------------------------------

    def _listening_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.sni_callback = self._on_client_hello
        return ctx

    def _on_client_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        ctx = self._current_context()
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        conn.context = ctx
        if self._pair is not None:
            self.handshakes[self._pair.fingerprint] += 1
        return None

    def _current_context(self) -> ssl.SSLContext | None:
        """The context for the source's pair, built when the pair changed; a pair that cannot
        be loaded is logged once and the previous one kept."""
        pair = self.cert_source.current()
        if pair is None or pair is self._pair or pair == self._pair:
            return self._context
        if pair == self._bad_pair:
            return self._context
        try:
            ctx = _server_context(pair)
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._bad_pair, self._bad_reason = pair, str(exc)
            log.error("cannot load the webhook certificate, keeping the previous one: %s", exc)
            return self._context
        first = self._pair is None
        self._pair, self._context = pair, ctx
        self._bad_pair, self._bad_reason = None, ""
        log.info(
            "webhook serving %s certificate",
            "its" if first else "a new",
            extra={"cert": pair.fingerprint[:16], "not_after": pair.not_after.isoformat()},
        )
        return ctx

    # ---- handlers -----------------------------------------------------------------------------

    async def _readyz(self, request: web.Request) -> web.Response:
        outcome = self.ready()
        if outcome is True:
            return web.Response(text="ok")
        return web.Response(status=503, text=f"{outcome}\n")

    async def _convert(self, request: web.Request) -> web.Response:
        try:
            review = await request.json()
        except ValueError as exc:
            return _bad_request(f"request body is not JSON: {exc}")
        req = review.get("request") if isinstance(review, dict) else None
        if not isinstance(req, dict) or not req.get("uid"):
            return _bad_request("not a ConversionReview: request.uid missing")
        uid = str(req["uid"])
        desired = req.get("desiredAPIVersion")
        objects = req.get("objects") or []
        api_version = str(review.get("apiVersion") or "apiextensions.k8s.io/v1")
        if not isinstance(desired, str) or not desired or not isinstance(objects, list):
            return _review(
                api_version,
                uid,
                failure="request.desiredAPIVersion (a string) and request.objects (a list) "
                "are required",
            )
        converted = []
        for obj in objects:
            outcome = self._convert_one(obj, desired)
            if isinstance(outcome, str):
                return _review(api_version, uid, failure=outcome)
            converted.append(outcome)
        return _review(api_version, uid, converted=converted)

    def _convert_one(self, obj: Any, desired: str) -> JSON | str:
        """The converted object, or the failure message (logged)."""
        if not isinstance(obj, dict):
            message = f"cannot convert {_describe(obj)} to {desired}"
            log.warning("conversion failed: %s", message)
            return message
        source = obj.get("apiVersion")
        if source == desired:
            return obj
        what = f"{_describe(obj)} from {source} to {desired}"
        try:
            out = self.converter(obj, desired)
        except Exception as exc:
            log.warning("conversion failed: converting %s", what, exc_info=True)
            return f"converting {what}: {type(exc).__name__}: {exc}"
        if not isinstance(out, dict) or out.get("apiVersion") != desired:
            got = out.get("apiVersion") if isinstance(out, dict) else type(out).__name__
            message = f"converting {what}: the converter returned apiVersion {got!r}"
            log.warning("conversion failed: %s", message)
            return message
        return out


def _review(
    api_version: str,
    uid: str,
    *,
    converted: list[JSON] | None = None,
    failure: str | None = None,
) -> web.Response:
    response: JSON = {"uid": uid}
    if failure is None:
        response["convertedObjects"] = converted or []
        response["result"] = {"status": "Success"}
    else:
        response["convertedObjects"] = []
        response["result"] = {"status": "Failure", "message": failure}
    body = {"apiVersion": api_version, "kind": "ConversionReview", "response": response}
    return web.json_response(body)


def _bad_request(message: str) -> web.Response:
    """400 for what is not a ConversionReview at all, still with a Failure body to read."""
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": {"uid": "", "result": {"status": "Failure", "message": message}},
    }
    log.warning("bad conversion request: %s", message)
    return web.json_response(body, status=400)


def _server_context(pair: KeyPair) -> ssl.SSLContext:
    """A server context holding ``pair``. ``ssl`` loads keys only from files, so the pair goes
    through a private temporary directory that is removed at once."""
    if problem := pair.check():
        raise ValueError(problem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="webhook-tls-") as d:  # mode 0700
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        with open(cert, "wb") as f:
            f.write(pair.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pair.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


__all__ = ["DEFAULT_PORT", "Converter", "WebhookServer"]


# ---- where the API server sends conversions ----------------------------------------------

CERT_MANAGER_INJECT_CA_FROM = "cert-manager.io/inject-ca-from"


class ConversionTarget:
    """Keeps a CRD's ``spec.conversion`` pointed at this webhook: strategy ``Webhook``, its
    Service (namespace, name, port, path) or a URL, and, with cert-manager, the annotation its
    cainjector follows. The CRD file names a default install's Service; a Helm release in another
    namespace, or a re-applied CRD, is corrected here. ``caBundle`` is left to the certificate
    source (merge patches never touch it). Every replica may run it: the patch is idempotent.
    """

    def __init__(
        self,
        client: KubeClient,
        crd_name: str,
        *,
        service: tuple[str, str, int] | None = None,
        url: str | None = None,
        path: str = "/convert",
        inject_ca_from: str | None = None,
        resync: float = 60.0,
    ) -> None:
        if (service is None) == (url is None):
            raise ValueError("give exactly one of service (namespace, name, port) and url")
        self.client = client
        self.crd_name = crd_name
        if service is not None:
            namespace, name, port = service
            self.client_config: JSON = {
                "service": {"namespace": namespace, "name": name, "port": port, "path": path},
                "url": None,
            }
        else:
            self.client_config = {"url": url, "service": None}
        self.inject_ca_from = inject_ca_from
        self.resync = resync
        self.ok: bool | str = "conversion target not checked yet"

    def _patch(self, crd: JSON) -> JSON | None:
        conversion = (crd.get("spec") or {}).get("conversion") or {}
        webhook = conversion.get("webhook") or {}
        have = webhook.get("clientConfig") or {}
        patch: JSON = {}
        wrong = any(have.get(k) != v for k, v in self.client_config.items())
        if (
            conversion.get("strategy") != "Webhook"
            or wrong
            or "v1" not in (webhook.get("conversionReviewVersions") or [])
        ):
            patch["spec"] = {
                "conversion": {
                    "strategy": "Webhook",
                    "webhook": {
                        "conversionReviewVersions": ["v1"],
                        "clientConfig": self.client_config,
                    },
                }
            }
        annotations = (crd.get("metadata") or {}).get("annotations") or {}
        if self.inject_ca_from and annotations.get(CERT_MANAGER_INJECT_CA_FROM) != (
            self.inject_ca_from
        ):
            patch["metadata"] = {"annotations": {CERT_MANAGER_INJECT_CA_FROM: self.inject_ca_from}}
        return patch or None

    async def ensure(self) -> None:
        crd = await self.client.get(CRDS, self.crd_name)
        patch = self._patch(crd)
        if patch is not None:
            patch.setdefault("metadata", {})["resourceVersion"] = crd["metadata"]["resourceVersion"]
            await self.client.patch(CRDS, self.crd_name, patch)
            log.info(
                "pointed the conversion of CRD %s at this webhook",
                self.crd_name,
                extra={"clientConfig": json.dumps(self.client_config)},
            )
        self.ok = True

    def ready(self) -> bool | str:
        return self.ok

    async def run(self) -> None:
        """Ensure now and every ``resync`` seconds (a re-applied CRD), backing off on errors."""
        failures = 0
        while True:
            try:
                await self.ensure()
                failures = 0
                delay = self.resync
            except Exception as exc:
                delay = min(self.resync, 2.0**failures)
                failures += 1
                self.ok = f"cannot point CRD {self.crd_name} at this webhook: {exc}"
                log.warning("%s; retrying in %.0fs", self.ok, delay)
            await asyncio.sleep(delay)
