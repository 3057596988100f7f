"""Find where keys and tables are in TOML source text.

`tomllib` parses a document but keeps no positions, so errors found by validating the
parsed data could not otherwise say where they are. `key_positions` re-reads the source
with a small, forgiving scanner and maps every key path -- the same path one would use to
reach the value in `tomllib.loads(source)` -- to the 1-based (line, column) of its key, of
its `[table]` / `[[array]]` header, or of an array element's first character.

The scanner understands exactly as much TOML as it takes to skip values: strings of the
four kinds, arrays, inline tables and comments. It never raises: on anything it does not
understand it skips to the next line (or, inside an unterminated multi-line string, to the
end) and keeps what it has found.
"""

from __future__ import annotations

import re
import string
from bisect import bisect_right
from functools import lru_cache

Path = tuple[str | int, ...]

_BLANKS = re.compile(r"[ \t\r]*")  # a CR belongs to a CRLF line ending
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}#\n]+")  # a number, boolean or date-time: up to a delimiter
_HEX = frozenset(string.hexdigits)
# \e and \xHH (see `escape`) are TOML 1.1: accepted all the same
_ESCAPES = {
    "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"', "\\": "\\",
}  # fmt: skip
_MAX_DEPTH = 100  # nesting of arrays / inline tables; deeper input is not a runbook


class _Bail(Exception):
    """The scanner met text it does not understand."""


