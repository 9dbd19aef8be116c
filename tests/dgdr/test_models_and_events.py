"""Through the controller: a model outside the catalog, profiled from a config.json served over the
Hub's file API (the module's local Hub); a token from the namespace's Secret; 404 and 401 failing
with ProfilingCheckFailed; a slow Hub retried with backoff, not failed; an architecture the
estimator cannot model, planned by upstream's fallback with a Warning; ImagePullFailed from the
DGD's pods, whose status the test sets through the API server as a kubelet would."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    ControllerProcess,
    apply_dgdr,
    condition,
    events_for,
    get_json,
    reason_of,
    wait_phase,
)
from tests.eventually import eventually
from tests.hubserver import HubServer
from tests.profiler.test_hub import MAMBA, PHI4

pytestmark = pytest.mark.cluster

H100 = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8, "vramMb": 81559}


def dgdr(model: str, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": model,
        "backend": "vllm",
        "hardware": H100,
        "workload": {"isl": 2000, "osl": 500},
        "autoApply": False,
    }
    spec.update(kw)
    return spec


def describe(kubectl: Kubectl, name: str, namespace: str) -> str:
    return kubectl("describe", "dgdr", name, namespace=namespace).stdout


def test_a_model_only_the_hub_knows_is_profiled_from_its_config_json(
    controller: ControllerProcess, hub: HubServer, kubectl: Kubectl, namespace: str
) -> None:
    hub.add_model("microsoft/phi-4", PHI4)
    apply_dgdr(kubectl, namespace, "phi", **dgdr("microsoft/phi-4"))
    obj = wait_phase(kubectl, "phi", namespace, "Ready")
    prediction = obj["status"]["profilingResults"]["prediction"]
    assert prediction["ttftMs"] > 0 and "slaMet" in prediction
    assert reason_of(obj, "SpecGenerated") in ("SpecGenerated", "SLANotMet")
    assert hub.requests_for("microsoft/phi-4"), "the controller asked the Hub"


def test_404_and_401_fail_naming_the_model_and_the_hubs_answer_and_a_token_opens_it(
    controller: ControllerProcess, hub: HubServer, kubectl: Kubectl, namespace: str
) -> None:
    hub.add_model("acme/private-14b", PHI4, private_token="hf_from_the_secret")
    apply_dgdr(kubectl, namespace, "missing", **dgdr("acme/nowhere-14b"))
    apply_dgdr(kubectl, namespace, "private", **dgdr("acme/private-14b"))
    for name, model, answer in (
        ("missing", "acme/nowhere-14b", "404"),
        ("private", "acme/private-14b", "401"),
    ):
        obj = wait_phase(kubectl, name, namespace, "Failed")
        profiling = condition(obj, "Profiling")
        assert profiling["reason"] == "InitializingFailed"
        assert model in profiling["message"] and answer in profiling["message"]
        assert model in condition(obj, "Succeeded")["message"]
        text = describe(kubectl, name, namespace)
        assert "ProfilingCheckFailed" in text and answer in text, text
        reasons = [r for _, r, _ in events_for(kubectl, name, namespace)]
        assert "ProfilingJobFailed" not in reasons  # that one is for failing to start profiling
    # upstream's convention: Secret hf-token-secret, key HF_TOKEN, in the DGDR's namespace
    token = base64.b64encode(b"hf_from_the_secret").decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token-secret"},
        "data": {"HF_TOKEN": token},
    }
    kubectl("apply", "-f", "-", input=json.dumps(secret), namespace=namespace)
    apply_dgdr(kubectl, namespace, "private-with-token", **dgdr("acme/private-14b"))
    wait_phase(kubectl, "private-with-token", namespace, "Ready")
    assert hub.requests_for("acme/private-14b")[-1].authorization == "Bearer hf_from_the_secret"


def test_a_slow_hub_is_retried_with_backoff_not_failed(
    controller: ControllerProcess, hub: HubServer, kubectl: Kubectl, namespace: str
) -> None:
    repo = hub.add_model("acme/slow-14b", PHI4)
    repo.slow = 30.0  # past the controller's --hub-timeout 5
    apply_dgdr(kubectl, namespace, "slow", **dgdr("acme/slow-14b"))

    def retrying() -> dict[str, Any] | None:
        obj = get_json(kubectl, "dgdr", "slow", namespace)
        prof = next(
            (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Profiling"),
            {},
        )
        return obj if "retrying in" in prof.get("message", "") else None

    obj = eventually(retrying, message="the Profiling condition to say it retries")
    assert obj["status"]["phase"] == "Profiling"
    assert "acme/slow-14b" in condition(obj, "Profiling")["message"]
    repo.slow = 0.0
    wait_phase(kubectl, "slow", namespace, "Ready", timeout=90)


def test_an_architecture_the_estimator_cannot_model_gets_the_fallback_and_a_warning(
    controller: ControllerProcess, hub: HubServer, kubectl: Kubectl, namespace: str
) -> None:
    hub.add_model("acme/mamba-7b", MAMBA)
    apply_dgdr(kubectl, namespace, "mamba", **dgdr("acme/mamba-7b", backend="auto"))
    obj = wait_phase(kubectl, "mamba", namespace, "Ready")
    spec_generated = condition(obj, "SpecGenerated")
    assert (spec_generated["status"], spec_generated["reason"]) == (
        "True",
        "NotPerformanceModelled",
    )
    assert "not performance-modelled" in spec_generated["message"]
    assert reason_of(obj, "Succeeded") == "NotPerformanceModelled"
    prediction = obj["status"]["profilingResults"]["prediction"]
    assert "ttftMs" not in prediction and prediction["backend"] == "vllm"
    assert prediction["workers"][0]["parallel"] == "TP1"
    warnings = [(t, r) for t, r, _ in events_for(kubectl, "mamba", namespace)]
    assert ("Warning", "NotPerformanceModelled") in warnings


def _pod(name: str, dgd: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"nvidia.com/dynamo-graph-deployment-name": dgd}},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": "registry.invalid/vllm-runtime:1.1.0"}],
        },
    }


def _waiting(reason: str) -> dict[str, Any]:
    return {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "main",
                    "image": "registry.invalid/vllm-runtime:1.1.0",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "waiting": {"reason": reason, "message": "failed to resolve reference"}
                    },
                }
            ],
        }
    }


def test_image_pull_failures_of_the_dgds_pods_are_events_once_each(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_dgdr(kubectl, namespace, "pulls", **{**dgdr("Qwen/Qwen3-0.6B"), "autoApply": True})
    obj = wait_phase(kubectl, "pulls", namespace, "Deploying")
    dgd = obj["status"]["dgdName"]
    # no kubelet here: the pod's status is set through the status subresource, as one would
    kubectl("create", "serviceaccount", "default", namespace=namespace, check=False)
    for pod, owner in (("worker-0", dgd), ("unrelated", "other-dgd")):
        kubectl("apply", "-f", "-", input=json.dumps(_pod(pod, owner)), namespace=namespace)
    for pod in ("worker-0", "unrelated"):
        kubectl(
            "patch", "pod", pod, "--subresource=status", "--type=merge",
            "-p", json.dumps(_waiting("ErrImagePull")), namespace=namespace,
        )  # fmt: skip

    def pulls() -> list[tuple[str, str, str]]:
        return [e for e in events_for(kubectl, "pulls", namespace) if e[1] == "ImagePullFailed"]

    (event,) = eventually(pulls, message="an ImagePullFailed event")
    assert event[0] == "Warning"
    assert "worker-0" in event[2] and "ErrImagePull" in event[2] and "main" in event[2]
    assert "ImagePullFailed" in describe(kubectl, "pulls", namespace)
    # the kubelet moves on to ImagePullBackOff for the same image: not a new failure; a DGD
    # status change makes the controller look again (the test waits for that look)
    kubectl(
        "patch", "pod", "worker-0", "--subresource=status", "--type=merge",
        "-p", json.dumps(_waiting("ImagePullBackOff")), namespace=namespace,
    )  # fmt: skip
    kubectl(
        "patch", "dgd", dgd, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"state": "pending"}}), namespace=namespace,
    )  # fmt: skip
    eventually(
        lambda: (
            "pending state"
            in condition(get_json(kubectl, "dgdr", "pulls", namespace), "DeploymentReady")[
                "message"
            ]
        ),
        message="the controller to see the DGD pending",
    )
    assert len(pulls()) == 1
    selector = "involvedObject.name=pulls,reason=ImagePullFailed"
    listed = kubectl(
        "get", "events", "-o", "json", "--field-selector", selector, namespace=namespace
    )
    raw = json.loads(listed.stdout)["items"]
    assert len(raw) == 1 and (raw[0].get("count") or 1) == 1
    assert all("unrelated" not in e[2] for e in pulls())
