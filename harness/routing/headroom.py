"""The classifier's headroom: which conversations the primary serves but the classifier cannot hold.

The router sends the classifier `classification_messages(conversation)` (its own system prompt,
the user and assistant turns) through the classifier's chat template with the generation prompt,
and asks for room for the label on top. A conversation that the primary holds with room for one
output token may therefore not fit the classifier whole; the reference router then classifies it
on its recent part (`classified:trimmed-history`).

The overhead is measured with the engines' own tokenizer files and chat templates, offline (or,
where no files are on the host, as on the GPU box, with the running engines' /tokenize): the
classifier's count of the classification prompt plus the label budget, less the primary's count
of the conversation as the client sends it. With the same tokenizer on both engines (the twin)
the overhead is exact for any conversation; with different ones it holds for one sample and the
band is approximate.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.compose import StackSpec

Message = dict[str, str]

TRIMMED_REASON = "classified:trimmed-history"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
# The twin's build layout (harness/twin/build.py); not imported from there, which sits in a
# higher layer and pulls in torch.
TWIN_CACHE_ENV = "HARNESS_TWIN_CACHE"
TWIN_MODELS_ENV = "HARNESS_TWIN_MODELS"
TWIN_STAMP = "twin-stamp.json"

# A small conversation to measure the overhead on: every role the classifier keeps, and no system
# message, which the router leaves out and the primary would count.
SAMPLE: tuple[Message, ...] = (
    {"role": "user", "content": "Hello, I have a few things to ask."},
    {"role": "assistant", "content": "Sure, go ahead."},
    {"role": "user", "content": "What is the weather in Paris today?"},
)


@dataclass(frozen=True)
class Counter:
    """Counts as an engine's /tokenize does: chat messages with the generation prompt, or text."""

    source: str  # where the tokenizer files came from, for the report
    chat: Callable[[Sequence[Mapping[str, str]]], int]
    text: Callable[[str], int]
    fingerprint: str = ""  # tokenizer.json's identity: equal means the counts are comparable


@dataclass(frozen=True)
class Headroom:
    classifier: str
    primary: str
    classifier_max_model_len: int
    primary_max_model_len: int
    # Classification prompt tokens around a conversation, and the label's max_tokens.
    prompt_overhead: int | None = None
    label_budget: int | None = None
    source: str = ""
    same_tokenizer: bool = True
    unknown: str | None = None  # why the overhead could not be measured here

    @property
    def overhead(self) -> int | None:
        if self.prompt_overhead is None or self.label_budget is None:
            return None
        return self.prompt_overhead + self.label_budget

    @property
    def largest_untrimmed(self) -> int | None:
        """The longest conversation, in the primary's tokens, that the classifier holds whole."""
        return None if self.overhead is None else self.classifier_max_model_len - self.overhead

    @property
    def band(self) -> tuple[int, int] | None:
        """Conversation lengths the primary serves and the classifier holds only trimmed."""
        if self.largest_untrimmed is None:
            return None
        low, high = self.largest_untrimmed + 1, self.primary_max_model_len - 1
        return (low, high) if low <= high else None

    @property
    def caveat(self) -> str:
        if self.same_tokenizer:
            return ""
        return (
            "the primary's tokenizer differs from the classifier's, so the band edges are "
            "approximate (measured on one sample conversation)"
        )

    def summary(self) -> str:
        head = f"Classifier headroom ({self.classifier} for {self.primary}): "
        if self.unknown is not None or self.overhead is None:
            return head + f"unknown: {self.unknown or 'not measured'}"
        band = self.band
        shown = f"band {band[0]:,}..{band[1]:,} tokens" if band else "no band"
        note = f"; {self.caveat}" if self.caveat else ""
        return (
            head + f"overhead {self.overhead:,} tokens ({self.prompt_overhead:,} prompt + "
            f"{self.label_budget} label); largest untrimmed conversation "
            f"{self.largest_untrimmed:,} of the primary's tokens; {shown} "
            f"(tokenizer: {self.source}){note}"
        )

    def to_dict(self) -> dict[str, Any]:
        band = self.band
        return {
            "classifier": self.classifier,
            "primary": self.primary,
            "classifier_max_model_len": self.classifier_max_model_len,
            "primary_max_model_len": self.primary_max_model_len,
            "prompt_overhead_tokens": self.prompt_overhead,
            "label_budget_tokens": self.label_budget,
            "overhead_tokens": self.overhead,
            "largest_untrimmed_tokens": self.largest_untrimmed,
            "band_tokens": list(band) if band else None,
            "tokenizer_source": self.source or None,
            "same_tokenizer": self.same_tokenizer,
            "unknown": self.unknown,
        }


