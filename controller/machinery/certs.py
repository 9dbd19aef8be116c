"""Serving certificates for webhooks: self-managed in a Secret, or mounted by cert-manager.

The API server calls a conversion webhook over HTTPS and trusts only the CA in the CRD's
``spec.conversion.webhook.clientConfig.caBundle``. Two ways to get there:

- :class:`CertManager`, the cert-controller pattern of controller-runtime projects
  (github.com/open-policy-agent/cert-controller, ``pkg/rotator``): a self-signed CA and a serving
  certificate for the Service's DNS names live in one Secret (``ca.crt``, ``ca.key``,
  ``tls.crt``, ``tls.key``); each is replaced when it would no longer be valid ``lookahead``
  from now, and the CA is written into every named CRD's caBundle whenever it differs. Unlike
  cert-controller it creates the Secret when it is missing and hands the certificate to the
  server in memory (no volume mount, so no kubelet sync delay before a rotated certificate is
  served).
- :class:`FileCertSource`: ``tls.crt``/``tls.key`` in a directory that something else keeps
  current (cert-manager's Certificate mounted as a Secret volume, its CA injector filling the
  caBundle). The files are re-read when they change; nothing is written to the API.

Every replica may run a :class:`CertManager` (webhooks are served by followers too): the API
server settles the races. A create that loses gets 409 and re-reads the winner's Secret; an
update carries the resourceVersion it read, so a stale writer gets 409 and re-reads. Two
replicas therefore end with one CA.

A rotated CA would break the replicas still serving a certificate of the old one until they
re-read the Secret, so the old CA stays in the caBundle (kept in the Secret as
``ca-previous.crt``) until it expires.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.machinery.client import (
    CRDS,
    ApiError,
    KubeClient,
    Resource,
    is_transient,
    retry_on_conflict,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]

SECRETS = Resource("", "v1", "secrets", "Secret")

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
PREVIOUS_CA_CERT = "ca-previous.crt"

# Certificates start this much in the past, so a clock a little behind ours still accepts them.
BACKDATE = dt.timedelta(hours=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key; equal pairs have equal bytes."""

    cert_pem: bytes
    key_pem: bytes

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @cached_property
    def private_key(self) -> Any:
        return serialization.load_pem_private_key(self.key_pem, password=None)

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER, hex: how logs and tests name a certificate."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    def check(self) -> str | None:
        """Why this pair cannot serve (unparseable, key not the certificate's), else ``None``."""
        try:
            cert_key = self.certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            own_key = self.private_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return f"unreadable certificate or key: {exc}"
        if cert_key != own_key:
            return "the private key does not belong to the certificate"
        return None


class CertSource(Protocol):
    """What :class:`~controller.machinery.webhook.WebhookServer` asks for at each handshake."""

    def current(self) -> KeyPair | None: ...


class StaticCertSource:
    """A pair set by hand (tests, or a caller with its own rotation)."""

    def __init__(self, pair: KeyPair | None = None) -> None:
        self._pair = pair

    def set(self, pair: KeyPair | None) -> None:
        self._pair = pair

    def current(self) -> KeyPair | None:
        return self._pair


