"""Tests for tui.runbook.locate: positions of TOML keys for post-parse error reports."""

from __future__ import annotations

import random
import re
import string
import time
import tomllib
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.runbook.locate import Path, key_positions, locate

RUNBOOK = '''\
# drdeck runbook: a health check
[runbook]
name = "health-check"
description = """Multi
line with "quotes" and # not a comment"""

[params.dsn]
type = "dsn"

[[steps]]
id = "connect"
with = { dsn = "${dsn}", query = "select 1" }

[[steps.checks]]
name = "version"
expect = { min = 150000 }

[[steps.checks]]
name = "replicas"

[[steps]]
id = "second"
'''


def test_runbook_example() -> None:
    assert tomllib.loads(RUNBOOK)  # the example itself is valid TOML
    assert key_positions(RUNBOOK) == {
        ("runbook",): (2, 1),
        ("runbook", "name"): (3, 1),
        ("runbook", "description"): (4, 1),
        ("params",): (7, 1),
        ("params", "dsn"): (7, 1),
        ("params", "dsn", "type"): (8, 1),
        ("steps",): (10, 1),
        ("steps", 0): (10, 1),
        ("steps", 0, "id"): (11, 1),
        ("steps", 0, "with"): (12, 1),
        ("steps", 0, "with", "dsn"): (12, 10),
        ("steps", 0, "with", "query"): (12, 26),
        ("steps", 0, "checks"): (14, 1),
        ("steps", 0, "checks", 0): (14, 1),
        ("steps", 0, "checks", 0, "name"): (15, 1),
        ("steps", 0, "checks", 0, "expect"): (16, 1),
        ("steps", 0, "checks", 0, "expect", "min"): (16, 12),
        ("steps", 0, "checks", 1): (18, 1),
        ("steps", 0, "checks", 1, "name"): (19, 1),
        ("steps", 1): (21, 1),
        ("steps", 1, "id"): (22, 1),
    }


def test_crlf_line_endings_give_the_same_positions() -> None:
    crlf = RUNBOOK.replace("\n", "\r\n")
    assert tomllib.loads(crlf) == tomllib.loads(RUNBOOK)
    assert key_positions(crlf) == key_positions(RUNBOOK)


def test_top_level_keys_and_indentation() -> None:
    src = 'name = "x"\n  indented = 1\n\ttabbed=2\nlast   =   true # done\n'
    assert key_positions(src) == {
        ("name",): (1, 1),
        ("indented",): (2, 3),
        ("tabbed",): (3, 2),  # a tab is one column
        ("last",): (4, 1),
    }


def test_table_headers() -> None:
    src = '[a.b]\nk = 1\n\n[ a . "c d" ]  # spaced\nk = 2\n\n[a]\ntop = 3\n'
    assert tomllib.loads(src) == {"a": {"b": {"k": 1}, "c d": {"k": 2}, "top": 3}}
    assert key_positions(src) == {
        ("a",): (7, 1),  # implied by [a.b] first, then defined by its own header
        ("a", "b"): (1, 1),
        ("a", "b", "k"): (2, 1),
        ("a", "c d"): (4, 1),
        ("a", "c d", "k"): (5, 1),
        ("a", "top"): (8, 1),
    }


def test_arrays_of_tables_count_within_their_parent() -> None:
    src = """\
[[steps]]
id = "one"
[steps.with]
dsn = "a"
[[steps.checks]]
name = "c0"
[[steps.checks]]
name = "c1"

[[steps]]
id = "two"
[[steps.checks]]
name = "d0"
[steps.with]
dsn = "b"
"""
    data = tomllib.loads(src)
    assert data["steps"][1]["checks"][0]["name"] == "d0"
    found = key_positions(src)
    assert found[("steps", 0)] == (1, 1)
    assert found[("steps", 0, "with")] == (3, 1)
    assert found[("steps", 0, "with", "dsn")] == (4, 1)
    assert found[("steps", 0, "checks", 0)] == (5, 1)
    assert found[("steps", 0, "checks", 1, "name")] == (8, 1)
    assert found[("steps", 1)] == (10, 1)
    assert found[("steps", 1, "checks", 0)] == (12, 1)
    assert found[("steps", 1, "checks", 0, "name")] == (13, 1)
    assert found[("steps", 1, "with", "dsn")] == (15, 1)
    assert ("steps", 1, "checks", 1) not in found
    assert ("steps", 2) not in found


