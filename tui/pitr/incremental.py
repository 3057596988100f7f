"""Incremental base backups (PostgreSQL 17 and later), taken and restored.

Taking one: the server must summarize its WAL (`summarize_wal = on`), and is given the
backup_manifest of the backup it builds on (UPLOAD_MANIFEST); it then sends whole
only the files that are not relations, and of each relation the blocks changed since.
The parent is the newest usable backup of the same server that carries its
backup_manifest, full or incremental itself: a chain.

Restoring one: each backup of the chain, oldest first, is unpacked into a staging
directory beside the data directory (`<data>.chain/<stamp>`, its tablespaces in
`<data>.chain/<stamp>.tablespaces/<oid>`) with its backup_manifest, and pg_combinebackup,
run as the server's account, writes the one data directory recovery starts from. The
staging directories are removed afterwards, whatever happened: at the peak the disk
holds the chain unpacked and the combined result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from tui import environment
from tui.compression import Undecompressable, decompress_into
from tui.pitr.basebackup import BaseBackupFailed, BaseManifest
from tui.pitr.tablespaces import staging_home
from tui.snapshots.fetch import StoredItem, stream_object
from tui.snapshots.pipes import Reporter

FIRST_VERSION_NUM = 170000
# a backup_manifest has a line per file: a million files is some hundreds of MiB, so
# 16 GiB is far beyond any real one, and bounds what a planted object can fill on disk
MAX_SERVER_MANIFEST = 16 << 30


def refuse_incremental(identity: dict[str, Any]) -> str:
    """Why this server cannot take an incremental backup ("" when it can)."""
    version = int(identity["server_version_num"])
    if version < FIRST_VERSION_NUM:
        return (f"an incremental base backup needs PostgreSQL 17 or later, and this server "
                f"runs {identity['server_version']}: PostgreSQL {version // 10000} cannot "
                "tell which blocks changed since a backup (17 added the WAL summaries that "
                "do). Take a full base backup (incremental = false)")
    if identity.get("summarize_wal") != "on":
        return ("an incremental base backup needs the server to summarize its WAL, and "
                "summarize_wal is off: set summarize_wal = on (ALTER SYSTEM SET summarize_wal "
                "= on; SELECT pg_reload_conf()), take a full base backup, then incremental "
                "ones on it")
    return ""


def choose_parent(backups: list[tuple[BaseManifest | None, str, str]],
                  identity: dict[str, Any]) -> BaseManifest | None:
    """The newest usable backup of this server that carries its backup_manifest."""
    for manifest, _, problem in backups:  # newest first
        if manifest is not None and not problem and manifest.server_manifest is not None \
                and manifest.system_identifier == identity["system_identifier"]:
            return manifest
    return None


async def read_server_manifest(backup: BaseManifest, store: Any, gpg_home: str | None,
                               reporter: Reporter) -> BinaryIO:
    """The backup_manifest stored with `backup`, decrypted, proven by its sha256 and
    decompressed, in an unnamed temporary file (read from its start; the caller closes
    it): a manifest has a line per file, so a big cluster's is not held in memory."""
    with contextlib.ExitStack() as unwanted:  # closed unless handed to the caller
        fetched = unwanted.enter_context(tempfile.TemporaryFile())
        await _fetch_server_manifest(backup, store, fetched.fileno(), reporter, gpg_home)
        fetched.seek(0)
        if backup.compression == "none":
            unwanted.pop_all()
            return fetched
        plain = unwanted.enter_context(tempfile.TemporaryFile())
        try:
            await asyncio.to_thread(
                decompress_into, iter(lambda: fetched.read(1 << 20), b""), plain.write,
                MAX_SERVER_MANIFEST, store.location(backup.server_manifest.object))
        except Undecompressable as exc:
            raise BaseBackupFailed(str(exc)) from None
        unwanted.pop_all()
        fetched.close()
        plain.seek(0)
        return plain


async def _fetch_server_manifest(backup: BaseManifest, store: Any, fd: int,
                                 reporter: Reporter, gpg_home: str | None) -> None:
    entry = backup.server_manifest
    if entry is None:
        raise BaseBackupFailed(f"base backup {backup.stamp} carries no backup_manifest")
    item = StoredItem(entry.object, entry.stored_size, entry.sha256_stored, backup.encrypted,
                      what=f"the backup_manifest of base backup {backup.stamp}")
    plain = await stream_object(item, store, fd, reporter, gpg_home, hash_plaintext=True)
    if plain != entry.sha256_plaintext:
        raise BaseBackupFailed(f"{store.location(entry.object)}: the decrypted backup_manifest"
                               " is not the one its manifest describes (sha256 differs)")


