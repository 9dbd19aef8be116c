"""A model directory the Dynamo frontend, the mocker and aiperf can use without the Hugging Face
Hub: the model's ``config.json`` and a small tokenizer built locally.

The tokenizer is a ``WordLevel`` vocabulary ``w0 ... w31999`` with a ``WordPiece`` decoder, so
every id below ``vocab_size`` decodes to text (the mocker emits random ids; an id the tokenizer
cannot decode gives an empty delta, which aiperf counts as an error). ``config.json`` therefore
says ``vocab_size`` 32000 whatever the real model has; its other fields (layers, heads, head
size: what the mocker sizes its KV cache with) are the model's.

Where the model's ``config.json`` comes from, first found wins: a local directory the DGD names
(``--model-path``/``--model`` that exists, e.g. a model cache),
``<models_dir>/<model>/config.json``, the repository's model catalog
(``profiler/data/models.json``, read as data: Hugging Face key names),
else a small Llama-like architecture (and the directory says so in ``SOURCE``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

VOCAB_SIZE = 32000
REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "profiler" / "data" / "models.json"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)
GENERIC = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 16,
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "intermediate_size": 8192,
    "max_position_embeddings": 32768,
}
FORMAT = "dgdrunner-modeldir-2"  # bump when the files written here change


def tokenizer_json() -> dict[str, Any]:
    """``tokenizer.json`` (the ``tokenizers`` library's format) of the WordLevel vocabulary."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
        "model": {
            "type": "WordLevel",
            "vocab": {f"w{i}": i for i in range(VOCAB_SIZE)},
            "unk_token": "w0",
        },
    }


def tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 131072,
        # No special-token strings: "w1" as eos_token would be matched inside "w1744" by
        # transformers (added tokens are split out of raw text first), so aiperf would count
        # two tokens per word. The ids are in config.json / generation_config.json.
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }


def catalog_config(model: str, catalog: Path = CATALOG) -> dict[str, Any] | None:
    """The catalog's config.json fields of ``model`` (a Hugging Face id or a catalog name)."""
    try:
        models = json.loads(catalog.read_text())["models"]
    except (OSError, ValueError, KeyError):
        return None
    short = model.rsplit("/", 1)[-1].lower()
    for key, entry in models.items():
        names = {key.lower(), *(a.lower() for a in entry.get("aliases") or [])}
        source = str(entry.get("source") or "")
        if short in names or source.endswith(f" {model}"):
            cfg = entry.get("config")
            return dict(cfg) if isinstance(cfg, dict) else None
    return None


def resolve_config(
    model: str, local: str | None, models_dir: Path | None
) -> tuple[dict[str, Any], str]:
    """(config.json fields, where they came from)."""
    candidates: list[Path] = []
    if local:
        candidates.append(Path(local) / "config.json")
    if models_dir is not None:
        candidates.append(models_dir / model / "config.json")
    for path in candidates:
        try:
            return dict(json.loads(path.read_text())), str(path)
        except (OSError, ValueError):
            continue
    cfg = catalog_config(model)
    if cfg is not None:
        return cfg, f"{CATALOG.relative_to(REPO)} ({model})"
    return dict(GENERIC), "generic Llama-like architecture (model not found locally or in catalog)"


def ensure_model_dir(
    root: Path, model: str, *, local: str | None = None, models_dir: Path | None = None
) -> Path:
    """``root/<hash>/``: config.json + tokenizer for ``model``; built once, reused after."""
    cfg, source = resolve_config(model, local, models_dir)
    cfg = {k: v for k, v in cfg.items() if k != "default_quant"}
    cfg.update(
        {
            "_name_or_path": model,
            "vocab_size": VOCAB_SIZE,
            "bos_token_id": None,
            "eos_token_id": 1,
        }
    )
    cfg.setdefault("architectures", GENERIC["architectures"])
    cfg.setdefault("torch_dtype", "bfloat16")
    files = {
        "config.json": cfg,
        "tokenizer.json": tokenizer_json(),
        "tokenizer_config.json": tokenizer_config(),
        "generation_config.json": {"eos_token_id": 1},
    }
    digest = hashlib.sha256(json.dumps([FORMAT, model, cfg], sort_keys=True).encode()).hexdigest()[
        :16
    ]
    out = root / digest
    if (out / "SOURCE").is_file():
        return out
    tmp = root / f".{digest}.{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (tmp / name).write_text(json.dumps(body, indent=None if name == "tokenizer.json" else 1))
    (tmp / "SOURCE").write_text(
        f"model {model}\nconfig.json from {source} (vocab_size set to {VOCAB_SIZE})\n"
        "tokenizer: WordLevel w0..w31999, WordPiece decoder (built locally, no Hub)\n"
    )
    try:
        tmp.rename(out)
    except OSError:  # another process built it first
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return out
