"""Where the client's TTFT goes: Server-Timing read per request, joined per route with the
engines' exact TTFT means, judged against the client's mean within 5 %, kept in record.json
and shown in both reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import report_fixtures as fixtures

from harness.compose import load_stack
from harness.load.records import RequestRecord
from harness.load.server_timing import parse_server_timing
from harness.load.waterfall import (
    NO_INGRESS,
    EngineTtft,
    proxy_overhead_ms,
    route_waterfall,
    run_waterfall,
    waterfall,
)
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.report.schema import validate_record
from harness.stack.base import ServiceHandle, Stack
from harness.telemetry.prom import parse
from harness.telemetry.sampler import Sampler

TTFT = "vllm:time_to_first_token_seconds"
PRIMARY = EngineTtft("vllm-primary", 45.0, 4)


def timing(classify: float, connect: float, ttfb: float, total: float) -> dict[str, float]:
    return {
        "classify": classify,
        "upstream_connect": connect,
        "upstream_ttfb": ttfb,
        "total": total,
    }


def rec(
    ttft_ms: float, server_timing: dict[str, float] | None, route: str = "local", ok: bool = True
) -> RequestRecord:
    return RequestRecord(
        "ChatUser", "router", 0.0, 0.0, 200 if ok else 502, ok, route=route,
        ttft_s=ttft_ms / 1000 if ok else None, server_timing=server_timing,
    )  # fmt: skip


# Four local answers: the router's parts 20 + 0.5 + 50 of a 75 ms total, 2 ms outside it.
LOCAL = [rec(77.0 + d, timing(20.0 + d, 0.5, 50.0, 75.0 + d)) for d in (-1.0, 0.0, 0.0, 1.0)]


@pytest.mark.parametrize(
    ("header", "parts"),
    [
        (
            "classify;dur=12.3, upstream_connect;dur=0.8",
            {"classify": 12.3, "upstream_connect": 0.8},
        ),
        ('db;desc="a, b; c";dur=2, cache;desc=hit', {"db": 2.0}),
        ('total;dur="60.2"', {"total": 60.2}),
        ("x;DUR=1", {"x": 1.0}),
        ("miss, x;dur=abc", None),
        ("", None),
        (None, None),
    ],
)
def test_server_timing_parts(header: str | None, parts: dict[str, float] | None) -> None:
    assert parse_server_timing(header) == parts


def test_parts_join_the_engine_and_add_up() -> None:
    w = route_waterfall("local", LOCAL, PRIMARY)
    assert w is not None
    got = {p.name: round(p.ms, 6) for p in w.parts}
    assert got == {
        "router": 4.5,
        "classifier": 20.0,
        "upstream connect": 0.5,
        "engine HTTP server": 5.0,
        "engine first token": 45.0,
    }
    assert w.requests == 4 and w.client_ttft_ms == 77.0
    assert w.parts_ms == pytest.approx(75.0)
    assert w.adds_up and w.notes == ()
    assert "parts add up to 97 % of the client's mean TTFT" in w.sentence()


def test_a_gap_outside_the_router_is_said() -> None:
    records = [rec(100.0, timing(20.0, 0.5, 50.0, 75.0)) for _ in range(4)]
    out = waterfall(records, {"local": PRIMARY})
    local = out["routes"]["local"]
    assert local["adds_up"] is False
    assert local["unaccounted_ms"] == pytest.approx(25.0)
    assert out["problems"] == [local["sentence"]]
    assert "parts add up to 75 % of the client's mean TTFT" in local["sentence"]
    assert "NOT within 5 %" in local["sentence"]


def test_search_has_no_engine_to_split_its_first_byte() -> None:
    records = [rec(31.0, timing(10.0, 0.0, 18.0, 30.0), route="search") for _ in range(3)]
    out = waterfall([*records, *LOCAL], {"local": PRIMARY})
    search = out["routes"]["search"]
    assert [p["name"] for p in search["parts"]] == [
        "router",
        "classifier",
        "upstream connect",
        "upstream first byte",
    ]
    assert search["parts_ms"] == pytest.approx(30.0)
    assert out["ingress"] == NO_INGRESS
    assert out["problems"] == []


def test_untimed_and_failed_answers_are_left_out() -> None:
    records = [*LOCAL, rec(500.0, None), rec(0.0, None, ok=False)]
    w = route_waterfall("local", records, PRIMARY)
    assert w is not None and w.requests == 4 and w.client_ttft_ms == 77.0
    assert w.notes == ("1 answers carried no Server-Timing and are left out",)
    assert route_waterfall("local", [rec(500.0, None)], PRIMARY) is None
    assert waterfall([rec(500.0, None)], {})["routes"] == {}


def test_an_engine_that_timed_other_requests_is_noted() -> None:
    w = route_waterfall("local", LOCAL, EngineTtft("vllm-primary", 60.0, 9))
    assert w is not None
    assert any("timed 9 first tokens over the run, the client 4" in n for n in w.notes)
    assert any("did not time the same requests" in n for n in w.notes)


def test_traefik_takes_its_own_time_in_front_of_the_router() -> None:
    """traefik's own time per request (its access log's Overhead) is one more part; the parts
    then hold the router's total and traefik's time, against the client's TTFT."""
    w = route_waterfall("local", LOCAL, PRIMARY, ingress_ms=1.5)
    assert w is not None
    assert (w.parts[0].name, w.parts[0].ms) == ("traefik", 1.5)
    assert w.parts_ms == pytest.approx(76.5)
    out = waterfall(LOCAL, {"local": PRIMARY}, ingress_ms={"local": 1.5}, ingress="timed")
    assert out["ingress"] == "timed"


