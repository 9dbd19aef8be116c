"""Fixtures for serving tests: the controller as a process, the local DGD runner as a process
(real Dynamo frontend + mock engines from ``.venv-dynamo``), and a namespace whose DGDs are
deleted, and their processes gone, when the test ends.

The tests skip, naming the reason, when the Dynamo virtualenv is missing
(``bash hack/ensure-dynamo.sh`` builds it; ``hack/test.sh`` runs that first).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devtools.localplane import LocalControlPlane
from tests.conftest import REPO, SESSION_PIDS, Kubectl
from tests.dgdr.conftest import ControllerProcess, get_json, running
from tests.eventually import eventually

DYNAMO_PYTHON = Path(os.environ.get("DGDR_DYNAMO_VENV") or REPO / ".venv-dynamo", "bin", "python")
ANNOTATION_ENDPOINT = "dgdrunner.local/endpoint"

pytestmark = pytest.mark.cluster


def _dynamo_missing() -> str | None:
    if not DYNAMO_PYTHON.exists():
        return f"{DYNAMO_PYTHON} is missing: `bash hack/ensure-dynamo.sh` builds the Dynamo venv"
    res = subprocess.run(
        [str(DYNAMO_PYTHON), "-c", "import dynamo.frontend, dynamo.mocker"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        return f"the Dynamo venv {DYNAMO_PYTHON} cannot import dynamo: {res.stderr[-300:]}"
    return None


@pytest.fixture(scope="session")
def dynamo_python() -> str:
    why = _dynamo_missing()
    if why:
        pytest.skip(why)
    return str(DYNAMO_PYTHON)


class RunnerProcess:
    """``python -m devtools.dgdrunner``; stop() stops it and every process it runs."""

    def __init__(self, kubeconfig: str, log_dir: Path, dynamo_python: str, namespace: str) -> None:
        self.log_path = log_dir / "dgdrunner.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.dgdrunner",
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                namespace,
                "--workdir",
                str(log_dir / "work"),
                "--dynamo-python",
                dynamo_python,
                "--backoff-initial",
                "1",
                "--backoff-max",
                "4",
                "--stop-grace",
                "5",
            ],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def children(self) -> list[psutil.Process]:
        try:
            return [
                c
                for c in psutil.Process(self.proc.pid).children(recursive=True)
                if c.status() != psutil.STATUS_ZOMBIE
            ]
        except psutil.Error:
            return []

    def processes(self, what: str) -> list[psutil.Process]:
        """The runner's children running ``dynamo.<what>`` (mocker or frontend)."""
        out = []
        for c in self.children():
            try:
                if f"dynamo.{what}" in c.cmdline():
                    out.append(c)
            except psutil.Error:
                continue
        return out

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return int(self.proc.returncode)


@pytest.fixture
def runner(
    control_plane: LocalControlPlane,
    crds: list[str],
    dynamo_python: str,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunnerProcess]:
    """A runner for this test's namespace only: the session's control plane holds DGDs that
    other tests left in theirs, which must not be run here."""
    r = RunnerProcess(
        control_plane.kubeconfig, tmp_path_factory.mktemp("dgdrunner"), dynamo_python, namespace
    )

    def pid() -> set[int]:
        return {r.proc.pid}

    SESSION_PIDS.append(pid)
    try:
        yield r
    finally:
        r.stop()
        SESSION_PIDS.remove(pid)


@pytest.fixture(scope="module")
def controller(
    control_plane: LocalControlPlane, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    with running(
        control_plane, tmp_path_factory.mktemp("controller"), "--lease-name", "dgdr-serving"
    ) as c:
        yield c


@pytest.fixture
def serving_namespace(namespace: str, kubectl: Kubectl, runner: RunnerProcess) -> Iterator[str]:
    """A namespace whose DGDs are deleted at the end, and the runner's processes for them gone
    (no namespace controller runs here, so deleting the namespace would leave them running)."""
    yield namespace
    kubectl("delete", "dgd", "--all", "--wait=false", namespace=namespace, check=False)
    eventually(
        lambda: not runner.children(),
        timeout=40,
        message="the runner's processes to stop",
        on_timeout=runner.tail,
    )


def dgd_of(kubectl: Kubectl, dgdr: dict[str, Any]) -> str:
    return str(dgdr["status"]["dgdName"])


def endpoint(kubectl: Kubectl, name: str, namespace: str) -> str:
    dgd = get_json(kubectl, "dgd", name, namespace)
    return str((dgd["metadata"].get("annotations") or {})[ANNOTATION_ENDPOINT])


def chat(url: str, model: str, max_tokens: int = 8, timeout: float = 30) -> dict[str, Any]:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "hello from the test"}],
            "max_tokens": max_tokens,
        }
    ).encode()
    req = urllib.request.Request(
        f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return dict(json.loads(r.read()))


def dgd_state(kubectl: Kubectl, name: str, namespace: str) -> str | None:
    res = kubectl(
        "get", "dgd", name, "-o", "jsonpath={.status.state}", namespace=namespace, check=False
    )
    return res.stdout.strip() or None if res.returncode == 0 else None


def wait_dgd_state(
    kubectl: Kubectl, runner: RunnerProcess, name: str, namespace: str, state: str, timeout: float
) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        obj = get_json(kubectl, "dgd", name, namespace)
        return obj if (obj.get("status") or {}).get("state") == state else None

    return dict(
        eventually(
            current,
            timeout=timeout,
            interval=0.3,
            message=f"dgd {namespace}/{name} {state}",
            on_timeout=lambda: (
                json.dumps(get_json(kubectl, "dgd", name, namespace).get("status"), indent=1)
                + "\n"
                + runner.tail()
            ),
        )
    )
