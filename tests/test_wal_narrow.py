"""--since and --until shorten the scan: of a long archive, only the segments around the
moments asked for are read, found by reading the commit times of a few segments; what
lies between the bounds is always read whole."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tui.postgres.access import give_to_server
from tui.wal.narrow import segments_between

from pitr_support import wait_archived

SEGMENTS = 40


@pytest.fixture(scope="module")
def archive() -> Iterator[dict]:
    """SEGMENTS archived 1 MiB segments, one commit in each (some left without any), and
    each commit's time."""
    from harness.postgres import scratch_cluster

    base = Path(tempfile.mkdtemp(prefix="drdeck-narrow-"))
    base.chmod(0o755)  # archive_command runs as the server's account
    plain = base / "archive"
    plain.mkdir()
    give_to_server(plain)
    try:
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on", autovacuum="off",
                             archive_command=f"cp %p {plain}/%f",
                             track_commit_timestamp="on") as cluster:
            cluster.execute("create table t (n int, at timestamptz)")
            cluster.execute("select pg_switch_wal()")
            first = cluster.scalar("select pg_walfile_name(pg_current_wal_lsn())")
            commits: dict[str, object] = {}
            for n in range(SEGMENTS):
                if n % 7 == 3:  # now and then a segment with no commit at all
                    cluster.execute("select pg_logical_emit_message(false, 'drdeck', 'x')")
                else:
                    cluster.execute("insert into t values (%s, clock_timestamp())", (n,))
                    name = cluster.scalar("select pg_walfile_name(pg_current_wal_lsn())")
                    commits[name] = cluster.scalar(
                        "select pg_xact_commit_timestamp(xmin) from t where n = %s", (n,))
                cluster.execute("select pg_switch_wal()")
            cluster.execute("select pg_switch_wal()")

            wait_archived(cluster)
            names = sorted(p.name for p in plain.iterdir() if p.name >= first and len(p.name) == 24)
            yield {"names": names, "commits": commits, "dir": plain}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _fetcher(directory: Path, reads: list[str]):
    def fetch(name: str) -> bytes | None:
        reads.append(name)
        path = directory / name
        return path.read_bytes() if path.exists() else None
    return fetch


def test_since_starts_just_before_the_segment_of_the_first_commit_at_it(archive) -> None:
    names, commits = archive["names"], archive["commits"]
    assert len(names) >= SEGMENTS
    wanted = sorted(commits)[25]
    reads: list[str] = []
    kept = segments_between(_fetcher(archive["dir"], reads), names, commits[wanted], None,
                            look_back=timedelta(0))
    assert kept[0] == names[names.index(wanted) - 1] and kept[-1] == names[-1]
    assert len(set(reads)) <= 10, reads  # a bisection, not a reading of them all


def test_until_stops_one_segment_after_the_first_commit_past_it(archive) -> None:
    names, commits = archive["names"], archive["commits"]
    at = sorted(commits)[10]
    kept = segments_between(_fetcher(archive["dir"], []), names, None, commits[at])
    following = sorted(commits)[11]  # the first segment with a commit after `until`
    assert kept[0] == names[0]
    assert kept[-1] == names[names.index(following) + 1]


def test_both_bounds_keep_everything_between_them(archive) -> None:
    names, commits = archive["names"], archive["commits"]
    ordered = sorted(commits)
    kept = segments_between(_fetcher(archive["dir"], []), names, commits[ordered[12]],
                            commits[ordered[20]], look_back=timedelta(0))
    assert all(name in kept for name in ordered[12:21])
    assert len(kept) < len(names) // 2


def test_the_look_back_reaches_the_transactions_that_began_before_since(archive) -> None:
    names, commits = archive["names"], archive["commits"]
    kept = segments_between(_fetcher(archive["dir"], []), names,
                            commits[sorted(commits)[30]], None)  # 10 minutes back: all
    assert kept == names


def test_a_short_archive_or_no_bound_is_read_whole(archive) -> None:
    names, commits = archive["names"], archive["commits"]
    reads: list[str] = []
    some = names[:10]
    assert segments_between(_fetcher(archive["dir"], reads), some,
                            commits[sorted(commits)[5]], None) == some
    assert segments_between(_fetcher(archive["dir"], reads), names, None, None) == names
    assert reads == []
