"""The live output: a bounded log that follows the end, and search within it."""

from __future__ import annotations

import textwrap
from collections import deque

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Log

from .._shared import DeckInput

# Enough to scroll back through a step; bounded so a flood of millions of
# lines costs neither memory nor responsiveness. The journal keeps the tail.
MAX_LINES = 20_000
_INDENT = "    "  # what a wrapped line's continuation starts with


class FloodLog(Log):
    """Textual's Log, measuring new lines on the event loop instead of in a thread.

    Log hands each batch to a worker thread to find the widest line; under a
    flood that thread fights the loop for the GIL and delays key presses by
    hundreds of milliseconds (see `make bench`, row tui). Plain ASCII lines,
    nearly all of them, are measured with len().
    """

    def _update_size(self, updates: int, lines: list[str]) -> None:
        if not lines:
            return
        process = self._process_line
        widest = max(
            len(line) if line.isascii() and "\t" not in line else cell_len(process(line))
            for line in lines
        )
        self._update_maximum_width(updates, widest)


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
        self.wrapping = False
        # the lines as they came: wrapping is a view of them, redone on toggle and resize
        self._raw: deque[str] = deque(maxlen=MAX_LINES)
        self._wrapped_at = 0

    def compose(self) -> ComposeResult:
        yield FloodLog(id="output", max_lines=MAX_LINES, auto_scroll=True)
        yield DeckInput(id="search", placeholder="search the output  (enter: find, esc: close)")

    def on_mount(self) -> None:
        self._update_title()

    @property
    def log_widget(self) -> Log:
        return self.query_one("#output", Log)

    def write_lines(self, lines: list[str]) -> None:
        log = self.log_widget
        self._raw.extend(lines)
        if self.wrapping:
            lines = self._wrap(lines)
        log.write_lines(lines, scroll_end=False)
        if self.following:
            # after the next refresh: correct even while a modal covers the log
            log.scroll_end(animate=False)

    def set_following(self, following: bool) -> None:
        self.following = following
        if following:
            self.log_widget.scroll_end(animate=False)
        self._update_title()

    def toggle_follow(self) -> None:
        self.set_following(not self.following)

    def toggle_wrap(self) -> None:
        """Long lines (a connection string, a path) whole on screen, or one line each."""
        self.wrapping = not self.wrapping
        self._rewrite()
        self._update_title()

    def on_resize(self) -> None:
        if self.wrapping and self._wrap_width() != self._wrapped_at:
            self._rewrite()

    def _rewrite(self) -> None:
        log = self.log_widget
        log.clear()
        lines = list(self._raw)
        log.write_lines(self._wrap(lines) if self.wrapping else lines, scroll_end=False)
        if self.following:
            log.scroll_end(animate=False)
        if self._query:
            self.find(self._query)

    def _wrap_width(self) -> int:
        return max(20, self.log_widget.scrollable_content_region.width - 1)

    def _wrap(self, lines: list[str]) -> list[str]:
        # between words, never inside a path unless the path alone is wider than the pane
        width = self._wrapped_at = self._wrap_width()
        out: list[str] = []
        for line in lines:
            if len(line) <= width:
                out.append(line)
            else:
                out.extend(textwrap.wrap(line, width, subsequent_indent=_INDENT,
                                         break_on_hyphens=False, drop_whitespace=False)
                           or [line])
        return out

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
        self._matches = [i for i, line in enumerate(lines) if needle and self._holds(lines, i,
                                                                                 needle)]
        self._match = len(self._matches) - 1
        self._show_match()

    def _holds(self, lines: list[str], i: int, needle: str) -> bool:
        """Line `i` holds the text; wrapped, also across its break into the next piece
        (counted once, at the piece where the text starts)."""
        line = lines[i].casefold()
        if needle in line:
            return True
        if not self.wrapping or i + 1 >= len(lines) or not lines[i + 1].startswith(_INDENT):
            return False
        following = lines[i + 1][len(_INDENT):].casefold()
        return needle in line + following and needle not in following

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
        wrap = "  wrapped" if self.wrapping else ""
        self.border_title = f"Output  {follow}{wrap}"
        if self._query:
            if self._matches:
                where = f"{self._match + 1} of {len(self._matches)}"
                self.border_subtitle = f"/{self._query}: {where}  (n/N)"
            else:
                self.border_subtitle = f"/{self._query}: no match"
        else:
            self.border_subtitle = "/ search"
