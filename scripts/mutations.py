#!/usr/bin/env python3
"""Every protection proven: each mutation below removes or weakens one protection, and the fast
tests named beside it must fail on it.

The tree (tracked files and untracked ones git does not ignore, as they are on disk) is copied
to a temporary folder; the working tree is never touched. The named tests first run unmutated
there and must pass; then each mutation is applied alone (two at a time by default, each in a
copy of its own: `--jobs`), its tests run with this interpreter
(`-p no:cacheprovider -q -x`), and the file is put back. PYTHONPATH puts the copy's `harness`
and `ai_router` ahead of the editable installs, and a child session is checked to import them
from the copy before anything runs: otherwise a mutation would look killed or survived for the
installed code.

Prints `name | killed/survived | seconds` and the total; exits 1 on a survivor, on a mutation
whose old text is not in its file exactly once, or when the unmutated tests fail.

    scripts/mutations.py               # all of them
    scripts/mutations.py restore-after-green-run fallback-rate   # some, by name
    scripts/mutations.py --list
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# One mutation's tests may take this long on a loaded 2-core machine; past it, it is an error.
TEST_TIMEOUT_S = 120


@dataclass(frozen=True)
class Mutation:
    name: str
    protects: str  # the protection the mutation removes, in the owner's words
    path: str  # relative to the repository root
    old: str  # exact text, present once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids (fast unit tests) that must fail on it


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "restore-after-green-run",
        "production comes back after a normal GPU run (ContainersBackend.down)",
        "harness/stack/containers/backend.py",
        "problems = self._teardown(quiet=False, restore=not self.keep_stack)",
        "problems = self._teardown(quiet=False, restore=False)",
        ("tests/unit/test_container_prod.py::test_down_after_a_green_run_restores_production",),
    ),
    Mutation(
        "reconcile-late-clock",
        "reconciliation: a client TTFT below the engine's (a late clock) fails",
        "harness/load/reconcile.py",
        "if diff < -bounds.below_ms:",
        "if False and diff < -bounds.below_ms:",
        ("tests/unit/test_load_reconcile.py::test_a_late_client_clock_does_not_reconcile",),
    ),
    Mutation(
        "reconcile-upper-bound",
        "reconciliation: a client TTFT more than 150 ms above the engine's fails",
        "harness/load/reconcile.py",
        "elif diff > bounds.above_ms:",
        "elif False and diff > bounds.above_ms:",
        (
            "tests/unit/test_load_reconcile.py"
            "::test_a_client_200_ms_above_the_engine_does_not_reconcile",
        ),
    ),
    Mutation(
        "reconcile-tokens",
        "reconciliation: the client's token counts equal the engine's",
        "harness/load/reconcile.py",
        "            if c != e:\n",
        "            if False:\n",
        (
            "tests/unit/test_load_reconcile.py"
            "::test_the_same_requests_with_other_token_counts_are_named",
        ),
    ),
    Mutation(
        "kv-bytes-per-token",
        "the KV prediction: bytes per token of the VRAM model (K and V)",
        "harness/vram/plan.py",
        "    return (\n        2\n        * arch.num_layers",
        "    return (\n        1\n        * arch.num_layers",
        ("tests/unit/test_vram.py::test_llama3_8b_stores_128_kib_per_token_in_bf16",),
    ),
    Mutation(
        "kv-peak-band",
        "the KV prediction: kv-pressure's peak band counts max-num-seqs sequences",
        "harness/load/kvmodel.py",
        "        max_num_seqs * low_seq / capacity_tokens,",
        "        low_seq / capacity_tokens,",
        (
            "tests/unit/test_slo.py::test_the_prediction_on_the_card",
            "tests/unit/test_slo.py::test_the_prediction_catches",
        ),
    ),
    Mutation(
        "over-limit-reason",
        "a conversation past the primary's limit falls back as context_too_long",
        "infra/ai-router/ai_router/classifier.py",
        "        if count.tokens >= count.context:\n            raise _ContextTooLong()",
        "        if False:\n            raise _ContextTooLong()",
        (
            "infra/ai-router/tests/test_router_headroom.py::test_past_the_primarys_limit_is_context_too_long",
        ),
    ),
    Mutation(
        "planted-secret-console",
        "the planted-secret scan searches the console",
        "harness/report/planted_secrets.py",
        '    hits += _hits("console output", wanted, {n for n in needles if n in console})\n',
        "",
        ("tests/unit/test_planted_secrets.py::test_the_console_and_nothing_skipped_is_searched",),
    ),
    Mutation(
        "planted-secret-fragments",
        "the planted-secret scan finds part of a value",
        "harness/report/planted_secrets.py",
        "        elif any(p in found for p in pieces):",
        "        elif False:",
        ("tests/unit/test_planted_secrets.py::test_part_of_a_value_is_a_leak_too",),
    ),
    Mutation(
        "max-num-seqs",
        "the twin keeps the stack's --max-num-seqs (it queues where the GPU would)",
        "harness/twin/engines.py",
        '_GPU_ONLY = ("--gpu-memory-utilization", "--quantization", "--tensor-parallel-size")',
        '_GPU_ONLY = ("--gpu-memory-utilization", "--quantization", "--tensor-parallel-size",'
        ' "--max-num-seqs")',
        (
            "tests/unit/test_twin_engines.py"
            "::test_twin_primary_keeps_the_stack_flags_and_gets_the_predicted_capacity",
        ),
    ),
    Mutation(
        "fallback-rate",
        "max_fallback_rate: one fallback in a hundred fails a limit of 0",
        "harness/load/slo.py",
        "if not answered or fell / answered <= limit:",
        "if not answered or fell / answered <= limit + 0.05:",
        ("tests/unit/test_slo.py::test_one_fallback_in_a_hundred_fails_the_twins_limit_of_zero",),
    ),
    Mutation(
        "routing-under-load-per-route",
        "routing under load: each route is held to the same prompts' accuracy alone",
        "harness/load/routing.py",
        '        if v["drop"] > max_drop',
        "        if False",
        (
            "tests/unit/test_slo.py"
            "::test_a_sixth_of_search_going_local_fails_routing_accuracy_under_load",
        ),
    ),
    Mutation(
        "slo-unknown-key",
        "an unknown SLO key is a config error, not a silently missing limit",
        "harness/load/slo_table.py",
        '            raise _unknown(f"{where}.{key}", key, PROFILE_KEYS, hint, near=ROUTE_KEYS)',
        "            continue",
        ("tests/unit/test_slo.py::test_unknown_or_malformed_keys_are_config_errors",),
    ),
    Mutation(
        "regression-gate",
        "make test's gate: a percentile past its allowance is a regression",
        "harness/load/gate.py",
        "                bad.append(line)",
        "                pass",
        (
            "tests/unit/test_gate.py::test_a_run_like_the_baseline_passes_and_one_twice_as_slow_fails",
        ),
    ),
    Mutation(
        "locust-shape",
        "each locustfile runs its own profile's shape, never the imported base",
        "harness/load/shapes.py",
        "    abstract = True",
        "    abstract = False",
        ("tests/unit/test_locustfiles.py::test_each_profile_locustfile_runs_its_own_shape",),
    ),
    Mutation(
        "classifier-retry",
        "a classification whose connection broke is asked once more",
        "infra/ai-router/ai_router/classifier.py",
        "                if attempt == 2:",
        "                if attempt >= 1:",
        (
            "infra/ai-router/tests/test_router_classifier.py"
            "::test_a_connection_that_breaks_once_is_asked_again",
        ),
    ),
    Mutation(
        "burst-overlap",
        "an engine that runs more than max-num-seqs streams at once fails the concurrency burst",
        "tests/acceptance/concurrency_burst.py",
        "            if end - start < min_s:",
        "            if end - start < 10 * min_s:",
        ("tests/unit/test_concurrency_overlap.py::test_four_streams_decoding_together_are_four",),
    ),
    Mutation(
        "classification-prompt",
        "a change to what the classifier sees is caught on the harness side",
        "infra/ai-router/ai_router/classify_prompt.py",
        '        if role in ("user", "assistant"):',
        '        if role in ("user", "assistant", "tool"):',
        (
            "tests/unit/test_classification_golden.py"
            "::test_the_classifier_sees_exactly_the_pinned_messages",
        ),
    ),
    Mutation(
        "router-413-drain",
        "a body refused as too large is read to its end, so traefik passes the 413 on",
        "infra/ai-router/ai_router/app.py",
        "        _drain_body(config)\n",
        "",
        ("infra/ai-router/tests/test_router_http.py::test_413_reads_the_refused_body_to_its_end",),
    ),
    Mutation(
        "negative-client-ttft",
        "a client TTFT below zero fails reconciliation on its own",
        "harness/load/reconcile.py",
        "    negative = [t for t in client if t < 0]",
        "    negative = [t for t in client if t < -1.0]",
        ("tests/unit/test_load_reconcile.py::test_a_negative_client_ttft_is_named_on_its_own",),
    ),
    Mutation(
        "ingress-enable-label",
        "the twin's traefik routes only the services the compose labels enable",
        "harness/stack/ingress.py",
        "        if not enabled or svc.name == proxy.name:",
        "        if svc.name == proxy.name:",
        ("tests/unit/test_ingress_routes.py::test_a_service_not_enabled_is_not_routed",),
    ),
    Mutation(
        "probe-stop-arrivals",
        "an over-saturated capacity probe sends nothing once the harness ends it",
        "harness/load/open_loop.py",
        "        gevent.sleep(max(0.0, due - time.time()))\n        if stopped():",
        "        gevent.sleep(max(0.0, due - time.time()))\n        if False:",
        ("tests/unit/test_probe_stop.py::test_no_arrival_goes_out_after_the_stop_file",),
    ),
    Mutation(
        "envelope-arrival-queue",
        "a queue seen only as a cell's requests arrive is no bound when all of them ran",
        "harness/load/envelope.py",
        "    if running_max >= concurrency:\n        return NONE",
        "    if running_max >= concurrency and waiting_max == 0:\n        return NONE",
        ("tests/unit/test_envelope.py::test_the_measured_bound_comes_from_the_engines_gauges",),
    ),
    Mutation(
        "envelope-unique-prefix",
        "no two requests of an envelope share a first KV block (no prefix-cache hit)",
        "harness/load/envelope_probe.py",
        "    start = (k * 97) % len(ids)",
        "    start = 0",
        (
            "tests/unit/test_envelope.py::test_no_two_requests_of_an_envelope_share_a_first_kv_block",
        ),
    ),
    Mutation(
        "tune-capacity-noise",
        "tune --judge capacity keeps a change only when the capacity rose beyond the noise",
        "harness/tune_capacity.py",
        "    return Judgement(acceptance_passed and moved == RAISED, tuple(lines))",
        "    return Judgement(acceptance_passed and moved != LOWERED, tuple(lines))",
        (
            "tests/unit/test_tune_capacity.py::"
            "test_kept_only_when_acceptance_passed_and_the_capacity_rose",
        ),
    ),
    Mutation(
        "tune-capacity-before-write",
        "tune --judge capacity measures the file as it was, before the change is written",
        "harness/tune.py",
        "            self.before_change()\n",
        "            pass\n",
        (
            "tests/unit/test_tune_capacity.py::"
            "test_capacity_is_measured_before_the_write_and_after_the_verification",
        ),
    ),
    Mutation(
        "tune-envelope-changed-cells",
        "tune --envelope reports every envelope cell whose verdict or bound changed",
        "harness/tune_envelope.py",
        "        if cell_text(cells_b.get((p, k))) != cell_text(cells_a.get((p, k)))\n",
        "        if cells_b.get((p, k)) is None\n",
        (
            "tests/unit/test_tune_envelope.py::"
            "test_the_difference_names_each_changed_cell_and_the_safe_concurrency",
        ),
    ),
    Mutation(
        "capacity-cost-at-knee",
        "the capacity report's GPU cost is the knee's (highest rate that held), no other probe's",
        "harness/report/capacity.py",
        'if p.get("tokens_per_joule") is not None and math.isclose(p["rate_rps"], lo)',
        'if p.get("tokens_per_joule") is not None',
        (
            "tests/unit/test_capacity_cost.py::"
            "test_the_knee_line_names_the_probe_at_the_highest_rate_that_held",
        ),
    ),
    Mutation(
        "ingress-run-constraint",
        "the run's traefik reads only the run's own containers (docker provider constraint)",
        "harness/stack/containers/ingress.py",
        "    constraint = run_constraint(run_id)\n",
        '    constraint = ""\n',
        (
            "tests/unit/test_container_ingress.py::"
            "test_the_emulated_gpu_starts_the_compose_traefik_last_on_the_run_network_only",
        ),
    ),
    Mutation(
        "tunnel-origin-port",
        "cloudflared's origin counts as traefik only on its entrypoint's port",
        "harness/stack/tunnel_config.py",
        "    if parts.hostname not in origin.hosts or port not in origin.ports:",
        "    if parts.hostname not in origin.hosts:",
        ("tests/unit/test_tunnel_check.py::test_only_traefiks_name_on_its_entrypoint_port_counts",),
    ),
)


def tree_files(root: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore, that exist on disk."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [p for p in out.split("\0") if p and (root / p).is_file()]


def copy_tree(root: Path, dest: Path) -> None:
    for rel in tree_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target, follow_symlinks=False)


def child_env(copy: Path) -> dict[str, str]:
    """This environment with the copy's packages first. HARNESS_* settings are left out: a CI
    session's (planted secrets, required capabilities) are for that session, not for these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    paths = [str(copy), str(copy / "infra" / "ai-router")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def check_imports_from(copy: Path, env: Mapping[str, str]) -> str | None:
    """Why a child would not run the copy's code, or None when it would."""
    probe = "import harness, ai_router; print(harness.__file__); print(ai_router.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=copy, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"importing the copy's packages failed:\n{done.stderr}"
    for line in done.stdout.split():
        if not Path(line).resolve().is_relative_to(copy.resolve()):
            return f"a child imports {line}, not the copy under {copy}"
    return None


