"""A real Prometheus (Debian's package) on a loopback port, for tests that check PromQL on data.

``Prometheus.start(targets)`` writes a scrape config (1 s interval by default, ``honor_labels``
like the ServiceMonitor), starts the binary on a free 127.0.0.1 port with a fresh TSDB folder,
and waits for ``/-/ready``. ``query(expr)`` evaluates an instant query and raises ``PromQLError``
with Prometheus's own message on a bad expression. ``stop()`` ends the process (TERM, then KILL).
Never the packaged systemd service: that one listens on every interface.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devtools.localplane import free_port
from tests.eventually import eventually


class PromQLError(AssertionError):
    """Prometheus refused a query; the message is its errorType and error."""


class Prometheus:
    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, log: Path, owned: bool
    ) -> None:
        self.proc = proc
        self._owned = owned  # a workdir this class made is removed on stop()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.log_path = log

    @classmethod
    def start(
        cls,
        targets: Mapping[str, Sequence[str]],
        *,
        scrape_interval: str = "1s",
        workdir: Path | None = None,
        ready_timeout: float = 60,
    ) -> Prometheus:
        """``targets`` maps a job name to ``host:port`` addresses (plain HTTP, /metrics)."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError(
                "prometheus is missing: install the Debian package 'prometheus' "
                "(apt-get install -y prometheus; do not start its systemd service)"
            )
        base = workdir or Path(tempfile.mkdtemp(prefix="prometheus-"))
        (base / "tsdb").mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {
                    "job_name": job,
                    "honor_labels": True,
                    "scrape_timeout": scrape_interval,
                    "static_configs": [{"targets": list(addrs)}],
                }
                for job, addrs in targets.items()
            ],
        }
        config_path = base / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = base / "prometheus.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={base / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=base,
            )
        prom = cls(proc, port, base, log, owned=workdir is None)
        try:
            prom._wait_ready(ready_timeout)
        except BaseException:
            prom.stop()
            raise
        return prom

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:  # an exited Prometheus will not become ready
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        eventually(
            ready, timeout=timeout, message="prometheus ready", on_timeout=self.tail, retry_on=()
        )

    def _get(self, path: str, params: Mapping[str, str | Sequence[str]]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')} (params {params})")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the vector's samples (``metric``, ``value``), or a scalar as one."""
        params = {"query": expr} | ({"time": str(at)} if at is not None else {})
        data = self._get("/api/v1/query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self._get(f"/api/v1/label/{label}/values", {"match[]": [match]})
        return values

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets", {})["activeTargets"]
        return active

    def wait_for(
        self,
        expr: str,
        ok: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 60,
    ) -> list[dict[str, Any]]:
        """Poll an expression until ``ok(result)``; a bound, not a timing assertion."""

        def matched() -> tuple[list[dict[str, Any]]]:
            result = self.query(expr)
            assert ok(result), f"result {result}"
            return (result,)  # truthy even when ``ok`` accepts an empty result

        (result,) = eventually(matched, timeout=timeout, interval=0.5, message=repr(expr))
        return result

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._owned:
            shutil.rmtree(self.workdir, ignore_errors=True)
