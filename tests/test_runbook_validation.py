"""Every kind of runbook mistake gets `PATH:LINE:COL: what is wrong`, at the right place.

Expected positions are computed from the test's own source text (where the offending
key, header or table starts), not taken from the loader, so a wrong line or column
fails. Most cases go through `load_text`; the last section runs the real command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tui.errors import Problem, RunbookInvalid
from tui.runbook.loader import load_runbook, load_text

ROOT = Path(__file__).resolve().parents[1]
HEALTH_CHECK = ROOT / "runbooks" / "health-check.toml"
EVERY_FEATURE = ROOT / "tests" / "data" / "runbooks" / "every-feature.toml"
SHOWN = "rb.toml"

HEAD = '[runbook]\nname = "t"\ntitle = "Test"\n'


def step(
    step_id: str = "a", action: str = "shell", with_: str = '{ command = ["true"] }',
    extra: str = "",
) -> str:  # fmt: skip
    return (
        f'\n[[steps]]\nid = "{step_id}"\ntitle = "Step {step_id}"\naction = "{action}"\n'
        f"with = {with_}\n{extra}"
    )


def param(name: str, body: str) -> str:
    return f"\n[params.{name}]\n{body}\n"


def pos(source: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of `needle` in `source`."""
    offset = -1
    for _ in range(nth):
        offset = source.index(needle, offset + 1)
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def problems(source: str) -> list[Problem]:
    with pytest.raises(RunbookInvalid) as info:
        load_text(source, SHOWN)
    return info.value.problems


def assert_problem(source: str, needle: str, fragment: str, nth: int = 1) -> Problem:
    """Exactly one problem, placed at `needle`, whose message contains `fragment`."""
    found = problems(source)
    assert len(found) == 1, "\n".join(map(str, found))
    problem = found[0]
    assert fragment in problem.message, str(problem)
    assert (problem.line, problem.col) == pos(source, needle, nth), str(problem)
    assert str(problem) == f"{SHOWN}:{problem.line}:{problem.col}: {problem.message}"
    return problem


def test_a_minimal_runbook_loads() -> None:
    runbook = load_text(HEAD + step(), SHOWN)
    assert runbook.name == "t"
    assert [s.id for s in runbook.steps] == ["a"]


# --- unknown keys --------------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    source = "version = 2\n" + HEAD + step()
    assert_problem(source, "version", "unknown key 'version' in the runbook file")


def test_unknown_top_level_table_suggests_the_near_miss() -> None:
    source = HEAD + '\n[paramz.dsn]\ntype = "dsn"\n' + step()
    problem = assert_problem(source, "[paramz.dsn]", "unknown key 'paramz'")
    assert "did you mean 'params'?" in problem.message


def test_unknown_key_in_runbook_table() -> None:
    source = HEAD + 'owner = "dba"\n' + step()
    problem = assert_problem(source, "owner", "unknown key 'owner' in [runbook]")
    assert "did you mean" not in problem.message


def test_unknown_key_in_runbook_table_suggests_the_near_miss() -> None:
    source = HEAD + 'contact = ["dba@example.com"]\n' + step()
    problem = assert_problem(source, "contact =", "unknown key 'contact' in [runbook]")
    assert "(did you mean 'contacts'?)" in problem.message


def test_unknown_key_in_a_step_suggests_the_near_miss() -> None:
    source = HEAD + step() + step("b", extra='timout = "30s"\n')
    assert_problem(source, "timout", "unknown key 'timout' in a step (did you mean 'timeout'?)")


def test_unknown_key_in_with_table() -> None:
    source = HEAD + step(with_='{ command = ["true"], shell = "bash" }')
    assert_problem(source, "shell =", "unknown key 'shell' in the shell action's `with`")


def test_unknown_key_in_with_table_suggests_the_near_miss() -> None:
    source = HEAD + step(action="sql", with_='{ dsn = "x", query = "select 1", param = {} }')
    assert_problem(source, "param =", "unknown key 'param' in the sql action's `with` "
                   "(did you mean 'params'?)")


