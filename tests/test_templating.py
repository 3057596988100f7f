"""`${...}` rendering (shell-quoted, argv, bound SQL parameters) and parameter coercion.

Shell quoting is proven by running the rendered line with the real /bin/sh; SQL
rendering connects to nothing: the query text and parameters are what is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from tui.durations import parse_duration
from tui.engine.render import render_command
from tui.errors import InvalidInput
from tui.runbook.loader import load_text
from tui.runbook.model import Param
from tui.runbook.params import coerce, parse_assignments, parse_timestamp, resolve
from tui.runbook.templating import (
    TemplateError,
    parse,
    render_shell,
    render_sql,
    render_text,
    render_value,
)

NASTY = [
    "'; rm -rf / #",
    "$(id)",
    "`id`",
    "line one\nline two",
    'say "hi"',
    "it's",
    "a b\tc",
    "$HOME ${HOME} \\n",
    "*",
    "-n",
    "",
    "; echo pwned",
    "'",
    '"',
    "\\",
    "é ünïcödé 🦆",
]


def lookup_of(**values: object):
    def lookup(name: str) -> object:
        return values[name]

    return lookup


def sh_printf(template: str, value: str) -> str:
    line = render_shell(template, lookup_of(x=value))
    # bytes, not text=True: universal newlines would turn a "\r" in the value into "\n"
    done = subprocess.run(["/bin/sh", "-c", line], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


# --- shell strings ------------------------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_shell_value_survives_as_one_literal_word(value: str) -> None:
    assert sh_printf("printf '%s\\n' ${x}", value) == value + "\n"


@pytest.mark.parametrize("value", NASTY)
def test_shell_value_is_one_argument_even_next_to_text(value: str) -> None:
    # a value glued to literal text stays inside the same word
    assert sh_printf("printf '[%s]\\n' pre-${x}-post", value) == f"[pre-{value}-post]\n"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00",
                                      blacklist_categories=["Cs"]), max_size=40))
def test_any_shell_value_survives_as_one_word(value: str) -> None:
    assert sh_printf("printf '%s|' ${x}", value) == value + "|"


def test_shell_escape_writes_a_literal_template_for_the_shell() -> None:
    # $${HOME} is left for /bin/sh itself to expand
    line = render_shell("echo ${x} $${HOME}", lookup_of(x="$HOME"))
    assert line == "echo '$HOME' ${HOME}"


def test_shell_renders_typed_values_as_text() -> None:
    stamp = datetime(2026, 11, 27, 14, 29, 59, tzinfo=UTC)
    line = render_shell("echo ${b} ${n} ${t}", lookup_of(b=True, n=42, t=stamp))
    assert line == "echo true 42 2026-11-27T14:29:59+00:00"


def test_sql_filters_are_refused_outside_sql() -> None:
    with pytest.raises(TemplateError, match="only works in an SQL query"):
        render_shell("echo ${ident:x}", lookup_of(x="t"))
    with pytest.raises(TemplateError, match="only works in an SQL query"):
        render_text("${literal:x}", lookup_of(x="t"))


# --- argv -----------------------------------------------------------------------------------


def test_argv_items_stay_single_arguments() -> None:
    show_argv = "import json, sys; print(json.dumps(sys.argv[1:]))"
    command = render_command(
        [sys.executable, "-c", show_argv, "${x}", "pre-${x}-post", "${x}${x}"],
        lookup_of(x="a b; $(id) 'q' \"d\"\nnext"),
    )
    done = subprocess.run(command.argv, capture_output=True, text=True, timeout=10, check=True)
    value = "a b; $(id) 'q' \"d\"\nnext"
    assert json.loads(done.stdout) == [value, f"pre-{value}-post", value + value]


def test_argv_display_is_a_copyable_shell_line() -> None:
    command = render_command(["printf", "%s\\n", "${x}"], lookup_of(x="'; rm -rf / #"))
    done = subprocess.run(["/bin/sh", "-c", command.display], capture_output=True, text=True,
                          timeout=10, check=True)
    assert done.stdout == "'; rm -rf / #\n"


def test_shell_string_command_runs_through_sh() -> None:
    command = render_command("echo ${x}", lookup_of(x="$(id)"))
    assert command.argv == ["/bin/sh", "-c", "echo '$(id)'"]
    assert command.display == "echo '$(id)'"


def test_a_lone_template_keeps_its_type() -> None:
    assert render_value("${n}", lookup_of(n=5)) == 5
    assert render_value("${b}", lookup_of(b=False)) is False
    assert render_value("n=${n}", lookup_of(n=5)) == "n=5"


# --- SQL ------------------------------------------------------------------------------------


def test_sql_template_becomes_a_bound_parameter() -> None:
    value = "x'; drop table t; --"
    assert render_sql("select ${x}", lookup_of(x=value)) == ("select %(_t0)s", {"_t0": value})


def test_sql_each_occurrence_gets_its_own_parameter_with_its_type() -> None:
    query, params = render_sql("select ${n} + ${n}, ${b}", lookup_of(n=2, b=True))
    assert query == "select %(_t0)s + %(_t1)s, %(_t2)s"
    assert params == {"_t0": 2, "_t1": 2, "_t2": True}


def test_sql_without_templates_is_unchanged_and_has_no_parameters() -> None:
    assert render_sql("select '100%' like 'a%'", lookup_of()) == ("select '100%' like 'a%'", None)


def test_sql_percent_is_doubled_only_when_templates_bind() -> None:
    query, params = render_sql("select '100%', ${x}", lookup_of(x=1))
    assert query == "select '100%%', %(_t0)s"
    assert params == {"_t0": 1}


def test_sql_percent_is_left_alone_when_the_runbook_passes_its_own_params() -> None:
    query, params = render_sql("select %(a)s, ${x}", lookup_of(x=1), explicit_params=True)
    assert query == "select %(a)s, %(_t0)s"
    assert params == {"_t0": 1}


def test_sql_escape_is_a_literal_template() -> None:
    assert render_sql("select '$${x}'", lookup_of()) == ("select '${x}'", None)
    query, params = render_sql("select '$${x}', ${x}", lookup_of(x=7))
    assert query == "select '${x}', %(_t0)s"
    assert params == {"_t0": 7}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("restored", '"restored"'), ('we"ird', '"we""ird"'), ("Mixed Case", '"Mixed Case"'),
     ("a'b", '"a\'b"')],
)  # fmt: skip
def test_sql_ident_is_a_double_quoted_identifier(value: str, expected: str) -> None:
    query, params = render_sql("create database ${ident:db}", lookup_of(db=value))
    assert query == f"create database {expected}"
    assert params is None


def test_sql_literal_is_a_quoted_literal() -> None:
    query, params = render_sql("set work_mem = ${literal:x}", lookup_of(x="it's"))
    assert query == "set work_mem = 'it''s'"
    assert params is None


def _psycopg_accepts(query: str, params: dict | None) -> None:
    """psycopg's own client-side parsing of placeholders, with no connection."""
    PostgresQuery(Transformer()).convert(query, params)


