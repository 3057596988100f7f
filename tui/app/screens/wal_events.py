"""WAL events: the destructive transactions in a cluster's archived WAL, newest first
(tui.wal.finder), with a filter and a detail pane; enter opens the restore that stops
just before the one selected, and checks afterwards that what it took is back."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui.wal.naming import NamedEvent

from .._shared import DeckFooter, DeckInput, DeckTable
from ..widgets.breadcrumb import Breadcrumb


class ScanProgress(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class ScanDone(Message):
    def __init__(self, found: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.found, self.error = found, error


def relations_text(item: NamedEvent, most: int = 2) -> str:
    shown = ", ".join(item.relations[:most])
    more = len(item.relations) - most
    return shown + (f" +{more}" if more > 0 else "") or ("(no name)" if item.unnamed else "")


def event_detail(item: NamedEvent, restore_runbook: str) -> Text:
    e = item.event
    text = Text()
    text.append(f"{item.what} in {item.database}\n", style="bold")
    text.append(f"committed  {(e.commit_time or 'time unknown').replace('T', ' ')[:19]}"
                " UTC\n")
    text.append(f"xid        {e.xid}   commit LSN {e.commit_lsn}   timeline {e.timeline}\n")
    if e.rows is not None:
        text.append(f"rows       {e.rows:,}\n")
    for name in item.relations:
        text.append(f"  {name}\n")
    for why in item.unnamed:
        text.append(f"  ? {why}\n", style="yellow")
    if restore_runbook:
        stop = (f"LSN {e.stop_lsn}, where it began: it removes the files before its commit"
                if e.stop_lsn else f"xid {e.xid}")
        text.append(f"\nenter: {restore_runbook} to just before it ({stop}; exclusive), then "
                    "a check that what it took is back", style="dim")
    return text


class WalEventsScreen(Screen[None]):
    BINDINGS = [
        # priority: the table's own enter would hide it from the footer
        Binding("enter", "restore_before", "restore to just before", priority=True),
        Binding("slash", "filter", "filter"),
        Binding("r", "rescan", "read again"),
        Binding("escape", "back", "back"),
    ]

    FOOTER_OPTIONAL = ("rescan",)

    help_notes = ("The destructive transactions found in the cluster's archived WAL, newest "
                  "first: DROP TABLE, TRUNCATE, DROP DATABASE, DROP SCHEMA, table rewrites, "
                  "and DELETEs or UPDATEs of at least 1,000 rows. Names come from the "
                  "catalog maps drdeck takes with each base backup, then the live server; a "
                  "relation neither can name is said so. Enter opens the restore runbook "
                  "with the event's xid as an exclusive target and a check that what it "
                  "took is back. The inventory's window shows the events as marks.")

    def __init__(self, cluster: str) -> None:
        super().__init__()
        self.cluster = cluster
        self._shown: list[NamedEvent] = []

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        yield Static("", id="events-status")
        with Vertical(id="events-list", classes="panel"):
            yield DeckInput(id="filter", placeholder="filter by kind, database, table, xid "
                            "(esc: clear)")
            yield DeckTable(id="events", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="event-detail", classes="panel"):
            yield Static(id="event-detail-body")
        yield DeckFooter()

    def on_mount(self) -> None:
        crumb = self.query_one(Breadcrumb)
        crumb.mode, crumb.parts = self.app.mode, ("inventory", self.cluster, "WAL events")
        self.query_one("#events-list").border_title = "Destructive transactions"
        self.query_one("#event-detail").border_title = "Event"
        self.query_one("#events", DataTable).add_columns(
            "Committed (UTC)", "What", "xid", "Rows", "Database", "Relations")
        self.query_one("#events", DataTable).focus()
        found = self.app.wal_events.get(self.cluster)
        if found is None:
            self.scan()
        else:
            self._show(found)

    @property
    def found(self) -> Any:
        return self.app.wal_events.get(self.cluster)

    @work(thread=True, exclusive=True, group="wal-events")
    def scan(self) -> None:
        from tui.wal.finder import find_events
        from tui.wal.scan import eta_line

        self.post_message(ScanProgress("reading the archived WAL…"))
        started = time.monotonic()
        try:
            cluster = self.app.config.cluster(self.cluster)
            found = find_events(self.app.config, cluster, progress=lambda done, total:
                                self.post_message(ScanProgress(eta_line(done, total, started))))
        except Exception as exc:  # shown on screen; the app keeps running
            self.post_message(ScanDone(error=str(exc)))
            return
        self.post_message(ScanDone(found))

    def on_scan_progress(self, message: ScanProgress) -> None:
        self.query_one("#events-status", Static).update(
            Text(f"reading WAL: {message.line}", style="bold"))

    def on_scan_done(self, message: ScanDone) -> None:
        if message.error:
            self.query_one("#events-status", Static).update(
                Text(f"✗ cannot read the WAL: {message.error}", style="bold red"))
            return
        self.app.wal_events[self.cluster] = message.found
        self._show(message.found)

    def _show(self, found: Any) -> None:
        count = len(found.events)
        status = Text(f"{count} destructive transaction{'s' if count != 1 else ''}",
                      style="bold red" if count else "bold green")
        status.append(f" in {found.segments} WAL segments "
                      f"({found.bytes / (1 << 20):,.0f} MiB) of {found.where}")
        for problem in found.problems:
            status.append(f"\n! {problem}", style="yellow")
        self.query_one("#events-status", Static).update(status)
        self._fill()

    def _fill(self) -> None:
        found = self.found
        table = self.query_one("#events", DataTable)
        table.clear()
        self._shown = []
        if found is None:
            return
        needle = self.query_one("#filter", DeckInput).value.casefold()
        for item in reversed(found.events):  # newest first
            e = item.event
            words = (f"{item.what} {e.kind} {item.database} {e.xid} "
                     f"{' '.join(item.relations)}")
            if needle and needle not in words.casefold():
                continue
            self._shown.append(item)
            # what identifies the event first: on 80 columns the relations are cut short
            table.add_row((e.commit_time or "?").replace("T", " ")[:19],
                          Text(item.what, style="bold red"), str(e.xid),
                          f"{e.rows:,}" if e.rows is not None else "-", item.database,
                          relations_text(item))
        self._show_detail(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def _show_detail(self, row: int) -> None:
        body = self.query_one("#event-detail-body", Static)
        if not self._shown:
            found = self.found
            body.update(Text("no destructive transaction in the archived WAL" if found and
                             not found.events else "no event matches the filter" if found
                             else "", style="dim"))
            return
        item = self._shown[min(row, len(self._shown) - 1)]
        body.update(event_detail(item, self.found.source.restore_runbook))

    @property
    def selected(self) -> NamedEvent | None:
        if not self._shown:
            return None
        row = self.query_one("#events", DataTable).cursor_row
        return self._shown[min(row, len(self._shown) - 1)]

    def action_restore_before(self) -> None:
        from tui.wal.finder import restore_before

        box = self.query_one("#filter", DeckInput)
        if box.has_focus:  # enter ends the filter's typing
            self.query_one("#events", DataTable).focus()
            return
        item, found = self.selected, self.found
        if item is None or found is None:
            self.notify("no event selected", severity="warning")
            return
        runbook = found.source.restore_runbook
        if not runbook:
            self.notify(f"drdeck restores nothing from {found.where}", severity="error")
            return
        self.app.open_runbook_named(runbook, restore_before(item, found.source, self.cluster))

    def action_rescan(self) -> None:
        self.app.wal_events.pop(self.cluster, None)
        self.query_one("#events", DataTable).clear()
        self._shown = []
        self.scan()

    def action_filter(self) -> None:
        box = self.query_one("#filter", DeckInput)
        box.add_class("visible")
        box.focus()

    def on_input_changed(self, event: DeckInput.Changed) -> None:
        if event.input.id == "filter":
            self._fill()

    def action_back(self) -> None:
        box = self.query_one("#filter", DeckInput)
        if box.has_class("visible"):
            box.value = ""
            box.remove_class("visible")
            self.query_one("#events", DataTable).focus()
            return
        self.app.pop_screen()
