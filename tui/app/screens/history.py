"""History: every recorded run, newest first; the selected run's steps on a time line, and
its runbook's RTO over time against the target.

The journal is read in thread workers (each with its own connection) that only
post messages: the newest runs first, so the table fills at once, then every run
in one query, filtered in memory. The table receives the matching runs a chunk
at a time as the cursor or the scroll nears its end: a DataTable measures every
cell it holds, and 10,000 rows would take about a second to fill.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Static

from tui.durations import format_clock, format_duration
from tui.journal.store import RunDetail, RunRow, StepRow
from tui.units import format_bytes

from .._shared import DeckFooter, DeckInput, DeckTable
from ..widgets.breadcrumb import Breadcrumb
from ..widgets.steps import GLYPHS, short_clock

COLUMNS = ("Date (UTC)", "Runbook", "Mode", "Result", "RTO", "of target", "RPO",
           "Took / forecast")
NARROW_COLUMNS = ("Date (UTC)", "Runbook", "Mode", "", "RTO", "RPO")
CHUNK = 200  # rows handed to the table at a time: a few pages, about 20 ms of DataTable work
SERIES_LIMIT = 400  # runs of one runbook read for its RTO chart (more never fit the width)
DETAIL_DELAY_S = 0.05  # a held arrow key does not start one journal read per row

# A run's result: glyph, word, style. Colour backs the glyph, it never replaces it.
RESULTS = {
    "succeeded": ("✓", "succeeded", "bold green"),
    "failed": ("✗", "failed", "bold red"),
    "aborted": ("■", "aborted", "bold yellow"),
    "interrupted": ("⊘", "interrupted", "bold yellow"),
    "running": ("●", "running", "bold cyan"),
    "refused": ("–", "refused", "dim"),
}
MODE_COLOURS = {"drill": "bold dodger_blue1", "incident": "bold red"}
STEP_GLYPHS = {**GLYPHS, "interrupted": ("⊘", "bold yellow")}
WAIT_STYLE = "yellow"
PARTIAL_BLOCKS = " ▁▂▃▄▅▆▇"
BAR_MIN = 12  # cells of a step time line's bar before its titles shrink


# --- cells ------------------------------------------------------------------------------


def result_glyph(status: str) -> Text:
    glyph, _, style = RESULTS.get(status, ("?", status, ""))
    return Text(glyph, style=style)


def result_text(status: str) -> Text:
    glyph, word, style = RESULTS.get(status, ("?", status, ""))
    return Text(f"{glyph} {word}", style=style)


def mode_text(run: RunRow) -> Text:
    text = Text()
    text.append(run.mode.upper(), style=MODE_COLOURS.get(run.mode, "bold"))
    if run.dry_run:
        text.append(" dry", style="dim")
    return text


def utc_stamp(when: str | None, seconds: bool = False) -> str:
    if not when:
        return "-"
    moment = datetime.fromisoformat(when)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def share_of_target(value: float | None, target: float | None) -> float | None:
    if value is None or not target:
        return None
    return value / target


def share_text(value: float | None, target: float | None) -> Text:
    share = share_of_target(value, target)
    if share is None:
        return Text("-", justify="right")
    style = "bold red" if share > 1 else "yellow" if share > 0.75 else ""
    return Text(f"{share:.0%}", style=style, justify="right")


def forecast_text(run: RunRow) -> Text:
    """'15m10s / 16m43s': what the run took against the forecast it started with, in
    colour when it fell outside the spread of the runs that forecast learnt from: over
    time, a forecast that is always wrong shows."""
    import json

    took = run.duration_s
    if not run.forecast_json or took is None:
        return Text("-", justify="right")
    try:
        made = json.loads(run.forecast_json)
        total, low, high = (float(made[key]) for key in ("total_s", "low_s", "high_s"))
    except (ValueError, KeyError, TypeError):
        return Text("?", justify="right")
    if not any(step.get("forecast_s") is not None for step in made.get("steps", [])):
        return Text(f"{format_duration(took)} / no history", style="dim", justify="right")
    style = "" if low <= took <= high else "bold red" if took > high else "yellow"
    return Text(f"{format_duration(took)} / {format_duration(total)}", style=style,
                justify="right")


def run_cells(run: RunRow) -> tuple[Any, ...]:
    rto = Text(format_clock(run.rto_s) if run.rto_s is not None else "-", justify="right")
    rpo = Text(format_duration(run.rpo_s) if run.rpo_s is not None else "-", justify="right")
    return (utc_stamp(run.started_at), run.runbook, mode_text(run), result_text(run.status),
            rto, share_text(run.rto_s, run.rto_target_s), rpo, forecast_text(run))


def haystack(run: RunRow) -> str:
    """What the filter matches: runbook, title, mode, result (and the id, for a pasted one)."""
    dry = " dry" if run.dry_run else ""
    return f"{run.runbook} {run.title} {run.mode}{dry} {run.status} {run.id}".casefold()


def matches(hay: str, words: Sequence[str]) -> bool:
    return all(word in hay for word in words)


# --- the selected run -------------------------------------------------------------------


def run_end(detail: RunDetail, now: datetime) -> datetime:
    """When the run ended; for one without an end, its last recorded step end (or now)."""
    if detail.run.ended is not None:
        return detail.run.ended
    ends = [datetime.fromisoformat(s.ended_at) for s in detail.steps if s.ended_at]
    return max(ends) if ends else now


def step_seconds(step: StepRow, end: datetime) -> float | None:
    if step.duration_s is not None:
        return step.duration_s
    if not step.started_at:
        return None
    finish = datetime.fromisoformat(step.ended_at) if step.ended_at else end
    return max(0.0, (finish - datetime.fromisoformat(step.started_at)).total_seconds())


class StepTimeline:
    """Each step as a bar on the run's time line: where it started, how long it took, to
    scale; the time it waited for a person shaded apart (a confirmation comes first)."""

    def __init__(self, detail: RunDetail, now: datetime) -> None:
        self.detail = detail
        self.now = now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        detail = self.detail
        start = detail.run.started
        end = run_end(detail, self.now)
        span = max((end - start).total_seconds(), 1e-6)
        steps = detail.steps
        clock_w = 8
        # glyph, title, bar and clock share the width; the bar keeps at least BAR_MIN
        # cells, and titles shrink (to 6) before the line would wrap
        room = options.max_width - clock_w - 4
        title_w = min(24, max((len(s.title) for s in steps), default=4),
                      max(6, room - BAR_MIN))
        bar_w = max(1, room - title_w)
        yield self._axis(format_clock(span), title_w, bar_w)
        for step in steps:
            glyph, style = STEP_GLYPHS.get(step.status, ("?", ""))
            line = Text()
            line.append(glyph, style=style)
            title = step.title if len(step.title) <= title_w else step.title[:title_w - 1] + "…"
            line.append(f" {title.ljust(title_w)} ")
            seconds = step_seconds(step, end)
            line.append_text(self._bar(step, seconds, start, span, bar_w, style))
            line.append(" ")
            line.append((short_clock(seconds) if seconds is not None else "").rjust(clock_w),
                        style="dim")
            yield line

    @staticmethod
    def _axis(total: str, title_w: int, bar_w: int) -> Text:
        """0:00 under the bar's start and the run's length under its end; only the length
        when both do not fit with a space between them, nothing when not even that does."""
        axis = Text(" " * (title_w + 3))
        start = "0:00"
        if bar_w >= len(start) + 1 + len(total):
            axis.append(start + total.rjust(bar_w - len(start)), style="dim")
        elif bar_w >= len(total):
            axis.append(total.rjust(bar_w), style="dim")
        return axis

    @staticmethod
    def _bar(step: StepRow, seconds: float | None, start: datetime, span: float, width: int,
             style: str) -> Text:
        bar = Text()
        if not step.started_at or seconds is None:
            bar.append("not run".ljust(width), style="dim")
            return bar
        offset = (datetime.fromisoformat(step.started_at) - start).total_seconds()
        a = max(0.0, offset / span * width)
        length = seconds / span * width
        first = min(int(a), width - 1)
        colour = style.replace("bold ", "") or "white"
        if length < 0.5:
            bar.append(" " * first)
            bar.append("▏", style=colour)
        else:
            cells = max(1, min(width - first, round(a + length) - first))
            share = min(1.0, step.operator_wait_s / seconds) if seconds > 0 else 0.0
            waited = round(cells * share)
            if 0 < share < 1 and cells > 1:  # both parts stay visible
                waited = min(max(waited, 1), cells - 1)
            bar.append(" " * first)
            bar.append("░" * waited, style=WAIT_STYLE)
            bar.append("█" * (cells - waited), style=colour)
        bar.append(" " * (width - bar.cell_len))
        return bar


def detail_renderable(detail: RunDetail, now: datetime) -> Group:
    run = detail.run
    head = Text()
    head.append(f"{run.title}", style="bold")
    head.append(f"  ({run.runbook})  ", style="dim")
    head.append_text(mode_text(run))
    head.append("  ")
    head.append_text(result_text(run.status))
    facts = Text(f"run {run.id}  started {utc_stamp(run.started_at, seconds=True)} UTC "
                 f"by {run.operator}", style="dim")
    if run.resumes:
        facts.append(f"  resumed {run.resumes}×")
    measured = Text("RTO ")
    measured.append(format_clock(run.rto_s) if run.rto_s is not None else "-", style="bold")
    if run.rto_target_s:
        measured.append(f" of {format_duration(run.rto_target_s)} (")
        measured.append_text(share_text(run.rto_s, run.rto_target_s))
        measured.append(")")
    measured.append("   RPO ")
    measured.append(format_duration(run.rpo_s), style="bold")
    if run.rpo_target_s:
        measured.append(f" of {format_duration(run.rpo_target_s)}")
        if run.rpo_s is not None and run.rpo_s > run.rpo_target_s:
            measured.append(" ✗ missed", style="bold red")
    parts: list[Any] = [head, facts, measured]
    if run.error and run.status != "succeeded":
        parts.append(Text(f"reason: {run.error}", style="red"))
    parts += [Text(), StepTimeline(detail, now)]
    failed = [s for s in detail.steps if s.error]
    for step in failed:
        parts.append(Text(f"✗ {step.title}: {step.error}", style="red"))
    if detail.checks:
        parts.append(Text("\nChecks", style="bold"))
        for check in detail.checks:
            line = Text()
            line.append("✓ " if check["ok"] else "✗ ",
                        style="bold green" if check["ok"] else "bold red")
            line.append(check["name"])
            if check["detail"]:
                line.append(f"  {check['detail']}", style="dim" if check["ok"] else "red")
            parts.append(line)
    if detail.measures or detail.milestones:
        parts.append(Text("\nMeasures", style="bold"))
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(style="dim")
        for measure in detail.measures:
            table.add_row(measure["name"], measure_value(measure["value"], measure["unit"]),
                          measure["detail"])
        for milestone in detail.milestones:
            table.add_row(f"◆ {milestone['name']}", format_clock(milestone["elapsed_s"]),
                          "milestone")
        parts.append(table)
    return Group(*parts)


def measure_value(value: float, unit: str) -> str:
    if unit in ("s", "seconds"):
        return format_duration(value)
    if unit == "B":
        return format_bytes(value)
    shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{shown} {unit}".strip()


# --- the RTO chart ----------------------------------------------------------------------


def rto_chart(series: Iterable[RunRow], target: float | None, selected: str | None,
              width: int, height: int) -> Text:
    """One column per run (oldest left), bar height ∝ its RTO, the target a line across; a
    run that did not restore the service shows its result glyph on the base line."""
    runs = sorted((r for r in series if not r.dry_run and r.status in RESULTS
                   and r.status not in ("running", "refused")), key=lambda r: r.started_at)
    if not runs:
        return Text("no finished run of this runbook yet", style="dim")
    label_w = 7
    plot_w = max(1, width - label_w)
    spacing = 2 if len(runs) * 2 <= plot_w else 1
    shown = runs[-max(1, plot_w // spacing):]
    plot_h = max(2, height - 2)
    values = [r.rto_s for r in shown if r.status == "succeeded" and r.rto_s is not None]
    top = max([*values, target or 0.0]) * 1.15 or 1.0
    per_row = top / plot_h
    target_row = min(plot_h - 1, int(target / per_row)) if target else None
    lines = Text()
    for row in range(plot_h - 1, -1, -1):
        on_target = row == target_row
        if on_target:
            label, style = format_duration(target), "bold yellow"
        elif row == plot_h - 1:
            label, style = format_duration(top), "dim"
        elif row == 0:
            label, style = "0", "dim"
        else:
            label, style = "", "dim"
        lines.append(label.rjust(label_w - 1)[-(label_w - 1):], style=style)
        lines.append("┤" if label else "│", style=style)
        for run in shown:
            cell, cell_style = _chart_cell(run, row, per_row, target)
            if on_target and cell == " ":
                cell, cell_style = "─", "yellow"
            lines.append(cell, style=cell_style)
            if spacing == 2:
                lines.append("─" if on_target else " ", style="yellow")
        lines.append("\n")
    marks = Text(" " * label_w)
    for run in shown:
        marks.append("▲" if run.id == selected else " ", style="bold cyan")
        if spacing == 2:
            marks.append(" ")
    lines.append_text(marks)
    lines.append("\n")
    first, last = utc_stamp(shown[0].started_at)[:10], utc_stamp(shown[-1].started_at)[:10]
    used = len(shown) * spacing
    # the dates under the first and the last column; where they would not fit side by
    # side, the span, or the newest alone: never two labels run together or wrapped
    room = width - label_w
    if first == last:
        dates = first
    elif used >= len(first) + len(last) + 1:
        dates = first + last.rjust(used - len(first))
    elif room >= len(f"{first} → {last}"):
        dates = f"{first} → {last}"
    else:
        dates = last.rjust(min(used, room)) if room >= len(last) else ""
    lines.append(" " * label_w + dates, style="dim")
    return lines


def _chart_cell(run: RunRow, row: int, per_row: float, target: float | None
                ) -> tuple[str, str]:
    if run.status != "succeeded" or run.rto_s is None:
        if row == 0:
            glyph, _, style = RESULTS[run.status]
            return glyph, style
        return " ", ""
    style = "bold red" if target and run.rto_s > target else "green"
    height = run.rto_s / per_row
    if height >= row + 1:
        return "█", style
    if height > row:
        index = int((height - row) * 8)
        return PARTIAL_BLOCKS[index] if index else ("▁" if row == 0 else " "), style
    return " ", style


class RtoChart(Widget):
    """The RTO chart drawn to whatever size the panel has."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.series: list[RunRow] = []
        self.target: float | None = None
        self.selected: str | None = None
        self.note = "select a run"

    def show(self, series: list[RunRow], target: float | None, selected: str | None) -> None:
        self.series, self.target, self.selected, self.note = series, target, selected, ""
        self.refresh()

    def clear(self, note: str) -> None:
        self.series, self.note = [], note
        self.refresh()

    def render(self) -> Text:
        if self.note:
            return Text(self.note, style="dim")
        size = self.content_size
        return rto_chart(self.series, self.target, self.selected, size.width, size.height)