def test_unknown_key_in_a_check_suggests_the_near_miss() -> None:
    source = HEAD + step(extra=(
        '\n[[steps.checks]]\nname = "c"\ncommand = ["true"]\ndsnn = "x"\n'
        "expect = { exit_code = 0 }\n"
    ))  # fmt: skip
    assert_problem(source, "dsnn", "unknown key 'dsnn' in a check (did you mean 'dsn'?)")


def test_unknown_key_in_expect_suggests_the_near_miss() -> None:
    source = HEAD + step(extra='expect = { exit_code = 0, containz = "ok" }\n')
    assert_problem(source, "containz", "unknown key 'containz' in expect (did you mean "
                   "'contains'?)")


# --- wrong types ---------------------------------------------------------------------------


def test_retries_as_text() -> None:
    assert_problem(HEAD + step(extra='retries = "two"\n'), "retries",
                   "retries must be a whole number")


def test_negative_retries() -> None:
    assert_problem(HEAD + step(extra="retries = -1\n"), "retries", "0 or more")


def test_title_as_number() -> None:
    source = '[runbook]\nname = "t"\ntitle = 3\n' + step()
    assert_problem(source, "title = 3", "title must be text, not a number")


def test_capture_as_text() -> None:
    assert_problem(HEAD + step(extra='capture = "yes"\n'), "capture",
                   "capture must be true or false, not text")


def test_command_as_number() -> None:
    source = HEAD + step(with_="{ command = 5 }")
    assert_problem(source, "command", 'command must be a list of arguments ["prog", "arg", ...] '
                   "or a string for /bin/sh")


def test_command_list_with_a_number_in_it() -> None:
    source = HEAD + step(with_='{ command = ["sleep", 5] }')
    assert_problem(source, "command", "command must be a list of arguments")


def test_expect_value_of_the_wrong_type() -> None:
    source = HEAD + step(extra='expect = { exit_code = "zero" }\n')
    assert_problem(source, "exit_code", "expect.exit_code has the wrong type: text")


def test_expect_matches_must_be_a_valid_regex() -> None:
    source = HEAD + step(extra='expect = { matches = "(unclosed" }\n')
    assert_problem(source, "matches", "expect.matches is not a valid regex")


def test_capture_on_an_action_that_produces_no_output() -> None:
    source = HEAD + step(action="manual", with_='{ instructions = "do it" }',
                         extra="capture = true\n")
    assert_problem(source, "capture", "a manual step has no output to capture")


def test_on_failure_outside_its_choices() -> None:
    assert_problem(HEAD + step(extra='on_failure = "ignore"\n'), "on_failure",
                   "on_failure 'ignore' is not one of: abort, continue, ask")


def test_scenario_outside_its_choices() -> None:
    assert_problem(HEAD + 'scenario = "disaster"\n' + step(), "scenario",
                   "scenario 'disaster' is not one of: snapshot, pitr, backup, verify, other")


def test_runbook_name_with_capitals_and_spaces() -> None:
    source = '[runbook]\nname = "Health Check"\ntitle = "T"\n' + step()
    assert_problem(source, "name", "use lowercase letters, digits and '-'")


# --- actions and step ids ------------------------------------------------------------------


def test_unknown_action_lists_the_known_ones() -> None:
    source = HEAD + step(action="sh")
    from tui.engine.actions import ACTIONS

    known = ", ".join(sorted(ACTIONS))
    assert "shell" in known and "sql" in known
    assert_problem(source, "action", f"unknown action 'sh' (known: {known})")


def test_duplicate_step_id_points_at_the_second_one() -> None:
    source = HEAD + step("copy") + step("other") + step("copy")
    assert_problem(source, 'id = "copy"', "duplicate step id 'copy'", nth=2)


def test_step_id_with_spaces() -> None:
    assert_problem(HEAD + step("Do It"), "id", "step id 'Do It': use lowercase letters")


# --- durations ------------------------------------------------------------------------------


def test_timeout_in_words() -> None:
    problem = assert_problem(HEAD + step(extra='timeout = "ten minutes"\n'), "timeout",
                             "bad duration for timeout: 'ten minutes' is not a duration")
    assert "90s, 15m, 4h, 1h30m or 2d" in problem.message


