"""Configuration precedence: flag, then environment variable, then default; bad values named."""

from __future__ import annotations

import argparse

import pytest

from controller import config


def parse(args: list[str], env: dict[str, str]) -> config.ControllerConfig:
    ap = argparse.ArgumentParser()
    config.add_arguments(ap)
    return config.from_args(ap.parse_args(args), ap, env)


def test_flag_wins_over_environment_which_wins_over_default() -> None:
    cfg = parse(
        ["--workers", "7", "--namespace", "b"],
        {"WORKERS": "3", "WATCH_NAMESPACES": "a,c", "QPS": "0", "LEADER_ELECT": "false"},
    )
    assert cfg.workers == 7
    assert cfg.namespaces == ["b"]
    assert cfg.qps == 0.0 and cfg.leader_elect is False
    assert cfg.burst == config.ControllerConfig().burst
    assert parse([], {"WATCH_NAMESPACES": "a, c"}).namespaces == ["a", "c"]
    assert parse([], {}).namespaces is None


def test_default_image_is_upstreams_and_the_flag_or_variable_replaces_it() -> None:
    upstream = "nvcr.io/nvidia/ai-dynamo/dynamo-planner:1.1.0"
    assert parse([], {}).default_image == upstream
    assert parse([], {"DEFAULT_IMAGE": "mirror.example/dynamo-planner:1.1.0"}).default_image == (
        "mirror.example/dynamo-planner:1.1.0"
    )
    flagged = parse(["--default-image", "dynamo-planner:1.2.0"], {"DEFAULT_IMAGE": "x:1"})
    assert flagged.default_image == "dynamo-planner:1.2.0"


def test_lease_namespace_falls_back_to_the_pods_namespace() -> None:
    assert parse([], {"POD_NAMESPACE": "ops"}).lease_namespace == "ops"
    assert parse([], {"POD_NAMESPACE": "ops", "LEASE_NAMESPACE": "x"}).lease_namespace == "x"
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
        ([], {"WORKERS": "x"}, "WORKERS"),
        ([], {"LEADER_ELECT": "maybe"}, "LEADER_ELECT"),
        (["--workers", "0"], {}, "--workers"),
    ],
)
def test_malformed_values_are_usage_errors_that_name_them(
    args: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(args, env)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
