"""Replacing and restoring the production stack, against a fake docker client: which containers
are stopped, that every one stopped comes back whatever fails, and the marker that says so."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Core dependencies: plain imports, so that a broken docker SDK fails this module, never skips it.
import docker.errors as docker_errors
import pytest
import requests.exceptions as requests_exceptions
from test_plugin_gpu_run import dead_terminal, terminal_progress

from harness.cli import main as harness_main
from harness.compose import StackSpec, load_stack
from harness.errors import StackError
from harness.stack.containers import prod_marker
from harness.stack.containers.plan import LABEL
from harness.stack.containers.production import (
    ProdContainer,
    restore_production,
    running_production,
    stop_production,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "ai-stack"


class FakeContainer:
    def __init__(
        self,
        name: str,
        service: str | None,
        log: list[str],
        project: str = PROJECT,
        status: str = "running",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.id = name + "-id"
        self.name = name
        self.labels: dict[str, str] = dict(extra or {})
        if service is not None:
            self.labels["com.docker.compose.project"] = project
            self.labels["com.docker.compose.service"] = service
        self.status = status
        self.attrs: dict[str, Any] = {"State": {"Status": status, "Running": status != "exited"}}
        self.log = log
        self.stop_error: BaseException | None = None
        self.start_error: BaseException | None = None
        self.on_stop: Callable[[], None] | None = None
        self.on_start: Callable[[], None] | None = None

    def stop(self, timeout: int = 10) -> None:
        if self.on_stop is not None:
            self.on_stop()
        if self.stop_error is not None:
            raise self.stop_error
        self.log.append(f"stop {self.name}")
        self.status = "exited"
        self.attrs["State"] = {"Status": "exited", "Running": False}

    def start(self) -> None:
        if self.on_start is not None:
            self.on_start()
        if self.start_error is not None:
            raise self.start_error
        self.log.append(f"start {self.name}")
        self.status = "running"
        self.attrs["State"] = {
            "Status": "running",
            "Running": True,
            "Health": {"Status": "healthy"},
        }

    def reload(self) -> None:
        pass


class FakeContainers:
    """docker-py's `client.containers`, applying the label and status filters as dockerd does."""

    def __init__(self, items: list[FakeContainer]) -> None:
        self.items = items
        self.list_calls: list[dict[str, Any]] = []

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:
        filters = filters or {}
        self.list_calls.append({"all": all, "filters": filters})
        labels = filters.get("label", [])
        labels = [labels] if isinstance(labels, str) else labels
        states = filters.get("status")
        states = [states] if isinstance(states, str) else states
        out = []
        for c in self.items:
            if not all and not states and c.status != "running":
                continue
            if states and c.status not in states:
                continue
            if any(c.labels.get(k) != v for k, _, v in (lab.partition("=") for lab in labels)):
                continue
            out.append(c)
        return out

    def get(self, cid: str) -> FakeContainer:
        for c in self.items:
            if c.id == cid:
                return c
        raise docker_errors.NotFound(f"No such container: {cid}")


class FakeImages:
    """docker-py's `client.images`: every build answers a new image ID and says so in `log`."""

    def __init__(self, log: list[str] | None) -> None:
        self.log = log if log is not None else []

    def build(self, path: str, tag: str, rm: bool = True) -> tuple[Any, list[Any]]:
        self.log.append(f"build {tag}")
        return SimpleNamespace(id=f"sha256:{len(self.log):064x}"), []


class FakeClient:
    def __init__(self, items: list[FakeContainer], log: list[str] | None = None) -> None:
        self.containers = FakeContainers(items)
        self.images = FakeImages(log)


