"""A model's shape from its config.json, and the parameter count and bytes that follow from it.

Where the figures come from, first match wins: a prepared folder's own `resources/models/<name>/config.json`,
the folder a `path` source names, or, for a Hub model that cannot be downloaded where the plan runs, the
copy of its config.json shipped in `stargate/plan/model_configs/` (each names its source in `_source`). A
fine-tuned m_t has m0's shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGED = Path(__file__).resolve().parent / "model_configs"
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class Shape:
    """The figures of a decoder-only transformer (Llama/Mistral/Mixtral family) that memory depends on."""

    name: str
    source: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    experts: int = 1  # 1: a dense MLP
    experts_per_token: int = 1
    tied_embeddings: bool = False
    max_position: int = 4096
    dtype: str = "bfloat16"

    @classmethod
    def from_config(cls, cfg: dict[str, Any], name: str, source: str) -> Shape:
        text = cfg.get("text_config") or cfg  # multimodal wrappers keep the decoder's figures here
        heads = int(text["num_attention_heads"])
        hidden = int(text["hidden_size"])
        experts = int(text.get("num_local_experts") or text.get("num_experts") or 1)
        return cls(
            name=name,
            source=source,
            hidden=hidden,
            layers=int(text["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or hidden // heads),
            intermediate=int(text.get("moe_intermediate_size") or text["intermediate_size"])
            if experts > 1
            else int(text["intermediate_size"]),
            vocab=int(text["vocab_size"]),
            experts=experts,
            experts_per_token=int(text.get("num_experts_per_tok") or 1) if experts > 1 else 1,
            tied_embeddings=bool(text.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
            max_position=int(text.get("max_position_embeddings") or 4096),
            dtype=str(text.get("torch_dtype") or text.get("dtype") or cfg.get("torch_dtype") or "bfloat16"),
        )

    # ------------------------------------------------------------------ parameters
    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def attention_params(self) -> int:
        q_o = 2 * self.hidden * self.heads * self.head_dim
        return q_o + 2 * self.hidden * self.kv_dim

    @property
    def mlp_params(self) -> int:
        """Gate, up and down projections (per expert for an MoE), plus the router."""
        dense = 3 * self.hidden * self.intermediate
        return dense if self.experts == 1 else self.experts * dense + self.hidden * self.experts

    @property
    def layer_params(self) -> int:
        return self.attention_params + self.mlp_params + 2 * self.hidden  # + the two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)  # input embeddings + lm_head

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.hidden

    @property
    def largest_tensor_params(self) -> int:
        """The largest single parameter tensor: the embedding (or lm_head), or an MoE layer's fused experts
        (transformers 5 stores a layer's experts as one gate_up and one down tensor)."""
        fused = 2 * self.experts * self.intermediate * self.hidden if self.experts > 1 else 0
        return max(self.vocab * self.hidden, self.hidden * self.intermediate, fused)

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        return self.params * dtype_bytes

    def kv_bytes_per_token(self, tp: int = 1, dtype_bytes: int = 2) -> int:
        """K and V of every layer for one token on one of `tp` tensor-parallel GPUs (KV heads are split over
        the GPUs, and replicated when there are fewer KV heads than GPUs)."""
        heads_per_gpu = max(self.kv_heads // tp, 1)
        return 2 * self.layers * heads_per_gpu * self.head_dim * dtype_bytes


def packaged_name(hub_id: str) -> Path:
    return PACKAGED / (hub_id.replace("/", "--") + ".json")


def read_config(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def shape_of(model_name: str, config: dict, root: Path | None = None) -> Shape | None:
    """The shape of `models.<model_name>` of a config, or None when no config.json is known for it (an API
    model, a GGUF package not prepared yet, a Hub model without a shipped copy)."""
    root = root or Path.cwd()
    spec = (config.get("models") or {}).get(model_name) or {}
    source = spec.get("source") or {}
    if "api" in source:
        return None
    candidates = [root / "resources" / "models" / model_name / "config.json"]
    if "path" in source:
        p = Path(source["path"])
        candidates.insert(0, (p if p.is_absolute() else root / p) / "config.json")
    for path in candidates:
        if path.is_file():
            return Shape.from_config(read_config(path), model_name, str(path))
    if "hf" in source:
        packaged = packaged_name(source["hf"])
        if packaged.is_file():
            cfg = read_config(packaged)
            return Shape.from_config(cfg, model_name, cfg.get("_source", str(packaged)))
    return None
