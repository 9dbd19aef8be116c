"""What the profiler predicted for the chosen configuration, as the DGDR says it.

``prediction_status`` turns a plan result (``PlanResult.to_json()``, as it comes back from the
worker pool) into ``status.profilingResults.prediction`` (the ``api.Prediction`` shape, checked
against the CRD); the ``describe_*`` functions turn that status block into the sentences of the
SpecGenerated and Succeeded conditions and of the Events. They read the status, not the plan
result, so a later reconcile (another leader, a restart) says exactly what the first one said.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.dgdr import api
from profiler.plan import SlaVerdict, fmt_number, miss_text

JSON = dict[str, Any]


def prediction_status(result: Mapping[str, Any]) -> JSON:
    """``status.profilingResults.prediction`` from a plan result; milliseconds rounded to 0.01,
    tokens/s to 0.1 (see ``api.Prediction`` for why these are numbers)."""
    chosen = result["chosen"]
    verdict = SlaVerdict.from_json(result["sla"])
    worker_keys = ("role", "parallel", "tp", "pp", "ep", "dp", "replicas", "batch", "gpus")
    doc: JSON = {
        "mode": chosen["mode"],
        "backend": chosen["backend"],
        "workers": [{k: w[k] for k in worker_keys} for w in chosen["workers"]],
        "totalGpus": int(chosen["gpus"]),
    }
    if result.get("modelled") is False or chosen.get("ttft_ms") is None:
        # Upstream's fallback: the layout only; nothing predicted, the SLA not checked.
        model = api.Prediction.model_validate(doc)
        layout: JSON = model.model_dump(by_alias=True, exclude_none=True)
        return layout
    osl = int(result["request"]["workload"]["osl"])
    ttft, itl = float(chosen["ttft_ms"]), float(chosen["itl_ms"])
    doc |= {
        "ttftMs": round(ttft, 2),
        "itlMs": round(itl, 2),
        "e2eLatencyMs": round(ttft + osl * itl, 2),
        "tokensPerSecondPerGpu": round(float(chosen["tokens_s_per_gpu"]), 1),
        "tokensPerSecondPerUser": round(float(chosen["tokens_s_per_user"]), 1),
        "slaMet": verdict.met,
        "slaMisses": [
            {
                "target": m.target,
                "targetMs": m.target_ms,
                "predictedMs": round(m.predicted_ms, 2),
                "missedByPercent": m.percent,
            }
            for m in verdict.misses
        ],
    }
    # Through the model, which mirrors the CRD: a shape the API server would refuse fails here.
    model = api.Prediction.model_validate(doc)
    dumped: JSON = model.model_dump(by_alias=True, exclude_none=True)
    return dumped


def describe_layout(prediction: Mapping[str, Any]) -> str:
    """``agg vllm 4x TP2 (batch 32) on 8 GPUs``; disaggregated: ``disagg sglang 2x prefill TP4
    (batch 2) + 1x decode TP8 (batch 64) on 16 GPUs``."""
    mode = str(prediction.get("mode", "?"))
    workers = []
    for w in prediction.get("workers") or []:
        role = "" if w.get("role") == "agg" else f"{w.get('role')} "
        workers.append(f"{w.get('replicas')}x {role}{w.get('parallel')} (batch {w.get('batch')})")
    gpus = prediction.get("totalGpus")
    return f"{mode} {prediction.get('backend', '?')} {' + '.join(workers)} on {gpus} GPUs"


def describe_prediction(prediction: Mapping[str, Any]) -> str:
    """The layout and its predictions: ``agg vllm 4x TP2 (batch 32) on 8 GPUs: predicted TTFT
    180 ms, ITL 12.5 ms, 1450 tok/s/GPU, 80.0 tok/s/user``."""

    def num(key: str) -> str:
        value = prediction.get(key)
        return fmt_number(float(value)) if isinstance(value, int | float) else "?"

    if not modelled(prediction):
        return f"{describe_layout(prediction)}, sized by memory (not performance-modelled)"

    return (
        f"{describe_layout(prediction)}: predicted TTFT {num('ttftMs')} ms, ITL {num('itlMs')} "
        f"ms, {num('tokensPerSecondPerGpu')} tok/s/GPU, {num('tokensPerSecondPerUser')} "
        "tok/s/user"
    )


def describe_misses(prediction: Mapping[str, Any] | None) -> str | None:
    """``SLA not met: TTFT 85.2 ms misses the 1 ms target by 8420 %, ...``, or None when the
    prediction meets the SLA (or there is no prediction)."""
    if not prediction or prediction.get("slaMet") is not False:
        return None
    misses = [
        miss_text(
            str(m.get("target")),
            float(m.get("targetMs", 0)),
            float(m.get("predictedMs", 0)),
            int(m.get("missedByPercent", 0)),
        )
        for m in prediction.get("slaMisses") or []
    ]
    return "SLA not met: " + (", ".join(misses) or "no target named")


def modelled(prediction: Mapping[str, Any] | None) -> bool:
    """Whether the prediction has predictions: false for upstream's fallback, a configuration
    sized by memory for a model the performance model cannot describe."""
    return not prediction or "ttftMs" in prediction


def of_status(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The prediction block of a DGDR status, if profiling has written one."""
    results = status.get("profilingResults")
    prediction = results.get("prediction") if isinstance(results, Mapping) else None
    return prediction if isinstance(prediction, Mapping) else None
