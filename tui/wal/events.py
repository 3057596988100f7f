"""Destructive transactions read from pg_waldump's text: DROP TABLE, TRUNCATE, DROP DATABASE,
DROP SCHEMA, table rewrites and big DELETEs and UPDATEs, one event per committed transaction.

Pure: the caller runs pg_waldump (``TZ=UTC`` in its environment, ``--rmgr`` for each of
WALDUMP_RMGRS) and feeds its stdout here; nothing here reads a file or starts a process.
``destructive_events`` takes that text in pieces of any size (lines, or blocks read from
the pipe) and is the fast way; ``read_records`` + ``EventCollector.add`` do the same record
by record, slower, and are what the fast way is checked against.

What pg_waldump prints (read from 15.18, 16.14, 17.10 and 18.6)
-------------------------------------------------------------
One line per record, laid out the same way in 15 to 18 (one line, wrapped here)::

    rmgr: Heap        len (rec/tot):     54/    54, tx:        735, lsn: 0/006654B8,
        prev 0/00665478, desc: DELETE <description>, blkref #0: rel 1663/5/16412 blk 0

``desc:`` starts with the record's type (DELETE, COMMIT, HOT_UPDATE+INIT...). Block
references follow the description on the same line (``, blkref #1: rel 1663/5/1247 fork vm
blk 0 FPW``: no ``fork`` for the main fork) or, with ``--bkp-details``, on lines of their own
below it (``\\tblkref #0: rel 1663/5/1247 fork main blk 14 (FPW); hole: ...``). Both are read.

The descriptions read, per major:

- Heap DELETE: 15 ``DELETE off 43 flags 0x00 KEYS_UPDATED``; 16, 17 and 18
  ``DELETE xmax: 747, off: 43, infobits: [KEYS_UPDATED], flags: 0x00`` (heap records took
  the ``key: value`` form in 16). The type, the block and the flags are used.
- Heap UPDATE and HOT_UPDATE (and their +INIT forms): 15 ``UPDATE off 66 xmax 730 flags
  0x00 ; new off 13 xmax 0``; 16+ ``UPDATE old_xmax: 744, old_off: 64, old_infobits: [],
  flags: 0x00, new_xmax: 0, new_off: 52``. The type and the block are used.
- Heap TRUNCATE (written only under ``wal_level = logical``): 15 ``TRUNCATE nrelids 1
  relids 16384``; 16+ ``TRUNCATE flags: [], nrelids: 1, relids: [16384]`` (OIDs).
- The same in 15 to 18: Storage ``CREATE base/5/16433``; Database ``DROP dir 1663/16429``;
  Standby ``RUNNING_XACTS nextXid 847 latestCompletedXid 845 oldestRunningXid 846; ...``;
  Transaction ``COMMIT 2026-12-04 03:50:26.676186 UTC; rels: base/5/16384 base/5/16387;
  dropped stats: 2/5/16384 2/5/16387; inval msgs: ...``, ``...; subxacts: 744 745``,
  ``ABORT <time>[; subxacts: ...]``, and with ``tx: 0`` ``COMMIT_PREPARED 765: <time>; ...``
  and ``ABORT_PREPARED 766: <time>`` (765 and 766: the prepared transactions).

``rels:`` are relation file paths (``base/<db>/<relfilenode>``, ``global/<relfilenode>``,
``pg_tblspc/<spc>/<version dir>/<db>/<relfilenode>``) and, like blkrefs, name relfilenodes;
``dropped stats: <kind>/<db>/<oid>`` (kind 2 is a relation) and TRUNCATE relids name OIDs.

Times: pg_waldump prints a commit's time in its own local time zone: ``%Y-%m-%d
%H:%M:%S``, six digits of microseconds, then the zone's abbreviation. Run with ``TZ=UTC``
it says ``UTC``. A time in another zone is not converted (an abbreviation is no offset):
its event has no time, and ``ParseStats.times_not_utc`` counts it.

Transactions
------------
Records carry the xid of the (sub)transaction that wrote them. Nothing counts until the
top-level COMMIT, whose ``subxacts:`` lists every subtransaction that committed into it:
their changes roll up into the top-level xid there. A subtransaction rolled back to its
savepoint writes an ABORT of its own, and an aborted transaction is never an event. The
ASSIGNMENT records (``ASSIGNMENT xtop 775: subxacts: 776 ...``, one per 64 subtransactions,
for hot standby) add nothing the COMMIT does not say, and are not read. Transactions that
never end in the WAL read (a crash) are forgotten once a RUNNING_XACTS no longer counts
them running.

Decisions
---------
- An event's relations are the relfilenodes its COMMIT's ``rels:`` drops, less those the
  same transaction created (a table created and dropped in one transaction destroyed
  nothing). Which kind of event:

  - a Heap TRUNCATE record in the transaction: ``truncate``;
  - ``dropped stats`` of relations that existed before the transaction (they left the
    catalogs): ``drop_table``, or ``drop_schema`` when the transaction also deleted a row of
    pg_namespace (relfilenode 2615 as initdb makes it; pass ``namespace_files`` where a
    catalog map says otherwise). Seen from the WAL, DROP SCHEMA ... CASCADE is exactly a
    DROP of its relations plus that pg_namespace delete; which schema it was is the catalog
    map's to say. DROP INDEX, SEQUENCE or MATERIALIZED VIEW are ``drop_table`` too: only a
    catalog map knows a relation's kind;
  - ``dropped stats`` only of relations the transaction created itself: the transient table
    of VACUUM FULL, CLUSTER, ALTER TABLE ... TYPE, REFRESH MATERIALIZED VIEW (make_new_heap
    swaps its file in, then drops it): ``rewrite``;
  - new files and no dropped stats (TRUNCATE under ``wal_level = replica``, REINDEX, ALTER
    TABLE ... SET TABLESPACE): ``truncate`` when a new file got no block written before the
    commit (the emptied table: a TRUNCATE writes only its new indexes' metapages), else
    ``rewrite`` (a REINDEX builds every new file). A TRUNCATE that refills every new file in
    the same transaction (a table without a TOAST table) is reported as a ``rewrite``: still
    listed, only named less well.

- ``delete`` and ``update``: heap records counted per (relation, top-level xid), as a DELETE
  or UPDATE writes one record per row. UPDATE, HOT_UPDATE and their +INIT forms are
  updates, and so is a DELETE flagged as a partition move; a DELETE flagged "super" (a
  speculative insertion killed by INSERT ... ON CONFLICT) is no row. Not counted: rows of
  relfilenodes below 16384 (the catalogs as initdb made them, whose rows change with any
  DDL) and of files created in the same transaction. TOAST tables count on their own:
  folding them into their tables takes a catalog map.
- xids are the 32 bits pg_waldump prints (no epoch), as recovery_target_xid takes them.

DROP DATABASE
-------------
It cannot be rolled back, and it is not done at its commit: from 15.4 (and in 16 to 18)
it first marks the database invalid with an in-place update of its pg_database row
(``Heap INPLACE off 4, blkref #0: rel 1664/0/1262 blk 0``, of no transaction: ``tx: 0``),
then deletes that row (a Heap DELETE of the same tuple by its xid), removes the
database's directories (``Database DROP``), and commits. Recovery replays the first
and the third whether the transaction commits or not, so a restore that stops before its
commit finds the database invalid and its files gone. Its event therefore carries
``stop_lsn``: the LSN of that in-place update (or, where there is none, of the row's
DELETE) found within DROP_LOOK_BACK bytes of WAL before the DROP record: a restore stops
just before it (``recovery_target_lsn``, not inclusive). Found neither, it is the DROP
record's own LSN, which keeps the files and may leave the database marked invalid.

Speed
-----
pg_waldump prints a line in about the time Python takes to look at one, so the fast way
does not go line by line: per MiB of text, one regular expression finds every row record
and ``Counter`` counts them by (xid, type, flags, relation), both in C; another finds the
few other records. A COMMIT that lists nothing, of a transaction that only changed a few
rows, is dropped with those rows unparsed (most transactions); new files' first writes are
looked for as text. It counts no unknown lines (two more passes): read_records does.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from tui.wal.names import parse_lsn

SUPPORTED_MAJORS = (15, 16, 17, 18)
DEFAULT_MIN_ROWS = 1000

DEFAULT_TABLESPACE = 1663  # pg_default: "base/<db>/<relfilenode>"
GLOBAL_TABLESPACE = 1664  # pg_global: "global/<relfilenode>"
FIRST_NORMAL_OID = 16384  # FirstNormalObjectId: below it, what initdb made
PG_NAMESPACE_RELFILENODE = 2615  # pg_namespace's file as initdb makes it (not a mapped catalog)
STATS_KIND_RELATION = 2  # PGSTAT_KIND_RELATION, in "dropped stats: 2/<db>/<oid>"
PG_DATABASE_FILE = "1664/0/1262"  # pg_database, a mapped shared catalog: its file never moves
DROP_LOOK_BACK = 1 << 16  # bytes of WAL: DROP DATABASE writes its records within this

# flags of a heap DELETE record (XLH_DELETE_* in heapam_xlog.h, the same in 15 to 18)
DELETE_IS_SUPER = 0x08
DELETE_IS_PARTITION_MOVE = 0x10

ROW_KINDS = ("DELETE", "UPDATE", "HOT_UPDATE", "UPDATE+INIT", "HOT_UPDATE+INIT")
TRANSACTION_ENDS = frozenset({"COMMIT", "COMMIT_PREPARED", "ABORT", "ABORT_PREPARED"})

# the records events are made of, by resource manager and type
WANTED = {
    "Heap": frozenset({*ROW_KINDS, "TRUNCATE", "INPLACE"}),
    "Transaction": TRANSACTION_ENDS,
    "Storage": frozenset({"CREATE"}),
    "Database": frozenset({"DROP"}),
    "Standby": frozenset({"RUNNING_XACTS"}),
}

# What pg_waldump need print (--rmgr=..., repeatable since 15): WANTED's, and those writing
# the first blocks of new files (XLOG: the FPIs of index builds and of VACUUM FULL's copy;
# Heap2: COPY's MULTI_INSERT), which tell a TRUNCATE from a REINDEX. Leaving out the others,
# Btree above all, saves pg_waldump a third of its printing and the parser as many lines.
WALDUMP_RMGRS = ("Heap", "Heap2", "XLOG", "Transaction", "Storage", "Database", "Standby")

UTC_NAMES = frozenset({"UTC", "GMT"})


class RelFile(NamedTuple):
    """A relation's file: what WAL names, until a catalog map says which table it was."""

    tablespace: int
    database: int
    relfilenode: int