def run_tests(copy: Path, env: Mapping[str, str], tests: Sequence[str]) -> tuple[int, str]:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", *tests]
    try:
        done = subprocess.run(
            argv, cwd=copy, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return -1, f"{out}\ntimed out after {TEST_TIMEOUT_S} s"
    return done.returncode, done.stdout + done.stderr


def write_fresh(path: Path, text: str) -> None:
    """Write `text` and drop the module's cached bytecode: a mutation of the same length written
    within the same second would otherwise run the old bytecode."""
    path.write_text(text)
    cached = Path(importlib.util.cache_from_source(str(path)))
    cached.unlink(missing_ok=True)


def unappliable(m: Mutation, root: Path) -> str | None:
    path = root / m.path
    if not path.is_file():
        return f"{m.path} does not exist"
    n = path.read_text().count(m.old)
    if n != 1:
        return f"its old text is in {m.path} {n} times, not once"
    return None


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="name each mutation and stop")
    parser.add_argument(
        "--show", action="store_true", help="print how the tests failed on each mutation"
    )
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1),
        help="mutations tested at once, each in its own copy of the tree (default: 2, or 1 "
        "on one core)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name}: {m.protects} ({m.path})")
        return 0
    wrong = [n for n in args.names if n not in known]
    if wrong:
        parser.error(f"unknown mutation(s) {', '.join(wrong)}; see --list")
    chosen = [known[n] for n in args.names] if args.names else list(MUTATIONS)
    if args.jobs < 1:
        parser.error(f"--jobs: {args.jobs}: must be 1 or more")
    return run(chosen, show=args.show, jobs=args.jobs)


