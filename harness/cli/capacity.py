"""`harness capacity`: the highest open-loop arrival rate the stack holds within its SLOs, with
its interval and the resource that limits it (harness.load.capacity searches,
harness.load.probe runs each probe, harness.report.capacity renders)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harness.cli.common import (
    DEFAULT_COMPOSE,
    check_target_inputs,
    examples,
    positive_float,
    positive_int,
    seconds,
)
from harness.errors import InputError


def plan_and_config(ns: argparse.Namespace, settings: Any) -> tuple[Any, Any]:
    """The search plan and the probe configuration from [capacity], [load] and the options,
    checked: InputError before anything starts."""
    from harness.load.capacity import SearchPlan
    from harness.load.probe import OPEN_LOOP_PROFILES, ProbeConfig

    knobs, load = settings.typed.capacity, settings.typed.load
    profile = ns.profile or knobs.profile
    if profile not in OPEN_LOOP_PROFILES:
        raise InputError(
            f"--profile {profile} ([capacity] profile): capacity sends independent requests "
            f"open-loop; one of {', '.join(OPEN_LOOP_PROFILES)}"
        )
    plan = SearchPlan(
        start_rps=ns.start_rps if ns.start_rps is not None else knobs.start_rps,
        growth=knobs.growth,
        max_probes=ns.max_probes if ns.max_probes is not None else knobs.max_probes,
        repeats=knobs.repeat_probes,
        resolution=knobs.resolution,
        goodput_share=knobs.goodput_share,
        min_rps=min(0.05, knobs.start_rps) if knobs.start_rps > 0 else 0.05,
    )
    plan.check()
    probe_s = ns.probe if ns.probe is not None else knobs.probe_s
    if (
        not probe_s > 0
        or not knobs.max_request_s > 0
        or min(knobs.settle_s, knobs.min_requests) < 0
    ):
        raise InputError(
            "[capacity] probe_s and max_request_s must be above 0, settle_s and min_requests 0 "
            f"or more (got {probe_s:g}, {knobs.max_request_s:g}, {knobs.settle_s:g}, "
            f"{knobs.min_requests})"
        )
    max_tokens = load.kv_pressure_max_tokens if profile == "kv-pressure" else load.max_tokens
    cfg = ProbeConfig(
        profile=profile, duration_s=probe_s, max_tokens=max_tokens,
        context_fraction=load.context_fraction,
        max_dispatch_delay_p95_s=load.max_dispatch_delay_p95_s,
        queue_rise=knobs.saturation_queue_rise, kv_full=knobs.kv_full,
        bound_share=knobs.bound_share, settle_s=knobs.settle_s, min_requests=knobs.min_requests,
    )  # fmt: skip
    return plan, cfg


def cmd_capacity(ns: argparse.Namespace) -> int:
    from dataclasses import replace

    from harness.cli.stack_run import stack_run
    from harness.config import load_settings
    from harness.load.capacity import search
    from harness.load.probe import request_cut_for, run_probe, ttft_rise_for
    from harness.load.slo_table import check_slo_settings, slo_table
    from harness.report.capacity import capacity_section, console_lines, probe_line

    settings = load_settings(ns.config)
    check_slo_settings(settings)
    plan, cfg = plan_and_config(ns, settings)
    check_target_inputs(ns.target or "twin")
    started = time.monotonic()
    section: dict[str, Any] | None = None
    with stack_run(ns, settings, "capacity") as sr:
        stack, target, progress = sr.stack, sr.stack.target, sr.progress
        slo = slo_table(settings, cfg.profile, target)
        knobs = settings.typed.capacity
        cfg = replace(
            cfg,
            request_cut_s=request_cut_for(slo, knobs.max_request_s),
            ttft_rise_s=ttft_rise_for(slo, knobs.saturation_ttft_rise),
        )
        progress(
            f"capacity of {stack.entry.url}: {cfg.profile} requests, open-loop Poisson "
            f"arrivals, {cfg.duration_s:g} s per probe, at most {plan.max_probes} probes, "
            f"goodput share {plan.goodput_share:.0%}"
        )
        count = iter(range(1, 10_000))

        def probe(rate: float) -> Any:
            n = next(count)
            return run_probe(stack, rate, sr.run_dir / "load" / f"probe-{n:02d}", cfg, slo, seed=n)

        result = search(
            probe, plan,
            on_probe=lambda n, phase, r: progress(
                probe_line(n, plan.max_probes, phase, r, plan.goodput_share)
            ),
        )  # fmt: skip
        section = capacity_section(
            result, plan, cfg, sr.run_dir, wall_s=time.monotonic() - started,
            target=target, slo=slo,
        )  # fmt: skip
        sr.run.record.put("capacity", "result", section)
        sr.passed = True
    assert section is not None
    for line in console_lines(section):
        print(line)
    print(f"reports: {', '.join(str(p) for p in sr.written)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from harness.load.probe import OPEN_LOOP_PROFILES

    p = sub.add_parser(
        "capacity",
        help="the highest arrival rate the stack holds within its SLOs, and what limits it",
        description=(
            "Search for the highest sustained open-loop (Poisson) arrival rate through the "
            "ai-router at which goodput holds: the share of requests within every latency "
            "objective of their route ([slo.<profile>.<target>.<route>] in harness.toml) is at "
            "least [capacity] goodput_share and the client kept its schedule. Probes start low "
            "and double until one fails, then bisect; the rates nearest the knee are repeated "
            "for an interval; a probe whose queue or TTFT grows through it is over-saturated "
            "and ends early. Prints the capacity in requests/s and output tokens/s with its "
            "interval, and the limiting resource at the knee from the engines' /metrics (the "
            "classifier, the primary's slots, its KV pool, or compute). Uses the stack "
            "`harness up` started, else brings one up and stops it afterwards. Writes "
            "record.json (capacity section), report.md and report.html (the capacity curve) "
            "under reports/runs/."
        ),
        epilog=examples(
            "harness capacity                          # twin, steady's route mix",
            "harness capacity --max-probes 5 --probe 15s",
            "harness up && harness capacity            # measure the stack kept up",
            "HARNESS_ROUTER_API_KEY=... harness capacity --target attach",
        ),
    )  # fmt: skip
    p.add_argument(
        "--profile", default=None, choices=OPEN_LOOP_PROFILES,
        help="whose requests arrive, and whose SLOs judge them (default: [capacity] profile, "
        "steady)",
    )  # fmt: skip
    p.add_argument(
        "--target", default=None, choices=("twin", "attach", "gpu"),
        help="where the stack comes from (default: the stack `harness up` started, else twin)",
    )  # fmt: skip
    p.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    p.add_argument(
        "--max-probes", type=positive_int, default=None, metavar="N",
        help="the most probes, repeats included (default: [capacity] max_probes, 8)",
    )  # fmt: skip
    p.add_argument(
        "--start-rps", type=positive_float, default=None, metavar="RATE",
        help="the first probe's arrival rate in requests/s (default: [capacity] start_rps)",
    )  # fmt: skip
    p.add_argument(
        "--probe", type=seconds, default=None, metavar="DURATION",
        help="arrivals per probe, e.g. 20s, 1m (default: [capacity] probe_s)",
    )  # fmt: skip
    p.set_defaults(func=cmd_capacity)