_PG_DATABASE = RelFile(*map(int, PG_DATABASE_FILE.split("/")))


class BlockRef(NamedTuple):
    rel: RelFile
    fork: str  # main, fsm, vm, init
    block: int


@dataclasses.dataclass(slots=True)
class WalRecord:
    """One record of pg_waldump's output."""

    rmgr: str  # Heap, Transaction, Storage...
    kind: str  # the record's type: DELETE, HOT_UPDATE+INIT, COMMIT...
    xid: int  # tx:, 0 for a record of no transaction
    lsn: str  # as printed: 0/006654B8
    desc: str  # what follows the type, without the block references
    blocks: list[BlockRef]


@dataclasses.dataclass(slots=True)
class ParseStats:
    """What a scan read. Nothing it cannot read raises: it is counted here."""

    lines: int = 0
    records: int = 0  # records parsed; the other lines were skipped unread
    malformed: int = 0  # lines or descriptions that looked like ours but did not parse
    unknown: int = 0  # lines neither a record nor a block reference (read_records only)
    times_not_utc: int = 0  # commit times in another zone: pg_waldump ran without TZ=UTC


@dataclasses.dataclass(frozen=True, slots=True)
class DestructiveEvent:
    kind: str  # drop_table, drop_schema, truncate, drop_database, rewrite, delete, update
    xid: int  # top-level
    commit_lsn: str
    commit_time: str | None  # ISO 8601, UTC, to the microsecond; None when not printed in UTC
    database: int  # oid
    relations: tuple[RelFile, ...]
    rows: int | None  # for delete and update
    timeline: int
    # an LSN to stop just before, where stopping before the commit is too late (see
    # "DROP DATABASE" in the module's docstring); None: before the xid's commit will do
    stop_lsn: str | None = None


