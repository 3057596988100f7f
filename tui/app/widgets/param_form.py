"""A runbook's parameters as a form: one row per parameter, checked as the operator types.

Used by the briefing before a first run, and wherever a run's values are edited again.
A field is right only when a run would accept its value: the text parses, a port is
free, a new directory is empty, a recovery target lies in the recoverable window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from tui.runbook.model import Param, Runbook
from tui.runbook.params import check_on_this_machine, coerce
from tui.runbook.templating import to_text

from .._shared import DeckInput

PLACEHOLDERS = {
    "duration": "e.g. 15m, 4h, 1h30m",
    "timestamp": "e.g. 2026-11-27 14:29:59+00:00",
    "dsn": "postgresql://user@host:5432/dbname",
    "int": "a whole number",
    "port": "e.g. 5433 (free on this machine)",
    "new_directory": "e.g. /var/lib/postgresql/restored (absent or empty)",
    "recovery_target": "e.g. 2026-11-27 14:29:59+00, 0/3000060, latest",
    "secret": "hidden as you type; never shown or recorded",
    "expect_back": 'e.g. table "shop"."public"."orders"; rows >= 5000 (empty: no check)',
}

# what else a field's value must pass, beyond its type: given the typed value, the error
ExtraCheck = Callable[[Param, Any], str | None]


class ParamField(Vertical):
    """One parameter: label, typed input, help, and the error right next to it."""

    def __init__(self, param: Param, initial: str | None,
                 extra_check: ExtraCheck | None = None, settled: str | None = None) -> None:
        super().__init__(classes="field")
        self.param = param
        self.initial = initial
        self.extra_check = extra_check
        # the value a running run already took: its port is now in use by the server it
        # restored, its directory full; judged against the machine only once changed
        self.settled = settled

    def compose(self) -> ComposeResult:
        param = self.param
        required = "" if not param.required else "  required"
        yield Label(f"{param.name}  ({param.type}){required}", classes="field-label")
        field_id = f"param-{param.name}"
        if param.type == "choice":
            options = [(c, c) for c in param.choices]
            value = self.initial if self.initial in param.choices else Select.BLANK
            yield Select(options, value=value, id=field_id, allow_blank=True)
        elif param.type == "snapshot":
            # the inventory fills this in once it is read; until then, what we were given
            initial = self.initial or "latest"
            options = [("latest (the newest complete snapshot)", "latest")]
            if initial != "latest":
                options.append((initial, initial))
            yield Select(options, value=initial, id=field_id, allow_blank=False)
        elif param.type == "bool":
            on = (self.initial or "").strip().lower() in ("true", "yes", "on", "1")
            with Horizontal(classes="switch-row"):
                yield Switch(value=on, id=field_id)
                yield Static("", classes="switch-state", id=f"state-{param.name}")
        else:
            # a value selected on focus would be replaced by the first key typed (`?` for
            # help, say): the operator's value stays, the cursor goes to its end
            yield DeckInput(value=self.initial or "", id=field_id,
                            password=param.type == "secret", select_on_focus=False,
                            placeholder=PLACEHOLDERS.get(param.type, ""))
        if param.help:
            yield Static(param.help, classes="field-help")
        if param.warn_when_on:
            yield Static(f"⚠ {param.warn_when_on}", classes="field-warning",
                         id=f"warning-{param.name}")
        yield Static("", classes="field-note", id=f"note-{param.name}")
        yield Static("", classes="field-error", id=f"error-{param.name}")

    def on_mount(self) -> None:
        if self.param.type == "bool":
            self.show_switch(self.query_one(Switch).value)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self.show_switch(event.value)

    def show_switch(self, on: bool) -> None:
        state = self.query_one(f"#state-{self.param.name}", Static)
        state.update("ON" if on else "OFF")
        state.set_class(on, "on")
        if self.param.warn_when_on:
            self.query_one(f"#warning-{self.param.name}").set_class(on, "visible")

    @property
    def raw(self) -> str | None:
        widget = self.query_one(f"#param-{self.param.name}")
        if isinstance(widget, Switch):
            return "true" if widget.value else "false"
        if isinstance(widget, Select):
            return None if widget.value is Select.BLANK else str(widget.value)
        value = widget.value
        return value if value.strip() or self.param.type == "string" else None

    @property
    def blank(self) -> bool:
        """Left empty: an optional parameter then takes the runbook's default."""
        raw = self.raw
        return raw is None or (raw == "" and self.param.type != "string")

    def validate(self) -> str | None:
        """The error to show, or None. Empty optional fields take the runbook's default."""
        if self.blank:
            return "required" if self.param.required else None
        try:
            value = coerce(self.param, self.raw)
            if self.settled is not None and self.raw == self.settled:
                return None
            check_on_this_machine(self.param, value)
        except ValueError as exc:
            return str(exc)
        return self.extra_check(self.param, value) if self.extra_check else None

    def show_error(self, error: str | None) -> None:
        label = self.query_one(f"#error-{self.param.name}", Static)
        label.update(f"✗ {error}" if error else "")
        label.set_class(bool(error), "visible")

    def show_note(self, note: str) -> None:
        label = self.query_one(f"#note-{self.param.name}", Static)
        label.update(note)
        label.set_class(bool(note), "visible")

    def focus_input(self) -> None:
        self.query_one(f"#param-{self.param.name}").focus()

    def offer(self, options: list[tuple[str, str]]) -> None:
        """Snapshot choices from the inventory; the current choice stays selected."""
        select = self.query_one(f"#param-{self.param.name}", Select)
        current = select.value
        values = {value for _, value in options}
        if current not in values and current is not Select.BLANK:
            options = [*options, (str(current), str(current))]
        select.set_options(options)
        select.value = current


