"""Throwaway PKI for a loopback apiserver: a CA, a serving cert for 127.0.0.1, an SA signing key.

openssl is on every machine this runs on; shelling out keeps the project free of a crypto
dependency for what is test scaffolding.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca_crt: Path
    server_crt: Path
    server_key: Path
    sa_pub: Path
    sa_key: Path
    token_file: Path
    admin_token: str


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    key, csr, crt, ext = d / "apiserver.key", d / "apiserver.csr", d / "apiserver.crt", d / "ext"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=dgdr-localplane-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=kube-apiserver",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    sa_key, sa_pub = d / "sa.key", d / "sa.pub"
    _openssl("genrsa", "-out", str(sa_key), "2048")
    _openssl("rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    token = secrets.token_hex(16)
    tokens = d / "tokens.csv"
    tokens.write_text(f'{token},admin,admin-uid,"system:masters"\n')
    tokens.chmod(0o600)
    return Pki(ca_crt, crt, key, sa_pub, sa_key, tokens, token)