def apply_and_test(m: Mutation, tree: Path, env: Mapping[str, str]) -> tuple[str, float, str]:
    """Apply `m` alone to `tree`, run its tests, put the file back: (verdict, seconds, output)."""
    path = tree / m.path
    original = path.read_text()
    write_fresh(path, original.replace(m.old, m.new, 1))
    t0 = time.monotonic()
    try:
        rc, out = run_tests(tree, env, m.tests)
    finally:
        write_fresh(path, original)
    verdict = {0: "survived", 1: "killed"}.get(rc, f"error (exit {rc})")
    return verdict, time.monotonic() - t0, out


def run(chosen: Sequence[Mutation], *, show: bool = False, root: Path = ROOT, jobs: int = 1) -> int:
    """Apply each of `chosen` alone to a copy of `root` (`jobs` copies, a mutation at a time
    in each) and print the table; 0 when every one was killed."""
    started = time.monotonic()
    bad = [f"{m.name}: {why}" for m in chosen if (why := unappliable(m, root))]
    if bad:
        print("mutations that cannot be applied:\n  " + "\n  ".join(bad))
        return 1
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        copy = Path(tmp) / "tree"
        copy_tree(root, copy)
        env = child_env(copy)
        why = check_imports_from(copy, env)
        if why:
            print(why)
            return 1
        every = list(dict.fromkeys(t for m in chosen for t in m.tests))
        t0 = time.monotonic()
        rc, out = run_tests(copy, env, every)
        print(f"unmutated: {len(every)} test node(s) pass in {time.monotonic() - t0:.1f} s")
        if rc != 0:
            print(f"the unmutated tests do not pass (exit {rc}), so no kill would mean anything:")
            print(tail(out))
            return 1
        # One copy per job, each mutation applied alone in one of them; the table keeps the
        # listed order whichever job finished first.
        copies = [copy]
        for k in range(1, min(jobs, len(chosen))):
            extra = Path(tmp) / f"tree-{k}"
            copy_tree(root, extra)
            copies.append(extra)
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(chosen)):
            todo.put(i)
        results: dict[int, tuple[str, float, str]] = {}

        def work(tree: Path) -> None:
            tree_env = child_env(tree)
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                results[i] = apply_and_test(chosen[i], tree, tree_env)

        threads = [threading.Thread(target=work, args=(c,)) for c in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows: list[tuple[str, str, float]] = []
        details: list[str] = []
        for i, m in enumerate(chosen):
            verdict, took, out = results[i]
            rows.append((m.name, verdict, took))
            if verdict != "killed" or show:
                details.append(f"{m.name} ({m.protects}): {verdict}\n{tail(out)}")
    width = max(len(r[0]) for r in rows)
    print(f"{'mutation':<{width}} | result   | seconds")
    print(f"{'-' * width}-|----------|--------")
    for name, verdict, took in rows:
        print(f"{name:<{width}} | {verdict:<8} | {took:6.1f}")
    killed = sum(v == "killed" for _, v, _ in rows)
    print(f"{killed} of {len(rows)} killed in {time.monotonic() - started:.1f} s in all")
    for d in details:
        print(f"\n{d}")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
