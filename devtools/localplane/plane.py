"""A local control plane: etcd and kube-apiserver on loopback, envtest-style (no kubelet).

Tests, benchmarks and the demo share this one implementation. It writes an admin kubeconfig that
both kubectl and kubernetes-asyncio read, logs every write to an audit log (so tests can prove who
wrote what), and can stop and restart the apiserver alone to inject a real outage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .binaries import Binaries, find_binaries
from .pki import Pki, make_pki

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> Path:
    """A kubeconfig with one context; JSON is valid YAML, so no YAML writer is needed."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "local", "context": {"cluster": "local", "user": user, "namespace": "default"}}
        ],
        "current-context": "local",
    }
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class LocalControlPlane:
    """Handle on a running etcd + kube-apiserver pair; ``stop()`` leaves nothing behind."""

    workdir: Path
    binaries: Binaries
    pki: Pki
    etcd_port: int
    api_port: int
    kubeconfig: str
    keep_workdir: bool = False
    ready_timeout: float = 90.0
    _etcd: subprocess.Popen[bytes] | None = None
    _api: subprocess.Popen[bytes] | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> str:
        return str(self.pki.ca_crt)

    @property
    def token(self) -> str:
        return self.pki.admin_token

    @property
    def kubectl_path(self) -> str:
        return str(self.binaries.kubectl)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "apiserver.log"

    @classmethod
    def start(
        cls,
        workdir: str | Path | None = None,
        *,
        keep_workdir: bool = False,
        ready_timeout: float = 90.0,
    ) -> LocalControlPlane:
        binaries = find_binaries()
        wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="dgdr-localplane-"))
        wd.mkdir(parents=True, exist_ok=True)
        pki = make_pki(wd / "pki")
        (wd / "audit-policy.yaml").write_text(AUDIT_POLICY)
        api_port = free_port()
        plane = cls(
            workdir=wd,
            binaries=binaries,
            pki=pki,
            etcd_port=free_port(),
            api_port=api_port,
            kubeconfig=str(wd / "kubeconfig"),
            keep_workdir=keep_workdir,
            ready_timeout=ready_timeout,
        )
        write_kubeconfig(Path(plane.kubeconfig), plane.server, pki.ca_crt, pki.admin_token, "admin")
        try:
            plane._start_etcd()
            plane.start_apiserver()
        except BaseException:
            plane.stop()
            raise
        return plane

    def _log(self, name: str) -> IO[bytes]:
        f = open(self.workdir / name, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(f)
        return f

    def _start_etcd(self) -> None:
        peer = free_port()
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._etcd = subprocess.Popen(
            [
                str(self.binaries.etcd),
                "--name",
                "local",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"local={peer_url}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            stdout=self._log("etcd.log"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(
            lambda: self._http_ok(f"{client_url}/health", b'"health":"true"'),
            "etcd",
            self._etcd,
            self.workdir / "etcd.log",
        )

    def start_apiserver(self) -> None:
        """Start (or restart, on the same port and etcd) the apiserver and wait for /readyz."""
        if self._api is not None and self._api.poll() is None:
            return
        p = self.pki
        self._api = subprocess.Popen(
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={p.server_crt}",
                f"--tls-private-key-file={p.server_key}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--token-auth-file={p.token_file}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ],
            stdout=self._log("apiserver.log"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(
            lambda: self._https_ok("/readyz"), "kube-apiserver", self._api, self.apiserver_log
        )

    def stop_apiserver(self) -> None:
        """Stop only the apiserver (etcd keeps the data): a real outage for fault tests."""
        self._terminate(self._api)
        self._api = None

    def stop(self) -> None:
        self._terminate(self._api)
        self._terminate(self._etcd)
        self._api = self._etcd = None
        for f in self._logs:
            f.close()
        self._logs.clear()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def _wait(self, ok: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
            if callable(ok) and ok():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready in {self.ready_timeout}s:\n{_tail(log)}")

    @staticmethod
    def _http_ok(url: str, needle: bytes) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return needle in r.read()
        except (urllib.error.URLError, OSError):
            return False

    def _https_ok(self, path: str) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        req = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def version(self) -> dict[str, str]:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        with urllib.request.urlopen(self.server + "/version", timeout=5, context=ctx) as r:
            data: dict[str, str] = json.loads(r.read())
            return data

    def kubeconfig_for_token(self, token: str, path: str | Path, user: str = "user") -> str:
        """A kubeconfig for another identity, e.g. a ServiceAccount token from TokenRequest."""
        return str(write_kubeconfig(Path(path), self.server, self.pki.ca_crt, token, user))

    def env(self) -> dict[str, str]:
        """Environment for child processes (kubectl, the controller) aimed at this plane."""
        env = dict(os.environ)
        env["KUBECONFIG"] = self.kubeconfig
        return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
