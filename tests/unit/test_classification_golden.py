"""The classification request pinned on the harness side: what the classifier engine sees for
a fixed conversation is kept in tests/unit/data/classification-golden.json.

The long-context tests count the expected classifier tokens with the router's own
`classification_messages`, so they cannot see a change to it; this test does. A deliberate
change of the prompt is a change of the twin's classifier too: rebuild it (`harness twin
build`) and rewrite the golden file with the new output."""

from __future__ import annotations

import json
from pathlib import Path

from ai_router.classify_prompt import classification_messages

GOLDEN = Path(__file__).parent / "data" / "classification-golden.json"


def test_the_classifier_sees_exactly_the_pinned_messages() -> None:
    doc = json.loads(GOLDEN.read_text())
    assert classification_messages(doc["conversation"]) == doc["classifier_sees"]


def test_the_golden_covers_what_is_left_out_and_what_is_flattened() -> None:
    """The pinned case is one that can fail: it holds a client system message and a tool
    message (left out) and list contents (flattened), not only plain user text."""
    doc = json.loads(GOLDEN.read_text())
    roles_in = [m["role"] for m in doc["conversation"]]
    roles_out = [m["role"] for m in doc["classifier_sees"]]
    assert "system" in roles_in[:1] and "tool" in roles_in
    assert roles_out == ["system", "user", "assistant", "user"]
    assert all(isinstance(m["content"], str) for m in doc["classifier_sees"])
    assert any(isinstance(m["content"], list) for m in doc["conversation"])
