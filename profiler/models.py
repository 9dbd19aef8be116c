"""Model catalog: which architecture a model id names, and at which precision it is served.

A model id is matched loosely (organisation prefix, ``-Instruct``, quantisation and date suffixes
are ignored) because users write the Hugging Face id they deploy, and one architecture ships
under many ids (``nvidia/DeepSeek-R1-NVFP4`` is DeepSeek-V3's shape at FP4).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from profiler.arch import QUANTS, ModelArch
from profiler.errors import ProfilerError
from profiler.hf_config import (
    UnsupportedArchitectureError,
    arch_from_config,
    arch_or_unsupported,
    load_config,
)
from profiler.hub import HubSettings, fetch_config

__all__ = [
    "ModelArch",
    "UnknownModelError",
    "UnsupportedArchitectureError",
    "catalog_names",
    "in_catalog",
    "normalize_model_id",
    "quant_for",
    "resolve_model",
]


class UnknownModelError(ProfilerError):
    """The model is neither in the catalog nor described by a config.json we were given."""

    reason = "UnknownModel"


# Dash-separated parts of an id that do not change the architecture.
_NOISE = {
    "instruct",
    "chat",
    "it",
    "hf",
    "base",
    "thinking",
    "reasoning",
    "dynamic",
    "block",
    "fp8",
    "nvfp4",
    "fp4",
    "mxfp4",
    "int4",
    "int8",
    "awq",
    "gptq",
    "bf16",
    "fp16",
    "w4a16",
    "w8a8",
    "w4afp8",
    "w4a8",
    "quantized",
    "2507",
    "0324",
    "0528",
    "0905",
    "v0.1",
    "v0.2",
    "v0.3",
}


def normalize_model_id(model: str) -> str:
    """``meta-llama/Meta-Llama-3.1-8B-Instruct-FP8`` -> ``llama-3.1-8b``."""
    last = model.strip().rstrip("/").split("/")[-1].lower().replace("_", "-")
    parts = [p for p in last.split("-") if p and p not in _NOISE]
    if parts and parts[0] == "meta":
        parts = parts[1:]
    return "-".join(parts)


@lru_cache(maxsize=1)
def _catalog() -> dict[str, dict[str, Any]]:
    text = (Path(__file__).parent / "data" / "models.json").read_text(encoding="utf-8")
    models: dict[str, dict[str, Any]] = json.loads(text)["models"]
    return models


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _catalog():
        out[normalize_model_id(name)] = name
    for name, entry in _catalog().items():
        for alias in entry.get("aliases", []):
            out.setdefault(normalize_model_id(alias), name)
    return out


def catalog_names() -> tuple[str, ...]:
    """Canonical names of every model in the catalog."""
    return tuple(_catalog())


@lru_cache(maxsize=256)
def _from_catalog(canonical: str) -> ModelArch:
    entry = _catalog()[canonical]
    return arch_from_config(entry["config"], canonical, where=f"catalog entry {canonical}")


def in_catalog(model: str) -> bool:
    """Whether the catalog knows ``model`` (so resolving it needs no file and no network)."""
    return bool(model.strip()) and normalize_model_id(model) in _index()


def resolve_model(
    model: str, *, config_path: str | None = None, hub: HubSettings | None = None
) -> ModelArch:
    """The architecture of ``model``, from the first of: ``config_path``; ``model`` itself when
    it is a local model directory holding a config.json; the catalog; the model's config.json
    on the Hugging Face Hub (or the mirror ``hub.endpoint`` names), when ``hub`` is given.

    Raises ``UnknownModelError`` (no source knows it), ``UnsupportedArchitectureError`` (a
    config the performance model cannot describe; it carries a sizing-only arch), ``ConfigError``
    and the ``profiler.hub`` errors (``HubUnavailableError`` is transient).
    """
    if not model or not model.strip():
        raise UnknownModelError("model is empty: give a Hugging Face id or a config.json")
    if config_path:
        return load_config(config_path, name=model)
    if os.path.isdir(model) and os.path.isfile(os.path.join(model, "config.json")):
        return load_config(model, name=model)
    canonical = _index().get(normalize_model_id(model))
    if canonical is not None:
        return _from_catalog(canonical)
    if hub is None:
        raise UnknownModelError(
            f"unknown model {model!r}: it is not in the profiler's catalog, and no Hugging Face "
            "Hub was asked for its config.json. Give the config.json (a path, e.g. in the model "
            "cache), let the profiler fetch it (set HF_ENDPOINT for a mirror, HF_TOKEN for a "
            f"gated model), or use a known id such as {', '.join(sorted(_catalog())[:6])}, ..."
        )
    config = fetch_config(model, hub)
    return arch_or_unsupported(config, model, where=f"config.json of {model} from {hub.endpoint}")


_Q_PATTERNS = (
    (re.compile(r"(nvfp4|mxfp4|fp4|int4|awq|gptq|w4a16|w4a8|w4afp8)"), "fp4"),
    (re.compile(r"fp8"), "fp8"),
    (re.compile(r"(bf16|fp16)"), "bf16"),
)


def quant_for(model: str, arch: ModelArch) -> str:
    """The weight precision ``model`` is served at: named in the id, else the model's own."""
    last = model.strip().rstrip("/").split("/")[-1].lower()
    for pattern, quant in _Q_PATTERNS:
        if pattern.search(last):
            return quant
    return arch.default_quant if arch.default_quant in QUANTS else "bf16"
