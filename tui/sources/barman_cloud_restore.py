"""Lay a Barman Cloud backup down in a new data directory, and feed recovery its WAL.

    store ──▶ gunzip / bunzip2 ──▶ tar -x, as the server's account, into the directory

for each of the backup's tarballs (data.tar, then data_0001.tar ... when
barman-cloud-backup split it; each tablespace's <oid>.tar into a directory of its
own beside the new data directory, never the source's location). The WAL then
comes from the same store through drdeck's feeder (tui.wal.feeder): fetched ahead,
decompressed here, and handed to the server through its spool. So the restored
server needs neither the store's credentials nor barman-cloud, and no program
starts per segment (a barman-cloud-wal-restore run costs an interpreter and a
boto3 session each; `make bench` measures both).

The store is untrusted, as everywhere: tar writes only where the server's account
may, a tarball that does not end where its compression says is refused, and a
WAL object is read up to the size a segment can have.
"""

from __future__ import annotations

import bz2
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tui.pitr.restore import (
    RestoreRefused,
    empty_directory,
    prepare_data_dir,
    refuse_planted,
    untar_into,
)
from tui.postgres.cluster import server_account
from tui.snapshots.pipes import Reporter, Throttled, from_thread
from tui.sources.barman_cloud import (
    MAX_HISTORY_BYTES,
    BarmanBackup,
    StoreListing,
    WalUnreadable,
    decompress,
    list_wal_objects,
    read_capped,
)
from tui.storage.base import StoredObject
from tui.wal.names import SEGMENT

# what the data tarballs may be compressed with for drdeck to stream them
STREAMED = {None: None, "gzip": lambda: zlib.decompressobj(wbits=31),
            "bzip2": bz2.BZ2Decompressor}
INFLATE_STEP = 4 << 20  # plain bytes held at once while a tarball is inflated
RELIST_AFTER_S = 1.0  # a WAL file not listed is looked for again, at most this often


def why_not_restorable(backup: BarmanBackup) -> str | None:
    """Why drdeck cannot lay this backup down itself; None when it can."""
    if backup.snapshot:
        return (f"backup {backup.backup_id} is a snapshot backup: its data is in disk "
                "snapshots, which barman-cloud-restore --snapshot-recovery-instance attaches")
    if backup.compression not in STREAMED:
        return (f"backup {backup.backup_id} is {backup.compression}-compressed: drdeck "
                "restores uncompressed, gzip and bzip2 backups (barman-cloud-backup --gzip "
                "or --bzip2); restore this one with barman-cloud-restore")
    known = {str(t.oid) for t in backup.tablespaces}
    strays = sorted({_owner(key) for key in backup.data_objects} - known - {"data"})
    if strays:
        return (f"backup {backup.backup_id} has tarballs of tablespace oid "
                f"{', '.join(strays)}, which its backup.info does not list: it cannot be "
                "restored as it is")
    if not any(_base(key).startswith("data.tar") for key in backup.data_objects):
        return f"backup {backup.backup_id} has no data.tar in the store"
    return None


async def unpack_backup(backup: BarmanBackup, store: Any, data_dir: Path,
                        reporter: Reporter, places: dict[int, Path] | None = None) -> None:
    """Every tarball of the backup, in order: data.tar into `data_dir`, each tablespace's
    into its place (tui.pitr.tablespaces: beside the data directory unless mapped),
    linked from pg_tblspc. On any doubt every directory is emptied again, so a
    half-restored one never looks like a good one."""
    from tui.pitr.tablespaces import link_tablespaces, tablespace_places

    why = why_not_restorable(backup)
    if why:
        raise RestoreRefused(why)
    stored = {key: store.stat(key) for key in backup.data_objects}
    missing = [key for key, found in stored.items() if found is None]
    if missing:
        raise RestoreRefused(f"{store.url(missing[0])} is missing: backup {backup.backup_id} "
                             "cannot be restored (was it deleted while being read?)")
    if places is None:
        places = tablespace_places(backup.tablespaces, data_dir)
    into = {"data": data_dir} | {str(oid): place for oid, place in places.items()}
    progress = Throttled(reporter, float(sum(found.size for found in stored.values())),
                         "bytes")
    done = 0
    made = [data_dir]  # emptied again on failure: only what this restore made
    try:
        for place in places.values():
            prepare_data_dir(place)
            made.append(place)
        for key in backup.data_objects:
            reporter.output(f"fetching {store.url(key)} ({stored[key].size:,} bytes, "
                            f"{backup.compression or 'uncompressed'})")

            async def feed(tar_input: int, key: str = key) -> None:
                nonlocal done
                decompressor = STREAMED[backup.compression]
                unpack = decompressor() if decompressor else None
                async for chunk in from_thread(lambda: store.iter_chunks(key)):
                    done += len(chunk)
                    for plain in _inflate(unpack, chunk) if unpack else (chunk,):
                        _write_all(tar_input, plain)
                    progress(done, _base(key))
                if unpack is not None and not unpack.eof:
                    raise RestoreRefused(f"{store.url(key)} ends before its "
                                         f"{backup.compression} stream does (truncated)")

            try:
                await untar_into(into[_owner(key)], feed, store.url(key))
            except (zlib.error, OSError, EOFError) as exc:
                if isinstance(exc, BrokenPipeError):
                    raise
                raise RestoreRefused(f"{store.url(key)} is not valid "
                                     f"{backup.compression} data ({exc})") from None
        progress(done, "all tarballs unpacked", final=True)
        refuse_planted(data_dir, store.url(backup.data_objects[0]))
        _make_wal_directory(data_dir)
        link_tablespaces(data_dir, places)
        for tablespace in backup.tablespaces:
            reporter.output(f"tablespace {tablespace.name} (oid {tablespace.oid}, at "
                            f"{tablespace.location} on the source) restored into "
                            f"{places[tablespace.oid]}")
    except BaseException:
        for place in made:
            if place.is_dir() and not place.is_symlink():
                empty_directory(place)
        raise