def test_sql_rendered_with_a_percent_is_accepted_by_psycopg() -> None:
    _psycopg_accepts(*render_sql("select '5%' as p, ${x}", lookup_of(x=1)))


@pytest.mark.parametrize("template", ["${literal:p}", "${ident:p}"])
def test_sql_percent_inside_an_inlined_value_when_templates_bind(template: str) -> None:
    query, params = render_sql(f"select {template}, ${{n}}", lookup_of(p="5%", n=1))
    _psycopg_accepts(query, params)


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["${}", "${a b}", "${x", "a ${x} ${y", "${1abc}"])
def test_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse(text)


def test_parse_keeps_literal_text_and_references_apart() -> None:
    pieces = parse("a ${x} $${y} ${ ident:z }")
    assert pieces[0] == "a "
    assert pieces[1].name == "x"
    assert "".join(p for p in pieces if isinstance(p, str)) == "a  ${y} "
    assert (pieces[-1].filter, pieces[-1].name) == ("ident", "z")


# --- parameter values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("4h", 14400), ("1h30m", 5400), ("2d", 172800),
     ("250ms", 0.25), ("1w", 604800), (" 1h 30m ", 5400), ("1.5h", 5400)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert coerce(Param("d", "duration"), text) == text.strip()


@pytest.mark.parametrize("text", ["", "15", "4x", "ten minutes", "-5m", "h", "1h30", "m15"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration; write it like 90s, 15m, 4h"):
        coerce(Param("d", "duration"), text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27 14:29:59+00:00", datetime(2026, 11, 27, 14, 29, 59, tzinfo=UTC)),
        ("2026-11-27T14:29:59Z", datetime(2026, 11, 27, 14, 29, 59, tzinfo=UTC)),
        ("2026-11-27 16:29:59+02:00",
         datetime(2026, 11, 27, 16, 29, 59, tzinfo=timezone(timedelta(hours=2)))),
        ("  2026-11-27 14:29:59.5-05:00 ",
         datetime(2026, 11, 27, 14, 29, 59, 500000, tzinfo=timezone(timedelta(hours=-5)))),
    ],
)
def test_timestamps_with_a_time_zone(text: str, expected: datetime) -> None:
    value = parse_timestamp(text)
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()
    assert coerce(Param("t", "timestamp"), text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27 14:29:59",
        "2026-11-27T14:29:59",
        "2026-11-27 14:29",
        "2026-11-27",
    ],
)
def test_naive_timestamp_is_refused_with_a_hint_that_works(text: str) -> None:
    with pytest.raises(ValueError, match=r"has no time zone; add one, e\.g\. ") as info:
        parse_timestamp(text)
    hint = str(info.value).split("e.g. ", 1)[1]
    assert parse_timestamp(hint).utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "27/11/2026 14:00+00:00", "", "2026-13-01"])
