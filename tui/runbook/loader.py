"""Read a runbook file, check every part of it, and build the Runbook model.

All problems are collected (not just the first) and each names the file, the
line and column of the offending key, and what to write instead. Nothing here
runs anything; nothing here raises anything but RunbookInvalid.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from tui.durations import parse_duration
from tui.errors import Problem, RunbookInvalid
from tui.runbook import templating
from tui.runbook.locate import locate
from tui.runbook.model import (
    MISSING,
    ON_FAILURE,
    PARAM_TYPES,
    SCENARIOS,
    Check,
    Expect,
    Param,
    Runbook,
    Step,
)
from tui.runbook.params import coerce
from tui.tomlfile import Unreadable, closest, parse, read_source, type_name

KeyPath = tuple[str | int, ...]

RUNBOOK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
STEP_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_PARAM_NAMES = {"env", "run", "steps"}

RUNBOOK_KEYS = {"name", "title", "scenario", "description", "rto", "rpo", "contacts", "lock",
                "cadence"}
PARAM_KEYS = {"type", "help", "default", "choices", "warn_when_on"}
STEP_KEYS = {
    "id", "title", "action", "with", "timeout", "retries", "retry_delay", "on_failure",
    "confirm", "confirm_input", "confirm_when", "capture", "description", "checks", "expect",
    "when",
}
CHECK_KEYS = {"name", "query", "command", "dsn", "expect"}
EXPECT_KEYS = {"equals", "min", "max", "rows", "contains", "matches", "exit_code"}


def load_runbook(path: str | Path) -> Runbook:
    path = Path(path)
    try:
        source, data = read_source(path, "runbook")
    except Unreadable as exc:
        raise RunbookInvalid([exc.problem]) from None
    runbook = load_text(source, str(path))
    return replace(runbook, path=path, sha256=hashlib.sha256(data).hexdigest())


def load_text(source: str, shown_path: str = "<runbook>") -> Runbook:
    try:
        document = parse(source, shown_path)
    except Unreadable as exc:
        raise RunbookInvalid([exc.problem]) from None
    checker = _Checker(source, shown_path)
    runbook = checker.build(document)
    if checker.problems or runbook is None:
        problems = sorted(set(checker.problems), key=lambda p: (p.line, p.col, p.message))
        raise RunbookInvalid(problems or [Problem(shown_path, 1, 1, "invalid runbook")])
    return runbook


class _Checker:
    def __init__(self, source: str, path: str):
        self.source = source
        self.path = path
        self.problems: list[Problem] = []
        # parameters reported already: naming them elsewhere is not a second mistake
        self.broken_params: set[str] = set()

    def problem(self, where: KeyPath, message: str) -> None:
        # one line per problem: a key or value from the file may hold control characters
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        line, col = locate(self.source, where)
        self.problems.append(Problem(self.path, line, col, message))

    # --- small typed getters -------------------------------------------------------

    def unknown_keys(self, table: dict, allowed: set[str], where: KeyPath, what: str) -> None:
        for key in table:
            if key not in allowed:
                hint = closest(key, allowed)
                suffix = f" (did you mean {hint!r}?)" if hint else ""
                self.problem((*where, key), f"unknown key {key!r} in {what}{suffix}")

    def text(self, table: dict, key: str, where: KeyPath, required: bool = False,
             default: str | None = None) -> str | None:
        if key not in table:
            if required:
                self.problem(where, f"missing required key {key!r}")
            return default
        value = table[key]
        if not isinstance(value, str):
            self.problem((*where, key), f"{key} must be text, not {type_name(value)}")
            return default
        return value

    def duration(self, table: dict, key: str, where: KeyPath) -> float | None:
        value = self.text(table, key, where)
        if value is None:
            if isinstance(table.get(key), int | float) and not isinstance(table.get(key), bool):
                # text() already complained; say how to write it
                self.problems[-1] = Problem(
                    self.problems[-1].path, self.problems[-1].line, self.problems[-1].col,
                    f"{key} must be a duration in quotes, like \"{table[key]}s\"",
                )
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem((*where, key), f"bad duration for {key}: {exc}")
            return None

    def boolean(self, table: dict, key: str, where: KeyPath, default: bool = False) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem((*where, key), f"{key} must be true or false, not {type_name(value)}")
            return default
        return value

    def table(self, parent: dict, key: str, where: KeyPath) -> dict | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem((*where, key), f"{key} must be a table, not {type_name(value)}")
            return None
        return value

    # --- the document ---------------------------------------------------------------

    def build(self, doc: dict) -> Runbook | None:
        self.unknown_keys(doc, {"runbook", "params", "steps"}, (), "the runbook file")
        head = self.table(doc, "runbook", ())
        if head is None and "runbook" not in doc:
            self.problem((), "missing required table [runbook] with name and title")
        header = self.header(head) if head is not None else None
        params = self.params(doc)
        if header and header.get("lock"):
            self.templates(header["lock"], ("runbook", "lock"), _Names(params,
                                                                      self.broken_params),
                           "text")
        steps = self.steps(doc, params)
        if self.problems or header is None:
            return None
        return Runbook(params=params, steps=tuple(steps), **header)

    def header(self, head: dict) -> dict | None:
        where: KeyPath = ("runbook",)
        self.unknown_keys(head, RUNBOOK_KEYS, where, "[runbook]")
        name = self.text(head, "name", where, required=True)
        if name is not None and not RUNBOOK_NAME.fullmatch(name):
            self.problem((*where, "name"),
                         f"name {name!r}: use lowercase letters, digits and '-'")
        title = self.text(head, "title", where, required=True)
        scenario = self.text(head, "scenario", where, default="other")
        if scenario not in SCENARIOS:
            self.problem((*where, "scenario"),
                         f"scenario {scenario!r} is not one of: {', '.join(SCENARIOS)}")
        contacts = head.get("contacts", [])
        if not isinstance(contacts, list) or not all(isinstance(c, str) for c in contacts):
            self.problem((*where, "contacts"), "contacts must be a list of text")
            contacts = []
        header = {
            "name": name,
            "title": title,
            "scenario": scenario or "other",
            "description": self.text(head, "description", where, default="") or "",
            "rto": self.duration(head, "rto", where),
            "rpo": self.duration(head, "rpo", where),
            "contacts": tuple(contacts),
            "lock": self.text(head, "lock", where),
            "cadence": self.duration(head, "cadence", where),
        }
        return None if name is None or title is None else header

    def params(self, doc: dict) -> dict[str, Param]:
        table = self.table(doc, "params", ())
        result: dict[str, Param] = {}
        for name, spec in (table or {}).items():
            where: KeyPath = ("params", name)
            if not PARAM_NAME.fullmatch(name) or name in RESERVED_PARAM_NAMES:
                self.problem(where, f"parameter name {name!r}: use lowercase letters, digits "
                             "and '_' (and not env, run or steps)")
                continue
            if not isinstance(spec, dict):
                self.problem(where, f"[params.{name}] must be a table with at least a type")
                continue
            self.unknown_keys(spec, PARAM_KEYS, where, f"[params.{name}]")
            kind = self.text(spec, "type", where, required=True)
            if kind is None:
                continue
            if kind not in PARAM_TYPES:
                self.problem((*where, "type"),
                             f"type {kind!r} is not one of: {', '.join(PARAM_TYPES)}")
                continue
            choices = spec.get("choices", [])
            if kind == "choice":
                if not choices or not isinstance(choices, list) or not all(
                    isinstance(c, str) for c in choices
                ):
                    self.problem(where, "a choice parameter needs choices = [\"a\", \"b\", ...]")
                    continue
            elif "choices" in spec:
                self.problem((*where, "choices"), "choices only go with type = \"choice\"")
                continue
            warning = self.text(spec, "warn_when_on", where, default="") or ""
            if warning and kind != "bool":
                self.problem((*where, "warn_when_on"),
                             "warn_when_on only goes with type = \"bool\" (it is shown while "
                             "the switch is on)")
            param = Param(name, kind, self.text(spec, "help", where, default="") or "",
                          spec.get("default", MISSING), tuple(choices), warning)
            if "default" in spec:
                if kind == "secret":
                    self.problem((*where, "default"),
                                 "a secret parameter cannot have a default in the runbook")
                    self.broken_params.add(name)
                    continue
                try:
                    default = coerce(param, spec["default"])
                except ValueError as exc:
                    self.problem((*where, "default"), f"default of {name}: {exc}")
                    self.broken_params.add(name)
                    continue
                param = Param(name, kind, param.help, default, param.choices, warning)
            result[name] = param
        return result

    def steps(self, doc: dict, params: dict[str, Param]) -> list[Step]:
        raw = doc.get("steps")
        if raw is None:
            self.problem((), "a runbook needs at least one [[steps]]")
            return []
        if not isinstance(raw, list) or not raw:
            self.problem(("steps",), "steps must be a list of [[steps]] tables")
            return []
        names = _Names(params, self.broken_params)
        steps: list[Step] = []
        seen: set[str] = set()
        for index, spec in enumerate(raw):
            where: KeyPath = ("steps", index)
            if not isinstance(spec, dict):
                self.problem(where, "each step must be a table")
                continue
            step_id = spec.get("id")
            duplicate = isinstance(step_id, str) and step_id in seen
            if duplicate:
                self.problem((*where, "id"), f"duplicate step id {step_id!r}")
            elif isinstance(step_id, str):
                seen.add(step_id)
            step = self.step(spec, where, names)
            if step is None:
                names.step_failed_to_load(spec)
                continue
            if not duplicate:
                steps.append(step)
            names.step_done(step)
        return steps

    def step(self, spec: dict, where: KeyPath, names: _Names) -> Step | None:
        from tui.engine.actions import ACTIONS, get_action

        problems_before = len(self.problems)
        self.unknown_keys(spec, STEP_KEYS, where, "a step")
        step_id = self.text(spec, "id", where, required=True)
        title = self.text(spec, "title", where, required=True)
        action_name = self.text(spec, "action", where, required=True)
        if step_id is not None and not STEP_ID.fullmatch(step_id):
            self.problem((*where, "id"), f"step id {step_id!r}: use lowercase letters, "
                         "digits, '-' and '_'")
            step_id = None
        action = get_action(action_name) if action_name else None
        if action_name is not None and action is None:
            hint = closest(action_name, set(ACTIONS))
            known = f"did you mean {hint!r}?" if hint else "known: " + ", ".join(sorted(ACTIONS))
            self.problem((*where, "action"), f"unknown action {action_name!r} ({known})")
        args = self.table(spec, "with", where) or {}
        if action is not None:
            self.action_args(action, args, (*where, "with"), names)
        retries = spec.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            self.problem((*where, "retries"), "retries must be a whole number, 0 or more")
            retries = 0
        on_failure = self.text(spec, "on_failure", where, default="abort")
        if on_failure not in ON_FAILURE:
            self.problem((*where, "on_failure"),
                         f"on_failure {on_failure!r} is not one of: {', '.join(ON_FAILURE)}")
        capture = self.boolean(spec, "capture", where)
        if capture and action is not None and not action.produces_output:
            self.problem((*where, "capture"), f"a {action_name} step has no output to capture")
        texts = {}
        for key in ("confirm", "confirm_input", "confirm_when", "description", "when"):
            texts[key] = self.text(spec, key, where)
            if texts[key] is not None:
                self.templates(texts[key], (*where, key), names, "text")
        expect = self.expect(spec, "expect", where) if "expect" in spec else None
        if action is not None and action.needs_expect and expect is None:
            self.problem(where, f"a {action_name} step needs an expect table: what to wait for")
        checks = self.checks(spec, where, names, has_dsn="dsn" in args)
        timeout = self.duration(spec, "timeout", where)
        retry_delay = self.duration(spec, "retry_delay", where)
        if None in (step_id, title, action) or len(self.problems) > problems_before:
            return None
        return Step(
            id=step_id, title=title, action=action_name, args=args, timeout=timeout,
            retries=retries, retry_delay=5.0 if retry_delay is None else retry_delay,
            on_failure=on_failure, confirm=texts["confirm"],
            confirm_input=texts["confirm_input"], capture=capture,
            description=texts["description"] or "", checks=tuple(checks), expect=expect,
            when=texts["when"], confirm_when=texts["confirm_when"],
        )

    def action_args(self, action: Any, args: dict, where: KeyPath, names: _Names) -> None:
        self.unknown_keys(args, set(action.args), where, f"the {action.name} action's `with`")
        for key, spec in action.args.items():
            if key not in args:
                if spec.required:
                    self.problem(where, f"the {action.name} action needs with.{key}: {spec.help}")
                continue
            self.arg(spec.kind, args[key], (*where, key), names)
        if action.name == "sql" and ("query" in args) == ("operator_query" in args):
            self.problem(where, "an sql step needs either with.query or with.operator_query")
        if action.name == "wait" and ("query" in args) == ("command" in args):
            self.problem(where, "a wait step polls either a query (with a dsn) or a command")
        if action.name == "wait" and "query" in args and "dsn" not in args:
            self.problem(where, "a wait step with a query needs with.dsn")

    def arg(self, kind: str, value: Any, where: KeyPath, names: _Names) -> None:
        key = where[-1]
        if kind in ("text", "sql"):
            if not isinstance(value, str):
                self.problem(where, f"{key} must be text, not {type_name(value)}")
                return
            self.templates(value, where, names, "sql" if kind == "sql" else "text")
        elif kind == "command":
            self.command(value, where, names)
        elif kind in ("env", "sql_params"):
            if not isinstance(value, dict):
                self.problem(where, f"{key} must be a table, not {type_name(value)}")
                return
            for name, item in value.items():
                if kind == "env" and not isinstance(item, str):
                    self.problem((*where, name), f"{key}.{name} must be text")
                elif isinstance(item, str):
                    self.templates(item, (*where, name), names, "text")
                elif isinstance(item, dict | list):
                    self.problem((*where, name), f"{key}.{name} must be a single value")
        elif kind in ("int", "bool", "duration"):
            expected = {"int": int, "bool": bool}.get(kind)
            if isinstance(value, str):
                refs = self.templates(value, where, names, "text")
                if not refs and kind == "duration":
                    try:
                        parse_duration(value)
                    except ValueError as exc:
                        self.problem(where, f"bad duration for {key}: {exc}")
                elif not refs:
                    self.problem(where, f"{key} must be {type_name(expected())}, not text")
            elif expected is None or not isinstance(value, expected) or (
                expected is int and isinstance(value, bool)
            ):
                self.problem(where, f"{key} has the wrong type: {type_name(value)}")

    def command(self, value: Any, where: KeyPath, names: _Names) -> None:
        if isinstance(value, str):
            if not value.strip():
                self.problem(where, "the command is empty")
            self.no_secrets(self.templates(value, where, names, "shell"), where, names)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            for index, item in enumerate(value):
                refs = self.templates(item, (*where, index), names, "text")
                self.no_secrets(refs, (*where, index), names)
        else:
            self.problem(where, "command must be a list of arguments [\"prog\", \"arg\", ...] "
                         "or a string for /bin/sh")

    def no_secrets(self, refs: list, where: KeyPath, names: _Names) -> None:
        """A command line is readable by every user of the machine (ps, /proc)."""
        for ref in refs:
            param = names.params.get(ref.name)
            if param is None or not (param.is_secret or param.type == "dsn"):
                continue
            what = "a secret" if param.is_secret else (
                "a connection string, which may hold a password")
            variable = re.sub(r"\W", "_", ref.name).upper()
            self.problem(where, f"{ref.text} is {what}: on a command line every user of "
                         f"the machine can read it (ps); pass it through the environment, "
                         f"env = {{ {variable} = \"{ref.text}\" }}, and read ${variable}")

    def templates(self, text: str, where: KeyPath, names: _Names, context: str) -> list:
        try:
            refs = templating.refs(text)
        except templating.TemplateError as exc:
            self.problem(where, str(exc))
            return []
        for ref in refs:
            problem = names.check(ref.name)
            if problem:
                self.problem(where, problem)
            if ref.filter and (context != "sql" or ref.filter not in templating.SQL_FILTERS):
                allowed = "only in an sql query" if ref.filter in templating.SQL_FILTERS else (
                    "unknown filter; use ident: or literal: in SQL")
                self.problem(where, f"{ref.text}: '{ref.filter}:' {allowed}")
        quoted = []
        if context == "shell":
            quoted = templating.quoted_refs_in_shell(text)
            hint = "drdeck shell-quotes values itself"
        elif context == "sql":
            quoted = templating.quoted_refs_in_sql(text)
            hint = "it is sent as a bound parameter; use ${literal:NAME} inside a string body"
        for ref in quoted:
            self.problem(where, f"write {ref.text} without quotes around it: {hint}")
        return refs

    def expect(self, table: dict, key: str, where: KeyPath) -> Expect | None:
        value = table.get(key)
        here = (*where, key)
        if not isinstance(value, dict) or not value:
            self.problem(here, "expect must be a table such as { equals = 1 } or { min = 0 }")
            return None
        self.unknown_keys(value, EXPECT_KEYS, here, "expect")
        fields: dict[str, Any] = {}
        for name, kinds in (("min", (int, float)), ("max", (int, float)), ("rows", (int,)),
                            ("exit_code", (int,)), ("contains", (str,)), ("matches", (str,))):
            if name in value:
                item = value[name]
                if isinstance(item, bool) or not isinstance(item, kinds):
                    self.problem((*here, name), f"expect.{name} has the wrong type: "
                                 f"{type_name(item)}")
                    continue
                fields[name] = item
        if "matches" in fields:
            try:
                re.compile(fields["matches"])
            except re.error as exc:
                self.problem((*here, "matches"), f"expect.matches is not a valid regex: {exc}")
        if "equals" in value:
            if isinstance(value["equals"], dict | list):
                self.problem((*here, "equals"), "expect.equals must be a single value")
            else:
                fields["equals"] = value["equals"]
        return Expect(**fields)

    def checks(self, spec: dict, where: KeyPath, names: _Names, has_dsn: bool) -> list[Check]:
        raw = spec.get("checks", [])
        if not isinstance(raw, list):
            self.problem((*where, "checks"), "checks must be a list of [[steps.checks]] tables")
            return []
        result = []
        for index, item in enumerate(raw):
            here: KeyPath = (*where, "checks", index)
            if not isinstance(item, dict):
                self.problem(here, "each check must be a table")
                continue
            self.unknown_keys(item, CHECK_KEYS, here, "a check")
            name = self.text(item, "name", here, required=True)
            query = self.text(item, "query", here)
            dsn = self.text(item, "dsn", here)
            command = item.get("command")
            if (query is None) == (command is None):
                self.problem(here, "a check has either a query or a command")
            if command is not None:
                self.command(command, (*here, "command"), names)
            if query is not None:
                self.templates(query, (*here, "query"), names, "sql")
                if dsn is None and not has_dsn:
                    self.problem(here, "this check has a query but neither it nor its step "
                                 "has a dsn")
            if dsn is not None:
                self.templates(dsn, (*here, "dsn"), names, "text")
            if "expect" not in item:
                self.problem(here, "missing required key 'expect'")
                continue
            expect = self.expect(item, "expect", here)
            if name is not None and expect is not None:
                result.append(Check(name, expect, query, command, dsn))
        return result


class _Names:
    """What a `${...}` may name at a given point of the runbook."""

    def __init__(self, params: dict[str, Param], broken: set[str] | None = None):
        self.params = params
        self.broken = broken or set()
        self.captured: set[str] = set()
        self.earlier: set[str] = set()

    def step_done(self, step: Step) -> None:
        self.earlier.add(step.id)
        if step.capture:
            self.captured.add(step.id)

    def step_failed_to_load(self, spec: dict) -> None:
        """Keep naming a broken step possible, so one mistake is reported once."""
        step_id = spec.get("id")
        if isinstance(step_id, str):
            self.earlier.add(step_id)
            if spec.get("capture") is True:
                self.captured.add(step_id)

    def check(self, name: str) -> str | None:
        parts = name.split(".")
        if parts[0] == "env":
            if len(parts) != 2 or not ENV_NAME.fullmatch(parts[1]):
                return f"${{{name}}}: write environment variables as ${{env.NAME}}"
            return None
        if parts[0] == "run":
            if len(parts) != 2 or parts[1] not in templating.RUN_NAMES:
                known = ", ".join(f"run.{n}" for n in templating.RUN_NAMES)
                return f"unknown template name ${{{name}}} (known: {known})"
            return None
        if parts[0] == "steps":
            if len(parts) != 3 or parts[2] != "output":
                return f"${{{name}}}: write a step's output as ${{steps.ID.output}}"
            step_id = parts[1]
            if step_id not in self.earlier:
                return f"${{{name}}}: no earlier step has id {step_id!r}"
            if step_id not in self.captured:
                return f"${{{name}}}: step {step_id!r} does not capture; add capture = true to it"
            return None
        if len(parts) == 1 and (name in self.params or name in self.broken):
            return None
        known = ", ".join(self.params) or "none"
        return f"unknown template name ${{{name}}} (parameters: {known})"
