"""Where the journal lives: every form `[journal] url` and $DRDECK_JOURNAL accept, every
form they refuse, through the real config loader and the real `drdeck` command.

The bug this guards: `sqlite:///var/lib/drdeck/journal.db` was taken as a relative
path, so each working directory got its own `./sqlite:/...` journal and a run made
from one directory was missing from the history seen from another.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui.config import ConfigInvalid, load_config_file, load_config_text
from tui.errors import EXIT_INVALID
from tui.journal.location import JournalUrlInvalid
from tui.journal.store import Journal

from cli_support import drdeck, json_events

SHOWN = "drdeck.toml"
RIGHT_FORMS = "use postgresql://... or sqlite:///ABSOLUTE/PATH"
NOT_A_JOURNAL = f"is not a PostgreSQL URL or a SQLite path; {RIGHT_FORMS}"

RUNBOOK = """
[runbook]
name = "journal-url-drill"
title = "A drill recorded in the configured journal"

[[steps]]
id = "hello"
title = "Say hello"
action = "shell"
with = { command = "echo hello" }
"""


def journal_toml(url: str) -> str:
    return f'[journal]\nurl = "{url}"\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """drdeck.toml in a directory of its own, apart from any working directory."""
    path = tmp_path / "conf" / "drdeck.toml"
    path.parent.mkdir()
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: not the config file's."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "journal-url-drill.toml"
    path.write_text(RUNBOOK)
    return path


# --- accepted in drdeck.toml ------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "postgresql://journal@db.internal/drdeck",
    "postgres://journal@db.internal:5433/drdeck?sslmode=require",
    "postgresql://",
    "host=db.internal dbname=drdeck user=journal",
    "service=journal",
])  # fmt: skip
def test_postgresql_forms_are_kept_as_written(conf: Path, elsewhere: Path, url: str) -> None:
    conf.write_text(journal_toml(url))
    assert load_config_file(conf).journal_url == url


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///var/lib/drdeck/journal.db", "/var/lib/drdeck/journal.db"),
    ("sqlite:////var/lib/drdeck/journal.db", "/var/lib/drdeck/journal.db"),  # SQLAlchemy's
    ("/var/lib/drdeck/journal.db", "/var/lib/drdeck/journal.db"),
    ("sqlite:///srv/drdeck journal/j.db", "/srv/drdeck journal/j.db"),
])  # fmt: skip
def test_sqlite_forms_name_the_absolute_file(conf: Path, elsewhere: Path, url: str,
                                             expected: str) -> None:
    conf.write_text(journal_toml(url))
    assert load_config_file(conf).journal_url == expected


def test_a_home_path_is_expanded(conf: Path, elsewhere: Path, home: Path) -> None:
    conf.write_text(journal_toml("~/drdeck/journal.db"))
    assert load_config_file(conf).journal_url == str(home / "drdeck" / "journal.db")


@pytest.mark.parametrize("url", ["journal.db", "state/journal.db", "../shared/journal.db"])
def test_a_relative_path_follows_the_config_file(conf: Path, elsewhere: Path, url: str) -> None:
    conf.write_text(journal_toml(url))
    assert load_config_file(conf).journal_url == str(conf.parent / url)


# --- refused in drdeck.toml -------------------------------------------------------------


@pytest.mark.parametrize("url, fragment", [
    ("mysql://db/journal", NOT_A_JOURNAL),
    ("http://journal.example.com/", NOT_A_JOURNAL),
    ("file:///var/lib/drdeck/journal.db", NOT_A_JOURNAL),
    ("redis:6379", NOT_A_JOURNAL),
    ("PostgreSQL://db/journal", f"{NOT_A_JOURNAL} (the scheme in lower case)"),
    ("SQLITE:///var/lib/drdeck/journal.db", "(the scheme in lower case)"),
    ("sqlite://var/lib/drdeck/journal.db", "names a host or a relative path after "
     "sqlite://; a SQLite journal is a local file: write sqlite:///ABSOLUTE/PATH (three "
     "slashes)"),
    ("sqlite://journal.db", "names a host or a relative path after sqlite://"),
    ("sqlite:journal.db", "is not a SQLite URL: write sqlite:///ABSOLUTE/PATH (three slashes)"),
    ("sqlite:/var/lib/drdeck/journal.db", "is not a SQLite URL: write sqlite:///ABSOLUTE/PATH"),
    ("sqlite:///", "names no file: write sqlite:///ABSOLUTE/PATH"),
    ("sqlite:///~/journal.db", "has ~ after sqlite:///, which is not expanded there"),
    ("sqlite:///var/lib/drdeck/journal.db?mode=ro", "takes no ?options or #fragment"),
    ("sqlite:///var/lib/drdeck/", "names a directory: name the journal file in it, like "
     "sqlite:///var/lib/drdeck/journal.sqlite"),
    ("/var/lib/drdeck/", "names a directory: name the journal file in it, like "
     "/var/lib/drdeck/journal.sqlite"),
    ("~no-such-user-drdeck/journal.db", "starts with a ~ that names no home directory"),
])  # fmt: skip
def test_refused_forms_are_reported_at_the_key(url: str, fragment: str) -> None:
    source = "# the team's journal\n" + journal_toml(url)
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(source, SHOWN)
    [problem] = info.value.problems
    assert (problem.line, problem.col) == (3, 1)
    assert str(problem).startswith(f"{SHOWN}:3:1: [journal] url {url!r} "), str(problem)
    assert fragment in problem.message, str(problem)
    assert info.value.exit_code == EXIT_INVALID


def test_the_refusal_names_the_right_forms_in_full() -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(journal_toml("mysql://db/journal"), SHOWN)
    assert str(info.value) == (f"{SHOWN}:2:1: [journal] url 'mysql://db/journal' is not a "
                               "PostgreSQL URL or a SQLite path; use postgresql://... or "
                               "sqlite:///ABSOLUTE/PATH")


@pytest.mark.parametrize("url", ["mysql://drdeck:hunter2@db/journal",
                                 "postgresql://drdeck:hunter2@db/journal",
                                 "host=db password=hunter2 dbname=journal"])
def test_a_password_never_shows_in_the_refusal(url: str) -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(journal_toml(url), SHOWN)
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith(f"{SHOWN}:2:1: ")


def test_a_path_that_merely_mentions_password_is_a_path(conf: Path, elsewhere: Path) -> None:
    # the password check is for connection strings: a directory name is not a secret
    conf.write_text(journal_toml("/srv/password=none/journal.db"))
    assert load_config_file(conf).journal_url == "/srv/password=none/journal.db"


# --- the Journal itself -----------------------------------------------------------------


def test_the_journal_opens_the_file_a_sqlite_url_names(tmp_path: Path, elsewhere: Path) -> None:
    target = tmp_path / "journals" / "j.db"
    journal = Journal(f"sqlite://{target}")
    try:
        assert journal.where == str(target)
    finally:
        journal.close()
    assert target.is_file() and (target.stat().st_mode & 0o777) == 0o600
    assert list(elsewhere.iterdir()) == []  # no ./sqlite:/... beside the operator


def test_the_journal_refuses_what_the_loader_refuses(elsewhere: Path) -> None:
    with pytest.raises(JournalUrlInvalid, match=r"journal url 'mysql://db/j' is not a "
                       r"PostgreSQL URL"):
        Journal("mysql://db/j")
    assert list(elsewhere.iterdir()) == []


# --- the real command -------------------------------------------------------------------


def run_drill(book: Path, state: Path, cwd: Path, **env: str) -> str:
    proc = drdeck("run", str(book), "--json", state_dir=state, cwd=cwd, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json_events(proc.stdout)[0]["run_id"]


def history(state: Path, cwd: Path, **env: str) -> list[str]:
    proc = drdeck("drills", "--json", state_dir=state, cwd=cwd, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [run["id"] for run in json.loads(proc.stdout)["runs"]]


def test_a_sqlite_url_is_one_journal_from_every_directory(tmp_path: Path, conf: Path,
                                                          book: Path) -> None:
    journal = tmp_path / "shared" / "j.db"
    conf.write_text(journal_toml(f"sqlite://{journal}"))
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    state = tmp_path / "state"
    run_id = run_drill(book, state, one, DRDECK_CONFIG=str(conf))
    assert journal.is_file()
    assert history(state, two, DRDECK_CONFIG=str(conf)) == [run_id]
    # nothing went to the working directories or the default journal
    assert list(one.iterdir()) == [] and list(two.iterdir()) == []
    assert not (state / "journal.sqlite").exists()


def test_a_relative_path_is_beside_the_config_file(tmp_path: Path, conf: Path,
                                                   book: Path) -> None:
    conf.write_text(journal_toml("journal.sqlite"))
    work = tmp_path / "work"
    work.mkdir()
    run_id = run_drill(book, tmp_path / "state", work, DRDECK_CONFIG=str(conf))
    assert (conf.parent / "journal.sqlite").is_file()
    assert list(work.iterdir()) == []
    assert history(tmp_path / "state", tmp_path, DRDECK_CONFIG=str(conf)) == [run_id]


@pytest.mark.parametrize("command", [["drills"], ["status"], ["run", "BOOK", "--json"],
                                     ["report", "--format", "json"]])
def test_the_command_refuses_a_bad_journal_url_with_its_place(tmp_path: Path, conf: Path,
                                                              book: Path,
                                                              command: list[str]) -> None:
    conf.write_text("[journal]\n# the shared one\nurl = \"sqlite://var/lib/drdeck/j.db\"\n")
    args = [str(book) if arg == "BOOK" else arg for arg in command]
    proc = drdeck(*args, "--config", str(conf), state_dir=tmp_path / "state", cwd=tmp_path)
    assert proc.returncode == EXIT_INVALID, proc.stdout + proc.stderr
    assert f"{conf}:3:1: [journal] url 'sqlite://var/lib/drdeck/j.db' names a host" \
        in proc.stderr
    assert "sqlite:///ABSOLUTE/PATH" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "sqlite:").exists() and not (tmp_path / "state").exists()


# --- $DRDECK_JOURNAL --------------------------------------------------------------------


def test_the_environment_takes_a_sqlite_url(tmp_path: Path, book: Path) -> None:
    journal = tmp_path / "env" / "j.db"
    work = tmp_path / "work"
    work.mkdir()
    run_id = run_drill(book, tmp_path / "state", work, DRDECK_JOURNAL=f"sqlite://{journal}")
    assert journal.is_file() and list(work.iterdir()) == []
    assert history(tmp_path / "state", tmp_path, DRDECK_JOURNAL=str(journal)) == [run_id]


def test_a_relative_path_in_the_environment_follows_the_working_directory(
        tmp_path: Path, book: Path) -> None:
    # no file to be relative to: the shell's directory is what the operator sees
    work = tmp_path / "work"
    work.mkdir()
    run_id = run_drill(book, tmp_path / "state", work, DRDECK_JOURNAL="rel.db")
    assert (work / "rel.db").is_file()
    assert history(tmp_path / "state", tmp_path, DRDECK_JOURNAL=str(work / "rel.db")) == [run_id]


def test_a_blank_environment_variable_is_unset(tmp_path: Path, book: Path) -> None:
    state = tmp_path / "state"
    run_id = run_drill(book, state, tmp_path, DRDECK_JOURNAL="  ")
    assert (state / "journal.sqlite").is_file()
    assert history(state, tmp_path) == [run_id]


def test_the_environment_beats_the_config_file(tmp_path: Path, conf: Path, book: Path) -> None:
    conf.write_text(journal_toml(f"sqlite://{tmp_path / 'from-file.db'}"))
    run_drill(book, tmp_path / "state", tmp_path, DRDECK_CONFIG=str(conf),
              DRDECK_JOURNAL=str(tmp_path / "from-env.db"))
    assert (tmp_path / "from-env.db").is_file() and not (tmp_path / "from-file.db").exists()


STATUS_CONFIG = """\
[repositories.nearby]
type = "local"
path = "{repo}"

