"""Where drdeck keeps its state (run work directories, later the journal)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """`$DRDECK_STATE_DIR`, else the platform's user state directory."""
    override = os.environ.get("DRDECK_STATE_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_state_dir

    return Path(user_state_dir("drdeck", appauthor=False))


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by its owner only: it may hold backup data."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path
