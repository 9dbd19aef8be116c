"""Fixtures for the DGDR lifecycle: the real controller as a process, and ways to watch a DGDR.

The controller runs as ``python -m controller run`` against the session's control plane, exactly
as an admin would run it (short timings, loopback health port), so these tests also cover the
entry point, the configuration and the process pool. The test plays the Dynamo operator: it
writes the DGD's ``status.state`` itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devtools.localplane import LocalControlPlane, free_port
from tests.conftest import SESSION_PIDS, Kubectl
from tests.eventually import eventually
from tests.hubserver import HubServer

FAST = [
    "--lease-duration",
    "4",
    "--renew-deadline",
    "3",
    "--retry-period",
    "0.5",
    "--watchdog-timeout",
    "20",
    "--watch-timeout",
    "60",
    "--profile-timeout",
    "60",
    "--pool-size",
    "2",
    "--workers",
    "4",
    "--bind-address",
    "127.0.0.1",
    "--shutdown-grace",
    "5",
]


class ControllerProcess:
    """One ``python -m controller run`` process; stop() leaves no process behind."""

    def __init__(
        self,
        plane: LocalControlPlane,
        log_dir: Path,
        *args: str,
        kubeconfig: str | None = None,
        name: str = "controller",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.webhook_port: int | None = None  # set by tests that serve the conversion webhook
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.identity = f"{name}-{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "controller",
            "run",
            "--kubeconfig",
            kubeconfig or plane.kubeconfig,
            "--health-port",
            str(self.port),
            "--identity",
            self.identity,
            "--lease-namespace",
            "kube-system",
            *FAST,
            *args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                # the Hub's files cached where the test can see them, never in the user's home
                "DGDR_HUB_CACHE": str(log_dir / "hub-cache"),
                **(env or {}),
            },
        )

    def pids(self) -> set[int]:
        try:
            p = psutil.Process(self.proc.pid)
            return {p.pid, *(c.pid for c in p.children(recursive=True))}
        except psutil.Error:
            return set()

    def workers(self) -> list[psutil.Process]:
        """The profiling pool's worker processes (children of the controller)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:  # an exited controller will not become ready
                raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.tail()}")
            return self.get("/readyz")[0] == 200

        eventually(
            ready, timeout=timeout, message="controller ready", on_timeout=self.tail, retry_on=()
        )

    def is_leader(self) -> bool:
        status, body = self.get("/metrics")
        return status == 200 and any(
            line.startswith("leader_election_master_status") and line.rstrip().endswith(" 1.0")
            for line in body.splitlines()
        )

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return int(self.proc.returncode)


@contextlib.contextmanager
def running(
    plane: LocalControlPlane,
    log_dir: Path,
    *args: str,
    ready: bool = True,
    ready_timeout: float = 60,
    **kwargs: Any,
) -> Iterator[ControllerProcess]:
    """A controller process for the length of a ``with``: known to the leftover-process guard
    while it runs, ready (unless ``ready=False``) when the block starts, stopped at its end
    (stopping it inside the block is fine)."""
    c = ControllerProcess(plane, log_dir, *args, **kwargs)
    SESSION_PIDS.append(c.pids)
    try:
        if ready:
            c.wait_ready(ready_timeout)
        yield c
    finally:
        c.stop()
        SESSION_PIDS.remove(c.pids)


Start = Callable[..., ControllerProcess]


@pytest.fixture
def controllers(
    control_plane: LocalControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[Start]:
    """Start ready controllers of the test's own (``--namespace``, a Lease per namespace), as
    many as a test needs; each is stopped (SIGKILL if still running) and its pool workers are
    gone when the test ends."""
    started: list[ControllerProcess] = []

    def start(*extra: str) -> ControllerProcess:
        c = ControllerProcess(
            control_plane,
            tmp_path,
            "--namespace",
            namespace,
            "--lease-name",
            f"dgdr-{namespace}",
            *extra,
            name=f"c{len(started)}",
        )
        started.append(c)
        c.wait_ready()
        return c

    yield start
    for c in started:
        c.stop(signal.SIGKILL if c.proc.poll() is None else signal.SIGTERM)
    # Pool workers exit by themselves once their parent is gone.
    eventually(lambda: not any(c.pids() for c in started), timeout=15, message="pool workers gone")


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    """A local Hugging Face Hub (its file API) for models the catalog lacks; it knows none
    until a test adds one. The real Hub is unreachable from here."""
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def controller(
    control_plane: LocalControlPlane,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    hub: HubServer,
) -> Iterator[ControllerProcess]:
    """One controller per test module, watching every namespace, leader-elected, asking the
    module's local Hub for models the catalog lacks.

    Module scope, so that modules which run controllers of their own (failover, worker crashes)
    never share namespaces with this one."""
    with running(
        control_plane,
        tmp_path_factory.mktemp("controller"),
        "--lease-name",
        "dgdr-module",
        "--hf-endpoint",
        hub.url,
        "--hub-timeout",
        "5",
    ) as c:
        yield c


def get_json(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(kubectl("get", kind, name, "-o", "json", namespace=namespace).stdout)


def phase_of(kubectl: Kubectl, name: str, namespace: str) -> str | None:
    res = kubectl(
        "get", "dgdr", name, "-o", "jsonpath={.status.phase}", namespace=namespace, check=False
    )
    return res.stdout.strip() or None if res.returncode == 0 else None


def wait_phase(
    kubectl: Kubectl, name: str, namespace: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        obj = get_json(kubectl, "dgdr", name, namespace)
        return obj if (obj.get("status") or {}).get("phase") == phase else None

    return eventually(
        current,
        timeout=timeout,
        message=f"dgdr {namespace}/{name} in phase {phase}",
        on_timeout=lambda: json.dumps(
            get_json(kubectl, "dgdr", name, namespace).get("status"), indent=1
        )[:3000],
    )


def reason_of(obj: dict[str, Any], type_: str) -> str | None:
    """The condition's reason, or None while the condition is not there yet (safe to poll)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return str(c.get("reason"))
    return None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")


def events_for(kubectl: Kubectl, name: str, namespace: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events about one DGDR, oldest first."""
    out = json.loads(
        kubectl(
            "get",
            "events",
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={name}",
            namespace=namespace,
        ).stdout
    )
    items = sorted(
        out.get("items") or [], key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or ""
    )
    return [
        (e.get("type", ""), e.get("reason", ""), e.get("message") or e.get("note", ""))
        for e in items
    ]


def apply_dgdr(kubectl: Kubectl, namespace: str, name: str, **spec: Any) -> None:
    """``kubectl apply`` a DGDR named ``name`` with this spec."""
    kubectl("apply", "-f", "-", input=dgdr_manifest(name, **spec), namespace=namespace)


def dgdr_manifest(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": name},
        "spec": spec,
    }
    return json.dumps(body)


SMALL = {
    "model": "Qwen/Qwen3-0.6B",
    "backend": "vllm",
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8, "vramMb": 81559},
    "sla": {"ttft": 2000, "itl": 50},
    "workload": {"isl": 2000, "osl": 500},
}
