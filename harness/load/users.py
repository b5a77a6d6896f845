"""Locust users. Imported only inside the locust subprocess: gevent's monkey-patching must never
reach the pytest process.

- ChatUser: streaming chats of both routes through the ai-router, labelled by X-Route; only
  `local` prompts when SETTINGS.search_allowed is false (a paid search route without consent).
- LongContextUser: prompts of a fraction of max-model-len, unique from the first token.
- ClassifierUser: the classification request, straight to the classifier engine.
- ConversationUser: multi-turn conversations through the ai-router, each turn with the whole
  history (harness.load.conversations).
Each writes one RequestRecord per request and fires locust's request event with the route as
the name, so locust's own CSV and JSON are per route too. A record of a chat or classifier
request carries its prompt's label from the routing corpus (expected_route); a long context
carries none (harness.load.routing says why).

Dispatch delay: each record carries when its request was meant to go out (intended_start), when
it went (actual_start, read just before its first byte is written, after its body is encoded)
and the difference (dispatch_delay_s). A user means to send its first request the moment it has
started (on_start), and each next one the moment its previous answer ended plus its think time
(think_s, 0: a closed loop, at once); with a pace (HARNESS_LOAD_PACE_S) the moment is its next
slot, one pace after the previous whatever the answers took. locust's pause between tasks
sleeps until exactly that moment (wait_time), so the delay is all the client did late: the
gevent hub waking the user only after other users' work, the previous record's writing, the
body's building and encoding. It is not the stack's latency (TTFT and E2E count from
actual_start), and it is what hides a saturated stack: a client that falls behind sends less
load than its schedule says, and the stack looks faster than it is (vLLM #54101, GuideLLM
#1048). harness.load.stats summarises it and marks a run whose client fell behind invalid.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from locust import User, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.load import conversations
from harness.load.http import HTTPParseError, StreamClient, StreamResponse
from harness.load.prompts import (
    chat_prompts,
    chat_user_prompts,
    filler_sentences,
    long_prompt,
    prompt_key,
    prompt_routes,
)
from harness.load.records import RecordWriter, RequestRecord, record_line
from harness.load.server_timing import parse_server_timing
from harness.load.settings import LoadSettings
from harness.load.sse import measure_stream

SETTINGS = LoadSettings.from_env()
_writer: RecordWriter | ShippingWriter | None = None
_counter = itertools.count()
_sent = 0


def sent() -> int:
    """Requests sent so far by every user of this process (the load shape reads it)."""
    return _sent


# A distributed run's records travel from each worker to the master as locust messages.
RECORDS_MESSAGE = "harness-record"


class ShippingWriter:
    """A locust worker's records: each one goes to the master as a message the moment it is
    complete, and the master writes the run's requests.jsonl. The same path serves a worker on
    this machine and one on another. One message per record keeps the order that makes the
    master's file complete: a worker's last records reach the master on the same connection
    before its report of zero running users, and a profile's shape ends a distributed run only
    after that report (shapes.ConstantShape.end)."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner

    def write(self, record: RequestRecord) -> None:
        self.runner.send_message(RECORDS_MESSAGE, {"line": record_line(record)})

    def close(self) -> None:
        """Nothing buffered: every record was sent as it was written."""


def writer(environment: Environment | None = None) -> RecordWriter | ShippingWriter:
    """Where this process's records go: the run's requests.jsonl, or, in a locust worker, to
    the master, which writes them there."""
    global _writer
    if _writer is None:
        runner = environment.runner if environment is not None else None
        if isinstance(runner, WorkerRunner):
            _writer = ShippingWriter(runner)
        else:
            _writer = RecordWriter(SETTINGS.records)
    return _writer


@events.init.add_listener
def _master_receives_records(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):

        def receive(msg: Any, **_: Any) -> None:
            out = writer()
            assert isinstance(out, RecordWriter)
            out.write_line(msg.data["line"])

        environment.runner.register_message(RECORDS_MESSAGE, receive)


@events.quitting.add_listener
def _close(**_: Any) -> None:
    if _writer is not None:
        _writer.close()


