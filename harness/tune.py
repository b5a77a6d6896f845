"""`harness tune`: change engine flags or ai-router settings in the compose file, judged before
and after by `harness check`, then proven on a restarted stack.

The order is what keeps a bad change cheap:
1. the change is made in memory (textually, `harness.compose.edit`) and diffed: a human-review
   item without --reviewed stops here, naming the item;
2. `harness check` of the file before and after, side by side: a preflight error after the
   change stops here, naming the rule; nothing was written or restarted;
3. the change is written, the previous file kept beside it byte for byte (`<compose>.prev`);
4. the stack restarts one service at a time and the main job (acceptance, steady, kv-pressure)
   runs against it, then `harness compare` against the baseline: keep or roll back;
5. with --rollback-on-fail a rollback restores `<compose>.prev` byte for byte and restarts the
   stack again.

How a target restarts and verifies is a `Restarter`; the CLI provides the twin's and the GPU
stack's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.compose import parse_stack
from harness.compose.diff import ComposeDiff, diff_compose
from harness.compose.edit import Edit, apply_edits
from harness.config import Settings
from harness.errors import InputError
from harness.units import gib
from harness.vram.check import CheckResult, run_check
from harness.vram.rules import RULES, Finding, Severity

PREV_SUFFIX = ".prev"
Say = Callable[[str], None]


# -- the proposal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    compose: Path
    before_text: str
    after_text: str
    edits: tuple[Edit, ...]
    diff: ComposeDiff

    @property
    def changed(self) -> bool:
        return bool(self.diff.changes)


def read_compose(compose: Path) -> str:
    try:
        raw = compose.read_bytes()
    except OSError as exc:
        raise InputError(f"{compose}: cannot read the compose file: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{compose}: not UTF-8 text; edit it by hand") from None


def propose(compose: Path, edits: Sequence[Edit]) -> Proposal:
    if not edits:
        raise InputError("nothing to change: give SERVICE.--flag=VALUE or --env SERVICE.NAME=VALUE")
    before = read_compose(compose)
    after = apply_edits(before, edits, str(compose))
    parse_stack(after, compose)  # a value the engine would refuse stops here, naming the flag
    diff = diff_compose(before, after, f"{compose} (now)", f"{compose} (changed)")
    return Proposal(compose, before, after, tuple(edits), diff)


def check_text(
    text: str, compose: Path, settings: Settings, nvml_total: int | None = None
) -> CheckResult:
    """`harness check` of a compose text that is not written yet (a copy under the same name
    in a temporary folder, so that messages read as for the real file)."""
    with tempfile.TemporaryDirectory(prefix="harness-tune-") as tmp:
        path = Path(tmp) / compose.name
        path.write_text(text, encoding="utf-8")
        return run_check(path, settings, nvml_total=nvml_total)


# -- before and after, side by side -----------------------------------------------------------


def _rule_verdict(findings: Sequence[Finding], rule: str) -> str:
    mine = [f for f in findings if f.rule == rule]
    if not mine:
        return "ok"
    shown = []
    for f in mine:
        sev = "ERROR" if f.severity is Severity.ERROR else str(f.severity)
        shown.append(f"{sev} {f.service}" if f.service else sev)
    return ", ".join(dict.fromkeys(shown))


def _engine_rows(result: CheckResult, service: str) -> dict[str, str]:
    try:
        e = result.plan.engine(service)
    except StopIteration:
        return {}
    return {
        "model": e.model,
        "utilization": f"{e.utilization:g}",
        "budget": gib(e.budget_bytes),
        "KV pool": gib(e.kv_pool_bytes),
        "KV cache dtype": e.kv_cache_dtype,
        "capacity": f"{e.kv_capacity_tokens:,} tokens",
        "max-model-len": f"{e.max_model_len:,}",
        "at max-model-len": f"{e.max_concurrency_at_max_model_len:.2f}x",
        "max-num-seqs": str(e.max_num_seqs),
    }


def _card_rows(result: CheckResult) -> dict[str, str]:
    p = result.plan
    return {
        "utilization sum": f"{p.utilization_sum:g}",
        "budgets + CUDA contexts": gib(p.budgets_bytes + p.contexts_bytes),
        "headroom": gib(p.headroom_bytes),
    }


def side_by_side(before: CheckResult, after: CheckResult) -> str:
    """`harness check` before and after the change, one row per figure and per rule; `*`
    marks what the change moves."""
    rows: list[tuple[str, str, str, str]] = []
    engines = [e.service for e in before.plan.engines]
    engines += [e.service for e in after.plan.engines if e.service not in engines]
    for service in engines:
        b, a = _engine_rows(before, service), _engine_rows(after, service)
        for n, label in enumerate(dict.fromkeys([*b, *a])):
            rows.append((service if n == 0 else "", label, b.get(label, "-"), a.get(label, "-")))
    b, a = _card_rows(before), _card_rows(after)
    for n, label in enumerate(b):
        rows.append(("card" if n == 0 else "", label, b[label], a[label]))
    for n, rule in enumerate(RULES):
        rows.append(
            (
                "rules" if n == 0 else "",
                rule,
                _rule_verdict(before.findings, rule),
                _rule_verdict(after.findings, rule),
            )
        )
    head = ("", "", "before", "after")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = []
    for r in [head, *rows]:
        mark = " *" if r is not head and r[2] != r[3] else ""
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + mark)
    total = after.plan.assumptions
    lines.append(f"(card: {gib(total.total_bytes)}, {total.total_source}; * changed)")
    return "\n".join(lines)


def refusals(after: CheckResult) -> list[str]:
    """The preflight errors that stop the change, each naming its rule."""
    return [
        f"rule {f.rule}" + (f" [{f.service}]" if f.service else "") + f": {f.message}"
        for f in after.findings
        if f.severity is Severity.ERROR
    ]


# -- writing and rolling back -----------------------------------------------------------------


def prev_path(compose: Path) -> Path:
    return compose.with_name(compose.name + PREV_SUFFIX)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace(path: Path, data: bytes, mode_from: Path) -> None:
    tmp = path.with_name(path.name + ".tune-tmp")
    tmp.write_bytes(data)
    shutil.copymode(mode_from, tmp)
    os.replace(tmp, path)


def write_change(p: Proposal) -> Path:
    """Keep the current file as `<compose>.prev` (byte for byte), then write the change."""
    prev = prev_path(p.compose)
    shutil.copyfile(p.compose, prev)
    _replace(p.compose, p.after_text.encode("utf-8"), p.compose)
    return prev


def roll_back(compose: Path) -> str:
    """Put `<compose>.prev` back, byte for byte; its sha256."""
    prev = prev_path(compose)
    _replace(compose, prev.read_bytes(), compose)
    digest = sha256(compose)
    if digest != sha256(prev):
        raise InputError(f"{compose}: differs from {prev} after the rollback")
    return digest


# -- restart, verification, verdict -----------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    code: int  # the main job's pytest exit code
    run_dir: Path | None


class Restarter(Protocol):
    """How one target restarts its stack and proves a change on it."""

    target: str

    def problems(self) -> list[str]:
        """Why the change could not be proven here; checked before anything is written."""
        ...

    def restart(self) -> None:
        """Restart the stack with the compose file as it is now, one service at a time (or
        leave that to `verify`, whose bring-up is the restart)."""
        ...

    def verify(self, pytest_args: Sequence[str]) -> Verification: ...

    def restore(self) -> None:
        """After a rollback: the stack back up with the restored file, health-gated."""
        ...

    def kept(self) -> None:
        """The change stays: whatever the target remembers about a good file."""
        ...


@dataclass(frozen=True)
class Judgement:
    keep: bool
    lines: tuple[str, ...] = ()


def running_lines(record: dict[str, Any]) -> list[str]:
    """Each engine's most running requests in each load profile, against --max-num-seqs."""
    out = []
    for profile, s in (record.get("load") or {}).items():
        for engine, e in (s.get("engines") or {}).items():
            if e.get("running_max") is not None:
                out.append(
                    f"{profile}: {engine} ran at most {e['running_max']:.0f} at once "
                    f"(--max-num-seqs {e.get('max_num_seqs', '?')})"
                )
    return out