@pytest.fixture
def spec(tmp_path: Path) -> StackSpec:
    """The real compose file, beside a planted `.secrets` (the backend reads it for its plans)."""
    infra = tmp_path / "infra"
    infra.mkdir()
    shutil.copy(ROOT / "infra" / "docker-compose.yml", infra / "docker-compose.yml")
    (infra / ".secrets").write_text("XAI_API_KEY=xai-FAKE\nTUNNEL_TOKEN=cf-FAKE\n")
    (infra / "ai-router").symlink_to(ROOT / "infra" / "ai-router")
    return load_stack(infra / "docker-compose.yml")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never the user's own state directory: the marker lands here."""
    path = tmp_path / "state"
    monkeypatch.setenv("HARNESS_STATE_DIR", str(path))
    return path


def production(log: list[str]) -> dict[str, FakeContainer]:
    """The whole production stack, running, as compose started it."""
    services = ("vllm-router", "vllm-primary", "ai-router", "traefik", "cloudflared")
    return {s: FakeContainer(s, s, log) for s in services}


def quiet(_: str) -> None:
    pass


# -- which containers ---------------------------------------------------------------------------


def test_only_engines_and_router_of_the_project_are_found_by_compose_label(
    spec: StackSpec,
) -> None:
    log: list[str] = []
    prod = production(log)
    prod["vllm-primary"].status = "restarting"  # crash-looping: still found
    items = [
        *prod.values(),
        FakeContainer("other-vllm-primary-1", "vllm-primary", log, project="other"),
        FakeContainer("vllm-router-by-hand", None, log),  # a bare container, no compose labels
        FakeContainer("harness-x-vllm-router", "vllm-router", log, extra={LABEL: "1"}),
        FakeContainer("ai-stack-old-router", "vllm-router", log, status="exited"),
    ]
    client = FakeClient(items)
    found = running_production(client, spec)
    assert [(p.name, p.service) for p in found] == [
        ("vllm-router", "vllm-router"),
        ("vllm-primary", "vllm-primary"),
        ("ai-router", "ai-router"),
    ]
    assert client.containers.list_calls[0]["filters"]["label"] == [
        "com.docker.compose.project=ai-stack"
    ]
    stop_production(client, spec, found, quiet)
    assert log == ["stop ai-router", "stop vllm-primary", "stop vllm-router"]
    assert prod["traefik"].status == prod["cloudflared"].status == "running"


def test_a_foreign_traefik_is_untouched_even_when_the_run_brings_its_own_edge(
    spec: StackSpec,
) -> None:
    log: list[str] = []
    items = [
        FakeContainer("traefik", "traefik", log, project="someone-else"),
        FakeContainer("cloudflared", None, log),
        FakeContainer("vllm-router", "vllm-router", log),
    ]
    found = running_production(FakeClient(items), spec, include_edge=True)
    assert [p.name for p in found] == ["vllm-router"]


def test_the_run_that_brings_its_own_edge_replaces_production_edge_too(spec: StackSpec) -> None:
    found = running_production(FakeClient(list(production([]).values())), spec, include_edge=True)
    assert [p.service for p in found] == list(spec.start_order)


# -- stop and restore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [docker_errors.APIError("500 Server Error: cannot kill"), requests_exceptions.ReadTimeout()],
    ids=["api-error", "timeout"],
)
def test_what_was_stopped_before_a_failed_stop_is_still_restored(
    spec: StackSpec, error: BaseException
) -> None:
    log: list[str] = []
    prod = production(log)
    prod["vllm-primary"].stop_error = error
    client = FakeClient(list(prod.values()))
    stopped: list[ProdContainer] = []
    found = running_production(client, spec)
    with pytest.raises(StackError, match="could not stop production container vllm-primary"):
        stop_production(client, spec, found, quiet, stopped, run_id="r1")
    assert log == ["stop ai-router"]
    assert prod["vllm-router"].status == "running"  # never reached: not stopped, not restored
    # The failed stop may still have taken effect: restoring it too is a harmless no-op.
    assert {p.name for p in stopped} == {"ai-router", "vllm-primary"}
    log.clear()
    restore_production(client, spec, stopped, quiet, poll_s=0)
    assert log == ["start vllm-primary", "start ai-router"]
    assert stopped == [] and prod_marker.read() is None