# --- record lines ------------------------------------------------------------------------

_BLOCK_LINE = re.compile(r"\tblkref #\d+: rel (\d+)/(\d+)/(\d+) fork (\w+) blk (\d+)")

# the rmgr field is padded to 11 characters: a slice is cheaper than finding its end (the
# longer names, ReplicationOrigin and LogicalMessage, are not wanted)
_WANTED_BY_FIELD = {f"{rmgr:<11}": (rmgr, kinds) for rmgr, kinds in WANTED.items()}


def parse_record_line(line: str) -> WalRecord | None:
    """A record line of pg_waldump, with its inline block references; None for any other
    line, or a record line that does not parse."""
    if not line.startswith("rmgr: "):
        return None
    try:
        return _record(line, line[6:line.index(" ", 6)])
    except (ValueError, IndexError):
        return None


def parse_block_line(line: str) -> BlockRef | None:
    """A ``--bkp-details`` block reference line (a tab, ``blkref #0: rel 1663/5/16384 fork
    main blk 0 ...``); None for any other line."""
    match = _BLOCK_LINE.match(line)
    if match is None:
        return None
    tablespace, database, relfilenode, fork, block = match.groups()
    return BlockRef(RelFile(int(tablespace), int(database), int(relfilenode)), fork, int(block))


def read_records(lines: Iterable[str], *, stats: ParseStats | None = None,
                 writes_to: Collection[RelFile] = ()) -> Iterator[WalRecord]:
    """The WANTED records of pg_waldump's output, line by line, and any record with a block
    in ``writes_to`` (which may change while reading: the collector's unwritten new files).
    Other lines are skipped unparsed.

    A record is yielded once its ``--bkp-details`` block lines (if any) are read: one line
    after it. Nothing raises on a bad line: ``stats`` counts it.
    """
    stats = ParseStats() if stats is None else stats
    wanted = _WANTED_BY_FIELD.get
    held: WalRecord | None = None  # the last record, waiting for its block lines
    held_wanted = False
    lines_read = records = 0  # counted locally: this loop runs for every line
    try:
        for line in lines:
            lines_read += 1
            field = wanted(line[6:17])  # slices, not startswith: cheaper, for every line
            if field is None and line[:1] == "\t":
                if held is not None:
                    block = parse_block_line(line)
                    if block is None:
                        stats.malformed += 1
                    else:
                        held.blocks.append(block)
                continue
            if held is not None:
                if held_wanted or _writes_to(held, writes_to):
                    yield held
                held = None
            if field is not None:
                rmgr, kinds = field
                desc_at = line.find("desc: ", 60)
                held_wanted = line[desc_at + 6:line.find(" ", desc_at + 6)] in kinds
                if not held_wanted and not writes_to:
                    continue
            elif line[:6] != "rmgr: ":
                stats.unknown += 1
                continue
            elif writes_to:
                rmgr, held_wanted = line[6:line.find(" ", 6)], False
            else:
                continue
            try:
                held = _record(line, rmgr)
            except (ValueError, IndexError):
                stats.malformed += 1
                continue
            records += 1
        if held is not None and (held_wanted or _writes_to(held, writes_to)):
            yield held
    finally:
        stats.lines += lines_read
        stats.records += records


