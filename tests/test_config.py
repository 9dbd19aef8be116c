"""Configuration precedence: flag, then environment variable, then default; bad values named;
the DGDR_ prefix on every variable; defaults that hold in a container (CPU limit, pod namespace);
probes and metrics on separate ports; a missing kubeconfig said in one line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import config

REPO = Path(__file__).resolve().parents[1]


def parse(args: list[str], env: dict[str, str]) -> config.ControllerConfig:
    ap = argparse.ArgumentParser()
    config.add_arguments(ap)
    return config.from_args(ap.parse_args(args), ap, env)


def test_flag_wins_over_environment_which_wins_over_default() -> None:
    cfg = parse(
        ["--workers", "7", "--namespace", "b"],
        {
            "DGDR_WORKERS": "3",
            "DGDR_WATCH_NAMESPACES": "a,c",
            "DGDR_QPS": "0",
            "DGDR_LEADER_ELECT": "false",
        },
    )
    assert cfg.workers == 7
    assert cfg.namespaces == ["b"]
    assert cfg.qps == 0.0 and cfg.leader_elect is False
    assert cfg.burst == config.ControllerConfig().burst
    assert parse([], {"DGDR_WATCH_NAMESPACES": "a, c"}).namespaces == ["a", "c"]
    assert parse([], {}).namespaces is None


def test_default_image_is_upstreams_and_the_flag_or_variable_replaces_it() -> None:
    upstream = "nvcr.io/nvidia/ai-dynamo/dynamo-planner:1.1.0"
    assert parse([], {}).default_image == upstream
    mirrored = parse([], {"DGDR_DEFAULT_IMAGE": "mirror.example/dynamo-planner:1.1.0"})
    assert mirrored.default_image == "mirror.example/dynamo-planner:1.1.0"
    flagged = parse(["--default-image", "dynamo-planner:1.2.0"], {"DGDR_DEFAULT_IMAGE": "x:1"})
    assert flagged.default_image == "dynamo-planner:1.2.0"


def test_lease_namespace_falls_back_to_the_pods_namespace() -> None:
    assert parse([], {"POD_NAMESPACE": "ops"}).lease_namespace == "ops"
    assert parse([], {"POD_NAMESPACE": "ops", "DGDR_LEASE_NAMESPACE": "x"}).lease_namespace == "x"
    assert parse(["--lease-namespace", "y"], {"POD_NAMESPACE": "ops"}).lease_namespace == "y"


def test_identity_from_the_downward_api() -> None:
    import os

    os.environ["POD_NAME"], os.environ["POD_UID"] = "ctl-0", "u1"
    try:
        assert parse([], {}).identity == "ctl-0_u1"
    finally:
        del os.environ["POD_NAME"], os.environ["POD_UID"]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ([], {"DGDR_WORKERS": "x"}, "DGDR_WORKERS"),
        ([], {"DGDR_LEADER_ELECT": "maybe"}, "DGDR_LEADER_ELECT"),
        (["--workers", "0"], {}, "--workers"),
        (["--metrics-port", "8081"], {}, "--probe-port and --metrics-port must differ"),
        (["--probe-port", "70000"], {}, "--probe-port"),
        (["--log-format", "xml"], {}, "--log-format"),
        ([], {"DGDR_LOG_FORMAT": "text"}, "DGDR_LOG_FORMAT"),
        (["--wait-deadline", "-1"], {}, "--wait-deadline"),
        (["--wait-deadline", "nan"], {}, "--wait-deadline"),
    ],
)
def test_malformed_values_are_usage_errors_that_name_them(
    args: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(args, env)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_every_variable_has_the_prefix_and_old_names_are_refused_naming_the_new_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for opt in config._OPTIONS:
        assert opt.variable in config.STANDARD_VARIABLES or opt.variable.startswith("DGDR_"), opt
    # A variable of 0.1 is refused, not silently dropped: who set it is told the name to use.
    with pytest.raises(SystemExit) as exc:
        parse([], {"WORKERS": "64", "DGDR_BURST": "7"})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "environment variable WORKERS is no longer read: set DGDR_WORKERS instead" in err
    assert "unset WORKERS" in err
    assert parse([], {"DGDR_WORKERS": "8", "DGDR_BURST": "7"}).workers == 8
    # A name 0.1 never read is not ours either way: another program's CONTEXT changes nothing.
    assert parse([], {"CONTEXT": "elsewhere", "WEBHOOK_PORT": "1"}).context is None
    assert parse([], {"CONTEXT": "elsewhere"}).webhook_port is None
    assert parse([], {"KUBECONFIG": "/k"}).kubeconfig == "/k"
    assert parse([], {"KUBECONFIG": "/k"}).warnings == []
    # The Hugging Face mirror keeps the name every HF tool reads.
    mirrored = parse([], {"HF_ENDPOINT": "https://hf-mirror.example"})
    assert mirrored.hf_endpoint == "https://hf-mirror.example" and mirrored.warnings == []


def test_the_help_names_the_prefixed_variables() -> None:
    ap = argparse.ArgumentParser()
    config.add_arguments(ap)
    text = " ".join(ap.format_help().split())
    assert "env DGDR_WORKERS" in text and "env DGDR_QPS" in text and "env KUBECONFIG" in text
    assert "--context" in text


@pytest.mark.parametrize(
    ("files", "affinity", "expected"),
    [
        ({"cpu.max": "200000 100000\n"}, 64, 2),  # cgroup v2, limits.cpu: 2
        ({"cpu.max": "150000 100000\n"}, 64, 2),  # 1500m rounds up
        ({"cpu.max": "50000 100000\n"}, 64, 1),  # 500m: still one process
        ({"cpu.max": "max 100000\n"}, 6, 6),  # no limit: the CPUs we may run on
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 64, 3),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, 4, 4),  # v1, none
        ({"cpu.max": "800000 100000\n"}, 2, 2),  # a quota above the cpuset does not add CPUs
        ({}, 3, 3),  # no cgroup files at all
    ],
)
def test_pool_size_defaults_to_the_containers_cpu_limit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    affinity: int,
    expected: int,
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
    assert config.cpu_limit(tmp_path) == expected
    monkeypatch.setattr(config, "CGROUP_ROOT", tmp_path)
    assert config.cpu_limit() == expected


def test_lease_namespace_defaults_to_the_pods_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.machinery import manager

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    sa = tmp_path / "namespace"
    sa.write_text("team-a\n")
    monkeypatch.setattr(manager, "SERVICE_ACCOUNT_NAMESPACE", str(sa))
    assert parse([], {}).lease_namespace == "team-a"  # the service account's namespace
    monkeypatch.setattr(manager, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "absent"))
    assert parse([], {}).lease_namespace == "default"  # outside a cluster


def test_probes_and_metrics_have_separate_ports_and_health_port_is_deprecated() -> None:
    cfg = parse([], {})
    assert (cfg.probe_port, cfg.metrics_port) == (8081, 8080)
    assert cfg.ports() == (8081, 8080) and cfg.warnings == []
    assert parse(["--probe-port", "9", "--metrics-port", "10"], {}).ports() == (9, 10)
    assert parse([], {"DGDR_METRICS_PORT": "9443"}).ports() == (8081, 9443)
    old = parse(["--health-port", "7000"], {})
    assert old.ports() == (7000, None)  # the old single port: probes and /metrics together
    assert any("--health-port is deprecated" in w for w in old.warnings)


def _run_controller(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return subprocess.run(
        [sys.executable, "-m", "controller", "run", *args],
        cwd=REPO,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--kubeconfig", "/nonexistent/kubeconfig"], {}, "/nonexistent/kubeconfig"),
        ([], {"KUBECONFIG": "/nope/a:/nope/b"}, "/nope/a:/nope/b"),
        ([], {"HOME": "/nonexistent-home"}, "/nonexistent-home/.kube/config"),
    ],
)
def test_a_missing_kubeconfig_is_one_line_naming_the_file(
    args: list[str], env: dict[str, str], said: str
) -> None:
    res = _run_controller(*args, "--probe-port", "0", "--metrics-port", "0", env=env)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "kubeconfig file not found: " + said in lines[0]


def test_an_unknown_context_is_one_line_naming_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: a, context: {cluster: c, user: u}}]\n"
    )
    res = _run_controller(
        "--kubeconfig", str(kubeconfig), "--context", "elsewhere",
        "--probe-port", "0", "--metrics-port", "0",
    )  # fmt: skip
    assert res.returncode == 1
    assert "Traceback" not in res.stderr, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "elsewhere" in line and str(kubeconfig) in line


def test_log_format_and_wait_deadline_from_flag_or_variable() -> None:
    assert parse([], {}).log_format == "json"
    assert parse(["--log-format", "console"], {}).log_format == "console"
    assert parse([], {"DGDR_LOG_FORMAT": "console"}).log_format == "console"
    assert parse([], {}).wait_deadline == 3600
    assert parse([], {"DGDR_WAIT_DEADLINE": "0"}).wait_deadline == 0
