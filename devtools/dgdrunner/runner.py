"""The local DGD runner: plays the Dynamo operator on a local control plane by running each
DynamoGraphDeployment as real processes: Dynamo's frontend and its mock engine (``dynamo.mocker``)
from the Dynamo virtualenv, one file-based discovery store (``DYN_FILE_KV``) per DGD.

It talks to the product only through the Kubernetes API: it watches DGDs, reads the ConfigMaps a
DGD mounts, writes the DGD's ``status`` (``state``, per-service replicas) and records the
frontend's URL in the annotation ``dgdrunner.local/endpoint``.

A worker replica is available when its process is alive and has registered in the DGD's
discovery store (an instance whose TCP address is one its process listens on); the frontend when
it lists the served model on ``/v1/models``. The DGD is ``successful`` when every replica of
every service it runs is available, else ``pending``. A planner (or any component that is not a
frontend or a worker) is not started; its status entry says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from .modeldir import ensure_model_dir
from .procs import Backoff, Supervised, stop_all
from .profile import max_kv_tokens, write_mocker_npz
from .spec import Graph, Service, parse, served_model

log = logging.getLogger("dgdrunner")

GROUP = "nvidia.com"
PLURAL = "dynamographdeployments"
ANNOTATION_ENDPOINT = "dgdrunner.local/endpoint"
BLOCK_SIZE = 16
PROFILE_FILES = ("prefill_raw_data.json", "decode_raw_data.json")
NOT_STARTED = (
    "not started: the local DGD runner runs the frontend and the workers only "
    "(a {kind} needs Prometheus and the Kubernetes scaling API)"
)
# Every address a Dynamo process advertises is loopback (its ZMQ publishers still bind all
# interfaces: Dynamo 1.6 has no setting for that).
LOOPBACK_ENV = {
    "DYN_TCP_RPC_HOST": "127.0.0.1",
    "DYN_EVENT_PLANE_HOST": "127.0.0.1",
    "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
    "DYN_SYSTEM_HOST": "127.0.0.1",
    "DYN_HTTP_RPC_HOST": "127.0.0.1",
}
MERGE_PATCH: dict[str, Any] = {
    "_content_type": "application/merge-patch+json",
    "_request_timeout": 30,
}
DROPPED_ENV = {"HF_HOME", "HF_TOKEN", "DYN_DISCOVERY_BACKEND", "DYN_FILE_KV", "DYN_NAMESPACE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Options:
    dynamo_python: str
    workdir: Path
    cache_dir: Path
    namespace: str | None = None
    models_dir: Path | None = None
    tick: float = 0.5
    stop_grace: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    speedup_ratio: float | None = None
    request_timeout: float = 30.0
    watch_timeout: int = 60


@dataclass
class Deployment:
    """One DGD's processes, discovery store and last written status."""

    key: str
    uid: str
    dir: Path
    frontend_ports: dict[int, int] = field(default_factory=dict)
    procs: dict[tuple[str, int], Supervised] = field(default_factory=dict)
    profile_dirs: dict[str, Path] = field(default_factory=dict)
    profile_kv: dict[str, int] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    annotated: str | None = None

    @property
    def kv_dir(self) -> Path:
        return self.dir / "kv"


class Kube:
    """The few API calls the runner makes, through kubernetes_asyncio."""

    def __init__(self, api: Any, version: str) -> None:
        self.api = api
        self.version = version
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    @classmethod
    async def connect(cls, kubeconfig: str, version: str | None) -> Kube:
        conf = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=conf)
        return cls(client.ApiClient(conf), version or "")

    async def resolve_version(self) -> bool:
        """The DGD version API discovery finds served: v1beta1, else v1alpha1 (as the controller
        chooses). False while neither serves DGDs (the CRD is not installed yet)."""
        if self.version:
            return True
        for version in ("v1beta1", "v1alpha1"):
            try:
                res = await self.custom.get_api_resources(GROUP, version, _request_timeout=30)
            except ApiException as e:
                if e.status == 404:
                    continue
                raise
            if any(r.name == PLURAL for r in res.resources or []):
                self.version = version
                return True
        return False

    async def close(self) -> None:
        await self.api.close()

    def list_fn(self, namespace: str | None) -> tuple[Any, tuple[Any, ...]]:
        if namespace:
            return self.custom.list_namespaced_custom_object, (
                GROUP,
                self.version,
                namespace,
                PLURAL,
            )
        return self.custom.list_cluster_custom_object, (GROUP, self.version, PLURAL)

    async def patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            GROUP,
            self.version,
            ns,
            PLURAL,
            name,
            {"status": status},
            **MERGE_PATCH,
        )

    async def annotate(self, ns: str, name: str, key: str, value: str) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP,
            self.version,
            ns,
            PLURAL,
            name,
            {"metadata": {"annotations": {key: value}}},
            **MERGE_PATCH,
        )

    async def configmap(self, ns: str, name: str) -> dict[str, str] | None:
        try:
            cm = await self.core.read_namespaced_config_map(name, ns, _request_timeout=30)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(cm.data or {})


