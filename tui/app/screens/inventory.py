"""Inventory: what can we restore, and to when? One table per cluster, the manifest beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static, Tab, TabbedContent, TabPane, Tabs

from tui.catalog.inventory import ClusterInventory, Snapshot
from tui.durations import format_duration
from tui.units import format_bytes

from .._shared import DeckFooter, DeckInput, DeckTable
from ..widgets.breadcrumb import Breadcrumb

COLUMNS = ("Taken (UTC)", "Database", "Stored", "Age", "Retention", "Encrypted", "Verified")
# below 100 columns: no size (the manifest says it), shorter cells, and what is at stake
# (encrypted? verified?) stays in view
NARROW_COLUMNS = ("Taken (UTC)", "Database", "Age", "Retention", "Enc.", "Verified")
NARROW_OF_FULL = (0, 1, 3, 4, 5, 6)  # each narrow column's place among COLUMNS
NARROW_RETENTION = 12


class InventoryLoaded(Message):
    def __init__(self, inventories: list[ClusterInventory] | None, now: datetime | None,
                 error: str | None = None) -> None:
        super().__init__()
        self.inventories, self.now, self.error = inventories, now, error


RPO_MARKS = {"ok": ("✓ ok", "bold green"), "breached": ("✗ RPO BREACHED", "bold red"),
             "no snapshot": ("✗ no snapshot", "bold red"),
             "no window": ("✗ nothing recoverable", "bold red")}


def rpo_line(inventory: ClusterInventory, now: datetime, repository: str) -> Text:
    """prod  offsite (s3)   newest 23m old · RPO 1h · ✓ ok — the state at a glance."""
    if inventory.engines_only:
        return engines_line(inventory, now)
    state, age = inventory.rpo_state(now)
    text = Text()
    text.append(inventory.name, style="bold")
    text.append(f"  repository {repository}   ", style="dim")
    if inventory.error:
        text.append(f"✗ cannot read the repository: {inventory.error}", style="bold red")
        return text
    text.append(f"newest {format_duration(age)} old" if age is not None else "no snapshot")
    if inventory.rpo_s:
        text.append(f" · RPO {format_duration(inventory.rpo_s)} · ")
        mark = RPO_MARKS.get(state, (state, ""))
        text.append(mark[0], style=mark[1])
    incomplete = len([s for s in inventory.snapshots if not s.complete])
    count = len(inventory.complete())
    text.append(f"   {count} snapshot{'s' if count != 1 else ''}", style="dim")
    if incomplete or inventory.incomplete_uploads:
        text.append(f", {incomplete + len(inventory.incomplete_uploads)} incomplete",
                    style="yellow")
    return text


def engines_line(inventory: ClusterInventory, now: datetime) -> Text:
    """prod  no drdeck repository   newest recoverable point 3m old (<engine>) · RPO 1h
    · ✓ ok — a cluster its engines alone back up (tui.sources)."""
    state, age, title = inventory.recoverable_state(now)
    text = Text()
    text.append(inventory.name, style="bold")
    text.append("  no drdeck repository   ", style="dim")
    text.append(f"newest recoverable point {format_duration(age)} old ({title})"
                if age is not None else "no recoverable point")
    if inventory.rpo_s:
        text.append(f" · RPO {format_duration(inventory.rpo_s)} · ")
        mark = RPO_MARKS.get(state, (state, ""))
        text.append(mark[0], style=mark[1])
    return text


def engines_window_line(inventory: ClusterInventory) -> Text:
    """Recoverable  2026-12-02 21:56:30 UTC to 2026-12-02 21:59:22 UTC (<engine>)"""
    from tui.sources.base import shown_time

    text = Text("Recoverable  ", style="bold")
    windows = [(report.data["window"], report.source.title) for report in inventory.sources
               if report.data.get("window")]
    if not windows:
        text.append("✗ nothing: no engine of this cluster reports a recoverable window",
                    style="bold red")
        return text
    text.append("; ".join(f"{shown_time(w['start'])} to {shown_time(w['end'])} ({title})"
                          for w, title in windows), style="green")
    return text


def window_line(picture: Any, now: datetime, width: int = 60,
                marks: list[datetime] | None = None) -> Text:
    """Recoverable  2026-10-29 03:00 ━━━━━━━╳━━━━━━━━ now − 12s   timeline 1, no gaps

    `marks`: the moments of destructive events (tui.wal.finder), a red ╳ each."""
    text = Text("Recoverable  ", style="bold")
    if picture is None:
        text.append("no base backups or WAL in the repository (point-in-time recovery is "
                    "not set up)", style="dim")
        return text
    if not picture.windows:
        text.append("✗ nothing: " + ("; ".join(picture.problems) or "no complete base "
                                      "backup"), style="bold red")
        return text
    first = picture.windows[0].start
    span = max(1.0, (now - first).total_seconds())
    cells = [" "] * width
    for window in picture.windows:
        end = window.end or window.start
        a = int((window.start - first).total_seconds() / span * (width - 1))
        b = int((end - first).total_seconds() / span * (width - 1))
        for i in range(max(0, a), min(width, b + 1)):
            cells[i] = "━"
    marked = {min(width - 1, max(0, int((moment - first).total_seconds() / span
                                        * (width - 1)))) for moment in marks or ()}
    text.append(first.strftime("%Y-%m-%d %H:%M") + " ")
    for index, cell in enumerate(cells):
        text.append("╳", style="bold red") if index in marked else text.append(
            cell, style="green")
    latest = picture.latest
    behind = format_duration((now - latest).total_seconds()) if latest else "?"
    text.append(f" now − {behind}")
    timelines = sorted({w.timeline for w in picture.windows})
    gaps = f"{len(picture.gaps)} gap{'s' if len(picture.gaps) != 1 else ''}" \
        if picture.gaps else "no gaps"
    text.append(f"   timeline {', '.join(map(str, timelines))}, ", style="dim")
    text.append(gaps, style="bold yellow" if picture.gaps else "dim")
    if marks is not None:
        text.append(f"\n  ╳ {len(marks)} destructive transaction"
                    f"{'s' if len(marks) != 1 else ''} in the WAL (e: list)",
                    style="bold red" if marks else "dim")
    else:
        text.append("\n  e: find destructive transactions in the WAL (DROP, TRUNCATE, "
                    "big DELETE)", style="dim")
    return text


def wal_view(picture: Any) -> Text:
    text = Text()
    if picture is None:
        text.append("No WAL archive for this cluster. Set archive_command to\n"
                    "  drdeck --config PATH wal push --cluster NAME %p\n"
                    "and take a base backup (runbook base-backup).", style="dim")
        return text
    archive = picture.archive
    for timeline in archive.timelines:
        numbers = sorted(archive.segments.get(timeline, ()))
        history = "  (history file)" if timeline in archive.histories else ""
        if numbers:
            text.append(f"timeline {timeline}: {len(numbers)} segments, "
                        f"{archive.names[(timeline, numbers[0])]} .. "
                        f"{archive.names[(timeline, numbers[-1])]}{history}\n")
        else:
            text.append(f"timeline {timeline}{history}\n")
    for gap in picture.gaps:
        text.append(f"✗ {gap.describe()}\n", style="bold red")
    for window in picture.windows:
        end = window.end.strftime("%Y-%m-%d %H:%M:%S") if window.end else "?"
        text.append(f"window {window.start:%Y-%m-%d %H:%M:%S} → {end} UTC from base backup "
                    f"{window.base.stamp}, ends at {window.last_segment}\n", style="green")
    for problem in picture.problems:
        text.append(f"! {problem}\n", style="yellow")
    return text


# how a source's summary line (tui.sources.Line) is styled
TONE_STYLES = {"title": "bold", "good": "green", "bad": "bold red", "warn": "yellow", "": ""}


def source_view(report: Any, first: bool = False) -> Text:
    """One engine's summary (tui.sources): under the cluster's own WAL picture, a blank
    line apart, or `first` of all."""
    text = Text()
    for index, line in enumerate(report.summary()):
        shown = f"✗ {line.text}" if line.tone == "bad" else line.text
        text.append(("" if first and index == 0 else "\n\n" if index == 0 else "\n")
                    + shown, style=TONE_STYLES.get(line.tone, ""))
    return text


def verified_cell(snapshot: Snapshot, short: bool = False) -> Text:
    record = snapshot.last_verification
    if record is None:
        return Text("never", style="yellow")
    when = record.at[5:10] if short else record.at[:16].replace("T", " ")
    return Text(f"{'✓' if record.ok else '✗'} {when} ({record.how})",
                style="green" if record.ok else "bold red")


# what a snapshot carries to be restored onto a new server, and how it is shown
GLOBALS_WORDS = {
    "complete": ("globals ✓ roles, memberships and the database's own properties", ""),
    "no password hashes": ("globals ✓ WITHOUT password hashes (the backup role could not "
                           "read them): restored roles need new passwords", "yellow"),
    "no roles": ("globals without roles (pg_dumpall could not read them): on a new server, "
                 "make the roles by hand or restore with no_owner", "yellow"),
    "none": ("no globals (taken before drdeck stored them): on a new server, make the roles "
             "by hand or restore with no_owner", "yellow"),
    "missing": ("✗ its globals object is missing", "bold red"),
    "damaged": ("✗ its globals object is damaged (its size differs)", "bold red"),
}


def manifest_view(snapshot: Snapshot, now: datetime) -> Group:
    manifest = snapshot.manifest
    head = Text()
    head.append(f"{snapshot.database} @ {snapshot.stamp}", style="bold")
    if not snapshot.complete:
        head.append(f"\n✗ incomplete: {snapshot.problem}", style="bold red")
    if manifest is None:
        return Group(head)
    head.append(f"\nsha256 {manifest.sha256_stored[:16]}…   PostgreSQL {manifest.server_version}"
                f"   pg_dump {manifest.pg_dump_version}   dumped in "
                f"{format_duration(manifest.dump_seconds)}")
    head.append(f"\n{format_bytes(manifest.plaintext_size)} dump, "
                f"{format_bytes(manifest.stored_size)} stored, ")
    head.append("encrypted for " + ", ".join(r[-16:] for r in manifest.recipients)
                if manifest.encrypted else "NOT ENCRYPTED",
                style="" if manifest.encrypted else "bold red")
    words, style = GLOBALS_WORDS[snapshot.globals_state or "none"]
    head.append(f"\n{words}", style=style)
    if manifest.roles:
        shown = ", ".join(manifest.roles[:6]) + (" …" if len(manifest.roles) > 6 else "")
        head.append(f" · roles it needs: {shown}")
    tables = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    tables.add_column(f"{len(manifest.tables)} tables")
    tables.add_column("rows", justify="right")
    for name, rows in sorted(manifest.tables.items(), key=lambda kv: -kv[1]):
        tables.add_row(name, f"{rows:,}")
    if manifest.large_objects:
        tables.add_row("(large objects)", f"{manifest.large_objects:,}")
    history = Text("\nverifications: ", style="bold")
    if not snapshot.verifications:
        history.append("none yet (v verifies it now)", style="yellow")
    for record in sorted(snapshot.verifications, key=lambda r: r.at, reverse=True)[:5]:
        history.append(f"\n  {'✓' if record.ok else '✗'} {record.at[:19]} {record.how} by "
                       f"{record.by}: {record.detail}", style="" if record.ok else "red")
    if snapshot.refused_verifications:
        history.append(f"\n  {snapshot.refused_verifications} more not counted: unsigned, or "
                       "written for another snapshot or an earlier dump", style="yellow")
    return Group(head, Text(), tables, history)


class InventoryScreen(Screen[None]):
    BINDINGS = [
        Binding("v", "verify", "verify"),
        Binding("R", "restore", "restore"),
        Binding("p", "restore_point", "point in time"),
        Binding("e", "wal_events", "WAL events"),
        Binding("slash", "filter", "filter"),
        Binding("r", "reload", "reload"),
        Binding("escape", "back", "back"),
    ]

    # hidden from a narrow footer; the keys work
    FOOTER_OPTIONAL = ("filter", "reload", "wal_events")

    help_notes = ("Snapshots are newest first; click a column header to sort by it. "
                  "Verify opens the verify-backup runbook, restore opens snapshot-restore, "
                  "both with this snapshot filled in. e lists the destructive transactions "
                  "in the cluster's archived WAL, and marks them on the window.")

    def __init__(self) -> None:
        super().__init__()
        self.inventories: list[ClusterInventory] = []
        self.now: datetime | None = None
        self._shown: list[Snapshot] = []
        self._sort: tuple[int, bool] = (0, True)  # a place among COLUMNS, reversed?
        self._narrow: bool | None = None

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        yield Tabs(id="clusters")
        yield Static("loading the inventory…", id="rpo-line")
        yield Static("", id="window-line")
        with TabbedContent(id="kinds"):
            with TabPane("Snapshots", id="tab-snapshots"):
                with Vertical(id="inventory-list", classes="panel"):
                    yield DeckInput(id="filter", placeholder="filter by database, id, "
                                    "retention (esc: clear)")
                    yield DeckTable(id="snapshots", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="manifest", classes="panel"):
                    yield Static(id="manifest-body")
            with TabPane("Base backups", id="tab-bases"):
                yield DeckTable(id="bases", cursor_type="row", zebra_stripes=True)
            with TabPane("WAL", id="tab-wal"), VerticalScroll():
                yield Static(id="wal-body")
        yield DeckFooter()

    def on_mount(self) -> None:
        crumb = self.query_one(Breadcrumb)
        crumb.mode, crumb.parts = self.app.mode, ("inventory",)
        self.query_one("#inventory-list").border_title = "Snapshots"
        self.query_one("#manifest").border_title = "Manifest"
        table = self.query_one("#snapshots", DataTable)
        self._fit_columns()
        self.query_one("#bases", DataTable).add_columns(
            "Base backup", "Ended (UTC)", "Stored", "Timeline", "LSN", "Encrypted", "State")
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, group="inventory")
    def load(self) -> None:
        from tui.catalog.report import load_inventories

        config = self.app.config
        if not config.clusters:
            where = f"in {config.path}" if config.path else "(no drdeck.toml found)"
            self.post_message(InventoryLoaded(None, None, f"no clusters are configured "
                                              f"{where}; see the README's Configuration"))
            return
        try:
            inventories, now = load_inventories(config, now=self.app.utc_now())
        except Exception as exc:  # shown on screen; the app keeps running
            self.post_message(InventoryLoaded(None, None, str(exc)))
            return
        self.post_message(InventoryLoaded(inventories, now))

    async def on_inventory_loaded(self, message: InventoryLoaded) -> None:
        if message.error:
            self.query_one("#rpo-line", Static).update(Text(message.error, style="bold red"))
            return
        self.inventories, self.now = message.inventories or [], message.now
        tabs = self.query_one(Tabs)
        current = tabs.active
        await tabs.clear()  # gone before a reload adds tabs of the same names
        for inventory in self.inventories:
            await tabs.add_tab(Tab(inventory.name, id=f"cluster-{inventory.name}"))
        if current:
            tabs.active = current
        self._fill()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        self._fill()

    @property
    def cluster(self) -> ClusterInventory | None:
        active = self.query_one(Tabs).active
        for inventory in self.inventories:
            if f"cluster-{inventory.name}" == active:
                return inventory
        return self.inventories[0] if self.inventories else None

    def on_resize(self) -> None:
        if self._fit_columns():
            self._fill()

    def _fit_columns(self) -> bool:
        """The columns for this width; True when they changed."""
        narrow = self.app.size.width < 100
        if narrow == self._narrow:
            return False
        self._narrow = narrow
        table = self.query_one("#snapshots", DataTable)
        table.clear(columns=True)
        table.add_columns(*(NARROW_COLUMNS if narrow else COLUMNS))
        return True

    def _fill(self) -> None:
        inventory, now = self.cluster, self.now
        table = self.query_one("#snapshots", DataTable)
        self._fit_columns()
        narrow = bool(self._narrow)
        table.clear()
        self._shown = []
        if inventory is None or now is None:
            return
        self.query_one("#rpo-line", Static).update(
            rpo_line(inventory, now, self._repository_label(inventory.name)))
        self.query_one(Breadcrumb).parts = ("inventory", inventory.name)
        self._show_window(inventory, now)
        # a cluster its engines alone back up has no drdeck archive to set up
        wal = Text() if inventory.engines_only else wal_view(inventory.pitr)
        for index, report in enumerate(inventory.sources):
            wal.append(source_view(report, first=inventory.engines_only and index == 0))
        self.query_one("#wal-body", Static).update(wal)
        self._fill_bases(inventory)
        needle = self.query_one("#filter", DeckInput).value.casefold()
        rows = [s for s in inventory.snapshots
                if not needle or needle in f"{s.database} {s.stamp} {s.retention}".casefold()]
        column, reverse = self._sort
        rows.sort(key=lambda s: self._sort_key(s, column), reverse=reverse)
        for snapshot in rows:
            self._shown.append(snapshot)
            table.add_row(*self._cells(snapshot, now, narrow))
        self._show_manifest(0)

    def _show_window(self, inventory: ClusterInventory, now: datetime) -> None:
        if inventory.engines_only:
            self.query_one("#window-line", Static).update(engines_window_line(inventory))
            return
        found = self.app.wal_events.get(inventory.name)
        marks = None if found is None else [
            datetime.fromisoformat(item.event.commit_time) for item in found.events
            if item.event.commit_time]
        # the bar takes what the words beside it leave: all of the line on 80 columns
        width = min(60, max(10, self.app.size.width - 68))
        self.query_one("#window-line", Static).update(
            window_line(inventory.pitr, now, width, marks=marks))

    def on_screen_resume(self) -> None:  # back from the events list: its marks
        inventory = self.cluster
        if inventory is not None and self.now is not None:
            self._show_window(inventory, self.now)

    def action_wal_events(self) -> None:
        from .wal_events import WalEventsScreen

        inventory = self.cluster
        if inventory is None:
            self.notify("no cluster", severity="warning")
            return
        self.app.push_screen(WalEventsScreen(inventory.name))

    def _repository_label(self, cluster: str) -> str:
        try:
            repository = self.app.config.repository_for(cluster)
        except Exception:  # shown as the inventory's own error line
            return "?"
        return f"{repository.name} ({repository.type})"

    def _fill_bases(self, inventory: ClusterInventory) -> None:
        table = self.query_one("#bases", DataTable)
        table.clear()
        picture = inventory.pitr
        for manifest, stamp, problem in (picture.base_backups if picture else []):
            if manifest is None:
                table.add_row(stamp, "-", "-", "-", "-", "-", Text(f"✗ {problem}", style="red"))
                continue
            state = Text(f"✗ {problem}", style="red") if problem else Text("✓", style="green")
            table.add_row(stamp, manifest.stopped.strftime("%Y-%m-%d %H:%M:%S"),
                          format_bytes(manifest.total_stored_size), str(manifest.timeline),
                          f"{manifest.start_lsn}..{manifest.stop_lsn}",
                          "✓" if manifest.encrypted else Text("✗ NO", style="bold red"), state)

    @staticmethod
    def _sort_key(snapshot: Snapshot, column: int) -> Any:
        manifest = snapshot.manifest
        return [
            snapshot.stamp, snapshot.database,
            manifest.stored_size if manifest else -1, snapshot.stamp,
            snapshot.retention or "", str(snapshot.encrypted),
            snapshot.last_verification.at if snapshot.last_verification else "",
        ][column]

    @staticmethod
    def _cells(snapshot: Snapshot, now: datetime, narrow: bool = False) -> list[Any]:
        manifest = snapshot.manifest
        taken = Text(snapshot.taken_at.strftime("%Y-%m-%d %H:%M" if narrow
                                                else "%Y-%m-%d %H:%M:%S"))
        if not snapshot.complete:
            taken = Text(f"✗ {taken.plain}", style="bold red")
        stored = format_bytes(manifest.stored_size if manifest else (
            snapshot.dump.size if snapshot.dump else None))
        encrypted = {True: Text("✓", style="green"), False: Text("✗ NO", style="bold red"),
                     None: Text("?")}[snapshot.encrypted]
        retention = snapshot.retention or ("incomplete" if not snapshot.complete else "-")
        if narrow:
            if len(retention) > NARROW_RETENTION:
                retention = retention[:NARROW_RETENTION - 1] + "…"
            return [taken, snapshot.database, format_duration(snapshot.age_s(now)),
                    retention, encrypted, verified_cell(snapshot, short=True)]
        return [taken, snapshot.database, stored, format_duration(snapshot.age_s(now)),
                retention, encrypted, verified_cell(snapshot)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "snapshots":
            self._show_manifest(event.cursor_row)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id != "snapshots":
            return
        column, reverse = self._sort
        clicked = NARROW_OF_FULL[event.column_index] if self._narrow else event.column_index
        self._sort = (clicked, not reverse if column == clicked else False)
        self._fill()

    def _show_manifest(self, row: int) -> None:
        body = self.query_one("#manifest-body", Static)
        if not self._shown or self.now is None:
            engines_only = self.cluster is not None and self.cluster.engines_only
            body.update(Text("drdeck keeps no snapshots of this cluster: it has no repository"
                             if engines_only else "no snapshots", style="dim"))
            return
        body.update(manifest_view(self._shown[min(row, len(self._shown) - 1)], self.now))

    @property
    def selected(self) -> Snapshot | None:
        if not self._shown:
            return None
        row = self.query_one("#snapshots", DataTable).cursor_row
        return self._shown[min(row, len(self._shown) - 1)]

    def _open(self, runbook: str, extra: dict[str, str] | None = None) -> None:
        snapshot = self.selected
        if snapshot is None:
            self.notify("no snapshot selected", severity="warning")
            return
        if not snapshot.complete:
            self.notify(f"this snapshot is incomplete: {snapshot.problem}", severity="error")
            return
        given = {"cluster": snapshot.cluster, "database": snapshot.database,
                 "snapshot": snapshot.stamp, **(extra or {})}
        self.app.open_runbook_named(runbook, given)

    def action_verify(self) -> None:
        self._open("verify-backup")

    def action_restore(self) -> None:
        self._open("snapshot-restore")

    def action_restore_point(self) -> None:
        inventory = self.cluster
        picture = inventory.pitr if inventory else None
        if inventory is None or picture is None or not picture.windows:
            self.notify("no recoverable window for this cluster: it needs a base backup and "
                        "its WAL archive", severity="error")
            return
        given = {"cluster": inventory.name}
        if picture.latest is not None:
            given["target"] = picture.latest.isoformat()
        self.app.open_runbook_named("pitr-restore", given)

    def action_reload(self) -> None:
        self.query_one("#rpo-line", Static).update("loading the inventory…")
        self.load()

    def action_filter(self) -> None:
        box = self.query_one("#filter", DeckInput)
        box.add_class("visible")
        box.focus()

    def on_input_changed(self, event: DeckInput.Changed) -> None:
        if event.input.id == "filter":
            self._fill()

    def on_input_submitted(self, event: DeckInput.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#snapshots", DataTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", DeckInput)
        if box.has_class("visible"):
            box.value = ""
            box.remove_class("visible")
            self.query_one("#snapshots", DataTable).focus()
            return
        self.app.pop_screen()
