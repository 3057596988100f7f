"""SQL text as pg_dump and pg_dumpall write it, cut into statements of tokens.

drdeck reads that text to learn which roles and tablespaces a dump names and
to take the database's own statements out of it; it never needs a parser of
all SQL. The lexer knows what can hide a `;` or a keyword: string literals
('...', E'...', U&'...'), dollar quotes ($tag$...$tag$), quoted identifiers,
comments (nested /* */ too) and psql's backslash commands, which end at the
end of their line. A word inside parentheses (`interval day to second` in a
signature) is never taken for a clause: callers look at depth 0 only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+")
_VARIABLE = re.compile(r""":(?:"[A-Za-z0-9_]+"|'[A-Za-z0-9_]+'|[A-Za-z0-9_]+)""")
_OPERATOR = re.compile(r"[+\-*/<>=~!@#%^&|`?]+")


class SqlSyntaxError(ValueError):
    """The text ends inside a literal, a quoted name or a comment."""


@dataclass(frozen=True)
class Token:
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
        if len(self.tokens) < len(words):
            return False
        return all(t.is_word(w) for t, w in zip(self.tokens, words, strict=False))

    def top(self) -> list[Token]:
        """The tokens outside every parenthesis: where clauses are."""
        return [t for t in self.tokens if t.depth == 0]


def statements(source: str) -> list[Statement]:
    """Every statement of `source`, without its `;`; a psql command is one on its own."""
    found: list[Statement] = []
    current: list[Token] = []
    for token in _tokens(source):
        if token.kind == "meta":
            if current:
                found.append(Statement(tuple(current), source))
                current = []
            found.append(Statement((token,), source))
        elif token.kind == "punct" and token.text == ";" and token.depth == 0:
            if current:
                found.append(Statement(tuple(current), source))
            current = []
        else:
            current.append(token)
    if current:
        found.append(Statement(tuple(current), source))
    return found


def quote_name(name: str) -> str:
    """A name in double quotes: right for every name, reserved words and capitals too."""
    return '"' + name.replace('"', '""') + '"'


def _tokens(source: str) -> Iterator[Token]:
    i, depth, size = 0, 0, len(source)
    line_start = True  # only whitespace since the last newline or statement end
    while i < size:
        c = source[i]
        if c in " \t\r\n\f":
            if c == "\n":
                line_start = True
            i += 1
            continue
        start = i
        if c == "-" and source.startswith("--", i):
            end = source.find("\n", i)
            i = size if end < 0 else end
            continue
        if c == "/" and source.startswith("/*", i):
            i = _skip_block_comment(source, i)
            continue
        if c == "\\" and line_start:
            end = source.find("\n", i)
            end = size if end < 0 else end
            yield Token("meta", source[i:end].rstrip(), source[i:end].rstrip(), i, end, depth)
            i = end
            continue
        line_start = False
        if c == "'" or (c in "eEnN" and source.startswith("'", i + 1)) or \
                (c in "uU" and source.startswith("&'", i + 1)):
            quote = source.index("'", i)
            backslashes = c in "eE"
            end, value = _read_string(source, quote, backslashes)
            yield Token("string", source[start:end], value, start, end, depth)
            i = end
        elif c == '"' or (c in "uU" and source.startswith('&"', i + 1)):
            quote = source.index('"', i)
            end, value = _read_quoted(source, quote, '"')
            yield Token("name", source[start:end], value, start, end, depth)
            i = end
        elif c == "$" and (tag := _DOLLAR_TAG.match(source, i)):
            close = source.find(tag[0], tag.end())
            if close < 0:
                raise SqlSyntaxError(f"a dollar-quoted string opened at offset {i} never ends")
            end = close + len(tag[0])
            yield Token("string", source[start:end], source[tag.end():close], start, end, depth)
            i = end
        elif c == ":" and (var := _VARIABLE.match(source, i)):
            yield Token("variable", var[0], var[0][1:].strip("\"'"), start, var.end(), depth)
            i = var.end()
        elif word := _WORD.match(source, i):
            yield Token("word", word[0], word[0].lower(), start, word.end(), depth)
            i = word.end()
        elif number := _NUMBER.match(source, i):
            yield Token("number", number[0], number[0], start, number.end(), depth)
            i = number.end()
        elif c in "(),;[].:":
            if c == "(":
                yield Token("punct", c, c, start, i + 1, depth)
                depth += 1
            elif c == ")":
                depth = max(0, depth - 1)
                yield Token("punct", c, c, start, i + 1, depth)
            else:
                yield Token("punct", c, c, start, i + 1, depth)
            if c == ";" and depth == 0:
                line_start = True
            i += 1
        elif operator := _OPERATOR.match(source, i):
            yield Token("op", operator[0], operator[0], start, operator.end(), depth)
            i = operator.end()
        else:
            yield Token("punct", c, c, start, i + 1, depth)
            i += 1


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


def _read_string(source: str, quote: int, backslashes: bool) -> tuple[int, str]:
    """(end, content) of the literal whose opening quote is at `quote`."""
    parts, i = [], quote + 1
    while i < len(source):
        c = source[i]
        if backslashes and c == "\\" and i + 1 < len(source):
            parts.append(source[i:i + 2])
            i += 2
        elif c == "'":
            if source.startswith("''", i):
                parts.append("'")
                i += 2
            else:
                return i + 1, "".join(parts)
        else:
            parts.append(c)
            i += 1
    raise SqlSyntaxError(f"a string literal opened at offset {quote} never ends")


def _read_quoted(source: str, quote: int, mark: str) -> tuple[int, str]:
    parts, i = [], quote + 1
    while i < len(source):
        if source[i] == mark:
            if source.startswith(mark * 2, i):
                parts.append(mark)
                i += 2
                continue
            return i + 1, "".join(parts)
        parts.append(source[i])
        i += 1
    raise SqlSyntaxError(f"a quoted name opened at offset {quote} never ends")
