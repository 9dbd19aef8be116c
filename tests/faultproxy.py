"""A fault-injecting loopback proxy between a client under test and the real apiserver.

It terminates TLS with the apiserver's own loopback certificate (so the same CA verifies it),
forwards every request to the apiserver unchanged, streams responses back chunk by chunk, and on
request misbehaves the way networks and servers really do:

- ``stall_watches()``: watch streams stop delivering bytes while the connection stays open (the
  half-open load-balancer case); new watches get no response headers either; ``resume()`` lets
  them flow again;
- ``cut_all()``: every open connection is aborted mid-stream (a reset, no clean end);
- ``fail_next(method, path_regex, status, times)``: the next matching requests are answered by
  the proxy with that status and a Kubernetes ``Status`` body (429 with ``Retry-After``; the
  ``message`` given, e.g. what a restarting apiserver says with its 503), or,
  with ``watch_event=True``, with a 200 watch stream carrying one ERROR event of that code, which
  is how the apiserver itself reports 410 Gone on a watch.

The real apiserver still does all the real work; only the wire between is faulty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from devtools.localplane.plane import write_kubeconfig

WATCH = r"[?&]watch=(true|1)(&|$)"

_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "upgrade",
}


def status_body(code: int, message: str) -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }


@dataclass
class Rule:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    watch_event: bool
    retry_after: int | None
    message: str | None = None


@dataclass
class Seen:
    """One request as the proxy saw it, and what it answered (``fault`` when injected)."""

    method: str
    path: str
    status: int | None = None
    fault: bool = False


@dataclass(eq=False)
class _Stream:
    request: web.Request
    upstream: aiohttp.ClientResponse | None = None
    cut: bool = False
    is_watch: bool = False


@dataclass
class FaultProxy:
    upstream_url: str
    ca_file: str
    cert_file: str
    key_file: str
    token: str
    workdir: Path
    kubeconfig: str = ""
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    _rules: list[Rule] = field(default_factory=list)
    _streams: set[_Stream] = field(default_factory=set)
    _stalled: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    # -- control ------------------------------------------------------------------------------

    def stall_watches(self) -> None:
        self._stalled = True

    def resume(self) -> None:
        """Let stalled streams flow and forget pending faults."""
        self._stalled = False
        self._rules.clear()
        self._wake.set()

    def cut_all(self) -> int:
        """Abort every open connection; returns how many were cut."""
        n = 0
        for s in list(self._streams):
            s.cut = True
            if s.request.transport is not None:
                s.request.transport.abort()
            if s.upstream is not None:
                s.upstream.close()
            n += 1
        self._wake.set()
        return n

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        *,
        watch_event: bool = False,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> None:
        if status == 429 and retry_after is None:
            retry_after = 1
        self._rules.append(
            Rule(
                method.upper(),
                re.compile(path_regex),
                status,
                times,
                watch_event,
                retry_after,
                message,
            )
        )

    def open_watches(self) -> int:
        return sum(1 for s in self._streams if s.is_watch and not s.cut)

    def watch_requests(self) -> list[Seen]:
        return [s for s in self.seen if re.search(WATCH, s.path)]

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        upstream_ctx = ssl.create_default_context(cafile=self.ca_file)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=upstream_ctx, limit=0),
            auto_decompress=True,
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"https://127.0.0.1:{port}"
        path = self.workdir / "proxy-kubeconfig"
        self.kubeconfig = str(
            write_kubeconfig(path, self.url, Path(self.ca_file), self.token, "admin")
        )
        return self

    async def close(self) -> None:
        self._stalled = False
        self.cut_all()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- the proxy ------------------------------------------------------------------------------

    def _match(self, request: web.Request) -> Rule | None:
        for rule in self._rules:
            if (
                rule.times > 0
                and rule.method in ("*", request.method)
                and rule.pattern.search(request.path_qs)
            ):
                rule.times -= 1
                return rule
        return None

    async def _gate(self, stream: _Stream) -> bool:
        """Wait while stalled; False when the stream was cut or its client went away."""
        while self._stalled and stream.is_watch and not stream.cut:
            transport = stream.request.transport
            if transport is None or transport.is_closing():
                return False
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
        return not stream.cut

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path_qs)
        self.seen.append(seen)
        rule = self._match(request)
        if rule is not None:
            seen.status, seen.fault = rule.status, True
            return await self._fault(request, rule)
        stream = _Stream(request, is_watch=bool(re.search(WATCH, request.path_qs)))
        self._streams.add(stream)
        try:
            return await self._forward(request, stream, seen)
        finally:
            self._streams.discard(stream)

    async def _fault(self, request: web.Request, rule: Rule) -> web.StreamResponse:
        message = rule.message or f"injected by the fault proxy: {rule.status}"
        body = status_body(rule.status, message)
        if rule.watch_event:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(json.dumps({"type": "ERROR", "object": body}).encode() + b"\n")
            await resp.write_eof()
            return resp
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        return web.json_response(body, status=rule.status, headers=headers)

    async def _forward(
        self, request: web.Request, stream: _Stream, seen: Seen
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "accept", "content-type", "user-agent")
        }
        data = await request.read()
        if not await self._gate(stream):
            return web.Response(status=499)
        try:
            upstream = await self._session.request(
                request.method,
                self.upstream_url + request.path_qs,
                headers=headers,
                data=data or None,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            )
        except (aiohttp.ClientError, OSError) as exc:
            seen.status = 502
            return web.json_response(status_body(502, f"upstream: {exc!r}"), status=502)
        stream.upstream = upstream
        seen.status = upstream.status
        resp = web.StreamResponse(status=upstream.status)
        for k, v in upstream.headers.items():
            if k.lower() not in _HOP_BY_HOP:
                resp.headers[k] = v
        try:
            if not await self._gate(stream):
                return resp
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                if not await self._gate(stream):
                    return resp
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            # The client or the upstream went away mid-stream: nothing more can be sent.
            return resp if resp.prepared else web.Response(status=499)
        finally:
            upstream.release()