def _record(line: str, rmgr: str) -> WalRecord:
    """Raises ValueError or IndexError when the line is not laid out as a record line."""
    # "rmgr: Heap ... len (rec/tot): 54/ 54", "tx: 735", "lsn: 0/0065F208", "prev ...",
    # "desc: DELETE ...": one split is the cheapest way to all of them
    _, tx, lsn, _, desc = line.split(", ", 4)
    if not desc.startswith("desc: "):
        raise ValueError(line)
    kind, _, rest = desc[6:].partition(" ")
    text, *refs = rest.split("blkref #")
    return WalRecord(rmgr, kind.rstrip(), int(tx[3:]), lsn[5:], text.rstrip(" ,\n"),
                     list(map(_inline_block, refs)))


# Block references by their text: the rows of one page share it ("0: rel 1663/5/16398 blk 0"),
# so most are found here. Cleared when full: it only saves work.
_blocks: dict[str, BlockRef] = {}


def _inline_block(ref: str) -> BlockRef:
    """``0: rel 1663/5/16398 blk 0``, ``1: rel 1663/5/1247 fork vm blk 0 FPW, `` (the text of
    one inline block reference after "blkref #")."""
    block = _blocks.get(ref)
    if block is None:
        if len(_blocks) > 100_000:
            _blocks.clear()
        words = ref.split(None, 7)
        if words[1] != "rel":
            raise ValueError(ref)
        fork, number = (words[4], words[6]) if words[3] == "fork" else ("main", words[4])
        block = _blocks[ref] = BlockRef(_relfile(words[2]), fork, int(number.rstrip(",")))
    return block


_relfiles: dict[str, RelFile] = {}  # "1663/5/16384" -> RelFile, for the same reason


def _relfile(text: str) -> RelFile:
    rel = _relfiles.get(text)
    if rel is None:
        if len(_relfiles) > 100_000:
            _relfiles.clear()
        tablespace, database, relfilenode = text.split("/")
        rel = _relfiles[text] = RelFile(int(tablespace), int(database), int(relfilenode))
    return rel


def _writes_to(record: WalRecord, files: Collection[RelFile]) -> bool:
    return bool(files) and any(block.rel in files for block in record.blocks)


# --- descriptions, per major -------------------------------------------------------------

# heap descriptions took the "key: value" form in 16
_DELETE_FLAGS_LABEL = {15: " flags 0x", 16: " flags: 0x"}  # then %02X
_TRUNCATE_RELIDS = {15: re.compile(r"\brelids((?: \d+)+)"),
                    16: re.compile(r"\brelids: \[([\d, ]*)\]")}


def text_style(major: int) -> int:
    """Which pg_waldump wording a major prints: 15's, or 16's (the same in 17 and 18).
    ValueError for a major whose text has not been checked."""
    if major not in SUPPORTED_MAJORS:
        raise ValueError(f"PostgreSQL {major}'s pg_waldump text has not been checked: "
                         f"{', '.join(map(str, SUPPORTED_MAJORS))}'s have")
    return 15 if major == 15 else 16


def delete_flags(desc: str, major: int) -> int:
    """The flags of a heap DELETE record's description; 0 when it shows none."""
    label = _DELETE_FLAGS_LABEL[text_style(major)]
    at = desc.find(label)
    digits = desc[at + len(label):at + len(label) + 2] if at >= 0 else "00"
    return int(digits, 16) if digits != "00" else 0


def truncated_relids(desc: str, major: int) -> list[int] | None:
    """The relation OIDs of a heap TRUNCATE record's description; None when it shows none."""
    match = _TRUNCATE_RELIDS[text_style(major)].search(desc)
    if not match:
        return None
    return [int(oid) for oid in match[1].replace(",", " ").split()]


_OFFSET = re.compile(r"\boff:? (\d+)")


def tuple_offset(desc: str) -> int:
    """The tuple offset of a heap record's description: ``off 4`` (15), ``off: 4`` (16+);
    ValueError when it shows none."""
    match = _OFFSET.search(desc)
    if match is None:
        raise ValueError(desc)
    return int(match[1])


def relfile_of_path(path: str) -> RelFile | None:
    """``base/5/16384`` (fork suffixes such as ``_init`` allowed), ``global/1262``,
    ``pg_tblspc/16400/PG_15_202209061/5/16384``; None for anything else (a temporary
    relation's ``t3_16384`` too: it is not WAL-logged)."""
    parts = path.split("/")
    if parts[0] == "base" and len(parts) == 3:
        tablespace, database, name = str(DEFAULT_TABLESPACE), parts[1], parts[2]
    elif parts[0] == "global" and len(parts) == 2:
        tablespace, database, name = str(GLOBAL_TABLESPACE), "0", parts[1]
    elif parts[0] == "pg_tblspc" and len(parts) == 5:
        tablespace, database, name = parts[1], parts[3], parts[4]
    else:
        return None
    relfilenode = name.partition("_")[0]
    if not (tablespace.isdigit() and database.isdigit() and relfilenode.isdigit()):
        return None
    return RelFile(int(tablespace), int(database), int(relfilenode))


