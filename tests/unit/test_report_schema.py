"""record.schema.json and load_record: realistic records pass, corrupt and old ones name the
file and the field."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures

from harness.errors import InputError
from harness.load.records import RequestRecord
from harness.load.runner import summarize
from harness.report.record import RunRecord
from harness.report.schema import SCHEMA_PATH, load_record, record_schema, validate_record
from harness.routing.metrics import Outcome
from harness.routing.metrics import summarize as routing_summary
from harness.telemetry.sampler import Sampler


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "record.json"
    path.write_text(json.dumps(doc))
    return path


def test_schema_is_draft_2020_12_and_itself_valid() -> None:
    import jsonschema  # a core dependency: never a skip

    schema = record_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert SCHEMA_PATH.name == "record.schema.json"


def test_realistic_record_loads(tmp_path: Path) -> None:
    doc = fixtures.record()
    assert load_record(write(tmp_path, doc)) == doc
    assert load_record(tmp_path) == doc  # a run directory works too


def test_what_the_harness_itself_writes_validates(tmp_path: Path) -> None:
    """RunRecord + RoutingReport.to_dict() + load summarize(), not hand-made fixtures."""
    rec = RunRecord(tmp_path, "twin", secrets=["sk-secret-value"])
    outcomes = [
        Outcome("a", "local", "local", "classified"),
        Outcome("b", "search", "local", "classified"),
        Outcome("c", "either", "search", "classified"),
    ]
    rec.put("acceptance", "routing", routing_summary(outcomes, ("local", "search")).to_dict())
    records = [
        RequestRecord(
            user="ChatUser",
            target="router",
            intended_start=1.0 + i,
            actual_start=1.0 + i,
            status=200,
            ok=i != 2,
            route="local",
            reason="classified",
            ttft_s=0.5 + i / 10,
            itl_s=[0.02, 0.03],
            e2e_s=1.0 + i / 10,
            output_tokens=2,
            error=None if i != 2 else "boom",
        )
        for i in range(4)
    ]
    sampler = Sampler({"vllm-primary": "http://unused"}, nvml=False)
    sampler.rows = [fixtures.timeline()[1], fixtures.timeline()[3]]
    rec.put("load", "steady", summarize("steady", records, sampler, 3, "vllm-primary"))
    rec.finish("failed")
    doc = load_record(rec.path)
    assert doc["load"]["steady"]["failed"] == 1
    assert doc["status"] == "failed"


def test_a_record_still_running_validates(tmp_path: Path) -> None:
    RunRecord(tmp_path, "attach").put("stack", "notes", [])
    assert load_record(tmp_path / "record.json")["finished_at"] is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"schema_version": 1, "run_id": ', "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a run record"),
    ],
)
def test_non_json_and_non_objects_name_the_file(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "record.json"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_record(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run record"):
        load_record(tmp_path / "nope" / "record.json")


@pytest.mark.parametrize(
    ("version", "needle"),
    [(0, "older than this harness reads"), (2, "newer harness"), ("1", "expected an integer")],
)
def test_wrong_versions_are_refused(tmp_path: Path, version: Any, needle: str) -> None:
    path = write(tmp_path, fixtures.record(schema_version=version))
    with pytest.raises(InputError) as err:
        load_record(path)
    assert f"{path}: field schema_version" in str(err.value)
    assert needle in str(err.value)


def test_an_unversioned_old_record_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, fixtures.set_in(fixtures.record(), "schema_version", fixtures.DELETE))
    with pytest.raises(InputError, match="schema_version is missing"):
        load_record(path)


@pytest.mark.parametrize(
    ("dotted", "value", "field"),
    [
        ("status", "ok", "status"),
        ("run_id", fixtures.DELETE, "run_id"),
        ("load.steady.latency.local.ttft_s.p95", "fast", "load.steady.latency.local.ttft_s.p95"),
        ("load.steady.error_rate", 1.5, "load.steady.error_rate"),
        ("acceptance.routing.confusion.local.search", -1, "acceptance.routing.confusion.local"),
        ("acceptance.long_context", [{"placement": "last"}], "acceptance.long_context[0]"),
        (
            "acceptance.kv_capacity.vllm-primary.log_tokens",
            1.5,
            "acceptance.kv_capacity.vllm-primary.log_tokens",
        ),
        (
            "load.steady.engines.vllm-primary.max_num_seqs",
            "3",
            "load.steady.engines.vllm-primary.max_num_seqs",
        ),
        (
            "preflight.findings",
            [{"rule": "x", "severity": "fatal", "message": "m"}],
            "preflight.findings[0].severity",
        ),
        ("acceptance", [], "acceptance"),
    ],
)
def test_corrupt_fields_are_named(tmp_path: Path, dotted: str, value: Any, field: str) -> None:
    path = write(tmp_path, fixtures.set_in(fixtures.record(), dotted, value))
    with pytest.raises(InputError) as err:
        load_record(path)
    assert str(path) in str(err.value)
    assert f"field {field}" in str(err.value)


def test_optional_sections_may_be_absent_or_empty() -> None:
    only_load = fixtures.record(acceptance={}, preflight={}, stack={})
    validate_record(only_load)
    only_acceptance = fixtures.set_in(fixtures.record(), "load", fixtures.DELETE)
    validate_record(only_acceptance)


def test_without_jsonschema_the_hand_checks_still_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import now raises ImportError
    assert load_record(write(tmp_path, fixtures.record()))["run_id"] == fixtures.record()["run_id"]
    with pytest.raises(InputError, match="field schema_version"):
        load_record(write(tmp_path, fixtures.record(schema_version=0)))
    with pytest.raises(InputError, match="field target is missing"):
        load_record(write(tmp_path, fixtures.set_in(fixtures.record(), "target", fixtures.DELETE)))
    with pytest.raises(InputError, match="field load: expected an object"):
        load_record(write(tmp_path, fixtures.record(load=[])))
