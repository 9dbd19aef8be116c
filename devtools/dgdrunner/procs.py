"""One supervised process: started in its own session (so a stop reaches everything it spawned),
killed with the runner if the runner dies (``PR_SET_PDEATHSIG``), restarted with exponential
backoff when it exits, stopped with SIGTERM then SIGKILL within a bound."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Backoff:
    initial: float = 1.0
    cap: float = 30.0
    stable_after: float = 30.0  # a process that ran this long restarts from ``initial`` again

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.initial * 2 ** max(failures - 1, 0)))


@dataclass
class Supervised:
    """A process the runner wants running: ``cmd`` with ``env``, output in ``log``."""

    name: str
    cmd: Sequence[str]
    env: dict[str, str]
    log: Path
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0  # consecutive quick exits, for the backoff
    next_start: float = 0.0
    last_exit: int | None = None
    known_ports: set[int] = field(default_factory=set)  # where it listened, last seen alive

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"--- start: {' '.join(self.cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                list(self.cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.started_at = self.clock()
        self.known_ports = set()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tick(self) -> str | None:
        """Start or restart when due. Returns what happened (for the log), or None."""
        now = self.clock()
        if self.proc is None:
            if now >= self.next_start:
                self.start()
                return "started" if self.restarts == 0 else f"restarted (#{self.restarts})"
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self.last_exit = code
        ran = now - self.started_at
        self.failures = 1 if ran >= self.backoff.stable_after else self.failures + 1
        delay = self.backoff.delay(self.failures)
        self.next_start = now + delay
        pid, self.proc = self.proc.pid, None
        self.restarts += 1
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # whatever the dead process left in its session
        return f"exited with {code} after {ran:.1f} s; restart in {delay:.0f} s"

    def listening_ports(self) -> set[int]:
        if not self.alive() or self.proc is None:
            return set()
        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
            ports: set[int] = set()
            for p in procs:
                for c in p.net_connections("inet"):
                    if c.status == psutil.CONN_LISTEN and c.laddr:
                        ports.add(int(c.laddr.port))
            return ports
        except psutil.Error:
            return set()

    def signal_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def finish_stop(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for the process, then SIGKILL its session."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything it left in its session
        self.proc = None


def stop_all(procs: Sequence[Supervised], grace: float = 5.0) -> None:
    """SIGTERM every process at once, then wait for each within one shared bound."""
    for p in procs:
        p.signal_stop()
    deadline = time.monotonic() + grace
    for p in procs:
        p.finish_stop(deadline)
