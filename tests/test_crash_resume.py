"""SIGKILL of `drdeck run` at seeded random points: the journal says exactly what happened,
the run shows as interrupted after the next drdeck command, and `drdeck resume` completes
it, every step's effect present exactly once and the run one row in the journal.

The runbook is six quick steps: shell steps that append to an effects ledger once (their
own idempotency: an atomic `mkdir` claims the effect), a captured value a later step
uses, and two milestones. A kill lands after the k-th event line the run printed, or
after a random delay (start-up, journal creation, between and inside steps). What the
journal claims is compared with what the steps really did (the files they left) and with
what the process printed before it died.

A killed drdeck cannot stop its running step: that child finishes on its own (or dies
of SIGPIPE on its next output line). The test waits for such orphans before judging.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from tui.journal.store import Journal

from cli_support import REPO, drdeck, drdeck_env, json_events
from crash_support import parse_json_lines, reaped, wait_gone

SEED = 20261127
CASES = 4  # test cases (spread over xdist workers), each with KILLS_PER_CASE kill points
KILLS_PER_CASE = 6

SHELL_STEPS = ("prepare", "build", "use", "finish")
STEPS = ("prepare", "build", "halfway", "use", "finish", "restored")
EFFECTS = ["build", "use", "finish"]  # the ledger after a complete run, in order


def effect(step: str) -> str:
    """Claim the effect atomically, then append it: whoever runs the step, it happens once."""
    return (f"if mkdir ${{dir}}/{step}.claim 2>/dev/null; then echo {step} >> ${{dir}}/effects; "
            f"fi\ntouch ${{dir}}/{step}.done")


RUNBOOK = f"""
[runbook]
name = "crash-drill"
title = "Six quick steps, killed anywhere"
rto = "1h"
lock = "crash drill in ${{dir}}"

[params.dir]
type = "string"
help = "where the steps leave their marks"

[[steps]]
id = "prepare"
title = "Make a token, once"
action = "shell"
capture = true
[steps.with]
command = '''
echo prepare >> ${{dir}}/starts
sleep 0.03
test -e ${{dir}}/token || {{
  echo tok-$$-$(date +%s%N) > ${{dir}}/token.tmp && mv ${{dir}}/token.tmp ${{dir}}/token; }}
touch ${{dir}}/prepare.done
cat ${{dir}}/token'''

[[steps]]
id = "build"
title = "Build"
action = "shell"
[steps.with]
command = '''
echo build >> ${{dir}}/starts
echo building
sleep 0.05
{effect("build")}
echo built'''

[[steps]]
id = "halfway"
title = "Halfway"
action = "milestone"
with = {{ name = "halfway" }}

[[steps]]
id = "use"
title = "Use the token (an argv: the captured value is one argument)"
action = "shell"
[steps.with]
command = ["sh", "-c", '''
echo use >> "$2/starts"
sleep 0.03
printf '%s\\n' "$1" > "$2/use.out"
if mkdir "$2/use.claim" 2>/dev/null; then echo use >> "$2/effects"; fi
touch "$2/use.done"
echo used "$1"''', "use", "${{steps.prepare.output}}", "${{dir}}"]

[[steps]]
id = "finish"
title = "Finish"
action = "shell"
[steps.with]
command = '''
echo finish >> ${{dir}}/starts
echo finishing
sleep 0.05
{effect("finish")}
echo finished'''

