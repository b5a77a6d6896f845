"""The classifier's headroom: overhead and band from a fake tokenizer and template, the warning
that `harness check` gives for a band, and "unknown" where no tokenizer is at hand."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from ai_router.classify_prompt import CLASSIFY_SYSTEM_PROMPT
from compose_helpers import set_flag

from harness.cli import main
from harness.compose import load_stack
from harness.config import load_settings
from harness.routing import headroom
from harness.routing.headroom import (
    Counter,
    Headroom,
    engine_counter,
    for_spec,
    from_engines,
    measure,
)
from harness.routing.longctx import Tokenizer
from harness.vram.check import HEADROOM_RULE, run_check
from harness.vram.rules import Severity

# A template of 2 tokens per message plus 1 for the generation prompt; a token per word.
PER_MESSAGE, GENERATION = 2, 1


def words(text: str) -> int:
    return len(text.split())


def fake_chat(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(PER_MESSAGE + words(m["content"]) for m in messages) + GENERATION


def fake_counter(source: str = "fake", fingerprint: str = "same") -> Counter:
    return Counter(source, fake_chat, words, fingerprint)


def fake_measure(classifier_len: int = 1000, primary_len: int = 1000) -> Headroom:
    return measure(
        fake_counter(),
        fake_counter(),
        classifier_service="vllm-router",
        primary_service="vllm-primary",
        classifier_max_model_len=classifier_len,
        primary_max_model_len=primary_len,
    )


def test_overhead_is_the_system_message_plus_the_label_budget() -> None:
    h = fake_measure()
    # The classification prompt adds one message: the system prompt, through the template.
    assert h.prompt_overhead == PER_MESSAGE + words(CLASSIFY_SYSTEM_PROMPT)
    assert h.label_budget == 2  # each label is one word: one token, plus one
    assert h.overhead == h.prompt_overhead + 2
    assert h.largest_untrimmed == 1000 - h.overhead
    assert h.band == (1000 - h.overhead + 1, 999)
    assert h.to_dict()["band_tokens"] == [1000 - h.overhead + 1, 999]


def test_no_band_when_the_classifier_has_room_for_the_overhead() -> None:
    overhead = fake_measure().overhead
    assert overhead is not None
    assert fake_measure(classifier_len=1000 + overhead - 1).band is None
    # One token short of the overhead leaves a band of exactly the primary's last token.
    assert fake_measure(classifier_len=1000 + overhead - 2).band == (999, 999)


def test_a_different_primary_tokenizer_is_said() -> None:
    h = measure(
        fake_counter(fingerprint="a"),
        fake_counter(fingerprint="b"),
        classifier_service="c",
        primary_service="p",
        classifier_max_model_len=100,
        primary_max_model_len=1000,
    )
    assert not h.same_tokenizer and "approximate" in h.summary()


def test_a_band_is_a_warning_naming_it_and_the_trimmed_reason(real_compose: Path) -> None:
    h = fake_measure(32768, 32768)
    assert h.band is not None
    result = run_check(real_compose, load_settings(None, {}), headroom=lambda spec: h)
    found = [f for f in result.findings if f.rule == HEADROOM_RULE]
    assert len(found) == 1 and found[0].severity is Severity.WARNING
    assert f"{h.band[0]:,} to {h.band[1]:,} tokens" in found[0].message
    assert "classified:trimmed-history" in found[0].message
    assert result.ok
    assert result.to_dict()["classifier_headroom"]["overhead_tokens"] == h.overhead


def test_no_warning_without_a_band(real_compose: Path) -> None:
    h = Headroom("vllm-router", "vllm-primary", 32768, 32768, unknown="no tokenizer here")
    result = run_check(real_compose, load_settings(None, {}), headroom=lambda spec: h)
    assert not [f for f in result.findings if f.rule == HEADROOM_RULE]


def test_unknown_without_a_tokenizer(real_compose: Path, tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HARNESS_TWIN_CACHE": str(tmp_path / "twin")}
    h = for_spec(load_stack(real_compose), env=env)
    assert h.unknown == "no tokenizer here" and h.band is None
    assert "unknown: no tokenizer here" in h.summary()


def test_unknown_when_tokenizers_is_not_installed(
    real_compose: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-3B-Instruct" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for name in headroom.TOKENIZER_FILES:
        (snap / name).write_text("{}")

    def missing(d: Path, source: str) -> Counter:
        raise ImportError("No module named 'tokenizers'")

    monkeypatch.setattr(headroom, "load_counter", missing)
    env = {"HF_HOME": str(tmp_path / "hf"), "HARNESS_TWIN_CACHE": str(tmp_path / "twin")}
    h = for_spec(load_stack(real_compose), env=env)
    assert h.unknown is not None and h.unknown.startswith("no tokenizer here")


def test_the_hf_cache_is_found_before_the_twin(tmp_path: Path) -> None:
    snap = tmp_path / "hf" / "hub" / "models--Org--Model" / "snapshots" / "rev"
    build = tmp_path / "twin" / "abc" / "classifier"
    for d in (snap, build):
        d.mkdir(parents=True)
        for name in headroom.TOKENIZER_FILES:
            (d / name).write_text("{}")
    (build.parent / headroom.TWIN_STAMP).write_text("{}")
    env = {"HF_HOME": str(tmp_path / "hf"), "HARNESS_TWIN_CACHE": str(tmp_path / "twin")}
    found = headroom.tokenizer_dir("Org/Model", "classifier", env=env)
    assert found is not None and found[0] == snap
    twin = headroom.tokenizer_dir("Org/Model", "classifier", env=env, prefer_twin=True)
    assert twin is not None and twin[0] == build


def test_json_carries_the_numbers(
    capsys: pytest.CaptureFixture[str], real_compose: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(headroom, "for_spec", lambda spec: fake_measure(32768, 32768))
    code = main(["check", "--gpu-memory", "96GiB", "--compose", str(real_compose), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    numbers = doc["classifier_headroom"]
    assert numbers["band_tokens"] == [32768 - numbers["overhead_tokens"] + 1, 32767]
    assert any(f["rule"] == HEADROOM_RULE for f in doc["findings"])


def test_text_prints_the_headroom_line(
    capsys: pytest.CaptureFixture[str], compose_variant: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(headroom, "for_spec", lambda spec: fake_measure(32768, 32768))
    path = compose_variant(lambda d: set_flag(d, "vllm-router", "--max-model-len", "32768"))  # type: ignore[operator]
    main(["check", "--gpu-memory", "96GiB", "--compose", str(path)])
    out = capsys.readouterr().out
    assert "Classifier headroom (vllm-router for vllm-primary): overhead" in out
    assert "WARNING classifier-headroom [vllm-router]" in out


def fake_engine(ids_of: Any, template_tokens: int = 5) -> httpx.Client:
    """An engine's POST /tokenize: a token per word (ids from `ids_of`), and for chat messages
    a template of PER_MESSAGE tokens per message plus `template_tokens`."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "messages" in body:
            n = sum(PER_MESSAGE + words(m["content"]) for m in body["messages"]) + template_tokens
            return httpx.Response(200, json={"count": n, "tokens": list(range(n))})
        ids = [ids_of(w) for w in body["prompt"].split()]
        return httpx.Response(200, json={"count": len(ids), "tokens": ids})

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://engine")


