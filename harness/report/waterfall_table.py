"""The waterfall of a load run's time to first token, per profile and route, as report.md and
report.html show it: a table of the parts (harness.load.waterfall says who measures each), the
share of the client's mean TTFT that they add up to, and the sentence for a route where they do
not add up within the tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.report import summary
from harness.units import number, percent

UNACCOUNTED = "outside the router's clock"


@dataclass(frozen=True)
class WaterfallRow:
    profile: str
    route: str
    requests: int
    client_ttft_ms: float
    parts: dict[str, float]  # name -> mean ms, in the order the request passes them
    unaccounted_ms: float
    share: float | None
    adds_up: bool
    sentence: str
    notes: list[str]


def waterfall_rows(doc: dict[str, Any]) -> list[WaterfallRow]:
    out = []
    for profile, s in summary.profiles(doc).items():
        for route, w in ((s.get("waterfall") or {}).get("routes") or {}).items():
            out.append(
                WaterfallRow(
                    profile=profile,
                    route=route,
                    requests=int(w["requests"]),
                    client_ttft_ms=float(w["client_ttft_mean_ms"]),
                    parts={p["name"]: float(p["ms"]) for p in w["parts"]},
                    unaccounted_ms=float(w["unaccounted_ms"]),
                    share=w.get("share"),
                    adds_up=bool(w.get("adds_up")),
                    sentence=str(w.get("sentence") or ""),
                    notes=[str(n) for n in w.get("notes") or []],
                )
            )
    return out


def part_names(found: list[WaterfallRow]) -> list[str]:
    """Every part of any row, in the order the rows list them."""
    return list(dict.fromkeys(name for r in found for name in r.parts))


def waterfall_table(found: list[WaterfallRow]) -> tuple[list[str], list[list[str]]]:
    """Head and rows, every time a mean in ms; '-' where a route has no such part."""
    names = part_names(found)
    head = [
        "profile",
        "route",
        "requests",
        "client TTFT mean ms",
        *(f"{n} ms" for n in names),
        f"{UNACCOUNTED} ms",
        "parts / client",
    ]
    body = [
        [
            r.profile,
            r.route,
            str(r.requests),
            number(r.client_ttft_ms),
            *(number(r.parts[n]) if n in r.parts else "-" for n in names),
            number(r.unaccounted_ms),
            percent(r.share),
        ]
        for r in found
    ]
    return head, body


def waterfall_lines(doc: dict[str, Any]) -> list[str]:
    """What is said beside the table: each route's sum, the engines behind the parts, the
    ingress hop, and every note."""
    out = []
    for profile, s in summary.profiles(doc).items():
        w = s.get("waterfall") or {}
        if not w.get("routes"):
            continue
        for route in w["routes"].values():
            out.append(f"{profile} · {route['sentence']}")
            out += [f"{profile} · {note}" for note in route.get("notes") or []]
        clf = w.get("classifier_engine")
        if clf:
            out.append(
                f"{profile} · {clf['engine']}'s own TTFT mean over the run "
                f"{number(clf['ttft_mean_ms'])} ms ({clf['requests']:.0f} requests, every "
                f"route's classification), inside the classifier part"
            )
        if w.get("ingress"):
            out.append(f"{profile} · traefik: {w['ingress']}")
    return out