[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = {{ name = "service-restored" }}
"""


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "crash-drill.toml"
    path.write_text(RUNBOOK)
    return path


def kill_points(case: int) -> list[tuple[str, float]]:
    """("after-event", k) or ("after-delay", seconds): the same list on every run."""
    rng = random.Random(SEED)
    half = CASES * KILLS_PER_CASE // 2
    points: list[tuple[str, float]] = [("after-event", k) for k in rng.sample(range(1, 24), half)]
    points += [("after-delay", round(rng.uniform(0.05, 0.6), 3)) for _ in range(half)]
    rng.shuffle(points)
    return points[case * KILLS_PER_CASE:(case + 1) * KILLS_PER_CASE]


def lines_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def judge_the_crash(book: Path, state: Path, marks: Path, how: str, when: float) -> None:
    printed_text = run_and_kill(book, state, marks, how, when)
    printed = parse_json_lines(printed_text)
    wait_gone(str(marks))  # the killed run's step may still be finishing on its own

    # the next drdeck command works on the journal the crash left, and marks the run
    listing = drdeck("drills", "--json", state_dir=state)
    assert listing.returncode == 0, listing.stderr
    runs = json.loads(listing.stdout)["runs"]
    starts = lines_of(marks / "starts")
    if not runs:
        # killed before the run was recorded: then nothing ran and nothing was printed
        assert printed == [] and starts == [], (printed, starts)
        return
    [summary] = runs
    run_id = summary["id"]
    assert all(e.get("run_id", run_id) == run_id for e in printed)

    journal = Journal(str(state / "journal.sqlite"))
    try:
        before = journal.run(run_id)
    finally:
        journal.close()
    finished = any(e["event"] == "run_finished" for e in printed)
    assert before.run.status == ("succeeded" if finished else before.run.status)
    assert before.run.status in ("interrupted", "succeeded"), before.run.status
    statuses = {s.step_id: s.status for s in before.steps}

    # the journal never says more than happened...
    for step_id, status in statuses.items():
        assert status in ("pending", "interrupted", "succeeded"), (step_id, status)
        if status == "succeeded" and step_id in SHELL_STEPS:
            assert (marks / f"{step_id}.done").exists(), f"{step_id} recorded but never done"
    recorded_milestones = [m["name"] for m in before.milestones]
    for step_id, name in (("halfway", "halfway"), ("restored", "service-restored")):
        if statuses.get(step_id) == "succeeded":
            assert name in recorded_milestones
    # ...and is never behind what the process printed (it is written first)
    for event in printed:
        if event["event"] == "step_finished":
            assert statuses[event["step"]] == event["status"] == "succeeded", event
        elif event["event"] == "step_started":
            assert statuses[event["step"]] != "pending", event
        elif event["event"] == "milestone":
            assert event["name"] in recorded_milestones, event
    # steps run in order: succeeded ones, at most one interrupted, then pending ones
    order = [statuses.get(s, "pending") for s in STEPS]
    shape = "".join({"succeeded": "s", "interrupted": "i", "pending": "p"}[s] for s in order)
    assert shape.rstrip("p").rstrip("i").strip("s") == "", shape
    assert shape.count("i") <= 1, shape
    assert all(starts.count(s) <= 1 for s in SHELL_STEPS), starts
    ran_before = {s: starts.count(s) for s in SHELL_STEPS}

    if before.run.status == "succeeded":
        refused = drdeck("resume", run_id, "--json", state_dir=state)
        assert refused.returncode == 2 and "only an interrupted" in refused.stderr
    else:
        resumed = drdeck("resume", run_id, "--json", state_dir=state)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
        events = json_events(resumed.stdout)
        again = [e["step"] for e in events if e["event"] == "step_started"]
        assert again == [s for s in STEPS if statuses.get(s) != "succeeded"], again
        # a step the journal had as succeeded is replayed, never run a second time
        for step in SHELL_STEPS:
            if statuses.get(step) == "succeeded":
                assert lines_of(marks / "starts").count(step) == ran_before[step], step

    journal = Journal(str(state / "journal.sqlite"))
    try:
        after = journal.run(run_id)
        every_run = journal.runs()
    finally:
        journal.close()
    assert [r.id for r in every_run] == [run_id], "a resume is the same run, one row"
    assert after.run.status == "succeeded"
    assert after.run.resumes == (0 if before.run.status == "succeeded" else 1)
    assert [s.status for s in after.steps] == ["succeeded"] * len(STEPS)
    # every effect exactly once, in order; the captured token reached the step that used it
    assert lines_of(marks / "effects") == EFFECTS
    token = (marks / "token").read_text().strip()
    assert (marks / "use.out").read_text().strip() == token
    names = [m["name"] for m in after.milestones]
    assert set(names) == {"halfway", "service-restored"}, names
    assert after.run.rto_s is not None and after.run.rto_s >= 0
    # the RTO counts from the first start, across the crash
    first_restored = min(m["elapsed_s"] for m in after.milestones
                         if m["name"] == "service-restored")
    assert after.run.rto_s == pytest.approx(first_restored, abs=0.01)


def run_and_kill(book: Path, state: Path, marks: Path, how: str,
                            when: float) -> str:
    """Start the run, SIGKILL it at the point; what it printed before dying."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "run", str(book), "-p", f"dir={marks}", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        cwd=REPO, env=drdeck_env(state))
    seen = []
    with reaped(proc):
        assert proc.stdout is not None
        if how == "after-event":
            for _ in range(int(when)):
                line = proc.stdout.readline()
                if not line:
                    break  # the run ended first: it is "killed" after its end
                seen.append(line)
        else:
            time.sleep(when)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        seen.append(proc.stdout.read())
    return b"".join(seen).decode("utf-8", "replace")


@pytest.mark.parametrize("case", range(CASES))
def test_a_run_killed_anywhere_is_recorded_truly_and_resumes_to_success(
        book: Path, tmp_path: Path, case: int) -> None:
    for index, (how, when) in enumerate(kill_points(case)):
        where = tmp_path / f"kill-{index}"
        marks = where / "marks"
        marks.mkdir(parents=True)
        try:
            judge_the_crash(book, where / "state", marks, how, when)
        except AssertionError as exc:
            raise AssertionError(f"kill point {how} {when}: {exc}") from exc


KILL_INSIDE_THE_JOURNAL = """
import os, signal, sys
from tui.journal import store

stop_after, done = int(sys.argv[2]), []
real_execute = store.Journal.execute


def execute(self, statement, params=()):
    rows = real_execute(self, statement, params)
    done.append(statement)
    if len(done) == stop_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return rows


store.Journal.execute = execute
store.Journal(sys.argv[1]).close()
print(len(done))
"""


def test_a_kill_while_the_journal_is_created_leaves_it_usable(book: Path,
                                                               tmp_path: Path) -> None:
    # The first drdeck command creates the journal's tables: a SIGKILL after any one of
    # those statements (a few milliseconds, hard to hit with a timer, so the process
    # kills itself there) must leave a journal the next command opens, not tables
    # without their schema version ("table runs already exists" for ever after).
    script = [sys.executable, "-c", KILL_INSIDE_THE_JOURNAL]  # tui from REPO: the cwd
    counted = subprocess.run([*script, str(tmp_path / "count.sqlite"), "0"],
                             capture_output=True, text=True, cwd=REPO, check=True)
    statements = int(counted.stdout)
    assert statements > 5
    for stop_after in range(1, statements):
        state = tmp_path / f"after-{stop_after}"
        state.mkdir()
        killed = subprocess.run([*script, str(state / "journal.sqlite"), str(stop_after)],
                                capture_output=True, cwd=REPO)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        listing = drdeck("drills", "--json", state_dir=state)
        assert listing.returncode == 0, f"killed after statement {stop_after}: {listing.stderr}"
    marks = tmp_path / "marks"
    marks.mkdir()
    again = drdeck("run", str(book), "-p", f"dir={marks}", "--json", state_dir=state)
    assert again.returncode == 0, again.stderr
    assert lines_of(marks / "effects") == EFFECTS


def test_the_kill_points_are_seeded_and_cover_the_run() -> None:
    points = [p for case in range(CASES) for p in kill_points(case)]
    assert len(points) >= 20 and len(set(points)) == len(points)
    assert points == [p for case in range(CASES) for p in kill_points(case)]
    kinds = {how for how, _ in points}
    assert kinds == {"after-event", "after-delay"}


# --- two `wal push` of one segment at once -------------------------------------------------

WAL_CLUSTER = "prod"
ROUNDS = 3  # segments raced per test: each round is one chance for the race to bite


def as_pushed(objects: dict[str, bytes]) -> dict[str, bytes]:
    """Archived objects by the WAL file each holds: zstd frames (the default) opened."""
    assert all(key.endswith(".zst") for key in objects), sorted(objects)
    return {key.removesuffix(".zst"): zstandard.ZstdDecompressor().decompress(raw)
            for key, raw in objects.items()}


@pytest.fixture(params=["local", "s3"])
def wal_repository(request: pytest.FixtureRequest, tmp_path: Path):
    """(drdeck.toml, environment, what the repository holds under <cluster>/wal/: each
    file by its name, as it was pushed)."""
    if request.param == "local":
        repo = tmp_path / "repo"
        repository = f'type = "local"\npath = "{repo}"'
        env = drdeck_env(tmp_path / "state")

        def stored() -> dict[str, bytes]:
            folder = repo / WAL_CLUSTER / "wal"
            return as_pushed({p.name: p.read_bytes() for p in sorted(folder.iterdir())}) \
                if folder.is_dir() else {}
    else:
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        repository = (f'type = "s3"\nbucket = "{bucket}"\nprefix = "pg"\n'
                      f'endpoint_url = "{server.url}"\nregion = "{server.region}"')
        env = server.environ(drdeck_env(tmp_path / "state"))
        client = server.client()

        def stored() -> dict[str, bytes]:
            wal = f"pg/{WAL_CLUSTER}/wal/"
            listing = client.list_objects_v2(Bucket=bucket, Prefix=wal)
            return as_pushed({item["Key"][len(wal):]: client.get_object(
                        Bucket=bucket, Key=item["Key"])["Body"].read()
                    for item in listing.get("Contents", ())})
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""[repositories.backups]
{repository}

[clusters.{WAL_CLUSTER}]
dsn = "host=/nonexistent dbname=app"
repository = "backups"
""")
    return config, env, stored


def race_pushes(config: Path, env: dict[str, str], work: Path, name: str,
                contents: list[bytes]) -> list[subprocess.CompletedProcess]:
    """`drdeck wal push` of `name` once per content, released at the same instant.

    Each push reads its segment from a FIFO: a process blocks there, its configuration
    read and its repository opened, until the test writes the bytes. Both FIFOs are
    filled, then closed together, so the two pushes look for the segment and write it
    within the same few milliseconds (with regular files, Python's start-up jitter
    would keep them apart).
    """
    fifos, procs = [], []
    for index in range(len(contents)):
        folder = work / f"pg_wal_{name}_{index}"
        folder.mkdir(parents=True)
        fifo = folder / name
        os.mkfifo(fifo)
        fifos.append(fifo)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tui", "--config", str(config), "wal", "push", "--cluster",
             WAL_CLUSTER, str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True, cwd=REPO, env=env))
    writers = []
    try:
        for fifo, proc in zip(fifos, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:  # O_NONBLOCK: ENXIO until the push opens its end
                try:
                    writers.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    break
                except OSError:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "the push never read its segment"
                    time.sleep(0.002)
        for fd, content in zip(writers, contents, strict=True):
            assert os.write(fd, content) == len(content)  # less than a pipe's buffer
    finally:
        for fd in writers:
            os.close(fd)
    done = []
    for proc in procs:
        with reaped(proc):
            out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_two_pushes_of_the_same_segment_at_once_both_succeed_with_one_object(
        wal_repository, tmp_path: Path) -> None:
    config, env, stored = wal_repository
    expected = {}
    for number in range(1, ROUNDS + 1):
        name = f"{1:08X}{0:08X}{number:08X}"
        content = os.urandom(8192)
        pushes = race_pushes(config, env, tmp_path / "work", name, [content, content])
        for push in pushes:
            assert push.returncode == 0, push.stderr
            assert "Traceback" not in push.stderr
        expected[name] = content
        assert stored() == expected, f"round {number}"


def test_two_pushes_of_different_content_at_once_one_wins_the_other_fails_loudly(
        wal_repository, tmp_path: Path) -> None:
    config, env, stored = wal_repository
    expected = {}
    for number in range(1, ROUNDS + 1):
        name = f"{1:08X}{0:08X}{number:08X}"
        contents = [os.urandom(8192), os.urandom(8192)]
        pushes = race_pushes(config, env, tmp_path / "work", name, contents)
        codes = [p.returncode for p in pushes]
        assert sorted(c == 0 for c in codes) == [False, True], (
            f"round {number}: exit codes {codes}; both pushes said they archived {name}, "
            f"so one of them was silently overwritten: {[p.stderr for p in pushes]}")
        winner = codes.index(0)
        loser = pushes[1 - winner]
        assert "DIFFERENT content" in loser.stderr and name in loser.stderr, loser.stderr
        assert "Traceback" not in loser.stderr
        expected[name] = contents[winner]
        assert stored() == expected, f"round {number}: the winner's bytes are what is kept"


def test_a_resume_never_connects_with_a_masked_password(tmp_path: Path) -> None:
    """The journal keeps a connection string with its password as ***: resuming must ask
    for it again, not connect with *** as the password."""
    from tui.config import Config
    from tui.journal.store import RunRow, StepRow, now_iso, open_journal
    from tui.runbook.loader import load_runbook

    path = tmp_path / "masked.toml"
    path.write_text('[runbook]\nname = "masked"\ntitle = "Uses a server"\n\n'
                    '[params.dsn]\ntype = "dsn"\n\n'
                    '[[steps]]\nid = "look"\ntitle = "Look"\naction = "sql"\n'
                    'with = { dsn = "${dsn}", query = "select 1" }\n')
    runbook = load_runbook(path)
    os.environ["DRDECK_STATE_DIR"] = str(tmp_path)
    try:
        journal = open_journal(Config())
        journal.insert_run(RunRow(
            id="f4iled0run00", runbook="masked", runbook_sha256=runbook.sha256, title="Uses",
            scenario="other", mode="drill", operator="me@here", host="elsewhere", pid=1,
            started_at=now_iso(), status="failed", runbook_path=str(path),
            params_json=json.dumps({"dsn": "postgresql://app:***@db.internal/shop"})))
        journal.upsert_step(StepRow("f4iled0run00", "look", 0, "Look", "sql", "failed"))
        journal.close()
    finally:
        del os.environ["DRDECK_STATE_DIR"]
    done = drdeck("resume", "f4iled0run00", "--headless", state_dir=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "passwords are never stored" in done.stderr and "***" not in done.stderr