class _StreamingUser(User):
    abstract = True
    target = "router"
    # The pause after each answer before the user's next request: 0, a closed loop.
    think_s = 0.0
    # The route the prompt of the request being built is labelled with; body() sets it.
    expected: str | None = None
    prompt_key: str | None = None  # the labelled prompt's digest (harness.load.prompts)

    def on_start(self) -> None:
        parts = urlsplit(self.url())
        self.path = parts.path
        self.http = StreamClient(f"{parts.scheme}://{parts.netloc}", read_timeout_s=900.0)
        self.rng = random.Random(SETTINGS.seed * 1000 + next(_counter))
        # Epoch seconds: when the next request is due (the module docstring says how).
        self.due_at = time.time()

    def wait_time(self) -> float:
        """locust's pause before the next task: until the next request is due, so the schedule
        that the dispatch delay is measured against is the one locust keeps."""
        return max(0.0, self.due_at - time.time())

    def on_stop(self) -> None:
        self.http.close()

    def url(self) -> str:
        return str(self.host).rstrip("/") + "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SETTINGS.api_key}"} if SETTINGS.api_key else {}

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def clock(self) -> float:
        """The monotonic clock every timestamp of a request is read from."""
        return time.perf_counter()

    def started(self) -> float:
        """The request's start on `clock`, read just before its first byte is sent: TTFT and
        E2E count from here. A test that moves it later shows that reconciliation against the
        engine's own TTFT catches a client clock that starts late."""
        return self.clock()

    def send(self) -> None:
        global _sent
        intended = self.due_at
        _sent += 1
        rec = RequestRecord(type(self).__name__, self.target, intended, 0.0, 0, False)
        rec.request_id = uuid.uuid4().hex
        rec.worker = SETTINGS.worker or None
        headers = {**self.headers(), "X-Harness-Request": rec.request_id}
        # Encoded before the clock starts: a 50k-token prompt takes milliseconds to serialise,
        # which is the client's work, not the server's latency.
        self.expected, self.prompt_key = None, None
        payload = json.dumps(self.body()).encode()
        rec.expected_route, rec.prompt_key = self.expected, self.prompt_key
        exc: Exception | None = None
        rec.actual_start, start = time.time(), self.started()
        try:
            resp = self.http.post(self.path, payload, headers)
            try:
                rec.status = resp.status
                rec.route = resp.header("X-Route")
                rec.reason = resp.header("X-Route-Reason")
                classifier_ms = resp.header("X-Classifier-Ms")
                if classifier_ms:
                    rec.classifier_ms = float(classifier_ms)
                rec.server_timing = parse_server_timing(resp.header("Server-Timing"))
                if resp.status != 200:
                    rec.error = resp.read_all(4096).decode("utf-8", "replace")[:300]
                else:
                    timing = measure_stream(resp.reads(), clock=self.clock)
                    rec.e2e_s = self.clock() - start
                    if timing.first_token_at is not None:
                        rec.ttft_s = timing.first_token_at - start
                        rec.ttft_from_intended_s = rec.ttft_s + (rec.actual_start - intended)
                    rec.itl_s = [round(g, 6) for g in timing.gaps_s]
                    if timing.usage:
                        rec.output_tokens = timing.usage.get("completion_tokens")
                        rec.prompt_tokens = timing.usage.get("prompt_tokens")
                    rec.error = timing.error or (None if timing.done else "stream ended early")
                    rec.ok = rec.error is None and rec.ttft_s is not None
            finally:
                resp.close()
        except (OSError, HTTPParseError, ValueError) as e:
            exc, rec.error = e, f"{type(e).__name__}: {e}"[:300]
        # The answer has ended: the next request is due after the think time, or at the next
        # slot of a pace.
        paced = SETTINGS.pace_s > 0
        self.due_at = intended + SETTINGS.pace_s if paced else time.time() + self.think_s
        rec.dispatch_delay_s = round(rec.actual_start - intended, 6)
        if rec.e2e_s is None:
            rec.e2e_s = self.clock() - start
        if not rec.ok and exc is None:
            exc = RuntimeError(rec.error or f"HTTP {rec.status}")
        writer(self.environment).write(rec)
        self.environment.events.request.fire(
            request_type="POST",
            name=f"{self.target}:{rec.label}",
            response_time=rec.e2e_s * 1000,
            response_length=rec.output_tokens or 0,
            exception=exc,
            context={},
        )

    @task
    def one(self) -> None:
        self.send()


