"""A BERT encoder (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers") in plain torch.

Post-LN transformer, inference only (no dropout):
    x <- LN(word[ids] + pos[0:L] + type[0])
    x <- LN(x + W_o Attn(W_q x, W_k x, W_v x))          multi-head, padding keys masked out
    x <- LN(x + W_2 GELU(W_1 x))                        exact (erf) GELU
Sized by a Hugging Face style `config.json`; weights load from a `model.safetensors` through one explicit
key table, so a missing or unexpected tensor is an error rather than a silent random init.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

Tensor = torch.Tensor


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = 512          # learned absolute position embeddings
    type_vocab_size: int = 2          # segment embeddings; a single sentence uses type 0
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read the fields this implementation needs from a Hugging Face BERT config.json."""
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {raw['hidden_act']!r} is not supported (only 'gelu')")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=raw["num_attention_heads"],
            intermediate_size=raw["intermediate_size"],
            max_positions=raw["max_position_embeddings"],
            type_vocab_size=raw["type_vocab_size"],
            layer_norm_eps=raw["layer_norm_eps"],
        )


class BertLayer(nn.Module):
    """One post-LN transformer block: self-attention then a GELU MLP, each with residual and LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        if d % cfg.num_heads:
            raise ValueError(f"hidden_size {d} is not divisible by num_heads {cfg.num_heads}")
        self.num_heads = cfg.num_heads
        self.q, self.k, self.v, self.attn_out = (nn.Linear(d, d) for _ in range(4))
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn_in = nn.Linear(d, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x (B, L, d); keep (B, 1, 1, L) bool, True where a key may be attended to."""
        B, L, d = x.shape

        def heads(t: Tensor) -> Tensor:  # (B, L, d) -> (B, h, L, d / h)
            return t.view(B, L, self.num_heads, d // self.num_heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=keep)
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(B, L, d)))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class BertEncoder(nn.Module):
    """Token ids and a padding mask -> the last layer's hidden states (no pooler head)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.word = nn.Embedding(cfg.vocab_size, d)
        self.position = nn.Embedding(cfg.max_positions, d)
        self.token_type = nn.Embedding(cfg.type_vocab_size, d)
        self.embed_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids (B, L) int64, mask (B, L) bool (False at padding) -> hidden states (B, L, d).

        Every row needs at least one unmasked token (a tokenized prompt always has [CLS] and [SEP]).
        """
        L = ids.shape[1]
        if L > self.cfg.max_positions:
            raise ValueError(f"sequence length {L} exceeds max_positions {self.cfg.max_positions}")
        x = self.embed_norm(self.word(ids) + self.position.weight[:L] + self.token_type.weight[0])
        keep = mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, keep)
        return x


# Our parameter names -> Hugging Face BertModel names. The pooler and the position_ids buffer are unused.
_EMBEDDING_KEYS = {
    "word.weight": "embeddings.word_embeddings.weight",
    "position.weight": "embeddings.position_embeddings.weight",
    "token_type.weight": "embeddings.token_type_embeddings.weight",
    "embed_norm.weight": "embeddings.LayerNorm.weight",
    "embed_norm.bias": "embeddings.LayerNorm.bias",
}
_LAYER_KEYS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}


def hf_key_table(num_layers: int) -> dict[str, str]:
    """{our state_dict key: Hugging Face BertModel key} for a `num_layers`-layer encoder."""
    table = dict(_EMBEDDING_KEYS)
    for i in range(num_layers):
        for ours, theirs in _LAYER_KEYS.items():
            for p in ("weight", "bias"):
                table[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return table


def load_bert(model_dir: str | Path) -> BertEncoder:
    """A frozen BertEncoder in eval mode from `model_dir`/config.json and `model_dir`/model.safetensors."""
    model_dir = Path(model_dir)
    cfg = BertConfig.from_json(model_dir / "config.json")
    tensors = load_file(model_dir / "model.safetensors")
    table = hf_key_table(cfg.num_layers)
    missing = [theirs for theirs in table.values() if theirs not in tensors]
    if missing:
        raise KeyError(f"{model_dir / 'model.safetensors'} lacks {len(missing)} BERT tensors, e.g. {missing[:3]}")
    model = BertEncoder(cfg)
    model.load_state_dict({ours: tensors[theirs].float() for ours, theirs in table.items()}, strict=True)
    return model.eval().requires_grad_(False)
