"""Destructive transactions found in real pg_waldump output, per PostgreSQL major.

A real cluster of each major here (the distribution's 15, and the setup's 17 and 18) runs a
DROP TABLE, a TRUNCATE, big DELETEs and UPDATEs, a VACUUM FULL, a REINDEX, a DROP SCHEMA
... CASCADE and a DROP DATABASE at known moments, amid small ordinary transactions (with
savepoints, rolled back, concurrent); its own pg_waldump reads the WAL, and each event must
come out with the xid, commit time and files the server itself reported, and nothing else.

PostgreSQL 16 is not installed here: the lines below, printed by pg_waldump 16.14 (and
15.18, 17.10, 18.6) over the same kind of workload, check its text.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tui import environment
from tui.pitr.window import waldump_for
from tui.wal.events import (
    WALDUMP_RMGRS,
    BlockRef,
    DestructiveEvent,
    EventCollector,
    ParseStats,
    RelFile,
    delete_flags,
    destructive_events,
    parse_block_line,
    parse_record_line,
    parse_transaction_end,
    read_records,
    truncated_relids,
)

from harness.postgres import MissingBinaries, majors_to_test, pg_bin_dir_for, scratch_cluster


def record_by_record(lines: list[str], major: int, **options) -> tuple[list, ParseStats]:
    """The slow way, record by record: what the fast way must agree with."""
    collector = EventCollector(major=major, timeline=1, **options)
    events = []
    for record in read_records(lines, stats=collector.stats,
                               writes_to=collector.unwritten_files):
        events += collector.add(record)
    return events, collector.stats


def fast(text: str, major: int, piece: int = 65536, **options) -> tuple[list, ParseStats]:
    """The fast way, fed in pieces cut anywhere, as a pipe gives them."""
    stats = ParseStats()
    pieces = [text[at:at + piece] for at in range(0, len(text), piece)]
    return list(destructive_events(pieces, major=major, timeline=1, stats=stats,
                                   **options)), stats


def lines_of(text: str) -> list[str]:
    return text.splitlines(keepends=True)


# --- lines pg_waldump printed ------------------------------------------------------------
# (a backslash at the end of a line continues it: each sample is one line as printed)

DELETE = {
    15: "rmgr: Heap        len (rec/tot):     54/    54, tx:        733, lsn: 0/00B6AA78, prev \
0/00B6AA48, desc: DELETE off 43 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/5/2610 blk 0\n",
    16: "rmgr: Heap        len (rec/tot):     54/    54, tx:        739, lsn: 0/00ABDD88, prev \
0/00ABDD58, desc: DELETE xmax: 739, off: 43, infobits: [KEYS_UPDATED], flags: 0x00, blkref #0: \
rel 1663/5/2610 blk 0\n",
    17: "rmgr: Heap        len (rec/tot):     54/    54, tx:        747, lsn: 0/00AB13B8, prev \
0/00AB1388, desc: DELETE xmax: 747, off: 43, infobits: [KEYS_UPDATED], flags: 0x00, blkref #0: \
rel 1663/5/2610 blk 0\n",
    18: "rmgr: Heap        len (rec/tot):     54/    54, tx:        761, lsn: 0/00D5C910, prev \
0/00D5C8E0, desc: DELETE xmax: 761, off: 42, infobits: [KEYS_UPDATED], flags: 0x00, blkref #0: \
rel 1663/5/2610 blk 0\n",
}
# the same DELETE with --bkp-details: its block on a line of its own
DELETE_WITH_BKP_DETAILS = {
    15: "rmgr: Heap        len (rec/tot):     54/    54, tx:        733, lsn: 0/00B6AA78, prev \
0/00B6AA48, desc: DELETE off 43 flags 0x00 KEYS_UPDATED \n\
\tblkref #0: rel 1663/5/2610 fork main blk 0\n",
    16: "rmgr: Heap        len (rec/tot):     54/    54, tx:        739, lsn: 0/00ABDD88, prev \
0/00ABDD58, desc: DELETE xmax: 739, off: 43, infobits: [KEYS_UPDATED], flags: 0x00\n\
\tblkref #0: rel 1663/5/2610 fork main blk 0\n",
}
UPDATE = {  # a row moved to another page: two blocks
    15: "rmgr: Heap        len (rec/tot):    222/   222, tx:        730, lsn: 0/0074A940, prev \
0/0074A908, desc: UPDATE off 66 xmax 730 flags 0x00 ; new off 13 xmax 0, blkref #0: rel \
1663/5/1259 blk 13, blkref #1: rel 1663/5/1259 blk 12\n",
    16: "rmgr: Heap        len (rec/tot):    222/   222, tx:        736, lsn: 0/006CE660, prev \
0/006CE628, desc: UPDATE old_xmax: 736, old_off: 64, old_infobits: [], flags: 0x00, new_xmax: 0, \
new_off: 32, blkref #0: rel 1663/5/1259 blk 13, blkref #1: rel 1663/5/1259 blk 12\n",
}
PARTITION_MOVE = {  # UPDATE p SET k = 2 moved the row out of partition p1: a DELETE, flags 0x10
    15: "rmgr: Heap        len (rec/tot):     54/    54, tx:        736, lsn: 0/0065D808, prev \
0/0065D7E0, desc: DELETE off 1 flags 0x10 KEYS_UPDATED , blkref #0: rel 1663/5/16422 blk 0\n",
    16: "rmgr: Heap        len (rec/tot):     54/    54, tx:        742, lsn: 0/005E2428, prev \
0/005E2400, desc: DELETE xmax: 742, off: 1, infobits: [KEYS_UPDATED], flags: 0x10, blkref #0: \
rel 1663/5/16422 blk 0\n",
}
TRUNCATE = {  # wal_level = logical
    15: "rmgr: Heap        len (rec/tot):     42/    42, tx:        731, lsn: 0/0065FD28, prev \
0/0065FCE8, desc: TRUNCATE nrelids 1 relids 16384\n",
    16: "rmgr: Heap        len (rec/tot):     42/    42, tx:        737, lsn: 0/005E4968, prev \
0/005E4928, desc: TRUNCATE flags: [], nrelids: 1, relids: [16384]\n",
}
INSERT_18 = "rmgr: Heap        len (rec/tot):     67/ 12043, tx:        752, lsn: 0/007EF5A8, prev \
0/007EF578, desc: INSERT off: 20, flags: 0x01, blkref #0: rel 1663/5/1247 blk 14 FPW, blkref #1: \
rel 1663/5/1247 fork vm blk 0 FPW\n"
COMMIT_WITH_SUBXACTS_16 = "rmgr: Transaction len (rec/tot):     46/    46, tx:        749, lsn: \
0/00BCA6B0, prev 0/00BCA678, desc: COMMIT 2026-12-04 03:53:52.127955 UTC; subxacts: 750\n"
COMMIT_PREPARED_16 = "rmgr: Transaction len (rec/tot):     53/    53, tx:          0, lsn: \
0/005EB8F0, prev 0/005EB7F8, desc: COMMIT_PREPARED 743: 2026-12-04 03:54:28.038216 UTC\n"
ABORT_PREPARED_16 = "rmgr: Transaction len (rec/tot):     53/    53, tx:          0, lsn: \
0/005EBAA0, prev 0/005EB9A8, desc: ABORT_PREPARED 744: 2026-12-04 03:54:28.067039 UTC\n"
RUNNING_XACTS_16 = "rmgr: Standby     len (rec/tot):     54/    54, tx:          0, lsn: \
0/00BCE170, prev 0/00BCE138, desc: RUNNING_XACTS nextXid 825 latestCompletedXid 823 \
oldestRunningXid 824; 1 xacts: 824\n"

# 16.14, wal_level = replica: DROP TABLE of a table with a primary key and a TOAST table
DROP_TABLE_16 = "rmgr: Transaction len (rec/tot):   1245/  1245, tx:        739, lsn: 0/00ABE5B8, \
prev 0/00ABE580, desc: COMMIT 2026-12-04 03:53:51.991144 UTC; rels: base/5/16384 base/5/16387 \
base/5/16388 base/5/16389; dropped stats: 2/5/16389 2/5/16388 2/5/16387 2/5/16384; inval msgs: \
catcache 32 catcache 7 catcache 6 catcache 55 catcache 54 catcache 19 catcache 32 catcache 7 \
catcache 6 catcache 7 catcache 6 catcache 55 catcache 54 catcache 7 catcache 6 catcache 7 \
catcache 6 catcache 7 catcache 6 catcache 7 catcache 6 catcache 7 catcache 6 catcache 7 catcache \
6 catcache 7 catcache 6 catcache 7 catcache 6 catcache 7 catcache 6 catcache 55 catcache 54 \
catcache 80 catcache 79 catcache 80 catcache 79 catcache 7 catcache 6 catcache 7 catcache 6 \
catcache 7 catcache 6 catcache 7 catcache 6 catcache 7 catcache 6 catcache 7 catcache 6 catcache \
7 catcache 6 catcache 7 catcache 6 catcache 55 catcache 54 relcache 16389 relcache 16384 snapshot \
2608 snapshot 2608 relcache 16388 relcache 16387 snapshot 2608 relcache 16387 snapshot 2608 \
snapshot 2608 snapshot 2608 relcache 16384 snapshot 2608\n"

# 16.14, wal_level = logical: TRUNCATE t1 (primary key, TOAST table), its own records
# (the catalog updates between them left out)
TRUNCATE_TRANSACTION_16 = "\
rmgr: Storage     len (rec/tot):     42/    42, tx:        737, lsn: 0/005E3E30, prev 0/005E3E00, \
desc: CREATE base/5/16433\n\
rmgr: Storage     len (rec/tot):     42/    42, tx:        737, lsn: 0/005E40B8, prev 0/005E4088, \
desc: CREATE base/5/16434\n\
rmgr: Storage     len (rec/tot):     42/    42, tx:        737, lsn: 0/005E4338, prev 0/005E4308, \
desc: CREATE base/5/16435\n\
rmgr: XLOG        len (rec/tot):     49/   137, tx:        737, lsn: 0/005E4560, prev 0/005E4510, \
desc: FPI , blkref #0: rel 1663/5/16435 blk 0 FPW\n\
rmgr: Storage     len (rec/tot):     42/    42, tx:        737, lsn: 0/005E4660, prev 0/005E4630, \
desc: CREATE base/5/16436\n\
rmgr: XLOG        len (rec/tot):     49/   137, tx:        737, lsn: 0/005E4898, prev 0/005E4848, \
desc: FPI , blkref #0: rel 1663/5/16436 blk 0 FPW\n\
rmgr: Heap        len (rec/tot):     42/    42, tx:        737, lsn: 0/005E4968, prev 0/005E4928, \
desc: TRUNCATE flags: [], nrelids: 1, relids: [16384]\n\
rmgr: Transaction len (rec/tot):    361/   361, tx:        737, lsn: 0/005E4998, prev 0/005E4968, \
desc: COMMIT 2026-12-04 03:54:27.801142 UTC; rels: base/5/16388 base/5/16389 base/5/16387 \
base/5/16384; inval msgs: catcache 55 catcache 54 catcache 55 catcache 54 catcache 55 catcache 54 \
catcache 55 catcache 54 relcache 16384 relcache 16387 relcache 16389 relcache 16384 relcache 16389 \
relcache 16388 relcache 16387 relcache 16388\n"


@pytest.mark.parametrize("major", [15, 16, 17, 18])
def test_a_heap_delete_line_of_each_major(major) -> None:
    record = parse_record_line(DELETE[major])

    assert (record.rmgr, record.kind) == ("Heap", "DELETE")
    assert record.xid == {15: 733, 16: 739, 17: 747, 18: 761}[major]
    assert record.lsn == {15: "0/00B6AA78", 16: "0/00ABDD88", 17: "0/00AB13B8",
                          18: "0/00D5C910"}[major]
    assert record.blocks == [BlockRef(RelFile(1663, 5, 2610), "main", 0)]
    assert not record.desc.endswith((",", " ")) and "blkref" not in record.desc
    assert delete_flags(record.desc, major) == 0


@pytest.mark.parametrize("major", [15, 16])
def test_block_references_inline_or_on_lines_of_their_own_read_the_same(major) -> None:
    inline = list(read_records(lines_of(DELETE[major])))
    detailed = list(read_records(lines_of(DELETE_WITH_BKP_DETAILS[major])))

    assert inline == detailed
    assert parse_block_line("\tblkref #0: rel 1663/5/2610 fork main blk 0\n") == \
        BlockRef(RelFile(1663, 5, 2610), "main", 0)
    [update] = read_records(lines_of(UPDATE[major]))
    assert [block.block for block in update.blocks] == [13, 12]


def test_a_block_of_another_fork_says_so() -> None:
    record = parse_record_line(INSERT_18)

    assert record.blocks == [BlockRef(RelFile(1663, 5, 1247), "main", 14),
                             BlockRef(RelFile(1663, 5, 1247), "vm", 0)]


@pytest.mark.parametrize("major", [15, 16])
def test_the_heap_descriptions_that_changed_in_16(major) -> None:
    move = parse_record_line(PARTITION_MOVE[major])
    truncate = parse_record_line(TRUNCATE[major])

    assert delete_flags(move.desc, major) == 0x10
    assert truncated_relids(truncate.desc, major) == [16384]
    # and the other major's wording is not taken for it
    other = 16 if major == 15 else 15
    assert delete_flags(move.desc, other) == 0
    assert truncated_relids(truncate.desc, other) is None


def test_a_partition_move_counts_as_an_update_and_a_super_delete_as_no_row() -> None:
    for major in (15, 16):
        events, _ = fast(PARTITION_MOVE[major] * 3 + commit_of(PARTITION_MOVE[major]), major,
                         min_rows=3)
        assert [(event.kind, event.rows) for event in events] == [("update", 3)]
    # the same records flagged XLH_DELETE_IS_SUPER (0x08): killed speculative insertions
    super_delete = PARTITION_MOVE[16].replace("flags: 0x10", "flags: 0x08")
    events, _ = fast(super_delete * 3 + commit_of(super_delete), 16, min_rows=1)
    assert events == []


def commit_of(line: str) -> str:
    """A COMMIT, as pg_waldump prints it, for the transaction of a record line."""
    xid = parse_record_line(line).xid
    return (f"rmgr: Transaction len (rec/tot):     34/    34, tx: {xid:>10}, lsn: 0/0FFFFF00, "
            f"prev 0/0FFFFEC8, desc: COMMIT 2026-12-04 03:54:28.000001 UTC\n")


def test_transaction_ends_of_16() -> None:
    commit = parse_transaction_end(parse_record_line(COMMIT_WITH_SUBXACTS_16))
    prepared = parse_transaction_end(parse_record_line(COMMIT_PREPARED_16))
    aborted = parse_transaction_end(parse_record_line(ABORT_PREPARED_16))
    drop = parse_transaction_end(parse_record_line(DROP_TABLE_16))

    assert (commit.xid, commit.committed, commit.subxacts) == (749, True, [750])
    assert commit.time == "2026-12-04T03:53:52.127955+00:00"
    assert (prepared.xid, prepared.committed) == (743, True)  # the line's own tx: is 0
    assert (aborted.xid, aborted.committed) == (744, False)
    assert drop.rels == [RelFile(1663, 5, n) for n in (16384, 16387, 16388, 16389)]
    assert drop.dropped_relations == [(5, 16389), (5, 16388), (5, 16387), (5, 16384)]


def test_a_drop_table_of_16() -> None:
    events, stats = fast(DROP_TABLE_16, 16)

    assert events == [DestructiveEvent(
        kind="drop_table", xid=739, commit_lsn="0/00ABE5B8",
        commit_time="2026-12-04T03:53:51.991144+00:00", database=5,
        relations=tuple(RelFile(1663, 5, n) for n in (16384, 16387, 16388, 16389)),
        rows=None, timeline=1)]
    assert stats.malformed == 0


def test_a_truncate_under_wal_level_logical_of_16() -> None:
    events, _ = fast(TRUNCATE_TRANSACTION_16, 16)
    one_by_one, stats = record_by_record(lines_of(TRUNCATE_TRANSACTION_16), 16)

    [event] = events
    assert (event.kind, event.xid, event.commit_lsn) == ("truncate", 737, "0/005E4998")
    assert set(event.relations) == {RelFile(1663, 5, n) for n in (16384, 16387, 16388, 16389)}
    assert one_by_one == events
    assert (stats.malformed, stats.unknown) == (0, 0)


def test_a_transaction_that_never_ends_is_forgotten_once_no_longer_running() -> None:
    collector = EventCollector(major=16, timeline=1)
    collector.add(parse_record_line(PARTITION_MOVE[16]))  # a row of xid 742's
    assert collector.is_open(742)

    collector.add(parse_record_line(RUNNING_XACTS_16))  # oldestRunningXid 824

    assert not collector.is_open(742)


def test_bad_text_never_raises_and_is_counted() -> None:
    bad = [
        "pg_waldump: error: could not find file \"000000010000000000000005\"\n",
        "\n",
        "rmgr: Heap        len (rec/tot): 54/54, tx: seven, lsn: 0/1, prev 0/0, desc: DELETE x\n",
        "rmgr: Heap        len (rec/tot):     54/    54, tx:        733, desc: DELETE\n",
        "rmgr: Heap        len (rec/tot):     54/    54, tx:        733, lsn: 0/00B6AA78, prev \
0/00B6AA48, desc: DELETE off 43 flags 0x00 , blkref #0: rel 1663/x/2610 blk 0\n",
        "rmgr: Transaction len (rec/tot):     34/    34, tx:        742, lsn: 0/00C5A200, prev \
0/00C5A1C8, desc: COMMIT yesterday UTC; rels: base/5/16384\n",
        "\tblkref #0: rel 1663/5/2610 fork main blk\n",
        "rmgr: Heap\n",
        "\x00\xff garbage",
        "",
    ]
    events, fast_stats = fast("".join(bad), 16, piece=7)
    one_by_one, stats = record_by_record(bad, 16)

    assert events == one_by_one == []
    assert stats.malformed >= 4 and stats.unknown >= 3
    assert fast_stats.malformed >= 1


def test_only_the_majors_whose_text_was_checked() -> None:
    for major in (14, 19):
        with pytest.raises(ValueError, match=f"PostgreSQL {major}'s pg_waldump text"):
            list(destructive_events([], major=major, timeline=1))


# --- real clusters -----------------------------------------------------------------------

MAJORS = [pytest.param(major, id=f"pg{major}") for major in majors_to_test()]

SETUP = """
create table victim (id int primary key, note text);
create index victim_note on victim (note);
insert into victim select g, md5(g::text) from generate_series(1, 20) g;
create table emptied (id int primary key, note text);
insert into emptied select g, 'x' from generate_series(1, 100) g;
create table purged (id int primary key, v int);
insert into purged select g, 0 from generate_series(1, 5000) g;
create table touched (id int primary key, v int);
insert into touched select g, 0 from generate_series(1, 2000) g;
create table packed (id int primary key, v int);
insert into packed select g, 0 from generate_series(1, 500) g;
delete from packed where id % 2 = 0;
create table kept (id int primary key, v int);
insert into kept select g, 0 from generate_series(1, 3000) g;
create table spread (id int primary key, v int);
insert into spread select g, 0 from generate_series(1, 1400) g;
create table ledger (id serial primary key, note text);
create schema doomed;
create table doomed.a (id int primary key);
create table doomed.b (note text);
"""

# the files of a relation, its TOAST table and all their indexes, as pg_class has them
FILES = """
with t as (select oid, reltoastrelid from pg_class where oid = %s::regclass),
     rels as (select oid from t union all select reltoastrelid from t where reltoastrelid <> 0)