class SnapshotsListed(Message):
    def __init__(self, options: list[tuple[str, str]], note: str = "") -> None:
        super().__init__()
        self.options, self.note = options, note


class WindowRead(Message):
    """The recoverable window of the cluster a recovery target is for (None: unknown)."""

    def __init__(self, picture: Any, note: str) -> None:
        super().__init__()
        self.picture, self.note = picture, note


class ParamForm(VerticalScroll):
    """Every parameter of `runbook`, starting from `given` (text values that win over the
    runbook's defaults). `values()` gives the typed values once every field is right."""

    # the rows' common look (.field, .field-label, .field Input ...) is in drdeck.tcss,
    # shared with the dialog that asks for a resumed run's secrets
    DEFAULT_CSS = """
    ParamForm { height: 1fr; }
    ParamForm .switch-row { height: auto; }
    ParamForm .switch-state { width: auto; padding: 1 1; text-style: bold; color: $text-muted; }
    ParamForm .switch-state.on { color: $text; }
    ParamForm .field-warning { color: $warning; text-style: bold; display: none; }
    ParamForm .field-warning.visible { display: block; }
    ParamForm .field-note { color: $text-muted; display: none; }
    ParamForm .field-note.visible { display: block; }
    """

    class Checked(Message):
        """A field was checked again: `wrong` fields now stand in the way of a run."""

        def __init__(self, wrong: int) -> None:
            super().__init__()
            self.wrong = wrong

    def __init__(self, runbook: Runbook, given: dict[str, str], *,
                 id: str | None = "form-fields", settled: bool = False) -> None:
        super().__init__(id=id)
        self.runbook = runbook
        self.given = dict(given)
        self.settled = settled  # `given` is what a running run uses (see ParamField.settled)
        self._picture: Any = None  # the recoverable window, once read

    def compose(self) -> ComposeResult:
        for param in self.runbook.params.values():
            yield ParamField(param, self._initial(param), self._reachable,
                             settled=self.given.get(param.name) if self.settled else None)
        if not self.runbook.params:
            yield Static("This runbook takes no parameters.")

    def _initial(self, param: Param) -> str | None:
        if param.name in self.given:
            return self.given[param.name]
        return None if param.required else to_text(param.default)

    def on_mount(self) -> None:
        if self._fields_of("snapshot"):
            self.list_snapshots(self._value("cluster"), self._value("database"))
        if self._reads_a_window():
            self.read_window(self._value("cluster"))

    @property
    def fields(self) -> list[ParamField]:
        return list(self.query(ParamField))

    def _fields_of(self, kind: str) -> list[ParamField]:
        return [f for f in self.fields if f.param.type == kind]

    def focus_first_to_fill(self) -> bool:
        """Focus the first field that is wrong or required; False when none is."""
        for field in self.fields:
            if field.validate() is not None or field.param.required:
                field.focus_input()
                return True
        return False

    def raw_values(self) -> dict[str, str]:
        """What each field holds as text, to open the form again with it (blank ones left
        out, so they take the default again)."""
        return {f.param.name: f.raw for f in self.fields if f.raw is not None}

    def wrong(self) -> int:
        """How many fields a run would refuse now (their errors are not shown)."""
        return sum(1 for field in self.fields if field.validate() is not None)

    def values(self) -> tuple[dict[str, Any] | None, int]:
        """The typed parameters, or None with how many fields are wrong (errors shown,
        the first wrong field focused)."""
        values: dict[str, Any] = {}
        wrong = 0
        first_wrong: ParamField | None = None
        for field in self.fields:
            error = field.validate()
            field.show_error(error)
            if error:
                wrong += 1
                first_wrong = first_wrong or field
                continue
            if field.blank:
                values[field.param.name] = field.param.default
            else:
                values[field.param.name] = coerce(field.param, field.raw)
        if first_wrong is not None:
            first_wrong.focus_input()
            return None, wrong
        return values, 0

    def _value(self, name: str) -> str:
        field = next((f for f in self.fields if f.param.name == name), None)
        return (field.raw or "") if field else ""

    # --- the snapshot picker ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="snapshots")
    def list_snapshots(self, cluster: str, database: str) -> None:
        from tui.catalog.inventory import now_utc, read_cluster
        from tui.durations import format_duration
        from tui.snapshots.targets import resolve

        try:
            target = resolve(self.app.config, cluster, database)
            inventory = read_cluster(target.store, target.cluster.name, target.cluster.rpo,
                                     target.signing)
        except Exception as exc:  # a form field can say it; the run would say it again
            self.post_message(SnapshotsListed([], f"cannot list snapshots: {exc}"))
            return
        now = now_utc()
        options = [("latest (the newest complete snapshot)", "latest")]
        for snap in inventory.complete(target.database):
            verified = snap.last_verification
            mark = ("✓ verified" if verified.ok else "✗ verification failed") if verified \
                else "not verified"
            options.append((f"{snap.stamp}  {format_duration(snap.age_s(now))} old  {mark}",
                            snap.stamp))
        self.post_message(SnapshotsListed(options))

    def on_snapshots_listed(self, message: SnapshotsListed) -> None:
        for field in self._fields_of("snapshot"):
            field.offer(message.options)
            if message.note:
                field.show_error(message.note)

    # --- the recoverable window ---------------------------------------------------------

    def _reads_a_window(self) -> bool:
        """A recovery target whose window drdeck can read for the chosen cluster: the
        runbook restores from a source whose window its action names (Action.window_of)."""
        return bool(self._fields_of("recovery_target")) and self._window_engine() is not None

    def _window_engine(self) -> str | None:
        from tui.engine.actions import get_action

        for step in self.runbook.steps:
            action = get_action(step.action)
            if action is not None and action.window_of:
                return action.window_of
        return None

    @work(thread=True, exclusive=True, group="window")
    def read_window(self, cluster: str) -> None:
        config = self.app.config
        engine = self._window_engine()
        try:
            chosen = config.cluster(cluster or None)
            picture = self._picture_of(chosen, engine)
        except Exception as exc:  # the field says so; the pre-flight will check again
            self.post_message(WindowRead(None, f"cannot read the recoverable window: {exc}"))
            return
        self.post_message(WindowRead(picture, f"recoverable ({chosen.name}): "
                                     f"{picture.describe_windows()}"))

    def _picture_of(self, cluster: Any, kind: str) -> Any:
        """The cluster's recovery picture from its source of `kind` (tui.sources)."""
        from tui.sources import source_for

        source = source_for(self.app.config, cluster, kind)
        if source is None:
            raise ValueError(f"cluster {cluster.name!r} has no {kind} source")
        return source.recovery_picture()

    def on_window_read(self, message: WindowRead) -> None:
        self._picture = message.picture
        for field in self._fields_of("recovery_target"):
            field.show_note(message.note)
            if not field.blank:
                field.show_error(field.validate())
        self.post_message(self.Checked(self.wrong()))

    def _reachable(self, param: Param, value: Any) -> str | None:
        """A recovery target the window cannot reach is refused here, in the words the
        pre-flight would use, with what can be reached."""
        if param.type != "recovery_target" or self._picture is None:
            return None
        from tui.pitr.target import TargetRefused, parse_target, plan_recovery

        try:
            plan_recovery(parse_target(value), self._picture)
        except TargetRefused as exc:
            return str(exc)
        return None

    # --- checked as the operator types --------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        self._revalidate(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._revalidate(event.select)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self._revalidate(event.switch)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("param-cluster", "param-database"):
            if self._fields_of("snapshot"):
                self.list_snapshots(self._value("cluster"), self._value("database"))
            if event.input.id == "param-cluster" and self._reads_a_window():
                self.read_window(self._value("cluster"))
        self.screen.focus_next()

    def _revalidate(self, widget: Widget) -> None:
        field = next((a for a in widget.ancestors if isinstance(a, ParamField)), None)
        if field is not None:
            field.show_error(field.validate())
            self.post_message(self.Checked(self.wrong()))
