"""The numbers every view of a run shows, derived once from a record (a dict that
`harness.report.schema.load_record` has validated): report.md, report.html, the history line and
the comparison all read them from here, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.report import capacity_trend
from harness.units import percent

# Long-context outcomes, in the order a reader scans them.
OK = "ok"  # classified, the classifier saw the whole conversation, routed right when scored
FLAGGED = "flagged"  # at or past max-model-len and the router said so (fallback or 4xx): correct
FALLBACK = "fallback"  # below max-model-len the router fell back instead of classifying
TRUNCATED = "truncated"  # "classified", yet the classifier saw fewer tokens: a silent fallback
MISROUTED = "misrouted"  # cue last, classified, but the wrong route
ERROR = "error"  # HTTP 5xx
UNFLAGGED = "unflagged"  # past max-model-len and the router claims it classified
OUTCOMES = (OK, FLAGGED, FALLBACK, TRUNCATED, MISROUTED, ERROR, UNFLAGGED)
PASSING = frozenset({OK, FLAGGED})


@dataclass(frozen=True)
class LongContextRow:
    placement: str
    route: str
    tokens: int
    status: int
    got: str
    reason: str
    seen_tokens: int | None
    over_limit: bool
    outcome: str


def max_model_len(doc: dict[str, Any]) -> int | None:
    """The served max-model-len (smallest over engines), else the preflight's, else None."""
    served = doc.get("acceptance", {}).get("max_model_len")
    if isinstance(served, dict) and served:
        return min(int(v) for v in served.values())
    engines = doc.get("preflight", {}).get("engines", {})
    lens = [int(e["max_model_len"]) for e in engines.values() if e.get("max_model_len")]
    return min(lens) if lens else None


def _outcome(row: dict[str, Any], over: bool) -> str:
    status = int(row.get("status") or 0)
    reason = str(row.get("reason") or "")
    if status >= 500:
        return ERROR
    if over:
        return FLAGGED if status >= 400 or reason.startswith("fallback") else UNFLAGGED
    if reason != "classified":
        return FALLBACK
    seen = row.get("classifier_prompt_tokens")
    if seen is not None and int(seen) < int(row["tokens"]):
        return TRUNCATED
    if row.get("placement") == "last" and row.get("got") != row.get("route"):
        return MISROUTED
    return OK


def long_context(doc: dict[str, Any]) -> list[LongContextRow] | None:
    """Each long-context request with its outcome; None when the run has no such section."""
    rows = doc.get("acceptance", {}).get("long_context")
    if rows is None:
        return None
    mml = max_model_len(doc)
    out = []
    for r in rows:
        tokens = int(r["tokens"])
        # The over-limit probes record no classifier token count; use that when mml is unknown.
        over = tokens >= mml if mml else "classifier_prompt_tokens" not in r
        seen = r.get("classifier_prompt_tokens")
        out.append(
            LongContextRow(
                placement=str(r["placement"]),
                route=str(r["route"]),
                tokens=tokens,
                status=int(r.get("status") or 0),
                got=str(r.get("got")),
                reason=str(r.get("reason")),
                seen_tokens=None if seen is None else int(seen),
                over_limit=over,
                outcome=_outcome(r, over),
            )
        )
    return out