def test_rto_with_an_unknown_unit() -> None:
    assert_problem(HEAD + 'rto = "4x"\n' + step(), "rto", "bad duration for rto: '4x'")


def test_timeout_without_quotes_suggests_seconds() -> None:
    assert_problem(HEAD + step(extra="timeout = 30\n"), "timeout",
                   'timeout must be a duration in quotes, like "30s"')


def test_retry_delay_as_a_bare_number() -> None:
    assert_problem(HEAD + step(extra="retry_delay = 5\n"), "retry_delay",
                   'retry_delay must be a duration in quotes, like "5s"')


def test_wait_interval_that_is_not_a_duration() -> None:
    source = HEAD + step(action="wait", with_='{ command = ["true"], interval = "often" }',
                         extra="expect = { exit_code = 0 }\n")
    assert_problem(source, "interval", "bad duration for interval: 'often'")


# --- template names ---------------------------------------------------------------------------


def test_unknown_parameter_in_a_template_lists_the_parameters() -> None:
    source = HEAD + param("dsn", 'type = "dsn"') + step(with_='{ command = "echo ${nope}" }')
    assert_problem(source, "command", "unknown template name ${nope} (parameters: dsn)")


def test_unknown_run_name_lists_the_known_ones() -> None:
    source = HEAD + step(with_='{ command = ["echo", "${run.nope}"] }')
    # in an argv list the problem points at the element itself
    problem = assert_problem(source, '"${run.nope}"', "unknown template name ${run.nope}")
    assert "run.id, run.workdir, run.started_at" in problem.message


def test_output_of_a_later_step() -> None:
    source = (
        HEAD + step("first", with_='{ command = "echo ${steps.later.output}" }')
        + step("later", extra="capture = true\n")
    )  # fmt: skip
    assert_problem(source, "command", "${steps.later.output}: no earlier step has id 'later'")


def test_output_of_a_step_that_does_not_capture() -> None:
    source = HEAD + step("x") + step("y", with_='{ command = ["echo", "${steps.x.output}"] }')
    assert_problem(source, '"${steps.x.output}"',
                   "step 'x' does not capture; add capture = true to it")


def test_step_output_written_without_output() -> None:
    source = HEAD + step("x", extra="capture = true\n") + step(
        "y", with_='{ command = ["echo", "${steps.x}"] }')
    assert_problem(source, '"${steps.x}"', "write a step's output as ${steps.ID.output}")


def test_malformed_environment_reference() -> None:
    source = HEAD + step(with_='{ command = ["echo", "${env.A.B}"] }')
    assert_problem(source, '"${env.A.B}"', "write environment variables as ${env.NAME}")


def test_templates_are_checked_in_confirm_text_too() -> None:
    source = HEAD + step(extra='confirm = "Drop ${target}?"\n')
    assert_problem(source, "confirm", "unknown template name ${target}")


def test_a_step_that_fails_to_load_is_still_nameable() -> None:
    # one mistake, one report: the later reference to the broken step is not a second one
    source = (
        HEAD + step("a", extra='capture = true\ntimeout = "soon"\n')
        + step("b", with_='{ command = "echo ${steps.a.output}" }')
    )  # fmt: skip
    assert_problem(source, "timeout", "bad duration for timeout")


# --- malformed templates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("echo ${}", "malformed template '${}'"),
        ("echo ${a b}", "malformed template '${a b}'"),
        ("echo ${x", "unclosed template in 'echo ${x': write ${name}"),
    ],
)
def test_malformed_template(command: str, fragment: str) -> None:
    source = HEAD + param("x", 'type = "string"') + step(with_=f'{{ command = "{command}" }}')
    assert_problem(source, "command", fragment)


def test_escaped_template_is_not_a_template() -> None:
    runbook = load_text(HEAD + step(with_='{ command = "echo $${HOME}" }'), SHOWN)
    assert runbook.steps[0].args["command"] == "echo $${HOME}"


# --- templates inside quotes -----------------------------------------------------------------

X = param("x", 'type = "string"')