class ChatUser(_StreamingUser):
    """Short chats of both routes through the ai-router (`local` only without search)."""

    prompts = chat_user_prompts(SETTINGS.search_allowed)
    routes = prompt_routes()
    # Every local answer runs to max_tokens (vLLM's ignore_eos; the router sends xAI only the
    # Responses fields it builds): saturate keeps the primary's slots taken.
    full_answers = False

    def body(self) -> dict[str, Any]:
        question = self.rng.choice(self.prompts)
        self.expected, self.prompt_key = self.routes.get(question), prompt_key(question)
        return {
            "model": "ai-router",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": SETTINGS.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **({"ignore_eos": True} if self.full_answers else {}),
        }


class LongContextUser(_StreamingUser):
    """Long prompts through the ai-router, each unique from its first token."""

    sentences = filler_sentences()

    def body(self) -> dict[str, Any]:
        chars = int(SETTINGS.max_model_len * SETTINGS.context_fraction * SETTINGS.chars_per_token)
        text = long_prompt(self.rng, self.sentences, chars, next(_counter))
        return {
            "model": "ai-router",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": SETTINGS.max_tokens,
            # A sequence holds its KV blocks until it finishes: decoding the full budget keeps
            # the pressure on even when a model would stop early.
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }


class ClassifierUser(_StreamingUser):
    """The router's classification request, sent straight to the classifier engine."""

    target = "classifier"
    prompts = chat_prompts()
    routes = prompt_routes()

    def url(self) -> str:
        return SETTINGS.classifier_url.rstrip("/") + "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        from ai_router.classify_prompt import ROUTES, classification_messages

        question = self.rng.choice(self.prompts)
        self.expected, self.prompt_key = self.routes.get(question), prompt_key(question)
        msgs = [{"role": "user", "content": question}]
        return {
            "model": SETTINGS.classifier_model,
            "messages": classification_messages(msgs),
            "max_tokens": 4,
            "temperature": 0,
            "structured_outputs": {"choice": list(ROUTES)},
            "stream": True,
            "stream_options": {"include_usage": True},
        }


class DirectUser(_StreamingUser):
    """A short streamed chat straight to one OpenAI-compatible server (an engine, or the
    benchmark's no-op server), to measure the harness's own client overhead."""

    target = "direct"

    def url(self) -> str:
        return SETTINGS.direct_url.rstrip("/") + "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {
            "model": SETTINGS.direct_model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": SETTINGS.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }


class _TeeResponse:
    """A streamed response whose body is also kept: the next turn carries the answer's text."""

    def __init__(self, resp: StreamResponse, sink: bytearray) -> None:
        self._resp, self._sink = resp, sink
        self.status = resp.status

    def header(self, name: str) -> str | None:
        return self._resp.header(name)

    def read_all(self, limit: int = 1 << 20) -> bytes:
        return self._resp.read_all(limit)

    def reads(self) -> Iterator[bytes]:
        for piece in self._resp.reads():
            self._sink += piece
            yield piece

    def close(self) -> None:
        self._resp.close()


class _TeeClient:
    """The user's StreamClient, keeping the last request's id and answer body."""

    def __init__(self, inner: StreamClient) -> None:
        self.inner = inner
        self.sink = bytearray()
        self.request_id: str | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> _TeeResponse:
        self.sink.clear()
        self.request_id = headers.get("X-Harness-Request")
        return _TeeResponse(self.inner.post(path, body, headers), self.sink)

    def close(self) -> None:
        self.inner.close()


