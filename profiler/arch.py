"""The shape of a transformer as the performance model needs it, and the sizes derived from it.

Kept apart from the catalog (``models.py``) and the config parser (``hf_config.py``) so both can
build one without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

QUANTS = ("bf16", "fp8", "fp4")

#: Bytes per weight element, including the block scales of the quantised formats.
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.03, "fp4": 0.5625, "int4": 0.5625}


@dataclass(frozen=True)
class ModelArch:
    """Architecture of one model; counts are per model (not per GPU)."""

    name: str
    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense FFN width (dense models and the dense layers of MoE models)
    vocab: int
    num_experts: int = 0  # 0 = dense
    experts_per_token: int = 0
    moe_intermediate: int = 0
    shared_experts: int = 0  # shared experts of width ``shared_intermediate`` on MoE layers
    shared_intermediate: int = 0
    dense_layers: int = 0  # leading dense layers of an MoE model (DeepSeek first_k_dense)
    attention: str = "gqa"  # "gqa" | "mla"
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_dim: int = 0
    qk_nope_dim: int = 0
    v_head_dim: int = 0
    attn_output_gate: bool = False
    full_attn_layers: int = 0  # 0 = every layer has softmax attention
    linear_state_elems: int = 0  # per sequence, all linear-attention layers together
    linear_params_per_layer: float = 0.0  # projections of one linear-attention layer
    sliding_window: int = 0
    sliding_layers: int = 0
    tied_embeddings: bool = False
    max_context: int = 131072
    default_quant: str = "bf16"
    params_b_override: float = 0.0  # official total when the formula misses parts (vision tower)

    # ---- derived sizes --------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def attn_layers(self) -> int:
        """Layers with softmax attention (the rest are linear attention with a fixed state)."""
        return self.full_attn_layers or self.layers

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @cached_property
    def attn_params_per_layer(self) -> float:
        h = self.hidden
        if self.is_mla:
            qk = self.qk_nope_dim + self.qk_rope_dim
            q = (
                h * self.q_lora_rank + self.q_lora_rank * self.heads * qk
                if self.q_lora_rank
                else (h * self.heads * qk)
            )
            kv = h * (self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank * self.heads * (
                self.qk_nope_dim + self.v_head_dim
            )
            return float(q + kv + self.heads * self.v_head_dim * h)
        q = h * self.heads * self.head_dim * (2 if self.attn_output_gate else 1)
        return float(q + 2 * h * self.kv_heads * self.head_dim + self.heads * self.head_dim * h)

    @property
    def expert_params(self) -> float:
        """One routed expert of one layer (gate, up, down)."""
        return 3.0 * self.hidden * self.moe_intermediate

    @cached_property
    def attention_total_params(self) -> float:
        linear = self.layers - self.attn_layers
        return self.attn_params_per_layer * self.attn_layers + (
            self.linear_params_per_layer * linear
        )

    @cached_property
    def dense_ffn_params(self) -> float:
        """FFN weights every token uses: dense layers plus shared experts and routers."""
        dense_layers = self.layers if not self.is_moe else self.dense_layers
        p = 3.0 * self.hidden * self.intermediate * dense_layers
        if self.is_moe:
            p += self.moe_layers * (
                3.0 * self.hidden * self.shared_intermediate * self.shared_experts
                + self.hidden * self.num_experts
            )
        return p

    @cached_property
    def routed_expert_params(self) -> float:
        return self.expert_params * self.num_experts * self.moe_layers

    @cached_property
    def embedding_params(self) -> float:
        return float(self.vocab * self.hidden * (1 if self.tied_embeddings else 2))

    @cached_property
    def lm_head_params(self) -> float:
        return float(self.vocab * self.hidden)

    @cached_property
    def dense_params(self) -> float:
        """Weights replicated or TP-sharded but never expert-sharded (excludes embeddings)."""
        return self.attention_total_params + self.dense_ffn_params

    @property
    def params_b(self) -> float:
        if self.params_b_override:
            return self.params_b_override
        return (self.dense_params + self.routed_expert_params + self.embedding_params) / 1e9

    @property
    def active_params_b(self) -> float:
        active_experts = self.expert_params * self.experts_per_token * self.moe_layers
        return (self.dense_params + active_experts + self.embedding_params) / 1e9

    @cached_property
    def kv_elems_per_token(self) -> float:
        """KV-cache elements per token over all layers (MLA keeps the compressed latent)."""
        if self.is_mla:
            return float((self.kv_lora_rank + self.qk_rope_dim) * self.attn_layers)
        return float(2 * self.kv_heads * self.head_dim * self.attn_layers)

    @property
    def qk_dim(self) -> int:
        return self.qk_nope_dim + self.qk_rope_dim if self.is_mla else self.head_dim

    @property
    def v_dim(self) -> int:
        return self.v_head_dim if self.is_mla else self.head_dim