def outcome_counts(rows: list[LongContextRow]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for r in rows:
        counts[r.outcome] += 1
    return counts


def token_columns(rows: list[LongContextRow]) -> list[tuple[str, list[int]]]:
    """Columns of the long-context matrix: (label, token counts in it).

    Conversations are built to a target "or just under", so counts within 64 tokens of each other
    share a column; past max-model-len every count is its own column (mml and mml+1 differ by 1).
    """
    cols: list[tuple[str, list[int]]] = []
    under = sorted({r.tokens for r in rows if not r.over_limit})
    group: list[int] = []
    for t in under:
        if group and t - group[-1] > 64:
            cols.append((f"{group[-1]:,}", group))
            group = []
        group.append(t)
    if group:
        cols.append((f"{group[-1]:,}", group))
    cols += [(f"{t:,} (over)", [t]) for t in sorted({r.tokens for r in rows if r.over_limit})]
    return cols


def routing(doc: dict[str, Any]) -> dict[str, Any] | None:
    r = doc.get("acceptance", {}).get("routing")
    return r if isinstance(r, dict) else None


def profiles(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    load = doc.get("load", {})
    return {k: v for k, v in load.items() if isinstance(v, dict) and "latency" in v}


def labels(summary: dict[str, Any]) -> list[str]:
    """Route (or target) labels of a load summary, "all" left out; local and search first."""
    names = [k for k in summary.get("latency", {}) if k != "all"]
    order = {"local": 0, "search": 1}
    return sorted(names, key=lambda n: (order.get(n, 2), n))


def pct(summary: dict[str, Any], label: str, metric: str, p: str = "p95") -> float | None:
    value = summary.get("latency", {}).get(label, {}).get(metric, {}).get(p)
    return None if value is None else float(value)


def samples(summary: dict[str, Any], label: str, metric: str = "ttft_s") -> int:
    n = summary.get("latency", {}).get(label, {}).get(metric, {}).get("n")
    return int(n or 0)


def fallbacks(doc: dict[str, Any]) -> dict[str, int]:
    """Fallbacks seen in acceptance: routing eval, long-context below the limit, silent ones."""
    out: dict[str, int] = {}
    r = routing(doc)
    if r is not None:
        out["routing"] = int(r.get("fallbacks", 0))
    rows = long_context(doc)
    if rows is not None:
        out["long_context"] = sum(x.outcome in (FALLBACK, UNFLAGGED) for x in rows)
        out["long_context_silent"] = sum(x.outcome == TRUNCATED for x in rows)
    return out


def short_image_id(image_id: str) -> str:
    """`sha256:0123456789ab...` as `docker images` shows it: its first 12 hex digits."""
    return image_id.removeprefix("sha256:")[:12]


def what_ran(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per service, in start order: the vLLM version its engine reported ("version", or
    "version_error" when GET /version failed) and the container's short image ID ("image")."""
    stack = doc.get("stack", {})
    versions = stack.get("versions") or {}
    ids = stack.get("image_ids") or {}
    out: dict[str, dict[str, str]] = {}
    for name in dict.fromkeys([*(stack.get("services") or {}), *versions, *ids]):
        facts: dict[str, str] = {}
        v = versions.get(name)
        if v is not None and v.get("version"):
            facts["version"] = str(v["version"])
        elif v is not None:
            facts["version_error"] = str(v.get("error"))
        if ids.get(name):
            facts["image"] = short_image_id(str(ids[name]))
        if facts:
            out[name] = facts
    return out


def history_line(doc: dict[str, Any], run_dir: str | None = None) -> dict[str, Any]:
    """The one line `reports/history.jsonl` keeps for a run."""
    r = routing(doc)
    rows = long_context(doc)
    load: dict[str, Any] = {}
    for name, s in profiles(doc).items():
        load[name] = {
            "p95_ttft_s": {label: pct(s, label, "ttft_s") for label in labels(s)},
            "error_rate": s.get("error_rate"),
            "requests": s.get("requests"),
            "preemptions": {e: v.get("preemptions") for e, v in s.get("engines", {}).items()},
        }
    return {
        "run_id": doc["run_id"],
        "target": doc["target"],
        "status": doc["status"],
        "started_at": doc["started_at"],
        "finished_at": doc.get("finished_at"),
        "run_dir": run_dir,
        "routing_accuracy": None if r is None else r.get("accuracy"),
        "long_context_failures": None
        if rows is None
        else sum(x.outcome not in PASSING for x in rows),
        "fallbacks": fallbacks(doc),
        "load": load,
        "capacity": capacity_trend.history_entry(doc),
    }


@dataclass(frozen=True)
class KvPoolAdvice:
    """How much of the primary's KV pool max-num-seqs sequences can use, as tuning advice."""

    capacity_tokens: int
    max_model_len: int
    max_num_seqs: int
    unused: float  # 1 - max_num_seqs x max_model_len / capacity, at least 0
    peak: float | None  # the highest KV usage measured on this pool
    peak_profile: str | None
    predicted: tuple[float, float] | None  # kv-pressure's KV-model band, where it ran here
    profiles: tuple[str, ...]

    @property
    def multiple(self) -> float:
        return self.capacity_tokens / self.max_model_len

    def sentence(self) -> str:
        pool = (
            f"The primary's KV pool holds {self.capacity_tokens:,} tokens, "
            f"{self.multiple:.1f}x max-model-len"
        )
        if self.peak is not None:
            pool += f"; measured peak {percent(self.peak)} ({self.peak_profile})"
        if self.predicted is not None:
            pool += f", KV model {percent(self.predicted[0])}-{percent(self.predicted[1])}"
        seqs = self.max_num_seqs
        if self.unused <= 0.05:
            return f"{pool}. At --max-num-seqs {seqs} all of it can be used."
        full = self.capacity_tokens // self.max_model_len
        return (
            f"{pool}. At --max-num-seqs {seqs} about {self.unused:.0%} of it is never used "
            f"(it fits {full} full-length sequences): raise --max-num-seqs or lower "
            f"--gpu-memory-utilization."
        )


def kv_pools(doc: dict[str, Any]) -> list[KvPoolAdvice]:
    """One entry per primary KV pool the load profiles ran against (the twin's kv-pressure
    runs on a shrunk one), in profile order."""
    groups: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for name, s in profiles(doc).items():
        pool = s.get("kv_pool") or {}
        if pool.get("capacity_tokens") and pool.get("max_model_len"):
            groups.setdefault(int(pool["capacity_tokens"]), []).append((name, pool))
    out = []
    for capacity, members in groups.items():
        peaks = [
            (float(p["measured_peak"]), n) for n, p in members if p.get("measured_peak") is not None
        ]
        peak, peak_profile = max(peaks) if peaks else (None, None)
        band = next(
            (
                (float(p["predicted_peak_low"]), float(p["predicted_peak_high"]))
                for _, p in members
                if p.get("predicted_peak_low") is not None
            ),
            None,
        )
        first = members[0][1]
        out.append(
            KvPoolAdvice(
                capacity_tokens=capacity,
                max_model_len=int(first["max_model_len"]),
                max_num_seqs=int(first["max_num_seqs"]),
                unused=float(first.get("unused_at_max_num_seqs") or 0.0),
                peak=peak,
                peak_profile=peak_profile,
                predicted=band,
                profiles=tuple(n for n, _ in members),
            )
        )
    return out


def route_reasons_line(doc: dict[str, Any]) -> str | None:
    """X-Route-Reason counts per profile, e.g. "steady classified 24 · kv-pressure ..."."""
    parts = []
    for name, s in profiles(doc).items():
        reasons = s.get("route_reasons")
        if reasons:
            parts.append(f"{name} " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
    return " · ".join(parts) or None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


@dataclass(frozen=True)
class RouteFigures:
    """One profile's route in a load report, latencies in ms. None reads n/a: a route whose
    answers came in one read has no ITL, and an older record lacks the newer figures."""

    profile: str
    label: str
    ok: int
    failed: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    tpot_p50_ms: float | None
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    output_tok_s: float | None  # the route's output tokens over its window
    goodput_rps: float | None  # requests within every latency limit of the route, per second
    goodput_share: float | None


def route_figures(doc: dict[str, Any]) -> list[RouteFigures]:
    out = []
    for name, s in profiles(doc).items():
        for label in labels(s):
            lat = s["latency"][label]
            good = (s.get("goodput") or {}).get(label) or {}
            out.append(
                RouteFigures(
                    profile=name,
                    label=label,
                    ok=int(lat.get("ok") or 0),
                    failed=int(lat.get("failed") or 0),
                    ttft_p50_ms=ms(pct(s, label, "ttft_s", "p50")),
                    ttft_p95_ms=ms(pct(s, label, "ttft_s")),
                    itl_p50_ms=ms(pct(s, label, "itl_s", "p50")),
                    itl_p95_ms=ms(pct(s, label, "itl_s")),
                    tpot_p50_ms=ms(pct(s, label, "tpot_s", "p50")),
                    e2e_p50_ms=ms(pct(s, label, "e2e_s", "p50")),
                    e2e_p95_ms=ms(pct(s, label, "e2e_s")),
                    output_tok_s=lat.get("output_throughput_tok_s"),
                    goodput_rps=good.get("goodput_rps"),
                    goodput_share=good.get("fraction"),
                )
            )
    return out


def _bucket_ms(bucket: Any) -> str | None:
    if not isinstance(bucket, list) or len(bucket) != 2:
        return None
    lo, hi = bucket
    return f"({lo * 1000:g}, {'inf' if hi is None else f'{hi * 1000:g}'}] ms"


def client_engine(doc: dict[str, Any]) -> list[str]:
    """Per profile and engine: the client's TTFT against the engine's, and whether requests and
    tokens reconcile. The engine's median is bucket-bounded (a histogram gives no more), so it
    is printed as its bucket and never subtracted from the client's exact median."""
    out = []
    for name, s in profiles(doc).items():
        for engine, rec in (s.get("reconciliation") or {}).items():
            eng = s.get("engines", {}).get(engine, {})
            bits = []
            if rec.get("client_ttft_mean_ms") is not None and rec.get("engine_ttft_mean_ms"):
                bits.append(
                    f"client TTFT mean {rec['client_ttft_mean_ms']:.1f} ms, engine "
                    f"{rec['engine_ttft_mean_ms']:.1f} ms (exact, _sum/_count)"
                    + (
                        f": {rec['ttft_mean_diff_ms']:+.1f} ms"
                        if rec.get("ttft_mean_diff_ms") is not None
                        else ""
                    )
                )
            bucket = _bucket_ms(eng.get("ttft_server_p50_bucket_s"))
            if bucket:
                bits.append(f"engine TTFT median bucket-bounded in {bucket}")
            if rec.get("engine_requests") is not None:
                tokens = (
                    f", prompt tokens {rec['client_prompt_tokens']:,}/"
                    f"{rec['engine_prompt_tokens']:,.0f}, output tokens "
                    f"{rec['client_output_tokens']:,}/{rec['engine_output_tokens']:,.0f}"
                    if rec.get("tokens_compared")
                    else ", tokens not compared (requests failed or were cut short)"
                )
                bits.append(
                    f"requests client/engine {rec['client_requests']}/"
                    f"{rec['engine_requests']:.0f}{tokens}"
                )
            problems = rec.get("problems") or []
            verdict = "reconciles" if not problems else "does NOT reconcile: " + "; ".join(problems)
            out.append(f"{name} · {engine}: " + "".join(f"{b}; " for b in bits) + verdict)
    return out


# Per-request and per-run files a load profile leaves in load/<profile>/, for the report's links.
RAW_FILES = (
    ("requests.jsonl", "per-request records"),
    ("timeline.jsonl", "engine /metrics timeline"),
    ("stats.json", "summary"),
    ("locust_stats.csv", "locust stats"),
    ("locust.json", "locust JSON"),
)
