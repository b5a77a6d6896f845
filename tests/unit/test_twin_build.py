"""Fast checks of the CPU twin build: tokenizer, chat template, model config, hashing, caching.

The real build trains for minutes; these tests shrink it to a few steps on a tiny corpus.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from harness.twin import chat_format
from harness.twin.build import BuildConfig, ModelShape, build_twin, input_hash
from harness.twin.classifier_train import (
    ClassifierParams,
    classification_prompt,
    conversation_head,
    conversation_tail,
)
from harness.twin.primary_train import PrimaryParams
from harness.twin.router_prompt import classify_prompt_module
from harness.twin.tokenizer import train_tokenizer

QUESTIONS = {
    "search": [
        "What's the weather in Oslo today?",
        "Who won the match last night?",
        "What is the price of gold right now?",
        "Any news about the rail strike?",
    ],
    "local": [
        "Write a Python function that reverses a list.",
        "Explain how photosynthesis works.",
        "Translate to French: good morning.",
        "What is 12 times 7?",
    ],
}


def _write_corpus(root: Path) -> BuildConfig:
    rows = []
    for route, qs in QUESTIONS.items():
        for i, q in enumerate(qs):
            rows.append(
                {
                    "id": f"{route}-{i}",
                    "messages": [{"role": "user", "content": q}],
                    "route": route,
                    "tags": [],
                }
            )
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    either = {"id": "e", "messages": [{"role": "user", "content": "Hi"}], "route": "either"}
    evals = root / "eval.jsonl"
    evals.write_text("".join(json.dumps(r) + "\n" for r in [*rows[::3], either]), "utf-8")
    filler = root / "filler.txt"
    filler.write_text("# comment\nSure, here is an answer.\nThat is a good question.\n", "utf-8")
    return BuildConfig(
        train_path=train,
        eval_path=evals,
        filler_path=filler,
        vocab_size=320,
        # One thread: the tiny ops of a few-step build are dominated by thread hand-offs, which
        # get very slow on a busy 2-core machine.
        threads=1,
        shape=ModelShape(intermediate_size=64, max_position_embeddings=40960),
        classifier=ClassifierParams(
            steps=2, batch_size=2, eval_history_tokens=32, long_history_prob=0.0
        ),
        primary=PrimaryParams(
            steps=2, batch_size=2, max_history_pairs=1, long_history_prob=0.0, eval_prompts=1
        ),
    )


TEXTS = [q for qs in QUESTIONS.values() for q in qs] * 3


def test_tokenizer_is_deterministic_and_has_special_tokens() -> None:
    a = train_tokenizer(TEXTS, 300)
    b = train_tokenizer(TEXTS, 300)
    assert a.to_str() == b.to_str()
    for i, token in enumerate(chat_format.SPECIAL_TOKENS):
        assert a.token_to_id(token) == i
        # vLLM's qwen3 reasoning parser looks <think> and </think> up as single vocab entries.
        assert a.encode(f"x {token} y").tokens.count(token) == 1
    assert a.decode(a.encode("Ünïcode ✓ text").ids) == "Ünïcode ✓ text"


def test_chat_template_renders_classification_messages() -> None:
    cp = classify_prompt_module()
    convo = [
        {"role": "system", "content": "client system prompt"},
        {"role": "user", "content": "Explain recursion."},
        {"role": "assistant", "content": "It is a function calling itself."},
        {"role": "user", "content": "What's the weather in Oslo today?"},
    ]
    text = chat_format.render_chat(cp.classification_messages(convo))
    assert text.startswith(f"<|im_start|>system\n{cp.CLASSIFY_SYSTEM_PROMPT}<|im_end|>\n")
    assert "client system prompt" not in text
    assert text.endswith(
        "<|im_start|>user\nWhat's the weather in Oslo today?<|im_end|>\n<|im_start|>assistant\n"
    )
    no_think = chat_format.render_chat(convo[1:2], enable_thinking=False)
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # Special tokens stay single tokens inside the rendered prompt.
    tok = train_tokenizer(TEXTS, 300)
    ids = classification_prompt(tok, convo)
    assert ids.count(tok.token_to_id("<|im_start|>")) == 4 + 1  # 4 turns + generation prompt


def test_build_skips_when_unchanged_and_hash_tracks_inputs(tmp_path: Path) -> None:
    config = _write_corpus(tmp_path)
    cache = tmp_path / "cache"
    lines: list[str] = []
    first = build_twin(cache, progress=lines.append, config=config)
    assert first.built
    assert first.classifier_dir == cache / first.input_hash[:12] / "classifier"
    assert "classifier_accuracy_short" in first.metrics
    assert "classifier_train_seconds" in first.metrics
    assert any("step 2/2" in line for line in lines)
    # No temp dirs left; the lock file of the build stays (it is empty).
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [first.input_hash[:12], f".build-{first.input_hash[:12]}.lock"]
    )

    for model_dir in (first.classifier_dir, first.primary_dir):
        names = {p.name for p in model_dir.iterdir()}
        assert {
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        } <= names
        cfg = json.loads((model_dir / "config.json").read_text())
        assert cfg["architectures"] == ["LlamaForCausalLM"]
        assert cfg["head_dim"] == 64
        assert cfg["max_position_embeddings"] >= 40960
        tcfg = json.loads((model_dir / "tokenizer_config.json").read_text())
        assert tcfg["chat_template"] == chat_format.CHAT_TEMPLATE
        assert tcfg["eos_token"] == "<|im_end|>"

    again = build_twin(cache, progress=lines.append, config=config)
    assert not again.built
    assert again.input_hash == first.input_hash
    assert again.metrics == first.metrics

    forced = build_twin(cache, force=True, progress=lines.append, config=config)
    assert forced.built

    base = input_hash(config)
    config.filler_path.write_text("A different filler line.\n", encoding="utf-8")
    assert input_hash(config) != base
    tweaked = dataclasses.replace(config, primary=PrimaryParams(steps=3))
    config.filler_path.write_text("# comment\nSure, here is an answer.\nThat is a good question.\n")
    assert input_hash(config) == base
    assert input_hash(tweaked) != base


def test_a_second_build_waits_for_the_first_and_reuses_it(tmp_path: Path) -> None:
    """`make test` builds in the background while the session asks for the same build: the
    session waits on the lock, says so, and then takes the finished build instead of a second."""
    import threading

    from harness.locks import locked
    from harness.twin import build

    config = _write_corpus(tmp_path)
    cache = tmp_path / "cache"
    digest = input_hash(config)
    lines: list[str] = []
    result: list[build.TwinModels] = []
    with locked(cache / f".build-{digest[:12]}.lock"):
        waiter = threading.Thread(
            target=lambda: result.append(build_twin(cache, progress=lines.append, config=config))
        )
        waiter.start()
        for _ in range(100):
            if lines:
                break
            threading.Event().wait(0.05)
        assert lines and "another process is building" in lines[0], lines
        # The first process builds while it holds the lock.
        build._build_locked(cache, cache / digest[:12], digest, config, lambda _: None)
    waiter.join(timeout=60)
    assert result and not result[0].built, lines
    assert any("waiting: done after" in line for line in lines), lines
    assert not any("twin: building" in line for line in lines), lines


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.twin.build import default_cache_dir

    monkeypatch.setenv("HARNESS_TWIN_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HARNESS_TWIN_CACHE")
    assert default_cache_dir().parts[-1] == "twin"


def test_head_and_tail_tokens_add_up_to_the_classification_prompt() -> None:
    tok = train_tokenizer(TEXTS, 300)
    history = [
        {"role": "user", "content": "Explain recursion."},
        {"role": "assistant", "content": "It is a function calling itself."},
    ]
    convo = [{"role": "user", "content": "What's the weather in Oslo today?"}]
    head, tail = conversation_head(tok, history), conversation_tail(tok, convo)
    assert head + tail == classification_prompt(tok, history + convo)
    assert conversation_head(tok, []) + tail == classification_prompt(tok, convo)


def test_shared_prefix_and_key_bias_match_the_plain_model() -> None:
    import math

    import torch

    from harness.twin.tiny_llama import TinyLlama, TinyLlamaConfig, rope_cos_sin

    torch.manual_seed(0)
    cfg = TinyLlamaConfig(vocab_size=50, intermediate_size=64, rope_theta=500.0)
    model = TinyLlama(cfg).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    ids = torch.randint(0, 50, (3, 30))
    ids[:, :20] = ids[0, :20]
    full = model.hidden_states(ids)[:, 20:]
    assert torch.allclose(model.hidden_states(ids, shared_prefix=20), full, atol=1e-5)
    past = model.prefix_kv(ids[:1, :20])
    assert torch.allclose(model.hidden_states(ids[:, 20:], past=past), full, atol=1e-5)
    # A key bias of log(m) is m copies of each biased key.
    attn = model.model.layers[0].self_attn
    x = torch.randn(2, 4, cfg.hidden_size)
    pk, pv = torch.randn(1, 2, 6, 64), torch.randn(1, 2, 6, 64)
    cos, sin = rope_cos_sin(cfg, 4, offset=6)
    copies, _ = attn(x, cos, sin, past=(pk.repeat(1, 1, 3, 1), pv.repeat(1, 1, 3, 1)))
    biased, _ = attn(x, cos, sin, past=(pk, pv), key_bias=torch.full((6,), math.log(3)))
    assert torch.allclose(copies, biased, atol=1e-5)
