"""harness load replay without engines: the workload a session log gives (arrivals compressed
by the speed, route mix, turns, synthesised lengths), the reproduction check's arithmetic, and
the inputs it refuses."""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError
from harness.load.prompts import chat_prompts, filler_sentences
from harness.load.records import RequestRecord
from harness.load.replay import (
    ROUTES,
    LoggedRequest,
    build_plan,
    filler_text,
    messages_for,
    new_roles,
    peak_in_flight,
    read_plan,
    write_plan,
)
from harness.report.replay import (
    logged_requests,
    markdown,
    replay_report,
    reproduction,
    reproduction_problems,
    select,
)
from harness.report.sessions import parse_lines, read_log

ROOT = Path(__file__).resolve().parents[2]
LOG = Path(__file__).parent / "data" / "ai-router-session.jsonl"
QUESTIONS = {route: chat_prompts(route) for route in ROUTES}
FILLER = filler_text(filler_sentences())


def line(ts: str, route: str = "local", **extra: Any) -> str:
    doc = {
        "ts": f"2026-12-01T10:{ts}+00:00", "method": "POST", "path": "/v1/chat/completions",
        "route": route, "reason": "classified", "status": 200, "prompt_tokens": 50,
        "completion_tokens": 20, "duration_ms": 900, **extra,
    }  # fmt: skip
    return json.dumps(doc)


def conversation_log() -> list[str]:
    """Two conversations of 3 and 2 turns, each turn's history longer, and one old-style line."""
    return [
        line("00:00", conversation="a", turn=1, messages=1, history_chars=120),
        line("00:04", "search", conversation="b", turn=1, messages=2, history_chars=300),
        line("00:10", "search", conversation="a", turn=2, messages=3, history_chars=900),
        line("00:20", conversation="b", turn=2, messages=4, history_chars=2500),
        line("00:30", conversation="a", turn=3, messages=5, history_chars=6000),
        line("00:40", prompt_tokens=400),
    ]


def test_usable_lines_of_the_sample_log_sorted_and_indexed() -> None:
    log = read_log(LOG)
    logged = logged_requests(log)
    raw = [r for r in log.records if r.get("path") == "/v1/chat/completions"]
    routed = [r for r in raw if r.get("route") in ROUTES]
    assert len(logged) == len(routed) == 10  # /v1/route, /health and the 401 are not replayed
    assert [r.index for r in logged] == list(range(10))
    assert logged[0].offset_s == 0.0
    assert all(a.offset_s <= b.offset_s for a, b in itertools.pairwise(logged))
    assert Counter(r.route for r in logged) == Counter(str(r["route"]) for r in routed)
    # A log without conversation keys: each line is its own one-turn conversation.
    assert {r.turn for r in logged} == {1} and len({r.conversation for r in logged}) == 10


@pytest.mark.parametrize("speed", [1.0, 2.0, 10.0])
def test_arrivals_compressed_by_the_speed(speed: float) -> None:
    logged = logged_requests(read_log(LOG))
    plan = build_plan(logged, QUESTIONS, speed=speed, chars_per_token=3.0)
    assert [q.due_s for q in plan.requests] == [round(r.offset_s / speed, 6) for r in logged]
    span = logged[-1].offset_s  # 22:00:11.53 to 22:58:02.90
    assert plan.duration_s == pytest.approx(span / speed, abs=1e-5)
    assert span == pytest.approx(3471.37, abs=0.01)


def test_route_mix_turns_and_budgets_as_logged() -> None:
    logged = logged_requests(parse_lines(conversation_log(), "synthetic"))
    plan = build_plan(logged, QUESTIONS, speed=1.0, chars_per_token=3.0)
    assert [q.route for q in plan.requests] == [r.route for r in logged]
    assert [q.turn for q in plan.requests] == [1, 1, 2, 2, 3, 1]
    assert [q.max_tokens for q in plan.requests] == [20] * 6
    for r, q in zip(logged, plan.requests, strict=True):
        msgs = messages_for(q, QUESTIONS, FILLER)
        assert len(msgs) == r.messages
        assert sum(m["role"] == "user" for m in msgs) == r.turn
        assert msgs[-1]["role"] == "user"
        # The last user message ends with a corpus question of the logged route.
        assert any(msgs[-1]["content"].endswith(x) for x in QUESTIONS[r.route])
        chars = sum(len(m["content"]) for m in msgs)
        if r.history_chars is not None:
            assert chars == r.history_chars
        else:  # tokens only: the primary's prompt at the stack's characters per token
            assert chars == 400 * 3