@pytest.mark.parametrize("command", ["echo '${x}'", 'echo \\"${x}\\"', "echo 'a b ${x} c'"])
def test_template_inside_quotes_in_a_shell_string(command: str) -> None:
    source = HEAD + X + step(with_=f'{{ command = "{command}" }}')
    assert_problem(source, "command",
                   "write ${x} without quotes around it: drdeck shell-quotes values itself")


def test_template_outside_quotes_in_a_shell_string_is_fine() -> None:
    load_text(HEAD + X + step(with_="{ command = \"echo ${x} 'literal'\" }"), SHOWN)


def test_template_inside_an_sql_string_literal() -> None:
    source = HEAD + X + step(action="sql", with_="{ dsn = \"d\", query = \"select '${x}'\" }")
    problem = assert_problem(source, "query", "write ${x} without quotes around it")
    assert "bound parameter" in problem.message
    assert "${literal:NAME}" in problem.message


def test_template_inside_a_dollar_quoted_body() -> None:
    query = "do $$ begin perform ${x}; end $$"
    source = HEAD + X + step(action="sql", with_=f'{{ dsn = "d", query = "{query}" }}')
    assert_problem(source, "query", "write ${x} without quotes around it")


def test_template_inside_a_check_query_string() -> None:
    source = HEAD + X + step(action="sql", with_='{ dsn = "d", query = "select 1" }', extra=(
        "\n[[steps.checks]]\nname = \"c\"\nquery = \"select '${x}' = 'a'\"\n"
        "expect = { equals = true }\n"
    ))  # fmt: skip
    assert_problem(source, "query", "write ${x} without quotes around it", nth=2)


def test_sql_comment_quotes_and_filters_in_their_place_are_fine() -> None:
    query = (
        "select ${x}, ${ident:x}, ${literal:x}, '$${not}' -- don't\\n"
        "; do $$ begin raise notice '%', ${literal:x}; end $$"
    )
    runbook = load_text(HEAD + X + step(action="sql", with_=f'{{ dsn = "d", query = "{query}" }}'),
                        SHOWN)
    assert runbook.steps[0].action == "sql"


@pytest.mark.parametrize("query", ["select '${literal:x}'", 'select \\"${ident:x}\\"'])
def test_filtered_template_inside_sql_quotes(query: str) -> None:
    source = HEAD + X + step(action="sql", with_=f'{{ dsn = "d", query = "{query}" }}')
    assert_problem(source, "query", "without quotes around it")


@pytest.mark.parametrize("where", ["command", "argv", "check"])
def test_ident_filter_outside_sql(where: str) -> None:
    with_, extra = {
        "command": ('{ command = "psql -c ${ident:x}" }', ""),
        "argv": ('{ command = ["echo", "${ident:x}"] }', ""),
        "check": ('{ command = ["true"] }', '\n[[steps.checks]]\nname = "c"\n'
                  'command = "echo ${ident:x}"\nexpect = { exit_code = 0 }\n'),
    }[where]  # fmt: skip
    source = HEAD + X + step(with_=with_, extra=extra)
    needle = {"command": "command", "argv": '"${ident:x}"', "check": "command ="}[where]
    assert_problem(source, needle, "${ident:x}: 'ident:' only in an sql query",
                   nth=2 if where == "check" else 1)


def test_unknown_filter_in_sql() -> None:
    source = HEAD + X + step(action="sql", with_='{ dsn = "d", query = "select ${upper:x}" }')
    assert_problem(source, "query", "unknown filter; use ident: or literal: in SQL")


# --- missing required fields -----------------------------------------------------------------


def test_missing_runbook_name() -> None:
    assert_problem('[runbook]\ntitle = "T"\n' + step(), "[runbook]", "missing required key 'name'")


def test_missing_runbook_title() -> None:
    assert_problem('[runbook]\nname = "t"\n' + step(), "[runbook]", "missing required key "
                   "'title'")


def test_missing_runbook_table() -> None:
    assert_problem(step().lstrip(), "[[steps]]", "missing required table [runbook] with name "
                   "and title")


def test_no_steps() -> None:
    assert_problem(HEAD, "[runbook]", "a runbook needs at least one [[steps]]")


