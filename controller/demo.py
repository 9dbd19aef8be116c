"""The main job, end to end on one machine: what ``bash hack/demo.sh`` runs.

A local control plane (kube-apiserver + etcd on loopback), the CRDs, the controller as a process,
a LOCAL STAND-IN for the Dynamo operator (it marks DGDs successful, since nothing runs pods here),
and a sample DGDR whose phases are printed as they happen: Pending -> Profiling -> Deploying ->
Deployed. Everything is stopped at the end (or on Ctrl-C with ``--keep``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from controller.localplane import BinariesMissing, LocalControlPlane, free_port

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "demo"


def _say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def demo(sample: str, *, keep: bool = False, timeout: float = 180.0) -> int:
    sample_path = Path(sample) if Path(sample).is_absolute() else REPO / sample
    try:
        plane = LocalControlPlane.start()
    except BinariesMissing as e:
        print(e, file=sys.stderr)
        return 2
    procs: list[subprocess.Popen[bytes]] = []

    def kubectl(*args: str, check: bool = True) -> str:
        res = subprocess.run(
            [plane.kubectl_path, "--kubeconfig", plane.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr}")
        return res.stdout

    try:
        _say(f"local control plane {plane.version()['gitVersion']} at {plane.server}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
            kubectl("apply", "--server-side", "-f", str(crd))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl("create", "namespace", NAMESPACE)
        port = free_port()
        _say(f"controller: python -m controller run (health and metrics on 127.0.0.1:{port})")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller",
                    "run",
                    "--kubeconfig",
                    plane.kubeconfig,
                    "--health-port",
                    str(port),
                    "--bind-address",
                    "127.0.0.1",
                    "--lease-namespace",
                    "kube-system",
                    "--log-level",
                    "WARNING",
                ]
            )
        )
        _say("LOCAL STAND-IN for the Dynamo operator: marks DGDs successful after 2 s")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller.localplane.standin_dynamo",
                    "--kubeconfig",
                    plane.kubeconfig,
                    "--namespace",
                    NAMESPACE,
                ]
            )
        )
        _wait_ready(port)
        _say(f"kubectl apply -n {NAMESPACE} -f {sample_path.relative_to(REPO)}")
        print(sample_path.read_text())
        kubectl("apply", "-n", NAMESPACE, "-f", str(sample_path))
        name = json.loads(
            kubectl(
                "apply", "-n", NAMESPACE, "-f", str(sample_path), "--dry-run=client", "-o", "json"
            )
        )["metadata"]["name"]
        _say(f"watching dgdr/{name}")
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        phase = ""
        while time.monotonic() < deadline:
            status = (
                json.loads(kubectl("get", "dgdr", name, "-n", NAMESPACE, "-o", "json")).get(
                    "status"
                )
                or {}
            )
            phase, sub = status.get("phase", "Pending"), status.get("profilingPhase", "")
            if not seen or seen[-1] != (phase, sub):
                seen.append((phase, sub))
                print(f"  phase={phase:<10} profilingPhase={sub}", flush=True)
            if phase in ("Deployed", "Ready", "Failed"):
                break
            time.sleep(0.1)
        _say("kubectl get dgdr")
        print(kubectl("get", "dgdr", "-n", NAMESPACE))
        _say("kubectl get dgd")
        print(kubectl("get", "dgd", "-n", NAMESPACE, check=False))
        _say(f"kubectl describe dgdr {name} (events)")
        described = kubectl("describe", "dgdr", name, "-n", NAMESPACE)
        print(described[described.find("Events:") :] if "Events:" in described else described)
        _say("controller metrics (dgdr_status_phase)")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("dgdr_status_phase{") and line.endswith(" 1.0"):
                    print(" ", line)
        if keep:
            _say("running; Ctrl-C stops everything")
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
        return 0 if phase in ("Deployed", "Ready") else 1
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        plane.stop()


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"controller not ready on port {port} within {timeout}s")
