"""A local repository that root, the operator and the server's archive_command (as postgres)
all write into: what drdeck creates there stays usable by the others, a user who cannot keep
it so is refused before writing, and a failing archive_command stops a base backup in its
pre-flight and turns `drdeck status` critical.

Everyone here is real: drdeck runs as root, as postgres and as nobody (runuser), and the
archive_command of a real cluster runs `drdeck wal push` as postgres.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.storage import LocalStore
from tui.storage.base import StorageError

from cli_support import REPO, drdeck_env
from pitr_support import (
    archiving_setup,
    give_to_server,
    let_the_server_account_run_drdeck,
    point_config_at,
    wait_archived,
)
from repo_support import fake_snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to act as root, postgres and nobody")

SEGMENT = "000000010000000000000001"


def entries(root: Path) -> list[tuple[Path, os.stat_result]]:
    """Everything under `root` (not the root itself), as lstat sees it."""
    return [(path, path.lstat()) for path in sorted(root.rglob("*"))]


def owner(info: os.stat_result) -> str:
    return f"{pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}"


def failed_count(cluster) -> int:
    return cluster.scalar("select failed_count from pg_stat_archiver")


# --- wal push as root, postgres and nobody, into a shared directory ------------------------


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory every account can reach, with a drdeck.toml for a local repository at
    ./repo (made by each test, with the owner and mode it is about) and a pg_wal/."""
    let_the_server_account_run_drdeck()
    base = Path(tempfile.mkdtemp(prefix="drdeck-shared-"))
    base.chmod(0o755)
    (base / "drdeck.toml").write_text(
        f'[repositories.backups]\ntype = "local"\npath = "{base / "repo"}"\n\n'
        '[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\nrepository = "backups"\n')
    (base / "drdeck.toml").chmod(0o644)
    (base / "pg_wal").mkdir(mode=0o755)
    try:
        yield base
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def push_as(user: str, base: Path, name: str) -> subprocess.CompletedProcess[str]:
    """`drdeck wal push` of a fake segment, run as `user` the way archive_command runs."""
    segment = base / "pg_wal" / name
    segment.write_bytes(os.urandom(8192))
    segment.chmod(0o644)
    state = Path(tempfile.mkdtemp(prefix="drdeck-state-", dir=base))
    state.chmod(0o777)
    as_user = [] if user == "root" else ["runuser", "-u", user, "--"]
    return subprocess.run(
        [*as_user, sys.executable, "-m", "tui", "--config", str(base / "drdeck.toml"),
         "wal", "push", "--cluster", "prod", str(segment)],
        capture_output=True, text=True, env=drdeck_env(state), cwd=REPO,
        stdin=subprocess.DEVNULL, timeout=60, check=False)


def server_groups() -> list[str]:
    """Groups the postgres account belongs to besides its own (Debian: ssl-cert)."""
    account = pwd.getpwnam("postgres")
    return [grp.getgrgid(g).gr_name for g in os.getgrouplist("postgres", account.pw_gid)
            if g != account.pw_gid]


def test_a_setgid_root_is_respected_by_root_and_by_postgres(shared: Path) -> None:
    others = server_groups()
    if not others:
        pytest.skip("the postgres account is in no group besides its own")
    group = others[0]
    repo = shared / "repo"
    repo.mkdir()
    os.chown(repo, pwd.getpwnam("postgres").pw_uid, grp.getgrnam(group).gr_gid)
    repo.chmod(0o2750)  # setgid, the group reads, others nothing

    as_root = push_as("root", shared, SEGMENT)
    assert as_root.returncode == 0, as_root.stderr
    as_postgres = push_as("postgres", shared, "000000010000000000000002")
    assert as_postgres.returncode == 0, as_postgres.stderr

    found = entries(repo)
    assert [p.relative_to(repo).as_posix() for p, _ in found] == [
        "prod", "prod/wal", f"prod/wal/{SEGMENT}.zst", "prod/wal/000000010000000000000002.zst"]
    for path, info in found:
        assert owner(info) == f"postgres:{group}", path
        want = 0o2750 if stat.S_ISDIR(info.st_mode) else 0o640
        assert stat.S_IMODE(info.st_mode) == want, (path, oct(info.st_mode))


def test_a_user_who_cannot_write_is_refused_before_writing(shared: Path) -> None:
    repo = shared / "repo"
    repo.mkdir()
    give_to_server(repo)
    repo.chmod(0o775)  # nobody may look, and would get in as "other": not for backups

    proc = push_as("nobody", shared, SEGMENT)

    assert proc.returncode != 0
    assert (f"cannot write into {repo} as nobody: it belongs to postgres:postgres with mode "
            "0775; run as postgres or root, or add nobody to group postgres") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert entries(repo) == []  # nothing written, not even a folder