def test_dotted_keys() -> None:
    src = '[t]\nx = 0\n  a.b.c = 1\na . "b" . d = 2\n'
    assert tomllib.loads(src) == {"t": {"x": 0, "a": {"b": {"c": 1, "d": 2}}}}
    found = key_positions(src)
    assert found[("t", "a", "b", "c")] == (3, 3)
    assert found[("t", "a", "b")] == (3, 3)  # intermediates: where first seen
    assert found[("t", "a")] == (3, 3)
    assert found[("t", "a", "b", "d")] == (4, 1)


def test_inline_tables_nested() -> None:
    src = 'with = { dsn = "${dsn}", opts = { timeout = 5, "q k" = { deep = true } } }\n'
    found = key_positions(src)
    assert found[("with",)] == (1, 1)
    assert found[("with", "dsn")] == (1, 10)
    assert found[("with", "opts")] == (1, 26)
    assert found[("with", "opts", "timeout")] == (1, 35)
    assert found[("with", "opts", "q k")] == (1, 48)
    assert found[("with", "opts", "q k", "deep")] == (1, 58)
    assert src.index("deep") + 1 == 58


def test_arrays() -> None:
    src = """\
checks = [ {name="a"}, {name = "b", expect = { min = 1 }} ]
contacts = [
  "ops@example.com",  # on call
  # a comment line with ] and , in it
  'dba@example.com',
]
matrix = [[1, 2], [], [[3]]]
"""
    assert tomllib.loads(src)["matrix"] == [[1, 2], [], [[3]]]
    found = key_positions(src)
    assert found[("checks", 0)] == (1, 12)
    assert found[("checks", 0, "name")] == (1, 13)
    assert found[("checks", 1)] == (1, 24)
    assert found[("checks", 1, "name")] == (1, 25)
    assert found[("checks", 1, "expect", "min")] == (1, 48)
    assert found[("contacts",)] == (2, 1)
    assert found[("contacts", 0)] == (3, 3)
    assert found[("contacts", 1)] == (5, 3)
    assert ("contacts", 2) not in found  # a trailing comma is not an element
    assert found[("matrix", 0)] == (7, 11)
    assert found[("matrix", 0, 1)] == (7, 15)
    assert found[("matrix", 1)] == (7, 19)
    assert found[("matrix", 2, 0, 0)] == (7, 25)


def test_quoted_keys() -> None:
    src = (
        '"my key" = 1\n'
        "'lit' = 2\n"
        r'"a\"b" = 3' + "\n"
        r"'C:\dir' = 4" + "\n"
        r'"\u00e9t\u00E9\t" = 5' + "\n"
        '"" = 6\n'
        "[\"sec tion\".'x.y']\n"
        "k = 7\n"
    )
    assert tomllib.loads(src)["sec tion"]["x.y"] == {"k": 7}
    found = key_positions(src)
    assert found[("my key",)] == (1, 1)
    assert found[("lit",)] == (2, 1)
    assert found[('a"b',)] == (3, 1)
    assert found[("C:\\dir",)] == (4, 1)
    assert found[("été\t",)] == (5, 1)
    assert found[("",)] == (6, 1)
    assert found[("sec tion",)] == found[("sec tion", "x.y")] == (7, 1)
    assert found[("sec tion", "x.y", "k")] == (8, 1)


def test_strings_are_skipped() -> None:
    src = (
        'a = "not # a comment, nor ] or } or = b"\n'
        r'b = "esc \" # \\" # real comment "' + "\n"
        r"c = 'C:\' # literal strings have no escapes" + "\n"
        'd = """\n'
        'has "one" and ""two"" quotes, \\""" escaped, # and [x] = 1\n'
        'x = "not a key"\n'
        'ends with a quote""""\n'
        "e = '''\n"
        "y = 'not a key' '' \\\n"
        "ends with quotes'''''\n"
        'f = """\\\n    continued"""\n'
        "g = 7\n"
    )
    data = tomllib.loads(src)
    assert data["d"].endswith('quote"') and data["e"].endswith("quotes''")
    assert key_positions(src) == {
        ("a",): (1, 1),
        ("b",): (2, 1),
        ("c",): (3, 1),
        ("d",): (4, 1),
        ("e",): (8, 1),
        ("f",): (11, 1),
        ("g",): (13, 1),
    }


