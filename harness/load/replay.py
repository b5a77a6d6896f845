"""A replay of the ai-router's own session log: the workload, and the messages it sends.

Each usable line of the log (a routed chat request) becomes one request of the workload, due at
its logged start, compressed by the speed (`due_s = offset_s / speed`). Its messages are
synthesised to the line's shape, never from the log's text (the log holds none): as many
messages as it logged, as many of them user messages as its turn index, and as many characters
as the router counted in the history (`history_chars`; where only tokens were logged, the
tokens times the stack's characters per token). The last user message is a question from the
labelled routing corpus with the logged route, after filler notes that bring the history to its
length, as the conversation profile pads its long turns; the other new messages are filler
(the classifier was trained on filler assistant replies). Each turn of a conversation repeats
its earlier turns' messages exactly, so the history grows as it did and shares its prefix.
The answer's budget is the logged completion tokens, decoded in full (ignore_eos).

The plan (PLAN beside requests.jsonl) holds lengths, routes and question indexes, no text; the
locust child (harness.load.replay_user) builds each text from it with `messages_for`.

No locust import here: the harness process builds the plan.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.load.conversations import NOTES, notes, padded

PLAN = "replay-plan.json"
# One line per replayed request: its harness request id, the router's, and its plan index.
SENT_LOG = "replay-sent.jsonl"
ROUTES = ("local", "search")
# The answer's budget where the log has no completion count (a failed request).
DEFAULT_MAX_TOKENS = 64
# Users per request in flight at the log's pace (compressed), and at least this many: an open
# loop needs a free user at each due time, also while the stack answers slower than it did.
USERS_PER_IN_FLIGHT = 4
MIN_USERS = 4
# The first request is due this long after the users start: all of them are spawned by then.
LEAD_S = 2.0
FILLER_CHARS = 1 << 18

Message = dict[str, str]
# (role, characters, the question's route or "" for filler, its index in that route's questions)
Part = tuple[str, int, str, int]


@dataclass(frozen=True)
class LoggedRequest:
    """What one usable line of the session log says about a request: shape, never text."""

    index: int  # its place among the log's usable lines, by start time
    offset_s: float  # its start after the first usable line's
    route: str
    conversation: str  # the log's salted key, or the line's own when it has none
    turn: int  # user messages so far
    messages: int
    history_chars: int | None
    history_tokens: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_ms: int | None
    status: int | None


@dataclass(frozen=True)
class ReplayRequest:
    index: int  # the LoggedRequest's
    due_s: float  # after the replay's start
    route: str
    conversation: int
    turn: int
    max_tokens: int
    parts: tuple[Part, ...]  # every message of the history as sent, the last a user's

    @property
    def chars(self) -> int:
        return sum(p[1] for p in self.parts)


@dataclass(frozen=True)
class Plan:
    speed: float
    users: int
    duration_s: float  # the last request's due time
    chars_per_token: float
    requests: tuple[ReplayRequest, ...]

    def to_json(self) -> str:
        doc = asdict(self)
        return json.dumps(doc, separators=(",", ":"))


def write_plan(plan: Plan, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.to_json())
    return path


def read_plan(path: Path) -> Plan:
    doc = json.loads(path.read_text())
    requests = tuple(
        ReplayRequest(**{**r, "parts": tuple(tuple(p) for p in r["parts"])})
        for r in doc.pop("requests")
    )
    return Plan(**doc, requests=requests)


def peak_in_flight(logged: Sequence[LoggedRequest], speed: float) -> int:
    """The most requests in flight at once at the compressed pace, each lasting its logged
    duration (the stack's own time, which a speed does not compress)."""
    events: list[tuple[float, int]] = []
    for r in logged:
        start = r.offset_s / speed
        events += [(start, 1), (start + (r.duration_ms or 0) / 1000, -1)]
    peak = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


def users_for_replay(logged: Sequence[LoggedRequest], speed: float) -> int:
    peak = peak_in_flight(logged, speed)
    return min(len(logged), max(MIN_USERS, USERS_PER_IN_FLIGHT * peak))


def target_chars(r: LoggedRequest, chars_per_token: float) -> int:
    """The history's length as sent, in characters: the router's count, else its tokens (the
    router's, else the primary's prompt on route local) at `chars_per_token`."""
    if r.history_chars is not None:
        return r.history_chars
    tokens = r.history_tokens
    if tokens is None and r.route == "local":
        tokens = r.prompt_tokens
    return round(tokens * chars_per_token) if tokens else 0


def new_roles(prior: Sequence[str], added: int, users: int) -> list[str]:
    """The roles of `added` messages after `prior`, `users` of them user messages, the last a
    user's: each new user message after an assistant reply where one is left, the rest as
    system messages up front (a conversation's start) or replies before the last question."""
    users = max(1, min(users, added))
    others = added - users
    seq: list[str] = []
    for _ in range(users):
        if others and (seq or (prior and prior[-1] == "user")):
            seq.append("assistant")
            others -= 1
        seq.append("user")
    if others and not prior and not seq[:-1]:
        return ["system"] * others + seq
    return seq[:-1] + ["assistant"] * others + seq[-1:]


def _question(
    rng: random.Random, lengths: Sequence[int], room: int
) -> int:  # the index of a question that fits `room` characters, else the shortest
    fits = [i for i, n in enumerate(lengths) if n <= room]
    return rng.choice(fits) if fits else min(range(len(lengths)), key=lambda i: lengths[i])


def build_plan(
    logged: Sequence[LoggedRequest],
    questions: Mapping[str, Sequence[str]],
    *,
    speed: float,
    chars_per_token: float,
    seed: int = 1,
) -> Plan:
    """The workload of `logged` (sorted by offset) at `speed`. `questions`: the routing
    corpus's single-turn questions by route (harness.load.prompts.chat_prompts)."""
    if speed <= 0:
        raise ValueError(f"speed {speed} must be above 0")
    rng = random.Random(seed)
    lengths = {route: [len(q) for q in qs] for route, qs in questions.items()}
    history: dict[str, tuple[Part, ...]] = {}
    turns: dict[str, int] = {}
    numbers: dict[str, int] = {}
    last_completion: dict[str, int | None] = {}
    out = []
    for r in logged:
        number = numbers.setdefault(r.conversation, len(numbers))
        prior = history.get(r.conversation, ())
        if len(prior) >= r.messages:  # a turn that repeats an earlier one's shape: start over
            prior = ()
        target = target_chars(r, chars_per_token)
        roles = new_roles(
            [p[0] for p in prior],
            r.messages - len(prior),
            r.turn - (turns.get(r.conversation, 0) if prior else 0),
        )
        gap = target - sum(p[1] for p in prior)
        reply = last_completion.get(r.conversation)
        share = max(0, gap) // len(roles)
        if reply is not None:
            share = min(share, round(reply * chars_per_token))
        parts: list[Part] = [(role, share, "", -1) for role in roles[:-1]]
        room = gap - sum(p[1] for p in parts)
        q = _question(rng, lengths[r.route], max(0, room))
        parts.append(("user", max(room, lengths[r.route][q]), r.route, q))
        full = (*prior, *parts)
        history[r.conversation], turns[r.conversation] = full, r.turn
        last_completion[r.conversation] = r.completion_tokens
        out.append(
            ReplayRequest(
                index=r.index,
                due_s=round(r.offset_s / speed, 6),
                route=r.route,
                conversation=number,
                turn=r.turn,
                max_tokens=r.completion_tokens or DEFAULT_MAX_TOKENS,
                parts=full,
            )
        )
    return Plan(
        speed=speed,
        users=users_for_replay(logged, speed),
        duration_s=max((q.due_s for q in out), default=0.0),
        chars_per_token=chars_per_token,
        requests=tuple(out),
    )


def filler_text(sentences: Sequence[str], seed: int = 1, chars: int = FILLER_CHARS) -> str:
    """A long run of filler sentences in a seeded order; messages are slices of it."""
    return notes(random.Random(seed), sentences, chars)


def _slice(filler: str, key: str, n: int) -> str:
    """`n` characters of filler from a place that `key` picks, so that two conversations
    share no prefix while one conversation's turns repeat theirs exactly."""
    if n <= 0:
        return ""
    start = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(filler)
    text = filler[start:] + " " + filler
    while len(text) < n:
        text += " " + filler
    return text[:n]


def user_text(question: str, chars: int, pad: str) -> str:
    """`chars` characters ending with `question`: filler notes before it where there is room
    (as the conversation profile pads its long turns)."""
    extra = chars - len(question)
    if extra <= 0:
        return question
    if extra >= len(NOTES) + 3:
        return padded(pad, extra - len(NOTES) - 2, question)
    if extra >= 3:
        return f"{pad[: extra - 2]}\n\n{question}"
    return question + " " * extra


def messages_for(
    request: ReplayRequest, questions: Mapping[str, Sequence[str]], filler: str
) -> list[Message]:
    """The request's messages, built from its plan (the same text for the same conversation
    and position in every turn)."""
    out: list[Message] = []
    for pos, (role, chars, route, q) in enumerate(request.parts):
        filler_part = _slice(filler, f"{request.conversation}:{pos}", chars)
        text = user_text(questions[route][q], chars, filler_part) if route else filler_part
        out.append({"role": role, "content": text})
    return out


def body_for(request: ReplayRequest, messages: list[Message]) -> dict[str, Any]:
    return {
        "model": "ai-router",
        "messages": messages,
        "max_tokens": request.max_tokens,
        # The answer runs to its logged length, as the log's did (vLLM's ignore_eos; the router
        # sends xAI only the Responses fields it builds).
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
