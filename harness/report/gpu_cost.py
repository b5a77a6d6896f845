"""The GPU cost section of report.md and report.html: each load profile's energy, power, output
tokens per joule and throttled stretches beside the client latency they coincide with
(harness.load.gpu_cost computes them; the record keeps them under load.<profile>.gpu_power),
and in report.html the card's power over the run with the throttled stretches shaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.report import summary, svg
from harness.report.svg import esc, slug, table
from harness.telemetry.gpu_power import FILE_NAME, read_series
from harness.units import count, number

HEAD = [
    "profile", "energy J", "from", "power mean W", "power max W", "out tokens", "tokens/J",
    "temp max °C", "SM clock MHz", "throttled s",
]  # fmt: skip


def sections(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each load profile's gpu_power section, where it has one."""
    found = {p: s.get("gpu_power") for p, s in summary.profiles(dict(doc)).items()}
    return {p: sec for p, sec in found.items() if isinstance(sec, Mapping)}


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{number(seconds * 1000)} ms"


def rows(secs: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    out = []
    for profile, s in secs.items():
        if not s.get("measured"):
            continue
        lo, hi = s.get("sm_clock_mhz_min"), s.get("sm_clock_mhz_max")
        clock = "n/a" if lo is None else f"{number(lo, 4)} - {number(hi, 4)}"
        out.append([
            profile, number(s.get("energy_j"), 4), s.get("energy_source") or "n/a",
            number(s.get("power_mean_w")), number(s.get("power_max_w")),
            count(s.get("output_tokens")), number(s.get("tokens_per_joule")),
            number(s.get("temp_max_c")), clock, number(s.get("throttled_s")),
        ])  # fmt: skip
    return out


def stretch_lines(profile: str, s: Mapping[str, Any]) -> list[str]:
    """One sentence per throttled stretch: when, why, and the latency of the requests sent in it
    against those sent while the card was not throttled."""
    out = []
    base = s.get("unthrottled") or {}
    for st in s.get("throttle_stretches") or []:
        out.append(
            f"{profile}: throttled {number(st['start_s'])} - {number(st['end_s'])} s "
            f"({', '.join(st['reasons'])}): {count(st['requests'])} requests sent in it, TTFT "
            f"p95 {_ms(st['ttft_p95_s'])}, E2E p95 {_ms(st['e2e_p95_s'])}; outside every "
            f"stretch {count(base.get('requests'))} requests, TTFT p95 "
            f"{_ms(base.get('ttft_p95_s'))}, E2E p95 {_ms(base.get('e2e_p95_s'))}"
        )
    return out


def lines(secs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The sentences under the table: why a profile was not measured, each throttled stretch,
    and what the board could not report."""
    out = []
    reasons = {p: str(s.get("reason")) for p, s in secs.items() if not s.get("measured")}
    if reasons and len(set(reasons.values())) == 1:
        out.append(f"GPU power: {next(iter(reasons.values()))}")
    else:
        out += [f"{p}: GPU power {why}" for p, why in reasons.items()]
    for profile, s in secs.items():
        if not s.get("measured"):
            continue
        out += stretch_lines(profile, s)
        if not s.get("throttle_stretches"):
            out.append(f"{profile}: the card did not throttle")
        if s.get("unsupported"):
            out.append(f"{profile}: the board does not report {', '.join(s['unsupported'])}")
        if s.get("nvml_errors"):
            out.append(f"{profile}: {count(s['nvml_errors'])} NVML readings failed")
    return out


def markdown(doc: Mapping[str, Any]) -> list[str]:
    """report.md's section; [] when no load profile carries one."""
    secs = sections(doc)
    if not secs:
        return []
    out = ["## GPU cost", ""]
    body = rows(secs)
    if body:
        out += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in body]
        out.append("")
    return [*out, *(f"- {line}" for line in lines(secs)), ""]


def power_plot(profile: str, s: Mapping[str, Any], series: Sequence[Mapping[str, Any]]) -> str:
    """Power over the run (seconds from the load window's start), throttled stretches shaded."""
    t0 = float(s.get("t0") or min(float(r["t"]) for r in series))
    pts = [
        (float(r["t"]) - t0, float(r["power_w"])) for r in series if r.get("power_w") is not None
    ]
    if not pts:
        return ""
    bands = [
        (float(st["start_s"]), float(st["end_s"]), ", ".join(st["reasons"]))
        for st in s.get("throttle_stretches") or []
    ]
    return svg.line_chart(
        f"plot-gpu-power-{slug(profile)}",
        f"{profile}: GPU power (throttled shaded)",
        [("power W", pts)],
        unit="W",
        bands=bands,
    )


def html(doc: Mapping[str, Any], run_dir: Path | None = None) -> str:
    """report.html's section; '' when no load profile carries one. `run_dir` supplies each
    profile's gpu-power.jsonl for the plots."""
    secs = sections(doc)
    if not secs:
        return ""
    body = rows(secs)
    items = "".join(f"<li>{esc(line)}</li>" for line in lines(secs))
    plots = []
    for profile, s in secs.items():
        if run_dir is not None and s.get("measured"):
            series = read_series(run_dir / "load" / profile / FILE_NAME)
            if series:
                plots.append(power_plot(profile, s, series))
    return (
        "<h2>GPU cost</h2>"
        + (table(HEAD, body) if body else "")
        + (f"<ul>{items}</ul>" if items else "")
        + (f'<div class="plots">{"".join(plots)}</div>' if plots else "")
    )
