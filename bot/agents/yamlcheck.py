"""Reading a YAML configuration file and reporting every problem with its file and line.

`read_yaml` composes the document into nodes first and indexes every key and list item
by its path (`("agents", "reviewer", "engine")`) to the line it was written on, then
builds the plain values. Checks work on the plain values and report through a `Report`
by path, so a message reads `threadline.yml:12: agents.reviewer.engine: <reason>`. A
path that was not written as such (a value pulled in by an alias or a `<<` merge)
reports the line of the nearest enclosing key that was.

Each check reports what is wrong and returns None for an unusable value, so one pass
finds every problem.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from bot.config import ConfigError

# A path to a value in the file: mapping keys and list indexes, from the top.
KeyPath = tuple[str | int, ...]
Check = Callable[["Report", object, KeyPath], Any]

# User-facing text of the generic checks.
INVALID_YAML = "{file}:{line}: not valid YAML: {reason}"
DUPLICATE_KEY = "given more than once (the last one would silently win)"
NOT_A_MAPPING = "expected a mapping with the keys {keys}, got {got}"
UNKNOWN_KEY = "unknown key; expected one of {keys}"
DID_YOU_MEAN = " (did you mean {guess!r}?)"
REQUIRED = "required"
EXPECTED_FLAG = "expected true or false, got {got}"
EXPECTED_TEXT = "expected text, got {got}"
EXPECTED_NONEMPTY_TEXT = "expected non-empty text, got {got}"
EXPECTED_TEXTS = "expected a list of non-empty texts, got {got}"
EXPECTED_MINUTES = "expected a positive number of minutes, got {got}"
EXPECTED_COUNT = "expected a positive whole number, got {got}"
EXPECTED_LABEL = "expected a label name, or null to turn label triggers off, got {got}"


class ConfigFileError(ConfigError):
    """The agents file is unusable; `problems` lists each as `file:line: key: reason`."""


# --- reading YAML with lines ------------------------------------------------------------

MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(
    text: str, filename: str
) -> tuple[object, dict[KeyPath, int], list[tuple[KeyPath, int]]]:
    """The plain data, the line of each written path, and keys written twice (path, line)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        lines: dict[KeyPath, int] = {(): 1 if root is None else line(root)}
        duplicates: list[tuple[KeyPath, int]] = []
        if root is not None:
            index(root, (), lines, duplicates, set())
        # Index before constructing: construction flattens `<<` merges into the nodes.
        data = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigFileError([yaml_problem(filename, exc)]) from exc
    finally:
        loader.dispose()
    return data, lines, duplicates


