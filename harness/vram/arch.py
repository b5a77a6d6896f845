"""Model architectures: from a local `config.json`, the Hugging Face cache, or a small catalog.

Everything here is offline. The catalog covers the default models of `infra/docker-compose.yml`
and a few well-known architectures, so `harness check` answers on a machine that has never
downloaded a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8": 1, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class ModelArch:
    """What the memory model needs to know about one model."""

    model_id: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    num_params: int
    dtype_bytes: int  # bytes per parameter of the unquantized weights (bf16: 2)
    quant_bytes: float | None = None  # bytes per parameter of quantized linear layers (fp8: 1)
    tie_embeddings: bool = False
    max_position_embeddings: int | None = None
    weight_bytes_on_disk: int | None = None  # from safetensors sizes, when known
    source: str = "catalog"

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def weight_bytes(self) -> int:
        """Weights in memory: safetensors sizes when known, else parameters x bytes.

        Quantized checkpoints keep embeddings and the LM head in the model dtype.
        """
        if self.weight_bytes_on_disk is not None:
            return self.weight_bytes_on_disk
        if self.quant_bytes is None:
            return self.num_params * self.dtype_bytes
        quantized = max(self.num_params - self.embedding_params, 0)
        return int(quantized * self.quant_bytes) + self.embedding_params * self.dtype_bytes


# Figures from each model's published config.json and parameter count.
CATALOG: dict[str, ModelArch] = {
    a.model_id: a
    for a in (
        ModelArch(
            "Qwen/Qwen2.5-3B-Instruct",
            36,
            2,
            128,
            2048,
            151936,
            3_085_938_688,
            2,
            tie_embeddings=True,
            max_position_embeddings=32768,
        ),
        ModelArch(
            "Qwen/Qwen2.5-1.5B-Instruct",
            28,
            2,
            128,
            1536,
            151936,
            1_543_714_304,
            2,
            tie_embeddings=True,
            max_position_embeddings=32768,
        ),
        ModelArch(
            "Qwen/Qwen3-32B-FP8",
            64,
            8,
            128,
            5120,
            151936,
            32_762_123_264,
            2,
            quant_bytes=1.0,
            max_position_embeddings=40960,
        ),
        ModelArch(
            "Qwen/Qwen3-32B",
            64,
            8,
            128,
            5120,
            151936,
            32_762_123_264,
            2,
            max_position_embeddings=40960,
        ),
        ModelArch(
            "Qwen/Qwen3-4B-Instruct-2507",
            36,
            8,
            128,
            2560,
            151936,
            4_022_468_096,
            2,
            tie_embeddings=True,
            max_position_embeddings=262144,
        ),
        ModelArch(
            "meta-llama/Meta-Llama-3-8B-Instruct",
            32,
            8,
            128,
            4096,
            128256,
            8_030_261_248,
            2,
            max_position_embeddings=8192,
        ),
        ModelArch(
            "meta-llama/Llama-3.1-8B-Instruct",
            32,
            8,
            128,
            4096,
            128256,
            8_030_261_248,
            2,
            max_position_embeddings=131072,
        ),
        ModelArch(
            "meta-llama/Llama-3.1-70B-Instruct",
            80,
            8,
            128,
            8192,
            128256,
            70_553_706_496,
            2,
            max_position_embeddings=131072,
        ),
        ModelArch(
            "mistralai/Mistral-7B-Instruct-v0.3",
            32,
            8,
            128,
            4096,
            32768,
            7_248_023_552,
            2,
            max_position_embeddings=32768,
        ),
    )
}


def resolve_arch(model: str, *, hf_home: str | None = None) -> ModelArch:
    """The architecture of `model`: a local directory, the HF cache (offline), or the catalog."""
    local = Path(model)
    if (local / "config.json").is_file():
        return _from_dir(model, local, source=str(local / "config.json"))
    snapshot = _hf_cache_snapshot(model, hf_home)
    if snapshot is not None:
        return _from_dir(model, snapshot, source=str(snapshot / "config.json"))
    if model in CATALOG:
        return CATALOG[model]
    raise InputError(
        f"model {model!r}: no config.json found (not a local directory, not in the Hugging Face "
        f"cache under HF_HOME) and not in the built-in catalog; download it or pass a local path"
    )


def _hf_cache_snapshot(model: str, hf_home: str | None) -> Path | None:
    home = hf_home or os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    repo = Path(home) / "hub" / ("models--" + model.replace("/", "--"))
    ref = repo / "refs" / "main"
    snapshots = repo / "snapshots"
    if ref.is_file() and (snapshots / ref.read_text().strip() / "config.json").is_file():
        return snapshots / ref.read_text().strip()
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir()):
            if (snap / "config.json").is_file():
                return snap
    return None


def _from_dir(model: str, directory: Path, *, source: str) -> ModelArch:
    try:
        cfg: dict[str, Any] = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{source}: cannot read model config: {exc}") from None
    cfg = cfg.get("text_config", cfg) if "num_hidden_layers" not in cfg else cfg
    try:
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: missing or invalid field {exc}") from None
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    quant = cfg.get("quantization_config") or {}
    quant_bytes = _quant_bytes(quant) if quant else None
    on_disk = _safetensors_bytes(directory)
    params = _estimate_params(cfg, layers, hidden, vocab, kv_heads, head_dim)
    return ModelArch(
        model_id=model,
        num_layers=layers,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        vocab_size=vocab,
        num_params=params,
        dtype_bytes=DTYPE_BYTES.get(dtype, 2),
        quant_bytes=quant_bytes,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_position_embeddings=cfg.get("max_position_embeddings"),
        weight_bytes_on_disk=on_disk,
        source=source,
    )


def _quant_bytes(quant: dict[str, Any]) -> float:
    method = str(quant.get("quant_method", "")).lower()
    bits = quant.get("bits") or quant.get("weight_bits")
    if bits:
        return int(bits) / 8
    if "fp8" in method or "fp8" in str(quant.get("fmt", "")):
        return 1.0
    if method in ("awq", "gptq", "mxfp4"):
        return 0.5
    return 1.0


def _safetensors_bytes(directory: Path) -> int | None:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
            if total:
                return int(total)
        except (OSError, json.JSONDecodeError, ValueError):
            pass
    files = list(directory.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


def _estimate_params(
    cfg: dict[str, Any], layers: int, hidden: int, vocab: int, kv_heads: int, head_dim: int
) -> int:
    """Dense decoder parameters from the config, for checkpoints without safetensors sizes."""
    heads = int(cfg["num_attention_heads"])
    inter = int(cfg.get("intermediate_size") or 4 * hidden)
    attn = hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + heads * head_dim * hidden
    mlp = 3 * hidden * inter
    embed = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    return layers * (attn + mlp + 2 * hidden) + embed + hidden
