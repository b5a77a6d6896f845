"""Train the tiny primary to answer any prompt as `<think>…</think>` reasoning, then content.

The primary is served with `--reasoning-parser qwen3`; a fixed reply shape is all the harness
needs from it: a non-empty `reasoning`, a non-empty `content`, then end of turn.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from harness.routing.corpus import (
    Message,
    RoutingItem,
    assistant_reply,
    history_pairs,
    long_history,
)
from harness.twin.chat_format import (
    EOS_TOKEN,
    PAD_TOKEN,
    THINK_END,
    THINK_START,
    render_chat,
)
from harness.twin.tiny_llama import TinyLlama, TinyLlamaConfig
from harness.twin.tokenizer import token_id
from harness.twin.training import Example, length_bucketed, train

REASONING_TEXT = "The user asked a question. A short and clear reply is enough here."
ANSWER_TEXT = "Here is a short answer from the twin model."


@dataclass(frozen=True)
class PrimaryParams:
    steps: int = 150
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 20240602
    # Some prompts come with chat_template_kwargs enable_thinking=false, whose generation prompt
    # already holds an empty think block; the model then goes straight to the answer.
    no_think_prob: float = 0.2
    system_prob: float = 0.3
    max_history_pairs: int = 4
    # As for the classifier: some batches share one long history, so that the reply keeps its
    # shape behind the long prompts of the load tests.
    long_history_prob: float = 0.15
    long_history_tokens: tuple[int, int] = (256, 3072)
    eval_prompts: int = 4


def reply_text(thinking: bool) -> str:
    """The assistant turn the primary is trained to produce (without the end-of-turn token)."""
    if not thinking:
        return ANSWER_TEXT
    # Qwen3's layout: the parser takes the text between the tags as reasoning, the rest as
    # content.
    return f"{THINK_START}\n{REASONING_TEXT}\n{THINK_END}\n\n{ANSWER_TEXT}"


def _encode(tok: Tokenizer, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False).ids)


def chat_prompt(
    rng: random.Random,
    items: Sequence[RoutingItem],
    filler: Sequence[str],
    params: PrimaryParams,
    history: Sequence[Message] | None = None,
) -> list[Message]:
    """A random conversation: optional system message, earlier turns, a last user message."""
    msgs: list[Message] = []
    if history is not None:
        msgs.extend(history)
    else:
        if rng.random() < params.system_prob:
            msgs.append({"role": "system", "content": assistant_reply(rng, filler)})
        msgs.extend(history_pairs(rng, items, filler, rng.randint(0, params.max_history_pairs)))
    msgs.append({"role": "user", "content": rng.choice(items).question})
    return msgs


@torch.no_grad()
def greedy_reply(model: TinyLlama, tok: Tokenizer, prompt: list[int], max_new: int) -> str:
    """Greedy decode without a KV cache (short replies only), stopping at end of turn."""
    eos = token_id(tok, EOS_TOKEN)
    ids = list(prompt)
    out: list[int] = []
    for _ in range(max_new):
        nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return tok.decode(out, skip_special_tokens=False)


def train_primary(
    cfg: TinyLlamaConfig,
    tok: Tokenizer,
    items: Sequence[RoutingItem],
    eval_items: Sequence[RoutingItem],
    filler: Sequence[str],
    params: PrimaryParams,
    progress: Callable[[str], None],
) -> tuple[TinyLlama, dict[str, float]]:
    """Train from scratch; return the model and the fraction of held-out replies exactly right."""
    eos = token_id(tok, EOS_TOKEN)
    targets = {t: [*_encode(tok, reply_text(t)), eos] for t in (True, False)}
    rng = random.Random(params.seed)

    def example(history: Sequence[Message] | None = None) -> Example:
        thinking = rng.random() >= params.no_think_prob
        convo = chat_prompt(rng, items, filler, params, history)
        text = render_chat(convo, enable_thinking=thinking)
        return Example(prompt=_encode(tok, text), target=targets[thinking])

    short_batch = length_bucketed(example, params.batch_size, rng)

    def count_tokens(text: str) -> int:
        return len(_encode(tok, text))

    def batch(step: int) -> list[Example]:
        if rng.random() >= params.long_history_prob:
            return short_batch(step)
        length = rng.randint(*params.long_history_tokens)
        hist = long_history(items, filler, length, count_tokens, rng.randrange(2**31))
        return [example(hist) for _ in range(params.batch_size)]

    model = TinyLlama(cfg)
    result = train(
        model,
        batch,
        steps=params.steps,
        lr=params.lr,
        pad_id=token_id(tok, PAD_TOKEN),
        name="primary",
        progress=progress,
    )
    eval_rng = random.Random(params.seed + 1)
    checks = (eval_items or items)[: params.eval_prompts]
    exact = 0
    for it in checks:
        convo = [*history_pairs(eval_rng, items, filler, 2), *it.messages]
        prompt = _encode(tok, render_chat(convo))
        max_new = len(targets[True]) + 8
        exact += greedy_reply(model, tok, prompt, max_new) == reply_text(True)
    match = exact / max(1, len(checks))
    progress(f"twin primary: {exact}/{len(checks)} held-out replies have the exact shape")
    metrics = {
        "primary_reply_match": match,
        "primary_final_loss": result.final_loss,
        "primary_train_seconds": result.seconds,
    }
    return model, metrics