def test_text_that_is_not_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError, match="is not a timestamp; write it like 2026-11-27 14:29:59"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("yes", True), ("on", True), ("1", True), ("TRUE", True), (" Yes ", True),
     ("false", False), ("no", False), ("off", False), ("0", False), ("False", False),
     (True, True), (False, False)],
)  # fmt: skip
def test_bool_spellings(text: str | bool, expected: bool) -> None:
    assert coerce(Param("b", "bool"), text) is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "y e s"])
def test_bool_refuses_other_words(text: str) -> None:
    with pytest.raises(ValueError, match="is not true or false"):
        coerce(Param("b", "bool"), text)


def test_int_values() -> None:
    param = Param("n", "int")
    assert coerce(param, "42") == 42
    assert coerce(param, " -7 ") == -7
    assert coerce(param, 5) == 5


@pytest.mark.parametrize("text", ["ten", "4.5", "", "1e3", "0x10"])
def test_int_errors(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a whole number"):
        coerce(Param("n", "int"), text)


def test_int_refuses_a_bool() -> None:
    with pytest.raises(ValueError, match="expected a whole number"):
        coerce(Param("n", "int"), True)


def test_choice_values() -> None:
    param = Param("mode", "choice", choices=("fast", "safe"))
    assert coerce(param, "safe") == "safe"
    with pytest.raises(ValueError, match="'Fast' is not one of: fast, safe"):
        coerce(param, "Fast")


def test_required_text_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        coerce(Param("dsn", "dsn"), "  ")


# --- resolve: the whole command line at once -----------------------------------------------

RUNBOOK = load_text('''
[runbook]
name = "r"
title = "R"

[params.dsn]
type = "dsn"
help = "the cluster"

[params.target]
type = "timestamp"
help = "recover to"

[params.jobs]
type = "int"
default = 2

[params.mode]
type = "choice"
choices = ["drill", "incident"]
default = "drill"

[[steps]]
id = "a"
title = "A"
action = "shell"
with = { command = ["true"] }
''')


def test_resolve_fills_defaults_and_coerces() -> None:
    values = resolve(RUNBOOK, {"dsn": "postgresql:///x", "target": "2026-01-01 00:00:00Z",
                               "jobs": "4"})
    assert values == {
        "dsn": "postgresql:///x",
        "target": datetime(2026, 1, 1, tzinfo=UTC),
        "jobs": 4,
        "mode": "drill",
    }


def test_resolve_lists_every_missing_required_parameter_in_one_message() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(RUNBOOK, {})
    message = str(info.value)
    assert message.startswith("missing required parameters:")
    assert "-p dsn=...   dsn: the cluster" in message
    assert "-p target=...   timestamp: recover to" in message
    assert "jobs" not in message
    assert info.value.exit_code == 2


def test_resolve_rejects_unknown_names_and_bad_values_together() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(RUNBOOK, {"dns": "x", "jobs": "many", "target": "2026-01-01 00:00",
                          "mode": "panic"})
    message = str(info.value)
    assert "unknown parameter 'dns' (this runbook takes: dsn, target, jobs, mode)" in message
    assert "parameter jobs: 'many' is not a whole number" in message
    assert "parameter target: '2026-01-01 00:00' has no time zone" in message
    assert "parameter mode: 'panic' is not one of: drill, incident" in message
    assert "-p dsn=..." in message  # still missing, said in the same breath


def test_parse_assignments() -> None:
    assert parse_assignments(["dsn=host=x user=y", "n=1", "e="]) == {
        "dsn": "host=x user=y", "n": "1", "e": ""}
    with pytest.raises(InvalidInput, match="write parameters as NAME=VALUE"):
        parse_assignments(["novalue"])
    with pytest.raises(InvalidInput, match="write parameters as NAME=VALUE"):
        parse_assignments(["=x"])