def access_line(request_id: str | None, overhead_ns: int) -> str:
    line = {"RequestPath": "/v1/chat/completions", "Overhead": overhead_ns, "Duration": 9}
    if request_id is not None:
        line["request_X-Harness-Request"] = request_id
    return json.dumps(line)


def test_traefik_access_log_joins_by_request_id(tmp_path: Path) -> None:
    records = [rec(77.0, timing(20.0, 0.5, 50.0, 75.0)) for _ in range(3)]
    records += [rec(31.0, timing(10.0, 0.0, 18.0, 30.0), route="search")]
    for i, r in enumerate(records):
        r.request_id = f"id{i}"
    log = tmp_path / "traefik-access.jsonl"
    lines = [access_line("id0", 1_000_000), access_line("id1", 2_000_000)]
    lines += [access_line("id2", 3_000_000), access_line(None, 9_000_000), "{cut"]
    log.write_text("\n".join([*lines, access_line("id3", 500_000)]) + "\n")
    assert proxy_overhead_ms(log, records) == ({"local": 2.0, "search": 0.5}, 0)
    log.write_text("\n".join(lines) + "\n")
    assert proxy_overhead_ms(log, records) == ({"local": 2.0}, 1)


def stack_with(tmp_path: Path, compose: Path, proxy: bool) -> Stack:
    stack = Stack("twin", load_stack(compose), tmp_path)
    for name, role in (("vllm-router", "classifier"), ("vllm-primary", "primary")):
        stack.services[name] = ServiceHandle(name, role, "http://u")
    stack.services["ai-router"] = ServiceHandle("ai-router", "router", "http://r")
    if proxy:
        log = tmp_path / "logs" / "traefik.log"
        stack.services["traefik"] = ServiceHandle("traefik", "proxy", "http://t", log_path=log)
    return stack


def test_the_record_says_whether_traefik_is_timed(tmp_path: Path, real_compose: Path) -> None:
    sampler = Sampler({"vllm-primary": "u"}, nvml=False)
    records = [rec(77.0, timing(20.0, 0.5, 50.0, 75.0), route="local")]
    records[0].request_id = "id0"
    out = run_waterfall(records, sampler, stack_with(tmp_path, real_compose, proxy=False))
    assert out["ingress"] == NO_INGRESS
    stack = stack_with(tmp_path, real_compose, proxy=True)
    assert "not timed" in run_waterfall(records, sampler, stack)["ingress"]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "traefik-access.jsonl").write_text(access_line("id0", 1_200_000))
    out = run_waterfall(records, sampler, stack)
    assert out["ingress"] == "timed by its access log's Overhead"
    assert out["routes"]["local"]["parts"][0] == {
        "name": "traefik",
        "ms": 1.2,
        "source": "traefik access log Overhead",
    }


def scrape(total_s: float, count: int) -> str:
    return f"{TTFT}_sum {total_s}\n{TTFT}_count {count}\n"


def test_the_engines_come_from_the_runs_window(tmp_path: Path, real_compose: Path) -> None:
    sampler = Sampler({"vllm-primary": "u", "vllm-router": "u"}, nvml=False)
    sampler.first = {"vllm-primary": parse(scrape(1.0, 10)), "vllm-router": parse(scrape(0, 0))}
    sampler.last = {
        "vllm-primary": parse(scrape(1.0 + 4 * 0.045, 14)),
        "vllm-router": parse(scrape(0.08, 4)),
    }
    stack = stack_with(tmp_path, real_compose, proxy=False)
    out = run_waterfall(LOCAL, sampler, stack)
    parts = {p["name"]: p["ms"] for p in out["routes"]["local"]["parts"]}
    assert parts["engine first token"] == pytest.approx(45.0)
    assert out["classifier_engine"] == {
        "engine": "vllm-router",
        "ttft_mean_ms": pytest.approx(20.0),
        "requests": 4,
    }
    sampler.last = dict(sampler.first)
    out = run_waterfall(LOCAL, sampler, stack)
    assert "engine first token" not in {p["name"] for p in out["routes"]["local"]["parts"]}
    assert out["classifier_engine"] is None


def test_record_and_reports_show_it(tmp_path: Path) -> None:
    doc = fixtures.record()
    doc["load"]["steady"]["waterfall"] = waterfall(
        [*LOCAL, *(rec(100.0, timing(10.0, 0.0, 18.0, 30.0), route="search") for _ in range(2))],
        {"local": PRIMARY},
        classifier=EngineTtft("vllm-router", 12.0, 6),
    )
    validate_record(doc)
    md = render_markdown(doc)
    assert (
        "| profile | route | requests | client TTFT mean ms | router ms | classifier ms | "
        "upstream connect ms | engine HTTP server ms | engine first token ms | "
        "upstream first byte ms | outside the router's clock ms | parts / client |"
    ) in md
    assert "| steady | local | 4 | 77 | 4.5 | 20 | 0.5 | 5 | 45 | - | 2 | 97.4 % |" in md
    assert "steady · search: parts add up to 30 % of the client's mean TTFT" in md
    assert "steady · traefik: not in this target's path" in md
    assert "vllm-router's own TTFT mean over the run 12 ms (6 requests" in md
    html = render_html(doc, fixtures.write_run(tmp_path, doc))
    assert 'id="plot-waterfall"' in html and "client mean TTFT 77 ms" in html
    assert "engine first token" in html