@dataclasses.dataclass(slots=True)
class TransactionEnd:
    """A COMMIT, COMMIT_PREPARED, ABORT or ABORT_PREPARED record's description."""

    xid: int  # the transaction it ends: for the _PREPARED ones, the xid in the description
    committed: bool
    time: str | None  # ISO 8601 UTC; None when not printed in UTC
    rels: list[RelFile]
    subxacts: list[int]
    dropped_relations: list[tuple[int, int]]  # (database, oid), from "dropped stats"


def parse_transaction_end(record: WalRecord) -> TransactionEnd:
    """Raises ValueError when the description does not parse."""
    head, *parts = record.desc.split("; ")
    xid = record.xid
    if record.kind.endswith("_PREPARED"):
        prepared, _, head = head.partition(": ")
        xid = int(prepared)
    stamp, _, zone = head.rpartition(" ")
    moment = datetime.fromisoformat(stamp)  # ValueError when it is no time
    end = TransactionEnd(
        xid=xid, committed=record.kind.startswith("COMMIT"),
        time=(moment.replace(tzinfo=UTC).isoformat(timespec="microseconds")
              if zone in UTC_NAMES else None),
        rels=[], subxacts=[], dropped_relations=[])
    for part in parts:
        label, _, items = part.partition(": ")
        if label == "rels":
            end.rels = [rel for rel in map(relfile_of_path, items.split()) if rel is not None]
        elif label == "subxacts":
            end.subxacts = [int(sub) for sub in items.split()]
        elif label == "dropped stats":
            for item in items.split():
                kind, database, oid = item.split("/")
                if int(kind) == STATS_KIND_RELATION:
                    end.dropped_relations.append((int(database), int(oid)))
    return end


# --- transactions ------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Changes:
    """What one (sub)transaction did, until its end says whether it counts."""

    rows: Counter[tuple[str, RelFile]] = dataclasses.field(default_factory=Counter)
    created: set[RelFile] = dataclasses.field(default_factory=set)
    truncated: bool = False
    dropped_databases: list[int] = dataclasses.field(default_factory=list)
    deleted_namespace: bool = False

    def absorb(self, other: _Changes) -> None:
        self.rows.update(other.rows)
        self.created |= other.created
        self.truncated |= other.truncated
        self.dropped_databases += other.dropped_databases
        self.deleted_namespace |= other.deleted_namespace


