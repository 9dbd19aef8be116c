"""The wheel the Dockerfile installs runs the image's entrypoint, from the wheel alone.

No container runtime is needed: the wheel is built the way the Dockerfile's first stage builds it
(`pip wheel .`), unpacked into a folder that shadows the source tree on PYTHONPATH, and its
entrypoint and profiler are run from there. This catches files missing from the package (data
tables, py.typed) that an editable install would hide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from profiler.request import DEFAULT_IMAGE

from .tools import DEPLOY, REPO

ENTRYPOINT = ["-m", "controller", "run"]


def dockerfile_entrypoint() -> list[str]:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            import json

            value: list[str] = json.loads(line.removeprefix("ENTRYPOINT").strip())
            return value
    raise AssertionError("Dockerfile has no ENTRYPOINT")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = out.glob("dgdr_controller-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def run_from(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=site
    )


def test_image_entrypoint_is_the_controller() -> None:
    assert dockerfile_entrypoint() == ["python", *ENTRYPOINT]


def test_wheel_holds_the_three_packages(installed: Path) -> None:
    for package in ("controller", "profiler", "metrics"):
        assert (installed / package / "__init__.py").is_file(), package
    assert not (installed / "tests").exists()


def test_entrypoint_runs_from_the_wheel(installed: Path) -> None:
    res = run_from(
        installed, "-c", "import controller, profiler, metrics; print(controller.__file__)"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(str(installed)), "imported the source tree, not the wheel"
    res = run_from(installed, *ENTRYPOINT, "--help")
    assert res.returncode == 0, res.stderr
    for flag in ("--health-port", "--leader-elect", "--lease-namespace", "--pool-size"):
        assert flag in res.stdout


def test_profiler_data_is_packaged(installed: Path, tmp_path: Path) -> None:
    """Plan a sample DGDR from the wheel: needs the hardware and model tables."""
    sample = yaml.safe_load((DEPLOY / "samples" / "sla-ttft-itl.yaml").read_text())
    sample["spec"].setdefault("image", DEFAULT_IMAGE)  # the controller's default
    path = tmp_path / "dgdr.yaml"
    path.write_text(yaml.safe_dump(sample))
    res = run_from(installed, "-m", "profiler", "plan", str(path), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert '"chosen"' in res.stdout
