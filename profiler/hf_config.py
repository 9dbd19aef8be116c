"""Read a Hugging Face ``config.json`` into a :class:`ModelArch`.

The catalog in ``data/models.json`` is stored in the same key names, so one parser serves both:
a model the catalog does not know can be planned by pointing at its config (e.g. in the model
cache). Key names differ between families (``num_local_experts`` for Mixtral, ``n_routed_experts``
for DeepSeek, ``num_experts`` for Qwen); the parser accepts each spelling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from profiler.arch import ModelArch
from profiler.errors import ProfilerError


class ConfigError(ProfilerError):
    """A config.json that cannot be read as a transformer the model covers."""

    reason = "InvalidModelConfig"


class UnsupportedArchitectureError(ConfigError):
    """A model the performance model cannot describe, though its size can be estimated.

    ``arch`` is a sizing-only ModelArch (``params_b_override`` holds the estimate, the other
    counts are the config's where it has them): enough for upstream's fallback, a tensor-parallel
    configuration sized by memory, not for performance predictions. ``why`` says what is missing.
    """

    reason = "NotPerformanceModelled"

    def __init__(self, name: str, why: str, arch: ModelArch) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name
        self.why = why
        self.arch = arch

    def __reduce__(self) -> tuple[type[UnsupportedArchitectureError], tuple[str, str, ModelArch]]:
        return (UnsupportedArchitectureError, (self.name, self.why, self.arch))


# Class-name endings of Hugging Face architectures that generate text token by token.
_GENERATIVE = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _first(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    return default


def _int(cfg: Mapping[str, Any], *keys: str, default: int | None = None, where: str) -> int:
    value = _first(cfg, *keys, default=default)
    if value is None:
        raise ConfigError(f"{where}: missing {' / '.join(keys)}")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {keys[0]} must be an integer, got {value!r}") from None
    if out < 0:
        raise ConfigError(f"{where}: {keys[0]} must not be negative, got {out}")
    return out


def quant_from_config(cfg: Mapping[str, Any]) -> str | None:
    """bf16 / fp8 / fp4 from ``quantization_config``, or None when the config has none."""
    q = cfg.get("quantization_config")
    if not isinstance(q, Mapping):
        text = cfg.get("text_config")
        return quant_from_config(text) if isinstance(text, Mapping) else None
    method = str(q.get("quant_method", "")).lower()
    algo = str(q.get("quant_algo", "") or q.get("format", "")).lower()
    if "fp4" in method or "fp4" in algo or method == "mxfp4":
        return "fp4"
    if "fp8" in method or "fp8" in algo:
        return "fp8"
    bits = q.get("bits") or q.get("w_bit") or q.get("weight_bits")
    groups = q.get("config_groups")
    if isinstance(groups, Mapping):
        for group in groups.values():
            weights = group.get("weights") if isinstance(group, Mapping) else None
            if isinstance(weights, Mapping):
                bits = weights.get("num_bits", bits)
                if weights.get("type") == "float" and bits == 8:
                    return "fp8"
    if bits is not None:
        try:
            nbits = int(bits)
        except (TypeError, ValueError):
            return None
        if nbits <= 4:
            return "fp4"
        if nbits == 8:
            return "fp8"
    return None


def arch_from_config(cfg: Mapping[str, Any], name: str, *, where: str = "config.json") -> ModelArch:
    """Build a ModelArch from config keys; ``where`` names the source in error messages."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a JSON object")
    outer = cfg
    text = cfg.get("text_config")
    if isinstance(text, Mapping) and "hidden_size" in text:
        cfg = {**{k: v for k, v in outer.items() if k != "text_config"}, **text}
    family = str(_first(cfg, "model_type", default="") or _first(outer, "model_type", default=""))
    hidden = _int(cfg, "hidden_size", "d_model", "n_embd", where=where)
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers", where=where)
    heads = _int(cfg, "num_attention_heads", "n_head", where=where)
    kv_heads = _int(cfg, "num_key_value_heads", "num_kv_heads", default=heads, where=where)
    head_dim = _int(cfg, "head_dim", default=hidden // max(heads, 1), where=where)
    vocab = _int(cfg, "vocab_size", where=where)
    if min(hidden, layers, heads, vocab) <= 0:
        raise ConfigError(f"{where}: hidden_size, num_hidden_layers, heads and vocab must be > 0")

    experts = _int(
        cfg, "n_routed_experts", "num_local_experts", "num_experts", default=0, where=where
    )
    topk = _int(cfg, "num_experts_per_tok", "experts_per_token", "moe_topk", default=0, where=where)
    inter = _int(cfg, "intermediate_size", "ffn_hidden_size", default=4 * hidden, where=where)
    moe_inter = 0
    shared = 0
    shared_inter = 0
    dense_layers = 0
    if experts > 0:
        if topk <= 0:
            raise ConfigError(f"{where}: MoE config needs num_experts_per_tok > 0")
        moe_inter = _int(
            cfg, "moe_intermediate_size", "expert_intermediate_size", default=inter, where=where
        )
        shared_inter = _int(cfg, "shared_expert_intermediate_size", default=0, where=where)
        shared = _int(
            cfg,
            "n_shared_experts",
            "num_shared_experts",
            default=1 if shared_inter else 0,
            where=where,
        )
        if shared and not shared_inter:
            shared_inter = moe_inter
        dense_layers = _int(cfg, "first_k_dense_replace", default=0, where=where)
        mlp_only = cfg.get("mlp_only_layers")
        if isinstance(mlp_only, list) and not dense_layers:
            dense_layers = len(mlp_only)

    mla = cfg.get("kv_lora_rank") is not None
    layer_types = cfg.get("layer_types")
    full_attn = 0
    sliding_layers = 0
    linear_state = 0
    linear_params = 0.0
    if isinstance(layer_types, list) and layer_types:
        kinds = [str(t) for t in layer_types[:layers]]
        n_linear = sum(1 for t in kinds if "linear" in t)
        sliding_layers = sum(1 for t in kinds if "sliding" in t)
        if n_linear:
            full_attn = layers - n_linear
    elif cfg.get("full_attention_interval"):
        interval = _int(cfg, "full_attention_interval", where=where)
        full_attn = layers // max(interval, 1)
    if full_attn:
        k_heads = _int(cfg, "linear_num_key_heads", default=heads, where=where)
        v_heads = _int(cfg, "linear_num_value_heads", default=heads, where=where)
        k_dim = _int(cfg, "linear_key_head_dim", default=head_dim, where=where)
        v_dim = _int(cfg, "linear_value_head_dim", default=head_dim, where=where)
        n_linear = layers - full_attn
        linear_state = n_linear * v_heads * k_dim * v_dim
        linear_params = float(
            hidden * (2 * k_heads * k_dim + 2 * v_heads * v_dim + 2 * v_heads)
            + v_heads * v_dim * hidden
        )
    window = _int(cfg, "sliding_window", default=0, where=where) if sliding_layers else 0

    quant = quant_from_config(outer) or str(cfg.get("default_quant", "bf16"))
    return ModelArch(
        name=name,
        family=family or "unknown",
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=max(kv_heads, 1),
        head_dim=head_dim,
        intermediate=inter,
        vocab=vocab,
        num_experts=experts,
        experts_per_token=topk if experts else 0,
        moe_intermediate=moe_inter,
        shared_experts=shared,
        shared_intermediate=shared_inter,
        dense_layers=dense_layers,
        attention="mla" if mla else "gqa",
        q_lora_rank=_int(cfg, "q_lora_rank", default=0, where=where) if mla else 0,
        kv_lora_rank=_int(cfg, "kv_lora_rank", where=where) if mla else 0,
        qk_rope_dim=_int(cfg, "qk_rope_head_dim", default=64, where=where) if mla else 0,
        qk_nope_dim=_int(cfg, "qk_nope_head_dim", default=128, where=where) if mla else 0,
        v_head_dim=_int(cfg, "v_head_dim", default=128, where=where) if mla else 0,
        attn_output_gate=bool(
            cfg.get("attn_output_gate", family.startswith(("qwen3_next", "qwen3_5")))
        ),
        full_attn_layers=full_attn,
        linear_state_elems=linear_state,
        linear_params_per_layer=linear_params,
        sliding_window=window,
        sliding_layers=sliding_layers if window else 0,
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_context=_int(cfg, "max_position_embeddings", default=131072, where=where),
        default_quant=quant if quant in ("bf16", "fp8", "fp4") else "bf16",
        params_b_override=float(cfg.get("params_b_override", 0.0) or 0.0),
    )


def unsupported_reason(cfg: Mapping[str, Any]) -> str | None:
    """Why the performance model cannot describe this config even if it parses: an
    encoder-decoder, or architectures none of which is a decoder-only generator."""
    if cfg.get("is_encoder_decoder") is True:
        return f"an encoder-decoder model ({cfg.get('model_type', 'unknown type')})"
    archs = cfg.get("architectures")
    if (
        isinstance(archs, list)
        and archs
        and all(isinstance(a, str) for a in archs)
        and not any(a.endswith(_GENERATIVE) for a in archs)
    ):
        return f"architecture {', '.join(archs)} is not a decoder-only text generator"
    return None


def sizing_arch(cfg: Mapping[str, Any], name: str) -> ModelArch | None:
    """A sizing-only ModelArch from whatever dimensions the config has (any architecture):
    parameters ~ layers x (4 h^2 + 3 h x FFN x experts) + 2 x vocab x h, or the config's own
    ``num_parameters``. None when it lacks even the hidden size, layer count and vocabulary."""
    text = cfg.get("text_config")
    if isinstance(text, Mapping):
        cfg = {**{k: v for k, v in cfg.items() if k != "text_config"}, **text}

    def num(*keys: str) -> int | None:
        value = _first(cfg, *keys)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return None
        return int(value)

    hidden = num("hidden_size", "d_model", "n_embd", "dim", "model_dim")
    layers = num("num_hidden_layers", "n_layer", "num_layers", "n_layers")
    vocab = num("vocab_size", "padded_vocab_size")
    if hidden is None or layers is None or vocab is None:
        return None
    inter = num("intermediate_size", "ffn_hidden_size", "d_ff", "ffn_dim") or 4 * hidden
    experts = num("n_routed_experts", "num_local_experts", "num_experts") or 1
    moe_inter = num("moe_intermediate_size") or inter
    ffn = 3.0 * hidden * (moe_inter * experts if experts > 1 else inter)
    params = layers * (4.0 * hidden * hidden + ffn) + 2.0 * vocab * hidden
    explicit = num("num_parameters", "n_params")
    heads = num("num_attention_heads", "n_head", "num_heads") or 1
    quant = quant_from_config(cfg) or "bf16"
    return ModelArch(
        name=name,
        family=str(cfg.get("model_type") or "unknown"),
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=num("num_key_value_heads", "num_kv_heads") or heads,
        head_dim=max(hidden // heads, 1),
        intermediate=inter,
        vocab=vocab,
        max_context=num("max_position_embeddings", "n_positions", "seq_length") or 4096,
        default_quant=quant,
        params_b_override=(explicit or params) / 1e9,
    )


def arch_or_unsupported(cfg: Mapping[str, Any], name: str, *, where: str) -> ModelArch:
    """``arch_from_config``, or ``UnsupportedArchitectureError`` (with a sizing-only arch) for a
    model the performance model cannot describe; ``ConfigError`` when it cannot even be sized."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a JSON object")
    why = unsupported_reason(cfg)
    if why is None:
        try:
            return arch_from_config(cfg, name, where=where)
        except ConfigError as exc:
            why = f"its config.json does not describe a transformer the estimator covers ({exc})"
    sizing = sizing_arch(cfg, name)
    if sizing is None:
        raise ConfigError(
            f"{where}: {why}, and it has no hidden size, layer count and vocabulary size to "
            "size it by"
        )
    raise UnsupportedArchitectureError(name, why, sizing)


def load_config(path: str, name: str | None = None) -> ModelArch:
    """Parse ``path`` (a config.json, or a model directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"model config {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model config {str(p)!r} is not readable JSON: {exc}") from None
    return arch_or_unsupported(raw, name or p.parent.name or p.stem, where=str(p))
