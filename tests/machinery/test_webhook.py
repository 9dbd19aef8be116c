"""The conversion webhook: the ConversionReview protocol, TLS reload, and, on the real API server,
a toy CRD converted both ways, certificate rotation while serving, two replicas, an outage."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.machinery.certs import (
    CRDS,
    SECRETS,
    CertManager,
    CertManagerOptions,
    KeyPair,
    StaticCertSource,
    generate_ca,
    generate_serving_cert,
)
from controller.machinery.client import ApiError, ClientOptions, KubeClient
from controller.machinery.webhook import WebhookServer
from tests.machinery import widgets as w

JSON = dict[str, Any]
SERVICE = "widget-webhook"
SECRET = "widget-webhook-certs"
LONG = dt.timedelta(days=1)


# ---- helpers ------------------------------------------------------------------------------------


def _der(pair: KeyPair) -> bytes:
    return pair.certificate.public_bytes(serialization.Encoding.DER)


def _client_context(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


async def _peer_cert(port: int, ca_pem: bytes, server_hostname: str = "127.0.0.1") -> bytes:
    """The DER certificate a fresh TLS connection to the server gets, verified against ``ca``."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_client_context(ca_pem), server_hostname=server_hostname
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def _review(objects: list[JSON], desired: str, uid: str = "uid-1") -> JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
    }


@pytest_asyncio.fixture
async def pki() -> tuple[KeyPair, KeyPair]:
    ca = generate_ca("test-ca", LONG)
    return ca, generate_serving_cert(ca, ["localhost"], ["127.0.0.1"], validity=LONG)


@pytest_asyncio.fixture
async def served(pki: tuple[KeyPair, KeyPair]) -> AsyncIterator[tuple[WebhookServer, bytes]]:
    """A server on loopback with a static certificate, and the CA PEM to trust it."""
    ca, pair = pki
    server = WebhookServer(w.convert, StaticCertSource(pair), "127.0.0.1", 0)
    await server.start()
    try:
        yield server, ca.cert_pem
    finally:
        await server.stop()


async def _post(server: WebhookServer, ca_pem: bytes, body: bytes | JSON) -> tuple[int, JSON]:
    url = f"https://127.0.0.1:{server.port}/convert"
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with session.post(url, ssl=_client_context(ca_pem), **kwargs) as resp:
            return resp.status, await resp.json()


# ---- the protocol, without an API server ------------------------------------------------------


@pytest.mark.asyncio
async def test_review_converts_each_object_and_echoes_the_uid(
    served: tuple[WebhookServer, bytes],
) -> None:
    server, ca_pem = served
    objects = [w.widget("g.example.com", "v1", f"w{i}", i) for i in range(3)]
    objects.append(w.widget("g.example.com", "v2", "already", 9))  # desired version: untouched
    status, body = await _post(server, ca_pem, _review(objects, "g.example.com/v2", uid="abc"))
    assert status == 200
    assert body["kind"] == "ConversionReview"
    assert body["apiVersion"] == "apiextensions.k8s.io/v1"
    response = body["response"]
    assert response["uid"] == "abc"
    assert response["result"] == {"status": "Success"}
    got = [
        (o["apiVersion"], o["metadata"]["name"], o["spec"]) for o in response["convertedObjects"]
    ]
    assert got == [
        ("g.example.com/v2", "w0", {"replicas": 0}),
        ("g.example.com/v2", "w1", {"replicas": 1}),
        ("g.example.com/v2", "w2", {"replicas": 2}),
        ("g.example.com/v2", "already", {"replicas": 9}),
    ]