def judge(v: Verification, baseline: str | None, settings: Settings) -> Judgement:
    """Keep when the main job passed and `harness compare` finds no regression against the
    baseline (the pinned one, else the last green run of the same target)."""
    from harness.report.compare import compare, run_dirs_of, tolerances
    from harness.report.compare_render import render_table
    from harness.report.history import resolve_baseline, root_of
    from harness.report.schema import load_record

    if v.run_dir is None:
        return Judgement(False, ("no run was recorded: the stack never came up",))
    record = load_record(v.run_dir / "record.json")
    lines = [f"run {v.run_dir}: {record['status']} (pytest exit code {v.code})"]
    lines += running_lines(record)
    try:
        base = resolve_baseline(baseline, root_of(v.run_dir), record["run_id"], record["target"])
    except InputError as exc:
        lines.append(f"nothing to compare with ({exc}); the verdict rests on the run alone")
        return Judgement(v.code == 0, tuple(lines))
    base_doc = load_record(base)
    dirs = run_dirs_of(record, v.run_dir, base_doc, base)
    # The compose file differs from the baseline's on purpose: the metrics judge the change.
    result = compare(record, base_doc, tolerances(settings), run_dirs=dirs, compose_changed=True)
    lines += [f"baseline: {base}", render_table(result, only_interesting=True)]
    return Judgement(v.code == 0 and not result.regression, tuple(lines))


