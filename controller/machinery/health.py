"""The probe server (``/healthz``, ``/readyz``) and the metrics server (``/metrics``).

As controller-runtime does (probes on :8081, metrics on :8443), they listen on separate ports by
default, so that the port kubelet probes and the port Prometheus scrapes can be exposed and
protected differently; :class:`HealthServer` can also serve ``/metrics`` itself (one port).

Checks follow controller-runtime's ``pkg/healthz``: named checks, each also served at
``/<endpoint>/<name>``; ``?verbose`` lists them; ``?exclude=<name>`` skips one; failure reasons
are logged but withheld from the response (``[-]name failed: reason withheld``).

It also measures event-loop lag: a timer that should fire every ``lag_interval`` seconds records
how late it woke. A loop blocked by a CPU-bound call shows as lag long before a liveness probe
times out, and the ``loop`` liveness check fails when the lag passes ``max_loop_lag``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from metrics import REGISTRY
from metrics import runtime as m

log = logging.getLogger(__name__)

Check = Callable[[], bool | str | None]
"""``True`` / ``None``: healthy. ``False`` or a string (the reason): unhealthy."""


class HealthServer:
    """Serves the probes and the metrics; owns its loop-lag task. Port 0 picks a free port."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 8081,
        *,
        registry: CollectorRegistry = REGISTRY,
        lag_interval: float = 1.0,
        max_loop_lag: float = 10.0,
        serve_metrics: bool = True,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"health port must be 0..65535, got {port}")
        self.host = host
        self.port = port
        self.registry = registry
        self.serve_metrics = serve_metrics
        self.lag_interval = lag_interval
        self.max_loop_lag = max_loop_lag
        self.loop_lag = 0.0
        self._checks: dict[str, dict[str, Check]] = {"healthz": {}, "readyz": {}}
        self._runner: web.AppRunner | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self.add_healthz("ping", lambda: True)
        self.add_healthz("loop", self._loop_check)

    def add_healthz(self, name: str, check: Check) -> None:
        self._checks["healthz"][name] = check

    def add_readyz(self, name: str, check: Check) -> None:
        self._checks["readyz"][name] = check

    async def start(self) -> None:
        app = web.Application()
        if self.serve_metrics:
            app.router.add_get("/metrics", self._metrics)
        for endpoint in self._checks:
            app.router.add_get(f"/{endpoint}", self._handler(endpoint))
            app.router.add_get(f"/{endpoint}/{{check}}", self._handler(endpoint))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0 and self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        self._lag_task = asyncio.create_task(self._measure_lag(), name="loop-lag")
        log.info("health server listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- handlers -----------------------------------------------------------------------------

    def _handler(self, endpoint: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            checks = self._checks[endpoint]
            only = request.match_info.get("check")
            if only is not None:
                if only not in checks:
                    return web.Response(status=404, text=f"no such check: {only}\n")
                selected = {only: checks[only]}
            else:
                excluded = set(request.query.getall("exclude", []))
                selected = {n: c for n, c in checks.items() if n not in excluded}
            lines, ok = [], True
            for name, check in sorted(selected.items()):
                reason = _run(check)
                if reason is None:
                    lines.append(f"[+]{name} ok")
                else:
                    ok = False
                    lines.append(f"[-]{name} failed: reason withheld")
                    log.warning("%s check %s failed: %s", endpoint, name, reason)
            verbose = "verbose" in request.query or not ok
            if not verbose:
                return web.Response(text="ok")
            lines.append(f"{endpoint} check {'passed' if ok else 'failed'}")
            return web.Response(status=200 if ok else 500, text="\n".join(lines) + "\n")

        return handle

    async def _metrics(self, request: web.Request) -> web.Response:
        return _metrics_response(self.registry)

    # ---- loop lag -----------------------------------------------------------------------------

    def _loop_check(self) -> bool | str:
        if self.loop_lag > self.max_loop_lag:
            return f"event loop lag {self.loop_lag:.1f}s > {self.max_loop_lag}s"
        return True

    async def _measure_lag(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.lag_interval)
            self.loop_lag = max(0.0, time.monotonic() - start - self.lag_interval)
            m.EVENT_LOOP_LAG.set(self.loop_lag)


def _metrics_response(registry: CollectorRegistry) -> web.Response:
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class MetricsServer:
    """``/metrics`` alone on its own port (0 picks a free one)."""

    def __init__(
        self, host: str = "0.0.0.0", port: int = 8080, *, registry: CollectorRegistry = REGISTRY
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"metrics port must be 0..65535, got {port}")
        self.host = host
        self.port = port
        self.registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0 and self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        log.info("metrics server listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return _metrics_response(self.registry)


def _run(check: Check) -> str | None:
    """The failure reason, or ``None`` when healthy; a check that raises is unhealthy."""
    try:
        outcome = check()
    except Exception as err:
        return f"check raised {err!r}"
    if outcome is None or outcome is True:
        return None
    if outcome is False:
        return "check returned false"
    return str(outcome)


__all__ = ["Check", "HealthServer", "MetricsServer"]