def test_each_turn_repeats_its_conversation_history() -> None:
    logged = logged_requests(parse_lines(conversation_log(), "synthetic"))
    plan = build_plan(logged, QUESTIONS, speed=1.0, chars_per_token=3.0)
    turns = [messages_for(q, QUESTIONS, FILLER) for q in plan.requests]
    a1, a2, a3 = turns[0], turns[2], turns[4]
    assert a2[: len(a1)] == a1 and a3[: len(a2)] == a2
    assert [m["role"] for m in a3] == ["user", "assistant", "user", "assistant", "user"]
    assert [m["role"] for m in turns[1]] == ["system", "user"]  # 2 messages, 1 user: a system
    # Two conversations share no prefix.
    assert turns[1][0]["content"][:40] != a1[0]["content"][:40]
    # The same plan builds the same text: the locust child rebuilds what the tests see.
    assert [messages_for(q, QUESTIONS, FILLER) for q in plan.requests] == turns


def test_message_text_never_in_the_plan(tmp_path: Path) -> None:
    logged = logged_requests(parse_lines(conversation_log(), "synthetic"))
    plan = build_plan(logged, QUESTIONS, speed=1.0, chars_per_token=3.0)
    path = write_plan(plan, tmp_path / "plan.json")
    assert read_plan(path) == plan
    text = path.read_text()
    for q in plan.requests:
        for m in messages_for(q, QUESTIONS, FILLER):
            assert m["content"][-30:] not in text


def test_roles() -> None:
    assert new_roles([], 1, 1) == ["user"]
    assert new_roles(["user"], 2, 1) == ["assistant", "user"]
    assert new_roles([], 3, 2) == ["user", "assistant", "user"]
    assert new_roles(["user", "assistant", "user"], 3, 1) == ["assistant", "assistant", "user"]


def test_users_cover_the_compressed_concurrency() -> None:
    def req(i: int, at: float, ms: int) -> LoggedRequest:
        return LoggedRequest(i, at, "local", f"c{i}", 1, 1, 10, None, None, None, ms, 200)

    logged = [req(0, 0.0, 3000), req(1, 2.0, 3000), req(2, 4.0, 3000)]
    assert peak_in_flight(logged, 1.0) == 2
    assert peak_in_flight(logged, 2.0) == 3  # arrivals 1 s apart, each still 3 s long


TOKENIZERS = sorted(Path.home().glob(".cache/ai-router-harness/twin/*/primary/tokenizer.json"))


