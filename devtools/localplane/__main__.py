"""``python -m devtools.localplane``: start a local control plane and keep it up until Ctrl-C.

Prints the kubeconfig path and the versions, so a developer can point kubectl or the controller at
it; ``--crds`` files are applied once it is ready.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading

from .binaries import BinariesMissing
from .plane import LocalControlPlane


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.localplane", description=__doc__)
    ap.add_argument("--workdir", help="where to keep etcd data, certs, logs and the kubeconfig")
    ap.add_argument("--crds", nargs="*", default=[], help="CRD files to apply once ready")
    args = ap.parse_args(argv)
    try:
        plane = LocalControlPlane.start(args.workdir, keep_workdir=bool(args.workdir))
    except BinariesMissing as e:
        print(e, file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for crd in args.crds:
            subprocess.run(
                [plane.kubectl_path, "--kubeconfig", plane.kubeconfig, "apply", "-f", crd],
                check=True,
            )
        print(
            json.dumps(
                {
                    "kubeconfig": plane.kubeconfig,
                    "server": plane.server,
                    "version": plane.version()["gitVersion"],
                }
            ),
            flush=True,
        )
        print(
            f"export KUBECONFIG={plane.kubeconfig}   # Ctrl-C stops the control plane", flush=True
        )
        stop.wait()
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