class RunsTable(DeckTable):
    """The runs: G (and ctrl+end) go to the very last run, not the last one handed over."""

    def action_scroll_bottom(self) -> None:
        screen = self.screen
        if isinstance(screen, HistoryScreen):
            screen.show_all()
        super().action_scroll_bottom()


# --- messages ---------------------------------------------------------------------------


class HistoryLoaded(Message):
    def __init__(self, runs: list[RunRow], hay: list[str], error: str | None = None, *,
                 complete: bool = True) -> None:
        super().__init__()
        self.runs, self.hay, self.error, self.complete = runs, hay, error, complete


class RunDetailLoaded(Message):
    def __init__(self, run_id: str, detail: RunDetail | None, series: list[RunRow],
                 error: str | None = None) -> None:
        super().__init__()
        self.run_id, self.detail, self.series, self.error = run_id, detail, series, error


class RunExported(Message):
    def __init__(self, path: Path | None, error: str | None = None) -> None:
        super().__init__()
        self.path, self.error = path, error


# --- the screen -------------------------------------------------------------------------


class HistoryScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "details", "details"),
        Binding("e", "export", "export"),
        Binding("slash", "filter", "filter"),
        Binding("r", "reload", "reload"),
        Binding("escape", "back", "back"),
    ]

    help_notes = ("Runs are newest first. The filter matches runbook, mode (drill, incident) "
                  "and result (succeeded, failed, aborted, interrupted); several words must "
                  "all match. The time line draws each step to scale: █ working, ░ waiting "
                  "for you. The chart has one column per run of the selected runbook, its "
                  "height the RTO; the yellow line is the target; ▲ marks the selected run. "
                  "Export writes the selected run's report as drdeck-run-ID.md here.")

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunRow] = []
        self._hay: list[str] = []
        self.matching: list[RunRow] = []
        self.shown = 0  # how many of `matching` the table holds
        self.loaded = False  # the newest runs are in the table
        self.complete = False  # every run is read (the filter sees them all)
        self.detail: RunDetail | None = None
        self._wanted: str | None = None
        self._detail_timer: Timer | None = None
        self._newest_shown = threading.Event()
        self._narrow: bool | None = None  # the table's columns are those for < 100 columns

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        with Vertical(id="history-list", classes="panel"):
            yield DeckInput(id="filter", placeholder="filter by runbook, mode, result "
                            "(esc: clear)")
            yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="history-bottom"):
            yield RtoChart(id="rto-chart", classes="panel")
            with VerticalScroll(id="run-detail", classes="panel"):
                yield Static(Text("loading the journal…", style="dim"), id="run-detail-body")
        yield DeckFooter()

    def on_mount(self) -> None:
        crumb = self.query_one(Breadcrumb)
        crumb.mode, crumb.parts = self.app.mode, ("history",)
        self.query_one("#history-list").border_title = "Runs"
        self.query_one("#rto-chart").border_title = "RTO over time"
        self.query_one("#run-detail").border_title = "Run"
        table = self.query_one("#runs", DataTable)
        self._fit_columns()
        self.watch(table, "scroll_y", self._scrolled, init=False)
        table.focus()
        self.load()

    # --- loading ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="history")
    def load(self) -> None:
        """The newest runs at once, for the table; then all of them, for the filter."""
        from tui.journal.store import open_journal

        try:
            journal = open_journal(self.app.config)
            try:
                newest = journal.runs(limit=CHUNK)
                complete = len(newest) < CHUNK
                self.post_message(HistoryLoaded(newest, [haystack(r) for r in newest],
                                                complete=complete))
                if complete:
                    return
                # read the rest once the first run is drawn: it would compete with the
                # table and the detail for the interpreter
                self._newest_shown.wait(timeout=1.0)
                runs = journal.runs()
            finally:
                journal.close()
        except Exception as exc:  # shown on screen; the app keeps running
            self.post_message(HistoryLoaded([], [], str(exc)))
            return
        self.post_message(HistoryLoaded(runs, [haystack(r) for r in runs]))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        self.loaded, self.complete = True, message.complete
        if message.error:
            self.query_one("#run-detail-body", Static).update(
                Text(f"✗ cannot read the journal: {message.error}", style="bold red"))
            return
        before = [run.id for run in self.matching[:self.shown]]
        self.runs, self._hay = message.runs, message.hay
        unfiltered = not self.query_one("#filter", DeckInput).value.strip()
        if unfiltered and before and before == [run.id for run in self.runs[:len(before)]]:
            self.matching = list(self.runs)  # the table already shows the newest: keep it
            self._count()
            return
        self._apply_filter()

    def _apply_filter(self) -> None:
        words = self.query_one("#filter", DeckInput).value.casefold().split()
        self.matching = [run for run, hay in zip(self.runs, self._hay, strict=True)
                         if matches(hay, words)]
        table = self.query_one("#runs", DataTable)
        table.clear()
        self.shown = 0
        self._more()
        self._want_detail(0)

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Below 100 columns the share of the target goes (the run's pane says it) and the
        result is its glyph: date, runbook, mode, result, RTO and RPO fit 80."""
        narrow = self.app.size.width < 100
        if narrow == self._narrow:
            return
        self._narrow = narrow
        table = self.query_one("#runs", DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*(NARROW_COLUMNS if narrow else COLUMNS))
        table.add_rows(self._cells(run) for run in self.matching[:self.shown])
        if self.shown:
            table.move_cursor(row=min(row, self.shown - 1), animate=False)

    def _cells(self, run: RunRow) -> tuple[Any, ...]:
        cells = run_cells(run)
        if not self._narrow:
            return cells
        date, runbook, mode, _, rto, _, rpo, _ = cells
        return date, runbook, mode, result_glyph(run.status), rto, rpo

    def _more(self) -> None:
        """Hand the table the next chunk of matching runs."""
        chunk = self.matching[self.shown:self.shown + CHUNK]
        if chunk:
            self.query_one("#runs", DataTable).add_rows(self._cells(run) for run in chunk)
            self.shown += len(chunk)
        self._count()

    def _count(self) -> None:
        panel = self.query_one("#history-list")
        total, found = len(self.runs), len(self.matching)
        filtered = bool(self.query_one("#filter", DeckInput).value.strip())
        if not self.complete:
            panel.border_title = f"Runs  newest {total:,}, reading the rest…"
        elif filtered:
            panel.border_title = f"Runs  {found:,} of {total:,} match"
        else:
            panel.border_title = f"Runs  {total:,}"
        more = f"showing {self.shown:,} of {found:,}: more as you scroll · " \
            if self.shown < found else ""
        panel.border_subtitle = f"{more}/ filter · e export"

    def show_all(self) -> None:
        """Every matching run in the table (for a jump to the end)."""
        while self.shown < len(self.matching):
            self._more()

    def _scrolled(self, scroll_y: float) -> None:
        table = self.query_one("#runs", DataTable)
        if self.shown < len(self.matching) and \
                scroll_y >= table.max_scroll_y - table.scrollable_content_region.height:
            self._more()

    # --- the selected run -------------------------------------------------------------

    @property
    def selected(self) -> RunRow | None:
        if not self.matching:
            return None
        row = self.query_one("#runs", DataTable).cursor_row
        return self.matching[min(max(row, 0), len(self.matching) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "runs":
            return
        if event.cursor_row >= self.shown - CHUNK // 5 and self.shown < len(self.matching):
            self._more()
        self._want_detail(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_details()

    def _want_detail(self, row: int) -> None:
        if not self.matching:
            self._newest_shown.set()
            self._wanted = self.detail = None
            message = "no run matches: esc clears the filter" if self.runs else \
                "no run recorded yet: every run of a runbook, from here or headless, lands here"
            self.query_one("#run-detail-body", Static).update(Text(message, style="dim"))
            self.query_one("#run-detail").border_title = "Run"
            self.query_one(RtoChart).clear("")
            return
        run = self.matching[min(row, len(self.matching) - 1)]
        if run.id == self._wanted:
            return
        self._wanted = run.id
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(
            DETAIL_DELAY_S, lambda: self.load_detail(run.id, run.runbook))

    @work(thread=True, exclusive=True, group="history-detail")
    def load_detail(self, run_id: str, runbook: str) -> None:
        from tui.journal.store import open_journal

        try:
            journal = open_journal(self.app.config)
            try:
                detail = journal.run(run_id)
                series = journal.runs(runbook=runbook, limit=SERIES_LIMIT)
            finally:
                journal.close()
        except Exception as exc:  # shown in the pane
            self.post_message(RunDetailLoaded(run_id, None, [], str(exc)))
            return
        self.post_message(RunDetailLoaded(run_id, detail, series))

    def on_run_detail_loaded(self, message: RunDetailLoaded) -> None:
        self.call_after_refresh(self._newest_shown.set)
        if message.run_id != self._wanted:
            return  # the cursor has moved on
        body = self.query_one("#run-detail-body", Static)
        if message.detail is None:
            body.update(Text(f"✗ cannot read run {message.run_id}: {message.error}",
                             style="bold red"))
            return
        detail = self.detail = message.detail
        run = detail.run
        body.update(detail_renderable(detail, self.app.utc_now()))
        pane = self.query_one("#run-detail")
        pane.border_title = f"Run {utc_stamp(run.started_at)}: step time line"
        pane.border_subtitle = "[green]█[/] working  [yellow]░[/] waiting for you"
        chart = self.query_one(RtoChart)
        target = run.rto_target_s
        chart.border_title = f"RTO of {run.runbook} over time" + (
            f" (target {format_duration(target)})" if target else " (no target)")
        chart.border_subtitle = "[bold cyan]▲[/] this run  [green]█[/] RTO  [red]✗[/] failed"
        chart.show(message.series, target, run.id)

    # --- actions ----------------------------------------------------------------------

    def action_details(self) -> None:
        self.query_one("#run-detail").focus()

    def action_export(self) -> None:
        run = self.selected
        if run is None:
            self.notify("no run selected", severity="warning")
            return
        self.export_run(run.id, Path.cwd(), self.app.utc_now())

    @work(thread=True, group="history-export")
    def export_run(self, run_id: str, directory: Path, now: datetime) -> None:
        from tui.journal.report import run_markdown, run_report
        from tui.journal.store import open_journal

        try:
            journal = open_journal(self.app.config)
            try:
                detail = journal.run(run_id)
            finally:
                journal.close()
            path = directory / f"drdeck-run-{detail.run.id}.md"
            path.write_text(run_markdown(run_report(detail, now=now)), encoding="utf-8")
        except Exception as exc:  # said in a notification
            self.post_message(RunExported(None, str(exc)))
            return
        self.post_message(RunExported(path))

    def on_run_exported(self, message: RunExported) -> None:
        if message.path is None:
            self.notify(f"the export failed: {message.error}", severity="error", timeout=15)
            return
        self.notify(f"report written to {message.path}", title="run exported", timeout=10)

    def action_filter(self) -> None:
        box = self.query_one("#filter", DeckInput)
        box.add_class("visible")
        box.focus()

    def on_input_changed(self, event: DeckInput.Changed) -> None:
        if event.input.id == "filter" and self.loaded:
            self._apply_filter()

    def on_input_submitted(self, event: DeckInput.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#runs", DataTable).focus()

    def action_reload(self) -> None:
        self._wanted = None
        self._newest_shown.clear()
        self.load()

    def action_back(self) -> None:
        detail = self.query_one("#run-detail")
        if detail.has_focus:
            self.query_one("#runs", DataTable).focus()
            return
        box = self.query_one("#filter", DeckInput)
        if box.has_class("visible"):
            box.value = ""
            box.remove_class("visible")
            self.query_one("#runs", DataTable).focus()
            return
        self.app.pop_screen()
