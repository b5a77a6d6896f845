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
request's decode time (the engine's own `vllm:request_decode_time_seconds` mean) for each
request beyond max-num-seqs (a request admitted at once waits a few milliseconds; one beyond the
limit waits for a whole request to finish).
Every stream must finish with its full usage and carry one chat completion only; through the
router, the session log must have exactly one line per request, under the id the response gave.

The twin's session log is read from the run directory, also when attached to a twin that
`harness up` started. Other targets keep theirs inside the router's container or host;
`targets.<target>.router_session_log` (or HARNESS_TARGETS_<TARGET>_ROUTER_SESSION_LOG) names a
path the harness can read, else that one check is skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from concurrency_burst import MAX_TOKENS, RUNNING, Burst, engines, max_num_seqs, run_burst

from harness.routing.corpus import FILLER_TEXT, load_filler

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# The router writes a stream's line just after its last byte: the client may be quicker.
LOG_WAIT_S = 10.0
PATHS = ("router", "primary", "classifier")


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
    # The streams themselves, which no sampling interval can miss: never more than
    # max-num-seqs of them produce tokens at once on the loaded engine.
    assert burst.overlap() <= burst.max_num_seqs, (
        f"{burst.loaded}: {burst.overlap()} streams via {burst.path} produced tokens at once, "
        f"above max-num-seqs {burst.max_num_seqs}"
    )
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
        f"requests that wait for a running one to finish ({burst.decode_s()} s of decode each): "
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
