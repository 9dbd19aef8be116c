"""Model catalog, id matching, precision and the Hugging Face config.json parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from profiler.errors import ProfilerError
from profiler.hf_config import ConfigError, load_config
from profiler.models import (
    UnknownModelError,
    catalog_names,
    normalize_model_id,
    quant_for,
    resolve_model,
)

# Published totals (billions) the parameter formula must reproduce.
OFFICIAL = {
    "meta-llama/Llama-3.1-8B-Instruct": (8.03, 8.03),
    "meta-llama/Llama-3.3-70B-Instruct": (70.6, 70.6),
    "meta-llama/Llama-3.1-405B-Instruct": (405.9, 405.9),
    "Qwen/Qwen3-0.6B": (0.6, 0.6),
    "Qwen/Qwen3-32B": (32.8, 32.8),
    "Qwen/Qwen3-30B-A3B": (30.5, 3.3),
    "Qwen/Qwen3-235B-A22B": (235.0, 22.0),
    "Qwen/Qwen2.5-72B-Instruct": (72.7, 72.7),
    "deepseek-ai/DeepSeek-R1": (671.0, 37.0),
    "moonshotai/Kimi-K2-Instruct": (1030.0, 32.0),
    "openai/gpt-oss-120b": (116.8, 5.7),
    "openai/gpt-oss-20b": (20.9, 4.2),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (46.7, 12.9),
    "MiniMaxAI/MiniMax-M2.5": (230.0, 10.5),
    "zai-org/GLM-4.5": (355.0, 33.0),
    "zai-org/GLM-5": (744.0, 40.0),
    "Qwen/Qwen3.5-397B-A17B": (397.0, 17.0),
}


@pytest.mark.parametrize(("model", "sizes"), sorted(OFFICIAL.items()))
def test_parameter_counts_match_published_totals(model: str, sizes: tuple[float, float]) -> None:
    arch = resolve_model(model)
    total, active = sizes
    assert arch.params_b == pytest.approx(total, rel=0.03)
    assert arch.active_params_b == pytest.approx(active, rel=0.1)
    assert arch.is_moe == (total != active)


def test_every_catalog_entry_parses() -> None:
    names = catalog_names()
    assert len(names) >= 30
    for name in names:
        arch = resolve_model(name)
        assert arch.layers > 0 and arch.hidden > 0 and arch.kv_elems_per_token > 0
        assert arch.default_quant in ("bf16", "fp8", "fp4")


def test_calibration_models_are_known() -> None:
    for model in (
        "deepseek-ai/DeepSeek-V3",
        "nvidia/DeepSeek-R1-NVFP4",
        "nvidia/DeepSeek-V3.1-NVFP4",
        "nvidia/Llama-3.1-8B-Instruct-FP8",
        "nvidia/Qwen3-32B-NVFP4",
        "moonshotai/Kimi-K2.5",
    ):
        resolve_model(model)


def test_mla_keeps_the_compressed_latent() -> None:
    ds = resolve_model("deepseek-ai/DeepSeek-V3")
    assert ds.attention == "mla"
    assert ds.kv_elems_per_token == (512 + 64) * 61  # 576 latent elements per layer


def test_id_matching_ignores_org_and_suffixes() -> None:
    assert normalize_model_id("meta-llama/Meta-Llama-3.1-8B-Instruct-FP8") == "llama-3.1-8b"
    assert resolve_model("Qwen/Qwen3-235B-A22B-FP8").name == "qwen3-235b-a22b"
    assert resolve_model("nvidia/DeepSeek-R1-NVFP4").name == "deepseek-v3"
    assert resolve_model("moonshotai/Kimi-K2-Instruct").name == "kimi-k2"


@pytest.mark.parametrize(
    ("model", "quant"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "bf16"),
        ("nvidia/Llama-3.1-8B-Instruct-FP8", "fp8"),
        ("nvidia/DeepSeek-R1-NVFP4", "fp4"),
        ("deepseek-ai/DeepSeek-R1", "fp8"),  # native FP8 checkpoint
        ("openai/gpt-oss-120b", "fp4"),  # native MXFP4 experts
        ("Qwen/Qwen2.5-72B-Instruct-AWQ", "fp4"),
        ("moonshotai/Kimi-K2.5", "fp4"),
    ],
)
def test_quant_from_name_or_model(model: str, quant: str) -> None:
    assert quant_for(model, resolve_model(model)) == quant


def test_unknown_model_says_how_to_fix() -> None:
    with pytest.raises(UnknownModelError) as err:
        resolve_model("acme/TotallyNew-13B")
    msg = str(err.value)
    assert "acme/TotallyNew-13B" in msg and "config.json" in msg
    assert isinstance(err.value, ProfilerError)
    with pytest.raises(UnknownModelError, match="empty"):
        resolve_model("  ")


def _write(tmp_path: Path, cfg: dict[str, Any], sub: str = "model") -> Path:
    d = tmp_path / sub
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return d


DENSE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def test_parse_dense_config(tmp_path: Path) -> None:
    d = _write(tmp_path, DENSE)
    arch = resolve_model("acme/my-llama", config_path=str(d / "config.json"))
    assert arch.name == "acme/my-llama"
    assert (arch.layers, arch.hidden, arch.heads, arch.kv_heads) == (32, 4096, 32, 8)
    assert arch.head_dim == 128 and not arch.is_moe and arch.attention == "gqa"
    assert arch.params_b == pytest.approx(8.03, rel=0.01)
    assert arch.default_quant == "bf16"
    # A model directory works as the model id itself.
    assert resolve_model(str(d)).params_b == pytest.approx(arch.params_b)


def test_parse_moe_config_with_fp8(tmp_path: Path) -> None:
    cfg = {
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "num_hidden_layers": 48,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "vocab_size": 151936,
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    arch = load_config(str(_write(tmp_path, cfg) / "config.json"), name="custom-moe")
    assert arch.is_moe and arch.num_experts == 128 and arch.experts_per_token == 8
    assert arch.moe_intermediate == 768
    assert arch.params_b == pytest.approx(30.5, rel=0.02)
    assert arch.active_params_b == pytest.approx(3.3, rel=0.05)
    assert arch.default_quant == "fp8"
    assert quant_for("custom-moe", arch) == "fp8"


def test_parse_mla_moe_config(tmp_path: Path) -> None:
    cfg = {
        "model_type": "deepseek_v3",
        "hidden_size": 7168,
        "intermediate_size": 18432,
        "moe_intermediate_size": 2048,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "num_hidden_layers": 61,
        "n_routed_experts": 256,
        "n_shared_experts": 1,
        "num_experts_per_tok": 8,
        "first_k_dense_replace": 3,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128,
        "v_head_dim": 128,
        "vocab_size": 129280,
        "quantization_config": {"quant_method": "fp8"},
    }
    arch = load_config(str(_write(tmp_path, cfg) / "config.json"), name="ds")
    assert arch.attention == "mla" and arch.dense_layers == 3 and arch.shared_experts == 1
    assert arch.params_b == pytest.approx(671, rel=0.02)


@pytest.mark.parametrize(
    ("qcfg", "quant"),
    [
        ({"quant_method": "mxfp4"}, "fp4"),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "fp4"),
        ({"quant_method": "awq", "bits": 4}, "fp4"),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "fp8",
        ),
    ],
)
def test_quantization_config(tmp_path: Path, qcfg: dict[str, Any], quant: str) -> None:
    d = _write(tmp_path, {**DENSE, "quantization_config": qcfg})
    assert load_config(str(d)).default_quant == quant


def test_multimodal_text_config(tmp_path: Path) -> None:
    d = _write(tmp_path, {"model_type": "llava", "text_config": DENSE})
    assert load_config(str(d)).layers == 32


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    broken = {k: v for k, v in DENSE.items() if k != "hidden_size"}
    d = _write(tmp_path, broken)
    with pytest.raises(ConfigError, match="hidden_size"):
        load_config(str(d))
    d2 = _write(tmp_path, {**DENSE, "num_hidden_layers": "many"}, sub="m2")
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        load_config(str(d2))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nowhere" / "config.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_config(str(tmp_path / "bad.json"))