class EventCollector:
    """Turns records, in WAL order, into destructive events at their transactions' ends.

    ``namespace_files``: database oid -> pg_namespace's relfilenode, where a catalog map says
    it is not initdb's 2615 (after a VACUUM FULL of pg_namespace).
    """

    def __init__(self, *, major: int, timeline: int, min_rows: int = DEFAULT_MIN_ROWS,
                 namespace_files: Mapping[int, int] | None = None,
                 stats: ParseStats | None = None) -> None:
        text_style(major)  # refuses a major whose text has not been checked
        self.major = major
        self.timeline = timeline
        self.min_rows = min_rows
        self.namespace_files = dict(namespace_files or {})
        self.stats = ParseStats() if stats is None else stats
        self._open: dict[int, _Changes] = {}  # what (sub)transactions did, rows apart:
        # rows are most of it, mostly a few per transaction: kept light, in plain dicts
        self._rows: dict[int, dict[tuple[str, RelFile], int]] = {}
        # files created by transactions not ended yet, and not written to yet: whoever
        # feeds the records discards those written to (see _storage_kind)
        self.unwritten_files: set[RelFile] = set()
        # DROP DATABASE: in-place updates of pg_database rows, (block, offset) -> LSN, and
        # where each dropping xid's restore must stop (module docstring)
        self._inplace: dict[tuple[int, int], str] = {}
        self.drop_starts: dict[int, str] = {}
        self.tail = ""  # the end of the last block of text read (the fast way)

    def is_open(self, xid: int) -> bool:
        """Whether xid did something that may still make an event."""
        return xid in self._open or xid in self._rows

    def forget_if_eventless(self, xid: int) -> bool:
        """For a COMMIT that lists no files and no subtransactions: True, with xid forgotten,
        when it cannot make an event (a few rows), so the COMMIT need not be parsed."""
        if xid in self._open:
            return False
        rows = self._rows.get(xid)
        if rows is not None:
            if max(rows.values()) >= self.min_rows:
                return False
            del self._rows[xid]
        return True

    def add(self, record: WalRecord) -> list[DestructiveEvent]:
        """The events this record completes (a COMMIT's), usually none."""
        try:
            if self.unwritten_files:
                self.unwritten_files.difference_update(block.rel for block in record.blocks)
            if record.rmgr == "Heap" and record.kind in ROW_KINDS:
                flags = (delete_flags(record.desc, self.major) if record.kind == "DELETE"
                         else 0)
                rel = record.blocks[0].rel
                if record.kind == "DELETE" and rel == _PG_DATABASE:
                    self._database_row_deleted(record)
                self.add_rows(record.xid, record.kind, flags, rel)
                return []
            return self._other(record)
        except (ValueError, IndexError):  # IndexError: a heap record without its block
            self.stats.malformed += 1
            return []

    def add_rows(self, xid: int, kind: str, flags: int, rel: RelFile, count: int = 1) -> None:
        """``count`` heap records of one ROW_KINDS type, xid, flags and relation."""
        what = "update"
        if kind == "DELETE":
            if rel.relfilenode == self.namespace_files.get(rel.database,
                                                           PG_NAMESPACE_RELFILENODE):
                self._changes(xid).deleted_namespace = True
            if flags & DELETE_IS_SUPER:
                return
            if not flags & DELETE_IS_PARTITION_MOVE:
                what = "delete"
        if rel.relfilenode >= FIRST_NORMAL_OID:
            rows = self._rows.get(xid)
            if rows is None:
                self._rows[xid] = {(what, rel): count}
            else:
                rows[what, rel] = rows.get((what, rel), 0) + count

    def _database_row_deleted(self, record: WalRecord) -> None:
        """A pg_database row deleted (record by record): where its DROP DATABASE began."""
        key = (record.blocks[0].block, tuple_offset(record.desc))
        marked = self._inplace.get(key)
        near = marked is not None and parse_lsn(record.lsn) - parse_lsn(marked) \
            <= DROP_LOOK_BACK
        self.drop_starts[record.xid] = marked if near and marked else record.lsn

    def _other(self, record: WalRecord) -> list[DestructiveEvent]:
        rmgr, kind = record.rmgr, record.kind
        if rmgr == "Heap" and kind == "INPLACE":
            if record.blocks and record.blocks[0].rel == _PG_DATABASE:
                self._inplace[record.blocks[0].block, tuple_offset(record.desc)] = record.lsn
            return []
        if rmgr == "Transaction":
            if kind in TRANSACTION_ENDS:
                return self._end(parse_transaction_end(record), record.lsn)
        elif rmgr == "Heap" and kind == "TRUNCATE":  # written under wal_level = logical
            self._changes(record.xid).truncated = True
        elif rmgr == "Storage" and kind == "CREATE":
            rel = relfile_of_path(record.desc.split()[0])
            if rel is None:
                raise ValueError(record.desc)
            self._changes(record.xid).created.add(rel)
            self.unwritten_files.add(rel)
        elif rmgr == "Database" and kind == "DROP":
            # "dir 1663/16429 16400/16429": the database's directory in each tablespace
            databases = {int(item.split("/")[1]) for item in record.desc.split()[1:]}
            self._changes(record.xid).dropped_databases += sorted(databases)
            self.drop_starts.setdefault(record.xid, record.lsn)
        elif rmgr == "Standby" and kind == "RUNNING_XACTS":
            self._forget_older_than(int(record.desc.split("oldestRunningXid ")[1].split(";")[0]))
        return []

    def _changes(self, xid: int) -> _Changes:
        changes = self._open.get(xid)
        if changes is None:
            changes = self._open[xid] = _Changes()
        return changes

    def _end(self, end: TransactionEnd, lsn: str) -> list[DestructiveEvent]:
        if end.time is None:
            self.stats.times_not_utc += 1
        changes = _Changes()
        for xid in (end.xid, *end.subxacts):
            ended = self._open.pop(xid, None)
            if ended is not None:
                changes.absorb(ended)
            rows = self._rows.pop(xid, None)
            if rows is not None:
                changes.rows.update(rows)
        unwritten = changes.created & self.unwritten_files
        self.unwritten_files -= changes.created
        if not end.committed:
            self.drop_starts.pop(end.xid, None)
            return []
        return self._events(end, lsn, changes, unwritten)

    def _events(self, end: TransactionEnd, lsn: str, changes: _Changes,
                unwritten: set[RelFile]) -> list[DestructiveEvent]:
        def event(kind: str, database: int, relations: tuple[RelFile, ...] = (),
                  rows: int | None = None) -> DestructiveEvent:
            return DestructiveEvent(kind=kind, xid=end.xid, commit_lsn=lsn,
                                    commit_time=end.time, database=database,
                                    relations=relations, rows=rows, timeline=self.timeline)

        stop = self.drop_starts.pop(end.xid, None)
        events = [dataclasses.replace(event("drop_database", database), stop_lsn=stop)
                  for database in changes.dropped_databases]
        destroyed = tuple(rel for rel in end.rels if rel not in changes.created)
        if destroyed:
            events.append(event(_storage_kind(end, changes, unwritten), destroyed[0].database,
                                destroyed))
        for (what, rel), rows in sorted(changes.rows.items()):
            if rows >= self.min_rows and rel not in changes.created:
                events.append(event(what, rel.database, (rel,), rows))
        return events

    def _forget_older_than(self, oldest_running: int) -> None:
        """Forget the transactions that ended unseen (a crash): none older than the oldest
        running one is still open. xids wrap around: compared as PostgreSQL does."""
        for xid in [xid for xid in self._open if _precedes(xid, oldest_running)]:
            self.unwritten_files -= self._open.pop(xid).created
        for xid in [xid for xid in self._rows if _precedes(xid, oldest_running)]:
            del self._rows[xid]


def _storage_kind(end: TransactionEnd, changes: _Changes, unwritten: set[RelFile]) -> str:
    """What dropped the files of a committed transaction's ``rels:`` (module docstring)."""
    if changes.truncated:
        return "truncate"
    # a new relation's first file is named after its oid: files created here are new ones
    created = {(rel.database, rel.relfilenode) for rel in changes.created}
    if any(dropped not in created for dropped in end.dropped_relations):
        return "drop_schema" if changes.deleted_namespace else "drop_table"
    if end.dropped_relations:
        return "rewrite"  # only make_new_heap's transient table was dropped
    if not changes.created:
        return "drop_table"
    return "truncate" if unwritten else "rewrite"


