"""Help: the keys of the screen you came from, and what they do."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

GENERAL = [
    # moving, as in k9s and lazygit
    ("j / k", "down / up in a list (as ↓ / ↑)"),
    ("g / G", "first / last in a list"),
    ("esc", "back one level; from a finished run, Home (h: History)"),
    ("ctrl+p", "command palette: every action by name"),
    ("ctrl+q", "quit (asks first while a run is going)"),
    ("? / f1", "this help"),
]
GENERAL_ACTIONS = {"request_quit", "help", "command_palette"}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "close")]

    def __init__(self, screen: Screen, title: str, notes: str = ""):
        super().__init__()
        self.for_screen = screen
        self.title_text = title
        self.notes = notes

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        seen = set(GENERAL_ACTIONS)
        for active in self.for_screen.active_bindings.values():
            binding = active.binding
            # the screen's own keys; focus moves and copy/paste are everywhere alike
            if not binding.show or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            shown = binding.key_display or self.app.get_key_display(binding)
            style = "" if active.enabled else "dim"
            table.add_row(Text(shown), Text(binding.description, style=style))
        for key, text in GENERAL:
            table.add_row(key, text)
        with Vertical(classes="dialog", id="help"):
            yield Label(f"Keys: {self.title_text}", classes="dialog-title")
            with VerticalScroll():
                yield Static(table)
                if self.notes:
                    yield Static(Text("\n" + self.notes, style="dim"))
            yield Static(Text("esc: close", style="dim"))