def tail(path: Path, lines: int = 3, width: int = 300) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(t[-width:] for t in text)


def _instances(kv_dir: Path) -> list[tuple[Path, int, int]]:
    """(file, TCP port, instance id) of every instance in a file discovery store."""
    out: list[tuple[Path, int, int]] = []
    try:
        entries = list((kv_dir / "v1" / "instances").iterdir())
    except OSError:
        return out
    for f in entries:
        try:
            body = json.loads(f.read_text())
            addr = str((body.get("transport") or {}).get("tcp") or "")
            port = int(addr.split("/", 1)[0].rsplit(":", 1)[1])
            out.append((f, port, int(body.get("instance_id"))))
        except (OSError, ValueError, IndexError, AttributeError, TypeError):
            continue
    return out


def registered_ports(kv_dir: Path) -> set[int]:
    """TCP ports of the ``generate`` endpoints registered in a file discovery store."""
    return {
        port
        for f, port, _ in _instances(kv_dir)
        if unquote(f.name).split("/")[-2:-1] == ["generate"]
    }


def forget(kv_dir: Path, ports: set[int]) -> int:
    """Remove the registrations (instances and model cards) of a process that died listening
    on ``ports``, as the operator's discovery drops a dead pod, instead of waiting for their
    leases to expire while the frontend routes to them. Returns how many files went."""
    ids = {iid for _, port, iid in _instances(kv_dir) if port in ports}
    removed = 0
    for sub in ("instances", "mdc"):
        try:
            entries = list((kv_dir / "v1" / sub).iterdir())
        except OSError:
            continue
        for f in entries:
            try:
                if int(json.loads(f.read_text()).get("instance_id")) in ids:
                    f.unlink()
                    removed += 1
            except (OSError, ValueError, TypeError):
                continue
    return removed