@pytest.mark.parametrize("key", ["id", "title", "action"])
def test_missing_step_field(key: str) -> None:
    lines = step("a").split("\n")
    source = HEAD + "\n".join(line for line in lines if not line.startswith(f"{key} ="))
    assert_problem(source, "[[steps]]", f"missing required key '{key}'")


def test_missing_param_type() -> None:
    source = HEAD + param("dsn", 'help = "where"') + step()
    assert_problem(source, "[params.dsn]", "missing required key 'type'")


def test_missing_check_name() -> None:
    source = HEAD + step(
        extra='\n[[steps.checks]]\ncommand = ["true"]\nexpect = { exit_code = 0 }\n'
    )
    assert_problem(source, "[[steps.checks]]", "missing required key 'name'")


def test_missing_check_expect() -> None:
    source = HEAD + step(extra='\n[[steps.checks]]\nname = "c"\ncommand = ["true"]\n')
    assert_problem(source, "[[steps.checks]]", "missing required key 'expect'")


def test_check_with_neither_query_nor_command() -> None:
    source = HEAD + step(extra='\n[[steps.checks]]\nname = "c"\nexpect = { equals = 1 }\n')
    assert_problem(source, "[[steps.checks]]", "a check has either a query or a command")


def test_check_query_without_any_dsn() -> None:
    source = HEAD + step(extra=(
        '\n[[steps.checks]]\nname = "c"\nquery = "select 1"\nexpect = { equals = 1 }\n'
    ))  # fmt: skip
    assert_problem(source, "[[steps.checks]]", "has a query but neither it nor its step has a dsn")


def test_sql_step_without_query() -> None:
    source = HEAD + step(action="sql", with_='{ dsn = "postgresql:///x" }')
    assert_problem(source, "with", "an sql step needs either with.query or with.operator_query")


def test_step_without_with_table() -> None:
    source = HEAD + '\n[[steps]]\nid = "a"\ntitle = "A"\naction = "manual"\n'
    assert_problem(source, "[[steps]]", "the manual action needs with.instructions")


# --- parameters -------------------------------------------------------------------------------


def test_param_of_unknown_type() -> None:
    source = HEAD + param("ratio", 'type = "float"') + step()
    assert_problem(source, "type", "type 'float' is not one of: string, int, bool, duration, "
                   "timestamp, choice, secret, dsn")


def test_choice_param_without_choices() -> None:
    source = HEAD + param("speed", 'type = "choice"') + step()
    assert_problem(source, "[params.speed]", 'a choice parameter needs choices = ["a", "b", ...]')


def test_choices_on_a_param_that_is_not_a_choice() -> None:
    source = HEAD + param("speed", 'type = "string"\nchoices = ["a"]') + step()
    assert_problem(source, "choices", 'choices only go with type = "choice"')


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('type = "int"\ndefault = "ten"', "default of p: 'ten' is not a whole number"),
        ('type = "int"\ndefault = true', "default of p: expected a whole number"),
        ('type = "bool"\ndefault = "maybe"', "default of p: 'maybe' is not true or false"),
        ('type = "duration"\ndefault = "1 fortnight"', "is not a duration"),
        ('type = "timestamp"\ndefault = "2026-01-01 12:00"', "has no time zone"),
        ('type = "choice"\nchoices = ["a", "b"]\ndefault = "c"', "'c' is not one of: a, b"),
        ('type = "string"\ndefault = 5', "default of p: expected text"),
    ],
)
def test_param_default_of_the_wrong_type(body: str, fragment: str) -> None:
    assert_problem(HEAD + param("p", body) + step(), "default", fragment)


def test_secret_with_a_default() -> None:
    source = HEAD + param("password", 'type = "secret"\ndefault = "hunter2"') + step()
    problem = assert_problem(source, "default", "a secret parameter cannot have a default")
    assert "hunter2" not in problem.message


@pytest.mark.parametrize("name", ["run", "Bad", "my-param"])
def test_param_names_that_templates_could_not_use(name: str) -> None:
    source = HEAD + f'\n[params."{name}"]\ntype = "string"\n' + step()
    assert_problem(source, f'[params."{name}"]', f"parameter name {name!r}")


