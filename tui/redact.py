"""Keep secrets off the screen, out of logs, the journal and exports.

One Redactor per run knows the secret values (parameters of type secret,
passwords found in DSNs) and replaces them with ***. It also masks credentials
that look like credentials even when nobody declared them: the password in a
URL (`scheme://user:pw@host`) and `password=...` in a key/value connection
string, so a DSN echoed by a tool does not leak.

It also shows terminal control characters as escapes (escape_controls): text
from a repository, a server or a command must not move a reader's cursor.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# C0 controls but tab and newline, DEL, and C1: ESC and CSI (U+009B) begin escape sequences
# (erase a line, move the cursor, set the window title), and CR writes over a line
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\r": "\\r"}


def escape_controls(text: str) -> str:
    """`text` with its control characters written out (ESC as \\x1b, CR as \\r): a
    `database` of "\\x1b[2K\\r✓ succeeded" shows as those characters, and cannot erase a
    line to print a success that did not happen. Tabs and newlines stay."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: _NAMED.get(m[0], f"\\x{ord(m[0]):02x}"), text)


# json.dumps escapes C0 controls but writes DEL and C1 as they are (with ensure_ascii=False);
# in JSON they can only stand inside strings, where \u escapes mean the same characters
_RAW_IN_JSON = re.compile("[\x7f-\x9f]")


def json_text(value: object, **options: Any) -> str:
    """json.dumps(value, ensure_ascii=False, ...) with no raw control character in it."""
    import json

    text = json.dumps(value, ensure_ascii=False, **options)
    if _RAW_IN_JSON.search(text):
        text = _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
    return text


_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/?#@\s]*:)([^@\s/]+)(@)")
_KEYVALUE_PASSWORD = re.compile(
    r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE
)


def mask_credentials(text: str) -> str:
    """Mask credentials that have a recognisable shape, whoever wrote them."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(rf"\g<1>{MASK}\g<3>", text)
    if "assword" in text or "ASSWORD" in text:
        text = _KEYVALUE_PASSWORD.sub(rf"\g<1>{MASK}", text)
    return text


def dsn_password(dsn: str) -> str | None:
    """The password inside a PostgreSQL connection string (URL or key/value form)."""
    match = _URL_CREDENTIALS.search(dsn)
    if match:
        from urllib.parse import unquote

        return unquote(match.group(2))
    match = _KEYVALUE_PASSWORD.search(dsn)
    if match:
        value = match.group(2)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        return value
    return None


# A very short secret would also match inside ordinary words ("x" in "exited")
# and garble every line; those are masked where they stand as a whole token.
_SHORT_SECRET = 6


def _secret_pattern(secret: str) -> str:
    escaped = re.escape(secret)
    if len(secret) < _SHORT_SECRET:
        return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"
    return escaped


class Redactor:
    """Replaces every known secret value, and credential-shaped text, with ***."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for value in secrets:
            self.add(value)

    def add(self, value: str | None) -> None:
        if value is None or not str(value).strip():
            return
        value = str(value)
        variants = {value}
        # a secret may also appear URL-encoded (inside a DSN) or shell-quoted
        from urllib.parse import quote

        variants.add(quote(value, safe=""))
        new = variants - self._secrets
        if not new:
            return
        self._secrets |= new
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(_secret_pattern(s) for s in ordered))

    def add_dsn(self, dsn: str | None) -> None:
        if dsn:
            self.add(dsn_password(dsn))

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return escape_controls(mask_credentials(text))
