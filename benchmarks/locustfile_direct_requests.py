"""The load client as it was before geventhttpclient: `requests` under gevent, reading the body
with `iter_content(chunk_size=None)`. Kept only so that benchmarks/client_overhead.py can print
the before and after figures side by side in one run."""

from __future__ import annotations

import time
import uuid

import locust_cpu  # noqa: F401  (records the process's CPU time over the test)
import requests

from harness.load import users
from harness.load.records import RequestRecord
from harness.load.sse import measure_stream

__all__ = ["RequestsDirectUser"]


class RequestsDirectUser(users.DirectUser):
    def on_start(self) -> None:
        super().on_start()
        self.session = requests.Session()

    def send(self) -> None:
        intended = time.time()
        start_wall, start = time.time(), time.perf_counter()
        rec = RequestRecord(type(self).__name__, self.target, intended, start_wall, 0, False)
        rec.request_id = uuid.uuid4().hex
        body = self.body()
        exc: Exception | None = None
        try:
            with self.session.post(
                self.url(),
                json=body,
                headers={"X-Harness-Request": rec.request_id},
                stream=True,
                timeout=(10, 900),
            ) as resp:
                rec.status = resp.status_code
                timing = measure_stream(resp.iter_content(chunk_size=None))
                rec.e2e_s = time.perf_counter() - start
                if timing.first_token_at is not None:
                    rec.ttft_s = timing.first_token_at - start
                    rec.ttft_from_intended_s = rec.ttft_s
                rec.itl_s = [round(g, 6) for g in timing.gaps_s]
                if timing.usage:
                    rec.output_tokens = timing.usage.get("completion_tokens")
                    rec.prompt_tokens = timing.usage.get("prompt_tokens")
                rec.error = timing.error or (None if timing.done else "stream ended early")
                rec.ok = resp.status_code == 200 and rec.error is None and rec.ttft_s is not None
        except requests.RequestException as e:
            exc, rec.error = e, f"{type(e).__name__}: {e}"[:300]
        if rec.e2e_s is None:
            rec.e2e_s = time.perf_counter() - start
        users.writer().write(rec)
        self.environment.events.request.fire(
            request_type="POST",
            name=f"{self.target}:{rec.label}",
            response_time=rec.e2e_s * 1000,
            response_length=rec.output_tokens or 0,
            exception=exc or (None if rec.ok else RuntimeError(rec.error)),
            context={},
        )
