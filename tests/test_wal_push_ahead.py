"""`drdeck wal push --spool DIR`: a real cluster's archiver archiving through the pusher."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from tui.storage.local import LocalStore
from tui.wal.archive import WalError, fetch_bytes
from tui.wal.push_ahead import check_spool

from pitr_support import archiving_setup, give_to_server, wait_archived


def _archive_command(setup, spool: Path) -> str:
    return " ".join([shlex.quote(sys.executable), "-m", "tui", "--config",
                     shlex.quote(str(setup.config)), "wal", "push", "--cluster", "prod", "-v",
                     "--spool", shlex.quote(str(spool)), "%p"])


def _spool(setup) -> Path:
    """The spool, the server account's and private to it, as an operator makes it."""
    spool = setup.base / "spool"
    for folder in (spool, spool / "pushed", spool / "failed"):
        folder.mkdir(mode=0o700)
    give_to_server(spool)
    return spool


def _switch(cluster, count: int) -> list[str]:
    names = []
    for n in range(count):
        cluster.execute(f"insert into t select g from generate_series(1, 2000) g -- {n}")
        names.append(cluster.scalar("select pg_walfile_name(pg_current_wal_lsn())"))
        cluster.execute("select pg_switch_wal()")
    return names


def test_the_archiver_archives_every_segment_through_the_pusher(make_pg_cluster,
                                                                tmp_path) -> None:
    """With the line `drdeck wal archive-command --spool` prints: the shell takes each
    mark, drdeck starts only when one is missing or names other content."""
    from tui.wal.restore_line import archive_spooled

    setup = archiving_setup(tmp_path / "state", recipients=[], gpg_home=None)
    spool = _spool(setup)
    line = archive_spooled([sys.executable, "-m", "tui"], setup.config, "prod", spool)
    try:
        cluster = make_pg_cluster(wal_segsize_mb=1, archive_mode="on", archive_command=line)
        cluster.execute("create table t (n int)")
        # a mark left by another history of a name still to come: never trusted
        upcoming = cluster.scalar("select pg_walfile_name(pg_current_wal_lsn())")
        (spool / "pushed" / upcoming).write_text("0" * 64)
        give_to_server(spool)
        names = _switch(cluster, 12)
        wait_archived(cluster, timeout=60)
        store = LocalStore(setup.repo)
        for name in [upcoming, *names]:
            data = fetch_bytes(store, "prod", name)
            assert data is not None and len(data) == 1 << 20, name
        assert cluster.scalar("select failed_count from pg_stat_archiver") == 0
        deadline = time.monotonic() + 10
        while list((spool / "pushed").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((spool / "pushed").iterdir()) == []  # every mark taken, none left
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)


def test_a_failing_repository_fails_the_segment_and_then_catches_up(make_pg_cluster,
                                                                      tmp_path) -> None:
    setup = archiving_setup(tmp_path / "state", recipients=[], gpg_home=None)
    spool = _spool(setup)
    try:
        cluster = make_pg_cluster(wal_segsize_mb=1, archive_mode="on",
                                  archive_command=_archive_command(setup, spool))
        cluster.execute("create table t (n int)")
        wait_archived(cluster)
        moved = setup.repo.with_name("repo-away")
        setup.repo.rename(moved)
        setup.repo.write_text("not a directory")  # the repository cannot be written
        [name] = _switch(cluster, 1)
        deadline = time.monotonic() + 30
        while cluster.scalar("select failed_count from pg_stat_archiver") == 0:
            assert time.monotonic() < deadline, "the archiver never failed"
            time.sleep(0.1)
        assert cluster.scalar("select last_archived_wal from pg_stat_archiver") != name
        assert name in Path(cluster.log_file).read_text()
        assert not (spool / "pushed" / name).exists()
        setup.repo.unlink()
        moved.rename(setup.repo)
        wait_archived(cluster, timeout=60)
        assert fetch_bytes(LocalStore(setup.repo), "prod", name) is not None
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)


def test_a_spool_others_can_write_is_refused(tmp_path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    with pytest.raises(WalError, match="no other can write"):
        check_spool(spool)


def test_archive_command_prints_the_line_for_postgresql_conf(tmp_path) -> None:
    from cli_support import drdeck

    config = tmp_path / "drdeck.toml"
    config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{tmp_path}/r"\n\n'
                      '[clusters.prod]\ndsn = "host=/nowhere"\nrepository = "backups"\n')
    spool = tmp_path / "spool"
    proc = drdeck("--config", str(config), "wal", "archive-command", "--spool", str(spool),
                  state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("archive_command = '") and line.endswith("'")
    assert f"{spool}/pushed/\"%f\"" in line and f"--spool {spool}" in line
    assert '"%p"' in line and "wal push --cluster prod" in line