def test_columns_count_characters_not_bytes() -> None:
    src = 't = { "é" = "ü👍", k = 1 }\n'
    assert key_positions(src)[("t", "k")] == (1, src.index("k =") + 1) == (1, 19)


def test_invalid_lines_are_skipped() -> None:
    src = "a = 1\nthis is not toml\nb = [1, 2\nc = { x = 1\nd = 2\n[broken\ne = 3\n"
    found = key_positions(src)
    assert found[("a",)] == (1, 1)
    assert found[("b", 0)] == (3, 6)
    assert found[("c", "x")] == (4, 7)
    assert found[("d",)] == (5, 1)
    assert found[("e",)] == (7, 1)


def test_unterminated_multiline_string_stops_the_scan() -> None:
    src = 'a = 1\nb = """never closed\nc = 2\n'
    assert key_positions(src) == {("a",): (1, 1), ("b",): (2, 1)}


@pytest.mark.parametrize("src", ["", "\n", "#", "[", "[[", "a", "a =", '"a', "a = [[[", "{"])
def test_truncated_input(src: str) -> None:
    for position in key_positions(src).values():
        _assert_in_bounds(src, position)
    _assert_in_bounds(src, locate(src, ("a", 0)))


def test_deep_nesting_does_not_recurse_forever() -> None:
    src = "a = " + "[" * 5000 + "]" * 5000 + "\nb = 1\n"
    assert key_positions(src)[("b",)] == (2, 1)


def test_locate_falls_back_to_the_nearest_ancestor() -> None:
    assert locate(RUNBOOK, ("steps", 0, "with", "query")) == (12, 26)
    assert locate(RUNBOOK, ("steps", 0, "with", "missing")) == (12, 1)
    assert locate(RUNBOOK, ("steps", 1, "with", "dsn")) == (21, 1)
    assert locate(RUNBOOK, ("steps", 7)) == (10, 1)
    assert locate(RUNBOOK, ("nothing", "here")) == (1, 1)
    assert locate(RUNBOOK, ()) == (1, 1)


def test_locate_never_raises() -> None:
    assert locate(RUNBOOK, (["unhashable"],)) == (1, 1)  # type: ignore[arg-type]
    assert locate(None, ("a",)) == (1, 1)  # type: ignore[arg-type]


def test_a_2000_line_file_is_quick() -> None:
    block = RUNBOOK.split("\n", 9)[-1]  # from the first [[steps]] on: 12 lines
    src = RUNBOOK + block * 170
    assert src.count("\n") > 2000
    key_positions(src)  # warm up
    start = time.perf_counter()
    found = key_positions(src)
    elapsed = time.perf_counter() - start
    assert found[("steps", 341, "id")][0] == src.count("\n")
    assert elapsed < 0.25  # typically ~10 ms; generous for loaded CI machines


# -- properties -----------------------------------------------------------------------------


def _assert_in_bounds(src: str, position: tuple[int, int]) -> None:
    line, col = position
    lines = src.split("\n")
    assert 1 <= line <= len(lines)
    assert 1 <= col <= len(lines[line - 1]) + 1


@settings(max_examples=300)
@given(st.text())
def test_any_text_is_handled(src: str) -> None:
    for position in key_positions(src).values():
        _assert_in_bounds(src, position)
    _assert_in_bounds(src, locate(src, ("steps", 0, "id")))


_PIECES = ["[", "[[", "]", "]]", "{", "}", '"', "'", '"""', "'''", "\\", "#", "=", ".", ",",
           "\n", "\r\n", " ", "\t", "a", "0"]  # fmt: skip


@settings(max_examples=300)
@given(st.data())
def test_mutated_runbooks_are_handled(data: st.DataObject) -> None:
    src = RUNBOOK
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(src)))
        j = data.draw(st.integers(i, min(len(src), i + 20)))
        new = data.draw(st.one_of(st.sampled_from(_PIECES), st.text(max_size=4)))
        src = data.draw(st.sampled_from([src[:i] + new + src[j:], src[:i], src[:i] + src[j:]]))
    for position in key_positions(src).values():
        _assert_in_bounds(src, position)
    path = data.draw(st.lists(st.one_of(st.text(max_size=3), st.integers(0, 3)), max_size=5))
    _assert_in_bounds(src, locate(src, tuple(path)))


# A serializer that writes valid TOML in many styles and notes where it put each key:
# the oracle for the round-trip property below.