def _precedes(xid: int, other: int) -> bool:
    """TransactionIdPrecedes for normal xids: modulo 2^32."""
    return ((xid - other) & 0xFFFFFFFF) >= 0x80000000


# --- the fast way: blocks of text --------------------------------------------------------

# the fields after the rmgr: tx and, with {lsn} a group, the lsn
_HEADER = r" +len [^,\n]*, tx: +(\d+), lsn: {lsn}, prev [^,\n]*, desc: "
# the heap records of rows, the bulk of the records read: counted by one findall per block
# (in C, with Counter), never one by one; per major, for the DELETE flags' wording
_ROWS = {style: re.compile(
    r"rmgr: Heap" + _HEADER.format(lsn=r"[^,\n]*")
    + r"(DELETE|UPDATE|HOT_UPDATE|UPDATE\+INIT|HOT_UPDATE\+INIT) "
    + r"(?:[^\n]*?" + re.escape(label) + r"(\w\w))?"
    + r"[^\n]*?(?:, |\n\t)blkref #0: rel (\d+/\d+/\d+)")
    for style, label in _DELETE_FLAGS_LABEL.items()}
# every other record of WANTED's resource managers but the Heap (TRUNCATE: looked for apart)
_OTHERS = re.compile(r"rmgr: (Transaction|Storage|Database|Standby)"
                     + _HEADER.format(lsn=r"([^,\n]*)") + r"(\S+) ?([^\n]*)")
_BLOCK_TEXT = 1 << 20  # what is scanned at once


@dataclasses.dataclass(slots=True)
class BlockDigest:
    """What the regular expressions find in one block of text: a pure function of it
    (``digest_block``), so it can be found in another process while this one reads on."""

    lines: int
    rows: Counter[tuple[str, str, str, str]]  # (xid, kind, flags, rel) -> records
    row_records: int
    others: list[tuple[int, str, str, str, str, str]]  # (start, rmgr, xid, lsn, kind, desc)
    truncates: list[tuple[int, str]]  # (start, line) of each Heap TRUNCATE record


def digest_block(block: str, major: int) -> BlockDigest:
    # unknown lines are not counted here: two more passes over the text, for lines that
    # pg_waldump does not print (read_records counts them)
    found = _ROWS[text_style(major)].findall(block)  # (xid, kind, flags, rel) per row record
    others = [(match.start(), *match.groups()) for match in _OTHERS.finditer(block)
              if match[4] in WANTED[match[1]]]
    return BlockDigest(block.count("\n") + (not block.endswith("\n")), Counter(found),
                       len(found), others, list(_heap_truncates(block)))


def destructive_events(texts: Iterable[str], *, major: int, timeline: int,
                       min_rows: int = DEFAULT_MIN_ROWS,
                       namespace_files: Mapping[int, int] | None = None,
                       stats: ParseStats | None = None,
                       digests: Callable[[Iterable[str]], Iterator[tuple[str, BlockDigest]]]
                       | None = None) -> Iterator[DestructiveEvent]:
    """The destructive events in pg_waldump's output, in commit order, as they are read.

    ``texts``: that output in pieces of any size, cut anywhere (read from its pipe a MiB at a
    time is fastest; lines do too). Nothing raises on bad text: ``stats`` counts it.
    ``digests``: given the blocks of text, each with its digest_block(), in order (found
    elsewhere, in parallel: tui.wal.scan); by default they are found here, one by one.
    """
    collector = EventCollector(major=major, timeline=timeline, min_rows=min_rows,
                               namespace_files=namespace_files, stats=stats)
    blocks = _blocks_of_records(texts)
    found = digests(blocks) if digests is not None else (
        (block, digest_block(block, major)) for block in blocks)
    for block, digest in found:
        yield from _scan_block(block, digest, collector)


def _blocks_of_records(texts: Iterable[str]) -> Iterator[str]:
    """The text again, in blocks of whole records (a record's ``--bkp-details`` lines stay
    with it), each at least _BLOCK_TEXT long but the last."""
    pieces: list[str] = []
    size = 0
    for text in texts:
        pieces.append(text)
        size += len(text)
        if size >= _BLOCK_TEXT:
            buffered = "".join(pieces)
            cut = buffered.rfind("\nrmgr: ") + 1  # before the last record: its lines may follow
            if cut > 0:
                yield buffered[:cut]
                buffered = buffered[cut:]
            pieces, size = [buffered], len(buffered)
    rest = "".join(pieces)
    if rest:
        yield rest


