"""How drdeck starts Python for a module of its own (`python -m tui`, a WAL digester).

The same interpreter, with -P: `-m` would put the current directory first on the path,
and drdeck may run as root from a directory another account can write to, which must
never choose what runs; and -s: no user's site-packages either."""

from __future__ import annotations

import sys


def python_module(module: str) -> list[str]:
    return [sys.executable, "-P", "-s", "-m", module]
