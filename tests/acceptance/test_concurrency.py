"""Concurrency at max-num-seqs: more streamed chats than an engine runs at once, through the
router and straight to each engine.

Each burst sends max-num-seqs + 2 streamed chats at the same moment while a sampler reads every
engine's /metrics about every 100 ms. The engine must run at most max-num-seqs of them, and the
rest must wait; through the router, the primary must still get them together, or the router
serialises what the engines could run in parallel.

The sampler's gauges are the direct view, but a scrape can take most of a short burst on a busy
machine. So "they ran together" and "the rest waited" also have evidence that no sampling rate
can miss: the streams' own token intervals overlap (max-num-seqs of them produce tokens at the
same time), and the engine's `vllm:request_queue_time_seconds_sum` grows by at least half of a
request's decode time for each request beyond max-num-seqs (a request admitted at once waits a
few milliseconds; one beyond the limit waits for a whole request to finish).
Every stream must finish with its full usage and carry one chat completion only; through the
router, the session log must have exactly one line per request, under the id the response gave.

The twin's session log is read from the run directory, also when attached to a twin that
`harness up` started. Other targets keep theirs inside the router's container or host;
`targets.<target>.router_session_log` (or HARNESS_TARGETS_<TARGET>_ROUTER_SESSION_LOG) names a
path the harness can read, else that one check is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from harness.routing.corpus import FILLER_TEXT, ROUTING_EVAL, load_filler, load_routing
from harness.telemetry.prom import parse

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

EXTRA = 2  # requests beyond max-num-seqs: they must wait
# Long enough that a request beyond max-num-seqs waits far longer than one admitted at once, on
# the twin's 2 CPU cores as well as on the card; the engine is told to ignore EOS so that every
# stream decodes exactly this many tokens.
MAX_TOKENS = 128
SAMPLE_EVERY_S = 0.1
# The router writes a stream's line just after its last byte: the client may be quicker.
LOG_WAIT_S = 10.0
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
QUEUE_SUM = "vllm:request_queue_time_seconds_sum"
QUEUE_COUNT = "vllm:request_queue_time_seconds_count"
# A request beyond max-num-seqs waits for a running one to finish: at least its decode time,
# counted here at half to leave room for arrivals spread out by the router's classifier call.
WAIT_SHARE = 0.5
# The engine records a request's queue time when the request finishes, which may be just after
# the client read its last byte.
QUEUE_WAIT_S = 5.0
PATHS = ("router", "primary", "classifier")


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

    def overlap(self) -> int:
        """The most streams that were producing tokens at the same moment (client clock)."""
        spans = [(s.ttft_s, s.e2e_s) for s in self.streams if s.ttft_s is not None and s.e2e_s]
        return max((sum(1 for a, b in spans if a <= t < b) for t, _ in spans), default=0)

    def min_decode_s(self) -> float | None:
        """The shortest time any stream took from its first token to its end."""
        spans = [s.e2e_s - s.ttft_s for s in self.streams if s.ttft_s is not None and s.e2e_s]
        return min(spans) if spans else None

    def wait_bound_s(self) -> float | None:
        """The queue time the requests beyond max-num-seqs add up to at least."""
        decode = self.min_decode_s()
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


def session_log(stack: Any, settings: Any) -> Path | None:
    configured = settings.typed.target(stack.target).router_session_log
    if configured:
        return Path(configured)
    router = stack.router
    # The process twin's router, in this session or (attach) one that `harness up` started:
    # harness/stack/process.py starts it with ROUTER_SESSION_LOG beside its log.
    if stack.target in ("twin", "attach") and router.log_path is not None:
        return Path(router.log_path).with_name(f"{router.name}-session.jsonl")
    return None


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


async def queue_totals(http: httpx.AsyncClient, url: str) -> tuple[float, float]:
    r = await http.get(url + "/metrics", timeout=10.0)
    r.raise_for_status()
    lines = [x for x in r.text.splitlines() if x.startswith("vllm:request_queue_time_seconds_")]
    scrape = parse("\n".join(lines))
    return scrape.value(QUEUE_SUM), scrape.value(QUEUE_COUNT)


async def queue_delta(
    http: httpx.AsyncClient, url: str, before: tuple[float, float], requests: int
) -> tuple[float, float]:
    """The queue time the engine recorded since `before`, once it counts `requests` more."""
    deadline = time.monotonic() + QUEUE_WAIT_S
    while True:
        total, count = await queue_totals(http, url)
        if count - before[1] >= requests or time.monotonic() > deadline:
            return total - before[0], count - before[1]
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
            if stream.ttft_s is None:
                stream.ttft_s = time.monotonic() - start
        part = 1 if choices[0].get("finish_reason") else 0
    if part < last:
        stream.problems.append(f"a stream part out of order ({part} after {last})")
    return max(last, part)


async def run_burst(stack: Any, path: str, filler: list[str]) -> Burst:
    loaded = "primary" if path == "router" else path
    seqs = max_num_seqs(stack, loaded)
    count = seqs + EXTRA
    headers = {"Authorization": f"Bearer {stack.api_key}"} if path == "router" else {}
    base = stack.router.url if path == "router" else engines(stack)[path].url
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
            queued_before = await queue_totals(probe, loaded_url)
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
            queued_s, queued_n = await queue_delta(probe, loaded_url, queued_before, count)
    b = Burst(path, engines(stack)[loaded].name, seqs, streams, gauges, wall)
    b.queued_s, b.queued_requests = queued_s, queued_n
    return b


@pytest.fixture(scope="module")
def filler() -> list[str]:
    return load_filler(FILLER_TEXT)


@pytest.fixture(scope="module")
def results(run_record: Any) -> Any:
    out: dict[str, Any] = {}
    yield out
    run_record.put("acceptance", "concurrency", out)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=PATHS)
async def burst(
    request: pytest.FixtureRequest,
    stack: Any,
    harness_settings: Any,
    filler: list[str],
    results: dict[str, Any],
) -> AsyncIterator[Burst]:
    path = str(request.param)
    log = session_log(stack, harness_settings) if path == "router" else None
    offset = log.stat().st_size if log is not None and log.exists() else 0
    b = await run_burst(stack, path, filler)
    b.log_offset = offset
    results[path] = b.summary()
    print(f"concurrency {path}: {json.dumps(b.summary())}")
    yield b


async def test_every_stream_completes_with_full_usage(burst: Burst) -> None:
    problems: list[str] = []
    for s in burst.streams:
        where = f"{burst.path} request {s.index}"
        problems += [f"{where}: {p}" for p in s.problems]
        if s.status != 200:
            continue
        if not s.done:
            problems.append(f"{where}: the stream ended without data: [DONE]")
        usage = s.usage or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not (isinstance(prompt, int) and prompt > 0):
            problems.append(f"{where}: usage has no prompt_tokens ({usage or 'no usage chunk'})")
        if completion != MAX_TOKENS:
            problems.append(
                f"{where}: usage says {completion} completion tokens, {MAX_TOKENS} were asked "
                "for with ignore_eos"
            )
        if s.token_chunks == 0:
            problems.append(f"{where}: no chunk carried a token")
    assert not problems, "; ".join(problems)


async def test_streams_do_not_mix(burst: Burst) -> None:
    """Each stream is one completion: a single chunk id, not shared with any other stream."""
    problems: list[str] = []
    owners: dict[str, int] = {}
    for s in burst.streams:
        if len(s.ids) != 1 or len(s.models) != 1:
            problems.append(
                f"{burst.path} request {s.index}: chunks of {len(s.ids)} completions "
                f"({sorted(s.ids)[:4]}) and models {sorted(s.models)}"
            )
        for cid in s.ids:
            if cid in owners:
                problems.append(
                    f"{burst.path} requests {owners[cid]} and {s.index} both carry chunks of {cid}"
                )
            owners[cid] = s.index
    assert not problems, "; ".join(problems)


async def test_running_never_exceeds_max_num_seqs(burst: Burst, stack: Any) -> None:
    for role, svc in engines(stack).items():
        g = burst.gauges[svc.name]
        limit = max_num_seqs(stack, role)
        assert g.samples > 0, f"{svc.name}: no /metrics sample during the {burst.path} burst"
        assert g.max_running <= limit, (
            f"{svc.name}: {RUNNING} reached {g.max_running:g} during the {burst.path} burst, "
            f"above max-num-seqs {limit}"
        )


async def test_requests_beyond_max_num_seqs_wait(burst: Burst) -> None:
    """max-num-seqs requests run together and the rest wait: seen by the sampler's gauges, or,
    where the samples missed the moment, by the streams' overlap and the engine's queue time."""
    g = burst.gauges[burst.loaded]
    n, seqs = len(burst.streams), burst.max_num_seqs
    bound = burst.wait_bound_s()
    together = g.max_running >= seqs or burst.overlap() >= seqs
    waited = g.max_waiting > 0 or (
        bound is not None and burst.queued_s is not None and burst.queued_s >= bound
    )
    assert together and waited, (
        f"{burst.loaded}, {n} concurrent requests via {burst.path} (max-num-seqs {seqs}, "
        f"{burst.wall_s:.1f} s): gauges over {g.samples} samples saw at most "
        f"{g.max_running:g} running and {g.max_waiting:g} waiting; at most {burst.overlap()} "
        f"streams produced tokens at once; the engine counted {burst.queued_s} s of queue time "
        f"over {burst.queued_requests} requests, against {bound} s expected for {n - seqs} "
        "requests that wait for a running one to finish: "
        + ("the requests never reached the engine together" if not together else "none waited")
    )


@pytest.mark.parametrize("burst", ["router"], indirect=True)
async def test_session_log_has_one_line_per_request(
    burst: Burst, stack: Any, harness_settings: Any
) -> None:
    path = session_log(stack, harness_settings)
    if path is None:
        pytest.skip(
            f"the {stack.target} router's session log is not readable from the host; set "
            f"targets.{stack.target}.router_session_log to a path that is"
        )
    sent = {s.request_id: s for s in burst.streams}
    assert None not in sent, "a response of the burst has no X-Request-Id"
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        lines = read_lines(path, burst.log_offset or 0)
        logged = [line.get("request_id") for line in lines]
        if set(sent) <= set(logged) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    chat = [x for x in lines if x.get("path") == "/v1/chat/completions"]
    problems: list[str] = []
    missing = [rid for rid in sent if rid not in logged]
    if missing:
        problems.append(
            f"{len(missing)} of {len(sent)} requests have no line in the router's session log "
            f"({path}): {missing}"
        )
    twice = sorted({rid for rid in logged if logged.count(rid) > 1})
    if twice:
        problems.append(f"request ids logged more than once: {twice}")
    strangers = [x.get("request_id") for x in chat if x.get("request_id") not in sent]
    if strangers:
        problems.append(f"chat lines for requests this test never sent: {strangers}")
    for line in chat:
        s = sent.get(line.get("request_id"))
        if s is None:
            continue
        usage = s.usage or {}
        got = (line.get("status"), line.get("stream"), line.get("route"))
        want = (200, True, s.route)
        tokens = (line.get("prompt_tokens"), line.get("completion_tokens"))
        if got != want or tokens != (usage.get("prompt_tokens"), usage.get("completion_tokens")):
            problems.append(
                f"request {s.index} ({s.request_id}): logged status/stream/route {got} and "
                f"tokens {tokens}, the response had {want} and usage {usage}"
            )
    assert not problems, "; ".join(problems)


def read_lines(path: Path, offset: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", errors="replace")
    return [json.loads(x) for x in text.splitlines() if x.strip()]
