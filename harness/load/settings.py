"""What a load user needs to know, passed from the runner to the locust subprocess by env vars.

Running a profile straight from the `locust` command line works too: set the variables by hand
(the router key in HARNESS_LOAD_API_KEY, never on the command line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadSettings:
    records: Path
    api_key: str
    classifier_url: str
    classifier_model: str
    max_model_len: int
    max_num_seqs: int
    max_tokens: int
    context_fraction: float
    chars_per_token: float
    users: int | None
    duration_s: float | None
    pace_s: float
    seed: int
    direct_url: str = ""
    direct_model: str = ""
    min_requests: int = 0  # the shape runs past its duration until this many were sent
    worker: str = ""  # set in a locust worker: the name its records carry (they go to the master)
    # False: send no chat the router would forward to xAI (an attached production stack whose
    # search route is paid, without --harness-xai): chat users draw only `local` prompts.
    search_allowed: bool = True
    # Open-loop arrivals (harness capacity): requests per second in a Poisson process for the
    # run's duration, whatever the answers take; 0 for the profiles' closed loops. A request
    # still unanswered request_cut_s after it went out is abandoned and recorded as failed.
    rate_per_s: float = 0.0
    request_cut_s: float = 0.0
    # The profile whose requests the open-loop arrivals send (steady, saturate, kv-pressure).
    profile: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LoadSettings:
        e = dict(os.environ if env is None else env)

        def opt_int(name: str) -> int | None:
            return int(e[name]) if e.get(name) else None

        return cls(
            records=Path(e.get("HARNESS_LOAD_RECORDS", "load-records.jsonl")),
            api_key=e.get("HARNESS_LOAD_API_KEY", ""),
            classifier_url=e.get("HARNESS_LOAD_CLASSIFIER_URL", "http://127.0.0.1:8001"),
            classifier_model=e.get("HARNESS_LOAD_CLASSIFIER_MODEL", "router-classifier"),
            max_model_len=int(e.get("HARNESS_LOAD_MAX_MODEL_LEN", "32768")),
            max_num_seqs=int(e.get("HARNESS_LOAD_MAX_NUM_SEQS", "3")),
            max_tokens=int(e.get("HARNESS_LOAD_MAX_TOKENS", "64")),
            context_fraction=float(e.get("HARNESS_LOAD_CONTEXT_FRACTION", "0.65")),
            chars_per_token=float(e.get("HARNESS_LOAD_CHARS_PER_TOKEN", "3.0")),
            users=opt_int("HARNESS_LOAD_USERS"),
            duration_s=float(e["HARNESS_LOAD_DURATION_S"])
            if e.get("HARNESS_LOAD_DURATION_S")
            else None,
            pace_s=float(e.get("HARNESS_LOAD_PACE_S", "0")),
            seed=int(e.get("HARNESS_LOAD_SEED", "1")),
            direct_url=e.get("HARNESS_LOAD_DIRECT_URL", ""),
            direct_model=e.get("HARNESS_LOAD_DIRECT_MODEL", ""),
            min_requests=int(e.get("HARNESS_LOAD_MIN_REQUESTS", "0")),
            worker=e.get("HARNESS_LOAD_WORKER", ""),
            search_allowed=e.get("HARNESS_LOAD_SEARCH_ALLOWED", "1") != "0",
            rate_per_s=float(e.get("HARNESS_LOAD_RATE_PER_S", "0")),
            request_cut_s=float(e.get("HARNESS_LOAD_REQUEST_CUT_S", "0")),
            profile=e.get("HARNESS_LOAD_PROFILE", ""),
        )

    def to_env(self) -> dict[str, str]:
        env = {
            "HARNESS_LOAD_RECORDS": str(self.records),
            "HARNESS_LOAD_API_KEY": self.api_key,
            "HARNESS_LOAD_CLASSIFIER_URL": self.classifier_url,
            "HARNESS_LOAD_CLASSIFIER_MODEL": self.classifier_model,
            "HARNESS_LOAD_MAX_MODEL_LEN": str(self.max_model_len),
            "HARNESS_LOAD_MAX_NUM_SEQS": str(self.max_num_seqs),
            "HARNESS_LOAD_MAX_TOKENS": str(self.max_tokens),
            "HARNESS_LOAD_CONTEXT_FRACTION": str(self.context_fraction),
            "HARNESS_LOAD_CHARS_PER_TOKEN": str(self.chars_per_token),
            "HARNESS_LOAD_PACE_S": str(self.pace_s),
            "HARNESS_LOAD_SEED": str(self.seed),
            "HARNESS_LOAD_DIRECT_URL": self.direct_url,
            "HARNESS_LOAD_DIRECT_MODEL": self.direct_model,
            "HARNESS_LOAD_MIN_REQUESTS": str(self.min_requests),
            "HARNESS_LOAD_SEARCH_ALLOWED": "1" if self.search_allowed else "0",
            "HARNESS_LOAD_RATE_PER_S": str(self.rate_per_s),
            "HARNESS_LOAD_REQUEST_CUT_S": str(self.request_cut_s),
            "HARNESS_LOAD_PROFILE": self.profile,
        }
        if self.worker:
            env["HARNESS_LOAD_WORKER"] = self.worker
        if self.users is not None:
            env["HARNESS_LOAD_USERS"] = str(self.users)
        if self.duration_s is not None:
            env["HARNESS_LOAD_DURATION_S"] = str(self.duration_s)
        return env
