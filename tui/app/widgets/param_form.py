"""A runbook's parameters as a form: one row per parameter, checked as the operator types.

Used by the briefing before a first run, and wherever a run's values are edited again.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from tui.runbook.model import Param, Runbook
from tui.runbook.params import coerce
from tui.runbook.templating import to_text

from .._shared import DeckInput

PLACEHOLDERS = {
    "duration": "e.g. 15m, 4h, 1h30m",
    "timestamp": "e.g. 2026-11-27 14:29:59+00:00",
    "dsn": "postgresql://user@host:5432/dbname",
    "int": "a whole number",
    "secret": "hidden as you type; never shown or recorded",
}


class ParamField(Vertical):
    """One parameter: label, typed input, help, and the error right next to it."""

    def __init__(self, param: Param, initial: str | None) -> None:
        super().__init__(classes="field")
        self.param = param
        self.initial = initial

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
            yield Switch(value=self.initial in ("true", "yes", "on", "1"), id=field_id)
        else:
            yield DeckInput(value=self.initial or "", id=field_id,
                            password=param.type == "secret",
                            placeholder=PLACEHOLDERS.get(param.type, ""))
        if param.help:
            yield Static(param.help, classes="field-help")
        yield Static("", classes="field-error", id=f"error-{param.name}")

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
            coerce(self.param, self.raw)
        except ValueError as exc:
            return str(exc)
        return None

    def show_error(self, error: str | None) -> None:
        label = self.query_one(f"#error-{self.param.name}", Static)
        label.update(f"✗ {error}" if error else "")
        label.set_class(bool(error), "visible")

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


class ParamForm(VerticalScroll):
    """Every parameter of `runbook`, starting from `given` (text values that win over the
    runbook's defaults). `values()` gives the typed values once every field is right."""

    def __init__(self, runbook: Runbook, given: dict[str, str], *,
                 id: str | None = "form-fields") -> None:
        super().__init__(id=id)
        self.runbook = runbook
        self.given = dict(given)

    def compose(self) -> ComposeResult:
        for param in self.runbook.params.values():
            yield ParamField(param, self._initial(param))
        if not self.runbook.params:
            yield Static("This runbook takes no parameters.")

    def _initial(self, param: Param) -> str | None:
        if param.name in self.given:
            return self.given[param.name]
        return None if param.required else to_text(param.default)

    def on_mount(self) -> None:
        if any(f.param.type == "snapshot" for f in self.fields):
            self.list_snapshots(self._value("cluster"), self._value("database"))

    @property
    def fields(self) -> list[ParamField]:
        return list(self.query(ParamField))

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

    @work(thread=True, exclusive=True, group="snapshots")
    def list_snapshots(self, cluster: str, database: str) -> None:
        from tui.catalog.inventory import now_utc, read_cluster
        from tui.durations import format_duration
        from tui.snapshots.targets import resolve

        try:
            target = resolve(self.app.config, cluster, database)
            inventory = read_cluster(target.store, target.cluster.name, target.cluster.rpo)
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
        for field in self.fields:
            if field.param.type == "snapshot":
                field.offer(message.options)
                if message.note:
                    field.show_error(message.note)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._revalidate(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._revalidate(event.select)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        snapshots_follow = any(f.param.type == "snapshot" for f in self.fields)
        if snapshots_follow and event.input.id in ("param-cluster", "param-database"):
            self.list_snapshots(self._value("cluster"), self._value("database"))
        self.screen.focus_next()

    def _revalidate(self, widget: Widget) -> None:
        field = next((a for a in widget.ancestors if isinstance(a, ParamField)), None)
        if field is not None:
            field.show_error(field.validate())
