"""Hypothesis: whatever a runbook file holds, the loader answers with a Runbook or with
RunbookInvalid whose problems point inside the file -- never another exception, and
`drdeck validate` never shows a traceback.

Seeds are the shipped health check and tests/data/runbooks/every-feature.toml, which
uses every part of the format once. Examples are capped so the file runs in seconds.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tui.errors import RunbookInvalid
from tui.runbook.loader import load_text
from tui.runbook.model import Runbook

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {
    "health-check": (ROOT / "runbooks" / "health-check.toml").read_text(encoding="utf-8"),
    "every-feature": (ROOT / "tests" / "data" / "runbooks" / "every-feature.toml").read_text(
        encoding="utf-8"
    ),
}
SHOWN = "fuzzed.toml"

FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_loads_or_reports(source: str) -> Runbook | None:
    """The property: a Runbook, or RunbookInvalid with sane, sorted positions."""
    try:
        runbook = load_text(source, SHOWN)
    except RunbookInvalid as exc:
        assert exc.problems, "RunbookInvalid without a single problem"
        lines = source.split("\n")
        for problem in exc.problems:
            assert problem.path == SHOWN
            # one past the last line is where "end of document" errors sit
            assert 1 <= problem.line <= len(lines) + 1, (problem, len(lines))
            assert problem.col >= 1, problem
            if problem.line <= len(lines):
                assert problem.col <= len(lines[problem.line - 1]) + 1, problem
            assert problem.message.strip(), problem
            assert "\n" not in problem.message, problem
            assert problem.message != "invalid runbook", "a problem that names nothing"
        positions = [(p.line, p.col) for p in exc.problems]
        assert positions == sorted(positions)
        return None
    assert isinstance(runbook, Runbook)
    assert runbook.steps
    return runbook


def test_the_seeds_are_valid_runbooks() -> None:
    # the mutations below only mean something if they start from a good file
    for source in SEEDS.values():
        assert assert_loads_or_reports(source) is not None


# --- (a) text mutations ------------------------------------------------------------------

TOKENS = [
    "=", "[", "]", "{", "}", '"', "'", '"""', "'''", "${", "}", "$${", "${x}", "${steps.",
    "[[steps]]", "[[steps.checks]]", "[runbook]", "[params.p]", "\x00", "\r", "\t", "\n",
    "\\", "\\u", "#", ",", ".", "0", "7", "-1", "1e9", "99999999999999999999", "true",
    "1979-05-27T07:32:00Z", "é", "日本", "🦆", "\u2028", "\ufeff", "with", "expect",
    "capture = true", "action = ", 'id = "connect"',
]  # fmt: skip


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 80)))
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "swap", "insert"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "replace":
            text = text[:i] + draw(st.text(max_size=12)) + text[j:]
        elif op == "swap":
            lines = text.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        else:
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
    return text


@FAST
@given(mutated_text())
def test_mutated_text_loads_or_reports_problems_inside_the_file(source: str) -> None:
    assert_loads_or_reports(source)


@FAST
@given(mutated_text(), st.sampled_from(["\r\n", "\n"]))
def test_line_endings_and_a_trailing_newline_do_not_matter(source: str, eol: str) -> None:
    assert_loads_or_reports(source.replace("\n", eol).rstrip("\n"))


# --- (b) structured mutations --------------------------------------------------------------

KEY_NAMES = st.sampled_from(
    ["name", "title", "id", "action", "with", "steps", "checks", "expect", "query",
     "command", "dsn", "type", "default", "choices", "capture", "timeout", "retries",
     "params", "runbook", "min", "equals", "x", "nope", "env"]
) | st.text(min_size=1, max_size=8)  # fmt: skip

SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20
) | st.sampled_from(
    ["", "${dsn}", "${nope}", "${steps.connect.output}", "${", "'${dsn}'", "30s", "4x",
     "sql", "shell", "wait", "manual", "milestone", "choice", "secret", "int", "abort",
     "1h30m", "${ident:dsn}", "${run.id}", "${env.HOME}", "$${x}", "connect"]
)  # fmt: skip

SCALARS = (
    SAFE_TEXT
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.times()
)

TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY_NAMES, inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _tables(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _tables(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _tables(value, (*prefix, index))
    return found


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_document(draw: st.DrawFn) -> str:
    doc = tomllib.loads(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "add":
            table = _get(doc, draw(st.sampled_from(_tables(doc))))
            table[draw(KEY_NAMES)] = draw(TOML_VALUES)
            continue
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _get(doc, path[:-1])
        if op == "replace":
            parent[path[-1]] = draw(TOML_VALUES)
        else:
            del parent[path[-1]]
    try:
        return tomlkit.dumps(doc)
    except Exception:  # tomlkit cannot write this value: not what is under test
        assume(False)
        raise


@FAST
@given(mutated_document())
def test_structured_mutation_loads_or_reports_problems_inside_the_file(source: str) -> None:
    assert_loads_or_reports(source)


# --- (c) the real command line -----------------------------------------------------------

PROBLEM_LINE = re.compile(r"(?P<path>.+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)")


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DRDECK_DEBUG", None)  # it would turn an internal error into a traceback
    return env


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_text() | mutated_document(), min_size=4, max_size=6))
def test_validate_command_on_generated_files_exits_2_without_traceback(
    sources: list[str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths, bad = [], set()
        for index, source in enumerate(sources):
            path = Path(tmp) / f"r{index}.toml"
            path.write_text(source, encoding="utf-8", newline="")
            paths.append(str(path))
            if assert_loads_or_reports(source) is None:
                bad.add(str(path))
        # one file that is certainly bad, so the exit code is always 2
        broken = Path(tmp) / "broken.toml"
        broken.write_text("[runbook\n", encoding="utf-8")
        paths.append(str(broken))
        bad.add(str(broken))
        done = subprocess.run(
            [sys.executable, "-m", "tui", "validate", *paths],
            capture_output=True, text=True, cwd=ROOT, env=_cli_env(), timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    reported = set()
    for line in done.stderr.splitlines():
        match = PROBLEM_LINE.fullmatch(line)
        assert match, f"not a PATH:LINE:COL: message line: {line!r}"
        reported.add(match["path"])
    assert reported == bad
    ok_paths = {line.split(" ")[1] for line in done.stdout.splitlines()}
    assert ok_paths == set(paths) - bad
