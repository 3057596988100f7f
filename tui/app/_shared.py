"""Small pieces of presentation used by several screens."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Input

STATUS_STYLES = {
    "succeeded": ("✓ SUCCEEDED", "bold green"),
    "failed": ("✗ FAILED", "bold red"),
    "aborted": ("■ ABORTED", "bold yellow"),
}


def status_text(status: str) -> Text:
    label, style = STATUS_STYLES.get(status, (status.upper(), "bold"))
    return Text(label, style=style)


class DeckInput(Input):
    """An Input that follows the app's cursor-blink setting (off in snapshot tests)."""

    def on_mount(self) -> None:
        self.cursor_blink = getattr(self.app, "cursor_blink", True)
