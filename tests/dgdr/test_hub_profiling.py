"""The Hub in the profiling path, without a cluster: real worker processes fetching from a local
Hub, transient failures retried with backoff by the tracker and never cached by the runner; the
pod helpers behind ImagePullFailed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.dgdr.pods import PodWatch, pull_failures
from controller.dgdr.profile_tracker import ProfileTracker
from controller.dgdr.profiling import ProfileRunner, ProfilingConfig, request_key
from controller.machinery.worker_pool import PoolConfig
from profiler.errors import SpecError
from profiler.hub import HubSettings, HubUnavailableError
from tests.eventually import async_eventually
from tests.hubserver import HubServer
from tests.profiler.test_hub import PHI4

SPEC: dict[str, Any] = {
    "model": "microsoft/phi-4",
    "backend": "vllm",
    "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8},
}


def test_request_key_names_the_token_without_holding_it() -> None:
    anon = HubSettings(endpoint="http://hub")
    a = HubSettings(endpoint="http://hub", token="hf_secret_a")
    b = HubSettings(endpoint="http://hub", token="hf_secret_b")
    keys = {request_key(SPEC, dgdr_name="n", namespace="ns", hub=h) for h in (anon, a, b)}
    assert len(keys) == 3
    assert "hf_secret" not in repr(a) and a.token_id.startswith("token-")
    beta = request_key(SPEC, dgdr_name="n", namespace="ns", dgd_api_version="nvidia.com/v1beta1")
    assert beta != request_key(SPEC, dgdr_name="n", namespace="ns")


@pytest.mark.asyncio
async def test_workers_fetch_from_the_hub_and_transient_failures_are_not_cached(
    tmp_path: Path,
) -> None:
    with HubServer() as hub:
        repo = hub.add_model("microsoft/phi-4", PHI4)
        settings = HubSettings(endpoint=hub.url, cache_dir=str(tmp_path / "c"), timeout=1.0)
        pool = PoolConfig(size=1, task_timeout=60.0, backoff_initial=0.01)
        async with ProfileRunner(ProfilingConfig(pool=pool)) as runner:
            repo.slow = 5.0
            with pytest.raises(HubUnavailableError):
                await runner.run("ns/a", SPEC, dgdr_name="a", namespace="ns", hub=settings)
            repo.slow = 0.0
            outcome = await runner.run("ns/a", SPEC, dgdr_name="a", namespace="ns", hub=settings)
            assert outcome.source == "computed"  # the transient failure was not remembered
            assert outcome.result["request"]["model"] == "microsoft/phi-4"
            missing = {**SPEC, "model": "acme/none"}
            with pytest.raises(SpecError, match="404"):
                await runner.run("ns/b", missing, dgdr_name="b", namespace="ns", hub=settings)
            before = len([r for r in hub.requests if r.path.startswith("/acme/none/")])
            assert before >= 1
            with pytest.raises(SpecError):
                await runner.run("ns/b", missing, dgdr_name="b", namespace="ns", hub=settings)
            after = [r for r in hub.requests if r.path.startswith("/acme/none/")]
            assert len(after) == before  # a 404 is the spec's fault: cached like any refusal


class FlakyRunner:
    """Fails ``failures`` times with a transient Hub error, then returns a result."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []

    async def run(
        self,
        key: str,
        spec: dict[str, Any],
        *,
        dgdr_name: str,
        namespace: str,
        on_progress: Callable[[str, str], Any],
        **options: Any,
    ) -> Any:
        self.calls.append(options)
        if len(self.calls) <= self.failures:
            raise HubUnavailableError("acme/m", "no answer", "model 'acme/m': no answer")
        return {"ok": True}

    def cancel(self, key: str) -> None:
        pass


@pytest.mark.asyncio
async def test_tracker_retries_a_transient_failure_with_backoff_and_says_so() -> None:
    woken: list[str] = []
    runner = FlakyRunner(failures=2)
    tracker = ProfileTracker(runner, woken.append, retry_base=0.01, retry_cap=0.02)
    messages: list[str] = []
    tracker.start("ns/a", 1, {}, name="a", namespace="ns", options={"hub": None})

    def finished() -> bool:  # noting every progress message on the way
        progress = tracker.progress.get("ns/a")
        if progress is not None and progress.message not in messages:
            messages.append(progress.message)
        return tracker.outcome("ns/a", 1) is not None

    await async_eventually(finished, timeout=10, interval=0.001, message="the profile finishes")
    outcome = tracker.outcome("ns/a", 1)
    assert outcome is not None and outcome.error is None and outcome.result == {"ok": True}
    assert len(runner.calls) == 3 and runner.calls[0] == {"hub": None}
    assert any("retrying in" in m and "acme/m" in m for m in messages), messages
    assert "ns/a" in woken
    await tracker.close()


def pod(name: str, dgd: str, reason: str | None, *, init: bool = False) -> dict[str, Any]:
    status = {
        "name": "main",
        "image": "r/vllm-runtime:1",
        "state": {"waiting": {"reason": reason, "message": "not found"}} if reason else {},
    }
    key = "initContainerStatuses" if init else "containerStatuses"
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"nvidia.com/dynamo-graph-deployment-name": dgd},
        },
        "status": {key: [status]},
    }


def test_pull_failures_and_the_dgdr_they_wake() -> None:
    assert pull_failures(pod("p", "d", None)) == []
    assert pull_failures(pod("p", "d", "ContainerCreating")) == []
    (failure,) = pull_failures(pod("p", "d", "ImagePullBackOff", init=True))
    assert failure.describe() == (
        "pod p container main: ImagePullBackOff (r/vllm-runtime:1): not found"
    )
    dgd = {
        "metadata": {"labels": {"dgdr.nvidia.com/name": "mine", "dgdr.nvidia.com/namespace": "ns"}}
    }
    stores = {"ns/d": dgd}
    watch = PodWatch(informers=None, dgds=stores, watch=lambda *_: None)  # type: ignore[arg-type]
    assert watch.dgdr_keys(pod("p", "d", "ErrImagePull")) == ["ns/mine"]
    assert watch.dgdr_keys(pod("p", "d", None)) == []  # healthy pods wake nobody
    assert watch.dgdr_keys(pod("p", "other", "ErrImagePull")) == []  # not a DGD of ours
