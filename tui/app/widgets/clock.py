"""The RTO clock: elapsed against the target, warning at 75%, error past 100%."""

from __future__ import annotations

from rich.text import Text

from tui.durations import format_clock

BAR_WIDTH = 10


def rto_clock(elapsed: float, target: float | None, stopped: bool = False,
              projected: float | None = None) -> Text:
    """`projected`: where the run should end, from its forecast (tui.journal.forecast)."""
    text = Text()
    label = "RTO " if target else "elapsed "
    text.append(label, style="bold")
    if not target:
        text.append(format_clock(elapsed))
        return text
    share = elapsed / target
    style = "bold red" if share > 1 else "bold yellow" if share >= 0.75 else "bold green"
    text.append(format_clock(elapsed), style=style)
    text.append(f" / {format_clock(target)}  ")
    filled = min(BAR_WIDTH, int(share * BAR_WIDTH))
    text.append("▓" * filled, style=style)
    text.append("░" * (BAR_WIDTH - filled), style="dim")
    text.append(f" {share:4.0%}", style=style)
    if stopped:
        text.append("  ◆ stopped", style="bold magenta")
    elif projected is not None:
        late = projected > target
        text.append(f"  proj. {format_clock(projected)}", style="bold red" if late else "")
    text.append(" ")
    return text
