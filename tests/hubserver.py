"""A local stand-in for the Hugging Face Hub's file API, for tests (the real Hub is unreachable).

It serves what ``huggingface_hub.hf_hub_download`` asks for: ``HEAD`` and ``GET`` on
``/{repo_id}/resolve/{revision}/{filename}``, answering as the Hub does:

- a file: 200 with ``ETag`` (the content's hash, quoted), ``X-Repo-Commit`` (a 40-hex commit)
  and ``Content-Length`` (the client refuses a response without the first two);
- a missing repository: 404 with ``X-Error-Code: RepoNotFound`` (401 when it is private and the
  request has no valid token, as the Hub answers for private repositories);
- a gated repository without an accepted token: 401 with ``X-Error-Code: GatedRepo``;
- a missing file: 404 with ``X-Error-Code: EntryNotFound`` and the commit;
- ``slow``: the answer is held back that many seconds (a Hub that does not answer in time);
- ``fail_with``: every request is answered with that status (500, 503: a Hub having trouble).

It runs its own event loop in a thread, so tests and controller processes alike reach it on
loopback, and records every request (method, path, Authorization header) for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Repo:
    files: dict[str, bytes]
    private_token: str | None = None  # set: 401 RepoNotFound unless this bearer token is sent
    gated_token: str | None = None  # set: 401 GatedRepo unless this bearer token is sent
    slow: float = 0.0  # seconds every answer about this repository is held back
    commit: str = field(default_factory=lambda: hashlib.sha1(b"commit").hexdigest())


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.slow: float = 0.0
        self.fail_with: int | None = None
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    # ---- content --------------------------------------------------------------------------

    def add_model(self, repo_id: str, config: dict[str, Any], **kw: Any) -> Repo:
        repo = Repo({"config.json": json.dumps(config).encode()}, **kw)
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    def requests_for(self, repo_id: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(f"/{repo_id}/")]

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> HubServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, sock)
            loop.run_until_complete(site.start())
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="hub-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("hub server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the file API ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        with self._lock:
            self.requests.append(Request(request.method, request.path, auth))
        if self.slow:
            await asyncio.sleep(self.slow)
        if self.fail_with is not None:
            return web.Response(status=self.fail_with, text="the hub is having trouble")
        path = request.path.lstrip("/")
        head, sep, rest = path.partition("/resolve/")
        if not sep or request.method not in ("HEAD", "GET"):
            return web.Response(status=404, headers={"X-Error-Code": "RepoNotFound"})
        revision, _, filename = rest.partition("/")
        with self._lock:
            repo = self.repos.get(head)
        if repo is not None and repo.slow:
            await asyncio.sleep(repo.slow)
        token = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
        if repo is None:
            return web.Response(
                status=404,
                headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
            )
        if repo.private_token is not None and token != repo.private_token:
            return web.Response(
                status=401,
                headers={
                    "X-Error-Code": "RepoNotFound",
                    "X-Error-Message": "Invalid username or password.",
                },
            )
        if repo.gated_token is not None and token != repo.gated_token:
            return web.Response(
                status=401,
                headers={
                    "X-Error-Code": "GatedRepo",
                    "X-Error-Message": f"Access to model {head} is restricted.",
                },
            )
        body = repo.files.get(filename)
        if body is None or revision not in ("main", repo.commit):
            return web.Response(
                status=404,
                headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit},
            )
        headers = {
            "ETag": '"' + hashlib.sha1(body).hexdigest() + '"',
            "X-Repo-Commit": repo.commit,
            "Content-Length": str(len(body)),
            "Content-Type": "application/json",
        }
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=body, headers=headers)