def _make_wal_directory(data_dir: Path) -> None:
    """barman-cloud-backup leaves pg_wal's contents out, and pg_wal itself when it was a
    link: PostgreSQL needs it there, the server's."""
    try:
        os.mkdir(data_dir / "pg_wal", 0o700)
    except FileExistsError:
        return
    descriptor = os.open(data_dir / "pg_wal", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        account = server_account()
        if account is not None:
            os.fchown(descriptor, account.uid, account.gid)
    finally:
        os.close(descriptor)


class StoreWal:
    """The WAL in a Barman Cloud store, as tui.wal.feeder fetches it: a file's name to its
    plain bytes, or None when the store does not hold it."""

    def __init__(self, store: Any, server_name: str, listing: StoreListing,
                 segment_size: int) -> None:
        self.store, self.server_name, self.segment_size = store, server_name, segment_size
        self.listing = listing
        self._listed_at: dict[str, float] = {}
        self._lock = threading.Lock()  # the feeder fetches from several threads

    def fetch(self, name: str) -> bytes | None:
        found = self._find(name)
        if found is None:
            return None
        item, compression = found
        where = self.store.url(item.key)
        if SEGMENT.fullmatch(name):
            # compressed, a segment cannot honestly be much larger than itself
            raw = read_capped(self.store, item, self.segment_size + (1 << 20), "a WAL segment")
            plain = decompress(raw, compression, self.segment_size, where)
            if len(plain) != self.segment_size:
                raise WalUnreadable(f"{where} holds {len(plain):,} bytes, not a "
                                    f"{self.segment_size:,}-byte WAL segment")
            return plain
        raw = read_capped(self.store, item, MAX_HISTORY_BYTES, "a WAL history file")
        return decompress(raw, compression, MAX_HISTORY_BYTES, where)

    def _find(self, name: str) -> tuple[StoredObject, str | None] | None:
        """The object holding `name`; a name not listed yet is looked for again (archiving
        goes on during a restore to `latest`), at most once a second."""
        with self._lock:
            if name not in self.listing.wal:
                now = time.monotonic()
                if now - self._listed_at.get(name, -RELIST_AFTER_S) >= RELIST_AFTER_S:
                    self._listed_at[name] = now
                    list_wal_objects(self.store, self.server_name, name, self.listing)
            item = self.listing.wal.get(name)
            return None if item is None else (item, self.listing.wal_compression.get(name))


def _inflate(unpack: Any, chunk: bytes) -> Iterator[bytes]:
    """A chunk's plain bytes, a bounded piece at a time: a small object that inflates
    to gigabytes (a "zip bomb" left in the store) is never held whole."""
    if isinstance(unpack, bz2.BZ2Decompressor):
        yield unpack.decompress(chunk, INFLATE_STEP)
        while not unpack.eof and not unpack.needs_input:
            yield unpack.decompress(b"", INFLATE_STEP)
        return
    yield unpack.decompress(chunk, INFLATE_STEP)
    while unpack.unconsumed_tail:
        yield unpack.decompress(unpack.unconsumed_tail, INFLATE_STEP)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _owner(key: str) -> str:
    """Whose tarball a key is: "data", or a tablespace's oid (data_0001.tar.gz -> data)."""
    return _base(key).partition(".")[0].partition("_")[0]


def _base(key: str) -> str:
    return key.rsplit("/", 1)[-1]

