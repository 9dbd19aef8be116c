"""The shipped package holds the product: the wheel carries ``controller``, ``profiler`` and
``metrics`` (and their package data), never the development tools (the local control plane, the
DGD runner, the demo), the tests or the benches; and the rooms keep their import rules."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("controller", "profiler", "metrics")
DIST_INFO = "dgdr_controller-0.1.0.dist-info"


def _sources(dest: Path) -> Path:
    """The checkout as git sees it (tracked, and new files not ignored) copied to ``dest``: the
    build runs there, so it leaves no ``build/`` or ``*.egg-info`` in the working tree, and the
    copy still holds devtools/, tests/, bench/ and hack/ for the build to leave out."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for raw in listed:
        rel = raw.decode()
        src = REPO / rel
        if not rel or not src.is_file():  # deleted in the working tree, not yet committed
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(src.read_bytes())
    return dest


def _setuptools_can_build() -> bool:
    """Whether this environment can build without fetching the build backend: pyproject's
    ``license = "Apache-2.0"`` needs setuptools >= 77 (PEP 639)."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
        importlib.metadata.version("wheel")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 77


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("wheel")
    src = _sources(root / "src")
    out = root / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    if _setuptools_can_build():
        cmd.append("--no-build-isolation")  # offline: the installed setuptools builds it
    # Else pip fetches pyproject's [build-system] requires, as `pip install -e` in hack/lib.sh does.
    res = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=300, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = out.glob("dgdr_controller-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = sorted(z.namelist())
    print(f"{wheel.name}: {len(names)} files", *names, sep="\n  ")
    return names


def test_wheel_holds_only_the_product(wheel_files: list[str]) -> None:
    tops = {name.split("/")[0] for name in wheel_files}
    assert tops == {*SHIPPED, DIST_INFO}, tops
    for needle in ("localplane", "devtools", "dgdrunner", "demo", "tests", "bench", "hack"):
        assert not [n for n in wheel_files if needle in n.split("/")], needle


def test_wheel_holds_the_whole_product(wheel_files: list[str]) -> None:
    """Every module of the three packages and their package data, the console scripts."""
    want = {
        str(p.relative_to(REPO))
        for pkg in SHIPPED
        for p in (REPO / pkg).rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (p.suffix == ".py" or p.name == "py.typed" or p.parent.name == "data")
    }
    assert want, "no sources found"
    assert not want - set(wheel_files), sorted(want - set(wheel_files))
    assert "controller/py.typed" in wheel_files
    assert any(n.startswith("profiler/data/") and n.endswith(".json") for n in wheel_files)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(*roots: str) -> list[Path]:
    return [p for r in roots for p in (REPO / r).rglob("*.py") if "__pycache__" not in p.parts]


def test_product_never_imports_the_development_tools() -> None:
    bad = {
        str(p.relative_to(REPO)): sorted(m for m in _imports(p) if m.split(".")[0] == "devtools")
        for p in _modules(*SHIPPED)
    }
    assert not {k: v for k, v in bad.items() if v}


def test_development_tools_use_no_dgdr_logic() -> None:
    """devtools reach the DGDR logic only through its public API (the Kubernetes API, the CRDs,
    the command line), never by importing ``controller.dgdr``."""
    bad = {
        str(p.relative_to(REPO)): sorted(m for m in _imports(p) if m.startswith("controller.dgdr"))
        for p in _modules("devtools")
    }
    assert not {k: v for k, v in bad.items() if v}