def measure(
    classifier: Counter,
    primary: Counter,
    *,
    classifier_service: str,
    primary_service: str,
    classifier_max_model_len: int,
    primary_max_model_len: int,
) -> Headroom:
    """The overhead as the router builds its request (ai_router.classify_prompt and its label
    budget: the longest label's token count plus one)."""
    from ai_router.classify_prompt import ROUTES, classification_messages

    conv = [dict(m) for m in SAMPLE]
    prompt = classifier.chat(classification_messages(conv)) - primary.chat(conv)
    budget = max(classifier.text(label) for label in ROUTES) + 1
    return Headroom(
        classifier=classifier_service,
        primary=primary_service,
        classifier_max_model_len=classifier_max_model_len,
        primary_max_model_len=primary_max_model_len,
        prompt_overhead=prompt,
        label_budget=budget,
        source=classifier.source,
        same_tokenizer=classifier.fingerprint == primary.fingerprint,
    )


# Tokenized on both engines to tell whether they share a tokenizer, when no files are at hand.
_FINGERPRINT_TEXT = "Héllo, wörld! 12345 \u4f60\u597d <|im_start|> def f(x): return x**2"


def engine_counter(tokenizer: Any, source: str) -> Counter:
    """A Counter over a live engine's POST /tokenize (harness.routing.longctx.Tokenizer): what
    the GPU box has, where the weights sit only in the compose project's volume."""
    ids = tokenizer.token_ids(_FINGERPRINT_TEXT)
    fingerprint = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    return Counter(source, tokenizer.count_messages, tokenizer.count_prompt, fingerprint)


def from_engines(spec: StackSpec, classifier: Counter, primary: Counter) -> Headroom:
    """The headroom measured with the running engines' own tokenizers (`engine_counter`)."""
    clf, pri = spec.classifier, spec.primary
    assert clf.engine is not None and pri.engine is not None
    return measure(
        classifier,
        primary,
        classifier_service=clf.name,
        primary_service=pri.name,
        classifier_max_model_len=clf.engine.max_model_len or 0,
        primary_max_model_len=pri.engine.max_model_len or 0,
    )


def _has_files(d: Path) -> bool:
    return all((d / name).is_file() for name in TOKENIZER_FILES)


