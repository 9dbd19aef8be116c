"""Webhook certificates: generation and the checks that decide a rotation, the mounted-files
source, and the Secret-backed manager's handling of what it finds in the cluster."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from controller.machinery.certs import (
    CRDS,
    SECRETS,
    CertManager,
    CertManagerOptions,
    FileCertSource,
    KeyPair,
    ca_problem,
    generate_ca,
    generate_serving_cert,
    serving_problem,
)
from controller.machinery.client import KubeClient
from tests.eventually import async_consistently
from tests.machinery import widgets as w

DAY = dt.timedelta(days=1)
NAMES = ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"]


# ---- generation and checks ----------------------------------------------------------------------


def test_generated_ca_and_serving_certificate() -> None:
    ca = generate_ca("my-ca", 10 * DAY)
    assert ca.check() is None
    assert ca_problem(ca, dt.datetime.now(dt.UTC)) is None
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0

    pair = generate_serving_cert(ca, NAMES, ["127.0.0.1", "::1"], validity=DAY)
    cert = pair.certificate
    cert.verify_directly_issued_by(ca.certificate)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == NAMES
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Backdated for clock skew; valid for the asked time.
    assert cert.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert DAY - dt.timedelta(minutes=1) < left <= DAY
    now = dt.datetime.now(dt.UTC)
    assert serving_problem(ca, pair, NAMES, ["127.0.0.1"], now) is None

    # Never outlives its CA.
    short_ca = generate_ca("short", dt.timedelta(hours=2))
    capped = generate_serving_cert(short_ca, NAMES, validity=DAY)
    assert capped.not_after == short_ca.not_after


def test_what_makes_a_certificate_due() -> None:
    now = dt.datetime.now(dt.UTC)
    ca = generate_ca("ca", 10 * DAY)
    pair = generate_serving_cert(ca, NAMES, ["127.0.0.1"], validity=DAY)
    # Expiring within the look-ahead.
    assert "expires" in (serving_problem(ca, pair, NAMES, [], now + 2 * DAY) or "")
    assert "expires" in (ca_problem(ca, now + 11 * DAY) or "")
    # A name or an IP it lacks (the configuration changed).
    assert serving_problem(ca, pair, [*NAMES, "extra.example.com"], [], now) == (
        "missing subjectAltNames ['extra.example.com']"
    )
    assert serving_problem(ca, pair, NAMES, ["10.0.0.1"], now) == (
        "missing subjectAltNames ['10.0.0.1']"
    )
    # Another CA's certificate.
    other = generate_ca("other", 10 * DAY)
    assert serving_problem(other, pair, NAMES, [], now) == "not signed by the current CA"
    # A serving certificate is not a CA; a key that is not the certificate's; garbage.
    assert ca_problem(pair, now) == "not a CA certificate"
    assert ca_problem(KeyPair(ca.cert_pem, pair.key_pem), now) == (
        "the private key does not belong to the certificate"
    )
    assert (ca_problem(KeyPair(b"junk", b""), now) or "").startswith("unreadable")
    with pytest.raises(ValueError, match="at least one"):
        generate_serving_cert(ca, [], validity=DAY)


def test_options_and_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="cert_validity: must be longer than lookahead"):
        CertManagerOptions(cert_validity=DAY, lookahead=2 * DAY)
    with pytest.raises(ValueError, match="ca_validity"):
        CertManagerOptions(ca_validity=dt.timedelta(days=30))  # lookahead defaults to 90 days
    with pytest.raises(ValueError, match="lookahead"):
        CertManagerOptions(lookahead=dt.timedelta(0))
    with pytest.raises(ValueError, match="resync"):
        CertManagerOptions(resync=0)
    with pytest.raises(ValueError, match="not-an-ip"):
        CertManager(None, "ns", "s", "svc", [], ip_addresses=["not-an-ip"])  # type: ignore[arg-type]
    manager = CertManager(None, "ns", "s", "svc", [], extra_dns_names=["svc", "x.example.com"])  # type: ignore[arg-type]
    assert manager.dns_names == (*NAMES, "x.example.com")
    assert manager.ready() == "no serving certificate yet (Secret ns/s)"


# ---- certificates mounted from files ------------------------------------------------------------


def _write(d: Path, pair: KeyPair) -> None:
    (d / "tls.crt").write_bytes(pair.cert_pem)
    (d / "tls.key").write_bytes(pair.key_pem)


@pytest.mark.asyncio
async def test_file_source_follows_the_mounted_files(tmp_path: Path) -> None:
    ca = generate_ca("ca", 10 * DAY)
    first = generate_serving_cert(ca, NAMES, validity=DAY)
    second = generate_serving_cert(ca, NAMES, validity=DAY)
    source = FileCertSource(tmp_path, interval=0.05)
    assert source.load() is False  # nothing mounted yet
    assert source.current() is None
    assert "no usable certificate" in str(source.ready())

    _write(tmp_path, first)
    task = asyncio.create_task(source.run())
    try:
        await w.until(_returns(lambda: source.current() == first), 10, "first pair loaded")
        assert source.ready() is True

        # Halfway through a non-atomic update the key is not the certificate's: ignored.
        (tmp_path / "tls.crt").write_bytes(second.cert_pem)
        await async_consistently(  # several polls: the half-written pair is never taken
            lambda: source.current() == first, duration=0.3, message="the first pair kept"
        )
        (tmp_path / "tls.key").write_bytes(second.key_pem)
        await w.until(_returns(lambda: source.current() == second), 10, "second pair loaded")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # Files gone (a remount): the last good pair stays.
    (tmp_path / "tls.crt").unlink()
    assert source.load() is False
    assert source.current() == second


def _returns(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


# ---- the manager against the API server ---------------------------------------------------------


def _manager(
    client: KubeClient,
    namespace: str,
    crds: list[str],
    options: CertManagerOptions | None = None,
) -> CertManager:
    return CertManager(
        client, namespace, "certs", "svc", crds, ip_addresses=["127.0.0.1"], options=options
    )


async def _data(client: KubeClient, namespace: str) -> dict[str, bytes]:
    data = (await client.get(SECRETS, "certs", namespace))["data"]
    return {k: base64.b64decode(v) for k, v in data.items()}


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_a_prepared_secret_is_filled_and_what_else_it_holds_kept(
    client: KubeClient, namespace: str
) -> None:
    """A Secret made beforehand (an installer with RBAC on one name) keeps its type, labels
    and other keys; a damaged serving certificate is reissued from the same CA."""
    await client.create(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "certs", "labels": {"app": "x"}},
            "type": "Opaque",
            "data": {"other": base64.b64encode(b"keep me").decode()},
        },
        namespace,
    )
    manager = _manager(client, namespace, [])
    pair = await manager.ensure()
    secret = await client.get(SECRETS, "certs", namespace)
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"] == {"app": "x"}
    data = await _data(client, namespace)
    assert set(data) == {"other", "ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert data["other"] == b"keep me"
    assert data["tls.crt"] == pair.cert_pem
    assert manager.ready() is True  # no CRD to inject into

    # Damage the serving certificate: a new one from the same CA.
    patch = {"data": {"tls.crt": base64.b64encode(b"garbage").decode()}}
    await client.patch(SECRETS, "certs", patch, namespace)
    new = await manager.ensure()
    assert new != pair
    after = await _data(client, namespace)
    assert after["ca.crt"] == data["ca.crt"]
    assert after["tls.crt"] == new.cert_pem
    new.certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(after["ca.crt"]))

    # A new name in the configuration: reissued with it, same CA.
    wider = CertManager(client, namespace, "certs", "svc", [], extra_dns_names=["svc.example.com"])
    reissued = await wider.ensure()
    sans = reissued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "svc.example.com" in sans.value.get_values_for_type(x509.DNSName)
    assert (await _data(client, namespace))["ca.crt"] == data["ca.crt"]


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_ca_bundle_follows_the_crd(client: KubeClient, namespace: str) -> None:
    """Not ready while the CRD is missing or does not convert by webhook; injected once it
    does, by the running loop; injected again after someone re-applies it without."""
    group = w.unique_group()
    name = f"widgets.{group}"
    options = CertManagerOptions(resync=0.2)
    manager = _manager(client, namespace, [name], options)
    task = asyncio.create_task(manager.run())
    try:
        await w.until(
            _returns(lambda: f"CRD {name} not found" in str(manager.ready())),
            10,
            "missing CRD reported",
        )
        body = w.crd_body(group, "https://127.0.0.1:1/convert")
        body["spec"]["conversion"] = {"strategy": "None"}
        await client.create(CRDS, body)
        await w.until(
            _returns(lambda: "has no webhook conversion" in str(manager.ready())),
            10,
            "CRD without webhook conversion reported",
        )
        webhook = w.crd_body(group, "https://127.0.0.1:1/convert")["spec"]["conversion"]
        await client.patch(CRDS, name, {"spec": {"conversion": webhook}})
        await w.until(_returns(lambda: manager.ready() is True), 10, "CA injected")
        ca = (await _data(client, namespace))["ca.crt"]

        async def bundle() -> bytes:
            crd = await client.get(CRDS, name)
            config = crd["spec"]["conversion"]["webhook"]["clientConfig"]
            return base64.b64decode(config.get("caBundle", ""))

        assert await bundle() == ca
        # Re-applied without a caBundle (the manifest has none): back within a resync.
        webhook["webhook"]["clientConfig"]["caBundle"] = None
        await client.patch(CRDS, name, {"spec": {"conversion": webhook}})
        await w.until(_returns_async(bundle, ca), 10, "CA injected again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.delete(CRDS, name)


def _returns_async(
    fn: Callable[[], Awaitable[bytes]], want: bytes
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await fn() == want

    return check
