"""`harness envelope`'s result in the reports: per engine, the grid of prompt length x
concurrency, each cell passed or failed against the objectives, what bound it as measured
(the engine's slots or its KV pool) and whether that agrees with the KV model's prediction.
report.html draws it as a heatmap (`plot-envelope-<engine>`), report.md as a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.report import svg
from harness.report.svg import esc, slug
from harness.units import count, ms, number

PASS_FILL = "#a6dba0"
FAIL_FILL = "#ee6677"
UNMEASURED_FILL = "#f4f4f4"
BOUND_MARK = {"none": "", "slots": "slots", "kv": "kv", "unknown": "?"}
OBJECTIVE_NAMES = {"ttft": "TTFT", "e2e": "E2E", "itl": "ITL", "tpot": "TPOT"}
LABEL_W, CELL_W, CELL_H = 96, 84, 48  # the heatmap's row labels and cells, px


def section(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The record's `envelope.result`, None when the run measured no envelope."""
    sec = (doc.get("envelope") or {}).get("result")
    return sec or None


def agreement(engine: Mapping[str, Any]) -> tuple[int, int]:
    """(cells whose measured bound agrees with the prediction, cells measured)."""
    cells = engine["cells"]
    return sum(bool(c["agrees"]) for c in cells), len(cells)


def caption(engine: Mapping[str, Any]) -> str:
    n, m = agreement(engine)
    return f"measured against the KV model's prediction: {n} of {m} cells agree"


def _objective(key: str, value: float) -> str:
    parts = key.split("_")
    if len(parts) == 3 and parts[2] == "s":
        return f"{parts[0]} {OBJECTIVE_NAMES.get(parts[1], parts[1])} ≤ {ms(value)}"
    return f"{key} ≤ {number(value)}"


def engine_line(engine: Mapping[str, Any], what_if: Mapping[str, str]) -> str:
    """The engine's shape and the objectives its cells are judged by, in one sentence."""
    limits = engine.get("limits") or {}
    judged = ", ".join(_objective(k, float(v)) for k, v in limits.items()) or "no latency limit"
    pool = f"KV pool {count(engine.get('kv_tokens'))} tokens"
    if engine["engine"] in what_if:
        pool += f" (what-if {what_if[engine['engine']]})"
    return (
        f"{engine['engine']} ({engine.get('role', '?')}): max-model-len "
        f"{count(engine.get('max_model_len'))}, max-num-seqs {engine.get('max_num_seqs', '?')}, "
        f"{pool}, block {engine.get('block_size', '?')}; {engine.get('output_tokens', '?')} "
        f"output token{'' if engine.get('output_tokens') == 1 else 's'} per request; judged by "
        f"{judged}"
    )


def _grid(
    engine: Mapping[str, Any],
) -> tuple[list[int], list[int], dict[tuple[int, int], Mapping[str, Any]]]:
    """Rows (prompt lengths, longest first), columns (concurrency, ascending), cells by both."""
    cells = {(int(c["prompt_tokens"]), int(c["concurrency"])): c for c in engine["cells"]}
    rows = sorted({*map(int, engine.get("prompt_lengths") or []), *(p for p, _ in cells)})
    cols = sorted({*map(int, engine.get("concurrency") or []), *(k for _, k in cells)})
    return rows[::-1], cols, cells


def cell_text(c: Mapping[str, Any] | None) -> str:
    """'pass', 'FAIL slots', 'FAIL kv ≠ pred none'; '-' for a cell not measured."""
    if c is None:
        return "-"
    text = "pass" if c["passed"] else "FAIL"
    mark = BOUND_MARK.get(str(c["measured_bound"]), str(c["measured_bound"]))
    if mark:
        text += f" {mark}"
    if not c["agrees"]:
        text += f" ≠ pred {c['predicted_bound']}"
    return text


