"""A burst of concurrent streamed chats at max-num-seqs, and what it leaves behind: each
stream's chunks and timings, the engines' running and waiting gauges (sampled), and the loaded
engine's queue time over the burst. tests/acceptance/test_concurrency.py judges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from harness.routing.corpus import ROUTING_EVAL, load_routing
from harness.telemetry.prom import parse

EXTRA = 2  # requests beyond max-num-seqs: they must wait
# Long enough that a request beyond max-num-seqs waits far longer than one admitted at once, on
# the twin's 2 CPU cores as well as on the card; the engine is told to ignore EOS so that every
# stream decodes exactly this many tokens.
# Each answer long enough to hold its slot while the rest of the burst arrives: through the
# router the classifier passes requests on in waves of its own max-num-seqs, and at 128 tokens
# the twin's primary finished the first wave before the second came (overlap 2 of 3, 1.2 s).
MAX_TOKENS = 512
SAMPLE_EVERY_S = 0.1
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
QUEUE_SUM = "vllm:request_queue_time_seconds_sum"
QUEUE_COUNT = "vllm:request_queue_time_seconds_count"
DECODE_SUM = "vllm:request_decode_time_seconds_sum"
DECODE_COUNT = "vllm:request_decode_time_seconds_count"
# Streams count as running together when they produce tokens together for a fifth of the
# shortest decode, and for at least the client's read lag: how late a busy client may read a
# token after the engine sent it.
SUSTAINED_SHARE = 0.2
READ_LAG_S = 0.1
# A request beyond max-num-seqs waits for a running one to finish: at least its decode time
# (the engine's own mean over the burst, which holds also when most decoded tokens carry no
# visible text), counted here at half to leave room for arrivals spread out by the router's
# classifier call.
WAIT_SHARE = 0.5
# The engine records a request's queue time when the request finishes, which may be just after
# the client read its last byte.
QUEUE_WAIT_S = 5.0


@dataclass
class Stream:
    index: int
    status: int = 0
    request_id: str | None = None
    route: str | None = None
    ids: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    usage: dict[str, Any] | None = None
    token_chunks: int = 0
    done: bool = False
    problems: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    last_token_s: float | None = None  # the last chunk with text: the engine freed the slot
    e2e_s: float | None = None


@dataclass
class Gauge:
    max_running: float = 0.0
    max_waiting: float = 0.0
    samples: int = 0
    errors: int = 0


@dataclass
class Burst:
    path: str  # "router", or the engine's role
    loaded: str  # the engine the requests end on
    max_num_seqs: int
    streams: list[Stream]
    gauges: dict[str, Gauge]
    wall_s: float
    log_offset: int | None = None
    # The loaded engine's queue-time histogram over the burst: seconds in WAITING, requests.
    queued_s: float | None = None
    queued_requests: float | None = None
    # The loaded engine's decode-time histogram over the burst: seconds decoding, requests.
    decoded_s: float | None = None
    decoded_requests: float | None = None

    def _token_spans(self) -> list[tuple[float, float]]:
        """Each stream's first to last token (client clock, one origin for the burst). Not to
        the end of the stream: the finish, usage and [DONE] events come after the engine has
        freed the request's slot, and would count a stream as running while the next decodes."""
        return [
            (s.ttft_s, s.last_token_s)
            for s in self.streams
            if s.ttft_s is not None and s.last_token_s is not None
        ]

    def overlap(self) -> int:
        """The most streams that produced tokens together for at least `sustained_s()`.

        The client stamps a token when it reads it, and on a busy machine it may read a
        finished stream's last token after the engine has already started the request that
        took the freed slot: for a moment, one stream more than max-num-seqs seems to run
        (4 of 3 in one CI run, with 0.7 s decodes). Requests that truly share the engine
        produce tokens together for most of their decode, far longer than that."""
        return sustained_overlap(self._token_spans(), self.sustained_s())

    def sustained_s(self) -> float:
        """How long streams must produce tokens together to count as running together: a
        fifth of the shortest decode, and never under the client's read lag allowance."""
        decode = self.min_decode_s()
        return max(READ_LAG_S, SUSTAINED_SHARE * decode) if decode else READ_LAG_S

    def min_decode_s(self) -> float | None:
        """The shortest time any stream took from its first token to its last."""
        spans = [b - a for a, b in self._token_spans()]
        return min(spans) if spans else None

    def decode_s(self) -> float | None:
        """A request's decode time: the engine's mean over the burst, else (an engine without
        the histogram) the shortest first-to-last visible token span the client saw."""
        if self.decoded_s and self.decoded_requests:
            return self.decoded_s / self.decoded_requests
        return self.min_decode_s()

    def wait_bound_s(self) -> float | None:
        """The queue time the requests beyond max-num-seqs add up to at least."""
        decode = self.decode_s()
        extra = len(self.streams) - self.max_num_seqs
        return None if decode is None else WAIT_SHARE * extra * decode

    def summary(self) -> dict[str, Any]:
        e2e = [s.e2e_s for s in self.streams if s.e2e_s is not None]
        return {
            "requests": len(self.streams),
            "max_num_seqs": self.max_num_seqs,
            "loaded_engine": self.loaded,
            "wall_s": round(self.wall_s, 2),
            "max_e2e_s": round(max(e2e), 2) if e2e else None,
            "overlap": self.overlap(),
            "queued_s": None if self.queued_s is None else round(self.queued_s, 3),
            "queued_requests": self.queued_requests,
            "decode_s": None if (d := self.decode_s()) is None else round(d, 3),
            "wait_bound_s": None if (b := self.wait_bound_s()) is None else round(b, 3),
            "engines": {
                name: {
                    "max_running": g.max_running,
                    "max_waiting": g.max_waiting,
                    "samples": g.samples,
                    "scrape_errors": g.errors,
                }
                for name, g in self.gauges.items()
            },
        }