[clusters.prod]
dsn = "host=/nonexistent dbname=app"
repository = "nearby"
databases = ["app"]
rpo = "24h"
"""


@pytest.mark.parametrize("command", [["drills"], ["status"], ["run", "BOOK", "--json"], []])
def test_a_malformed_environment_variable_is_named_and_exits_2(tmp_path: Path, book: Path,
                                                               command: list[str]) -> None:
    config = tmp_path / "drdeck.toml"
    config.write_text(STATUS_CONFIG.format(repo=tmp_path / "repo"))
    args = [str(book) if arg == "BOOK" else arg for arg in command]
    # [] is the app: it must refuse before a screen opens, so no terminal is needed
    proc = drdeck(*args, state_dir=tmp_path / "state", cwd=tmp_path, timeout=60,
                  DRDECK_CONFIG=str(config), DRDECK_JOURNAL="mysql://ops:hunter2@db/journal")
    assert proc.returncode == EXIT_INVALID, proc.stdout + proc.stderr
    assert proc.stderr == ("drdeck: $DRDECK_JOURNAL 'mysql://ops:***@db/journal' is not a "
                           f"PostgreSQL URL or a SQLite path; {RIGHT_FORMS}\n")
    assert not (tmp_path / "state" / "journal.sqlite").exists()


def test_a_shared_journal_whose_connection_was_cut_is_opened_again(pg_cluster) -> None:
    """The server restarted, failed over or dropped us: the statement that met it fails,
    and says so; the next one opens the journal again (a long run's heartbeat, its events
    and its lock live on this connection)."""
    from tui.journal.store import JournalError

    pg_cluster.execute("create database journal")
    journal = Journal(pg_cluster.dsn("journal"))
    try:
        [(first,)] = journal.execute("select pg_backend_pid()")
        pg_cluster.execute("select pg_terminate_backend(%s)", (first,))
        with pytest.raises(JournalError, match=r"^journal at "):
            journal.execute("select 1")
        [(again,)] = journal.execute("select pg_backend_pid()")
        assert again != first
        assert journal.runs() == []
    finally:
        journal.close()
