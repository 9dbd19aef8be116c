"""The long set-up steps of hack/ say what they do, about how long it takes, and show progress.

On a fresh machine the control-plane build takes minutes and the virtualenv install one or two:
silence there looks like a hang. Each step is announced (what, about how long), reports the time
spent while it runs, and says how long it took or that it failed. Checked here with stand-ins for
go and pip, so nothing is built or downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HACK = REPO / "hack"


def bash(
    script: str, *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_step_announces_reports_progress_and_the_time_taken(tmp_path: Path) -> None:
    res = bash(
        f'source {HACK / "lib.sh"}; run_step "waiting for a thing" "2 s" sleep 2.5',
        cwd=tmp_path,
        env={"PROGRESS_EVERY": "1"},
    )
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == "==> waiting for a thing (about 2 s)"
    assert any(line.startswith("    ... waiting for a thing: ") for line in lines[1:-1]), lines
    assert lines[-1].startswith("    waiting for a thing: done in ")
    assert res.stdout == ""


def test_run_step_passes_output_and_failure_through(tmp_path: Path) -> None:
    res = bash(
        f'source {HACK / "lib.sh"}; out=$(run_step "echoing" "1 s" echo hello); echo "[$out]";'
        ' run_step "failing" "1 s" bash -c "exit 3"; echo "rc=$?"',
        cwd=tmp_path,
    )
    assert res.stdout.splitlines() == ["[hello]", "rc=3"]
    assert "    failing: FAILED (exit 3) after " in res.stderr


def _fake_tool(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/usr/bin/env bash\n{body}\n")
    tool.chmod(0o755)


def test_the_control_plane_build_says_what_where_and_how_long_before_it_starts(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "bin"
    # `go mod init` works; the first download fails, as without a network.
    _fake_tool(
        fake,
        "go",
        'if [[ "$1 $2" == "mod init" ]]; then exit 0; fi; echo "go: no network here" >&2; exit 1',
    )
    env = {
        "DGDR_TESTBED_CACHE": str(tmp_path / "cache"),
        "PATH": f"{fake}:{os.environ['PATH']}",
        "PROGRESS_EVERY": "1",
    }
    res = bash(f"bash {HACK / 'build-testbed.sh'}", cwd=REPO, env=env)
    assert res.returncode != 0
    err = " ".join(res.stderr.split())
    assert "Building the local control plane" in err
    assert "kube-apiserver v1.36.3 and etcd v3.6.16" in err
    assert str(tmp_path / "cache") in err
    assert "about 3 minutes on 2 cores" in err and "KUBEBUILDER_ASSETS" in err
    assert "==> [1/4] fetching the k8s.io/kubernetes v1.36.3 module" in res.stderr
    assert "FAILED (exit 1)" in res.stderr
    assert not (tmp_path / "cache" / "k8s-v1.36.3-etcd-v3.6.16").exists()


def test_the_virtualenv_install_says_what_and_how_long(tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    venv_bin = tmp_path / ".venv" / "bin"
    _fake_tool(venv_bin, "python", "exit 0")
    _fake_tool(venv_bin, "pip", f'echo "pip $*" >> {tmp_path / "pip.log"}; sleep 1.5')
    res = bash(f"source {HACK / 'lib.sh'}; ensure_venv", cwd=tmp_path, env={"PROGRESS_EVERY": "1"})
    assert res.returncode == 0, res.stderr
    assert "Installing the pinned Python packages of pyproject.toml into .venv" in res.stderr
    assert "==> installing the project and its test, bench and dev packages (about 1-2 min" in (
        res.stderr
    )
    assert "    ... installing the project" in res.stderr
    assert "installing the project and its test, bench and dev packages: done in" in res.stderr
    assert "-e .[test,bench,dev]" in (tmp_path / "pip.log").read_text()
    # Done once: a second run says nothing at all.
    again = bash(f"source {HACK / 'lib.sh'}; ensure_venv", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""
