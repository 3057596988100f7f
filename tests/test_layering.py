"""The layers point one way: the screens sit on the engine and the journal, never on the
command line or the headless printer, and only the app knows Textual."""

from __future__ import annotations

import ast
from pathlib import Path

TUI = Path(__file__).parent.parent / "tui"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_screen_imports_a_subcommand_or_the_headless_printer() -> None:
    offenders = {
        str(path.relative_to(TUI)): sorted(name for name in imports_of(path)
                                           if name.startswith(("tui.commands", "tui.headless",
                                                               "tui.cli")))
        for path in (TUI / "app").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_app_imports_textual() -> None:
    offenders = [str(path.relative_to(TUI)) for path in TUI.rglob("*.py")
                 if "app" not in path.relative_to(TUI).parts[:1]
                 and any(n == "textual" or n.startswith("textual.") for n in imports_of(path))]
    assert offenders == []
