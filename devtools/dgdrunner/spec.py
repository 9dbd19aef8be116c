"""What a DynamoGraphDeployment asks to run, read from the object as the API server returns it.

Pure functions, no I/O: a DGD (v1alpha1 ``spec.services`` map or v1beta1 ``spec.components``
list) becomes a list of :class:`Service` plans: the frontend, each worker with its role
(agg / prefill / decode), the engine it stands for, its data parallelism and concurrency cap read
from the worker's arguments, its replicas, and the ConfigMaps it mounts. A Dynamo ``mocker``
worker (``features.mocker``) is read from its own arguments. A planner, or any other component,
is recorded but not run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENGINES = ("vllm", "sglang", "trtllm")
ROLES = ("agg", "prefill", "decode")


@dataclass(frozen=True)
class Service:
    name: str
    kind: str  # frontend | worker | planner | other
    replicas: int
    role: str = "agg"
    engine: str = "vllm"
    model: str = ""  # the served model name
    model_path: str | None = None  # a local path the DGD names (--model-path / --model)
    dp: int = 1
    tp: int = 1
    max_num_seqs: int | None = None  # per DP rank, as the mocker takes it
    profile_data_path: str | None = None  # --planner-profile-data in the DGD's own args
    extra_args: tuple[str, ...] = ()  # frontend arguments worth keeping (router flags)
    env: tuple[tuple[str, str], ...] = ()
    configmap_mounts: tuple[tuple[str, str], ...] = ()  # (ConfigMap name, mount path)
    command: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return self.kind in ("frontend", "worker")


@dataclass
class Graph:
    services: list[Service] = field(default_factory=list)
    version: str = "v1alpha1"

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def models(self) -> list[str]:
        return sorted({s.model for s in self.services if s.kind == "worker" and s.model})


def _flag(args: Sequence[str], *names: str) -> str | None:
    """The value of the last of ``names`` in ``args`` (``--x v`` or ``--x=v``)."""
    found: str | None = None
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                found = args[i + 1]
            elif a.startswith(n + "="):
                found = a.split("=", 1)[1]
    return found


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _env_pairs(items: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in items or []:
        if isinstance(e, Mapping) and e.get("name") and "value" in e:
            out.append((str(e["name"]), str(e["value"])))
    return out


def _role(svc: Mapping[str, Any], args: Sequence[str], comp_type: str | None) -> str:
    mode = _flag(args, "--disaggregation-mode")
    if mode in ROLES:
        return str(mode)
    if "--is-prefill-worker" in args:
        return "prefill"
    if "--is-decode-worker" in args:
        return "decode"
    sub = svc.get("subComponentType") or (comp_type if comp_type in ("prefill", "decode") else None)
    return str(sub) if sub in ("prefill", "decode") else "agg"


def _engine(backend: str | None, command: Sequence[str], args: Sequence[str]) -> str:
    for part in command:
        for e in ENGINES:
            if part == f"dynamo.{e}":
                return e
    given = _flag(args, "--engine-type")
    if given in ENGINES:
        return str(given)
    return backend if backend in ENGINES else "vllm"


def _parallelism(engine: str, mocker: bool, args: Sequence[str]) -> tuple[int, int, int | None]:
    """(data parallel ranks, tensor parallel size, concurrency cap per DP rank)."""
    if mocker:
        dp = _int(_flag(args, "--data-parallel-size"), 1)
        return dp, 1, _int(_flag(args, "--max-num-seqs"), 0) or None
    if engine == "vllm":
        dp = _int(_flag(args, "--data-parallel-size"), 1)
        tp = _int(_flag(args, "--tensor-parallel-size", "--tp"), 1)
        return max(dp, 1), tp, _int(_flag(args, "--max-num-seqs"), 0) or None
    if engine == "sglang":
        dp = _int(_flag(args, "--dp", "--data-parallel-size"), 1)
        tp = _int(_flag(args, "--tp", "--tensor-parallel-size"), 1)
        shared = _int(_flag(args, "--max-running-requests"), 0)
        dp = max(dp, 1)
        return dp, max(tp // dp, 1), (math.ceil(shared / dp) if shared else None)
    # trtllm: --override-engine-args '{"tensor_parallel_size": ..., "enable_attention_dp": ...}'
    raw = _flag(args, "--override-engine-args")
    engine_args: dict[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
            engine_args = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            engine_args = {}
    tp = _int(engine_args.get("tensor_parallel_size"), 1)
    dp = tp if engine_args.get("enable_attention_dp") else 1
    cap = _int(engine_args.get("max_batch_size"), 0)
    return max(dp, 1), max(tp // max(dp, 1), 1), cap or None


def _kind(comp_type: str | None) -> str:
    if comp_type == "frontend":
        return "frontend"
    if comp_type in ("worker", "prefill", "decode", "main"):
        return "worker"
    if comp_type == "planner":
        return "planner"
    return "other"


def _configmaps(pod: Mapping[str, Any], mounts: Sequence[Any]) -> list[tuple[str, str]]:
    cms = {
        str(v["name"]): str(v["configMap"]["name"])
        for v in pod.get("volumes") or []
        if isinstance(v, Mapping) and isinstance(v.get("configMap"), Mapping) and v.get("name")
    }
    out: list[tuple[str, str]] = []
    for m in mounts:
        if isinstance(m, Mapping) and m.get("name") in cms:
            out.append((cms[str(m["name"])], str(m.get("mountPath") or m.get("mountPoint") or "")))
    return out


def _service(
    name: str,
    comp_type: str | None,
    svc: Mapping[str, Any],
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    env: list[tuple[str, str]],
    backend: str | None,
) -> Service:
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    mocker = any(c == "dynamo.mocker" for c in command)
    kind = _kind(comp_type)
    replicas = max(_int(svc.get("replicas"), 1), 0)
    mounts = _configmaps(pod, container.get("volumeMounts") or [])
    model = _flag(args, "--served-model-name", "--model-name") or _flag(
        args, "--model", "--model-path"
    )
    model_path = _flag(args, "--model-path", "--model")
    if kind != "worker":
        extra: list[str] = []
        for flag in ("--router-mode", "--kv-cache-block-size"):
            value = _flag(args, flag)
            if value is not None:
                extra += [flag, value]
        return Service(
            name=name,
            kind=kind,
            replicas=replicas,
            model=model or "",
            model_path=model_path,
            extra_args=tuple(extra),
            env=tuple(env),
            configmap_mounts=tuple(mounts),
            command=tuple(command),
        )
    engine = _engine(backend, command, args)
    dp, tp, cap = _parallelism(engine, mocker, args)
    return Service(
        name=name,
        kind=kind,
        replicas=replicas,
        role=_role(svc, args, comp_type),
        engine=engine,
        model=model or "",
        model_path=model_path,
        dp=dp,
        tp=tp,
        max_num_seqs=cap,
        profile_data_path=_flag(args, "--planner-profile-data"),
        env=tuple(env),
        configmap_mounts=tuple(mounts),
        command=tuple(command),
    )


def parse(dgd: Mapping[str, Any]) -> Graph:
    """The services of a DGD in either API version."""
    spec = dgd.get("spec") or {}
    backend = spec.get("backendFramework")
    graph_env = _env_pairs(spec.get("envs") or spec.get("env"))
    out: list[Service] = []
    if isinstance(spec.get("components"), list):
        for comp in spec["components"]:
            if not isinstance(comp, Mapping) or not comp.get("name"):
                continue
            pod = ((comp.get("podTemplate") or {}).get("spec")) or {}
            containers = [c for c in pod.get("containers") or [] if isinstance(c, Mapping)]
            main = next((c for c in containers if c.get("name") == "main"), None)
            main = main or (containers[0] if containers else {})
            env = graph_env + _env_pairs(main.get("env"))
            out.append(_service(str(comp["name"]), comp.get("type"), comp, main, pod, env, backend))
        return Graph(out, "v1beta1")
    for name, svc in (spec.get("services") or {}).items():
        if not isinstance(svc, Mapping):
            continue
        pod = svc.get("extraPodSpec") or {}
        main = pod.get("mainContainer") or {}
        env = graph_env + _env_pairs(svc.get("envs")) + _env_pairs(main.get("env"))
        comp_type = svc.get("componentType")
        out.append(_service(str(name), comp_type, svc, main, pod, env, backend))
    return Graph(out, "v1alpha1")


def served_model(graph: Graph) -> str:
    """The model the frontend should list: the workers' (one model per DGD here)."""
    models = graph.models
    return models[0] if models else ""