@pytest.mark.asyncio
async def test_converter_errors_are_a_failure_naming_object_and_versions(
    served: tuple[WebhookServer, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    server, ca_pem = served
    bad = w.widget("g.example.com", "v1", w.BOOM, 1)
    bad["metadata"]["namespace"] = "ns1"
    objects = [w.widget("g.example.com", "v1", "fine", 1), bad]
    status, body = await _post(server, ca_pem, _review(objects, "g.example.com/v2", uid="u2"))
    assert status == 200
    assert body["response"]["uid"] == "u2"
    assert body["response"]["result"] == {
        "status": "Failure",
        "message": "converting Widget ns1/boom from g.example.com/v1 to g.example.com/v2: "
        "ValueError: boom is not convertible",
    }
    assert body["response"]["convertedObjects"] == []
    assert any("Widget ns1/boom" in r.getMessage() and r.exc_info for r in caplog.records)

    # A converter that returns the wrong version is a failure too, not a silent success.
    server.converter = lambda obj, desired: obj
    status, body = await _post(server, ca_pem, _review(objects[:1], "g.example.com/v2"))
    assert body["response"]["result"]["status"] == "Failure"
    assert "returned apiVersion 'g.example.com/v1'" in body["response"]["result"]["message"]


@pytest.mark.asyncio
async def test_malformed_requests_get_a_400_with_a_reason(
    served: tuple[WebhookServer, bytes],
) -> None:
    server, ca_pem = served
    status, body = await _post(server, ca_pem, b"not json")
    assert status == 400
    assert "not JSON" in body["response"]["result"]["message"]
    status, body = await _post(server, ca_pem, {"kind": "ConversionReview", "request": {}})
    assert status == 400
    assert "request.uid missing" in body["response"]["result"]["message"]
    status, body = await _post(server, ca_pem, {"request": {"uid": "x", "objects": []}})
    assert status == 200  # a review with a uid: the API server gets a Failure it can report
    assert body["response"]["uid"] == "x"
    assert "desiredAPIVersion" in body["response"]["result"]["message"]


@pytest.mark.asyncio
async def test_readyz_waits_for_a_certificate(pki: tuple[KeyPair, KeyPair]) -> None:
    ca, pair = pki
    source = StaticCertSource()
    server = WebhookServer(w.convert, source, "127.0.0.1", 0)
    assert server.ready() == "webhook server not listening"
    await server.start()
    try:
        assert server.ready() == "no webhook certificate yet"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _peer_cert(server.port, ca.cert_pem)  # no certificate: the handshake fails
        source.set(pair)
        assert server.ready() is True
        url = f"https://127.0.0.1:{server.port}/readyz"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, ssl=_client_context(ca.cert_pem)) as resp,
        ):
            assert (resp.status, await resp.text()) == (200, "ok")
        # A certificate nobody renewed: not ready, saying so.
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        expired = generate_serving_cert(ca, ["localhost"], validity=dt.timedelta(hours=1), now=past)
        source.set(expired)
        assert server.ready() == f"webhook certificate expired at {expired.not_after.isoformat()}"
    finally:
        await server.stop()
    assert server.ready() == "webhook server not listening"