def test_a_container_gone_before_its_stop_is_skipped(spec: StackSpec) -> None:
    log: list[str] = []
    prod = production(log)
    client = FakeClient(list(prod.values()))
    found = running_production(client, spec)
    client.containers.items.remove(prod["vllm-primary"])
    messages: list[str] = []
    stopped = stop_production(client, spec, found, messages.append)
    assert [p.name for p in stopped] == ["ai-router", "vllm-router"]
    assert any("vllm-primary is already gone" in m for m in messages)


def test_restore_continues_past_a_failed_service_and_says_make_up(spec: StackSpec) -> None:
    log: list[str] = []
    prod = production(log)
    client = FakeClient(list(prod.values()))
    stopped = stop_production(client, spec, running_production(client, spec), quiet, run_id="r2")
    prod["vllm-router"].start_error = docker_errors.APIError("device busy")
    log.clear()
    with pytest.raises(StackError) as err:
        restore_production(client, spec, stopped, quiet, poll_s=0)
    assert log == ["start vllm-primary", "start ai-router"]
    assert "vllm-router" in str(err.value) and "run `make up`" in str(err.value)
    assert [p.name for p in stopped] == ["vllm-router"]  # what a second restore would retry
    marker = prod_marker.read()
    assert marker is not None and marker.services == ("vllm-router",) and marker.run_id == "r2"


def test_an_engine_that_exits_during_its_restore_does_not_keep_the_router_down(
    spec: StackSpec,
) -> None:
    log: list[str] = []
    prod = production(log)
    client = FakeClient(list(prod.values()))
    stopped = stop_production(client, spec, running_production(client, spec), quiet)
    engine = prod["vllm-primary"]

    def crash() -> None:
        engine.log.append("start vllm-primary")
        engine.attrs["State"] = {"Status": "exited", "Running": False}

    engine.start = crash  # type: ignore[method-assign]
    log.clear()
    with pytest.raises(StackError, match="vllm-primary exited while being restored"):
        restore_production(client, spec, stopped, quiet, poll_s=0)
    assert log == ["start vllm-router", "start vllm-primary", "start ai-router"]


# -- the marker ---------------------------------------------------------------------------------


def test_the_marker_exists_from_the_first_stop_until_everything_is_back(
    spec: StackSpec, state_dir: Path
) -> None:
    log: list[str] = []
    prod = production(log)
    seen: list[prod_marker.ProdMarker | None] = []
    prod["ai-router"].on_stop = lambda: seen.append(prod_marker.read())
    client = FakeClient(list(prod.values()))
    stopped = stop_production(
        client, spec, running_production(client, spec), quiet, run_id="abc123",
        run_dir="/r/gpu-1",
    )  # fmt: skip
    first = seen[0]
    assert first is not None and first.services == ("ai-router",)  # written before the stop
    marker = prod_marker.read()
    assert marker is not None
    assert marker.run_id == "abc123" and marker.run_dir == "/r/gpu-1"
    assert marker.services == ("vllm-router", "vllm-primary", "ai-router")
    assert marker.pid == os.getpid() and marker.project == PROJECT
    assert prod_marker.marker_path().parent == state_dir
    doc = json.loads(prod_marker.marker_path().read_text())
    assert doc["services"] == ["vllm-router", "vllm-primary", "ai-router"]
    text = marker.describe()
    assert "production stopped by run abc123" in text and "`make up` restores it" in text
    restore_production(client, spec, stopped, quiet, poll_s=0)
    assert not prod_marker.marker_path().exists()


def test_nothing_running_writes_no_marker(spec: StackSpec) -> None:
    client = FakeClient([])
    assert stop_production(client, spec, running_production(client, spec), quiet) == []
    assert prod_marker.read() is None


def test_an_unwritable_state_dir_stops_nothing(spec: StackSpec, tmp_path: Path) -> None:
    log: list[str] = []
    client = FakeClient(list(production(log).values()))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StackError, match="cannot record that production is stopped"):
        stop_production(
            client, spec, running_production(client, spec), quiet,
            marker_path=blocker / "marker.json",
        )  # fmt: skip
    assert log == []


