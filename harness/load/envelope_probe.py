"""One cell of an engine's safe envelope, live: `concurrency` streamed completions of exactly
`prompt_tokens` prompt tokens sent to the engine at once, each decoding `output_tokens` tokens
(EOS ignored), with the engine's gauges sampled every SAMPLE_EVERY_S.

Prompts are token ids, so their length is exact: the engine's own tokenization of the filler
text gives the ids, and each request starts at another rotation of them, so that no two
requests of the envelope share a first KV block (a prefix-cache hit would shorten the prefill
and share blocks, and the cell would measure less than it sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.load.prompts import filler_sentences
from harness.load.stats import percentile
from harness.telemetry.prom import KV_USAGE, parse

SAMPLE_EVERY_S = 0.1
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
PREEMPTIONS = "vllm:num_preemptions_total"


@dataclass
class Engine:
    """The engine a grid is measured on."""

    url: str  # base URL, without /v1
    model: str
    ids: list[int] = field(default_factory=list)  # filler token ids, from the engine
    sent: int = 0  # requests sent so far: each one's rotation of `ids`


def filler_ids(url: str, model: str, timeout_s: float = 60.0) -> list[int]:
    """The engine's token ids of the filler text (its /tokenize)."""
    text = " ".join(filler_sentences())
    r = httpx.post(url + "/tokenize", json={"model": model, "prompt": text}, timeout=timeout_s)
    r.raise_for_status()
    ids = [int(t) for t in r.json()["tokens"]]
    if len(ids) < 64:
        raise ValueError(f"{url}/tokenize gave {len(ids)} tokens for the filler text")
    return ids


def prompt_ids(engine: Engine, tokens: int) -> list[int]:
    """`tokens` ids, starting at the next unused rotation of the filler's ids."""
    ids, k = engine.ids, engine.sent
    engine.sent += 1
    start = (k * 97) % len(ids)
    rotated = ids[start:] + ids[:start]
    reps = tokens // len(rotated) + 1
    return (rotated * reps)[:tokens]


async def _stream(
    http: httpx.AsyncClient, engine: Engine, prompt: list[int], output_tokens: int, t0: float
) -> dict[str, Any]:
    body = {
        "model": engine.model, "prompt": prompt, "max_tokens": output_tokens,
        "ignore_eos": True, "temperature": 0, "stream": True,
    }  # fmt: skip
    out: dict[str, Any] = {"ok": False, "ttft_s": None, "e2e_s": None, "error": None}
    try:
        async with http.stream("POST", engine.url + "/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")[:200]
                out["error"] = f"HTTP {resp.status_code}: {text}"
                return out
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if out["ttft_s"] is None and chunk.get("choices"):
                    out["ttft_s"] = time.monotonic() - t0
        out["ok"], out["e2e_s"] = True, time.monotonic() - t0
    except (httpx.HTTPError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def _gauges(
    http: httpx.AsyncClient, url: str, seen: dict[str, float], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            s = parse((await http.get(url + "/metrics", timeout=5.0)).text)
            seen["running_max"] = max(seen["running_max"], s.value(RUNNING))
            seen["waiting_max"] = max(seen["waiting_max"], s.value(WAITING))
            seen["kv_peak"] = max(seen["kv_peak"], s.value(KV_USAGE))
            seen["samples"] += 1
        except (httpx.HTTPError, ValueError):
            seen["scrape_errors"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


async def _preemptions(http: httpx.AsyncClient, url: str) -> float:
    return parse((await http.get(url + "/metrics", timeout=10.0)).text).value(PREEMPTIONS)


async def _cell(
    engine: Engine, prompt_tokens: int, concurrency: int, output_tokens: int, timeout_s: float
) -> dict[str, Any]:
    prompts = [prompt_ids(engine, prompt_tokens) for _ in range(concurrency)]
    limits = httpx.Limits(max_connections=concurrency + 2)
    seen = dict.fromkeys(("running_max", "waiting_max", "kv_peak", "samples", "scrape_errors"), 0.0)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as http:
        before = await _preemptions(http, engine.url)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_gauges(http, engine.url, seen, stop))
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(_stream(http, engine, p, output_tokens, t0) for p in prompts)
        )
        wall = time.monotonic() - t0
        stop.set()
        await sampler
        preempted = await _preemptions(http, engine.url) - before
    ttft = [r["ttft_s"] for r in results if r["ok"] and r["ttft_s"] is not None]
    e2e = [r["e2e_s"] for r in results if r["ok"]]
    errors = [r["error"] for r in results if not r["ok"]]
    return {
        "requests": concurrency,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:2],
        "ttft_p95": percentile(ttft, 95) if ttft else None,
        "e2e_p95": percentile(e2e, 95) if e2e else None,
        "preemptions": preempted,
        "wall_s": round(wall, 2),
        **seen,
    }


def run_cell(
    engine: Engine,
    prompt_tokens: int,
    concurrency: int,
    output_tokens: int,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """One cell, measured: requests, errors, p95 TTFT and E2E (client clock, from the common
    send), the most requests running and waiting, the KV usage peak, the preemptions."""
    return asyncio.run(_cell(engine, prompt_tokens, concurrency, output_tokens, timeout_s))


def wait_idle(url: str, within_s: float = 120.0) -> float:
    """Wait until the engine runs and queues nothing (what a cell left), at most `within_s`."""
    t0 = time.monotonic()
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() - t0 < within_s:
            try:
                s = parse(http.get(url + "/metrics").text)
                if s.value(RUNNING) + s.value(WAITING) == 0:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    return time.monotonic() - t0
