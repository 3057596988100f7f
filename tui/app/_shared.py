"""Small pieces of presentation used by several screens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input
from textual.widgets._footer import FooterKey

STATUS_STYLES = {
    "succeeded": ("✓ SUCCEEDED", "bold green"),
    "failed": ("✗ FAILED", "bold red"),
    "aborted": ("■ ABORTED", "bold yellow"),
}


def status_text(status: str) -> Text:
    label, style = STATUS_STYLES.get(status, (status.upper(), "bold"))
    return Text(label, style=style)


class DeckInput(Input):
    """An Input that follows the app's cursor-blink setting (off in snapshot tests), and
    shows the start of a value longer than itself whenever it is not being typed in: a
    time stamp reads from its year, a path from its root."""

    def on_mount(self) -> None:
        self.cursor_blink = getattr(self.app, "cursor_blink", True)
        self.call_after_refresh(self._start_at_start)

    def on_blur(self) -> None:
        self.scroll_to(x=0, animate=False, immediate=True)  # (has_focus turns False after)

    def on_focus(self) -> None:
        # back to where the cursor is (the form may keep it at the end without selecting)
        self.call_after_refresh(self._show_cursor)

    def on_input_changed(self, event: Input.Changed) -> None:
        # a value set from outside (a default, the inventory's pick) leaves the cursor and
        # the view at its end
        if event.input is self and not self.has_focus:
            self.call_after_refresh(self._start_at_start)

    def _start_at_start(self) -> None:
        """A value given (not typed) that does not fit opens at its start, the cursor
        there too, even in the field that has the focus: `end` goes to its end."""
        if self.value and cell_len(self.value) >= self.content_size.width > 0:
            self.cursor_position = 0
        if not self.has_focus:
            self.scroll_to(x=0, animate=False, immediate=True)

    def _show_cursor(self) -> None:
        if self.has_focus:
            column = self.cursor_screen_offset.x - self.content_region.x + round(self.scroll_x)
            self.scroll_to_region(Region(column, 0, 1, 1), force=True, animate=False,
                                  immediate=True)


class DeckTable(DataTable):
    """A DataTable that moves as k9s and lazygit do: j/k down and up, g/G first and last."""

    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
        Binding("g", "scroll_top", "first", show=False),
        Binding("G", "scroll_bottom", "last", show=False),
    ]

    def _update_dimensions(self, new_rows: Any) -> None:
        super()._update_dimensions(new_rows)
        # DataTable widens its columns to new rows when idle, but keeps the lines it drew
        # before that in its caches: on a busy machine the rows stayed cut to the headers'
        # widths. Drawn again, with the widths known.
        if new_rows:
            self._clear_caches()
            self.refresh()


class DeckFooter(Footer):
    """A Footer whose less needed keys make way on a narrow terminal.

    A screen names them in FOOTER_OPTIONAL (actions); their keys get the class -optional,
    which drdeck.tcss hides below 100 columns. They still work, and help lists them."""

    def compose(self) -> Iterable[Widget]:
        optional = set(getattr(self.screen, "FOOTER_OPTIONAL", ()))
        for widget in super().compose():
            if isinstance(widget, FooterKey) and widget.action in optional:
                widget.add_class("-optional")
            yield widget
