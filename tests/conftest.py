"""The primary's KV pool across the stack tests of one session.

kv-pressure restarts the twin's primary with a shrunk pool. Restoring it is one more engine start
(a minute or two on two cores), and the primary-kill fault restarts the primary anyway. So the
restore may wait: `primary_pool.restore_later()` leaves the backend's settings restored and the
running primary stale, and before the next stack test the primary is restarted with them, unless
the test does not depend on the pool (`@pytest.mark.any_primary_pool`). A test that restarts
the primary itself says so with `primary_pool.restarted()`.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.twin.engines import CPU_BLOCK_SIZE


class PrimaryPool:
    def __init__(self) -> None:
        self.stale: set[str] = set()  # services running with settings the backend no longer has

    def restore_later(self, backend: Any, name: str) -> None:
        """`backend` already holds the settings to restore; restart `name` when a test needs it."""
        self.stale.add(name)

    def restarted(self, name: str) -> None:
        self.stale.discard(name)

    def bring_current(self, backend: Any) -> None:
        for name in sorted(self.stale):
            backend.restart(name)
            self.stale.discard(name)

    @staticmethod
    def check_kv(handle: Any, requested_tokens: int, max_model_len: int) -> None:
        """The engine logged the KV capacity it was asked for, in whole CPU blocks, and the
        concurrency that follows (1.5x for kv-pressure's 49,152 tokens of 32,768)."""
        line = handle.kv
        assert line is not None, f"no KV cache line in {handle.name}'s startup log"
        assert 0 <= line.tokens - requested_tokens < CPU_BLOCK_SIZE, (
            f"{handle.name} asked for {requested_tokens:,} KV tokens, logged: {line.text}"
        )
        assert line.max_concurrency == pytest.approx(requested_tokens / max_model_len, abs=0.01), (
            line.text
        )


_POOL = PrimaryPool()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "any_primary_pool: the test does not depend on the primary's KV pool, so a pending "
        "restore (primary_pool.restore_later) need not happen before it",
    )
    config.addinivalue_line(
        "markers",
        "takes_the_stack: the test stops the session's stack (a tune restarts it its own way), "
        "so it runs after every other test",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that take the session's stack go last, in their collected order."""
    last = [i for i in items if i.get_closest_marker("takes_the_stack")]
    if last:
        items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def primary_pool() -> PrimaryPool:
    return _POOL


@pytest.fixture(autouse=True)
def _primary_pool_current(request: pytest.FixtureRequest) -> None:
    if not _POOL.stale or "stack" not in request.fixturenames:
        return
    if request.node.get_closest_marker("any_primary_pool"):
        return
    _POOL.bring_current(request.getfixturevalue("stack_backend"))