def check_combinable(chain: list[BaseManifest], data_dir: Path) -> str:
    """Refuse, before anything is fetched, a chain this machine cannot combine: every
    backup of it must be unpackable here and of one major and server; pg_combinebackup
    (PostgreSQL 17 and later) must be there; the staging directory must be new or
    empty. What was found."""
    from tui.pitr.restore import check_data_dir, check_unpackable
    from tui.postgres.binaries import pg_bin

    for backup in chain:
        check_unpackable(backup)
    if len({b.system_identifier for b in chain}) > 1 or \
            len({b.server_version.split(".")[0] for b in chain}) > 1:
        raise BaseBackupFailed(f"the chain of base backup {chain[-1].stamp} mixes servers or "
                               "major versions: it cannot be combined")
    check_data_dir(staging_home(data_dir))
    combine = pg_bin("pg_combinebackup")
    return (f"full {chain[0].stamp} + {len(chain) - 1} incremental "
            f"({' -> '.join(b.stamp for b in chain[1:])}); {combine}")


def _mapping_path(path: Path) -> str:
    """A path as pg_combinebackup's --tablespace-mapping reads it: `=` escaped."""
    return str(path).replace("=", "\\=")


async def restore_chain(chain: list[BaseManifest], store: Any, data_dir: Path,
                        reporter: Reporter, gpg_home: str | None,
                        places: dict[int, Path]) -> None:
    """Unpack every backup of `chain` (oldest first) and combine them into `data_dir`,
    its tablespaces into `places`. On failure the data directory and the places are
    emptied again; the staging directories go either way."""
    from tui.pitr.restore import empty_directory, prepare_data_dir, unpack_base
    from tui.postgres.binaries import pg_bin

    combine = pg_bin("pg_combinebackup")
    staging = staging_home(data_dir)
    inputs = []
    made: list[Path] = []  # emptied again on failure: only what this restore made
    reporter.output(f"incremental chain: full backup {chain[0].stamp}, then "
                    + ", ".join(b.stamp for b in chain[1:])
                    + f"; each unpacked into {staging}, then combined")
    try:
        prepare_data_dir(staging)
        made.append(staging)
        for backup in chain:
            unpacked = staging / backup.stamp
            prepare_data_dir(unpacked)
            spaces = {t.oid: staging / f"{backup.stamp}.tablespaces" / str(t.oid)
                      for t in backup.tablespaces}
            await unpack_base(backup, store, unpacked, reporter, gpg_home, spaces)
            await _lay_down_server_manifest(backup, store, unpacked, reporter, gpg_home)
            inputs.append(unpacked)
        last = chain[-1]
        unpacked_at = staging / f"{last.stamp}.tablespaces"
        mapping = [f"--tablespace-mapping={_mapping_path(unpacked_at / str(oid))}="
                   f"{_mapping_path(place)}" for oid, place in places.items()]
        reporter.output(f"combining {len(chain)} backups into {data_dir} with "
                        "pg_combinebackup")
        for place in [data_dir, *places.values()]:  # the server's, as pg_combinebackup runs
            prepare_data_dir(place)
            made.append(place)
        await _run_as_server([combine, "--no-manifest", "-o", str(data_dir), *mapping,
                              *map(str, inputs)], "pg_combinebackup")
    except BaseException:
        for place in made:
            if place != staging and place.is_dir() and not place.is_symlink():
                empty_directory(place)
        raise
    finally:
        if staging in made:  # never a directory this restore did not make
            await asyncio.to_thread(shutil.rmtree, staging, True)


async def _lay_down_server_manifest(backup: BaseManifest, store: Any, directory: Path,
                                    reporter: Reporter, gpg_home: str | None) -> None:
    """`directory`/backup_manifest, where pg_combinebackup looks for it. The directory is
    the server account's: the file is made new, following no link put there."""
    content = await read_server_manifest(backup, store, gpg_home, reporter)
    with content:
        await asyncio.to_thread(_write_server_manifest, backup, content, directory)


def _write_server_manifest(backup: BaseManifest, content: BinaryIO, directory: Path) -> None:
    from tui.postgres.cluster import server_account

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(directory / "backup_manifest", flags, 0o600)
    except OSError as exc:
        raise BaseBackupFailed(f"base backup {backup.stamp}'s tar already holds a "
                               f"backup_manifest ({exc.strerror or exc}), which drdeck never "
                               "puts there: not restored") from None
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            shutil.copyfileobj(content, out, 1 << 20)
        account = server_account()
        if account is not None:
            os.fchown(fd, account.uid, account.gid)
    finally:
        os.close(fd)


async def _run_as_server(argv: list[str], what: str) -> None:
    from tui.postgres.cluster import run_as, server_account
    from tui.snapshots.pipes import reap

    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=environment.base(), cwd="/",
        start_new_session=True, **run_as(server_account()))
    try:
        said, _ = await process.communicate()
    except BaseException:
        await reap(process)
        raise
    if process.returncode != 0:
        text = said.decode(errors="replace").strip()
        raise BaseBackupFailed(f"{what} could not combine the chain (exit "
                               f"{process.returncode}): {text[-400:] or 'no message'}")

