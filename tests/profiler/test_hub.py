"""Models outside the catalog: their config.json from a Hub, through the real huggingface_hub
client, against a local server that speaks the Hub's file API (tests/hubserver.py)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from profiler import hub as hubmod
from profiler import plan
from profiler.errors import SpecError
from profiler.hub import (
    HubSettings,
    HubUnavailableError,
    ModelAccessError,
    ModelNotFoundError,
    clear_memory_cache,
    fetch_config,
)
from profiler.naive import NAIVE_BATCH
from profiler.request import PlanRequest
from tests.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[2]

# A dense decoder the catalog does not have (Phi-4's shape).
PHI4 = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "hidden_size": 5120,
    "intermediate_size": 17920,
    "num_hidden_layers": 40,
    "num_attention_heads": 40,
    "num_key_value_heads": 10,
    "vocab_size": 100352,
    "max_position_embeddings": 16384,
    "torch_dtype": "bfloat16",
}
# A state-space model: no attention heads, nothing the estimator can describe.
MAMBA = {
    "architectures": ["MambaForCausalLM"],
    "model_type": "mamba",
    "hidden_size": 4096,
    "num_hidden_layers": 64,
    "vocab_size": 65024,
    "state_size": 16,
}


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_model("microsoft/phi-4", PHI4)
        server.add_model("acme/mamba-7b", MAMBA)
        server.add_model("acme/private-13b", PHI4, private_token="hf_private")
        server.add_model("acme/gated-13b", PHI4, gated_token="hf_granted")
        yield server
    clear_memory_cache()


def settings(server: HubServer, tmp_path: Path, **kw: Any) -> HubSettings:
    clear_memory_cache()
    return HubSettings(endpoint=server.url, cache_dir=str(tmp_path / "cache"), **kw)


def spec(model: str, **kw: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "model": model,
        "backend": "vllm",
        "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8},
        "workload": {"isl": 2000, "osl": 500},
    }
    s.update(kw)
    return s


def test_a_model_outside_the_catalog_is_planned_from_its_hub_config(
    hub_server: HubServer, tmp_path: Path
) -> None:
    s = settings(hub_server, tmp_path)
    req = PlanRequest.from_spec(spec("microsoft/phi-4"), dgdr_name="phi", hub=s)
    assert req.modelled and req.arch.family == "phi3" and req.arch.layers == 40
    assert req.arch.params_b == pytest.approx(14.7, rel=0.05)
    result = plan(req)
    assert result.modelled and result.sla.evaluated
    args = result.dgd["spec"]["services"]["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]
    assert "microsoft/phi-4" in args["args"]
    # the client asked the Hub's file API for exactly that file, without a token
    asked = hub_server.requests_for("microsoft/phi-4")
    assert {r.path for r in asked} == {"/microsoft/phi-4/resolve/main/config.json"}
    assert {r.method for r in asked} <= {"HEAD", "GET"}
    assert all(r.authorization is None for r in asked)


def test_cached_in_memory_then_on_disk_and_the_disk_copy_outlives_a_slow_hub(
    hub_server: HubServer, tmp_path: Path
) -> None:
    s = settings(hub_server, tmp_path)
    assert fetch_config("microsoft/phi-4", s)["hidden_size"] == 5120
    before = len(hub_server.requests)
    assert fetch_config("microsoft/phi-4", s)["hidden_size"] == 5120  # memory: no request
    assert len(hub_server.requests) == before
    clear_memory_cache()
    hub_server.slow = 3.0  # the client's HEAD gives up after timeout / 2: the disk copy serves
    started = time.monotonic()
    cfg = fetch_config("microsoft/phi-4", HubSettings(**{**s.__dict__, "timeout": 2.0}))
    assert cfg["hidden_size"] == 5120 and time.monotonic() - started < 2.0
    assert (tmp_path / "cache" / "anonymous" / "models--microsoft--phi-4").is_dir()


def test_memory_cache_is_bounded(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubmod, "MEMORY_ENTRIES", 2)
    s = settings(hub_server, tmp_path)
    for name in ("microsoft/phi-4", "acme/mamba-7b"):
        fetch_config(name, s)
    hub_server.add_model("acme/third", PHI4)
    fetch_config("acme/third", s)
    assert len(hubmod._memory) == 2
    assert all(key[1] != "microsoft/phi-4" for key in hubmod._memory)  # the oldest went


def test_404_fails_naming_the_model_and_the_hubs_answer(
    hub_server: HubServer, tmp_path: Path
) -> None:
    s = settings(hub_server, tmp_path)
    with pytest.raises(ModelNotFoundError) as err:
        fetch_config("acme/no-such-model", s)
    assert err.value.answer.startswith("404") and not err.value.transient
    with pytest.raises(SpecError) as spec_err:
        PlanRequest.from_spec(spec("acme/no-such-model"), hub=s)
    (only,) = spec_err.value.errors
    assert only.path == "spec.model"
    assert "acme/no-such-model" in only.message and "404" in only.message
    assert hub_server.url in only.message


def test_401_without_token_is_refused_and_the_token_opens_it(
    hub_server: HubServer, tmp_path: Path
) -> None:
    s = settings(hub_server, tmp_path)
    for model in ("acme/private-13b", "acme/gated-13b"):
        with pytest.raises(ModelAccessError) as err:
            fetch_config(model, s)
        assert err.value.answer.startswith("401") and not err.value.transient
        assert model in str(err.value) and "hf-token-secret" in str(err.value)
    with_token = HubSettings(**{**s.__dict__, "token": "hf_private"})
    assert fetch_config("acme/private-13b", with_token)["hidden_size"] == 5120
    assert hub_server.requests_for("acme/private-13b")[-1].authorization == "Bearer hf_private"
    # another token's cache never answers for this one: gated stays refused without its token
    clear_memory_cache()
    hub_server.slow = 0
    with pytest.raises(ModelAccessError):
        fetch_config("acme/private-13b", s)
    granted = HubSettings(**{**s.__dict__, "token": "hf_granted"})
    assert fetch_config("acme/gated-13b", granted)["num_hidden_layers"] == 40


def test_a_slow_hub_is_transient_within_the_deadline(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.slow = 5.0
    s = settings(hub_server, tmp_path, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        PlanRequest.from_spec(spec("microsoft/phi-4"), hub=s)
    assert time.monotonic() - started < 3.0
    assert err.value.transient and "microsoft/phi-4" in str(err.value)
    # it crosses a process pool intact
    again = pickle.loads(pickle.dumps(err.value))
    assert type(again) is HubUnavailableError and again.transient and str(again) == str(err.value)
    # slow but within the deadline is fine
    hub_server.slow = 0.3
    fast_enough = settings(hub_server, tmp_path, timeout=5.0)
    assert fetch_config("microsoft/phi-4", fast_enough)["vocab_size"] == 100352


def test_a_server_error_is_transient(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.fail_with = 500
    with pytest.raises(HubUnavailableError):
        fetch_config("microsoft/phi-4", settings(hub_server, tmp_path, timeout=1.0))


def test_an_architecture_the_estimator_cannot_model_gets_the_memory_sized_fallback(
    hub_server: HubServer, tmp_path: Path
) -> None:
    s = settings(hub_server, tmp_path)
    req = PlanRequest.from_spec(spec("acme/mamba-7b", backend="auto"), dgdr_name="m", hub=s)
    assert not req.modelled and "does not describe a transformer" in (req.not_modelled or "")
    assert req.backends == ("vllm",)  # auto means vLLM, as upstream's fallback has it
    result = plan(req)
    assert not result.modelled and not result.sla.evaluated
    (worker,) = result.chosen.workers
    assert (result.chosen.mode, worker.role, worker.tp, worker.batch) == ("agg", "agg", 1, 256)
    assert worker.replicas == 8 and worker.batch == NAIVE_BATCH
    assert any("not performance-modelled" in w for w in result.warnings)
    doc = result.to_json()
    assert doc["modelled"] is False and doc["chosen"]["ttft_ms"] is None
    json.dumps(doc, allow_nan=False)  # plain JSON
    assert result.dgd["spec"]["services"]["VllmDecodeWorker"]["replicas"] == 8
    with pytest.raises(SpecError, match=r"spec\.features\.planner"):
        PlanRequest.from_spec(spec("acme/mamba-7b", features={"planner": {}}), hub=s)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_the_command_line_resolves_the_same_way(hub_server: HubServer, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": hub_server.url, "DGDR_HUB_CACHE": str(tmp_path / "cli-cache")}
    f = tmp_path / "spec.json"
    f.write_text(json.dumps(spec("acme/private-13b")))
    refused = cli("plan", str(f), env=env)
    assert refused.returncode == 2 and "401" in refused.stderr, refused.stderr
    planned = cli("plan", str(f), "--json", env={**env, "HF_TOKEN": "hf_private"})
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["modelled"] is True
    f.write_text(json.dumps(spec("acme/mamba-7b")))
    naive = cli("plan", str(f), env=env)
    assert naive.returncode == 0 and "not performance-modelled" in naive.stdout + naive.stderr
    assert cli("plan", str(f), "--strict", env=env).returncode == 5
    hub_server.slow = 5.0
    f.write_text(json.dumps(spec("microsoft/phi-4")))
    slow = cli("plan", str(f), env={**env, "DGDR_HUB_TIMEOUT": "0.5"})
    assert slow.returncode == 6 and "microsoft/phi-4" in slow.stderr, slow.stderr