def _scan_block(block: str, digest: BlockDigest,
                collector: EventCollector) -> Iterator[DestructiveEvent]:
    stats = collector.stats
    stats.lines += digest.lines
    stats.records += digest.row_records
    rows_of: Counter[str] = Counter()
    for (xid, _, _, _), count in digest.rows.items():
        rows_of[xid] += count
    quiet: set[str] = set()
    others = list(_other_records(digest, collector, rows_of, quiet))

    # Rows next, all of the block's at once: none can be missed at a COMMIT of the block, as
    # no record of a transaction comes after its end.
    for (xid, kind, flags, rel), count in digest.rows.items():
        if xid not in quiet:
            collector.add_rows(int(xid), kind, int(flags or "0", 16), _relfile(rel), count)

    # new files are looked for in the text, up to each transaction's end (see _storage_kind)
    searched_to = dict.fromkeys(collector.unwritten_files, 0)
    for at, record in others:
        if record.rmgr == "Transaction":
            if (record.kind == "COMMIT" and ";" not in record.desc
                    and collector.forget_if_eventless(record.xid)):
                continue  # a few rows, some of them in earlier blocks
            if collector.unwritten_files:
                _find_writes(block, at, collector.unwritten_files, searched_to)
        if record.rmgr == "Database":
            _find_drop_start(collector, block, at, record)
        events = collector.add(record)
        if events:
            yield from events
        if record.rmgr == "Storage" and collector.unwritten_files:
            searched_to.update((rel, at) for rel in collector.unwritten_files
                               if rel not in searched_to)
    _find_writes(block, len(block), collector.unwritten_files, searched_to)
    collector.tail = block[-2 * DROP_LOOK_BACK:]  # text is about twice its WAL's bytes


# pg_database's block, inline or on a line of its own (--bkp-details), then its number
_DATABASE_BLOCK = rf"(?:, |\n\t)blkref #0: rel {PG_DATABASE_FILE} (?:fork main )?blk "


def _find_drop_start(collector: EventCollector, block: str, at: int,
                     record: WalRecord) -> None:
    """Where a DROP DATABASE began (module docstring), found in the text before its DROP
    record: the pg_database row its xid deleted, then the in-place update of that row."""
    before = (collector.tail + block[:at])[-2 * DROP_LOOK_BACK:]
    deleted = _last_match(
        rf"tx: +{record.xid}, lsn: ([^,\n]+), prev [^,\n]*, desc: DELETE [^\n]*?"
        rf"\boff:? (\d+)\b[^\n]*?{_DATABASE_BLOCK}(\d+)", before)
    if deleted is None:
        return
    lsn, off, blk = deleted.groups()
    marked = _last_match(rf"lsn: ([^,\n]+), prev [^,\n]*, desc: INPLACE off:? {off}\b"
                         rf"[^\n]*?{_DATABASE_BLOCK}{blk}\b", before[:deleted.start()])
    if marked is not None and parse_lsn(lsn) - parse_lsn(marked[1]) <= DROP_LOOK_BACK:
        lsn = marked[1]
    collector.drop_starts[record.xid] = lsn


def _last_match(pattern: str, text: str) -> re.Match[str] | None:
    found = None
    for found in re.finditer(pattern, text):  # noqa: B007 (the last one is wanted)
        pass
    return found


def _other_records(digest: BlockDigest, collector: EventCollector, rows_of: Counter[str],
                   quiet: set[str]) -> Iterator[tuple[int, WalRecord]]:
    """The block's WANTED records other than rows, with where they start, in order; less
    the COMMITs that cannot make an event, whose xids go to ``quiet`` (most transactions):
    they list nothing, and their transactions did nothing before them, here or in earlier
    blocks, but change fewer than min_rows rows (``rows_of``: the block's, by xid)."""
    stats = collector.stats
    seen: set[str] = set()  # the xids of the records yielded so far
    truncates = iter(_parsed_truncates(digest.truncates, stats))
    next_truncate = next(truncates, None)
    for start, rmgr, xid, lsn, kind, desc in digest.others:
        while next_truncate is not None and next_truncate[0] < start:
            seen.add(str(next_truncate[1].xid))
            yield next_truncate
            next_truncate = next(truncates, None)
        if (kind == "COMMIT" and ";" not in desc and xid not in seen
                and rows_of[xid] < collector.min_rows and not collector.is_open(int(xid))):
            quiet.add(xid)
            continue
        seen.add(xid)
        stats.records += 1
        yield start, WalRecord(rmgr, kind, int(xid), lsn, desc.rstrip(), [])
    while next_truncate is not None:
        yield next_truncate
        next_truncate = next(truncates, None)


def _heap_truncates(block: str) -> Iterator[tuple[int, str]]:
    """The Heap TRUNCATE records' lines (rare: looked for as text, not by the regular
    expression)."""
    at = block.find("desc: TRUNCATE ")
    while at >= 0:
        start = block.rfind("\n", 0, at) + 1
        end = block.find("\n", at)
        line = block[start:] if end < 0 else block[start:end]
        if line.startswith("rmgr: Heap "):
            yield start, line
        at = block.find("desc: TRUNCATE ", at + 1)


def _parsed_truncates(lines: list[tuple[int, str]],
                      stats: ParseStats) -> Iterator[tuple[int, WalRecord]]:
    for start, line in lines:
        record = parse_record_line(line)
        if record is None:
            stats.malformed += 1
        else:
            stats.records += 1
            yield start, record


def _find_writes(block: str, until: int, unwritten: set[RelFile],
                 searched_to: dict[RelFile, int]) -> None:
    """Discard from ``unwritten`` the files a block reference before ``until`` writes to."""
    for rel in list(unwritten):
        start = searched_to.get(rel, 0)
        needle = f"rel {rel.tablespace}/{rel.database}/{rel.relfilenode} "
        if block.find(needle, start, until) >= 0:
            unwritten.discard(rel)
        else:
            searched_to[rel] = max(start, until - len(needle))