def yaml_problem(filename: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    reason = ", ".join(part for part in parts if part) or str(exc)
    line = mark.line + 1 if mark is not None else 1
    return INVALID_YAML.format(file=filename, line=line, reason=reason)


def line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def index(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    duplicates: list[tuple[KeyPath, int]],
    seen: set[int],
) -> None:
    """Record the line of every key and item under `node`; each node is walked once."""
    if id(node) in seen:  # an alias: its values report the line of the key holding it
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        written: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
                continue
            child = (*path, str(key.value))
            if key.value in written:
                duplicates.append((child, line(key)))
            written.add(key.value)
            lines[child] = line(key)  # the last one, as the constructed value is
            index(value, child, lines, duplicates, seen)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            child = (*path, number)
            lines[child] = line(item)
            index(item, child, lines, duplicates, seen)


# --- reporting ------------------------------------------------------------------------


def dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def shown(value: object) -> str:
    """A value as a problem message shows it, kept short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def choices(names: Iterable[str]) -> str:
    return ", ".join(names)


class Report:
    """Problems found so far, each placed on the line its path was written on."""

    def __init__(self, filename: str, lines: Mapping[KeyPath, int]) -> None:
        self._filename = filename
        self._lines = lines
        self._found: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._found)

    def line(self, path: KeyPath) -> int:
        while path not in self._lines:
            path = path[:-1]
        return self._lines[path]

    def add(self, path: KeyPath, reason: str, *, line: int | None = None) -> None:
        where = self.line(path) if line is None else line
        label = f"{dotted(path)}: " if path else ""
        self._found.append((where, f"{self._filename}:{where}: {label}{reason}"))

    def problems(self) -> list[str]:
        return [text for _, text in sorted(self._found, key=lambda found: found[0])]


# --- checks: each reports what is wrong and returns None for an unusable value ----------


def mapping(report: Report, raw: object, path: KeyPath, keys: Sequence[str]) -> dict[str, object]:
    """`raw`'s known keys (null counts as empty); reports a non-mapping and unknown keys."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report.add(path, NOT_A_MAPPING.format(keys=choices(keys), got=shown(raw)))
        return {}
    known: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(key, str) and key in keys:
            known[key] = value
        else:
            report.add(
                (*path, str(key)), unknown(str(key), keys, UNKNOWN_KEY.format(keys=choices(keys)))
            )
    return known


def unknown(name: str, known: Sequence[str], reason: str) -> str:
    guesses = difflib.get_close_matches(name, known, n=1)
    return reason + (DID_YOU_MEAN.format(guess=guesses[0]) if guesses else "")


def fields(
    report: Report, raw: object, path: KeyPath, table: Mapping[str, tuple[str, Check]]
) -> dict[str, Any]:
    """Check each key of `table` found in `raw`; the valid ones by attribute name."""
    values: dict[str, Any] = {}
    for key, value in mapping(report, raw, path, list(table)).items():
        attr, check = table[key]
        before = len(report)
        checked = check(report, value, (*path, key))
        if len(report) == before:
            values[attr] = checked
    return values


def flag(report: Report, raw: object, path: KeyPath) -> bool | None:
    if isinstance(raw, bool):
        return raw
    report.add(path, EXPECTED_FLAG.format(got=shown(raw)))
    return None


def text(report: Report, raw: object, path: KeyPath, *, empty_ok: bool = False) -> str | None:
    if isinstance(raw, str) and (empty_ok or raw.strip()):
        return raw
    report.add(path, (EXPECTED_TEXT if empty_ok else EXPECTED_NONEMPTY_TEXT).format(got=shown(raw)))
    return None


def any_text(report: Report, raw: object, path: KeyPath) -> str | None:
    return text(report, raw, path, empty_ok=True)


def blank_ok(report: Report, raw: object, path: KeyPath) -> str | None:
    """Optional text: a key left blank (`description:`) is the empty text."""
    return any_text(report, "" if raw is None else raw, path)


def texts(report: Report, raw: object, path: KeyPath) -> tuple[str, ...] | None:
    if isinstance(raw, list) and all(isinstance(item, str) and item.strip() for item in raw):
        return tuple(raw)
    report.add(path, EXPECTED_TEXTS.format(got=shown(raw)))
    return None


def number(raw: object) -> float | None:
    """`raw` as a float if it is a finite int or float (YAML's true and false are not)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:  # an int too large for a float
        return None
    return value if math.isfinite(value) else None


def minutes(report: Report, raw: object, path: KeyPath) -> float | None:
    value = number(raw)
    if value is not None and value > 0:
        return value
    report.add(path, EXPECTED_MINUTES.format(got=shown(raw)))
    return None


def count(report: Report, raw: object, path: KeyPath) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    report.add(path, EXPECTED_COUNT.format(got=shown(raw)))
    return None


def label(report: Report, raw: object, path: KeyPath) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip()):
        return raw
    report.add(path, EXPECTED_LABEL.format(got=shown(raw)))
    return None


def named(
    report: Report,
    raw: object,
    path: KeyPath,
    pattern: re.Pattern[str],
    *,
    expected: str,
    bad_name: str,
) -> list[tuple[str, object, KeyPath]]:
    """The entries of a mapping of names to bodies (agents, providers, workflows), each
    with its path; a name that does not fit `pattern` is reported and left out."""
    if not isinstance(raw, dict):
        report.add(path, expected.format(got=shown(raw)))
        return []
    entries: list[tuple[str, object, KeyPath]] = []
    for name, body in raw.items():
        where = (*path, str(name))
        if not isinstance(name, str) or not pattern.fullmatch(name):
            report.add(where, bad_name.format(got=shown(name)))
            continue
        entries.append((name, body, where))
    return entries
