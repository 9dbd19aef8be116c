"""The main job, end to end on one machine, serving for real: what ``bash hack/demo.sh`` runs.

A local control plane (kube-apiserver + etcd on loopback), the CRDs, the controller as a process,
the local DGD runner as a process (it plays the Dynamo operator: Dynamo's frontend and mock
engines run each DGD, from ``.venv-dynamo``), and a sample DGDR whose phases are printed as they
happen: Pending -> Profiling -> Deploying -> Deployed. Then the DGD serves: one chat completion
through its frontend and a short aiperf run (``.venv-aiperf``). With ``--keep`` everything keeps
running, with the commands to try it by hand, until Ctrl-C; then everything is stopped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from devtools.dgdrunner.modeldir import ensure_model_dir
from devtools.dgdrunner.runner import ANNOTATION_ENDPOINT
from devtools.localplane import BinariesMissing, LocalControlPlane, free_port

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "demo"
AIPERF = REPO / ".venv-aiperf" / "bin" / "aiperf"
MODELS = Path.home() / ".cache" / "dgdrunner" / "models"


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
    procs: list[subprocess.Popen[Any]] = []
    logs = Path(tempfile.mkdtemp(prefix="dgdr-demo-"))

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
                    "ERROR",
                ]
            )
        )
        _say(
            "local DGD runner: python -m devtools.dgdrunner (plays the Dynamo operator: "
            f"Dynamo's frontend + mock engines per DGD; log {logs / 'dgdrunner.log'})"
        )
        with open(logs / "dgdrunner.log", "ab") as runner_log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "devtools.dgdrunner",
                        "--kubeconfig",
                        plane.kubeconfig,
                        "--namespace",
                        NAMESPACE,
                        "--workdir",
                        str(logs / "runner"),
                    ],
                    cwd=REPO,
                    stdout=runner_log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_ready(port)
        _say(f"kubectl apply -n {NAMESPACE} -f {sample_path.relative_to(REPO)}")
        print(sample_path.read_text())
        name = json.loads(
            kubectl(
                "apply", "-n", NAMESPACE, "-f", str(sample_path), "--dry-run=client", "-o", "json"
            )
        )["metadata"]["name"]
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
        procs.append(watch)
        kubectl("apply", "-n", NAMESPACE, "-f", str(sample_path))
        _say(f"kubectl get dgdr --watch   (every status change of dgdr/{name})")
        phase = _follow(watch, timeout)
        _say("kubectl get dgdr")
        print(kubectl("get", "dgdr", "-n", NAMESPACE))
        _say("kubectl get dgd   (state from the runner's processes)")
        print(kubectl("get", "dgd", "-n", NAMESPACE, check=False))
        _say(f"kubectl describe dgdr {name} (events)")
        described = kubectl("describe", "dgdr", name, "-n", NAMESPACE)
        print(described[described.find("Events:") :] if "Events:" in described else described)
        if phase != "Deployed":
            return 0 if phase == "Ready" else 1
        dgdr = json.loads(kubectl("get", "dgdr", name, "-n", NAMESPACE, "-o", "json"))
        dgd_name = dgdr["status"]["dgdName"]
        dgd = json.loads(kubectl("get", "dgd", dgd_name, "-n", NAMESPACE, "-o", "json"))
        url = dgd["metadata"]["annotations"][ANNOTATION_ENDPOINT]
        model = dgdr["spec"]["model"]
        _say(f"the DGD serves: its frontend is at {url} (annotation {ANNOTATION_ENDPOINT})")
        print("processes:")
        for svc, st in sorted((dgd["status"].get("services") or {}).items()):
            note = f"  ({st['message']})" if st.get("message") else ""
            print(f"  {svc}: {st.get('availableReplicas', 0)}/{st.get('replicas')} available{note}")
        chat = _chat_body(model, "Say hello to the DGDR demo.", 16)
        _say(f"curl {url}/v1/chat/completions -d '{chat}'")
        reply = _post(f"{url}/v1/chat/completions", chat)
        print(json.dumps(reply, indent=1)[:1500])
        model_dir = ensure_model_dir(MODELS, model)
        aiperf = _aiperf_cmd(model, url, model_dir, logs / "aiperf", isl=200, osl=50)
        if AIPERF.exists():
            _say("aiperf: 8 concurrent streaming chats, 40 requests, ISL 200 / OSL 50")
            print(" ".join(shlex.quote(a) for a in aiperf))
            _aiperf(aiperf, logs / "aiperf")
        else:
            print(f"{AIPERF} is missing (bash hack/ensure-dynamo.sh builds it): aiperf skipped")
        if keep:
            _say("running; try it by hand (Ctrl-C stops everything):")
            aiperf_text = " ".join(shlex.quote(a) for a in aiperf)
            k = plane.kubectl_path
            print(
                f"  export KUBECONFIG={plane.kubeconfig}\n"
                f"  {k} get dgdr,dgd -n {NAMESPACE}\n"
                f"  curl -s {url}/v1/models\n"
                f"  curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' "
                f"-d '{chat}'\n"
                f"  {aiperf_text}\n"
                f"  {k} patch dgd {dgd_name} -n {NAMESPACE} --type=merge "
                '-p \'{"spec":{"services":{"<worker>":{"replicas":2}}}}\'   # scale\n'
                f"  tail -f {logs / 'dgdrunner.log'}",
                flush=True,
            )
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        plane.stop()


def _chat_body(model: str, text: str, max_tokens: int) -> str:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        }
    )


def _post(url: str, body: str) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read()))


def _aiperf_cmd(
    model: str, url: str, model_dir: Path, out: Path, *, isl: int, osl: int
) -> list[str]:
    return [
        str(AIPERF),
        "profile",
        "--model",
        model,
        "--url",
        url,
        "--endpoint-type",
        "chat",
        "--streaming",
        "--tokenizer",
        str(model_dir),
        "--concurrency",
        "8",
        "--request-count",
        "40",
        "--synthetic-input-tokens-mean",
        str(isl),
        "--output-tokens-mean",
        str(osl),
        "--extra-inputs",
        "ignore_eos:true",
        "--ui-type",
        "none",
        "--no-gpu-telemetry",
        "--no-server-metrics",
        "--artifact-dir",
        str(out),
    ]


def _aiperf(cmd: list[str], out: Path) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    export = out / "profile_export_aiperf.json"
    if res.returncode != 0 or not export.exists():
        print(f"aiperf failed ({res.returncode}):\n{res.stdout[-1500:]}{res.stderr[-1500:]}")
        return
    m = json.loads(export.read_text())
    errors = sum(int(e.get("count", 0)) for e in m.get("error_summary") or [])
    for key, label in (("time_to_first_token", "TTFT"), ("inter_token_latency", "ITL")):
        v = m[key]
        print(f"  {label:5} p50 {v['p50']:8.2f} ms   p90 {v['p90']:8.2f} ms")
    print(
        f"  {int(m['request_count']['avg'])} requests, {errors} errors, "
        f"{m['request_throughput']['avg']:.1f} requests/s, "
        f"{m['output_token_throughput']['avg']:.0f} output tokens/s "
        "(mock engines with Dynamo's default timing, not a GPU)"
    )


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    ap.add_argument("--sample", default="deploy/samples/sla-ttft-itl.yaml")
    ap.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    args = ap.parse_args(argv)
    return demo(args.sample, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