def test_a_damaged_marker_reads_as_none(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    prod_marker.marker_path().write_text("{not json")
    assert prod_marker.read() is None
    prod_marker.marker_path().write_text("[1, 2]")
    assert prod_marker.read() is None


# -- the containers backend ---------------------------------------------------------------------


def test_a_failed_stop_during_bring_up_restores_what_was_stopped(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.stack.containers import backend as containers

    log: list[str] = []
    prod = production(log)
    prod["vllm-primary"].stop_error = docker_errors.APIError("cannot stop")
    prod["vllm-router"].on_stop = lambda: pytest.fail("stopped after a failure")
    client = FakeClient(list(prod.values()), log)
    monkeypatch.setattr(containers, "docker_client", lambda: client)
    monkeypatch.setattr(containers, "configure_ryuk", lambda client, wanted: False)
    # Images and weights are here (prefetched): what is tested is the stop and the restore.
    monkeypatch.setattr(containers.ContainersBackend, "_check_prefetched", lambda self: None)
    backend = containers.ContainersBackend(
        spec, tmp_path / "run", target="gpu", replace_running=True, progress=quiet
    )
    with pytest.raises(StackError, match="vllm-primary"):
        backend.up()
    # The ai-router image is built from its files, once, before production stops.
    assert log == [
        "build ai-router:local",
        "stop ai-router",
        "start vllm-primary",
        "start ai-router",
    ]
    assert backend.stopped_production == []
    assert prod_marker.read() is None


def test_a_refused_run_stops_nothing(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.stack.containers import backend as containers

    log: list[str] = []
    client = FakeClient(list(production(log).values()))
    monkeypatch.setattr(containers, "docker_client", lambda: client)
    monkeypatch.setattr(containers, "configure_ryuk", lambda client, wanted: False)
    backend = containers.ContainersBackend(spec, tmp_path / "run", target="gpu", progress=quiet)
    with pytest.raises(StackError, match="--harness-replace-running") as err:
        backend.up()
    assert "traefik" not in str(err.value)
    assert log == [] and prod_marker.read() is None


# -- down() after a run: nothing but a failed start stops the restore --------------------------

RESTORED = ["start vllm-router", "start vllm-primary", "start ai-router"]


def green_run(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: FakeClient
) -> Any:
    """A gpu run with --harness-replace-running that went well: production stopped by up(), no
    harness containers (what is tested is what becomes of production)."""
    from harness.stack.containers import backend as containers

    monkeypatch.setattr(containers, "docker_client", lambda: client)
    monkeypatch.setattr(containers, "configure_ryuk", lambda client, wanted: False)
    monkeypatch.setattr(containers.ContainersBackend, "_check_prefetched", lambda self: None)
    monkeypatch.setattr(containers.ContainersBackend, "plans", lambda self, api_key="": [])
    monkeypatch.setattr(containers.ContainersBackend, "_create_network", lambda self: None)
    backend = containers.ContainersBackend(
        spec, tmp_path / "run", target="gpu", replace_running=True, progress=quiet
    )
    backend.up()
    stopped = [p.name for p in backend.stopped_production]
    assert stopped == ["ai-router", "vllm-primary", "vllm-router"]
    assert prod_marker.read() is not None
    return backend


def test_down_after_a_green_run_restores_production(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    client = FakeClient(list(production(log).values()))
    backend = green_run(spec, tmp_path, monkeypatch, client)
    assert not backend.keep_stack
    log.clear()
    backend.down()
    assert log == RESTORED, "down() after a green run did not restore production"
    assert backend.stopped_production == []
    assert prod_marker.read() is None


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EIO, "Input/output error"), BrokenPipeError(), RuntimeError("writer bug")],
    ids=["eio", "broken-pipe", "any-error"],
)
def test_progress_that_raises_on_every_line_does_not_stop_the_restore(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """After an SSH hang-up the terminal returns EIO to every write."""
    log: list[str] = []
    client = FakeClient(list(production(log).values()))
    backend = green_run(spec, tmp_path, monkeypatch, client)
    calls: list[str] = []

    def dead(line: str) -> None:
        calls.append(line)
        raise error

    backend.progress = dead
    log.clear()
    backend.down()
    assert log == RESTORED
    assert any("restoring production container vllm-router" in c for c in calls)
    assert backend.stopped_production == [] and prod_marker.read() is None


def test_a_dead_terminal_as_the_plugin_writes_to_it_does_not_stop_the_restore(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    log: list[str] = []
    prod = production(log)
    prod["vllm-router"].start_error = docker_errors.APIError("device busy")
    client = FakeClient(list(prod.values()))
    backend = green_run(spec, tmp_path, monkeypatch, client)
    log.clear()
    with dead_terminal() as tty:
        backend.progress = terminal_progress(request.config, tty)
        # A failed start too: its report, and the teardown's, go to the dead terminal as well.
        with pytest.raises(StackError, match="vllm-router: device busy"):
            backend.down()
    assert log == ["start vllm-primary", "start ai-router"]
    assert [p.name for p in backend.stopped_production] == ["vllm-router"]


def interrupt_on_start(container: FakeContainer, sig: int = signal.SIGINT) -> None:
    """Ctrl-C (or `sig`) pressed while `container` is being restored."""
    container.on_start = lambda: os.kill(os.getpid(), sig)


def deferrable(sig: int) -> int:
    if signal.getsignal(sig) in (signal.SIG_IGN, None):
        pytest.skip(f"{signal.Signals(sig).name} is ignored in this session")
    return sig


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hang-up"])
def test_a_second_interrupt_during_the_restore_is_reported_not_obeyed(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    log: list[str] = []
    prod = production(log)
    client = FakeClient(list(prod.values()))
    backend = green_run(spec, tmp_path, monkeypatch, client)
    messages: list[str] = []
    backend.progress = messages.append
    interrupt_on_start(prod["vllm-router"], deferrable(sig))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    log.clear()
    with pytest.raises(KeyboardInterrupt, match="deferred until the production restore was done"):
        backend.down()
    assert log == RESTORED
    assert backend.stopped_production == [] and prod_marker.read() is None
    name = signal.Signals(sig).name
    expected = (
        f"restoring production: interrupt received ({name}), finishing the restore first "
        "(vllm-router, 1 of 3)"
    )
    assert expected in messages, messages
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_an_interrupt_during_a_restore_on_its_own_comes_once_all_are_started(
    spec: StackSpec,
) -> None:
    log: list[str] = []
    prod = production(log)
    client = FakeClient(list(prod.values()))
    stopped = stop_production(client, spec, running_production(client, spec), quiet)
    interrupt_on_start(prod["vllm-primary"])
    messages: list[str] = []
    log.clear()
    with pytest.raises(KeyboardInterrupt, match="deferred until the restore was done"):
        restore_production(client, spec, stopped, messages.append, poll_s=0)
    assert log == RESTORED and stopped == []
    assert any("(vllm-primary, 2 of 3)" in m for m in messages), messages


def test_an_interrupt_during_the_restore_of_a_failed_bring_up_keeps_its_error(
    spec: StackSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.stack.containers import backend as containers

    log: list[str] = []
    prod = production(log)
    prod["vllm-primary"].stop_error = docker_errors.APIError("cannot stop")
    interrupt_on_start(prod["ai-router"])
    client = FakeClient(list(prod.values()))
    monkeypatch.setattr(containers, "docker_client", lambda: client)
    monkeypatch.setattr(containers, "configure_ryuk", lambda client, wanted: False)
    monkeypatch.setattr(containers.ContainersBackend, "_check_prefetched", lambda self: None)
    monkeypatch.setattr(containers.ContainersBackend, "plans", lambda self, api_key="": [])
    messages: list[str] = []
    backend = containers.ContainersBackend(
        spec, tmp_path / "run", target="gpu", replace_running=True, progress=messages.append
    )
    with pytest.raises(BaseException) as err:  # a KeyboardInterrupt here is the bug
        backend.up()
    assert isinstance(err.value, StackError), repr(err.value)
    assert "could not stop production container vllm-primary" in str(err.value)
    assert log == ["stop ai-router", "start vllm-primary", "start ai-router"]
    assert any("interrupt received (SIGINT)" in m for m in messages), messages
    assert backend.stopped_production == [] and prod_marker.read() is None


def test_a_restore_off_the_main_thread_runs_unshielded(spec: StackSpec) -> None:
    """signal.signal works only on the main thread; a restore elsewhere still runs."""
    log: list[str] = []
    client = FakeClient(list(production(log).values()))
    stopped = stop_production(client, spec, running_production(client, spec), quiet)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            restore_production(client, spec, stopped, quiet, poll_s=0)
        except BaseException as exc:
            errors.append(exc)

    log.clear()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert errors == [] and log == RESTORED


# -- harness status, harness down, make up ------------------------------------------------------


def plant_marker(run_id: str = "feed42") -> None:
    prod_marker.write(
        prod_marker.ProdMarker(run_id, "/runs/gpu-7", 1_700_000_000.0, ("vllm-router",), 0)
    )


def test_harness_status_reports_the_marker(capsys: pytest.CaptureFixture[str]) -> None:
    assert harness_main(["status", "--production"]) == 0
    assert capsys.readouterr().out == ""
    plant_marker()
    assert harness_main(["status", "--production"]) == 0
    out = capsys.readouterr().out
    assert "production stopped by run feed42 (run dir /runs/gpu-7) since" in out
    assert "services vllm-router; `make up` restores it" in out
    assert harness_main(["status"]) == 1  # no harness stack is up; the marker still shows
    assert "production stopped by run feed42" in capsys.readouterr().out
    assert harness_main(["status", "--clear-production"]) == 0
    assert prod_marker.read() is None


def test_harness_down_reports_the_marker(capsys: pytest.CaptureFixture[str]) -> None:
    plant_marker()
    assert harness_main(["down"]) == 0
    out = capsys.readouterr().out
    assert out.index("nothing to stop") < out.index("production stopped by run feed42")


def test_the_cli_free_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert prod_marker.main(["show"]) == 0
    assert capsys.readouterr().out == ""
    plant_marker()
    assert prod_marker.main([]) == 0
    assert "feed42" in capsys.readouterr().out
    assert prod_marker.main(["clear"]) == 0
    assert prod_marker.read() is None
    assert prod_marker.main(["bogus"]) == 2


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_make_up_prints_the_marker_first_and_starts_every_service(tmp_path: Path) -> None:
    """stackctl.sh with a fake harness and a fake docker whose `up` reads stdin, as a command
    that swallowed the remaining service lines would."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    harness = _script(
        tmp_path / "harness",
        f'echo "harness $*" >> {calls}\n'
        "if [[ $1 == order ]]; then\n"
        '  printf "vllm-router 600 engine\\nvllm-primary 1200 engine\\nai-router 60 router\\n"\n'
        "fi\n",
    )
    _script(
        bin_dir / "docker",
        f'echo "docker $*" >> {calls}\n'
        'case " $* " in\n'
        '  *" up "*) cat >/dev/null ;;\n'
        '  *" ps "*) echo "cid-${@: -1}" ;;\n'
        "  *inspect*) echo healthy ;;\n"
        "esac\n",
    )
    env = {**os.environ, "HARNESS": str(harness), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / "stackctl.sh"), "up", "compose.yml"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "harness status --production"
    assert lines[-1] == "harness status --clear-production"
    ups = [ln.rsplit(" ", 1)[1] for ln in lines if " up -d " in ln]
    assert ups == ["vllm-router", "vllm-primary", "ai-router"]
