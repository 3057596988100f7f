"""The engine on real processes: events, retries, timeouts, operators, secrets, abort."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tui.engine.operator import Answer, FailureDecision
from tui.errors import InvalidInput
from tui.headless import HeadlessOperator

from engine_support import ScriptedOperator, make_runner, run_text

HEADER = """
[runbook]
name = "t"
title = "A test runbook"
"""


def shell_step(step_id: str, command: str, extra: str = "", env: str = "") -> str:
    env_table = f", env = {{ {env} }}" if env else ""
    return f"""
[[steps]]
id = "{step_id}"
title = "Step {step_id}"
action = "shell"
with = {{ command = {command!r}{env_table} }}
{extra}
"""


def test_a_successful_run_emits_the_events_in_order(tmp_path: Path) -> None:
    text = HEADER + shell_step("one", "echo hello; echo oops >&2") + shell_step("two", "true")
    result, rec = run_text(text, tmp_path)
    assert result.status == "succeeded"
    assert rec.kinds() == [
        "run_started", "step_started", "output", "output", "step_finished",
        "step_started", "step_finished", "run_finished",
    ]
    outputs = rec.of("output")
    assert {(o.stream, o.line) for o in outputs} == {("stdout", "hello"), ("stderr", "oops")}
    assert [e.status for e in rec.of("step_finished")] == ["succeeded", "succeeded"]
    finished = rec.of("run_finished")[0]
    assert finished.status == "succeeded" and finished.rto_s == pytest.approx(
        finished.duration_s, abs=0.01)
    assert all(e.to_json()["ts"].endswith("Z") for e in rec.events)


def test_a_failing_step_stops_the_run_and_says_why(tmp_path: Path) -> None:
    text = HEADER + shell_step("bad", "echo about to fail; exit 3") + shell_step("after", "true")
    result, rec = run_text(text, tmp_path)
    assert result.status == "failed"
    finished = rec.finished("bad")
    assert finished.status == "failed"
    assert finished.error == "command exited with code 3"
    assert [e.step for e in rec.of("step_started")] == ["bad"]
    run = rec.of("run_finished")[0]
    assert (run.failed, run.not_run, run.rto_s) == (1, 1, None)


def test_retries_back_off_and_then_succeed(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    command = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 2 ]"
    text = HEADER + shell_step("flaky", command, 'retries = 3\nretry_delay = "0.1s"')
    result, rec = run_text(text, tmp_path)
    assert result.status == "succeeded"
    assert [e.attempt for e in rec.of("step_started")] == [1, 2, 3]
    assert [e.retry_in_s for e in rec.of("attempt_failed")] == [0.1, 0.2]
    assert rec.finished("flaky").attempts == 3


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pidfile}; wait"
    text = HEADER + shell_step("slow", command, 'timeout = "0.5s"')
    started = time.monotonic()
    result, rec = run_text(text, tmp_path)
    assert time.monotonic() - started < 10
    assert result.status == "failed"
    assert rec.finished("slow").error == "timed out after 0.50s"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(child), "the background child of the step survived its timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_on_failure_continue_runs_the_rest_but_the_run_fails(tmp_path: Path) -> None:
    text = (HEADER + shell_step("bad", "exit 1", 'on_failure = "continue"')
            + shell_step("after", "echo still here"))
    result, rec = run_text(text, tmp_path)
    assert result.status == "failed"
    assert rec.finished("after").status == "succeeded"
    assert rec.lines("after") == ["still here"]


def test_on_failure_ask_without_a_person_fails_and_says_so(tmp_path: Path) -> None:
    text = HEADER + shell_step("bad", "exit 1", 'on_failure = "ask"')
    result, rec = run_text(text, tmp_path)
    assert result.status == "failed"
    assert "no person is here to ask" in rec.finished("bad").error


def test_a_person_can_retry_then_the_step_succeeds(tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    text = HEADER + shell_step("needs-fix", f"test -f {marker}")
    operator = ScriptedOperator(failures=[FailureDecision("retry")])
    runner, rec = make_runner(text, tmp_path, operator=operator)

    async def fix_then_retry():
        original = operator.on_failure

        async def on_failure(request):
            marker.write_text("done")
            return await original(request)

        operator.on_failure = on_failure
        return await runner.run()

    result = asyncio.run(fix_then_retry())
    assert result.status == "succeeded"
    assert [kind for kind, _ in operator.asked] == ["failure"]
    assert operator.asked[0][1].error == "command exited with code 1"
    assert rec.finished("needs-fix").attempts == 2


def test_a_person_can_skip_with_a_reason(tmp_path: Path) -> None:
    text = HEADER + shell_step("bad", "exit 1") + shell_step("after", "true")
    operator = ScriptedOperator(failures=[FailureDecision("skip", "known issue, ticket 42")])
    result, rec = run_text(text, tmp_path, operator=operator)
    assert result.status == "succeeded"
    skipped = rec.finished("bad")
    assert (skipped.status, skipped.reason) == ("skipped", "known issue, ticket 42")
    assert rec.finished("after").status == "succeeded"


def test_a_person_can_abort_after_a_failure(tmp_path: Path) -> None:
    text = HEADER + shell_step("bad", "exit 1") + shell_step("after", "true")
    operator = ScriptedOperator(failures=[FailureDecision("abort", "calling it")])
    result, rec = run_text(text, tmp_path, operator=operator)
    assert result.status == "aborted"
    assert rec.of("run_finished")[0].error == "calling it"
    assert [e.step for e in rec.of("step_started")] == ["bad"]


CONFIRMED = HEADER + """
[params.target_db]
type = "string"
default = "restored_app"
""" + shell_step("drop", "echo dropping ${target_db}",
                 'confirm = "This drops ${target_db}"\nconfirm_input = "${target_db}"')


def test_headless_refuses_a_confirmation_without_yes(tmp_path: Path) -> None:
    result, rec = run_text(CONFIRMED, tmp_path)
    assert result.status == "failed"
    error = rec.finished("drop").error
    assert "asks for confirmation" in error and "--yes" in error
    assert rec.lines() == []


def test_headless_yes_confirms_without_a_person_and_records_it(tmp_path: Path) -> None:
    result, rec = run_text(CONFIRMED, tmp_path, operator=HeadlessOperator(yes=True))
    assert result.status == "succeeded"
    answer = rec.of("operator_answer")[0]
    assert (answer.request, answer.answer, answer.by_person) == ("confirm", "yes", False)
    assert rec.lines() == ["dropping restored_app"]


def test_a_person_is_shown_the_rendered_confirmation_and_can_decline(tmp_path: Path) -> None:
    operator = ScriptedOperator(confirms=[Answer(False, note="wrong database")])
    result, rec = run_text(CONFIRMED, tmp_path, operator=operator)
    request = operator.asked[0][1]
    assert request.text == "This drops restored_app"
    assert request.expected_input == "restored_app"
    assert request.command == "echo dropping restored_app"
    assert result.status == "aborted"
    assert rec.lines() == []


MANUAL = HEADER + """
[[steps]]
id = "switch"
title = "Point the application at the new database"
action = "manual"
with = { instructions = "Change DATABASE_URL and restart the app." }
"""


def test_a_manual_step_waits_for_the_person_and_times_the_wait(tmp_path: Path) -> None:
    operator = ScriptedOperator(manuals=[True])

    async def slow_manual(request):
        await asyncio.sleep(0.2)
        return Answer(True)

    operator.manual = slow_manual
    result, rec = run_text(MANUAL, tmp_path, operator=operator)
    assert result.status == "succeeded"
    wait = rec.of("operator_wait")[0]
    assert (wait.request, wait.prompt) == ("manual", "Change DATABASE_URL and restart the app.")
    assert rec.of("operator_answer")[0].waited_s >= 0.2
    assert result.steps[0].operator_wait_s >= 0.2


def test_a_manual_step_fails_headless_without_yes(tmp_path: Path) -> None:
    result, rec = run_text(MANUAL, tmp_path)
    assert result.status == "failed"
    assert "needs a person" in rec.finished("switch").error


def test_the_service_restored_milestone_stops_the_rto_clock(tmp_path: Path) -> None:
    text = HEADER + """
