"""Prometheus text exposition: parse an engine's /metrics into samples, and read vLLM's metrics.

Metric names follow vllm-facts.md. Every vLLM metric carries `model_name` and `engine` labels;
`vllm:cache_config_info` has none of them and carries the cache config as labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<k>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<v>(?:[^"\\]|\\.)*)"')

# Current names first, then the names older servers used.
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
ITL = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True)
class Scrape:
    samples: tuple[Sample, ...] = field(default=())

    def all(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.label(k) == v for k, v in labels.items())
        ]

    def value(self, names: str | Iterable[str], default: float = 0.0, **labels: str) -> float:
        """Sum of the samples of the first of `names` that exists."""
        for name in (names,) if isinstance(names, str) else names:
            found = self.all(name, **labels)
            if found:
                return sum(s.value for s in found)
        return default

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.samples)

    def histogram(self, base: str) -> dict[float, float]:
        """Cumulative bucket counts by upper bound (le), summed over label sets."""
        buckets: dict[float, float] = {}
        for s in self.all(base + "_bucket"):
            le = s.label("le")
            if le is None:
                continue
            bound = math.inf if le in ("+Inf", "inf") else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + s.value
        return dict(sorted(buckets.items()))

    def cache_config(self) -> dict[str, str]:
        found = self.all("vllm:cache_config_info")
        return dict(found[0].labels) if found else {}


def parse(text: str) -> Scrape:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            continue
        labels = tuple(
            (lm.group("k"), lm.group("v").replace('\\"', '"').replace("\\\\", "\\"))
            for lm in _LABEL.finditer(m.group("labels") or "")
        )
        samples.append(Sample(m.group("name"), labels, value))
    return Scrape(tuple(samples))


def scrape(base_url: str, client: httpx.Client | None = None, timeout: float = 5.0) -> Scrape:
    """GET {base_url}/metrics and parse it."""
    if client is not None:
        r = client.get(base_url + "/metrics", timeout=timeout)
    else:
        r = httpx.get(base_url + "/metrics", timeout=timeout)
    r.raise_for_status()
    return parse(r.text)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus-style quantile from cumulative buckets (linear within a bucket)."""
    if not buckets:
        return None
    total = max(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets.items():
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def bucket_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {b: after[b] - before.get(b, 0.0) for b in after}