def test_unknown_key_in_a_param_suggests_the_near_miss() -> None:
    source = HEAD + param("p", 'type = "string"\ndefualt = "x"') + step()
    assert_problem(source, "defualt", "unknown key 'defualt' in [params.p] (did you mean "
                   "'default'?)")


# --- wait ---------------------------------------------------------------------------------------


def test_wait_step_without_expect() -> None:
    source = HEAD + step(action="wait", with_='{ command = ["pg_isready"] }')
    assert_problem(source, "[[steps]]", "a wait step needs an expect table: what to wait for")


def test_wait_step_with_a_query_but_no_dsn() -> None:
    source = HEAD + step(action="wait", with_='{ query = "select 1" }',
                         extra="expect = { equals = 1 }\n")
    assert_problem(source, "with", "a wait step with a query needs with.dsn")


def test_wait_step_with_both_query_and_command() -> None:
    source = HEAD + step(action="wait", with_='{ dsn = "d", query = "select 1", command = ["x"] }',
                         extra="expect = { equals = 1 }\n")
    assert_problem(source, "with", "a wait step polls either a query (with a dsn) or a command")


# --- TOML syntax --------------------------------------------------------------------------------


def _tomllib_position(source: str) -> tuple[int, int]:
    with pytest.raises(tomllib.TOMLDecodeError) as info:
        tomllib.loads(source)
    match = re.search(r"at line (\d+), column (\d+)", str(info.value))
    assert match
    return int(match[1]), int(match[2])


@pytest.mark.parametrize(
    ("source", "expected", "fragment"),
    [
        ('[runbook\nname = "t"\n', (1, 9), "Expected ']' at the end of a table declaration"),
        ('[runbook]\nname = "t"\nname = "u"\ntitle = "T"\n', (3, 11), "Cannot overwrite a value"),
        ('[runbook]\nname = "t\ntitle = "T"\n', (2, 10), "Illegal character"),
        ('[runbook]\nname = "t"\ntitle = "T"\n[runbook]\n', (4, 9), "Cannot declare"),
        ('[runbook]\nname = "t"\ntitle = "T"\nrto = 4h\n', (4, 8), "Expected newline"),
    ],
    ids=["missing-bracket", "duplicate-key", "unclosed-string", "duplicate-table", "bare-word"],
)
def test_toml_syntax_error_at_tomllib_position(
    source: str, expected: tuple[int, int], fragment: str
) -> None:
    assert _tomllib_position(source) == expected
    found = problems(source)
    assert len(found) == 1
    assert (found[0].line, found[0].col) == expected
    assert found[0].message.startswith("TOML syntax: ")
    assert fragment in found[0].message
    assert "(at line" not in found[0].message  # the position is said once, in front


def test_unterminated_multiline_string_is_not_reported_on_line_one() -> None:
    source = HEAD + 'description = """\nstarts here\n' + step()
    found = problems(source)
    assert len(found) == 1
    assert "Unterminated string" in found[0].message
    assert found[0].line >= pos(source, '"""')[0]


def test_deeply_nested_value_is_a_runbook_problem() -> None:
    source = HEAD + "x = " + "[" * 600 + "]" * 600 + "\n" + step()
    assert problems(source)


# --- several problems at once -------------------------------------------------------------------


def test_every_problem_is_reported_sorted_by_position() -> None:
    source = (
        HEAD + 'rto = "soon"\n' + param("p", 'type = "float"')
        + step("a", action="shell", with_='{ command = "echo ${nope}" }', extra="retries = -2\n")
        + step("b", action="tea")
        + step("c", extra='bogus = 1\ntimeout = 30\n')
    )  # fmt: skip
    expected = [
        ("rto", "bad duration for rto"),
        ("type", "type 'float'"),
        ("command", "unknown template name ${nope}"),
        ("retries", "retries must be a whole number"),
        ('action = "tea"', "unknown action 'tea'"),
        ("bogus", "unknown key 'bogus' in a step"),
        ("timeout", 'like "30s"'),
    ]
    found = problems(source)
    assert len(found) == len(expected), "\n".join(map(str, found))
    for problem, (needle, fragment) in zip(found, expected, strict=True):
        assert (problem.line, problem.col) == pos(source, needle), str(problem)
        assert fragment in problem.message, str(problem)