class _Scanner:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.offsets: dict[Path, int] = {}  # path -> character offset into src
        self.explicit: set[Path] = set()  # paths defined by their own key or header
        self.aot_last: dict[Path, int] = {}  # [[array]] path -> index of its latest table
        self.table: Path = ()  # the table that key = value lines currently go to

    # -- small helpers ------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.src[j] if j < len(self.src) else ""

    def record(self, path: Path, offset: int, explicit: bool) -> None:
        # A table is often implied before it is defined (`[a.b]` implies `a`, `a.b = 1`
        # implies `a`): implied positions are kept only until the path's own key or
        # header shows up. Of duplicate definitions (invalid TOML) the first one wins.
        if not explicit:
            self.offsets.setdefault(path, offset)
        elif path not in self.explicit:
            self.explicit.add(path)
            self.offsets[path] = offset

    def skip_ws(self) -> None:
        self.i = _BLANKS.match(self.src, self.i).end()

    def skip_comment(self) -> None:
        if self.peek() == "#":
            self.i = self.line_end()

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments, as allowed between array elements."""
        while True:
            self.skip_ws()
            if self.peek() == "\n":
                self.i += 1
            elif self.peek() == "#":
                self.skip_comment()
            else:
                return

    def line_end(self) -> int:
        end = self.src.find("\n", self.i)
        return len(self.src) if end == -1 else end

    def skip_line(self) -> None:
        self.i = min(self.line_end() + 1, len(self.src))

    def end_of_line(self) -> None:
        self.skip_ws()
        self.skip_comment()
        if self.peek() == "\n":
            self.i += 1
        elif self.peek():
            raise _Bail

    # -- document structure -------------------------------------------------------------

    def run(self) -> dict[Path, int]:
        while self.i < len(self.src):
            start = self.i
            try:
                self.statement()
            except _Bail:
                # Normally drop the rest of the line. But when an unclosed array or inline
                # table ran into a later line and stumbled on its first token, that line is
                # likely a statement of its own (`b = [1, 2` then `c = 3`): scan it again.
                # Either way the scan moves forward, so it cannot loop forever.
                line_start = self.src.rfind("\n", 0, self.i) + 1
                if line_start > start and not self.src[line_start : self.i].strip(" \t"):
                    self.i = line_start
                else:
                    self.skip_line()
        return self.offsets

    def statement(self) -> None:
        self.skip_ws()
        if self.peek() == "[":
            self.header()
        elif self.peek() not in ("#", "\n", ""):
            self.key_value(self.table, 0)
        self.end_of_line()

    def resolve(self, path: Path) -> Path:
        """`steps` in a header means the latest `[[steps]]` table, if there is one."""
        last = self.aot_last.get(path)
        return path if last is None else (*path, last)

    def header(self) -> None:
        start = self.i
        aot = self.peek(1) == "["
        self.i += 2 if aot else 1
        names = [name for name, _ in self.key()]
        close = "]]" if aot else "]"
        if not self.src.startswith(close, self.i):
            raise _Bail
        self.i += len(close)
        path: Path = ()
        for name in names[:-1]:
            path = self.resolve((*path, name))
            self.record(path, start, explicit=False)
        path = (*path, names[-1])
        if aot:
            index = self.aot_last.get(path, -1) + 1
            self.aot_last[path] = index
            self.record(path, start, explicit=False)  # the array: at its first [[header]]
            path = (*path, index)
        self.record(path, start, explicit=True)
        self.table = path

    def key(self) -> list[tuple[str, int]]:
        """A possibly dotted key: its parts, unquoted, with their offsets."""
        parts = []
        while True:
            self.skip_ws()
            start, c = self.i, self.peek()
            if c == '"':
                name = self.basic_string()
            elif c == "'":
                name = self.literal_string()
            elif bare := _BARE_KEY.match(self.src, self.i):
                name = bare.group()
                self.i = bare.end()
            else:
                raise _Bail
            parts.append((name, start))
            self.skip_ws()
            if self.peek() != ".":
                return parts
            self.i += 1

    def key_value(self, table: Path, depth: int) -> None:
        parts = self.key()
        start = parts[0][1]  # `a.b.c = 1`: every level is placed at the `a`
        path = table
        for n, (name, _) in enumerate(parts, 1):
            path = (*path, name)
            self.record(path, start, explicit=n == len(parts))
        self.skip_ws()
        if self.peek() != "=":
            raise _Bail
        self.i += 1
        self.skip_ws()
        self.value(path, depth)

    # -- values -------------------------------------------------------------------------

    def value(self, path: Path, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Bail
        c = self.peek()
        if c in ('"', "'"):
            if self.src.startswith(c * 3, self.i):
                self.multiline_string(c)
            elif c == '"':
                self.basic_string()
            else:
                self.literal_string()
        elif c == "[":
            self.array(path, depth)
        elif c == "{":
            self.inline_table(path, depth)
        elif scalar := _SCALAR.match(self.src, self.i):
            self.i = scalar.end()
        else:
            raise _Bail

    def array(self, path: Path, depth: int) -> None:
        self.i += 1  # [
        index = 0
        while True:
            self.skip_blank()
            if self.peek() == "]":  # empty array, or a trailing comma
                self.i += 1
                return
            element = (*path, index)
            self.record(element, self.i, explicit=True)
            self.value(element, depth + 1)
            self.skip_blank()
            if self.peek() == ",":
                self.i += 1
                index += 1
            elif self.peek() == "]":
                self.i += 1
                return
            else:
                raise _Bail

    def inline_table(self, path: Path, depth: int) -> None:
        # TOML 1.0 wants inline tables on one line; newlines, comments and a trailing
        # comma (TOML 1.1) are accepted all the same.
        self.i += 1  # {
        while True:
            self.skip_blank()
            if self.peek() == "}":
                self.i += 1
                return
            self.key_value(path, depth + 1)
            self.skip_blank()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() == "}":
                self.i += 1
                return
            else:
                raise _Bail

    def basic_string(self) -> str:
        """A one-line "string"; returns its decoded text (needed for quoted keys)."""
        end = self.src.find('"', self.i + 1, self.line_end())
        if end != -1 and "\\" not in (text := self.src[self.i + 1 : end]):  # no escapes
            self.i = end + 1
            return text
        self.i += 1
        out = []
        while True:
            c = self.peek()
            if c in ("", "\n"):
                raise _Bail
            self.i += 1
            if c == '"':
                return "".join(out)
            out.append(self.escape() if c == "\\" else c)

    def escape(self) -> str:
        c = self.peek()
        self.i += 1
        if c in _ESCAPES:
            return _ESCAPES[c]
        width = {"x": 2, "u": 4, "U": 8}.get(c)
        digits = self.src[self.i : self.i + width] if width else ""
        # check the digits by hand: int() would also take "+", "_" and spaces
        if not width or len(digits) != width or not set(digits) <= _HEX:
            raise _Bail
        self.i += width
        code = int(digits, 16)
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            raise _Bail
        return chr(code)

    def literal_string(self) -> str:
        """A one-line 'string': no escapes, it ends at the next quote."""
        end = self.src.find("'", self.i + 1, self.line_end())
        if end == -1:
            raise _Bail
        text = self.src[self.i + 1 : end]
        self.i = end + 1
        return text

    def multiline_string(self, quote: str) -> None:
        self.i += 3
        while self.i < len(self.src):
            if quote == '"' and self.peek() == "\\":
                self.i += 2  # an escaped character, possibly a quote or a newline
            elif self.src.startswith(quote * 3, self.i):
                # One or two quotes right before the closing three belong to the text:
                # in `"""say "hi""""` the string ends with `hi"`.
                self.i += 3
                for _ in range(2):
                    if self.peek() == quote:
                        self.i += 1
                return
            else:
                self.i += 1
        raise _Bail  # unterminated: the rest of the text is inside the string


def key_positions(source: str) -> dict[Path, tuple[int, int]]:
    """1-based (line, column) of every key and table in a TOML document.

    Columns count characters, a tab being one. Never raises: for invalid TOML it returns
    whatever it could find.
    """
    offsets = _Scanner(source).run()
    line_starts = [0]
    newline = source.find("\n")
    while newline != -1:
        line_starts.append(newline + 1)
        newline = source.find("\n", newline + 1)
    positions = {}
    for path, offset in offsets.items():
        line = bisect_right(line_starts, offset)
        positions[path] = (line, offset - line_starts[line - 1] + 1)
    return positions


@lru_cache(maxsize=8)
def _cached_positions(source: str) -> dict[Path, tuple[int, int]]:
    return key_positions(source)  # callers must not mutate it: only `locate` reads it


def locate(source: str, path: Path) -> tuple[int, int]:
    """Position of `path`, or of its nearest located ancestor; (1, 1) when nothing matches.

    Never raises.
    """
    try:
        positions = _cached_positions(source)
        for length in range(len(path), 0, -1):
            found = positions.get(tuple(path[:length]))
            if found is not None:
                return found
    except Exception:  # a report's position must never turn into a crash
        pass
    return (1, 1)