def test_a_folder_an_older_drdeck_made_as_root_is_named_with_its_fix(shared: Path) -> None:
    """Repositories broken before this fix: the archive's error says which folder and how."""
    repo = shared / "repo"
    repo.mkdir(mode=0o750)
    give_to_server(repo)
    (repo / "prod").mkdir(mode=0o700)  # root:root 0700, as drdeck used to make it

    proc = push_as("postgres", shared, SEGMENT)

    assert proc.returncode != 0
    assert "Permission denied" in proc.stderr
    assert (f"as postgres, {repo / 'prod'} belongs to root:root with mode 0700; give it the "
            f"repository's owner and group: chown -R postgres:postgres {repo / 'prod'}"
            ) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_link_the_server_account_plants_does_not_lead_root_elsewhere(shared: Path) -> None:
    """The levels below the root belong to its owner: root must not write through them."""
    account = pwd.getpwnam("postgres")
    repo, elsewhere = shared / "repo", shared / "elsewhere"
    for directory in (repo, elsewhere):
        directory.mkdir(mode=0o750)
        os.chown(directory, account.pw_uid, account.pw_gid)
    subprocess.run(["runuser", "-u", "postgres", "--", "mkdir", str(repo / "prod")], check=True)
    subprocess.run(["runuser", "-u", "postgres", "--", "ln", "-s", str(elsewhere),
                    str(repo / "prod" / "snapshots")], check=True)
    with pytest.raises(StorageError, match="symbolic link"):
        LocalStore(repo).write_bytes("prod/snapshots/app/20261202T000000Z.json", b"{}")
    assert list(elsewhere.iterdir()) == []


def test_a_new_repository_root_is_private_to_its_maker(shared: Path) -> None:
    """No root yet: whoever writes first makes it, 0700, as before (see sharing.py)."""
    repo = shared / "repo"
    refused = push_as("postgres", shared, SEGMENT)
    assert refused.returncode != 0
    assert (f"cannot create directory {repo}: Permission denied (as postgres, {shared} "
            "belongs to root:root with mode 0755)") in refused.stderr

    os.chown(shared, pwd.getpwnam("postgres").pw_uid, -1)
    proc = push_as("postgres", shared, SEGMENT)
    assert proc.returncode == 0, proc.stderr
    assert (owner(repo.stat()), stat.S_IMODE(repo.stat().st_mode)) == ("postgres:postgres",
                                                                       0o700)
    for path, info in entries(repo):
        assert owner(info) == "postgres:postgres", path
        assert stat.S_IMODE(info.st_mode) == (0o700 if stat.S_ISDIR(info.st_mode) else 0o600)


# --- a real cluster archiving through drdeck -----------------------------------------------


@pytest.fixture
def archiving(tmp_path: Path, gpg_home, make_pg_cluster):
    """A cluster whose archive_command is `drdeck wal push` (as postgres) into a repository
    that belongs to postgres:postgres 0750, still empty: nothing archived yet."""
    give_to_server(gpg_home.path)
    setup = archiving_setup(tmp_path / "state", recipients=[gpg_home.fingerprint],
                            gpg_home=gpg_home.path)
    setup.repo.chmod(0o750)
    cluster = make_pg_cluster(wal_segsize_mb=1, archive_mode="on",
                              archive_command=setup.archive_command())
    cluster.execute("create database app")
    point_config_at(setup, cluster)
    try:
        yield setup, cluster
    finally:
        subprocess.run(["rm", "-rf", str(setup.base)], check=False)


def test_a_base_backup_as_root_keeps_the_archive_working(archiving) -> None:
    setup, cluster = archiving
    # CREATE DATABASE filled segments, archived by now; nothing more goes out before the
    # next switch. Emptied, the repository gets its first folders from the base backup.
    wait_archived(cluster)
    shutil.rmtree(setup.repo / "prod")
    assert entries(setup.repo) == []

    backup = setup.deck.run("run", "base-backup", "--headless")

    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "WAL archiving works" in backup.stdout
    # and the archive goes on: segment after segment, as postgres, with no failure
    failures = failed_count(cluster)
    for _ in range(2):
        name = wait_archived(cluster)
        assert (setup.repo / "prod" / "wal" / f"{name}.zst.gpg").is_file()
    assert failed_count(cluster) == failures == 0
    made = entries(setup.repo)
    assert any(p.name == "base.tar.zst.gpg" for p, _ in made)
    assert any(p.name == "manifest.json" for p, _ in made)
    for path, info in made:
        assert owner(info) == "postgres:postgres", path  # the root's, not root's own
        want = 0o750 if stat.S_ISDIR(info.st_mode) else 0o640
        assert stat.S_IMODE(info.st_mode) == want, (path, oct(info.st_mode))


