"""The live output: a bounded log that follows the end, and search within it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Log

from .._shared import DeckInput

# Enough to scroll back through a step; bounded so a flood of millions of
# lines costs neither memory nor responsiveness. The journal keeps the tail.
MAX_LINES = 20_000


class OutputPanel(Vertical):
    BINDINGS = [
        Binding("n", "next_match", "next match", show=False),
        Binding("N", "previous_match", "previous match", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.following = True
        self._query = ""
        self._matches: list[int] = []
        self._match = -1

    def compose(self) -> ComposeResult:
        yield Log(id="output", max_lines=MAX_LINES, auto_scroll=True)
        yield DeckInput(id="search", placeholder="search the output  (enter: find, esc: close)")

    def on_mount(self) -> None:
        self._update_title()

    @property
    def log_widget(self) -> Log:
        return self.query_one("#output", Log)

    def write_lines(self, lines: list[str]) -> None:
        self.log_widget.write_lines(lines, scroll_end=self.following)

    def set_following(self, following: bool) -> None:
        self.following = following
        if following:
            self.log_widget.scroll_end(animate=False)
        self._update_title()

    def toggle_follow(self) -> None:
        self.set_following(not self.following)

    def open_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("visible")
        search.focus()

    def close_search(self) -> None:
        search = self.query_one("#search", Input)
        search.remove_class("visible")
        self.log_widget.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "search":
            return
        event.stop()
        self.find(event.value)

    def on_key(self, event) -> None:
        if event.key == "escape" and self.query_one("#search", Input).has_focus:
            event.stop()
            self.close_search()

    def find(self, query: str) -> None:
        """Jump to the last line holding `query` (newest first); follow stops so it stays put."""
        self._query = query
        lines = self.log_widget.lines
        needle = query.casefold()
        self._matches = [i for i, line in enumerate(lines) if needle and needle in line.casefold()]
        self._match = len(self._matches) - 1
        self._show_match()

    def action_next_match(self) -> None:
        if self._matches:
            self._match = (self._match + 1) % len(self._matches)
            self._show_match()

    def action_previous_match(self) -> None:
        if self._matches:
            self._match = (self._match - 1) % len(self._matches)
            self._show_match()

    def _show_match(self) -> None:
        if self._matches:
            self.following = False
            line = self._matches[self._match]
            log = self.log_widget
            log.scroll_to(y=max(0, line - log.size.height // 2), animate=False)
        self._update_title()

    def _update_title(self) -> None:
        follow = "following" if self.following else "paused (f to follow)"
        self.border_title = f"Output  {follow}"
        if self._query:
            if self._matches:
                where = f"{self._match + 1} of {len(self._matches)}"
                self.border_subtitle = f"/{self._query}: {where}  (n/N)"
            else:
                self.border_subtitle = f"/{self._query}: no match"
        else:
            self.border_subtitle = "/ search"
