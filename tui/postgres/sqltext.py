"""SQL text as pg_dump and pg_dumpall write it, cut into statements of tokens.

drdeck reads that text to learn which roles and tablespaces a dump names and
to take the database's own statements out of it; it never needs a parser of
all SQL. The lexer knows what can hide a `;` or a keyword: string literals
('...', E'...', U&'...'), dollar quotes ($tag$...$tag$), quoted identifiers,
comments (nested /* */ too) and psql's backslash commands, which end at the
end of their line. A word inside parentheses (`interval day to second` in a
signature) is never taken for a clause: callers look at depth 0 only.

A schema can be tens of megabytes: statements come one at a time, and a
caller that needs only some of them (`keep`, asked with a statement's first
two words) gets no tokens made for the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f]+)
  | (?P<newline>\n)
  | (?P<comment>--[^\n]*)
  | (?P<block>/\*)
  | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*')
  | (?P<string>(?:[nN]|[uU]&)?'(?:[^']|'')*')
  | (?P<name>(?:[uU]&)?"(?:[^"]|"")*")
  | (?P<dollar>\$(?P<tag>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$)
  | (?P<variable>:(?:"[A-Za-z0-9_]+"|'[A-Za-z0-9_]+'|[A-Za-z0-9_]+))
  | (?P<word>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)
  | (?P<punct>[(),;\[\].:])
  | (?P<op>[+\-*/<>=~!@\#%^&|`?]+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_UNFINISHED = {"estring": "a string literal", "string": "a string literal",
               "name": "a quoted name"}


class SqlSyntaxError(ValueError):
    """The text ends inside a literal, a quoted name or a comment."""


class Token(NamedTuple):
    kind: str  # word | name | string | number | punct | op | variable | meta
    text: str  # as written
    value: str  # word: lower-cased; name: unquoted; string: its content; else the text
    start: int
    end: int
    depth: int  # parentheses around it

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words


@dataclass(frozen=True)
class Statement:
    tokens: tuple[Token, ...]
    source: str  # the whole text the offsets point into

    @property
    def text(self) -> str:
        if not self.tokens:
            return ""
        return self.source[self.tokens[0].start:self.tokens[-1].end]

    @property
    def is_meta(self) -> bool:
        return len(self.tokens) == 1 and self.tokens[0].kind == "meta"

    def starts(self, *words: str) -> bool:
        """Whether the statement begins with these keywords (case-insensitive)."""
        tokens = self.tokens
        if len(tokens) < len(words):
            return False
        for token, word in zip(tokens, words, strict=False):  # a hot path: no generator
            if token.kind != "word" or token.value != word:
                return False
        return True

    def top(self) -> list[Token]:
        """The tokens outside every parenthesis: where clauses are."""
        return [t for t in self.tokens if t.depth == 0]


Keep = Callable[[str, str], bool]  # (first word, second word), lower-cased


def statements(source: str, keep: Keep | None = None) -> Iterator[Statement]:
    """Every statement of `source`, without its `;`; a psql command is one on its own.

    With `keep`, only the statements it accepts by their first two words (and psql
    commands); the others are read to their end without making their tokens.
    """
    current: list[Token] = []
    words: list[str] = []  # the first two words, while deciding

    def kept() -> bool:
        return keep is None or keep(*[*words, "", ""][:2])

    lexer = _tokens(source)
    token = next(lexer, None)
    while token is not None:
        ends = token.kind == "meta" or (token.kind == "punct" and token.text == ";"
                                        and token.depth == 0)
        if ends:
            if current and kept():
                yield Statement(tuple(current), source)
            current, words = [], []
            if token.kind == "meta":
                yield Statement((token,), source)
            token = next(lexer, None)
            continue
        current.append(token)
        if keep is not None and len(words) < 2:
            words.append(token.value if token.kind == "word" else "")
            if len(words) == 2 and not kept():
                current = []
                token = _send(lexer, True)  # to the statement's end, making no tokens
                continue
        token = next(lexer, None)
    if current and kept():
        yield Statement(tuple(current), source)


def _send(lexer: Any, value: Any) -> Token | None:
    try:
        return lexer.send(value)
    except StopIteration:
        return None


def first_statement(text: str) -> Statement:
    """The one statement of a short text (a statement drdeck built or already read)."""
    return next(statements(text))


def quote_name(name: str) -> str:
    """A name in double quotes: right for every name, reserved words and capitals too."""
    return '"' + name.replace('"', '""') + '"'


# in a statement being skipped, what can matter: quotes, dollars, parentheses, its end,
# comments, and a newline (a psql command may start the next line)
_PLAIN = re.compile(r"[^'\"$;()\n/\-]+")


def _tokens(source: str) -> Any:
    """The tokens of `source`; sent True, it skips to the end of the current statement and
    goes on from the `;` (or the psql command) that ends it."""
    i, depth, size = 0, 0, len(source)
    line_start = True  # only whitespace since the last newline or statement end
    match = _TOKEN.match
    while i < size:
        if line_start and source[i] == "\\":
            end = source.find("\n", i)
            end = size if end < 0 else end
            text = source[i:end].rstrip()
            skip = yield Token("meta", text, text, i, end, depth)
            i = end
            if skip:
                i, depth, line_start = _skip_statement(source, i, depth)
            continue
        found = match(source, i)
        kind = found.lastgroup
        start, end = found.start(), found.end()
        if kind in ("space", "comment"):
            i = end
            continue
        if kind == "newline":
            line_start, i = True, end
            continue
        line_start = False
        if kind == "block":
            i = _skip_block_comment(source, start)
            continue
        if kind == "other" and source[start] in "'\"":
            what = "a string literal" if source[start] == "'" else "a quoted name"
            raise SqlSyntaxError(f"{what} opened at offset {start} never ends")
        token = None
        if kind in ("estring", "string"):
            body = source[source.index("'", start) + 1:end - 1]
            token = Token("string", source[start:end], body.replace("''", "'"), start, end,
                          depth)
        elif kind == "name":
            body = source[source.index('"', start) + 1:end - 1]
            token = Token("name", source[start:end], body.replace('""', '"'), start, end, depth)
        elif kind in ("dollar", "tag"):
            tag = found.group("dollar")
            close = source.find(tag, end)
            if close < 0:
                raise SqlSyntaxError(f"a dollar-quoted string opened at offset {start} never "
                                     "ends")
            end = close + len(tag)
            token = Token("string", source[start:end], source[found.end():close], start, end,
                          depth)
        elif kind == "variable":
            text = source[start:end]
            token = Token("variable", text, text[1:].strip("\"'"), start, end, depth)
        elif kind == "word":
            text = source[start:end]
            token = Token("word", text, text.lower(), start, end, depth)
        elif kind == "punct":
            c = source[start]
            if c == "(":
                token = Token("punct", c, c, start, end, depth)
                depth += 1
            elif c == ")":
                depth = max(0, depth - 1)
                token = Token("punct", c, c, start, end, depth)
            else:
                token = Token("punct", c, c, start, end, depth)
                if c == ";" and depth == 0:
                    line_start = True
        else:  # number, op, other
            text = source[start:end]
            token = Token("op" if kind == "op" else "number" if kind == "number" else "punct",
                          text, text, start, end, depth)
        i = end
        skip = yield token
        if skip:
            i, depth, line_start = _skip_statement(source, i, depth)


def _skip_statement(source: str, i: int, depth: int) -> tuple[int, int, bool]:
    """From `i` inside a statement to its end: the position of its `;` at depth 0, or of the
    psql command that starts a line; (position, depth, at a line start)."""
    size = len(source)
    while i < size:
        plain = _PLAIN.match(source, i)
        if plain:
            i = plain.end()
            if i >= size:
                break
        c = source[i]
        if c == ";" and depth == 0:
            return i, depth, False
        if c == "(":
            depth += 1
            i += 1
        elif c == ")":
            depth = max(0, depth - 1)
            i += 1
        elif c == "\n":
            j = i + 1
            while j < size and source[j] in " \t\r\f":
                j += 1
            if j < size and source[j] == "\\":
                return j, depth, True
            i = j
        elif c in "'\"$-/" or c == ";":
            found = _TOKEN.match(source, i)
            kind = found.lastgroup
            if c == "'" and i > 0 and source[i - 1] in "eE" and (
                    i < 2 or not (source[i - 2].isalnum() or source[i - 2] in "_$")):
                found = _TOKEN.match(source, i - 1)  # E'...': backslashes escape
                kind = found.lastgroup
            if kind == "other" and c in "'\"":
                what = "a string literal" if c == "'" else "a quoted name"
                raise SqlSyntaxError(f"{what} opened at offset {i} never ends")
            if kind == "block":
                i = _skip_block_comment(source, i)
            elif kind in ("dollar", "tag"):
                tag = found.group("dollar")
                close = source.find(tag, found.end())
                if close < 0:
                    raise SqlSyntaxError(f"a dollar-quoted string opened at offset {i} never "
                                         "ends")
                i = close + len(tag)
            else:
                i = max(found.end(), i + 1)
        else:
            i += 1
    return size, depth, False


def _skip_block_comment(source: str, i: int) -> int:
    nesting = 0
    while i < len(source):
        if source.startswith("/*", i):
            nesting += 1
            i += 2
        elif source.startswith("*/", i):
            nesting -= 1
            i += 2
            if nesting == 0:
                return i
        else:
            i += 1
    raise SqlSyntaxError("a /* comment */ never ends")