select relfilenode from pg_class
where oid in (select oid from rels)
   or oid in (select indexrelid from pg_index where indrelid in (select oid from rels))
"""


@dataclasses.dataclass
class Scan:
    major: int
    database: int  # postgres's oid
    dropped_database: int
    xids: dict[str, int]  # what -> its top-level xid, captured in it
    files: dict[str, set[RelFile]]  # what -> the files it destroyed, before it did
    committed_at: dict[str, datetime]  # what -> the server's commit timestamp
    ordinary: set[int]  # xids that must make no event
    text: dict[str, str]  # pg_waldump's output: plain, and with other options
    events: list[DestructiveEvent]
    stats: ParseStats


@pytest.fixture(scope="module", params=MAJORS)
def scan(request: pytest.FixtureRequest) -> Iterator[Scan]:
    """One cluster per major, one workload, its WAL read once."""
    major = request.param
    try:
        bin_dir = pg_bin_dir_for(major)
    except MissingBinaries as missing:
        pytest.fail(str(missing), pytrace=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRDECK_PG_BIN", str(bin_dir))
        # wal_keep_size: DROP DATABASE checkpoints, and the segments must stay to be read
        with scratch_cluster(wal_segsize_mb=1, track_commit_timestamp="on",
                             autovacuum="off", wal_keep_size="256MB") as cluster:
            yield run_the_workload(cluster, major)


def run_the_workload(cluster, major: int) -> Scan:
    assert int(cluster.scalar("show server_version_num")) // 10000 == major
    cluster.execute(SETUP)
    cluster.execute("create database gone")
    gone = cluster.scalar("select oid from pg_database where datname = 'gone'")
    database = cluster.scalar("select oid from pg_database where datname = 'postgres'")
    start = cluster.scalar("select pg_current_wal_insert_lsn()::text")
    first_segment = cluster.scalar("select pg_walfile_name(%s::pg_lsn)", (start,))

    xids: dict[str, int] = {}
    files: dict[str, set[RelFile]] = {}
    ordinary: set[int] = set()

    def files_of(*tables: str) -> set[RelFile]:
        return {RelFile(1663, database, row[0])
                for table in tables for row in cluster.execute(FILES, (table,))}

    def transaction(*statements: str, commit: bool = True) -> int:
        with cluster.connect(autocommit=False) as conn:
            xid = conn.execute("select txid_current()").fetchone()[0]
            for statement in statements:
                conn.execute(statement)
            conn.commit() if commit else conn.rollback()
        return xid

    def small_ones() -> None:
        ordinary.add(transaction("insert into ledger (note) values ('one')"))
        ordinary.add(transaction("insert into ledger (note) values ('two')", "savepoint s",
                                 "insert into ledger (note) values ('three')",
                                 "release savepoint s"))
        ordinary.add(transaction("insert into ledger (note) values ('four')", "savepoint s",
                                 "insert into ledger (note) values ('five')",
                                 "rollback to savepoint s"))

    def last_commit(what: str) -> None:
        xids[what] = cluster.scalar("select xid::text::bigint from pg_last_committed_xact()")

    small_ones()
    files["drop_table"] = files_of("victim")
    xids["drop_table"] = transaction("drop table victim")
    small_ones()
    files["truncate"] = files_of("emptied")
    xids["truncate"] = transaction("truncate emptied")
    files["delete"] = files_of("purged") - files_of("purged_pkey")
    with cluster.connect(autocommit=False) as other:  # a transaction open across the DELETE
        ordinary.add(other.execute("select txid_current()").fetchone()[0])
        other.execute("insert into ledger (note) values ('before')")
        xids["delete"] = transaction("delete from purged")
        other.execute("insert into ledger (note) values ('after')")
        other.commit()
    files["update"] = files_of("touched") - files_of("touched_pkey")
    xids["update"] = transaction("update touched set v = v + 1")
    small_ones()
    ordinary.add(transaction("delete from kept", commit=False))
    files["savepoint_delete"] = files_of("kept") - files_of("kept_pkey")
    xids["savepoint_delete"] = transaction(
        "insert into ledger (note) values ('sp')", "savepoint s",
        "delete from kept where id <= 1500", "release savepoint s")
    ordinary.add(transaction("insert into ledger (note) values ('sp2')", "savepoint s",
                             "delete from kept", "rollback to savepoint s"))
    # 70 subtransactions (more than 64: pg_waldump prints an ASSIGNMENT), 20 rows each
    files["subtransactions_delete"] = files_of("spread") - files_of("spread_pkey")
    xids["subtransactions_delete"] = transaction(*[
        statement for n in range(70) for statement in (
            f"savepoint s{n}", f"delete from spread where id > {n * 20} and id <= {n * 20 + 20}",
            f"release savepoint s{n}")])
    files["vacuum_full"] = files_of("packed")
    cluster.execute("vacuum full packed")
    last_commit("vacuum_full")
    files["reindex"] = files_of("touched_pkey")
    xids["reindex"] = transaction("reindex table touched")
    small_ones()
    files["drop_schema"] = files_of("doomed.a", "doomed.b")
    xids["drop_schema"] = transaction("drop schema doomed cascade")
    cluster.execute("drop database gone")
    last_commit("drop_database")
    small_ones()

    committed_at = {what: cluster.scalar("select pg_xact_commit_timestamp(%s::text::xid)",
                                         (xid,)) for what, xid in xids.items()}
    end = cluster.scalar("select pg_current_wal_insert_lsn()::text")
    cluster.execute("select pg_switch_wal()")  # everything up to the end is on disk

    wal = cluster.data_dir / "pg_wal"
    waldump = waldump_for((wal / first_segment).read_bytes(), first_segment)
    text = {"plain": run_waldump(waldump, wal, start, end),
            "bkp_details": run_waldump(waldump, wal, start, end, "--bkp-details"),
            "rmgrs": run_waldump(waldump, wal, start, end,
                                 *(f"--rmgr={rmgr}" for rmgr in WALDUMP_RMGRS)),
            # a zone an hour east of UTC, in POSIX form (no tzdata needed): "CET"
            "not_utc": run_waldump(waldump, wal, start, end, tz="CET-1")}
    events, stats = fast(text["plain"], major)
    return Scan(major=major, database=database, dropped_database=gone, xids=xids,
                files=files, committed_at=committed_at, ordinary=ordinary, text=text,
                events=events, stats=stats)


def run_waldump(waldump: str, wal: Path, start: str, end: str, *options: str,
                tz: str = "UTC") -> str:
    result = subprocess.run([waldump, "-p", str(wal), "-s", start, "-e", end, *options],
                            capture_output=True, text=True, check=False,
                            env={**environment.base(), "TZ": tz})
    assert result.returncode == 0, result.stderr
    return result.stdout


def event_of(scan: Scan, what: str) -> DestructiveEvent:
    [event] = [event for event in scan.events if event.xid == scan.xids[what]]
    assert event.commit_time is not None
    assert datetime.fromisoformat(event.commit_time) == scan.committed_at[what]
    assert event.timeline == 1
    commit_line = next(line for line in lines_of(scan.text["plain"])
                       if f"lsn: {event.commit_lsn}," in line)
    assert "desc: COMMIT " in commit_line and f"tx: {event.xid:>10}," in commit_line
    return event


@pytest.mark.slow
def test_exactly_the_destructive_transactions_are_listed(scan: Scan) -> None:
    assert sorted(event.xid for event in scan.events) == sorted(scan.xids.values())
    assert not scan.ordinary & {event.xid for event in scan.events}
    assert (scan.stats.malformed, scan.stats.times_not_utc) == (0, 0)


@pytest.mark.slow
def test_a_drop_table_lists_the_table_its_toast_table_and_all_their_indexes(scan: Scan) -> None:
    event = event_of(scan, "drop_table")

    assert (event.kind, event.database, event.rows) == ("drop_table", scan.database, None)
    assert set(event.relations) == scan.files["drop_table"]
    assert len(event.relations) == 5  # heap, pkey, note index, TOAST table and its index


@pytest.mark.slow
def test_a_truncate_lists_the_files_it_emptied(scan: Scan) -> None:
    event = event_of(scan, "truncate")

    assert event.kind == "truncate"
    assert set(event.relations) == scan.files["truncate"]
    assert len(event.relations) == 4


@pytest.mark.slow
@pytest.mark.parametrize(("what", "kind", "rows"), [
    ("delete", "delete", 5000),
    ("update", "update", 2000),
    ("savepoint_delete", "delete", 1500),
    ("subtransactions_delete", "delete", 1400),
])
def test_big_deletes_and_updates_count_their_rows_under_the_top_level_xid(
        scan: Scan, what: str, kind: str, rows: int) -> None:
    event = event_of(scan, what)

    assert (event.kind, event.rows, event.database) == (kind, rows, scan.database)
    assert set(event.relations) == scan.files[what]


@pytest.mark.slow
@pytest.mark.parametrize("what", ["vacuum_full", "reindex"])
def test_a_table_or_index_rewritten_is_a_rewrite_not_a_truncate(scan: Scan, what: str) -> None:
    event = event_of(scan, what)

    assert event.kind == "rewrite"
    assert set(event.relations) == scan.files[what]


@pytest.mark.slow
def test_a_drop_schema_cascade_lists_all_it_dropped(scan: Scan) -> None:
    event = event_of(scan, "drop_schema")

    assert event.kind == "drop_schema"
    assert set(event.relations) == scan.files["drop_schema"]
    assert len(event.relations) == 5


@pytest.mark.slow
def test_a_drop_database_names_the_database(scan: Scan) -> None:
    event = event_of(scan, "drop_database")

    assert (event.kind, event.database, event.relations) == (
        "drop_database", scan.dropped_database, ())
    # where a restore must stop: before the in-place update that marked it invalid, which
    # replays whether the DROP commits or not (its DROP record, which removes the files,
    # too)
    inplace = [line for line in scan.text["plain"].splitlines()
               if "desc: INPLACE " in line and "rel 1664/0/1262 " in line
               and line.split("lsn: ")[1].split(",")[0] < event.commit_lsn]
    assert inplace and event.stop_lsn == inplace[-1].split("lsn: ")[1].split(",")[0]
    assert "tx:          0," in inplace[-1]  # of no transaction: no xid target stops it


@pytest.mark.slow
def test_the_same_events_however_pg_waldump_prints_them_and_however_they_are_read(
        scan: Scan) -> None:
    for variant in ("bkp_details", "rmgrs"):
        assert fast(scan.text[variant], scan.major)[0] == scan.events, variant
    assert fast(scan.text["plain"], scan.major, piece=997)[0] == scan.events
    events, stats = record_by_record(lines_of(scan.text["plain"]), scan.major)
    assert events == scan.events
    assert (stats.malformed, stats.unknown) == (0, 0)


@pytest.mark.slow
def test_times_printed_in_another_zone_are_not_guessed(scan: Scan) -> None:
    events, stats = fast(scan.text["not_utc"], scan.major)

    assert " CET" in scan.text["not_utc"] and " UTC" not in scan.text["not_utc"]
    assert [(event.kind, event.xid) for event in events] == [
        (event.kind, event.xid) for event in scan.events]
    assert all(event.commit_time is None for event in events)
    assert stats.times_not_utc >= len(events)


@pytest.mark.slow
def test_blocks_digested_in_other_processes_give_the_same_events(
        scan: Scan, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan's parallel way (tui.wal.digester): small blocks, so that both digesters
    take many of them, handed back in order."""
    from tui.wal import events as module
    from tui.wal.digester import DigestPool

    monkeypatch.setattr(module, "_BLOCK_TEXT", 8192)
    with DigestPool(2) as pool:
        events, stats = fast(scan.text["plain"], scan.major, digests=pool.digests(scan.major))
        assert len(pool._started) == 2
    assert events == scan.events
    assert stats == fast(scan.text["plain"], scan.major)[1]


def test_a_digester_that_dies_or_fails_is_a_clear_error() -> None:
    from tui.wal.digester import DigesterFailed, DigestPool

    text = DELETE[15] * 3
    with DigestPool(1) as pool:
        with pytest.raises(DigesterFailed, match="reading WAL text failed: ValueError: "
                           "PostgreSQL 14's pg_waldump text has not been checked"):
            list(pool.digests(14)([text]))  # the digester says why, and lives on
        [(_, digest)] = pool.digests(15)([text])
        assert digest.row_records == 3
        pool._started[0].process.kill()
        with pytest.raises(DigesterFailed, match="a process reading WAL text ended"):
            list(pool.digests(15)([text]))


def test_a_digester_never_imports_from_the_current_directory(tmp_path, monkeypatch) -> None:
    """Run as root from a directory another account can write to, `python -m` would put
    that directory first on the path: a `tui` there must never run."""
    from tui.wal.digester import DigestPool

    planted = tmp_path / "tui"
    planted.mkdir()
    (planted / "__init__.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    with DigestPool(1) as pool:
        [(_, digest)] = pool.digests(15)([DELETE[15]])
    assert digest.row_records == 1
    assert not (tmp_path / "ran").exists()