[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = { name = "service-restored" }
""" + shell_step("cleanup", "sleep 0.3")
    _result, rec = run_text(text, tmp_path)
    milestone = rec.of("milestone")[0]
    finished = rec.of("run_finished")[0]
    assert milestone.name == "service-restored"
    assert finished.rto_s == pytest.approx(milestone.elapsed_s, abs=0.01)
    assert finished.duration_s - finished.rto_s >= 0.25


def test_captured_output_feeds_a_later_step_as_one_argument(tmp_path: Path) -> None:
    text = HEADER + shell_step("make", "printf 'a b; echo injected\\n'", "capture = true") + """
[[steps]]
id = "use"
title = "Use it"
action = "shell"
with = { command = ["printf", "[%s]", "${steps.make.output}"] }
"""
    result, rec = run_text(text, tmp_path)
    assert result.status == "succeeded"
    assert rec.lines("use") == ["[a b; echo injected]"]


def test_secrets_never_leave_the_engine(tmp_path: Path) -> None:
    text = HEADER + """
[params.token]
type = "secret"

[params.dsn]
type = "dsn"
""" + shell_step("leak", "echo token=$TOKEN; echo $DSN; echo $TOKEN >&2; exit 1",
                 env='TOKEN = "${token}", DSN = "${dsn}"')
    secret, password = "tok-3141-secret", "pw-2718-hidden"
    _result, rec = run_text(text, tmp_path, params={
        "token": secret, "dsn": f"postgresql://app:{password}@db.internal/app"})
    dump = rec.as_json_text()
    assert secret not in dump and password not in dump
    assert "token=***" in rec.lines()
    assert "postgresql://app:***@db.internal/app" in rec.lines()
    assert rec.of("run_started")[0].params["token"] == "***"


def test_abort_stops_a_running_step_and_records_it(tmp_path: Path) -> None:
    text = HEADER + shell_step("long", "echo started; sleep 60") + shell_step("never", "true")
    runner, rec = make_runner(text, tmp_path)

    async def run_and_abort():
        def on_event(event):
            if event.kind == "output":
                asyncio.get_running_loop().call_soon(runner.abort, "operator pressed abort")

        runner.subscribe(on_event)
        return await runner.run()

    started = time.monotonic()
    result = asyncio.run(run_and_abort())
    assert time.monotonic() - started < 10
    assert result.status == "aborted"
    finished = rec.finished("long")
    assert (finished.status, finished.error) == ("failed", "operator pressed abort")
    assert rec.of("run_finished")[0].error == "operator pressed abort"
    assert [e.step for e in rec.of("step_started")] == ["long"]


def test_wait_polls_until_the_condition_holds(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    text = HEADER + f"""
[[steps]]
id = "ready"
title = "Wait until ready"
action = "wait"
timeout = "10s"
with = {{ command = ["test", "-f", "{flag}"], interval = "0.1s" }}
expect = {{ exit_code = 0 }}
"""
    runner, rec = make_runner(text, tmp_path)

    async def create_later():
        asyncio.get_running_loop().call_later(0.35, flag.write_text, "")
        return await runner.run()

    result = asyncio.run(create_later())
    assert result.status == "succeeded"
    polls = rec.lines("ready")
    assert len(polls) >= 3
    assert "exit code 1" in polls[0] and polls[-1].startswith(f"poll {len(polls)}:")


def test_wait_gives_up_at_its_timeout(tmp_path: Path) -> None:
    text = HEADER + """
[[steps]]
id = "never"
title = "Wait for something that never comes"
action = "wait"
timeout = "0.4s"
with = { command = "false", interval = "0.1s" }
expect = { exit_code = 0 }
"""
    result, rec = run_text(text, tmp_path)
    assert result.status == "failed"
    assert rec.finished("never").error == "timed out after 0.40s"


def test_step_expect_judges_stdout_and_exit_code(tmp_path: Path) -> None:
    text = HEADER + shell_step("count", "echo 7; exit 4", "expect = { exit_code = 4, min = 5 }")
    text += shell_step("low", "echo 3", "expect = { min = 5 }")
    _result, rec = run_text(text, tmp_path)
    checks = rec.of("check")
    assert [(c.step, c.ok) for c in checks] == [("count", True), ("low", False)]
    assert checks[1].detail == "got 3, below the minimum 5"
    assert rec.finished("low").error == "check failed: expected result"


def test_a_command_check_runs_after_the_step(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    text = HEADER + shell_step("write", f"echo payload > {target}") + f"""
[[steps.checks]]
name = "the file holds the payload"
command = ["cat", "{target}"]
expect = {{ equals = "payload" }}
"""
    result, rec = run_text(text, tmp_path)
    assert result.status == "succeeded"
    check = rec.of("check")[0]
    assert (check.name, check.ok) == ("the file holds the payload", True)


def test_a_missing_environment_variable_is_refused_before_the_run(tmp_path: Path) -> None:
    text = HEADER + shell_step("env", "echo ${env.DRDECK_TEST_UNSET_VAR}")
    runner, _rec = make_runner(text, tmp_path, env={"PATH": os.environ["PATH"]})
    with pytest.raises(InvalidInput, match="DRDECK_TEST_UNSET_VAR"):
        runner.check_environment()


def test_environment_values_are_substituted_and_secret_looking_ones_masked(
        tmp_path: Path) -> None:
    text = HEADER + shell_step("env", "echo ${env.REGION} ${env.DB_PASSWORD}")
    env = {"PATH": os.environ["PATH"], "REGION": "eu-west-1", "DB_PASSWORD": "hunter2hunter2"}
    _result, rec = run_text(text, tmp_path, env=env)
    assert rec.lines() == ["eu-west-1 ***"]


def test_dry_run_renders_every_step_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    text = HEADER + """
[params.token]
type = "secret"
""" + shell_step("touch", f"touch {marker}; echo $TOKEN; echo $DSN",
                 env='TOKEN = "${token}", DSN = "${dsn}"') + shell_step("two", "true") + """
[params.dsn]
type = "dsn"
"""
    _result, rec = run_text(text, tmp_path, dry_run=True, params={
        "token": "s3cr3t-value", "dsn": "postgresql://app:s3cr3t-value@db/app"})
    assert not marker.exists()
    planned = rec.of("step_planned")
    assert [p.step for p in planned] == ["touch", "two"]
    assert planned[0].command == f"touch {marker}; echo $TOKEN; echo $DSN"
    assert rec.of("step_started") == []
    assert "s3cr3t-value" not in rec.as_json_text()


def test_the_work_directory_is_private_and_removed_after_success(tmp_path: Path) -> None:
    text = HEADER + shell_step("where", "pwd; stat -c %a ${run.workdir}; touch x")
    result, rec = run_text(text, tmp_path)
    workdir = tmp_path / result.run_id
    assert rec.lines() == [str(workdir), "700"]
    assert not workdir.exists()


def test_the_work_directory_is_kept_after_a_failure_when_it_holds_something(
        tmp_path: Path) -> None:
    text = HEADER + shell_step("partial", "echo half > partial.dump; exit 1")
    result, _ = run_text(text, tmp_path)
    assert result.workdir == tmp_path / result.run_id
    assert (result.workdir / "partial.dump").read_text() == "half\n"


def test_output_floods_arrive_complete_and_in_order(tmp_path: Path) -> None:
    text = HEADER + shell_step("flood", "seq 1 50000")
    _result, rec = run_text(text, tmp_path)
    lines = rec.lines("flood")
    assert lines == [str(n) for n in range(1, 50001)]


def test_a_script_reports_progress_with_progress_lines(tmp_path: Path) -> None:
    text = HEADER + shell_step(
        "copy",
        "echo start; echo '::progress 40/100 MB copying base'; echo '::progress 100/100 MB'",
        "capture = true") + shell_step("use", "echo [${steps.copy.output}]")
    result, rec = run_text(text, tmp_path)
    assert result.status == "succeeded"
    progress = rec.of("progress")
    assert [(p.done, p.total, p.unit, p.detail) for p in progress] == [
        (40, 100, "MB", "copying base"), (100, 100, "MB", "")]
    assert rec.lines("copy") == ["start"]
    assert rec.lines("use") == ["[start]"]


def test_when_skips_a_step_and_records_why(tmp_path: Path) -> None:
    text = HEADER + """
[params.replace]
type = "bool"
default = false
""" + shell_step("drop", "echo dropping", 'when = "${replace}"') + shell_step(
        "keep", "echo keeping", 'when = "not ${replace}"')
    result, rec = run_text(text, tmp_path)
    assert result.status == "succeeded"
    dropped = rec.finished("drop")
    assert (dropped.status, dropped.reason) == ("skipped", "when = '${replace}' does not hold")
    assert rec.lines() == ["keeping"]
    _, rec = run_text(text, tmp_path, params={"replace": "true"})
    assert rec.lines() == ["dropping"]
    assert rec.finished("keep").status == "skipped"


def test_a_failure_retrying_cannot_fix_is_not_retried(tmp_path: Path) -> None:
    text = HEADER + shell_step("broken", "echo ${env.DRDECK_TEST_NEVER_SET}",
                               'retries = 3\nretry_delay = "5s"')
    started = time.monotonic()
    _result, rec = run_text(text, tmp_path, env={"PATH": os.environ["PATH"]})
    assert time.monotonic() - started < 3, "no automatic retry may wait for a permanent failure"
    finished = rec.finished("broken")
    assert finished.attempts == 1 and rec.of("attempt_failed") == []
    assert "DRDECK_TEST_NEVER_SET is not set" in finished.error
