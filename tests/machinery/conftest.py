"""Fixtures for the machinery tests: a client on the real apiserver, and the fault proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from controller.machinery.client import KubeClient
from devtools.localplane import LocalControlPlane
from tests.faultproxy import FaultProxy


@pytest_asyncio.fixture
async def client(kubeconfig: str) -> AsyncIterator[KubeClient]:
    """A KubeClient straight to the apiserver (admin), closed after the test."""
    c = await KubeClient.connect(kubeconfig)
    try:
        yield c
    finally:
        await c.close()


@pytest_asyncio.fixture
async def fault_proxy(
    control_plane: LocalControlPlane, tmp_path: Path
) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the apiserver; point a client at ``fault_proxy.kubeconfig``."""
    proxy = FaultProxy(
        upstream_url=control_plane.server,
        ca_file=control_plane.ca_file,
        cert_file=str(control_plane.pki.server_crt),
        key_file=str(control_plane.pki.server_key),
        token=control_plane.token,
        workdir=tmp_path,
    )
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