@dataclass
class Tune:
    proposal: Proposal
    check: Callable[[str], CheckResult]  # `harness check` of a compose text
    restarter: Restarter
    judge: Callable[[Verification], Judgement]
    reviewed: bool = False
    rollback_on_fail: bool = False
    pytest_args: Sequence[str] = ()
    # Measured on the stack as it is, before anything is written (--judge capacity).
    before_change: Callable[[], None] | None = None
    say: Say = print
    steps: list[str] = field(default_factory=list)

    def run(self) -> int:
        """0: the change is kept; 1: refused, or the verdict is roll back."""
        p, say = self.proposal, self.say
        say(p.diff.render(self.reviewed))
        if not p.changed:
            say("nothing to change: the compose file already says so")
            return 0
        unreviewed = p.diff.unreviewed(self.reviewed)
        if unreviewed:
            say(
                "tune: refused before touching anything: human-review item(s) "
                + ", ".join(c.item for c in unreviewed)
                + "; rerun with --reviewed once a human has looked at them"
            )
            return 1
        # Checked only now: a model the review refused may be one the catalog does not know.
        before, after = self.check(p.before_text), self.check(p.after_text)
        say("")
        say(side_by_side(before, after))
        refused = refusals(after)
        if refused:
            say("tune: refused before touching anything: the change fails preflight:")
            for line in refused:
                say(f"  {line}")
            return 1
        problems = self.restarter.problems()
        if problems:
            say("tune: refused before touching anything: " + "; ".join(problems))
            return 1
        if self.before_change is not None:
            self.before_change()
            self.steps.append("measured before")
        prev = write_change(p)
        self.steps.append("written")
        say(f"\nwrote {p.compose} (previous version kept as {prev})")
        say(f"restarting the {self.restarter.target} stack, one service at a time")
        self.restarter.restart()
        self.steps.append("restarted")
        verification = self.restarter.verify(list(self.pytest_args))
        self.steps.append("verified")
        verdict = self.judge(verification)
        for line in verdict.lines:
            say(line)
        if verdict.keep:
            self.restarter.kept()
            say(f"verdict: keep ({', '.join(str(e) for e in p.edits)})")
            return 0
        if not self.rollback_on_fail:
            say(
                f"verdict: roll back. The change is still in {p.compose}; to undo it: "
                f"cp {prev} {p.compose}, then restart the stack (or rerun with --rollback-on-fail)"
            )
            return 1
        digest = roll_back(p.compose)
        self.steps.append("rolled back")
        say(f"verdict: roll back. {p.compose} restored from {prev} (sha256 {digest[:12]})")
        self.restarter.restore()
        self.steps.append("restored")
        say(f"the {self.restarter.target} stack is back up with the previous file")
        return 1