def _tip(c: Mapping[str, Any]) -> str:
    verdict = "passed" if c["passed"] else "FAILED"
    why = f" ({c['why']})" if c.get("why") else ""
    agree = "agrees" if c["agrees"] else "DISAGREES"
    return (
        f"{count(c['prompt_tokens'])} prompt tokens x {c['concurrency']} concurrent: "
        f"{verdict}{why}; bound measured {c['measured_bound']}, predicted "
        f"{c['predicted_bound']} ({agree}); running max {number(c.get('running_max'))} "
        f"(predicted {number(c.get('predicted_running'))}), waiting max "
        f"{number(c.get('waiting_max'))}, preemptions {number(c.get('preemptions'))}; p95 TTFT "
        f"{ms(c.get('ttft_p95_s'))}, p95 E2E {ms(c.get('e2e_p95_s'))}; errors "
        f"{number(c.get('errors'))}"
    )


def markdown(doc: Mapping[str, Any]) -> list[str]:
    """report.md's envelope section; [] when the run measured none."""
    sec = section(doc)
    if sec is None:
        return []
    what_if = sec.get("kv_what_if") or {}
    out = ["## Safe envelope", ""]
    out.append(
        f"- {sec.get('profile', 'envelope')} on {sec.get('target', '?')} in "
        f"{number(sec.get('wall_s'))} s"
        + ("; KV what-if: " + ", ".join(f"{e} {v}" for e, v in what_if.items()) if what_if else "")
    )
    for engine in sec["engines"]:
        rows, cols, cells = _grid(engine)
        out += ["", f"### {engine['engine']}", "", f"- {engine_line(engine, what_if)}"]
        out += [f"- {caption(engine)}", ""]
        out.append("| prompt tokens | " + " | ".join(f"{k} concurrent" for k in cols) + " |")
        out.append("|" + "---|" * (len(cols) + 1))
        for p in rows:
            texts = [cell_text(cells.get((p, k))) for k in cols]
            out.append(f"| {count(p)} | " + " | ".join(texts) + " |")
        off = [c for c in engine["cells"] if not c["agrees"]]
        if off:
            out.append("")
        for c in off:
            out.append(
                f"- Disagrees at {count(c['prompt_tokens'])} tokens x {c['concurrency']}: "
                f"measured {c['measured_bound']}, predicted {c['predicted_bound']} "
                f"(running max {number(c.get('running_max'))}, predicted "
                f"{number(c.get('predicted_running'))}; preemptions "
                f"{number(c.get('preemptions'))})"
            )
    return [*out, ""]


def html(doc: Mapping[str, Any]) -> str:
    """report.html's envelope section, one heatmap per engine; '' when the run measured none."""
    sec = section(doc)
    if sec is None:
        return ""
    what_if = sec.get("kv_what_if") or {}
    parts = ["<h2>Safe envelope</h2>"]
    if what_if:
        parts.append(
            "<p>KV what-if: " + esc(", ".join(f"{e} {v}" for e, v in what_if.items())) + "</p>"
        )
    plots = []
    for engine in sec["engines"]:
        plots.append(
            f'<div style="max-width:{_width(engine)}px">{heatmap(engine)}'
            f"<p class=meta>{esc(engine_line(engine, what_if))}</p></div>"
        )
    return "".join(parts) + f'<div class="plots">{"".join(plots)}</div>'


def _legend(items: Sequence[tuple[str, str, bool]], x: float, y: float) -> str:
    """Entries left to right: (label, fill, outlined as a disagreeing cell)."""
    out = []
    for label, fill, outlined in items:
        stroke = ' stroke="#000" stroke-width="2" stroke-dasharray="4 2"' if outlined else ""
        out.append(
            f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="14" height="12" fill="{fill}"{stroke}/>'
            + svg._text(x + 19, y, label, "start")
        )
        x += 30 + 6.2 * len(label)
    return "".join(out)


def _width(engine: Mapping[str, Any]) -> int:
    return max(LABEL_W + CELL_W * len(_grid(engine)[1]) + 16, 470)


