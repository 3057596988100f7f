"""Where the journal lives, read from what the operator wrote.

`[journal] url` in drdeck.toml and `$DRDECK_JOURNAL` go through this one parser,
so the config check, the journal itself and the read-only views (status, Home)
cannot disagree about which file or database is meant. It returns either a
PostgreSQL connection string (str) or the SQLite file (Path).

Accepted:

- `postgresql://...` and `postgres://...`: a PostgreSQL URL, passed to libpq as written;
- `KEYWORD=VALUE ...`: a libpq connection string (`host=db dbname=drdeck`);
- `sqlite:///ABSOLUTE/PATH`: the SQLite file at /ABSOLUTE/PATH, as in a file:// URL
  (SQLAlchemy's four-slash `sqlite:////ABSOLUTE/PATH` names the same file); the path
  is taken as written: no `~`, no %-decoding;
- a plain path: `/ABSOLUTE/PATH`, `~/PATH` (~ expanded), or a relative path, taken from
  `base_dir`: the config file's directory for `[journal] url`, the working directory
  for `$DRDECK_JOURNAL`.

Anything else is refused with JournalUrlInvalid: another scheme (`mysql://`,
`file:`, `http://`), `sqlite://HOST/...` or `sqlite://relative`, `sqlite:` with
fewer slashes, `?options`, `~` after `sqlite:///`, a path ending in `/`. Writing
the journal somewhere the operator did not mean (`./sqlite:/var/lib/...`) would
show an empty history from every other directory, which is worse than refusing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tui.errors import InvalidInput

JOURNAL_ENV = "DRDECK_JOURNAL"
RIGHT_FORMS = "use postgresql://... or sqlite:///ABSOLUTE/PATH"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
SQLITE_PREFIX = "sqlite://"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# a libpq connection string starts with a keyword and '=' ("host=...", "service=...")
_CONNINFO = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=")


class JournalUrlInvalid(InvalidInput):
    """A journal URL that names neither a PostgreSQL database nor a SQLite file."""


def parse_journal_url(url: str, base_dir: Path, subject: str = "journal url") -> str | Path:
    """A PostgreSQL connection string (str) or the SQLite file (absolute Path).

    `subject` names the value in the error (`[journal] url`, `$DRDECK_JOURNAL`).
    Raises JournalUrlInvalid; its message never shows a password.
    """
    text = url.strip()
    try:
        return _parse(text, base_dir)
    except _Refused as refused:
        from tui.redact import mask_credentials

        raise JournalUrlInvalid(f"{subject} {mask_credentials(text)!r} {refused}") from None


def journal_location(config: Any = None) -> str | Path:
    """The journal drdeck uses: $DRDECK_JOURNAL, else [journal] url, else the state directory's.

    A malformed $DRDECK_JOURNAL raises JournalUrlInvalid (exit 2): it has no file
    position, so the message names the variable.
    """
    from_env = os.environ.get(JOURNAL_ENV, "")
    if from_env.strip():  # set but blank counts as unset, as for $DRDECK_CONFIG
        return parse_journal_url(from_env, Path.cwd(), f"${JOURNAL_ENV}")
    configured = getattr(config, "journal_url", None)
    if configured:
        # the loader has checked it and made a relative path absolute already
        return parse_journal_url(configured, Path.cwd(), "[journal] url")
    from tui.journal.store import default_path

    return default_path()


class _Refused(Exception):
    """Why the text is refused, phrased to follow the value it refuses."""


def _parse(text: str, base_dir: Path) -> str | Path:
    if not text:
        raise _Refused("is empty")
    if text.startswith(POSTGRES_PREFIXES):
        return text
    if text.startswith(SQLITE_PREFIX):
        return _sqlite_url(text[len(SQLITE_PREFIX):])
    scheme = _SCHEME.match(text)
    if scheme is not None:
        raise _Refused(_wrong_scheme(scheme.group(1)))
    if _CONNINFO.match(text):
        return text
    return _plain_path(text, base_dir)


def _wrong_scheme(scheme: str) -> str:
    message = f"is not a PostgreSQL URL or a SQLite path; {RIGHT_FORMS}"
    if scheme.lower() in ("postgresql", "postgres", "sqlite") and scheme != scheme.lower():
        return f"{message} (the scheme in lower case)"
    if scheme == "sqlite":  # sqlite: or sqlite:/ without the two slashes of a URL
        return "is not a SQLite URL: write sqlite:///ABSOLUTE/PATH (three slashes)"
    return message


def _sqlite_url(rest: str) -> Path:
    """What follows `sqlite://`: the empty host, then the absolute path."""
    if not rest.startswith("/"):
        raise _Refused("names a host or a relative path after sqlite://; a SQLite journal is "
                       "a local file: write sqlite:///ABSOLUTE/PATH (three slashes), or a "
                       "plain path")
    path = "/" + rest.lstrip("/")  # sqlite:////var/... (SQLAlchemy's form) is the same file
    if path == "/":
        raise _Refused("names no file: write sqlite:///ABSOLUTE/PATH")
    if path.startswith("/~"):
        raise _Refused("has ~ after sqlite:///, which is not expanded there: write the path "
                       "without sqlite:// (~/journal.sqlite) or the absolute path")
    if "?" in path or "#" in path:
        raise _Refused("takes no ?options or #fragment: write sqlite:///ABSOLUTE/PATH")
    return _file(Path(path), SQLITE_PREFIX + rest)


def _plain_path(text: str, base_dir: Path) -> Path:
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~user for a user that does not exist, or no home directory
        raise _Refused("starts with a ~ that names no home directory: write the absolute "
                       "path") from None
    return _file(path if path.is_absolute() else base_dir / path, text)


def _file(path: Path, written: str) -> Path:
    # Path() drops a trailing '/': catch it here, a directory is never the journal file
    if written.endswith("/"):
        raise _Refused("names a directory: name the journal file in it, like "
                       f"{written}journal.sqlite")
    return path