def status_of(setup) -> tuple[int, dict[str, dict]]:
    proc = setup.deck.run("status", "--json")
    items = json.loads(proc.stdout)["clusters"][0]["items"]
    return proc.returncode, {i["check"]: i for i in items}


def test_a_failing_archive_command_stops_the_base_backup_and_turns_status_critical(
        archiving) -> None:
    setup, cluster = archiving
    # a fresh, verified snapshot and a base backup: only the archiver can become critical
    fake_snapshot(LocalStore(setup.repo), "prod", "app", datetime.now(UTC) - timedelta(minutes=1),
                  verified=("full", True))
    first = setup.deck.run("run", "base-backup", "--headless")
    assert first.returncode == 0, first.stdout + first.stderr
    wait_archived(cluster)
    code, items = status_of(setup)
    assert (code, items["archiver"]["state"], items["archiver"]["ok"]) == (1, "ok", True), items
    assert items["archiver"]["reason"].startswith("archiving works: no failure")

    working = setup.archive_command()
    cluster.configure(archive_command="cp %p /nonexistent/archive/%f")
    cluster.reload()
    cluster.execute("create table filler (n int); insert into filler values (1)")  # a segment
    cluster.execute("select pg_switch_wal()")  # to archive, which now fails
    deadline = time.monotonic() + 30
    while failed_count(cluster) == 0:
        assert time.monotonic() < deadline, "the archive command never failed"
        time.sleep(0.1)
    before = sorted(p for p, _ in entries(setup.repo))

    backup = setup.deck.run("run", "base-backup", "--headless")

    assert backup.returncode == 1, backup.stdout + backup.stderr
    said = backup.stdout + backup.stderr
    assert ("WAL archiving is failing: fix archive_command; WAL is piling up in pg_wal until "
            "it works.") in said
    assert f"The server's log ({cluster.log_file}) says:" in said
    assert re.search(r"cp: cannot create regular file '/nonexistent/archive/0000000100+\w+'",
                     said), said
    assert "archive command failed with exit code 1" in said
    assert "The failed archive command was: cp pg_wal/" in said
    assert "Traceback" not in said
    assert sorted(p for p, _ in entries(setup.repo)) == before  # refused before writing

    code, items = status_of(setup)
    assert code == 2
    assert (items["archiver"]["state"], items["archiver"]["ok"]) == ("critical", False)
    assert "archive command failed with exit code 1" in items["archiver"]["reason"]
    assert {i["state"] for c, i in items.items() if c != "archiver"} <= {"ok", "warning"}
    text = setup.deck.run("status")
    assert text.returncode == 2
    assert re.search(r"^CRITICAL\s+prod\s+archiver\s+WAL archiving is failing: fix "
                     r"archive_command", text.stdout, re.M), text.stdout
    metrics = setup.deck.run("status", "--prometheus")
    assert 'drdeck_archiver_ok{cluster="prod"} 0' in metrics.stdout.splitlines()

    cluster.configure(archive_command=working)  # fixed: what piled up goes out, status calms
    cluster.reload()
    wait_archived(cluster)
    code, items = status_of(setup)
    assert (code, items["archiver"]["state"]) == (1, "ok")


def test_an_unreadable_log_still_shows_the_archivers_numbers() -> None:
    """Where the server's log cannot be read, the refusal says so and gives pg_stat_archiver."""
    from tui.postgres.archiver import ArchiverCheck, ArchiverStats

    now = datetime.now(UTC)
    stats = ArchiverStats("on", False, 4, "000000010000000000000004", now - timedelta(hours=1),
                          7, "000000010000000000000005", now,
                          log_problem="the server does not run on this machine")
    text = ArchiverCheck(stats, stats).explain()
    assert stats.failing
    assert text.startswith("WAL archiving is failing: fix archive_command; WAL is piling up "
                           "in pg_wal until it works. The server's log could not be read (the "
                           "server does not run on this machine); pg_stat_archiver: last "
                           "failed 000000010000000000000005 at ")
    assert "(7 failures), last archived 000000010000000000000004 at " in text