class Runner:
    def __init__(self, kube: Kube, opts: Options) -> None:
        self.kube = kube
        self.opts = opts
        self.dgds: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, Deployment] = {}
        self.changed = asyncio.Event()
        self.synced = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    # ---- watch ---------------------------------------------------------------------------------

    async def watch_loop(self) -> None:
        while True:
            try:
                if not await self.kube.resolve_version():
                    log.info("no served DGD version yet (CRD not installed?); retry in 2 s")
                    await asyncio.sleep(2.0)
                    continue
                fn, args = self.kube.list_fn(self.opts.namespace)
                listing = await fn(*args, _request_timeout=self.opts.request_timeout)
                items = listing.get("items") or []
                self.dgds = {self._key(o): o for o in items}
                self.synced.set()
                self.changed.set()
                rv = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                stream = w.stream(
                    fn,
                    *args,
                    resource_version=rv,
                    timeout_seconds=self.opts.watch_timeout,
                    allow_watch_bookmarks=True,
                    _request_timeout=self.opts.watch_timeout + 10,
                )
                try:
                    async for event in stream:
                        kind, obj = event.get("type"), event.get("object")
                        if kind == "ERROR" or not isinstance(obj, dict):
                            break  # e.g. 410 Gone: list again
                        if kind == "BOOKMARK":
                            continue
                        if kind == "DELETED":
                            self.dgds.pop(self._key(obj), None)
                        else:
                            self.dgds[self._key(obj)] = obj
                        self.changed.set()
                finally:
                    w.stop()
                    await w.close()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the API server restarting, a timeout, a 410 raised
                log.warning("watch of DGDs: %s; listing again in 1 s", str(e).splitlines()[0])
                await asyncio.sleep(1.0)

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}"

    # ---- reconcile -----------------------------------------------------------------------------

    async def reconcile_loop(self) -> None:
        await self.synced.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), self.opts.tick)
            self.changed.clear()
            for key in sorted(set(self.dgds) | set(self.deployments)):
                try:
                    await self.reconcile(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: reconcile failed; retrying", key)

    async def reconcile(self, key: str) -> None:
        obj = self.dgds.get(key)
        dep = self.deployments.get(key)
        uid = str((obj or {}).get("metadata", {}).get("uid") or "")
        if dep is not None and (obj is None or dep.uid != uid):
            await self.remove(dep, "deleted" if obj is None else "replaced")
            dep = None
        if obj is None:
            return
        if dep is None:
            ns, name = key.split("/", 1)
            dep = Deployment(key, uid, self.opts.workdir / ns / f"{name}-{uid[:8]}")
            dep.kv_dir.mkdir(parents=True, exist_ok=True)
            self.deployments[key] = dep
            log.info("%s: running it (discovery store %s)", key, dep.kv_dir)
        graph = parse(obj)
        desired = await self.desired(obj, dep, graph)
        # stop what is no longer wanted, or wanted differently
        stale = [
            p
            for k, p in dep.procs.items()
            if k not in desired or list(desired[k][0]) != list(p.cmd)
        ]
        if stale:
            for p in stale:
                log.info("%s: stopping %s (pid %s)", key, p.name, p.pid)
            await asyncio.to_thread(stop_all, stale, self.opts.stop_grace)
            dep.procs = {k: p for k, p in dep.procs.items() if p not in stale}
        for k, (cmd, env) in desired.items():
            if k not in dep.procs:
                dep.procs[k] = Supervised(
                    name=f"{k[0]}[{k[1]}]",
                    cmd=cmd,
                    env=env,
                    log=self.opts.workdir
                    / "logs"
                    / dep.dir.relative_to(self.opts.workdir)
                    / f"{k[0]}-{k[1]}.log",
                    backoff=self.opts.backoff,
                )
        for p in dep.procs.values():
            pid = p.pid
            what = p.tick()
            if what:
                log.info("%s: %s %s (pid %s)", key, p.name, what, p.pid or pid)
                if p.pid is None:
                    log.info("%s: %s said: %s", key, p.name, tail(p.log))
                    gone = forget(dep.kv_dir, p.known_ports)
                    if gone:
                        log.info("%s: removed %d registration(s) of %s", key, gone, p.name)
        await self.report(obj, dep, graph)

    async def desired(
        self, obj: Mapping[str, Any], dep: Deployment, graph: Graph
    ) -> dict[tuple[str, int], tuple[list[str], dict[str, str]]]:
        out: dict[tuple[str, int], tuple[list[str], dict[str, str]]] = {}
        ns = str(obj["metadata"]["namespace"])
        py = self.opts.dynamo_python
        common = ["--discovery-backend", "file", "--request-plane", "tcp", "--event-plane", "zmq"]
        fallback_profile = await self._graph_profile(ns, dep, graph)
        for svc in graph.services:
            if not svc.runnable:
                continue
            env = self._env(dep, svc)
            if svc.kind == "frontend":
                for i in range(svc.replicas):
                    port = dep.frontend_ports.setdefault(i, free_port())
                    cmd = [py, "-m", "dynamo.frontend", *common, "--http-host", "127.0.0.1"]
                    out[(svc.name, i)] = ([*cmd, "--http-port", str(port), *svc.extra_args], env)
                continue
            model = svc.model or "model"
            mdir = await asyncio.to_thread(
                ensure_model_dir,
                self.opts.cache_dir / "models",
                model,
                local=svc.model_path,
                models_dir=self.opts.models_dir,
            )
            cmd = [py, "-m", "dynamo.mocker", "--model-path", str(mdir), "--model-name", model]
            cmd += [*common, "--disaggregation-mode", svc.role, "--engine-type", svc.engine]
            if svc.dp > 1:
                cmd += ["--data-parallel-size", str(svc.dp)]
            if svc.max_num_seqs:
                cmd += ["--max-num-seqs", str(svc.max_num_seqs)]
            profile = await self._service_profile(ns, dep, svc) or fallback_profile
            if profile is not None:
                cmd += ["--planner-profile-data", str(profile)]
                kv = dep.profile_kv.get(profile.stem, 0) // max(svc.dp, 1)
                if kv >= BLOCK_SIZE:  # the KV capacity the profiler sized the engine with
                    cmd += ["--block-size", str(BLOCK_SIZE)]
                    cmd += ["--num-gpu-blocks-override", str(kv // BLOCK_SIZE)]
            elif svc.profile_data_path:
                continue  # its own args ask for profile data that is not there yet: wait
            if self.opts.speedup_ratio:
                cmd += ["--speedup-ratio", str(self.opts.speedup_ratio)]
            for i in range(svc.replicas):
                out[(svc.name, i)] = (cmd, env)
        return out

    def _env(self, dep: Deployment, svc: Service) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update({k: v for k, v in svc.env if k not in DROPPED_ENV})
        env.update(LOOPBACK_ENV)
        env.update(
            {
                "DYN_FILE_KV": str(dep.kv_dir),
                "DYN_DISCOVERY_BACKEND": "file",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "DYN_LOG": os.environ.get("DGDRUNNER_DYN_LOG", "info"),
            }
        )
        return env

    async def _profile_dir(self, ns: str, dep: Deployment, cm_name: str) -> Path | None:
        """The ConfigMap's profile data as the mocker's timing table (an .npz); None if the
        ConfigMap has no profile data."""
        if cm_name in dep.profile_dirs:
            return dep.profile_dirs[cm_name]
        data = await self.kube.configmap(ns, cm_name)
        if data is None or not all(f in data for f in PROFILE_FILES):
            return None
        out = await asyncio.to_thread(
            write_mocker_npz, data, dep.dir / "profile" / f"{cm_name}.npz"
        )
        dep.profile_dirs[cm_name] = out
        dep.profile_kv[cm_name] = max_kv_tokens(data)
        log.info("%s: timing from ConfigMap %s (profile data) in %s", dep.key, cm_name, out)
        return out

    async def _service_profile(self, ns: str, dep: Deployment, svc: Service) -> Path | None:
        mounts = list(svc.configmap_mounts)
        if svc.profile_data_path:  # the mount its own --planner-profile-data names first
            mounts.sort(key=lambda m: m[1] != svc.profile_data_path)
        for cm, _path in mounts:
            found = await self._profile_dir(ns, dep, cm)
            if found is not None:
                return found
        return None

    async def _graph_profile(self, ns: str, dep: Deployment, graph: Graph) -> Path | None:
        """Profile data mounted anywhere in the DGD (the planner's): the timing the profiler
        predicted for these engines, which every worker then simulates."""
        for svc in graph.services:
            for cm, _path in svc.configmap_mounts:
                found = await self._profile_dir(ns, dep, cm)
                if found is not None:
                    return found
        return None

    # ---- status --------------------------------------------------------------------------------

    async def _frontend_lists(self, port: int, model: str) -> bool:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        try:
            async with self._http.get(f"http://127.0.0.1:{port}/v1/models") as r:
                if r.status != 200:
                    return False
                body = await r.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        ids = {m.get("id") for m in body.get("data") or [] if isinstance(m, dict)}
        return model in ids if model else bool(ids)

    async def report(self, obj: Mapping[str, Any], dep: Deployment, graph: Graph) -> None:
        meta = obj["metadata"]
        ns, name = str(meta["namespace"]), str(meta["name"])
        registered = registered_ports(dep.kv_dir)
        model = served_model(graph)
        services: dict[str, Any] = {}
        waiting: list[str] = []
        live_ports: set[int] = set()
        for svc in graph.services:
            entry: dict[str, Any] = {"replicas": svc.replicas}
            if not svc.runnable:
                entry["availableReplicas"] = 0
                entry["message"] = NOT_STARTED.format(kind=svc.kind)
                services[svc.name] = entry
                continue
            available = restarts = 0
            for i in range(svc.replicas):
                p = dep.procs.get((svc.name, i))
                if p is None:
                    continue
                restarts += p.restarts
                if not p.alive():
                    continue
                if svc.kind == "frontend":
                    ok = await self._frontend_lists(dep.frontend_ports[i], model)
                else:
                    p.known_ports = p.listening_ports() or p.known_ports
                    ok = bool(p.known_ports & registered)
                    live_ports |= p.known_ports
                available += int(ok)
            entry.update({"availableReplicas": available, "readyReplicas": available})
            if restarts:
                entry["restarts"] = restarts
            services[svc.name] = entry
            if available < svc.replicas:
                waiting.append(f"{svc.name} {available}/{svc.replicas}")
        stale = registered - live_ports
        if stale:
            waiting.append(f"{len(stale)} registration(s) of stopped workers to expire")
        has_workers = any(s.kind == "worker" and s.replicas > 0 for s in graph.services)
        has_frontend = any(s.kind == "frontend" and s.replicas > 0 for s in graph.services)
        ready = not waiting and has_workers and has_frontend
        if not has_workers:
            waiting.append("no worker replicas")
        if not has_frontend:
            waiting.append("no frontend")
        parts_key = "components" if graph.version == "v1beta1" else "services"
        previous = dep.status or {}
        message = (
            "every replica registered and the frontend lists the model"
            if ready
            else "waiting for " + ", ".join(waiting)
        )
        status: dict[str, Any] = {
            "state": "successful" if ready else "pending",
            "observedGeneration": meta.get("generation"),
            parts_key: services,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "AllReplicasReady" if ready else "ReplicasNotReady",
                    "message": message,
                    "lastTransitionTime": self._transition(dep, ready),
                }
            ],
        }
        if dep.frontend_ports:
            url = f"http://127.0.0.1:{dep.frontend_ports[min(dep.frontend_ports)]}"
            status["endpoint"] = url
            if dep.annotated != url:
                await self.kube.annotate(ns, name, ANNOTATION_ENDPOINT, url)
                dep.annotated = url
        current = obj.get("status") or {}
        if status != dep.status or not _same(current, status):
            patch = dict(status)
            old_parts = current.get(parts_key) if isinstance(current, dict) else None
            if isinstance(old_parts, dict):  # a service that is gone leaves the status
                patch[parts_key] = {
                    **{k: None for k in old_parts if k not in services},
                    **services,
                }
            try:
                await self.kube.patch_status(ns, name, patch)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            if previous.get("state") != status["state"]:
                log.info("%s: state %s (%s)", dep.key, status["state"], message)
            dep.status = status

    def _transition(self, dep: Deployment, ready: bool) -> str:
        prev = dep.status or {}
        conds = prev.get("conditions") or [{}]
        was = conds[0].get("status") == "True"
        if prev and was == ready and conds[0].get("lastTransitionTime"):
            return str(conds[0]["lastTransitionTime"])
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def remove(self, dep: Deployment, why: str) -> None:
        procs = list(dep.procs.values())
        log.info("%s: %s; stopping its %d process(es)", dep.key, why, len(procs))
        await asyncio.to_thread(stop_all, procs, self.opts.stop_grace)
        dep.procs.clear()
        self.deployments.pop(dep.key, None)
        shutil.rmtree(dep.dir, ignore_errors=True)

    def shutdown(self) -> None:
        procs = [p for d in self.deployments.values() for p in d.procs.values()]
        stop_all(procs, self.opts.stop_grace)
        for d in self.deployments.values():
            d.procs.clear()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def _same(current: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether the object already carries this status (the watch can lag a write)."""
    return all(current.get(k) == v for k, v in status.items())


async def run(kubeconfig: str, opts: Options, version: str | None = None) -> int:
    kube = await Kube.connect(kubeconfig, version)
    runner = Runner(kube, opts)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(runner.watch_loop(), name="watch"),
        asyncio.create_task(runner.reconcile_loop(), name="reconcile"),
    ]
    log.info(
        "watching %s.%s in %s; processes from %s; work in %s",
        PLURAL,
        GROUP,
        opts.namespace or "every namespace",
        opts.dynamo_python,
        opts.workdir,
    )
    started = time.monotonic()
    try:
        done_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([done_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not done_wait and t.exception() is not None:
                log.error("%s stopped: %r", t.get_name(), t.exception())
        done_wait.cancel()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        n = sum(len(d.procs) for d in runner.deployments.values())
        log.info("stopping %d process(es) after %.0f s", n, time.monotonic() - started)
        runner.shutdown()
        await runner.close()
        await kube.close()
    return 0


def _default_python() -> str:
    repo = Path(__file__).resolve().parents[2]
    venv = os.environ.get("DGDR_DYNAMO_VENV") or str(repo / ".venv-dynamo")
    return str(Path(venv) / "bin" / "python")


DEFAULT_PYTHON = _default_python()