def test_without_tokenizer_files_the_engines_own_tokenize_measures_the_band(
    real_compose: Path,
) -> None:
    """The GPU box has no tokenizer files on the host: the overhead comes from the engines."""
    spec = load_stack(real_compose)
    clf = Tokenizer(fake_engine(len), "http://engine", "router-classifier")
    pri = Tokenizer(fake_engine(len, template_tokens=1), "http://engine", "primary")
    h = from_engines(
        spec, engine_counter(clf, "vllm-router /tokenize"), engine_counter(pri, "primary")
    )
    conv = [dict(m) for m in headroom.SAMPLE]
    from ai_router.classify_prompt import ROUTES, classification_messages

    want_prompt = (
        sum(PER_MESSAGE + words(m["content"]) for m in classification_messages(conv))
        + 5
        - (sum(PER_MESSAGE + words(m["content"]) for m in conv) + 1)
    )
    assert h.unknown is None and h.prompt_overhead == want_prompt
    assert h.label_budget == max(words(r) for r in ROUTES) + 1
    assert h.largest_untrimmed == 32768 - want_prompt - h.label_budget
    assert h.same_tokenizer and "vllm-router /tokenize" in h.summary()


def test_engines_with_different_token_ids_are_not_the_same_tokenizer(real_compose: Path) -> None:
    a = engine_counter(Tokenizer(fake_engine(len), "http://e", "a"), "a")
    b = engine_counter(Tokenizer(fake_engine(lambda w: len(w) + 7), "http://e", "b"), "b")
    h = from_engines(load_stack(real_compose), a, b)
    assert not h.same_tokenizer and h.caveat