class ConversationUser(_StreamingUser):
    """Multi-turn conversations through the ai-router (harness.load.conversations): each turn
    sends the whole history with the assistant's actual replies, after a think time; one
    conversation in LONG_EVERY grows into the classifier's headroom band. The next turn is built
    (and a padded one fitted with the classifier's /tokenize) right after an answer, during the
    think time, so its building is not counted as the client sending late."""

    prompts: ClassVar[dict[str, list[str]]] = {
        route: chat_prompts(route)
        for route in (("local", "search") if SETTINGS.search_allowed else ("local",))
    }
    routes = prompt_routes()
    sentences = filler_sentences()
    # Shared by the process's users: the band is measured once, and the shape reads the count.
    band: conversations.Band | None = None
    band_turns_answered = 0
    _numbers = itertools.count()
    _turn_log: Any = None

    def on_start(self) -> None:
        super().on_start()
        self.tee = _TeeClient(self.http)
        self.http = self.tee  # type: ignore[assignment]
        self.tok = httpx.Client(base_url=SETTINGS.classifier_url.rstrip("/"), timeout=120.0)
        cls = type(self)
        if cls.band is None:
            try:
                cls.band = conversations.measure_band(
                    self._tokenize, SETTINGS.classifier_model, SETTINGS.max_model_len
                )
            except (httpx.HTTPError, KeyError, ValueError):
                # Then no conversation aims into the band; the run's trimmed count shows it.
                cls.band = None
        self.tag = f"{SETTINGS.worker or 'p'}{os.getpid()}"
        self._new_conversation()
        self._prepare()
        self.due_at = time.time()

    def on_stop(self) -> None:
        super().on_stop()
        self.tok.close()

    def _tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.tok.post("/tokenize", json=body)
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def _count(self, messages: list[dict[str, str]]) -> int:
        body = {"model": SETTINGS.classifier_model, "messages": messages}
        return int(self._tokenize({**body, "add_generation_prompt": True})["count"])

    def _new_conversation(self) -> None:
        number = next(self._numbers)
        band = type(self).band
        self.conversation = f"{self.tag}-{number}"
        self.plan = conversations.plan(
            self.rng, number, self.prompts, SETTINGS.max_model_len,
            band.target() if band else None,
        )  # fmt: skip
        self.history: list[dict[str, str]] = []
        self.index = 0

    def _prepare(self) -> None:
        """The next turn's messages and size."""
        turn = self.plan[self.index]
        content, tokens = turn.question, None
        if turn.target_tokens is not None:
            pad = conversations.notes(self.rng, self.sentences, turn.target_tokens * 6)
            content, tokens = conversations.fit_padding(
                self._count, self.history, turn.question, pad, turn.target_tokens
            )
        self.messages = [*self.history, {"role": "user", "content": content}]
        if tokens is None:
            try:
                tokens = self._count(self.messages)
            except (httpx.HTTPError, KeyError, ValueError):
                tokens = None  # the turn goes out; its history length is unknown
        self.tokens = tokens

    def body(self) -> dict[str, Any]:
        turn = self.plan[self.index]
        self.expected = self.routes.get(turn.question, turn.route)
        return {
            "model": "ai-router",
            "messages": self.messages,
            "max_tokens": SETTINGS.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def _log_turn(self, line: conversations.TurnLine) -> None:
        cls = type(self)
        if cls._turn_log is None:
            path = SETTINGS.records.with_name(conversations.TURN_LOG)
            path.parent.mkdir(parents=True, exist_ok=True)
            cls._turn_log = path.open("a", buffering=1)
        cls._turn_log.write(line.line() + "\n")

    def send(self) -> None:
        """One turn (the inherited task sends it): the request, its place in the conversation,
        and the next turn built from the answer."""
        turn = self.plan[self.index]
        self.think_s = self.rng.uniform(*conversations.THINK_S)
        super().send()
        answered = self.tee.sink and self.tee.request_id is not None
        reply = conversations.reply_text(bytes(self.tee.sink)) if answered else ""
        self._log_turn(
            conversations.TurnLine(
                request_id=self.tee.request_id or "",
                conversation=self.conversation,
                turn=self.index + 1,
                turns_planned=len(self.plan),
                messages=len(self.messages),
                history_tokens=self.tokens,
                history_chars=sum(len(m["content"]) for m in self.messages),
                padded=turn.target_tokens is not None,
                band=turn.band,
                expected_route=turn.route,
            )
        )
        if turn.band or (turn.target_tokens and self.index == len(self.plan) - 1):
            type(self).band_turns_answered += 1
        self.index += 1
        if not reply or self.index >= len(self.plan):
            # An unanswered turn ends its conversation: a history without the reply is not
            # what a client would send next.
            self._new_conversation()
        else:
            self.history = [*self.messages, {"role": "assistant", "content": reply}]
        self._prepare()
        # A turn that took longer to build than the think time is due when it is built.
        self.due_at = max(self.due_at, time.time())
