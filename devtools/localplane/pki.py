"""Throwaway PKI for a loopback apiserver: a CA, a serving cert for 127.0.0.1, an SA signing key.

Made in-process with ``cryptography`` (a pinned dependency of the product): the CA and the serving
certificate come from the product's own helpers (:mod:`controller.machinery.certs`, generic
machinery, the same code that makes the conversion webhook's certificates); the service-account
key pair the apiserver signs and checks tokens with is RSA, as ``kubeadm`` makes it.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controller.machinery.certs import generate_ca, generate_serving_cert

VALIDITY = dt.timedelta(days=30)
CA_NAME = "dgdr-localplane-ca"


@dataclass(frozen=True)
class Pki:
    ca_crt: Path
    server_crt: Path
    server_key: Path
    sa_pub: Path
    sa_key: Path
    token_file: Path
    admin_token: str


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to a file created with ``mode`` (a private key is never world-readable,
    not even between open and chmod)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)
    return path


def make_pki(d: Path) -> Pki:
    """Write the PKI into ``d`` (created if missing): ``ca.crt``/``ca.key``,
    ``apiserver.crt``/``apiserver.key`` (for ``localhost`` and ``127.0.0.1``),
    ``sa.key``/``sa.pub`` and ``tokens.csv`` with one ``system:masters`` token."""
    d.mkdir(parents=True, exist_ok=True)
    ca = generate_ca(CA_NAME, VALIDITY)
    serving = generate_serving_cert(ca, ["localhost"], ["127.0.0.1"], validity=VALIDITY)
    ca_crt = _write(d / "ca.crt", ca.cert_pem)
    _write(d / "ca.key", ca.key_pem, 0o600)
    crt = _write(d / "apiserver.crt", serving.cert_pem)
    key = _write(d / "apiserver.key", serving.key_pem, 0o600)

    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key = _write(
        d / "sa.key",
        sa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    sa_pub = _write(
        d / "sa.pub",
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )

    token = secrets.token_hex(16)
    tokens = _write(d / "tokens.csv", f'{token},admin,admin-uid,"system:masters"\n'.encode(), 0o600)
    return Pki(ca_crt, crt, key, sa_pub, sa_key, tokens, token)
