"""The training loop both twin models share: next-token loss on target tokens only."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.nn import functional

from harness.twin.tiny_llama import TinyLlama


@dataclass(frozen=True)
class Example:
    """A prompt the model only reads and the target tokens it must produce after it."""

    prompt: list[int]
    target: list[int]


@dataclass(frozen=True)
class Batch:
    """A step's examples and how their shared prefix is treated (see TinyLlama.hidden_states).

    history_start is where, inside the shared prefix, the part weighted by history_log_weight
    begins.
    """

    examples: Sequence[Example]
    prefix_grad: bool = True
    history_start: int = 0
    history_log_weight: float = 0.0
    position_gap: int = 0


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_loss: float
    seconds: float


def length_bucketed(
    example: Callable[[], Example], batch_size: int, rng: random.Random, pool: int = 4
) -> Callable[[int], list[Example]]:
    """A batch(step) source that draws `pool` batches at a time and groups them by length.

    A batch then pads to similar lengths instead of to the longest of a random draw, which on
    CPU is most of the cost.
    """
    pending: list[list[Example]] = []

    def batch(_step: int) -> list[Example]:
        if not pending:
            drawn = sorted((example() for _ in range(pool * batch_size)), key=_length)
            chunks = [drawn[i : i + batch_size] for i in range(0, len(drawn), batch_size)]
            rng.shuffle(chunks)
            pending.extend(chunks)
        return pending.pop()

    return batch


def _length(ex: Example) -> int:
    return len(ex.prompt) + len(ex.target)


@contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[None]:
    """Seeded, single-algorithm torch on a fixed thread count, restored afterwards.

    The thread count is part of determinism on CPU: reductions split differently across threads.
    """
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def collate(examples: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids [B, T] and next-token labels [B, T] with -100 off target."""
    seqs = [ex.prompt + ex.target[:-1] for ex in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, (ex, seq) in enumerate(zip(examples, seqs, strict=True)):
        ids[row, : len(seq)] = torch.tensor(seq)
        start = len(ex.prompt) - 1
        labels[row, start : start + len(ex.target)] = torch.tensor(ex.target)
    return ids, labels


def shared_prefix_len(ids: torch.Tensor, labels: torch.Tensor) -> int:
    """How many leading tokens all rows share, stopping before the first target position."""
    same = (ids == ids[:1]).all(dim=0)
    differs = (~same).nonzero()
    common = int(differs[0]) if len(differs) else ids.shape[1]
    first_target = int((labels != -100).any(dim=0).nonzero()[0])
    return min(common, first_target)


def target_loss(
    model: TinyLlama, ids: torch.Tensor, labels: torch.Tensor, batch: Batch | None = None
) -> torch.Tensor:
    """Cross-entropy on target positions; logits are computed only there."""
    p = shared_prefix_len(ids, labels)
    key_bias = None
    if batch is not None and batch.history_log_weight and batch.history_start < p:
        key_bias = (batch.history_start, batch.history_log_weight)
    hidden = model.hidden_states(
        ids,
        shared_prefix=p,
        prefix_grad=batch.prefix_grad if batch is not None else True,
        key_bias=key_bias,
        position_gap=batch.position_gap if batch is not None and p > 0 else 0,
    )
    mask = labels[:, p:] != -100
    return functional.cross_entropy(model.logits(hidden[mask]), labels[:, p:][mask])


def train(
    model: TinyLlama,
    batch: Callable[[int], Sequence[Example] | Batch],
    *,
    steps: int,
    lr: float,
    pad_id: int,
    name: str,
    progress: Callable[[str], None],
    warmup: int = 20,
    weight_decay: float = 0.01,
    log_every: int = 50,
    ema_decay: float = 0.0,
    ema_start: int = 0,
) -> TrainResult:
    """AdamW with linear warmup and cosine decay; batch(step) supplies each step's examples.

    With ema_decay > 0 the model ends with an exponential moving average of its weights from
    step ema_start on: on a few hundred examples the average generalises better than the
    last, noisiest iterate.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ema: list[torch.Tensor] | None = None

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    start = time.monotonic()
    loss_avg = float("nan")
    for step in range(steps):
        drawn = batch(step)
        spec = drawn if isinstance(drawn, Batch) else Batch(drawn)
        ids, labels = collate(spec.examples, pad_id)
        loss = target_loss(model, ids, labels, spec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if ema_decay > 0 and step >= ema_start:
            with torch.no_grad():
                if ema is None:
                    ema = [p.detach().clone() for p in model.parameters()]
                else:
                    for avg, p in zip(ema, model.parameters(), strict=True):
                        avg.lerp_(p.detach(), 1.0 - ema_decay)
        value = loss.item()
        loss_avg = value if math.isnan(loss_avg) else 0.9 * loss_avg + 0.1 * value
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.monotonic() - start
            progress(
                f"twin {name}: step {step + 1}/{steps} loss {loss_avg:.4f} elapsed {elapsed:.1f}s"
            )
    if ema is not None:
        with torch.no_grad():
            for avg, p in zip(ema, model.parameters(), strict=True):
                p.copy_(avg)
    model.eval()
    return TrainResult(steps=steps, final_loss=loss_avg, seconds=time.monotonic() - start)