_BARE = set(string.ascii_letters + string.digits + "_-")
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _is_control(c: str) -> bool:
    return (ord(c) < 0x20 and c != "\t") or c == "\x7f"


class _Writer:
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.out: list[str] = []
        self.line, self.col = 1, 1
        self.expected: dict[Path, tuple[int, int]] = {}
        self.eol = "\r\n" if rnd.random() < 0.2 else "\n"

    def write(self, text: str) -> None:
        self.out.append(text)
        if "\n" in text:
            self.line += text.count("\n")
            self.col = len(text) - text.rfind("\n")
        else:
            self.col += len(text)

    def mark(self, path: Path) -> None:
        self.expected.setdefault(path, (self.line, self.col))

    def end_line(self) -> None:
        if self.rnd.random() < 0.2:
            self.write(self.rnd.choice([" # note", "  # x = [ {", "\t# \"q\" 'l'"]))
        self.write(self.eol)
        if self.rnd.random() < 0.1:
            self.write(self.rnd.choice(["", "# comment", "   "]) + self.eol)

    def basic(self, s: str, multiline: bool = False) -> str:
        out, quotes = [], 0  # in """...""", three quotes in a row would end the string
        for c in s:
            if c == '"' and (not multiline or quotes == 2):
                out.append('\\"')
            elif c == "\\":
                out.append("\\\\")
            elif multiline and c == "\n":
                out.append(c)
            elif _is_control(c) or (c == "\t" and self.rnd.random() < 0.5):
                out.append(_SHORT_ESCAPES.get(c, f"\\u{ord(c):04x}"))
            elif ord(c) > 127 and self.rnd.random() < 0.3:
                out.append(f"\\U{ord(c):08X}" if ord(c) > 0xFFFF else f"\\u{ord(c):04X}")
            else:
                out.append(c)
            quotes = quotes + 1 if out[-1] == '"' else 0
        return "".join(out)

    def string(self, s: str) -> str:
        literal_ok = not any(_is_control(c) for c in s)
        style = self.rnd.randrange(4)
        if style == 1 and literal_ok and "'" not in s and "\n" not in s:
            return f"'{s}'"
        if style == 2 and literal_ok and "'''" not in s:
            return f"'''{self.rnd.choice(['', chr(10)])}{s}'''" if s[:1] != "\n" else f"'''\n{s}'''"
        if style == 3:
            # a line-ending backslash trims the newline and the blanks that follow it
            cont = "\\\n   " if s[:1] not in ("", " ", "\t", "\n", "\r") else ""
            return f'"""\n{cont}{self.basic(s, multiline=True)}"""'
        return f'"{self.basic(s)}"'

    def key(self, k: str) -> str:
        if k and set(k) <= _BARE and self.rnd.random() < 0.8:
            return k
        if not any(_is_control(c) for c in k) and "'" not in k and self.rnd.random() < 0.5:
            return f"'{k}'"
        return f'"{self.basic(k)}"'

    def dotted(self, parts: list[str]) -> str:
        return self.rnd.choice([".", " . "]).join(self.key(p) for p in parts)

    # -- values --------------------------------------------------------------------------

    def value(self, path: Path, v: Any) -> None:
        if isinstance(v, bool):
            self.write("true" if v else "false")
        elif isinstance(v, int):
            self.write(str(v))
        elif isinstance(v, str):
            self.write(self.string(v))
        elif isinstance(v, list):
            self.array(path, v)
        else:
            self.inline_table(path, v)

    def array(self, path: Path, items: list[Any]) -> None:
        multiline = self.rnd.random() < 0.4
        self.write("[")
        for i, item in enumerate(items):
            if multiline:
                self.write(self.eol + self.rnd.choice(["", "  ", "  # before" + self.eol + "  "]))
            elif i:
                self.write(self.rnd.choice([" ", "", "  "]))
            self.mark((*path, i))
            self.value((*path, i), item)
            if i < len(items) - 1 or (multiline and self.rnd.random() < 0.5):
                self.write(",")
            if multiline and self.rnd.random() < 0.3:
                self.write(" # after")
        self.write(self.eol + "]" if multiline else "]")

    def inline_table(self, path: Path, table: dict[str, Any]) -> None:
        self.write("{" + self.rnd.choice([" ", ""]))
        for i, (parts, v) in enumerate(self.flatten([], table)):
            if i:
                self.write(", ")
            self.key_value(path, parts, v)
        self.write(self.rnd.choice([" ", ""]) + "}")

    def flatten(self, parts: list[str], table: dict[str, Any]) -> list[tuple[list[str], Any]]:
        """(dotted key, value) pairs; some non-empty sub-tables are spelt as dotted keys."""
        pairs = []
        for k, v in table.items():
            if isinstance(v, dict) and v and self.rnd.random() < 0.3:
                pairs += self.flatten([*parts, k], v)
            else:
                pairs.append(([*parts, k], v))
        return pairs

    def key_value(self, table: Path, parts: list[str], v: Any) -> None:
        for n in range(1, len(parts) + 1):
            self.mark((*table, *parts[:n]))
        self.write(self.dotted(parts) + self.rnd.choice([" = ", "=", "\t=  "]))
        self.value((*table, *parts), v)

    # -- tables --------------------------------------------------------------------------

    def table_body(self, path: Path, table: dict[str, Any], header: str = "") -> None:
        def is_aot(v: Any) -> bool:
            return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

        sections = {
            k: v
            for k, v in table.items()
            if (isinstance(v, dict) or is_aot(v)) and self.rnd.random() < 0.7
        }
        inline = {k: v for k, v in table.items() if k not in sections}
        # a [table] header may be left out when the table has nothing but sub-tables
        if header and (inline or not sections or header[1] == "[" or self.rnd.random() < 0.5):
            self.header(path, header)
        for parts, v in self.flatten([], inline):
            self.write(self.rnd.choice(["", "", "  ", "\t"]))
            self.key_value(path, parts, v)
            self.end_line()
        for k, v in sections.items():
            names = self.dotted([p for p in (*path, k) if isinstance(p, str)])
            if isinstance(v, dict):
                self.table_body((*path, k), v, f"[{names}]")
            else:
                for i, element in enumerate(v):
                    self.table_body((*path, k, i), element, f"[[{names}]]")

    def header(self, path: Path, text: str) -> None:
        self.write(self.rnd.choice(["", self.eol]))
        for n in range(1, len(path) + 1):
            self.mark(path[:n])
        self.write(text)
        self.end_line()


