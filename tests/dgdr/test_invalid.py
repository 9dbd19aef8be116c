"""Fifty invalid DGDRs end Failed with a message naming the field; valid ones go on meanwhile.

Each passes the CRD's admission rules (the API server accepts it) but is wrong in a way only the
controller can see: an unknown model, a budget that cannot hold the model, a planner
configuration that cannot work, names too long for the generated services, and so on.

A model the catalog lacks is not refused by validation: the profiler asks the Hub (here the
module's local one, which knows none of them) and the DGDR fails in profiling, naming the
field, the model and the Hub's answer (404), with upstream's ProfilingCheckFailed event.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from tests.conftest import Kubectl
from tests.dgdr.conftest import SMALL, ControllerProcess, condition, wait_phase
from tests.eventually import eventually

pytestmark = pytest.mark.cluster

H100 = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8}

KINDS: list[tuple[dict, str]] = [
    ({"model": "acme/no-such-model-7b", "hardware": H100}, "spec.model"),
    (
        {
            "model": "meta-llama/Llama-3.1-405B-Instruct",
            "hardware": {"gpuSku": "l4", "numGpusPerNode": 1, "totalGpus": 1},
        },
        "spec.hardware",
    ),
    (
        {
            "model": "Qwen/Qwen3-32B",
            "hardware": {"gpuSku": "h100_sxm", "numGpusPerNode": 1, "totalGpus": 1, "vramMb": 1000},
        },
        "spec.hardware",
    ),
    (
        {
            "model": "Qwen/Qwen3-0.6B",
            "hardware": H100,
            "workload": {"isl": 10_000_000, "osl": 1000},
        },
        "spec.hardware.totalGpus",
    ),
    (
        {
            "model": "Qwen/Qwen3-0.6B",
            "hardware": H100,
            "overrides": {
                "dgd": {
                    "apiVersion": "nvidia.com/v1alpha1",
                    "kind": "DynamoGraphDeployment",
                    "metadata": {"name": "n" * 60},
                }
            },
        },
        "spec.overrides.dgd.metadata.name",
    ),
    (
        {
            "model": "Qwen/Qwen3-0.6B",
            "hardware": H100,
            "features": {
                "planner": {"enable_throughput_scaling": True, "optimization_target": "sla"}
            },
        },
        "spec.features.planner",
    ),
    (
        {
            "model": "Qwen/Qwen3-0.6B",
            "hardware": H100,
            "features": {
                "mocker": {"enabled": True},
                "planner": {"pre_deployment_sweeping_mode": "none"},
            },
        },
        "spec.features.mocker",
    ),
    (
        {"model": "Qwen/Qwen3-0.6B", "hardware": H100, "features": {"planner": {"mode": "bogus"}}},
        "spec.features.planner.mode",
    ),
    (
        {
            "model": "Qwen/Qwen3-0.6B",
            "hardware": H100,
            "overrides": {
                "dgd": {
                    "apiVersion": "nvidia.com/v1alpha1",
                    "kind": "DynamoGraphDeployment",
                    "spec": {"services": [1, 2]},
                }
            },
        },
        "spec.overrides.dgd.spec.services",
    ),
    (
        {"model": "Qwen/Qwen3-0.6B", "hardware": H100, "modelCache": {"pvcModelPath": "hub/x"}},
        "spec.modelCache.pvcName",
    ),
]


def generated(n: int, seed: int = 7) -> list[tuple[dict, str]]:
    """Unknown models and budgets too small for big models, drawn reproducibly."""
    rnd = random.Random(seed)
    big = [
        "meta-llama/Llama-3.1-405B-Instruct",
        "deepseek-ai/DeepSeek-R1",
        "Qwen/Qwen3-235B-A22B",
        "moonshotai/Kimi-K2-Instruct",
    ]
    small_skus = [("l4", 1), ("t4", 1), ("a30", 1), ("l40s", 1), ("a100_pcie", 1)]
    out: list[tuple[dict, str]] = []
    for i in range(n):
        if i % 2:
            org = rnd.choice(["acme", "nobody", "example", "x-labs"])
            out.append(
                (
                    {
                        "model": f"{org}/made-up-{rnd.randint(1, 10**6)}-{rnd.choice('bmk')}",
                        "hardware": H100,
                    },
                    "spec.model",
                )
            )
        else:
            sku, per = rnd.choice(small_skus)
            out.append(
                (
                    {
                        "model": rnd.choice(big),
                        "hardware": {"gpuSku": sku, "numGpusPerNode": per, "totalGpus": per},
                    },
                    "spec.hardware",
                )
            )
    return out


def test_fifty_invalid_fail_naming_the_field_while_valid_ones_proceed(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    cases = KINDS + generated(50 - len(KINDS))
    assert len(cases) == 50
    docs = []
    for i, (spec, _) in enumerate(cases):
        docs.append(
            {
                "apiVersion": "nvidia.com/v1beta1",
                "kind": "DynamoGraphDeploymentRequest",
                "metadata": {"name": f"bad-{i}"},
                "spec": spec,
            }
        )
        if i % 10 == 0:
            docs.append(
                {
                    "apiVersion": "nvidia.com/v1beta1",
                    "kind": "DynamoGraphDeploymentRequest",
                    "metadata": {"name": f"good-{i}"},
                    "spec": {**SMALL, "autoApply": False},
                }
            )
    kubectl(
        "apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs), namespace=namespace
    )

    def phases() -> dict[str, dict]:
        items = json.loads(kubectl("get", "dgdr", "-o", "json", namespace=namespace).stdout)
        return {o["metadata"]["name"]: o for o in items["items"]}

    def settled() -> dict[str, dict] | None:
        objs = phases()
        done = all(
            (o.get("status") or {}).get("phase") in ("Failed", "Ready") for o in objs.values()
        )
        return objs if done and len(objs) == len(docs) else None

    objs = eventually(settled, timeout=180, interval=1, message="every DGDR settled")
    for i, (spec, field) in enumerate(cases):
        obj = objs[f"bad-{i}"]
        assert obj["status"]["phase"] == "Failed", (i, obj["status"])
        if field == "spec.model":
            # validation passed; the profiler asked the Hub, which has no such model
            profiling = condition(obj, "Profiling")
            assert (profiling["status"], profiling["reason"]) == ("False", "InitializingFailed")
            assert field in profiling["message"] and spec["model"] in profiling["message"]
            assert "404" in profiling["message"], profiling["message"]
        else:
            validation = condition(obj, "Validation")
            assert (validation["status"], validation["reason"]) == ("False", "ValidationFailed")
            assert field in validation["message"], (i, field, validation["message"])
        assert re.search(r"spec\.[a-zA-Z]", condition(obj, "Succeeded")["message"])
    for name, obj in objs.items():
        if name.startswith("good-"):
            assert obj["status"]["phase"] == "Ready", (name, obj["status"])


def test_sla_pairing_is_decided_as_the_profiler_decides_it(
    controller: ControllerProcess, kubectl: Kubectl, namespace: str
) -> None:
    """Only itl: planned for ttft 2000 ms (upstream's default) and that itl. ttft explicitly
    null: admitted by the API server (to CEL a null field is a missing one), then Failed by the
    controller naming the field, as ``python -m profiler plan`` refuses it."""
    small = {k: v for k, v in SMALL.items() if k != "sla"}
    docs = {
        "only-itl": {**small, "sla": {"itl": 40}, "autoApply": False},
        "null-ttft": {**small, "sla": {"ttft": None, "itl": 40}, "autoApply": False},
    }
    for name, spec in docs.items():
        body = {
            "apiVersion": "nvidia.com/v1beta1",
            "kind": "DynamoGraphDeploymentRequest",
            "metadata": {"name": name},
            "spec": spec,
        }
        # create, not apply: client-side apply would drop the null before the server sees it
        kubectl("create", "-f", "-", input=json.dumps(body), namespace=namespace)
    ready = wait_phase(kubectl, "only-itl", namespace, "Ready")
    assert ready["spec"]["sla"] == {"itl": 40}
    assert ready["status"]["profilingResults"]["selectedConfig"]["kind"] == "DynamoGraphDeployment"
    failed = wait_phase(kubectl, "null-ttft", namespace, "Failed")
    validation = condition(failed, "Validation")
    assert (validation["status"], validation["reason"]) == ("False", "ValidationFailed")
    assert "spec.sla.ttft: must not be null" in validation["message"], validation["message"]
