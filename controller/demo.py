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

    def on_sigterm(*_: object) -> None:
        raise SystemExit(143)  # unwinds through the finally below: everything is stopped

    signal.signal(signal.SIGTERM, on_sigterm)
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
        port, probes = free_port(), free_port()
        _say(
            f"controller: python -m controller run (metrics on 127.0.0.1:{port}, probes on "
            f"127.0.0.1:{probes})"
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller",
                    "run",
                    "--kubeconfig",
                    plane.kubeconfig,
                    "--metrics-port",
                    str(port),
                    "--probe-port",
                    str(probes),
                    "--bind-address",
                    "127.0.0.1",
                    "--lease-namespace",
                    "kube-system",
                    "--log-level",
                    "ERROR",
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
        _wait_ready(probes)
        _say(f"kubectl apply -n {NAMESPACE} -f {sample_path.relative_to(REPO)}")
        print(sample_path.read_text())
        name = json.loads(
            kubectl(
                "apply", "-n", NAMESPACE, "-f", str(sample_path), "--dry-run=client", "-o", "json"
            )
        )["metadata"]["name"]
        # Every status write reaches a watch, so a watch shows phases that last milliseconds.
        columns = (
            "custom-columns=NAME:.metadata.name,PHASE:.status.phase,"
            "PROFILING:.status.profilingPhase,"
            'REASON:.status.conditions[?(@.type=="Succeeded")].reason,DGD:.status.dgdName'
        )
        watch = subprocess.Popen(
            [
                plane.kubectl_path,
                "--kubeconfig",
                plane.kubeconfig,
                "get",
                "dgdr",
                "-n",
                NAMESPACE,
                "--watch",
                "-o",
                columns,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(watch)  # type: ignore[arg-type]
        kubectl("apply", "-n", NAMESPACE, "-f", str(sample_path))
        _say(f"kubectl get dgdr --watch   (every status change of dgdr/{name})")
        phase = _follow(watch, timeout)
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


def _follow(watch: subprocess.Popen[str], timeout: float) -> str:
    """Print the watch's distinct lines until the DGDR reaches a phase it rests in."""
    assert watch.stdout is not None
    done = threading.Event()
    phase = ""

    def read() -> None:
        nonlocal phase
        last = ""
        assert watch.stdout is not None
        for line in watch.stdout:
            line = line.rstrip()
            if line and line != last:
                print(" ", line, flush=True)
                last = line
            fields = line.split()
            if len(fields) > 1 and fields[1] in ("Deployed", "Ready", "Failed"):
                phase = fields[1]
                done.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done.wait(timeout)
    watch.terminate()
    watch.wait(timeout=10)
    return phase


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
