"""Task functions the worker-pool tests run in real worker processes, and what those tests share.

They live in an importable module (not in the test file) because a worker receives its function by
reference and imports it. ``ENV_BREAK_IMPORT`` set in a worker's environment makes this module fail
to import there, which is how a test gets a pool whose workers cannot load their function.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from controller.machinery import worker_pool
from controller.machinery.worker_pool import ProgressFn
from profiler.errors import FieldError, SpecError

ENV_BREAK_IMPORT = "POOL_TASKS_BREAK_IMPORT"
if os.environ.get(ENV_BREAK_IMPORT):
    raise ImportError(f"{ENV_BREAK_IMPORT} is set: this worker must not load its task function")


class Unpicklable(Exception):
    """Carries a lock, so it cannot travel back to the parent as itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def _record(payload: dict[str, Any]) -> None:
    """Append one line per execution to ``payload['log']``, so tests count real runs."""
    if "log" in payload:
        with open(payload["log"], "a") as f:
            f.write(f"{os.getpid()}\n")


def run(payload: dict[str, Any], progress: ProgressFn) -> Any:
    _record(payload)
    action = payload["action"]
    if action == "echo":
        return payload["value"]
    if action == "progress":
        for i in range(payload["count"]):
            progress(f"Phase{i}", f"message {i}")
        return payload["count"]
    if action == "print":  # what a chatty library does: stdout must not reach the message stream
        print("x" * 100_000, flush=True)
        os.write(1, b"\xff" * 64)
        return payload["value"]
    if action == "sleep":
        progress("Running", str(os.getpid()))
        time.sleep(payload["seconds"])
        return os.getpid()
    if action == "raise_spec":
        raise SpecError(
            [
                FieldError("spec.sla.ttft", "must be positive"),
                FieldError("spec.hardware.gpuSku", "unknown SKU 'x100'"),
            ]
        )
    if action == "raise_value":
        raise ValueError(payload.get("message", "bad value"))
    if action == "raise_unpicklable":
        raise Unpicklable("holds a lock")
    if action == "crash_once":
        marker = Path(payload["marker"])
        if not marker.exists():
            marker.write_text("crashed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"
    if action == "garble_once":  # write junk into the pipe the worker reports on
        marker = Path(payload["marker"])
        if not marker.exists():
            marker.write_text("garbled once")
            os.write(worker_pool._events_fd, b"\xff" * 64)
            time.sleep(60)
        return "survived"
    if action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "exit":
        os._exit(payload.get("code", 3))
    if action == "segfault":
        ctypes.string_at(0)
    if action == "unpicklable_result":
        return threading.Lock()
    raise ValueError(f"unknown action {action!r}")


ENV_COUNT_LOG = "PROFILE_COUNT_LOG"
ENV_DELAY = "PROFILE_DELAY"


def counted_profile(payload: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    """The real profiler, after logging this execution and waiting ``PROFILE_DELAY`` seconds."""
    from controller.dgdr.profiling import profile_in_worker

    with open(os.environ[ENV_COUNT_LOG], "a") as f:
        f.write(f"{os.getpid()}\n")
    progress("Waiting", str(os.getpid()))
    time.sleep(float(os.environ.get(ENV_DELAY, "0")))
    return profile_in_worker(payload, progress)


def process_gone(pid: int, within: float = 10.0) -> bool:
    """True once no live (non-zombie) process has this pid, waiting at most ``within`` seconds."""
    try:
        proc = psutil.Process(pid)
        proc.wait(timeout=within)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    return True