def _write_toml(doc: dict[str, Any], rnd: random.Random) -> tuple[str, dict[Path, Any]]:
    w = _Writer(rnd)
    w.table_body((), doc)
    return "".join(w.out), w.expected


def _all_paths(value: Any, path: Path = ()) -> set[Path]:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    paths = set()
    for k, v in items:
        paths.add((*path, k))
        if isinstance(v, dict | list):
            paths |= _all_paths(v, (*path, k))
    return paths


_keys = st.one_of(st.from_regex(r"[a-z_][a-z0-9_-]{0,6}", fullmatch=True), st.text(max_size=5))
_scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=12))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_keys, inner, max_size=4),
        st.lists(st.dictionaries(_keys, inner, max_size=3), min_size=1, max_size=3),
    ),
    max_leaves=25,
)
_documents = st.dictionaries(_keys, _values, max_size=6)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_documents, st.randoms(use_true_random=False))
def test_every_key_of_a_generated_document_is_located(
    doc: dict[str, Any], rnd: random.Random
) -> None:
    src, expected = _write_toml(doc, rnd)
    assert tomllib.loads(src) == doc, src  # the serializer itself is right
    assert set(expected) == _all_paths(doc)
    assert key_positions(src) == expected, src


_FIRST_KEY = re.compile(r"""[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'""")


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_keys_of_tomlkit_documents_point_at_their_text(doc: dict[str, Any]) -> None:
    src = tomlkit.dumps(doc)
    assert tomllib.loads(src) == doc
    found = key_positions(src)
    lines = src.split("\n")
    for path in _all_paths(doc):
        line, col = found[path]
        text = lines[line - 1][col - 1 :]
        if col == 1 and text.startswith("["):  # a header: it names every key on the way
            node: Any = tomllib.loads(text)
            for name in (p for p in path if isinstance(p, str)):
                node = node[-1] if isinstance(node, list) else node
                node = node[name]
        elif isinstance(path[-1], str):  # a key, bare or quoted
            match = _FIRST_KEY.match(text)
            assert match, (path, text)
            assert tomllib.loads(match.group() + " = 0") == {path[-1]: 0}, (path, text)
        else:  # an array element
            assert text[:1] not in ("", " ", ",", "]", "#"), (path, text)