def heatmap(engine: Mapping[str, Any]) -> str:
    """Prompt length (y, longest at the top) by concurrency (x): green passed, red failed,
    the measured bound written in the cell, a dashed black outline where it disagrees with
    the prediction, max-num-seqs as a dashed line between its column and the next."""
    rows, cols, cells = _grid(engine)
    label_w, cell_w, cell_h = LABEL_W, CELL_W, CELL_H
    items = [("passed", PASS_FILL, False), ("failed", FAIL_FILL, False)]
    items.append(("measured ≠ predicted", "#ffffff", True))
    if len(cells) < len(rows) * len(cols):
        items.append(("not measured", UNMEASURED_FILL, False))
    width = _width(engine)
    grid_top = 88  # below the title, the legend, the max-num-seqs label and the column heads
    bottom = grid_top + cell_h * len(rows)
    height = bottom + 50
    title = f"Safe envelope: {engine['engine']}"
    out = svg._open(f"plot-envelope-{slug(str(engine['engine']))}", title, width, height)
    out.append(_legend(items, 10, 38))
    mid = (grid_top + bottom) / 2
    out.append(svg._text(12, mid, "prompt tokens", extra=f' transform="rotate(-90 12 {mid:.1f})"'))
    for j, k in enumerate(cols):
        x = label_w + (j + 0.5) * cell_w
        out.append(svg._text(x, grid_top - 7, k, extra=' font-weight="600"'))
    out.append(svg._text(label_w + cell_w * len(cols) / 2, bottom + 18, "concurrent requests"))
    for i, p in enumerate(rows):
        y = grid_top + i * cell_h
        out.append(
            svg._text(label_w - 8, y + cell_h / 2 + 4, count(p), "end", ' font-weight="600"')
        )
        for j, k in enumerate(cols):
            out.append(_cell(cells.get((p, k)), label_w + j * cell_w, y, cell_w, cell_h))
    seqs = engine.get("max_num_seqs")
    if isinstance(seqs, int) and seqs in cols[:-1]:
        x = label_w + (cols.index(seqs) + 1) * cell_w
        out.append(
            f'<line class="max-num-seqs" x1="{x}" y1="{grid_top - 32}" x2="{x}" y2="{bottom}" '
            f'stroke="{svg.AXIS}" stroke-width="1.5" stroke-dasharray="6 3">'
            f"<title>max-num-seqs {seqs}</title></line>"
            + svg._text(x + 4, grid_top - 24, f"max-num-seqs {seqs}", "start")
        )
    out.append(svg._text(width / 2, bottom + 38, caption(engine), extra=' font-style="italic"'))
    out.append("</svg>")
    return "".join(out)


def _cell(c: Mapping[str, Any] | None, x: float, y: float, w: int, h: int) -> str:
    box = f'x="{x + 1:.1f}" y="{y + 1:.1f}" width="{w - 2}" height="{h - 2}"'
    if c is None:
        return f'<rect {box} fill="{UNMEASURED_FILL}" rx="3"><title>not measured</title></rect>'
    fill = PASS_FILL if c["passed"] else FAIL_FILL
    ink = svg.ink(fill)
    mark = BOUND_MARK.get(str(c["measured_bound"]), str(c["measured_bound"]))
    lines = ["pass" if c["passed"] else "FAIL", *([mark] if mark else [])]
    outline = ""
    if not c["agrees"]:
        lines.append(f"≠ pred {c['predicted_bound']}")
        outline = (
            f'<rect x="{x + 3:.1f}" y="{y + 3:.1f}" width="{w - 6}" height="{h - 6}" '
            'fill="none" stroke="#000" stroke-width="2.5" stroke-dasharray="5 3"/>'
        )
    step = 13
    first = y + h / 2 - step * (len(lines) - 1) / 2 + 4
    texts = "".join(
        svg._text(x + w / 2, first + n * step, line,
                  extra=f' fill="{ink}"' + (' font-weight="600"' if n == 0 else ""))
        for n, line in enumerate(lines)
    )  # fmt: skip
    cls = "cell" if c["agrees"] else "cell disagrees"
    return (
        f'<g class="{cls}"><title>{esc(_tip(c))}</title><rect {box} fill="{fill}" rx="3"/>'
        f"{outline}{texts}</g>"
    )
