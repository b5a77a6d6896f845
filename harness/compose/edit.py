"""Change one value of the compose file in its text, so that comments, order and quoting survive.

A YAML round trip would drop the file's comments (which say why each setting is what it is) and
reflow its lists. Instead each edit replaces the one scalar it names on its own line: an engine
flag's value in a block-list `command:`, the model (the command's first item), a service's
`image:`, or one variable of a block `environment:`. A flag the command lacks is appended as two
new items. Every edit is checked by parsing the result: the named value must read back as
asked, and nothing else in the document may differ (compose_diff compares the two).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import yaml

from harness.compose.diff import Key, diff_texts, is_engine
from harness.compose.services import is_secret_name
from harness.errors import InputError

EditKind = Literal["flag", "model", "image", "env"]
# Pseudo-flags for what is not a `--flag` of the command.
MODEL = "model"
IMAGE = "image"

_KEY = re.compile(
    r"^(?P<indent> *)(?P<key>[^\s#:'\"][^:#]*?|\"[^\"]+\"|'[^']+'):(?:\s+(?P<rest>.*))?$"
)
_ITEM = re.compile(r"^(?P<indent> *)-(?: +(?P<rest>.*))?$")


@dataclass(frozen=True)
class Edit:
    """One requested change: `service`'s `name` (a `--flag`, `model`, `image` or an
    environment variable) set to `value`."""

    service: str
    name: str
    value: str
    kind: EditKind

    def __str__(self) -> str:
        if self.kind == "env":
            return f"--env {self.service}.{self.name}={self.value}"
        return f"{self.service}.{self.name}={self.value}"


def parse_flag_edit(text: str) -> Edit:
    """`SERVICE.--flag=VALUE`, `SERVICE.model=VALUE` or `SERVICE.image=VALUE`."""
    key, eq, value = text.partition("=")
    if not eq or not value:
        raise InputError(
            f"{text!r}: expected SERVICE.--flag=VALUE (e.g. vllm-primary.--max-num-seqs=4)"
        )
    if ".--" in key:
        service, _, flag = key.partition(".--")
        name = "--" + flag
        kind: EditKind = "flag"
    else:
        service, _, name = key.rpartition(".")
        if name not in (MODEL, IMAGE):
            raise InputError(
                f"{text!r}: {name!r} is not a flag; use SERVICE.--flag=VALUE, SERVICE.model=VALUE "
                "or SERVICE.image=VALUE (environment: --env SERVICE.NAME=VALUE)"
            )
        kind = "model" if name == MODEL else "image"
    if not service or name in ("--", ""):
        raise InputError(f"{text!r}: expected SERVICE.--flag=VALUE")
    return Edit(service, name, value, kind)


def parse_env_edit(text: str) -> Edit:
    """`SERVICE.NAME=VALUE` of --env. Secret-named variables are refused: they live in
    infra/.secrets, never in the compose file."""
    key, eq, value = text.partition("=")
    service, _, name = key.rpartition(".")
    if not eq or not service or not name:
        raise InputError(
            f"--env {text!r}: expected SERVICE.NAME=VALUE (e.g. ai-router.XAI_MODEL=x)"
        )
    if is_secret_name(name):
        raise InputError(
            f"--env {service}.{name}: a secret belongs in infra/.secrets, never in the compose file"
        )
    return Edit(service, name, value, "env")


# -- locating lines ---------------------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    """A line that holds YAML, not a blank or a comment."""
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _unquote_key(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" and key[-1:] == key[:1] else key


def _block(lines: Sequence[str], start: int, end: int, indent: int) -> int:
    """End (exclusive) of the block of lines after `start` indented deeper than `indent`."""
    i = start + 1
    last = start
    while i < end:
        if _content(lines[i]):
            if _indent(lines[i]) <= indent:
                break
            last = i
        i += 1
    return last + 1


def _find_key(lines: Sequence[str], start: int, end: int, key: str) -> tuple[int, int] | None:
    """(line index, indent) of `key:` among the direct children of the block [start, end)."""
    child = None
    for i in range(start, end):
        if not _content(lines[i]):
            continue
        ind = _indent(lines[i])
        child = ind if child is None else child
        if ind != child:
            continue
        m = _KEY.match(lines[i])
        if m and _unquote_key(m.group("key").strip()) == key:
            return i, ind
    return None


def _service_block(lines: Sequence[str], service: str, where: str) -> tuple[int, int, int]:
    """(line of `service:`, end of its block, its indent)."""
    top = _find_key(lines, 0, len(lines), "services")
    if top is None:
        raise InputError(f"{where}: no top-level `services:` block")
    s_end = _block(lines, top[0], len(lines), top[1])
    found = _find_key(lines, top[0] + 1, s_end, service)
    if found is None:
        raise InputError(f"{where}: no service {service!r} under `services:`")
    line, ind = found
    m = _KEY.match(lines[line])
    rest = ((m.group("rest") if m else None) or "").strip()
    if rest and not rest.startswith("#"):
        raise InputError(f"{where}: service {service!r} is not a block mapping")
    return line, _block(lines, line, len(lines), ind), ind


def _items(lines: Sequence[str], key_line: int, end: int, key_indent: int) -> list[int]:
    """Line indexes of the block-sequence items under the key at `key_line` (a block list may
    sit at the key's own indent)."""
    out: list[int] = []
    item_indent = None
    for i in range(key_line + 1, end):
        if not _content(lines[i]):
            continue
        ind = _indent(lines[i])
        is_item = _ITEM.match(lines[i]) is not None
        if item_indent is None:
            if not is_item or ind < key_indent:
                break
            item_indent = ind
        if ind < item_indent or (ind == item_indent and not is_item):
            break
        if ind == item_indent:
            out.append(i)
    return out


# -- scalars ----------------------------------------------------------------------------------


def _split_scalar(rest: str) -> tuple[str, str]:
    """(the scalar as written, what follows it on the line: spaces and a comment)."""
    if rest[:1] == '"':
        i = 1
        while i < len(rest):
            if rest[i] == "\\":
                i += 2
                continue
            if rest[i] == '"':
                return rest[: i + 1], rest[i + 1 :]
            i += 1
        raise ValueError("unterminated double-quoted scalar")
    if rest[:1] == "'":
        i = 1
        while i < len(rest):
            if rest[i] == "'":
                if rest[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return rest[: i + 1], rest[i + 1 :]
            i += 1
        raise ValueError("unterminated single-quoted scalar")
    m = re.search(r"\s+#", rest)
    if m:
        return rest[: m.start()], rest[m.start() :]
    stripped = rest.rstrip()
    return stripped, rest[len(stripped) :]


def _plain_ok(value: str) -> bool:
    """Whether `value` reads back as this very string when written without quotes."""
    if not value or value != value.strip() or "#" in value or ": " in value:
        return False
    try:
        return yaml.safe_load(value) == value
    except yaml.YAMLError:
        return False


def render_scalar(value: str, like: str) -> str:
    """`value` written the way `like` (the scalar it replaces) was: double-quoted, single-quoted
    or plain; plain only where it reads back as a string (compose wants strings here)."""
    if like[:1] == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if like[:1] == '"' or not _plain_ok(value):
        return json.dumps(value)
    return value


def _replace_scalar(line: str, prefix_len: int, value: str, where: str) -> str:
    rest = line[prefix_len:]
    try:
        old, tail = _split_scalar(rest)
    except ValueError as exc:
        raise InputError(f"{where}: cannot edit {line.strip()!r}: {exc}") from None
    if old[:1] in ("|", ">", "[", "{", "&", "*", "!"):
        raise InputError(
            f"{where}: {line.strip()!r} is not a plain or quoted scalar; edit it by hand"
        )
    return line[:prefix_len] + render_scalar(value, old) + tail


# -- edits ------------------------------------------------------------------------------------


def _command_items(lines: list[str], service: str, where: str) -> tuple[list[int], int]:
    line, end, _ = _service_block(lines, service, where)
    found = _find_key(lines, line + 1, end, "command")
    if found is None:
        raise InputError(f"{where}: service {service!r} has no `command:`")
    key_line, key_indent = found
    m = _KEY.match(lines[key_line])
    after = ((m.group("rest") if m else None) or "").strip()
    if after and not after.startswith("#"):
        raise InputError(
            f"{where}: service {service!r}: `command:` is written inline ({after[:40]}); only a "
            "block list (one `- item` per line) can be edited in place; edit it by hand"
        )
    items = _items(lines, key_line, end, key_indent)
    if not items:
        raise InputError(f"{where}: service {service!r}: `command:` has no list items")
    return items, end


def _item_value(line: str) -> tuple[int, str]:
    """(offset of the scalar in the line, its value as YAML reads it)."""
    m = _ITEM.match(line)
    if m is None or m.group("rest") is None:
        return len(line), ""
    offset = m.start("rest")
    scalar, _ = _split_scalar(m.group("rest"))
    value = yaml.safe_load(scalar) if scalar else None
    return offset, "" if value is None else str(value)


def _edit_flag(lines: list[str], edit: Edit, where: str) -> None:
    items, _ = _command_items(lines, edit.service, where)
    values = [_item_value(lines[i]) for i in items]
    for n, (offset, token) in enumerate(values):
        if token.startswith(edit.name + "="):
            lines[items[n]] = _replace_scalar(
                lines[items[n]], offset, f"{edit.name}={edit.value}", where
            )
            return
        if token == edit.name:
            if n + 1 >= len(items) or values[n + 1][1].startswith("--"):
                raise InputError(
                    f"{where}: service {edit.service!r}: {edit.name} has no value to change"
                )
            i = items[n + 1]
            lines[i] = _replace_scalar(lines[i], values[n + 1][0], edit.value, where)
            return
    # Absent: appended as two items, indented and quoted like the list's own.
    last = items[-1]
    prefix = lines[last][: values[-1][0]]
    lines[last + 1 : last + 1] = [
        prefix + render_scalar(edit.name, "x"),
        prefix + render_scalar(edit.value, "x"),
    ]


def _edit_model(lines: list[str], edit: Edit, where: str) -> None:
    items, _ = _command_items(lines, edit.service, where)
    values = [_item_value(lines[i]) for i in items]
    for n, (_, token) in enumerate(values):
        if token == "--model" and n + 1 < len(items):
            i = items[n + 1]
            lines[i] = _replace_scalar(lines[i], values[n + 1][0], edit.value, where)
            return
    offset, first = values[0]
    if first.startswith("--"):
        raise InputError(f"{where}: service {edit.service!r}: the command names no model first")
    lines[items[0]] = _replace_scalar(lines[items[0]], offset, edit.value, where)


def _edit_key(lines: list[str], edit: Edit, key: str, where: str) -> None:
    line, end, _ = _service_block(lines, edit.service, where)
    found = _find_key(lines, line + 1, end, key)
    if found is None:
        raise InputError(f"{where}: service {edit.service!r} has no `{key}:`")
    m = _KEY.match(lines[found[0]])
    assert m is not None
    if m.group("rest") is None:
        raise InputError(f"{where}: service {edit.service!r}: `{key}:` is not a scalar")
    lines[found[0]] = _replace_scalar(lines[found[0]], m.start("rest"), edit.value, where)


def _edit_env(lines: list[str], edit: Edit, where: str) -> None:
    line, end, _ = _service_block(lines, edit.service, where)
    found = _find_key(lines, line + 1, end, "environment")
    if found is None:
        raise InputError(
            f"{where}: service {edit.service!r} has no `environment:` block; add one by hand"
        )
    key_line, key_indent = found
    items = _items(lines, key_line, end, key_indent)
    if items:  # list form: - NAME=value
        for i in items:
            offset, token = _item_value(lines[i])
            if token.split("=", 1)[0] == edit.name:
                lines[i] = _replace_scalar(lines[i], offset, f"{edit.name}={edit.value}", where)
                return
        offset, _ = _item_value(lines[items[-1]])
        lines.insert(items[-1] + 1, lines[items[-1]][:offset] + f"{edit.name}={edit.value}")
        return
    block_end = _block(lines, key_line, end, key_indent)
    children = [i for i in range(key_line + 1, block_end) if _content(lines[i])]
    if not children:
        raise InputError(f"{where}: service {edit.service!r}: `environment:` is empty or inline")
    child_indent = _indent(lines[children[0]])
    for i in children:
        m = _KEY.match(lines[i])
        if m and _indent(lines[i]) == child_indent and _unquote_key(m.group("key")) == edit.name:
            if m.group("rest") is None:
                lines[i] = lines[i].rstrip() + " " + render_scalar(edit.value, '"')
            else:
                lines[i] = _replace_scalar(lines[i], m.start("rest"), edit.value, where)
            return
    last = max(i for i in children if _indent(lines[i]) == child_indent)
    lines.insert(last + 1, " " * child_indent + f"{edit.name}: {render_scalar(edit.value, 'x')}")


def apply_edits(text: str, edits: Iterable[Edit], where: str) -> str:
    """`text` with every edit made in place; InputError (naming `where`, the service and the
    flag or variable) when one cannot be made or the result does not read back as asked."""
    edits = list(edits)
    _engines_only(text, edits, where)
    newline = "\r\n" if "\r\n" in text else "\n"
    trailing = text.endswith(("\n", "\r\n"))
    lines = text.splitlines()
    for edit in edits:
        if edit.kind == "flag":
            _edit_flag(lines, edit, where)
        elif edit.kind == "model":
            _edit_model(lines, edit, where)
        elif edit.kind == "image":
            _edit_key(lines, edit, "image", where)
        else:
            _edit_env(lines, edit, where)
    out = newline.join(lines) + (newline if trailing else "")
    check_edits(text, out, edits, where)
    return out


def _engines_only(text: str, edits: Sequence[Edit], where: str) -> None:
    """Flags and models are edited on vLLM engines only: whether another program's next
    token is a flag's value or an argument is not known here."""
    try:
        services = (yaml.safe_load(text) or {}).get("services") or {}
    except (yaml.YAMLError, AttributeError):
        return  # the edit itself reports what it cannot find
    for e in edits:
        body = services.get(e.service)
        if e.kind in ("flag", "model") and isinstance(body, dict) and not is_engine(body):
            raise InputError(
                f"{where}: service {e.service!r} is not a vLLM engine: {e.name} can only be "
                "changed by hand there"
            )


def item_of(edit: Edit) -> Key:
    """The (service, field) an edit changes, as compose_diff's `flatten` names it."""
    if edit.kind == "env":
        return (edit.service, f"environment.{edit.name}")
    return (edit.service, edit.name)


def check_edits(before: str, after: str, edits: Sequence[Edit], where: str) -> None:
    """The edited text reads back with every edit's value, and nothing else differs."""
    changes = {c.key: c for c in diff_texts(before, after, where)}
    wanted = {item_of(e): e for e in edits}
    for key, edit in wanted.items():
        got = changes[key].after if key in changes else None
        if key in changes and got != edit.value:
            raise InputError(
                f"{where}: after the edit, service {edit.service!r} {edit.name} reads {got!r}, "
                f"not {edit.value!r}; edit it by hand"
            )
    extra = sorted(set(changes) - set(wanted))
    if extra:
        named = ", ".join(changes[k].item for k in extra)
        raise InputError(f"{where}: the edit changed more than it names ({named}); edit by hand")
