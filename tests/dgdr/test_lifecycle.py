"""The DGDR lifecycle (docs/dgdr-contract.md#phases), on the real control plane.

The controller runs as a process; the test plays the Dynamo operator by writing the DGD's status.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Kubectl
from tests.dgdr.conftest import (
    SMALL,
    ControllerProcess,
    apply_dgdr,
    condition,
    events_for,
    get_json,
    reason_of,
    wait_phase,
)
from tests.eventually import eventually

pytestmark = pytest.mark.cluster


def set_dgd_state(
    kubectl: Kubectl, name: str, namespace: str, state: str, replicas: int = 1
) -> None:
    """What the Dynamo operator would write: the DGD's state and its services' replicas."""
    dgd = get_json(kubectl, "dgd", name, namespace)
    services = {
        s: {"replicas": replicas, "availableReplicas": replicas if state == "successful" else 0}
        for s in dgd["spec"]["services"]
    }
    patch = json.dumps({"status": {"state": state, "services": services}})
    kubectl(
        "patch",
        "dgd",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
        namespace=namespace,
    )


def test_autoapply_false_stops_at_ready(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_dgdr(kubectl, namespace, "ready", **SMALL, autoApply=False)
    obj = wait_phase(kubectl, "ready", namespace, "Ready")
    kubectl("wait", "--for=condition=Succeeded", "dgdr/ready", "--timeout=30s", namespace=namespace)
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert "profilingPhase" not in status
    assert (condition(obj, "Validation")["status"], condition(obj, "Validation")["reason"]) == (
        "True",
        "ValidationPassed",
    )
    assert condition(obj, "Profiling")["reason"] == "ProfilingCompleted"
    spec_generated = condition(obj, "SpecGenerated")
    assert (spec_generated["status"], spec_generated["reason"]) == ("True", "SpecGenerated")
    assert "nvidia.com/generated-dgd-spec" in spec_generated["message"]
    succeeded = condition(obj, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("True", "SpecGenerated")
    for c in status["conditions"]:
        assert c["observedGeneration"] == obj["metadata"]["generation"]

    dgd = status["profilingResults"]["selectedConfig"]
    assert dgd["kind"] == "DynamoGraphDeployment" and dgd["metadata"]["name"] == "ready-dgd"
    assert status["dgdName"] == "ready-dgd"
    # No spec.image: the images derive from upstream's default (--default-image), in plain sight
    images = {s["extraPodSpec"]["mainContainer"]["image"] for s in dgd["spec"]["services"].values()}
    assert images == {"nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.1.0"}
    annotated = yaml.safe_load(obj["metadata"]["annotations"]["nvidia.com/generated-dgd-spec"])
    assert annotated["spec"] == dgd["spec"]
    # No finalizer: deletion never waits for the controller (test_operability).
    assert not obj["metadata"].get("finalizers")
    # autoApply false: nothing is deployed.
    assert kubectl("get", "dgd", "ready-dgd", namespace=namespace, check=False).returncode != 0

    reasons = [r for _, r, _ in events_for(kubectl, "ready", namespace)]
    for expected in ("ProfilingJobCreated", "SpecGenerated"):
        assert expected in reasons
    # A profile done within --progress-after is written once, when done: no Initialized event
    # (the Validation condition says it; test_operability has the slow profile that has one).
    assert "Initialized" not in reasons
    described = kubectl("describe", "dgdr", "ready", namespace=namespace).stdout
    assert "SpecGenerated" in described and "ProfilingJobCreated" in described

    table = kubectl("get", "dgdr", "ready", namespace=namespace).stdout.splitlines()
    header = table[0].split()
    for column in ("MODEL", "BACKEND", "PHASE", "PROFILING", "REASON", "DGD"):
        assert column in header
    assert "Ready" in table[1] and "ready-dgd" in table[1] and "SpecGenerated" in table[1]


def test_deploys_follows_health_and_never_recreates(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_dgdr(kubectl, namespace, "svc", **SMALL)
    obj = wait_phase(kubectl, "svc", namespace, "Deploying")
    dgd = eventually(
        lambda: (
            get_json(kubectl, "dgd", "svc-dgd", namespace)
            if kubectl("get", "dgd", "svc-dgd", namespace=namespace, check=False).returncode == 0
            else None
        ),
        message="DGD created",
    )
    labels = dgd["metadata"]["labels"]
    assert labels["dgdr.nvidia.com/name"] == "svc"
    assert labels["dgdr.nvidia.com/namespace"] == namespace
    assert not dgd["metadata"].get("ownerReferences")
    obj = eventually(
        lambda: (
            o := get_json(kubectl, "dgdr", "svc", namespace),
            reason_of(o, "DeploymentReady") in ("DeploymentCreated", "DeploymentInProgress") and o,
        )[1],
        message="DeploymentReady reason",
    )
    assert condition(obj, "Succeeded")["reason"] == "Deploying"

    set_dgd_state(kubectl, "svc-dgd", namespace, "successful", replicas=2)
    obj = wait_phase(kubectl, "svc", namespace, "Deployed")
    kubectl("wait", "--for=condition=Succeeded", "dgdr/svc", "--timeout=30s", namespace=namespace)
    ready = condition(obj, "DeploymentReady")
    assert (ready["status"], ready["reason"]) == ("True", "DeploymentReady")
    assert (condition(obj, "Succeeded")["status"], condition(obj, "Succeeded")["reason"]) == (
        "True",
        "Deployed",
    )
    n_services = len(dgd["spec"]["services"])
    assert obj["status"]["deploymentInfo"] == {
        "replicas": 2 * n_services,
        "availableReplicas": 2 * n_services,
    }

    set_dgd_state(kubectl, "svc-dgd", namespace, "failed")
    obj = wait_phase(kubectl, "svc", namespace, "Deploying")
    assert condition(obj, "DeploymentReady")["reason"] == "DeploymentDegraded"
    set_dgd_state(kubectl, "svc-dgd", namespace, "successful")
    wait_phase(kubectl, "svc", namespace, "Deployed")

    kubectl("delete", "dgd", "svc-dgd", namespace=namespace)
    obj = wait_phase(kubectl, "svc", namespace, "Failed")
    deleted = condition(obj, "DeploymentReady")
    assert deleted["reason"] == "DeploymentDeleted"
    assert "dgdName" not in obj["status"] and "deploymentInfo" not in obj["status"]
    assert condition(obj, "Succeeded")["reason"] == "DeploymentDeleted"
    reasons = [r for _, r, _ in events_for(kubectl, "svc", namespace)]
    for expected in (
        "DeploymentCreated",
        "DeploymentReady",
        "DeploymentDegraded",
        "DeploymentDeleted",
    ):
        assert expected in reasons
    # Not recreated.
    assert kubectl("get", "dgd", "svc-dgd", namespace=namespace, check=False).returncode != 0


def test_prediction_in_status_and_describe(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """A DGDR whose SLA is met says the chosen layout and its predictions: in
    status.profilingResults.prediction, the SpecGenerated condition and event, kubectl describe."""
    apply_dgdr(kubectl, namespace, "pred", **SMALL, autoApply=False)
    obj = wait_phase(kubectl, "pred", namespace, "Ready")
    prediction = obj["status"]["profilingResults"]["prediction"]
    assert prediction["slaMet"] is True and prediction["slaMisses"] == []
    assert prediction["mode"] in ("agg", "disagg") and prediction["backend"] == "vllm"
    assert 1 <= prediction["totalGpus"] <= 8
    assert 0 < prediction["ttftMs"] <= SMALL["sla"]["ttft"]
    assert 0 < prediction["itlMs"] <= SMALL["sla"]["itl"]
    assert prediction["tokensPerSecondPerGpu"] > 0 and prediction["tokensPerSecondPerUser"] > 0
    for w in prediction["workers"]:
        assert {"role", "parallel", "tp", "pp", "ep", "dp", "replicas", "batch", "gpus"} <= set(w)
    # the batch is the concurrency cap written into the generated DGD
    args = json.dumps(obj["status"]["profilingResults"]["selectedConfig"]["spec"])
    assert f'"--max-num-seqs", "{prediction["workers"][-1]["batch"]}"' in args
    # the README's jsonpath line
    ttft = kubectl(
        "get",
        "dgdr",
        "pred",
        "-o",
        "jsonpath={.status.profilingResults.prediction.ttftMs}",
        namespace=namespace,
    ).stdout
    assert float(ttft) == prediction["ttftMs"]

    spec_generated = condition(obj, "SpecGenerated")
    assert (spec_generated["status"], spec_generated["reason"]) == ("True", "SpecGenerated")
    message = spec_generated["message"]
    assert "nvidia.com/generated-dgd-spec" in message
    assert f"{prediction['mode']} vllm " in message and "predicted TTFT " in message
    assert "tok/s/GPU" in message and "tok/s/user" in message
    assert condition(obj, "Succeeded")["message"] == "Profiling complete, spec available"
    events = events_for(kubectl, "pred", namespace)
    assert ("Normal", "SpecGenerated", message) in events
    assert not any(r == "SLANotMet" for _, r, _ in events)

    described = kubectl("describe", "dgdr", "pred", namespace=namespace).stdout
    assert "Prediction:" in described and "Ttft Ms:" in described
    assert "predicted TTFT" in described  # the condition message and the event


def test_unmeetable_sla_is_generated_with_a_warning(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """ttft 1 ms, itl 1 ms: the closest configuration is generated and deployed, and the DGDR
    says the SLA is not met and by how much, in conditions, events, kubectl get/describe and
    the condition-reason metric."""
    spec = {**SMALL, "sla": {"ttft": 1, "itl": 1}}
    apply_dgdr(kubectl, namespace, "tight", **spec)
    obj = wait_phase(kubectl, "tight", namespace, "Deploying")
    prediction = obj["status"]["profilingResults"]["prediction"]
    assert prediction["slaMet"] is False
    misses = {m["target"]: m for m in prediction["slaMisses"]}
    assert "ttft" in misses and misses["ttft"]["targetMs"] == 1
    assert misses["ttft"]["predictedMs"] == prediction["ttftMs"] > 1
    percent = misses["ttft"]["missedByPercent"]
    assert percent >= 1
    miss_words = f"misses the 1 ms target by {percent} %"
    # the README's jsonpath line for the misses
    lines = kubectl(
        "get",
        "dgdr",
        "tight",
        "-o",
        "jsonpath={range .status.profilingResults.prediction.slaMisses[*]}{.target}: "
        '{.predictedMs} ms vs {.targetMs} ms (+{.missedByPercent} %){"\\n"}{end}',
        namespace=namespace,
    ).stdout.splitlines()
    predicted = misses["ttft"]["predictedMs"]
    shown = str(int(predicted)) if predicted == int(predicted) else str(predicted)  # as Go prints
    assert f"ttft: {shown} ms vs 1 ms (+{percent} %)" in lines

    spec_generated = condition(obj, "SpecGenerated")
    assert (spec_generated["status"], spec_generated["reason"]) == ("True", "SLANotMet")
    assert spec_generated["message"].startswith("SLA not met: TTFT ")
    assert miss_words in spec_generated["message"]
    assert "generated the closest configuration" in spec_generated["message"]
    succeeded = condition(obj, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "Deploying")
    assert miss_words in succeeded["message"]

    warnings = eventually(
        lambda: [
            m
            for t, r, m in events_for(kubectl, "tight", namespace)
            if (t, r) == ("Warning", "SLANotMet")
        ],
        message="Warning event SLANotMet",
    )
    assert miss_words in warnings[0] and "closest configuration" in warnings[0]
    reasons = [r for _, r, _ in events_for(kubectl, "tight", namespace)]
    assert "SpecGenerated" in reasons  # the spec was generated all the same

    # the DGD is created and, once healthy, the DGDR is Deployed and still says the miss
    eventually(
        lambda: (
            kubectl("get", "dgd", "tight-dgd", namespace=namespace, check=False).returncode == 0
        ),
        message="DGD created",
    )
    set_dgd_state(kubectl, "tight-dgd", namespace, "successful")
    obj = wait_phase(kubectl, "tight", namespace, "Deployed")
    kubectl("wait", "--for=condition=Succeeded", "dgdr/tight", "--timeout=30s", namespace=namespace)
    succeeded = condition(obj, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("True", "SLANotMet")
    assert succeeded["message"].startswith("Deployment is healthy; SLA not met: ")

    row = kubectl("get", "dgdr", "tight", namespace=namespace).stdout.splitlines()[1]
    assert "Deployed" in row and "SLANotMet" in row
    wide = kubectl("get", "dgdr", "tight", "-o", "wide", namespace=namespace).stdout
    assert miss_words in wide.splitlines()[1]
    described = kubectl("describe", "dgdr", "tight", namespace=namespace).stdout
    assert "SLANotMet" in described and miss_words in described
    assert re.search(r"Warning\s+SLANotMet\s+.*\s+SLA not met: TTFT ", described), described
    assert re.search(r"Sla Met:\s+false", described) and "Sla Misses:" in described

    def metric() -> bool:
        status, body = controller.get("/metrics")
        want = {"namespace": namespace, "name": "tight", "type": "SpecGenerated"}
        return status == 200 and any(
            sample.labels == {**want, "reason": "SLANotMet"} and sample.value == 1.0
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == "dgdr_status_condition_reason"
        )

    eventually(metric, timeout=30, message="dgdr_status_condition_reason SLANotMet")


def test_autoapply_flip_from_ready_deploys(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_dgdr(kubectl, namespace, "flip", **SMALL, autoApply=False)
    wait_phase(kubectl, "flip", namespace, "Ready")
    kubectl(
        "patch",
        "dgdr",
        "flip",
        "--type=merge",
        "-p",
        '{"spec":{"autoApply":true}}',
        namespace=namespace,
    )
    obj = wait_phase(kubectl, "flip", namespace, "Deploying")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    eventually(
        lambda: kubectl("get", "dgd", "flip-dgd", namespace=namespace, check=False).returncode == 0,
        message="DGD created after the flip",
    )


def test_spec_edit_refused_at_admission_once_profiled(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_dgdr(kubectl, namespace, "frozen", **SMALL, autoApply=False)
    before = wait_phase(kubectl, "frozen", namespace, "Ready")
    res = kubectl(
        "patch",
        "dgdr",
        "frozen",
        "--type=merge",
        "-p",
        '{"spec":{"workload":{"isl":8000}}}',
        namespace=namespace,
        check=False,
    )
    assert res.returncode != 0
    assert "spec" in res.stderr and "Ready" in res.stderr
    after = get_json(kubectl, "dgdr", "frozen", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_spec_edit_admission_cannot_see_is_rejected_by_the_controller(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """An edit inside a free-form object (features.planner) passes the CRD's rule; the
    controller rejects it, keeps observedGeneration, and still follows the DGD's health."""
    spec = {**SMALL, "features": {"planner": {"optimization_target": "throughput"}}}
    apply_dgdr(kubectl, namespace, "frozen2", **spec)
    eventually(
        lambda: (
            kubectl("get", "dgd", "frozen2-dgd", namespace=namespace, check=False).returncode == 0
        ),
        message="DGD created",
    )
    set_dgd_state(kubectl, "frozen2-dgd", namespace, "successful")
    before = wait_phase(kubectl, "frozen2", namespace, "Deployed")
    kubectl(
        "patch",
        "dgdr",
        "frozen2",
        "--type=merge",
        "-p",
        '{"spec":{"features":{"planner":{"optimization_target":"latency"}}}}',
        namespace=namespace,
    )
    eventually(
        lambda: any(
            t == "Warning" and r == "SpecChangeRejected" and "Deployed" in m
            for t, r, m in events_for(kubectl, "frozen2", namespace)
        ),
        message="SpecChangeRejected event",
    )
    after = get_json(kubectl, "dgdr", "frozen2", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["status"]["observedGeneration"] == before["metadata"]["generation"]
    # Still following the DGD it deployed.
    set_dgd_state(kubectl, "frozen2-dgd", namespace, "failed")
    degraded = wait_phase(kubectl, "frozen2", namespace, "Deploying")
    assert reason_of(degraded, "DeploymentReady") == "DeploymentDegraded"
    assert degraded["status"]["observedGeneration"] == before["metadata"]["generation"]


def test_unknown_model_fails_profiling_naming_the_field(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """Not in the catalog: the profiler asks the Hub (the module's local one), which answers
    404; the profiler's failure is upstream's ProfilingCheckFailed."""
    spec = {**SMALL, "model": "acme/no-such-model-13b"}
    apply_dgdr(kubectl, namespace, "bad", **spec)
    obj = wait_phase(kubectl, "bad", namespace, "Failed")
    assert condition(obj, "Validation")["status"] == "True"
    profiling = condition(obj, "Profiling")
    assert (profiling["status"], profiling["reason"]) == ("False", "InitializingFailed")
    assert "spec.model" in profiling["message"] and "404" in profiling["message"]
    succeeded = condition(obj, "Succeeded")
    assert succeeded["reason"] == "InitializingFailed"
    assert succeeded["message"].startswith("Profiling failed: spec.model: ")
    assert ("Warning", "ProfilingCheckFailed") in {
        (t, r) for t, r, _ in events_for(kubectl, "bad", namespace)
    }


def test_thorough_deploys_candidates_labelled_to_the_dgdr_and_fails_when_none_serves(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """Thorough is run, not refused nor run as rapid: each candidate becomes a test DGD (the
    DGDR's image, labels and owner, the profiling Job's tolerations); playing the operator, the
    test fails every one, and the DGDR fails naming each candidate and why (the flow on the
    local DGD runner: tests/serving/test_thorough.py)."""
    tol = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec = {
        **SMALL,
        "searchStrategy": "thorough",
        "image": "registry.example/dynamo/dynamo-planner:9.9.9",
        "overrides": {"profilingJob": {"template": {"spec": {"tolerations": tol}}}},
    }
    apply_dgdr(kubectl, namespace, "slow", **spec)
    uid = get_json(kubectl, "dgdr", "slow", namespace)["metadata"]["uid"]
    seen: set[str] = set()

    def fail_test_dgds() -> bool:
        out = kubectl(
            "get", "dgd", "-l", "dgdr.nvidia.com/sweep", "-o", "json", namespace=namespace
        )
        for dgd in json.loads(out.stdout)["items"]:
            meta = dgd["metadata"]
            if meta["name"] not in seen:
                seen.add(meta["name"])
                assert meta["labels"]["dgdr.nvidia.com/name"] == "slow"
                assert meta["labels"]["dgdr.nvidia.com/namespace"] == namespace
                assert [o["uid"] for o in meta["ownerReferences"]] == [uid]
                for svc in dgd["spec"]["services"].values():
                    assert svc["extraPodSpec"]["tolerations"] == tol
                    assert svc["extraPodSpec"]["mainContainer"]["image"].startswith(
                        "registry.example/dynamo/"
                    )
                set_dgd_state(kubectl, meta["name"], namespace, "failed")
        return phase_of_dgdr() == "Failed"

    def phase_of_dgdr() -> str | None:
        return (get_json(kubectl, "dgdr", "slow", namespace).get("status") or {}).get("phase")

    eventually(fail_test_dgds, timeout=90, interval=0.5, message="every candidate failed")
    obj = get_json(kubectl, "dgdr", "slow", namespace)
    assert len(seen) == 3  # the default candidate budget
    message = condition(obj, "Profiling")["message"]
    assert "no candidate of the thorough sweep could be measured (3 tried)" in message
    assert message.count("failed to start") == 3
    assert condition(obj, "Profiling")["reason"].startswith("Sweeping")
    assert "profilingResults" not in obj["status"]
    reasons = [r for _, r, _ in events_for(kubectl, "slow", namespace)]
    assert reasons.count("ProfilingCandidateSkipped") >= 1
    left = kubectl("get", "dgd", "-l", "dgdr.nvidia.com/sweep", "-o", "name", namespace=namespace)
    assert not left.stdout.strip()


def test_missing_pvc_waits_naming_the_field_then_proceeds_once_created(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """A missing model-cache PVC is not the spec's fault for good: Pending, saying so, until the
    PVC is created (was Failed/JobCreationFailed, and creating the PVC changed nothing)."""
    spec = {**SMALL, "autoApply": False, "modelCache": {"pvcName": "later", "pvcModelPath": "x"}}
    apply_dgdr(kubectl, namespace, "nocache", **spec)
    obj = eventually(
        lambda: (
            o := get_json(kubectl, "dgdr", "nocache", namespace),
            reason_of(o, "Profiling") == "WaitingForModelCache" and o,
        )[1],
        message="waiting for the model cache",
    )
    assert obj["status"]["phase"] == "Pending"
    profiling = condition(obj, "Profiling")
    assert "spec.modelCache.pvcName" in profiling["message"] and "later" in profiling["message"]
    assert ("Warning", "WaitingForModelCache") in [
        (t, r) for t, r, _ in events_for(kubectl, "nocache", namespace)
    ]
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "later"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(pvc), namespace=namespace)
    wait_phase(kubectl, "nocache", namespace, "Ready")


def gpu_node(name: str, product: str, count: int, memory: int) -> str:
    labels = {
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.memory": str(memory),
    }
    return json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    )


def test_gpu_discovery_from_node_labels(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """No spec.hardware at all: SKU, GPUs per node, memory and budget come from the nodes'
    GPU-feature-discovery labels (the type with most GPUs per node wins)."""
    nodes = [
        (f"h200-a-{namespace}", "NVIDIA-H200", 8, 143771),
        (f"h200-b-{namespace}", "NVIDIA-H200", 8, 143771),
        (f"l4-{namespace}", "NVIDIA-L4", 1, 23034),
    ]
    for n in nodes:
        kubectl("apply", "-f", "-", input=gpu_node(*n))
    try:
        apply_dgdr(kubectl, namespace, "disc", model="Qwen/Qwen3-0.6B", autoApply=False)
        obj = wait_phase(kubectl, "disc", namespace, "Ready")
        started = [
            m for _, r, m in events_for(kubectl, "disc", namespace) if r == "ProfilingJobCreated"
        ]
        assert started, events_for(kubectl, "disc", namespace)
        for found in (
            "gpuSku h200_sxm",
            "numGpusPerNode 8",
            "totalGpus 16",
            "vramMb 143771",
            "2 node(s)",
        ):
            assert found in started[0], started[0]
        dgd = obj["status"]["profilingResults"]["selectedConfig"]
        gpus = [
            int(s.get("resources", {}).get("limits", {}).get("gpu", 0))
            for s in dgd["spec"]["services"].values()
        ]
        assert 0 < max(gpus) <= 8
    finally:
        for n in nodes:
            kubectl("delete", "node", n[0], check=False)


def test_no_gpu_nodes_waits_with_guidance_then_proceeds_once_labelled(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """No GPU-labelled node and no spec.hardware: Pending, saying what is missing, until GPU
    feature discovery labels a node (the node watch brings the DGDR back)."""
    apply_dgdr(kubectl, namespace, "nogpu", model="Qwen/Qwen3-0.6B", autoApply=False)
    obj = eventually(
        lambda: (
            o := get_json(kubectl, "dgdr", "nogpu", namespace),
            reason_of(o, "Profiling") == "WaitingForGPUNodes" and o,
        )[1],
        message="waiting for GPU nodes",
    )
    assert obj["status"]["phase"] == "Pending"
    assert "spec.hardware.gpuSku" in condition(obj, "Profiling")["message"]
    node = f"h100-late-{namespace}"
    try:
        kubectl("apply", "-f", "-", input=gpu_node(node, "NVIDIA-H100-80GB-HBM3", 8, 81559))
        obj = wait_phase(kubectl, "nogpu", namespace, "Ready")
        assert obj["spec"].get("hardware") is None  # discovered, not written into the spec
    finally:
        kubectl("delete", "node", node, check=False)


def planner_configmaps(kubectl: Kubectl, namespace: str, dgdr: str) -> list[dict]:
    out = kubectl(
        "get", "configmaps", "-l", f"dgdr.nvidia.com/name={dgdr}", "-o", "json", namespace=namespace
    ).stdout
    return list(json.loads(out)["items"])


def test_delete_leaves_dgd_and_configmaps(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {**SMALL, "features": {"planner": {"optimization_target": "throughput"}}}
    apply_dgdr(kubectl, namespace, "keep", **spec)
    wait_phase(kubectl, "keep", namespace, "Deploying")
    eventually(
        lambda: kubectl("get", "dgd", "keep-dgd", namespace=namespace, check=False).returncode == 0,
        message="DGD created",
    )
    # The DGD created (its planner ConfigMaps created after it, owned by it) before the DGDR goes.
    eventually(
        lambda: (
            reason_of(get_json(kubectl, "dgdr", "keep", namespace), "DeploymentReady")
            in ("DeploymentCreated", "DeploymentInProgress")
        ),
        message="DGD followed",
    )
    cms_before = planner_configmaps(kubectl, namespace, "keep")
    kubectl("delete", "dgdr", "keep", "--timeout=30s", namespace=namespace)
    dgd = get_json(kubectl, "dgd", "keep-dgd", namespace)
    assert dgd["metadata"]["labels"]["dgdr.nvidia.com/name"] == "keep"
    cms_after = planner_configmaps(kubectl, namespace, "keep")
    assert cms_before
    assert [c["metadata"]["name"] for c in cms_after] == [c["metadata"]["name"] for c in cms_before]
    for cm in cms_after:
        assert cm["metadata"]["labels"]["dgdr.nvidia.com/namespace"] == namespace
        # Adopted by the DGD (upstream #8766): they live as long as it does, not as the DGDR.
        owners = cm["metadata"].get("ownerReferences") or []
        assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
            ("DynamoGraphDeployment", "keep-dgd", dgd["metadata"]["uid"])
        ]


def test_existing_dgd_is_adopted(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    existing = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "adopt-dgd"},
        "spec": {"services": {"Frontend": {"componentType": "frontend", "replicas": 1}}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(existing), namespace=namespace)
    apply_dgdr(kubectl, namespace, "adopt", **SMALL)
    obj = eventually(
        lambda: (
            o := get_json(kubectl, "dgdr", "adopt", namespace),
            (o.get("status") or {}).get("phase") == "Deploying"
            and reason_of(o, "DeploymentReady") in ("DeploymentCreated", "DeploymentInProgress")
            and o,
        )[1],
        message="adoption",
    )
    assert obj["status"]["dgdName"] == "adopt-dgd"
    assert any(
        "adopted" in m
        for _, r, m in events_for(kubectl, "adopt", namespace)
        if r == "DeploymentCreated"
    )
    # Adopted as it was: the controller did not overwrite the user's DGD.
    assert get_json(kubectl, "dgd", "adopt-dgd", namespace)["spec"] == existing["spec"]
    set_dgd_state(kubectl, "adopt-dgd", namespace, "successful")
    wait_phase(kubectl, "adopt", namespace, "Deployed")


def test_dgd_rejected_by_api_server_fails(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        **SMALL,
        "overrides": {
            "dgd": {
                "apiVersion": "nvidia.com/v1alpha1",
                "kind": "DynamoGraphDeployment",
                "spec": {"backendFramework": "not-a-backend"},
            }
        },
    }
    apply_dgdr(kubectl, namespace, "rejected", **spec)
    obj = wait_phase(kubectl, "rejected", namespace, "Failed")
    ready = condition(obj, "DeploymentReady")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentRejected")
    assert "backendFramework" in ready["message"]
    assert condition(obj, "Succeeded")["message"].startswith("Deployment failed: ")
    assert ("Warning", "DeploymentCreationFailed") in {
        (t, r) for t, r, _ in events_for(kubectl, "rejected", namespace)
    }


def test_edited_generated_spec_fails_instead_of_retrying(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    apply_dgdr(kubectl, namespace, "edited", **SMALL, autoApply=False)
    wait_phase(kubectl, "edited", namespace, "Ready")
    kubectl(
        "annotate",
        "--overwrite",
        "dgdr",
        "edited",
        "nvidia.com/generated-dgd-spec=just: [a broken",
        namespace=namespace,
    )
    kubectl(
        "patch",
        "dgdr",
        "edited",
        "--type=merge",
        "-p",
        '{"spec":{"autoApply":true}}',
        namespace=namespace,
    )
    obj = wait_phase(kubectl, "edited", namespace, "Failed")
    ready = condition(obj, "DeploymentReady")
    assert ready["reason"] == "DeploymentRejected"
    assert "nvidia.com/generated-dgd-spec" in ready["message"]
    assert kubectl("get", "dgd", "edited-dgd", namespace=namespace, check=False).returncode != 0
