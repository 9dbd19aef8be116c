"""Shared fixtures: one real control plane per session, a fresh namespace per test, kubectl.

Also the guards every test runs under: a test that leaves asyncio tasks or child processes
behind fails, because in a controller a leaked task is a leaked watch or a leaked profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from devtools.localplane import LocalControlPlane
from tests.eventually import async_eventually, eventually

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "deploy" / "crds"

# PIDs of long-lived processes that session fixtures own (control plane, Prometheus...): the
# leftover-process guard ignores them. Session fixtures add a callable returning current PIDs.
SESSION_PIDS: list[Callable[[], set[int]]] = []

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[LocalControlPlane]:
    plane = LocalControlPlane.start()

    def pids() -> set[int]:
        return {p.pid for p in (plane._api, plane._etcd) if p is not None}

    SESSION_PIDS.append(pids)
    try:
        yield plane
    finally:
        SESSION_PIDS.remove(pids)
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: LocalControlPlane) -> str:
    return control_plane.kubeconfig


def make_kubectl(plane: LocalControlPlane, kubeconfig: str | None = None) -> Kubectl:
    cfg = kubeconfig or plane.kubeconfig

    def kubectl(
        *args: str,
        input: str | None = None,
        check: bool = True,
        namespace: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [plane.kubectl_path, "--kubeconfig", cfg]
        if namespace:
            cmd += ["-n", namespace]
        cmd += list(args)
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    return kubectl


@pytest.fixture(scope="session")
def kubectl(control_plane: LocalControlPlane) -> Kubectl:
    return make_kubectl(control_plane)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> list[str]:
    """Every CRD under deploy/crds/, applied and Established."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    names = []
    for f in files:
        out = kubectl("apply", "--server-side", "-f", str(f), "-o", "json").stdout
        names.append(json.loads(out)["metadata"]["name"])
    for n in names:
        kubectl("wait", "--for=condition=Established", f"crd/{n}", "--timeout=60s")
    return names


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # No namespace controller runs here, so the namespace stays Terminating; names are unique.
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest_asyncio.fixture
async def api_client(kubeconfig: str) -> AsyncIterator[Any]:
    from kubernetes_asyncio import client, config

    conf = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=conf)
    async with client.ApiClient(conf) as api:
        yield api


# ---- guards ------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def _no_leftover_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if leftovers:
        with contextlib.suppress(AssertionError):  # tasks mid-cancellation: a moment to finish
            await async_eventually(lambda: all(t.done() for t in leftovers), timeout=0.2)
        leftovers = [t for t in leftovers if not t.done()]
    for t in leftovers:
        t.cancel()
    if leftovers:
        pytest.fail(f"test left {len(leftovers)} asyncio task(s) running: {leftovers[:5]}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("asyncio") and isinstance(item, pytest.Function):
            # Set up first, torn down last: it sees what the test and its fixtures left behind.
            item.fixturenames.insert(0, "_no_leftover_tasks")


def _children() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    }


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    before = _children()
    yield

    def leftovers() -> set[int]:
        allowed = set().union(*(f() for f in SESSION_PIDS)) if SESSION_PIDS else set()
        return _children() - before - allowed

    with contextlib.suppress(AssertionError):  # the ones still there are named below
        eventually(lambda: not leftovers(), timeout=5, interval=0.1, message="children exit")
    if left := leftovers():
        names = []
        for pid in left:
            try:
                names.append(f"{pid}:{' '.join(psutil.Process(pid).cmdline()[:3])}")
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        pytest.fail(f"test left child processes running: {names}")
