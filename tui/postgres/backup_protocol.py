"""A base backup read straight off the replication protocol: one archive per tablespace.

pg_basebackup writes a cluster with more than one tablespace only to files on local
disk (`-D - ` refuses it: "can only write single tablespace to stdout"), so drdeck
speaks the protocol itself (PostgreSQL 15 and later: BASE_BACKUP's options list and
the CopyOut stream that frames its archives):

    BASE_BACKUP (...)  ─▶  start LSN, timeline
                       ─▶  the tablespaces (oid, location, size)
                       ─▶  CopyOut: 'n' archive name + location, 'd' bytes ..., 'p' progress
                       ─▶  stop LSN, timeline

Each archive's bytes are handed on as they arrive, so no archive is ever held whole
or written to a temporary file. It runs in the event loop on libpq's non-blocking
calls: closing the connection is all it takes to stop it.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from tui.errors import DrdeckError

CONNECT_TIMEOUT_S = 10
HANDED_ON = 1 << 20  # bytes gathered before an archive's chunk is handed on
MANIFEST_NAME = "backup_manifest"  # the name Archive gives the server's manifest


class BackupProtocolError(DrdeckError):
    pass


@dataclass(frozen=True)
class Tablespace:
    oid: int
    location: str  # on the source server
    size_kb: int | None


@dataclass(frozen=True)
class Archive:
    name: str  # base.tar[.zst], or <oid>.tar[.zst] for a tablespace
    location: str  # "" for the data directory, else the tablespace's on the source

    @property
    def tablespace_oid(self) -> int | None:
        head = self.name.partition(".")[0]
        return int(head) if head.isdigit() else None


@dataclass
class BaseBackupStream:
    """One BASE_BACKUP: `open()`, then `archives()`; start and stop points as they come."""

    dsn: str
    label: str
    compression: str = "none"  # "zstd": the server compresses each archive
    compression_level: int = 3
    manifest: bool = False  # the server's backup_manifest, after the archives (PG 13+)
    parent_manifest: BinaryIO | None = None  # an incremental backup on it (PG 17+)
    start_lsn: str = ""
    stop_lsn: str = ""
    timeline: int = 0
    tablespaces: list[Tablespace] = field(default_factory=list)
    streamed_bytes: int = 0  # what the server reported sending (its progress messages)
    _conn: Any = None
    _copy_done: bool = False
    _kept: bytes | None = None  # an archive's header, read at the end of the one before

    async def open(self) -> None:
        """Connect, start the backup and read its start point and tablespace list."""
        from psycopg import pq
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(self.dsn, replication="true",
                                 connect_timeout=CONNECT_TIMEOUT_S)
        conn = await asyncio.to_thread(pq.PGconn.connect, conninfo.encode())
        self._conn = conn
        if conn.status != pq.ConnStatus.OK:
            raise BackupProtocolError(f"cannot connect for a base backup: {_message(conn)}")
        conn.nonblocking = 1
        if self.parent_manifest is not None:
            await self._upload_manifest(self.parent_manifest)
        conn.send_query(self._command().encode())
        await self._flush()
        start = await self._result(pq.ExecStatus.TUPLES_OK, "its start point")
        self.start_lsn, self.timeline = _text(start, 0, 0), int(_text(start, 0, 1))
        listed = await self._result(pq.ExecStatus.TUPLES_OK, "its tablespaces")
        self.tablespaces = [
            Tablespace(int(_text(listed, row, 0)), _text(listed, row, 1),
                       int(_text(listed, row, 2)) if listed.get_value(row, 2) else None)
            for row in range(listed.ntuples) if listed.get_value(row, 0) is not None]
        await self._result(pq.ExecStatus.COPY_OUT, "the archives")

    async def archives(self) -> AsyncIterator[tuple[Archive, AsyncIterator[bytes]]]:
        """Each archive with an iterator over its bytes, in the server's order. An
        archive's bytes must be read to their end before the next archive comes."""
        while True:
            message = await self._next_message()
            if message is None:
                break
            if message[:1] == b"m":
                if not self.manifest:
                    raise BackupProtocolError("the server sent a backup manifest, which was "
                                              "not asked for")
                yield Archive(MANIFEST_NAME, ""), self._body()
                continue
            if message[:1] != b"n":
                continue  # progress before the first archive
            name, _, rest = message[1:].partition(b"\0")
            location = rest.partition(b"\0")[0]
            yield Archive(name.decode("utf-8", "replace"),
                          location.decode("utf-8", "replace")), self._body()
        await self._finish()

    async def _body(self) -> AsyncIterator[bytes]:
        """One archive's bytes, up to the next archive (whose header is kept back)."""
        gathered = bytearray()
        while (message := await self._next_message()) is not None:
            kind = message[:1]
            if kind == b"d":
                gathered += message[1:]
                if len(gathered) >= HANDED_ON:
                    yield bytes(gathered)
                    gathered.clear()
            elif kind == b"p" and len(message) == 9:
                self.streamed_bytes = struct.unpack("!q", message[1:])[0]
            elif kind in (b"n", b"m"):
                self._kept = message
                break
        if gathered:
            yield bytes(gathered)

    async def _next_message(self) -> bytes | None:
        if self._kept is not None:
            message, self._kept = self._kept, None
            return message
        return await self._copy_message()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.finish()
            self._conn = None

    def _command(self) -> str:
        # the same choices pg_basebackup -Ft -X fetch --checkpoint=fast --no-manifest made:
        # the WAL that makes the backup consistent is inside it, so there is no wait for
        # the archive here (the action waits for it, saying why when it does not come)
        options = [f"LABEL {_quoted(self.label)}", "CHECKPOINT 'fast'", "WAL true",
                   "WAIT false", "TABLESPACE_MAP true", "PROGRESS true",
                   "MANIFEST 'yes'" if self.manifest or self.parent_manifest is not None
                   else "MANIFEST 'no'"]
        if self.parent_manifest is not None:
            options.append("INCREMENTAL")
        if self.compression == "zstd":
            options += ["COMPRESSION 'zstd'",
                        f"COMPRESSION_DETAIL 'level={int(self.compression_level)}'"]
        return f"BASE_BACKUP ({', '.join(options)})"

    async def _upload_manifest(self, manifest: BinaryIO) -> None:
        """UPLOAD_MANIFEST: the parent's backup_manifest, which the incremental backup
        that follows on this connection is taken against."""
        from psycopg import pq

        self._conn.send_query(b"UPLOAD_MANIFEST")
        await self._flush()
        await self._result(pq.ExecStatus.COPY_IN, "its request for the parent's manifest")
        # a piece at a time from its file: a big cluster's manifest is hundreds of MiB
        for piece in iter(lambda: manifest.read(HANDED_ON), b""):
            while self._conn.put_copy_data(piece) == 0:
                await self._readable(write=True)
            await self._flush()
        while self._conn.put_copy_end() == 0:
            await self._readable(write=True)
        await self._flush()
        await self._result(pq.ExecStatus.COMMAND_OK, "its acceptance of the parent's manifest")
        if await self._next_result() is not None:
            raise BackupProtocolError("the server answered UPLOAD_MANIFEST with more than "
                                      "one result")

    async def _finish(self) -> None:
        from psycopg import pq

        while True:
            result = await self._next_result()
            if result is None:
                break
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise BackupProtocolError(f"the base backup failed: {_error(result)}")
            if result.status == pq.ExecStatus.TUPLES_OK and result.ntuples:
                self.stop_lsn = _text(result, 0, 0)
        if not self.stop_lsn:
            raise BackupProtocolError("the server ended the base backup without its end "
                                      "point")

    async def _copy_message(self) -> bytes | None:
        conn = self._conn
        while not self._copy_done:
            size, data = conn.get_copy_data(1)
            if size > 0:
                return bytes(data)
            if size == -1:
                self._copy_done = True
                break
            if size == -2:
                raise BackupProtocolError(f"the base backup stream broke: {_message(conn)}")
            await self._readable()
            conn.consume_input()
        return None

    async def _result(self, wanted: Any, what: str) -> Any:
        from psycopg import pq

        result = await self._next_result()
        if result is None or result.status != wanted:
            why = _error(result) if result is not None and \
                result.status == pq.ExecStatus.FATAL_ERROR else _message(self._conn)
            raise BackupProtocolError(f"the server did not send {what}: "
                                      f"{why or 'no message'}")
        return result

    async def _next_result(self) -> Any:
        conn = self._conn
        conn.consume_input()
        while conn.is_busy():
            await self._readable()
            conn.consume_input()
        return conn.get_result()

    async def _flush(self) -> None:
        while self._conn.flush() == 1:
            await self._readable(write=True)

    async def _readable(self, write: bool = False) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        socket = self._conn.socket

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add, remove = (loop.add_writer, loop.remove_writer) if write else \
            (loop.add_reader, loop.remove_reader)
        add(socket, wake)
        try:
            await ready
        finally:
            remove(socket)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _text(result: Any, row: int, column: int) -> str:
    value = result.get_value(row, column)
    return "" if value is None else bytes(value).decode()


def _error(result: Any) -> str:
    return bytes(result.error_message or b"").decode("utf-8", "replace").strip()


def _message(conn: Any) -> str:
    text = bytes(conn.error_message or b"").decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "no message"