@pytest.mark.asyncio
async def test_rotated_certificate_is_served_without_restart(
    pki: tuple[KeyPair, KeyPair], caplog: pytest.LogCaptureFixture
) -> None:
    """New handshakes get the new certificate; a connection opened before the rotation goes on
    being served; an unusable pair is refused and the previous one kept."""
    ca, first = pki
    source = StaticCertSource(first)
    server = WebhookServer(w.convert, source, "127.0.0.1", 0)
    await server.start()
    try:
        assert await _peer_cert(server.port, ca.cert_pem) == _der(first)
        # A connection opened before the rotation ...
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=_client_context(ca.cert_pem)
        )
        try:
            assert writer.get_extra_info("ssl_object").getpeercert(True) == _der(first)
            second = generate_serving_cert(ca, ["localhost"], ["127.0.0.1"], validity=LONG)
            source.set(second)
            # ... new handshakes get the new certificate ...
            assert await _peer_cert(server.port, ca.cert_pem) == _der(second)
            # ... and the old connection is still served.
            for _ in range(2):
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                assert await reader.readexactly(2) == b"ok"
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

        mismatched = KeyPair(second.cert_pem, first.key_pem)
        source.set(mismatched)
        assert server.ready() is True  # still serving: the previous certificate is good
        assert await _peer_cert(server.port, ca.cert_pem) == _der(second)
        assert any("keeping the previous one" in r.getMessage() for r in caplog.records)
        assert server.handshakes[first.fingerprint] >= 1
        assert server.handshakes[second.fingerprint] >= 2
    finally:
        await server.stop()

    # With nothing usable before it, an unusable pair keeps the server unready, saying why.
    source.set(KeyPair(first.cert_pem, ca.key_pem))
    server = WebhookServer(w.convert, source, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.ready() == (
            "webhook certificate unusable: the private key does not belong to the certificate"
        )
    finally:
        await server.stop()


# ---- on the API server ------------------------------------------------------------------------


@dataclass
class Replica:
    manager: CertManager
    server: WebhookServer
    task: asyncio.Task[None] | None = None
    converted: list[str] = field(default_factory=list)  # names this replica converted

    def convert(self, obj: JSON, desired: str) -> JSON:
        self.converted.append(obj["metadata"]["name"])
        return w.convert(obj, desired)


@dataclass
class Env:
    """One toy CRD in its own group, replicas (manager + server) sharing one Secret."""

    client: KubeClient
    raw: KubeClient  # no retries: errors reach the test at once
    namespace: str
    group: str = field(default_factory=w.unique_group)
    crd: str = ""
    replicas: list[Replica] = field(default_factory=list)

    def manager(self, options: CertManagerOptions | None = None) -> CertManager:
        return CertManager(
            self.client,
            self.namespace,
            SECRET,
            SERVICE,
            [self.crd or f"widgets.{self.group}"],
            ip_addresses=["127.0.0.1"],
            options=options,
        )

    async def replica(
        self, options: CertManagerOptions | None = None, *, run: bool = False, port: int = 0
    ) -> Replica:
        manager = self.manager(options)
        server = WebhookServer(w.convert, manager, "127.0.0.1", port, keepalive_timeout=0.2)
        replica = Replica(manager, server)
        server.converter = replica.convert
        await server.start()
        self.replicas.append(replica)
        if run:
            replica.task = asyncio.create_task(manager.run(), name="cert-manager")
        return replica

    async def point_at(self, replica: Replica) -> None:
        patch = {"spec": {"conversion": {"webhook": {"clientConfig": {"url": url(replica)}}}}}
        await self.client.patch(CRDS, self.crd, patch)
        await self.settled()

    async def ensure(self, *managers: CertManager) -> list[KeyPair]:
        """Each manager's pass, then :meth:`settled`."""
        pairs = list(await asyncio.gather(*(m.ensure() for m in managers)))
        await self.settled()
        return pairs

    async def settled(self) -> None:
        """After a CRD update the API server rebuilds the widgets' storage and answers 503
        "apiserver is shutting down" meanwhile: wait until both versions are served again."""

        async def served() -> bool:
            for version in (self.v1(), self.v2()):
                await self.raw.list(version, self.namespace, limit=1)
            return True

        await w.until(served, 30, f"CRD {self.crd} served after an update")

    def v1(self) -> Any:
        return w.widgets(self.group, "v1")

    def v2(self) -> Any:
        return w.widgets(self.group, "v2")

    async def close(self) -> None:
        for r in self.replicas:
            if r.task is not None:
                r.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await r.task
        if self.crd:
            await w.delete_crd(self.client, self.crd)
        for r in self.replicas:
            await r.server.stop()
        await self.raw.close()


def url(replica: Replica) -> str:
    return f"https://127.0.0.1:{replica.server.port}/convert"


@pytest_asyncio.fixture
async def env(client: KubeClient, kubeconfig: str, namespace: str) -> AsyncIterator[Env]:
    raw = await KubeClient.connect(kubeconfig, options=ClientOptions(max_retries=0))
    e = Env(client, raw, namespace)
    try:
        yield e
    finally:
        await e.close()


async def _secret(client: KubeClient, namespace: str) -> dict[str, bytes]:
    data = (await client.get(SECRETS, SECRET, namespace))["data"]
    return {k: base64.b64decode(v) for k, v in data.items()}


async def _ca_bundle(client: KubeClient, crd: str) -> bytes:
    spec = (await client.get(CRDS, crd))["spec"]
    return base64.b64decode(spec["conversion"]["webhook"]["clientConfig"].get("caBundle", ""))


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_widgets_convert_both_ways_through_the_api_server(env: Env) -> None:
    a = await env.replica()
    env.crd = await w.create_crd(env.client, env.group, url(a))
    assert a.manager.ready() is not True
    [pair] = await env.ensure(a.manager)

    # The Secret holds the CA and a certificate for the Service names and the loopback IP ...
    data = await _secret(env.client, env.namespace)
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert data["tls.crt"] == pair.cert_pem
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ns = env.namespace
    assert sans.get_values_for_type(x509.DNSName) == [
        SERVICE,
        f"{SERVICE}.{ns}",
        f"{SERVICE}.{ns}.svc",
        f"{SERVICE}.{ns}.svc.cluster.local",
    ]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # ... and the CRD trusts that CA.
    assert await _ca_bundle(env.client, env.crd) == data["ca.crt"]
    assert a.manager.ready() is True
    assert a.server.ready() is True
    assert await _peer_cert(a.server.port, data["ca.crt"], f"{SERVICE}.{ns}.svc") == _der(pair)

    # v1 in, v2 out, and back.
    await env.client.create(env.v1(), w.widget(env.group, "v1", "small", 3), ns)
    got = await env.raw.get(env.v2(), "small", ns)
    assert (got["apiVersion"], got["spec"]) == (f"{env.group}/v2", {"replicas": 3})
    await env.client.create(env.v2(), w.widget(env.group, "v2", "big", 5), ns)
    got = await env.raw.get(env.v1(), "big", ns)
    assert (got["apiVersion"], got["spec"]) == (f"{env.group}/v1", {"size": 5})
    await env.client.patch(env.v2(), "small", {"spec": {"replicas": 7}}, ns)
    assert (await env.raw.get(env.v1(), "small", ns))["spec"] == {"size": 7}
    listed = await env.raw.list(env.v2(), ns)
    assert sorted((o["metadata"]["name"], o["spec"]["replicas"]) for o in listed["items"]) == [
        ("big", 5),
        ("small", 7),
    ]

    # A converter failure reaches the API client as a clear error.
    await env.client.create(env.v1(), w.widget(env.group, "v1", w.BOOM, 1), ns)
    with pytest.raises(ApiError) as failed:
        await env.raw.get(env.v2(), w.BOOM, ns)
    assert (
        f"converting Widget {ns}/boom from {env.group}/v1 to {env.group}/v2: "
        "ValueError: boom is not convertible"
    ) in failed.value.message

    # A second pass changes nothing.
    before = (await env.client.get(SECRETS, SECRET, ns))["metadata"]["resourceVersion"]
    assert await a.manager.ensure() == pair
    assert (await env.client.get(SECRETS, SECRET, ns))["metadata"]["resourceVersion"] == before
    assert a.manager.rotations == 1


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_rotation_while_serving(env: Env) -> None:
    """Certificates valid 4 s, renewed 2 s before expiry: the API server goes on converting
    through several rotations, its new connections getting the new certificates."""
    options = CertManagerOptions(
        cert_validity=dt.timedelta(seconds=4), lookahead=dt.timedelta(seconds=2)
    )
    a = await env.replica(options)
    env.crd = await w.create_crd(env.client, env.group, url(a))
    [first] = await env.ensure(a.manager)
    ns = env.namespace
    await env.client.create(env.v1(), w.widget(env.group, "v1", "x", 1), ns)
    ca_before = await _ca_bundle(env.client, env.crd)

    a.task = asyncio.create_task(a.manager.run())
    served: list[str] = []
    conversions = 0
    async with asyncio.timeout(30):
        while len(set(a.server.handshakes) - {first.fingerprint}) < 3:
            got = await env.raw.get(env.v2(), "x", ns)  # must never fail
            assert got["spec"] == {"replicas": 1}
            conversions += 1
            served.append(a.manager.current().fingerprint)  # type: ignore[union-attr]
            # Longer than the server's keep-alive: the next request opens a new connection.
            await asyncio.sleep(0.5)
    assert len(set(served)) >= 3, served
    assert a.manager.rotations >= 3
    assert conversions >= 3
    assert await _ca_bundle(env.client, env.crd) == ca_before  # the CA did not change
    a.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await a.task
    a.task = None

    # A client connecting now gets the certificate in the Secret.
    await a.manager.ensure()
    data = await _secret(env.client, ns)
    assert a.manager.current() == KeyPair(data["tls.crt"], data["tls.key"])
    assert await _peer_cert(a.server.port, data["ca.crt"]) == data_der(data)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_two_replicas_share_one_secret_and_both_convert(env: Env) -> None:
    a = await env.replica()
    b = await env.replica()
    env.crd = await w.create_crd(env.client, env.group, url(a))
    ns = env.namespace

    # Both start at once on no Secret: one create wins, the other re-reads it.
    pa, pb = await env.ensure(a.manager, b.manager)
    assert pa == pb
    assert a.manager.rotations + b.manager.rotations == 1
    data = await _secret(env.client, ns)
    assert await _ca_bundle(env.client, env.crd) == data["ca.crt"]
    for replica in (a, b):
        assert await _peer_cert(replica.server.port, data["ca.crt"]) == data_der(data)

    await env.client.create(env.v1(), w.widget(env.group, "v1", "x", 4), ns)
    for replica, other in ((a, b), (b, a), (a, b)):
        await env.point_at(replica)
        replica.converted.clear()
        other.converted.clear()
        assert await _replicas_of(env, "x", ns) == 4
        assert set(replica.converted) == {"x"}  # this replica converted it ...
        assert other.converted == []  # ... and the other one did not


def data_der(data: dict[str, bytes]) -> bytes:
    return _der(KeyPair(data["tls.crt"], data["tls.key"]))


async def _replicas_of(env: Env, name: str, namespace: str) -> int:
    got = await env.raw.get(env.v2(), name, namespace)
    return int(got["spec"]["replicas"])


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_a_rotated_ca_keeps_the_previous_one_trusted(env: Env) -> None:
    """Replica A rotates the CA; replica B, which has not re-read the Secret, still serves a
    certificate of the old CA, and the API server still accepts it (the bundle holds both)."""
    options = CertManagerOptions(
        ca_validity=dt.timedelta(seconds=8),
        cert_validity=dt.timedelta(seconds=7),
        lookahead=dt.timedelta(seconds=4),
    )
    a = await env.replica(options)
    b = await env.replica(options)
    env.crd = await w.create_crd(env.client, env.group, url(b))
    ns = env.namespace
    [old] = await env.ensure(a.manager)
    assert await b.manager.ensure() == old
    old_ca = (await _secret(env.client, ns))["ca.crt"]
    await env.client.create(env.v1(), w.widget(env.group, "v1", "x", 2), ns)

    async def ca_rotated() -> bool:
        await a.manager.ensure()
        return (await _secret(env.client, ns))["ca.crt"] != old_ca

    await w.until(ca_rotated, 20, "CA rotated", interval=0.25)
    await env.settled()
    data = await _secret(env.client, ns)
    assert data["ca-previous.crt"] == old_ca
    assert await _ca_bundle(env.client, env.crd) == data["ca.crt"] + old_ca
    assert b.manager.current() == old  # B has not looked yet
    assert await _replicas_of(env, "x", ns) == 2  # B converts with the old CA's certificate
    assert b.converted[-1:] == ["x"]
    await env.point_at(a)
    assert await _replicas_of(env, "x", ns) == 2
    assert a.converted[-1:] == ["x"]
    assert await _peer_cert(a.server.port, data["ca.crt"]) == data_der(data)


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_webhook_down_is_a_clear_error_and_nothing_is_lost(env: Env) -> None:
    a = await env.replica()
    env.crd = await w.create_crd(env.client, env.group, url(a))
    await env.ensure(a.manager)
    ns = env.namespace
    await env.client.create(env.v1(), w.widget(env.group, "v1", "before", 1), ns)
    assert await _replicas_of(env, "before", ns) == 1
    port = a.server.port
    await a.server.stop()

    # v1 is the storage version: writing it needs no conversion and goes on working.
    await env.raw.create(env.v1(), w.widget(env.group, "v1", "during", 2), ns)
    # Reading v2 needs the webhook: the API server says so.
    with pytest.raises(ApiError) as failed:
        await env.raw.get(env.v2(), "before", ns)
    message = failed.value.message
    assert failed.value.status == 500
    assert "conversion webhook for" in message and f"127.0.0.1:{port}" in message, message
    assert "connection refused" in message, message
    # Writing v2 fails whole: nothing half-written.
    with pytest.raises(ApiError) as failed:
        await env.raw.create(env.v2(), w.widget(env.group, "v2", "refused", 3), ns)
    assert "conversion webhook for" in failed.value.message
    names = {o["metadata"]["name"] for o in (await env.raw.list(env.v1(), ns))["items"]}
    assert names == {"before", "during"}

    # Back on the same port (the Secret still holds the certificate): everything converts.
    back = await env.replica(port=port)
    await back.manager.ensure()

    async def all_in_v2() -> dict[str, int]:
        items = (await env.raw.list(env.v2(), ns))["items"]
        return {o["metadata"]["name"]: o["spec"]["replicas"] for o in items}

    assert await w.until(all_in_v2, 30, "v2 list after the webhook is back") == {
        "before": 1,
        "during": 2,
    }
    assert back.manager.rotations == 0  # the certificate in the Secret was still good
