"""The top line of every screen: where you are, the mode, and (in a run) the RTO clock."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

MODE_STYLES = {"incident": "bold white on dark_red", "drill": "bold white on dodger_blue3"}


def mode_badge(mode: str) -> Text:
    return Text(f" {mode.upper()} ", style=MODE_STYLES.get(mode, "reverse"))


class Breadcrumb(Widget):
    """`drdeck › MODE › part › part` on the left, anything on the right."""

    DEFAULT_CSS = "Breadcrumb { height: 1; }"

    parts: reactive[tuple[str, ...]] = reactive(tuple)
    mode: reactive[str] = reactive("drill")
    right: reactive[Text] = reactive(Text)

    def render(self) -> Table:
        left = Text(" drdeck", style="bold")
        left.append(" › ")
        left.append_text(mode_badge(self.mode))
        for part in self.parts:
            left.append(" › ")
            left.append(part)
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(left, self.right)
        return grid