# ---- generation and checks ----------------------------------------------------------------------


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a client in the cluster may use for a Service (short, namespaced, FQDN)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: as strong as RSA-3072 for TLS, and generated in a millisecond instead of ~100 ms
    # (every replica may generate one at start).
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_ca(
    common_name: str, validity: dt.timedelta, *, now: dt.datetime | None = None
) -> KeyPair:
    """A self-signed CA that can sign serving certificates only (path length 0)."""
    now = now or _now()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def generate_serving_cert(
    ca: KeyPair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    *,
    validity: dt.timedelta,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A server certificate for these names signed by ``ca``; never outlives the CA."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    now = now or _now()
    key = _new_key()
    ca_cert = ca.certificate
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cn = dns_names[0] if dns_names else str(ip_addresses[0])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _valid_until(cert: x509.Certificate, at: dt.datetime) -> str | None:
    if cert.not_valid_before_utc > _now():
        return f"not valid before {cert.not_valid_before_utc.isoformat()}"
    if cert.not_valid_after_utc <= at:
        return f"expires {cert.not_valid_after_utc.isoformat()}"
    return None


def ca_problem(ca: KeyPair, at: dt.datetime) -> str | None:
    """Why ``ca`` must be replaced to be valid at ``at`` (now + look-ahead), else ``None``."""
    if problem := ca.check():
        return problem
    cert = ca.certificate
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "not a CA certificate"
    if not constraints.ca:
        return "not a CA certificate"
    return _valid_until(cert, at)


def serving_problem(
    ca: KeyPair,
    pair: KeyPair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    at: dt.datetime,
) -> str | None:
    """Why ``pair`` must be reissued: another CA signed it, a name is missing, it expires
    before ``at``; else ``None``."""
    if problem := pair.check():
        return problem
    cert = pair.certificate
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subjectAltName"
    have_dns = set(sans.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    missing = [n for n in dns_names if n not in have_dns]
    missing += [
        ip for ip in (str(ipaddress.ip_address(i)) for i in ip_addresses) if ip not in have_ips
    ]
    if missing:
        return f"missing subjectAltNames {missing}"
    return _valid_until(cert, at)


def _pem_certs(bundle: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []


# ---- the Secret-backed manager ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _secret_bytes(secret: JSON | None, key: str) -> bytes:
    raw = ((secret or {}).get("data") or {}).get(key)
    if not raw:
        return b""
    try:
        return base64.b64decode(raw)
    except ValueError:
        return b""


@dataclass(frozen=True)
class CertManagerOptions:
    """Validity and timing; ``timedelta``s for certificates, seconds for the loop."""

    ca_validity: dt.timedelta = dt.timedelta(days=3650)  # cert-controller: 10 years
    cert_validity: dt.timedelta = dt.timedelta(days=365)  # cert-controller: 1 year
    lookahead: dt.timedelta = dt.timedelta(days=90)  # cert-controller: 90 days
    # How often the Secret and the CRDs are read again (another replica's rotation, a CRD
    # re-applied without its caBundle); earlier when a certificate is due for rotation.
    resync: float = 60.0
    retry_base: float = 1.0  # after a failed pass, doubling up to ``resync``

    def __post_init__(self) -> None:
        if self.lookahead <= dt.timedelta(0):
            raise ValueError(f"lookahead: must be > 0, got {self.lookahead}")
        for name in ("ca_validity", "cert_validity"):
            if getattr(self, name) <= self.lookahead:
                raise ValueError(
                    f"{name}: must be longer than lookahead ({self.lookahead}), "
                    f"got {getattr(self, name)}: every check would rotate"
                )
        if self.resync <= 0 or self.retry_base <= 0:
            raise ValueError("resync and retry_base: must be > 0")


@dataclass
class _Injection:
    ok: bool = False
    reason: str = "not injected yet"
    warned: set[str] = field(default_factory=set)


class CertManager:
    """Keeps a CA and a serving certificate in a Secret and the CA in the CRDs' caBundle.

    :meth:`ensure` does one pass (create or rotate as needed, then inject); :meth:`run` repeats
    it until cancelled. :meth:`current` is the serving pair for
    :class:`~controller.machinery.webhook.WebhookServer`; :meth:`ready` is a health check.

    Run it in every replica, not only the leader: followers serve conversions too. Give every
    replica the same names and addresses; a replica that wants a name the certificate lacks
    reissues it. RBAC: ``get``, ``create``, ``update`` on the Secret's namespace's ``secrets``;
    ``get``, ``patch`` on the named ``customresourcedefinitions``.
    """

    def __init__(
        self,
        client: KubeClient,
        secret_namespace: str,
        secret_name: str,
        service_name: str,
        crd_names: Sequence[str],
        *,
        service_namespace: str | None = None,
        extra_dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        ca_name: str | None = None,
        options: CertManagerOptions | None = None,
    ) -> None:
        if not secret_namespace or not secret_name or not service_name:
            raise ValueError("secret_namespace, secret_name and service_name must not be empty")
        for ip in ip_addresses:
            ipaddress.ip_address(ip)  # ValueError naming the bad address
        self.client = client
        self.secret_namespace = secret_namespace
        self.secret_name = secret_name
        self.crd_names = tuple(crd_names)
        namespace = service_namespace or secret_namespace
        self.dns_names = tuple(
            dict.fromkeys([*service_dns_names(service_name, namespace), *extra_dns_names])
        )
        self.ip_addresses = tuple(ip_addresses)
        self.ca_name = ca_name or f"{service_name}-ca"
        self.options = options or CertManagerOptions()
        self._pair: KeyPair | None = None
        self._ca_bundle: bytes | None = None
        self._injections = {name: _Injection() for name in self.crd_names}
        self.rotations = 0  # certificates this manager wrote (tests and logs)

    # ---- what others read ---------------------------------------------------------------------

    def current(self) -> KeyPair | None:
        return self._pair

    @property
    def ca_bundle(self) -> bytes | None:
        """The PEM bundle written into the CRDs: the current CA, and the previous one while it
        is still valid."""
        return self._ca_bundle

    def ready(self) -> bool | str:
        """A :data:`~controller.machinery.health.Check`: a serving certificate is loaded and
        every CRD trusts its CA."""
        if self._pair is None:
            return f"no serving certificate yet (Secret {self.secret_namespace}/{self.secret_name})"
        bad = {n: i.reason for n, i in self._injections.items() if not i.ok}
        return f"caBundle not injected: {bad}" if bad else True

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Ensure now, then again every ``resync`` seconds or when a certificate is due; a
        failed pass is logged and retried with backoff. Runs until cancelled."""
        opts = self.options
        failures = 0
        while True:
            try:
                await self.ensure()
                failures = 0
                delay = self._next_check()
            except Exception as exc:
                delay = min(opts.resync, opts.retry_base * 2**failures)
                failures += 1
                if is_transient(exc):
                    log.warning("certificates: %s; retrying in %.1fs", exc, delay)
                else:
                    log.exception("certificates: pass failed; retrying in %.1fs", delay)
            await asyncio.sleep(delay)

    def _next_check(self) -> float:
        """Seconds until the next pass: ``resync``, or sooner when a certificate enters its
        look-ahead window before then."""
        if self._pair is None:
            return self.options.retry_base
        due = self._pair.not_after - self.options.lookahead - _now()
        return max(0.05, min(self.options.resync, due.total_seconds() + 0.05))

    async def ensure(self) -> KeyPair:
        """One pass: the Secret holds a valid CA and serving certificate (created or rotated
        if not), this manager serves it, and each CRD's caBundle is the CA bundle."""
        secret = await retry_on_conflict(self._ensure_secret, attempts=8)
        self._adopt(secret)
        for name in self.crd_names:
            await self._inject(name)
        assert self._pair is not None
        return self._pair

    async def _read_secret(self) -> JSON | None:
        try:
            return await self.client.get(SECRETS, self.secret_name, self.secret_namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _ensure_secret(self) -> JSON:
        """Read the Secret and write it if it needs to change; a 409 (another replica wrote
        first) propagates to :func:`retry_on_conflict`, which reads again."""
        secret = await self._read_secret()
        now = _now()
        at = now + self.options.lookahead
        ca = KeyPair(_secret_bytes(secret, CA_CERT), _secret_bytes(secret, CA_KEY))
        served = KeyPair(_secret_bytes(secret, TLS_CERT), _secret_bytes(secret, TLS_KEY))
        previous = _secret_bytes(secret, PREVIOUS_CA_CERT)
        ca_reason = "no Secret" if secret is None else ca_problem(ca, at)
        if ca_reason is not None:
            old_ca = ca
            ca = generate_ca(self.ca_name, self.options.ca_validity, now=now)
            # The old CA stays trusted while replicas still serve certificates it signed.
            previous = old_ca.cert_pem if old_ca.check() is None else b""
            cert_reason: str | None = "new CA"
        else:
            cert_reason = serving_problem(ca, served, self.dns_names, self.ip_addresses, at)
        if cert_reason is None:
            assert secret is not None  # no Secret gives a CA reason
            return secret
        served = generate_serving_cert(
            ca, self.dns_names, self.ip_addresses, validity=self.options.cert_validity, now=now
        )
        data = {
            CA_CERT: _b64(ca.cert_pem),
            CA_KEY: _b64(ca.key_pem),
            TLS_CERT: _b64(served.cert_pem),
            TLS_KEY: _b64(served.key_pem),
        }
        live_previous = [c for c in _pem_certs(previous) if c.not_valid_after_utc > now]
        if live_previous:
            data[PREVIOUS_CA_CERT] = _b64(
                b"".join(c.public_bytes(serialization.Encoding.PEM) for c in live_previous)
            )
        where = f"{self.secret_namespace}/{self.secret_name}"
        if secret is None:
            body: JSON = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": self.secret_name, "namespace": self.secret_namespace},
                "type": "kubernetes.io/tls",
                "data": data,
            }
            written = await self.client.create(SECRETS, body, self.secret_namespace)
            log.info(
                "created webhook certificates in Secret %s",
                where,
                extra={"ca": ca.fingerprint[:16], "cert": served.fingerprint[:16]},
            )
        else:
            # Keep what others put in the Secret (labels, other keys); the resourceVersion read
            # above makes this a compare-and-swap.
            body = dict(secret)
            old_data = dict(secret.get("data") or {})
            old_data.pop(PREVIOUS_CA_CERT, None)
            body["data"] = {**old_data, **data}
            written = await self.client.replace(
                SECRETS, self.secret_name, body, self.secret_namespace
            )
            log.info(
                "rotated webhook %s in Secret %s: %s",
                "CA and certificate" if ca_reason else "certificate",
                where,
                ca_reason or cert_reason,
                extra={"ca": ca.fingerprint[:16], "cert": served.fingerprint[:16]},
            )
        self.rotations += 1
        return written

    def _adopt(self, secret: JSON) -> None:
        pair = KeyPair(_secret_bytes(secret, TLS_CERT), _secret_bytes(secret, TLS_KEY))
        if pair != self._pair:
            if self._pair is not None:
                log.info(
                    "serving a new webhook certificate",
                    extra={"cert": pair.fingerprint[:16], "not_after": pair.not_after.isoformat()},
                )
            self._pair = pair
        now = _now()
        bundle = [*_pem_certs(_secret_bytes(secret, CA_CERT))]
        bundle += [
            c
            for c in _pem_certs(_secret_bytes(secret, PREVIOUS_CA_CERT))
            if c.not_valid_after_utc > now
        ]
        self._ca_bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in bundle)

    async def _inject(self, name: str) -> None:
        """Write the CA bundle into the CRD's conversion clientConfig when it differs; a CRD
        that is missing or does not convert by webhook is reported by :meth:`ready`."""
        assert self._ca_bundle is not None
        want = _b64(self._ca_bundle)
        state = self._injections[name]

        async def patch_once() -> None:
            try:
                crd = await self.client.get(CRDS, name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self._not_injected(state, name, f"CRD {name} not found")
                return
            conversion = (crd.get("spec") or {}).get("conversion") or {}
            client_config = (conversion.get("webhook") or {}).get("clientConfig")
            if conversion.get("strategy") != "Webhook" or not isinstance(client_config, dict):
                self._not_injected(
                    state, name, f"CRD {name} has no webhook conversion (spec.conversion)"
                )
                return
            if client_config.get("caBundle") != want:
                patch = {
                    "metadata": {"resourceVersion": crd["metadata"]["resourceVersion"]},
                    "spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": want}}}},
                }
                await self.client.patch(CRDS, name, patch)
                log.info("injected the webhook CA bundle into CRD %s", name)
            state.ok, state.reason = True, ""
            state.warned.clear()

        await retry_on_conflict(patch_once, attempts=8)

    @staticmethod
    def _not_injected(state: _Injection, name: str, reason: str) -> None:
        state.ok, state.reason = False, reason
        if reason not in state.warned:  # once per reason, not once per resync
            state.warned.add(reason)
            log.warning("cannot inject the webhook CA bundle: %s", reason)