def sustained_overlap(spans: list[tuple[float, float]], min_s: float) -> int:
    """The most spans that all cover one stretch of at least `min_s` seconds."""
    edges = sorted({t for span in spans for t in span})
    best = 0
    for i, start in enumerate(edges):
        for end in edges[i + 1 :]:
            if end - start < min_s:
                continue
            best = max(best, sum(1 for a, b in spans if a <= start and end <= b))
    return best


def engines(stack: Any) -> dict[str, Any]:
    return {"classifier": stack.classifier, "primary": stack.primary}


def max_num_seqs(stack: Any, role: str) -> int:
    spec = stack.spec.classifier if role == "classifier" else stack.spec.primary
    return int(spec.engine.max_num_seqs)


def conversation(index: int, cue: str, filler: list[str]) -> list[dict[str, str]]:
    # Some hundred tokens of history, different for every request so that no two share a
    # prefix past the first sentence: each one prefills on its own.
    history = " ".join(filler[index % len(filler) :] + filler[: index % len(filler)])[:1500]
    return [
        {"role": "user", "content": f"Hello, this is conversation number {index}."},
        {"role": "assistant", "content": history},
        {"role": "user", "content": cue},
    ]


def chat_body(model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def local_cue(http: httpx.AsyncClient, count: int, filler: list[str]) -> str:
    """A question that the router sends to the primary in every one of the burst's shapes."""
    items = [it for it in load_routing(ROUTING_EVAL) if len(it.messages) == 1]
    tried: list[str] = []
    for item in [it for it in items if it.route == "local"][:8]:
        routes = []
        for i in range(count):
            messages = conversation(i, item.question, filler)
            r = await http.post("/v1/route", json={"messages": messages})
            r.raise_for_status()
            routes.append(r.json()["route"])
        if set(routes) == {"local"}:
            return item.question
        tried.append(f"{item.question[:40]!r}: {routes}")
    pytest.fail("no local question routes local in every burst shape: " + "; ".join(tried))


async def sample(
    http: httpx.AsyncClient, urls: dict[str, str], gauges: dict[str, Gauge], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        for name, url in urls.items():
            try:
                r = await http.get(url + "/metrics", timeout=5.0)
                r.raise_for_status()
            except httpx.HTTPError:
                gauges[name].errors += 1
                continue
            # Only the two gauges: parsing the whole exposition every 100 ms would load the
            # machine under test.
            lines = [x for x in r.text.splitlines() if x.startswith("vllm:num_requests_")]
            scrape = parse("\n".join(lines))
            g = gauges[name]
            g.max_running = max(g.max_running, scrape.value(RUNNING))
            g.max_waiting = max(g.max_waiting, scrape.value(WAITING))
            g.samples += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


HISTOGRAMS = (QUEUE_SUM, QUEUE_COUNT, DECODE_SUM, DECODE_COUNT)


async def engine_totals(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    """The queue-time and decode-time histograms' sums and counts; 0 where the engine has none."""
    r = await http.get(url + "/metrics", timeout=10.0)
    r.raise_for_status()
    lines = [x for x in r.text.splitlines() if x.startswith(HISTOGRAMS)]
    scrape = parse("\n".join(lines))
    return {name: scrape.value(name) for name in HISTOGRAMS}


async def engine_delta(
    http: httpx.AsyncClient, url: str, before: dict[str, float], requests: int
) -> dict[str, float]:
    """What the engine recorded since `before`, once it counts `requests` more in both."""
    deadline = time.monotonic() + QUEUE_WAIT_S
    while True:
        now = await engine_totals(http, url)
        delta = {name: now[name] - before[name] for name in HISTOGRAMS}
        done = min(delta[QUEUE_COUNT], delta[DECODE_COUNT]) >= requests
        if done or time.monotonic() > deadline:
            return delta
        await asyncio.sleep(0.2)


async def stream_chat(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], stream: Stream, start: float
) -> None:
    last = -1
    try:
        async with http.stream("POST", url, json=body) as resp:
            stream.status = resp.status_code
            stream.request_id = resp.headers.get("X-Request-Id")
            stream.route = resp.headers.get("X-Route")
            if resp.status_code != 200:
                await resp.aread()
                stream.problems.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if stream.done:
                    stream.problems.append(f"data after [DONE]: {data[:80]}")
                if data == "[DONE]":
                    stream.done = True
                    continue
                try:
                    chunk = json.loads(data)
                except ValueError:
                    stream.problems.append(f"a data line that is not JSON: {data[:80]}")
                    continue
                last = check_chunk(chunk, stream, last, start)
    except httpx.HTTPError as exc:
        stream.problems.append(f"{type(exc).__name__}: {exc}")
    stream.e2e_s = time.monotonic() - start


def check_chunk(chunk: dict[str, Any], stream: Stream, last: int, start: float) -> int:
    """One chat.completion.chunk: its id and model, its place in the stream; the index of the
    stream part it belongs to (0 role/content, 1 finish, 2 usage) must never go back."""
    if "error" in chunk:
        stream.problems.append(f"in-band error {chunk['error']}")
        return last
    stream.ids.add(str(chunk.get("id")))
    stream.models.add(str(chunk.get("model")))
    if chunk.get("usage") and not chunk.get("choices"):
        stream.usage = chunk["usage"]
        part = 2
    else:
        choices = chunk.get("choices") or []
        if len(choices) != 1 or choices[0].get("index") != 0:
            stream.problems.append(f"a chunk with choices {choices!r}")
            return last
        delta = choices[0].get("delta") or {}
        if any(delta.get(k) for k in ("content", "reasoning", "reasoning_content")):
            stream.token_chunks += 1
            stream.last_token_s = time.monotonic() - start
            if stream.ttft_s is None:
                stream.ttft_s = stream.last_token_s
        part = 1 if choices[0].get("finish_reason") else 0
    if part < last:
        stream.problems.append(f"a stream part out of order ({part} after {last})")
    return max(last, part)


async def run_burst(stack: Any, path: str, filler: list[str]) -> Burst:
    loaded = "primary" if path == "router" else path
    seqs = max_num_seqs(stack, loaded)
    count = seqs + EXTRA
    headers = {"Authorization": f"Bearer {stack.api_key}"} if path == "router" else {}
    base = stack.entry.url if path == "router" else engines(stack)[path].url
    limits = httpx.Limits(max_connections=count + 4, max_keepalive_connections=count + 4)
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=timeout
    ) as http:
        if path == "router":
            cue = await local_cue(http, count, filler)
            model = "ai-router"
        else:
            cue = next(it.question for it in load_routing(ROUTING_EVAL) if it.route == "local")
            model = str(engines(stack)[path].model_name)
        urls = {svc.name: svc.url for svc in engines(stack).values()}
        gauges = {name: Gauge() for name in urls}
        stop = asyncio.Event()
        streams = [Stream(i) for i in range(count)]
        loaded_url = engines(stack)[loaded].url
        async with httpx.AsyncClient(timeout=timeout) as probe:
            before = await engine_totals(probe, loaded_url)
            sampler = asyncio.create_task(sample(probe, urls, gauges, stop))
            start = time.monotonic()
            await asyncio.gather(
                *(
                    stream_chat(
                        http,
                        "/v1/chat/completions",
                        chat_body(model, conversation(s.index, cue, filler)),
                        s,
                        start,
                    )
                    for s in streams
                )
            )
            wall = time.monotonic() - start
            stop.set()
            await sampler
            delta = await engine_delta(probe, loaded_url, before, count)
    b = Burst(path, engines(stack)[loaded].name, seqs, streams, gauges, wall)
    b.queued_s, b.queued_requests = delta[QUEUE_SUM], delta[QUEUE_COUNT]
    b.decoded_s, b.decoded_requests = delta[DECODE_SUM], delta[DECODE_COUNT]
    return b