def test_header_is_fully_checked_when_name_is_missing() -> None:
    source = '[runbook]\ntitle = "T"\nrto = "4x"\n' + step()
    messages = [p.message for p in problems(source)]
    assert any("missing required key 'name'" in m for m in messages)
    assert any("bad duration for rto" in m for m in messages)


def test_duplicate_id_reported_alongside_another_problem_in_the_step() -> None:
    source = HEAD + step("a", extra='timeout = "soon"\n') + step("a")
    messages = [p.message for p in problems(source)]
    assert any("bad duration for timeout" in m for m in messages)
    assert any("duplicate step id 'a'" in m for m in messages)


# --- load_runbook on files --------------------------------------------------------------------


def test_load_runbook_keeps_the_path_and_a_checksum(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(HEAD + step(), encoding="utf-8")
    runbook = load_runbook(path)
    assert runbook.path == path
    assert len(runbook.sha256) == 64


def test_load_runbook_names_the_file_in_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(HEAD + step(extra="retries = -1\ntimeout = 3\n"), encoding="utf-8")
    with pytest.raises(RunbookInvalid) as info:
        load_runbook(path)
    assert len(info.value.problems) == 2
    assert all(str(p).startswith(f"{path}:") for p in info.value.problems)


# --- the real command line ------------------------------------------------------------------


def validate(*paths: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DRDECK_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "tui", "validate", *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    return done


def test_cli_shipped_runbook_is_ok() -> None:
    done = validate("runbooks/health-check.toml")
    assert done.returncode == 0
    assert done.stdout == "ok: runbooks/health-check.toml (5 steps)\n"
    assert done.stderr == ""


def test_cli_several_good_files(tmp_path: Path) -> None:
    single = tmp_path / "single.toml"
    single.write_text(HEAD + step(), encoding="utf-8")
    done = validate(HEALTH_CHECK, EVERY_FEATURE, single)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        f"ok: {HEALTH_CHECK} (5 steps)",
        f"ok: {EVERY_FEATURE} (7 steps)",
        f"ok: {single} (1 step)",
    ]


def test_cli_bad_file_prints_path_line_col_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    source = HEAD + step(action="shel", extra='timeout = "ten minutes"\n')
    bad.write_text(source, encoding="utf-8")
    done = validate(bad)
    assert done.returncode == 2
    assert done.stdout == ""
    line, col = pos(source, "action")
    tline, tcol = pos(source, "timeout")
    assert done.stderr.splitlines() == [
        f"{bad}:{line}:{col}: unknown action 'shel' (did you mean 'shell'?)",
        f"{bad}:{tline}:{tcol}: bad duration for timeout: 'ten minutes' is not a duration; "
        "write it like 90s, 15m, 4h, 1h30m or 2d",
    ]


def test_cli_mixed_good_and_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[runbook\n", encoding="utf-8")
    done = validate(HEALTH_CHECK, bad)
    assert done.returncode == 2
    assert done.stdout == f"ok: {HEALTH_CHECK} (5 steps)\n"
    assert done.stderr == (
        f"{bad}:1:9: TOML syntax: Expected ']' at the end of a table declaration\n"
    )


def test_cli_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    done = validate(missing)
    assert done.returncode == 2
    assert done.stderr == f"{missing}:1:1: no such file\n"


def test_cli_directory(tmp_path: Path) -> None:
    done = validate(tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"{tmp_path}:1:1: is a directory, not a runbook\n"


def test_cli_file_that_is_not_utf8(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b'[runbook]\nname = "t"\ntitle = "Caf\xe9"\n')
    done = validate(latin)
    assert done.returncode == 2
    assert done.stderr == f"{latin}:3:1: not UTF-8 text\n"


def test_cli_deeply_nested_file(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 600 + "]" * 600 + "\n", encoding="utf-8")
    done = validate(deep)
    assert done.returncode == 2
    assert done.stderr.startswith(f"{deep}:1:")
