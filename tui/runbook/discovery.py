"""Where runbooks come from: ./runbooks/, configured directories, and the shipped set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tui.errors import InvalidInput, RunbookInvalid
from tui.runbook.loader import load_runbook
from tui.runbook.model import Runbook

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped_runbooks"


def search_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Directories searched for runbooks by name, first match wins."""
    dirs = [Path.cwd() / "runbooks", *(extra or []), SHIPPED_DIR]
    seen, result = set(), []
    for directory in dirs:
        key = directory.resolve() if directory.exists() else directory
        if key not in seen:
            seen.add(key)
            result.append(directory)
    return result


def find_runbook(ref: str, extra: list[Path] | None = None) -> Path:
    """A path, or a runbook name looked up in the search directories."""
    candidate = Path(ref).expanduser()
    if candidate.suffix == ".toml" or "/" in ref or candidate.exists():
        if not candidate.exists():
            raise InvalidInput(f"{ref}: no such runbook file")
        return candidate
    for directory in search_dirs(extra):
        path = directory / f"{ref}.toml"
        if path.is_file():
            return path
    names = sorted({p.stem for d in search_dirs(extra) if d.is_dir() for p in d.glob("*.toml")})
    raise InvalidInput(
        f"no runbook named {ref!r}; available: {', '.join(names) or 'none'}"
        f" (searched {', '.join(str(d) for d in search_dirs(extra))})"
    )


@dataclass(frozen=True)
class Found:
    path: Path
    runbook: Runbook | None
    problems: RunbookInvalid | None = None


def discover(extra: list[Path] | None = None) -> list[Found]:
    """Every runbook in the search directories; one name shadows the same name further down."""
    found: dict[str, Found] = {}
    for directory in search_dirs(extra):
        for item in load_directory(directory):
            found.setdefault(item.path.stem, item)
    return list(found.values())


def load_directory(directory: Path) -> list[Found]:
    """Every `*.toml` in one directory, valid or not, by file name."""
    if not directory.is_dir():
        return []
    result = []
    for path in sorted(directory.glob("*.toml")):
        try:
            result.append(Found(path, load_runbook(path)))
        except RunbookInvalid as exc:
            result.append(Found(path, None, exc))
    return result