# ---- certificates mounted from files ------------------------------------------------------------


class FileCertSource:
    """``tls.crt``/``tls.key`` from a directory another system keeps current (cert-manager).

    :meth:`run` polls the files every ``interval`` seconds and takes a new pair once both
    files changed consistently (a key that does not match the certificate, as seen between the
    two writes of a non-atomic update, is ignored until it does). Kubelet updates a Secret volume
    by swapping a symlink, so reading the contents is what detects it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        cert_name: str = TLS_CERT,
        key_name: str = TLS_KEY,
        interval: float = 5.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval: must be > 0, got {interval}")
        self.directory = Path(directory)
        self.cert_file = self.directory / cert_name
        self.key_file = self.directory / key_name
        self.interval = interval
        self._pair: KeyPair | None = None
        self._rejected: KeyPair | None = None

    def current(self) -> KeyPair | None:
        return self._pair

    def ready(self) -> bool | str:
        if self._pair is None:
            return f"no usable certificate in {self.cert_file} / {self.key_file} yet"
        return True

    def load(self) -> bool:
        """Read the files; ``True`` when a new pair was taken."""
        try:
            pair = KeyPair(self.cert_file.read_bytes(), self.key_file.read_bytes())
        except OSError as exc:
            if self._rejected is None:
                log.warning("webhook certificate files not readable: %s", exc)
                self._rejected = KeyPair(b"", b"")
            return False
        if pair == self._pair or pair == self._rejected:
            return False
        if problem := pair.check():
            log.warning("ignoring webhook certificate in %s: %s", self.directory, problem)
            self._rejected = pair
            return False
        self._pair, self._rejected = pair, None
        log.info(
            "loaded webhook certificate from %s",
            self.directory,
            extra={"cert": pair.fingerprint[:16], "not_after": pair.not_after.isoformat()},
        )
        return True

    async def run(self) -> None:
        """Load now and on every change until cancelled."""
        while True:
            self.load()
            await asyncio.sleep(self.interval)


__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CRDS",
    "PREVIOUS_CA_CERT",
    "SECRETS",
    "TLS_CERT",
    "TLS_KEY",
    "CertManager",
    "CertManagerOptions",
    "CertSource",
    "FileCertSource",
    "KeyPair",
    "StaticCertSource",
    "ca_problem",
    "generate_ca",
    "generate_serving_cert",
    "service_dns_names",
    "serving_problem",
]