def hf_snapshot(model: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The newest huggingface_hub snapshot of `model` holding its tokenizer files, if any."""
    env = os.environ if env is None else env
    if "HF_HUB_CACHE" in env:
        hub = Path(env["HF_HUB_CACHE"])
    else:
        hf_home = env.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
        hub = Path(hf_home) / "hub"
    snapshots = hub / ("models--" + model.replace("/", "--")) / "snapshots"
    found = [d for d in snapshots.glob("*") if _has_files(d)] if snapshots.is_dir() else []
    return max(found, key=lambda d: d.stat().st_mtime) if found else None


def twin_model_dir(role: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The twin's model for a role: $HARNESS_TWIN_MODELS, else the newest complete build."""
    env = os.environ if env is None else env
    given = env.get(TWIN_MODELS_ENV)
    if given:
        d = Path(given) / role
        return d if _has_files(d) else None
    if env.get(TWIN_CACHE_ENV):
        cache = Path(env[TWIN_CACHE_ENV])
    else:
        import platformdirs

        cache = Path(platformdirs.user_cache_dir("ai-router-harness")) / "twin"
    builds = [b for b in cache.glob("*") if (b / TWIN_STAMP).is_file() and _has_files(b / role)]
    if not builds:
        return None
    return max(builds, key=lambda b: (b / TWIN_STAMP).stat().st_mtime) / role


def tokenizer_dir(
    model: str,
    role: str,
    *,
    prefer_twin: bool = False,
    env: Mapping[str, str] | None = None,
    kinds: tuple[str, ...] = ("local", "twin build", "HF cache"),
) -> tuple[Path, str, str] | None:
    """Where an engine's tokenizer files are: (directory, description, kind).

    A local model directory, else the HF cache, else the twin's build (which stands in for the
    compose models on a machine without them); the twin first when the target is the twin.
    """
    local = Path(model)
    if "local" in kinds and _has_files(local):
        return local, str(local), "local"
    found = [("twin build", twin_model_dir(role, env)), ("HF cache", hf_snapshot(model, env))]
    for kind, d in found if prefer_twin else found[::-1]:
        if d is not None and kind in kinds:
            return d, f"{kind} {d}", kind
    return None


def load_counter(d: Path, source: str) -> Counter:
    """A Counter from a model directory: tokenizer.json and tokenizer_config.json's template,
    rendered as transformers (and so vLLM) renders it. Raises ImportError without `tokenizers`
    or `jinja2`."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        raise ValueError(f"{d}: tokenizer_config.json has no chat template")

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(template)
    specials = {
        k: v if isinstance(v, str) else (v or {}).get("content", "")
        for k, v in config.items()
        if k.endswith("_token") and not k.startswith("add_")
    }

    def chat(messages: Sequence[Mapping[str, str]]) -> int:
        text = compiled.render(messages=list(messages), add_generation_prompt=True, **specials)
        # The template writes the special tokens itself, as vLLM's chat tokenization assumes.
        return len(tok.encode(text, add_special_tokens=False).ids)

    def text(prompt: str) -> int:
        return len(tok.encode(prompt).ids)

    fingerprint = hashlib.sha256((d / "tokenizer.json").read_bytes()).hexdigest()
    return Counter(source, chat, text, fingerprint)


def for_spec(
    spec: StackSpec, *, prefer_twin: bool = False, env: Mapping[str, str] | None = None
) -> Headroom:
    """The headroom of a compose stack, or a Headroom that says why it is unknown here."""
    clf, pri = spec.classifier, spec.primary
    assert clf.engine is not None and pri.engine is not None
    clf_len = clf.engine.max_model_len or 0
    pri_len = pri.engine.max_model_len or 0

    def unknown(why: str) -> Headroom:
        return Headroom(clf.name, pri.name, clf_len, pri_len, unknown=why)

    if not clf_len or not pri_len:
        return unknown("an engine has no --max-model-len")
    clf_dir = tokenizer_dir(clf.engine.model, "classifier", prefer_twin=prefer_twin, env=env)
    if clf_dir is None:
        return unknown("no tokenizer here")
    # The primary's files only from the same kind of place: a twin primary says nothing of the
    # real one's count.
    kinds = ("local", clf_dir[2])
    pri_dir = tokenizer_dir(
        pri.engine.model, "primary", prefer_twin=prefer_twin, env=env, kinds=kinds
    )
    try:
        classifier = load_counter(*clf_dir[:2])
        # Without the primary's files the classifier's stand in for its count.
        primary = (
            load_counter(*pri_dir[:2]) if pri_dir else Counter("", classifier.chat, classifier.text)
        )
        return measure(
            classifier,
            primary,
            classifier_service=clf.name,
            primary_service=pri.name,
            classifier_max_model_len=clf_len,
            primary_max_model_len=pri_len,
        )
    except ImportError:
        return unknown("no tokenizer here (tokenizers, jinja2 or ai_router is not installed)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return unknown(f"the tokenizer files could not be read: {exc}")
    except Exception as exc:  # jinja2.TemplateError, tokenizers' own errors: never fail check
        return unknown(f"the chat template could not be rendered: {exc}")
