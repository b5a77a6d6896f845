"""Reconciliation of the client's requests, tokens and TTFT against an engine's counters."""

from __future__ import annotations

from harness.load.reconcile import TTFT, reconcile
from harness.load.records import RequestRecord
from harness.telemetry.prom import Scrape, parse

BOUNDS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, float("inf"))


def scrape(ttfts: list[float], prompt: int, generated: int, reasons: dict[str, int]) -> str:
    lines = [f'vllm:request_success_total{{finished_reason="{r}"}} {n}' for r, n in reasons.items()]
    lines += [f"vllm:prompt_tokens_total {prompt}", f"vllm:generation_tokens_total {generated}"]
    for b in BOUNDS:
        le = "+Inf" if b == float("inf") else repr(b)
        lines.append(f'{TTFT}_bucket{{le="{le}"}} {sum(t <= b for t in ttfts)}')
    lines += [f"{TTFT}_sum {sum(ttfts)}", f"{TTFT}_count {len(ttfts)}"]
    return "\n".join(lines) + "\n"


def rec(ttft: float, classifier_ms: float | None = None, ok: bool = True) -> RequestRecord:
    return RequestRecord(
        "ChatUser", "router", 0.0, 0.0, 200, ok, route="local", ttft_s=ttft,
        classifier_ms=classifier_ms, prompt_tokens=30, output_tokens=8,
    )  # fmt: skip


ENGINE = [0.030, 0.050, 0.070, 0.090]
BEFORE = parse(scrape([0.5], 100, 10, {"stop": 1}))


def after(ttfts: list[float], reasons: dict[str, int] | None = None) -> Scrape:
    return parse(
        scrape([0.5, *ttfts], 100 + 30 * 4, 10 + 8 * 4, reasons or {"stop": 1, "length": 4})
    )


def test_a_client_a_few_ms_above_the_engine_reconciles() -> None:
    # Through the router: 40 ms of classification is in the client's TTFT, not the engine's.
    records = [rec(t + 0.003 + 0.040, classifier_ms=40.0) for t in ENGINE]
    out = reconcile(records, BEFORE, after(ENGINE))
    assert out["problems"] == []
    assert out["engine_requests"] == 4 and out["engine_prompt_tokens"] == 120
    assert 2.9 < out["ttft_mean_diff_ms"] < 3.1


def test_a_late_client_clock_does_not_reconcile() -> None:
    # The clock started 10 ms after the request left: every TTFT 10 ms short. The exact means
    # show it; no TTFT crossed a bucket bound, so the buckets alone do not.
    records = [rec(t + 0.003 - 0.010) for t in ENGINE]
    out = reconcile(records, BEFORE, after(ENGINE))
    assert [p for p in out["problems"] if "starts late" in p], out["problems"]
    assert not [p for p in out["problems"] if "shorter than the engine's own" in p]
    # 20 ms late: the 30 ms request now reads 13 ms, below the engine's 20 ms bound.
    records = [rec(t + 0.003 - 0.020) for t in ENGINE]
    out = reconcile(records, BEFORE, after(ENGINE))
    assert [p for p in out["problems"] if "shorter than the engine's own" in p], out["problems"]


def test_a_negative_client_ttft_is_named_on_its_own() -> None:
    # A clock 40 ms late on one request only: the means and buckets may still pass, but a first
    # token before its request is impossible.
    records = [rec(t + 0.003) for t in ENGINE[1:]] + [rec(-0.024)]
    out = reconcile(records, BEFORE, after(ENGINE))
    assert [p for p in out["problems"] if "1 client TTFTs are negative (lowest -24.0 ms)" in p], (
        out["problems"]
    )


def test_a_client_200_ms_above_the_engine_does_not_reconcile() -> None:
    # The client's TTFT holds 200 ms the engine never saw (over the 150 ms bound): time lost in
    # the client, the HTTP server or the router.
    records = [rec(t + 0.200) for t in ENGINE]
    out = reconcile(records, BEFORE, after(ENGINE))
    assert [p for p in out["problems"] if "the client adds too much" in p], out["problems"]
    assert 199.0 < out["ttft_mean_diff_ms"] < 201.0


def test_missing_requests_and_tokens_are_named() -> None:
    records = [rec(t + 0.003) for t in ENGINE[:3]]
    records[0].output_tokens = 7
    out = reconcile(records, BEFORE, after(ENGINE))
    assert any("the engine completed 4 requests" in p for p in out["problems"])
    assert any("TTFT not compared" in p for p in out["problems"])
    assert "prompt tokens: the client counted 90, the engine 120" in out["problems"]
    assert "output tokens: the client counted 23, the engine 32" in out["problems"]


def test_the_same_requests_with_other_token_counts_are_named() -> None:
    # Every request is there, but the client counted one output token too few on one of them
    # and one prompt token too many on another: a usage parser that drops or adds a token.
    records = [rec(t + 0.003) for t in ENGINE]
    records[1].output_tokens = 7
    records[2].prompt_tokens = 31
    out = reconcile(records, BEFORE, after(ENGINE))
    assert out["tokens_compared"] is True
    assert out["problems"] == [
        "prompt tokens: the client counted 121, the engine 120",
        "output tokens: the client counted 31, the engine 32",
    ]


def test_tokens_are_not_compared_when_a_request_was_cut_short() -> None:
    records = [rec(t + 0.003) for t in ENGINE[:3]] + [rec(0.2, ok=False)]
    out = reconcile(records, BEFORE, after(ENGINE, {"stop": 1, "length": 3, "abort": 1}))
    assert out["tokens_compared"] is False
    assert not any("tokens:" in p for p in out["problems"])