@pytest.mark.skipif(not TOKENIZERS, reason="no twin tokenizer built on this machine")
def test_synthesised_tokens_near_the_logged_tokens() -> None:
    """Where the log has tokens only, the history is sized at the characters per token the
    primary's tokenizer gives the filler (the runner asks the primary's /tokenize the same)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZERS[0]))
    sample = " ".join(filler_sentences()[:200])
    cpt = len(sample) / len(tok.encode(sample).ids)
    lines = [
        line(f"{n:02d}:00", conversation=f"k{n}", turn=1, messages=1, history_tokens=tokens)
        for n, tokens in enumerate((300, 2000, 12000))
    ]
    logged = logged_requests(parse_lines(lines, "synthetic"))
    plan = build_plan(logged, QUESTIONS, speed=1.0, chars_per_token=cpt)
    for r, q in zip(logged, plan.requests, strict=True):
        msgs = messages_for(q, QUESTIONS, FILLER)
        tokens = sum(len(tok.encode(m["content"]).ids) for m in msgs)
        assert r.history_tokens is not None
        assert abs(tokens - r.history_tokens) <= 0.1 * r.history_tokens, (tokens, r)


def test_reproduction_check_math() -> None:
    logged = logged_requests(parse_lines(conversation_log(), "synthetic"))
    # Everything as logged: within.
    checks = reproduction(logged, [r.route for r in logged], [r.turn for r in logged])
    assert [c["within"] for c in checks] == [True, True, True]
    # One request of six missing: 16.7 % fewer, and the mixes move.
    short = logged[:-1]
    checks = reproduction(logged, [r.route for r in short], [r.turn for r in short])
    count, routes, turns = checks
    assert count["relative_difference"] == pytest.approx(-1 / 6, abs=1e-6)
    assert not count["within"]
    # local 4 of 6 logged against 3 of 5 replayed: 6.7 points apart.
    assert routes["max_share_difference"] == pytest.approx(4 / 6 - 3 / 5, abs=1e-6)
    assert routes["log"] == {"local": 4, "search": 2}
    assert routes["replay"] == {"local": 3, "search": 2}
    # Turn 1: 3 of 6 against 2 of 5, the widest gap.
    assert turns["max_share_difference"] == pytest.approx(3 / 6 - 2 / 5, abs=1e-6)
    assert len(reproduction_problems({"reproduction": checks})) == 3


def test_report_pairs_by_plan_index_never_text() -> None:
    logged = logged_requests(parse_lines(conversation_log(), "synthetic"))
    records, sent = [], {}
    for r in logged:
        rec = RequestRecord("ReplayUser", "router", 0.0, 0.0, 200, True, route=r.route)
        rec.request_id, rec.e2e_s = f"h{r.index}", 1.8  # twice the logged 900 ms
        records.append(rec)
        sent[rec.request_id] = {"router_id": f"r{r.index}", "index": r.index}
    router_log = parse_lines(
        [json.dumps({"request_id": f"r{r.index}", "turn": r.turn}) for r in logged], "replayed"
    )
    section = replay_report(logged, records, sent, router_log)
    assert section["replayed_requests"] == 6 and section["reproduced"]
    assert section["turns_from"] == {"router": 6}
    local = section["latency_by_route"]["local"]
    assert local["pairs"] == 4 and local["log_ms"]["p50"] == 900
    assert local["replay_ms"]["p50"] == 1800 and local["ratio_p50"] == 2.0
    assert section["prompt_tokens_local"] == {"requests": 0, "log": 0, "replay": 0}
    for rec, r in zip(records, logged, strict=True):
        rec.prompt_tokens = round((r.prompt_tokens or 0) * 1.1)  # 10 % more than logged
    section = replay_report(logged, records, sent, router_log)
    assert section["prompt_tokens_local"] == {"requests": 4, "log": 550, "replay": 605}
    md = "\n".join(markdown({"load": {"replay": {"replay": {**section, "speed": 2}}}}))
    assert "## Replay" in md and "reproduced." in md and "| turn distribution |" in md
    assert "log 550, replay 605 (+10 %)" in md


def test_refuses_bad_logs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match=r"empty\.jsonl: the session log is empty"):
        select(read_log(empty), limit=None, max_requests=10)
    health = tmp_path / "health.jsonl"
    health.write_text(
        '{"ts":"2026-12-01T10:00:00+00:00","path":"/health","status":200}\nnot json\n'
    )
    with pytest.raises(InputError, match=r"health\.jsonl: no usable line in 2"):
        select(read_log(health), limit=None, max_requests=10)
    many = parse_lines(conversation_log(), "many.jsonl")
    with pytest.raises(InputError, match=r"many\.jsonl: 6 requests .* max_requests \(5\).*--limit"):
        select(many, limit=None, max_requests=5)
    assert len(select(many, limit=4, max_requests=5)) == 4


def _ns(**kw: Any) -> argparse.Namespace:
    base: dict[str, Any] = {
        "profile": "replay", "sessions": str(LOG), "since": None, "speed": None, "limit": None,
        "processes": 1, "workers": 0, "worker": None, "duration": None, "users": None,
        "compose": ROOT / "infra" / "docker-compose.yml",
    }  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_cli_refuses_bad_flags(tmp_path: Path) -> None:
    from harness.cli.replay import replay_inputs
    from harness.config import load_settings

    settings = load_settings(None)
    with pytest.raises(InputError, match=r"--speed 0.0: must be above 0"):
        replay_inputs(_ns(speed=0.0), settings)
    with pytest.raises(InputError, match=r"--speed -1.0"):
        replay_inputs(_ns(speed=-1.0), settings)
    with pytest.raises(InputError, match=r"--sessions PATH\|router-logs is required"):
        replay_inputs(_ns(sessions=None), settings)
    with pytest.raises(InputError, match=r"--sessions .*nope\.jsonl: no such file"):
        replay_inputs(_ns(sessions=str(tmp_path / "nope.jsonl")), settings)
    with pytest.raises(InputError, match=r"--sessions, --speed: only `harness load replay`"):
        replay_inputs(_ns(profile="steady", speed=2.0), settings)
    assert replay_inputs(_ns(profile="steady", sessions=None), settings) is None
    with pytest.raises(InputError, match=r"ai-router-session\.jsonl: none of its 15 lines is "
                       r"from the last 24h \(--since\)"):  # fmt: skip
        replay_inputs(_ns(since="24h"), settings)
    with pytest.raises(InputError, match=r"--since 'soon'"):
        replay_inputs(_ns(since="soon"), settings)
    assert len(replay_inputs(_ns(limit=3), settings) or []) == 3
    assert settings.typed.replay.max_requests == 2000


def test_the_replay_locustfile_runs_its_own_shape() -> None:
    """Loaded in a child: importing locust monkey-patches the interpreter with gevent."""
    probe = (
        "import json, sys\n"
        "from locust.util.load_locustfile import load_locustfile\n"
        "users, shapes = load_locustfile(sys.argv[1])\n"
        "print(json.dumps([[type(s).__name__, type(s).profile] for s in shapes]"
        " + [sorted(users)]))\n"
    )
    path = ROOT / "tests" / "load" / "locustfile_replay.py"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == [["ReplayShape", "replay"], ["ReplayUser"]]
