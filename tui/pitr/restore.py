"""Lay down a base backup and start a server that recovers to the target.

    store ──▶ sha256 ──▶ gpg --decrypt ──▶ [zstd -d] tar -x into the new data directory
                                                     (each tablespace into its own)

then recovery settings in postgresql.auto.conf (read last, so they beat the
copied postgresql.conf), recovery.signal, and the server started as the
`postgres` OS user. The restore_command only moves files out of a spool
directory that drdeck fills (see tui.wal.feeder). A recovery that fails leaves
its data directory for inspection, with a restore_command that needs no drdeck
run behind it (hand_over).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui import environment
from tui.errors import PermanentFailure
from tui.pitr.basebackup import BaseManifest
from tui.pitr.target import Target
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import (
    LOOPBACK,
    LocalCluster,
    open_for_append,
    run_as,
    server_account,
)
from tui.postgres.placement import port_in_use, why_not_a_new_directory
from tui.snapshots.fetch import StoredItem, stream_object
from tui.snapshots.pipes import Reporter, reap

SPOOL = "drdeck.spool"
RECOVERY_LOG = "drdeck-recovery.log"
# What drdeck writes, creates or removes in the data directory, as root, around the server:
# pg_basebackup makes none of them anything but a regular file, or leaves them out
WRITTEN_BY_DRDECK = ("postgresql.auto.conf", "recovery.signal", "standby.signal",
                     "postmaster.pid", "postmaster.opts", RECOVERY_LOG, SPOOL)


class RestoreRefused(PermanentFailure):
    pass


@dataclass(frozen=True)
class Placement:
    data_dir: Path
    port: int
    socket_dir: Path

    @property
    def cluster(self) -> LocalCluster:
        return LocalCluster(self.data_dir, self.port, self.socket_dir,
                            self.data_dir / RECOVERY_LOG)


def check_unpackable(base: BaseManifest) -> None:
    """Refuse, before anything is fetched, a base backup this machine cannot unpack: tar
    hands a zstd-compressed one to the zstd program."""
    if base.compression == "zstd" and shutil.which("zstd", path=environment.base().get(
            "PATH")) is None:
        raise RestoreRefused(f"base backup {base.stamp} is compressed with zstd, and this "
                             "machine has no zstd program: install it (apt-get install "
                             "zstd), then run the restore again")


def check_data_dir(path: Path) -> None:
    if path.is_symlink():
        raise RestoreRefused(f"{path} is a symbolic link: drdeck restores only into a real "
                             "directory (give the one it points to)")
    why = why_not_a_new_directory(path)
    if why:
        raise RestoreRefused(f"{why}: drdeck never restores over existing files. "
                             "Choose a new directory, or empty this one yourself")


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise RestoreRefused(f"{port} is not a port: ports run from 1 to 65535")
    if port_in_use(port):
        raise RestoreRefused(f"port {port} is in use on 127.0.0.1: choose another port "
                             "for the restored server")


def prepare_data_dir(path: Path) -> None:
    """Create the (empty) data directory, owned by the server account, mode 0700."""
    check_data_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    # by descriptor, and not through a link put in its place since the check
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise RestoreRefused(f"cannot use {path} as the new data directory: it is no longer "
                             f"a directory ({exc.strerror or exc}); choose another") from None
    try:
        if os.listdir(descriptor):
            raise RestoreRefused(f"{path} is no longer empty: drdeck never restores over "
                                 "existing files. Choose a new directory")
        os.fchmod(descriptor, 0o700)
        account = server_account()
        if account is not None:
            os.fchown(descriptor, account.uid, account.gid)
    finally:
        os.close(descriptor)


def new_socket_dir(data_dir: Path | None = None) -> Path:
    """The data directory itself when its path is short enough for a socket, else /tmp."""
    if data_dir is not None and len(os.fsencode(data_dir)) <= 80:
        return data_dir
    path = Path(tempfile.mkdtemp(prefix="drdeck-s"))
    path.chmod(0o755)
    account = server_account()
    if account is not None:
        os.chown(path, account.uid, account.gid)
    return path


async def unpack_base(base: BaseManifest, store: Any, data_dir: Path, reporter: Reporter,
                      gpg_home: str | None, places: dict[int, Path] | None = None) -> None:
    """Stream the base backup into `tar -x`: the data directory's tar into `data_dir`,
    each tablespace's into its place (tui.pitr.tablespaces: beside it unless mapped),
    linked from pg_tblspc. On any doubt every directory is emptied again."""
    from tui.pitr.tablespaces import link_tablespaces, tablespace_places

    if places is None:
        places = tablespace_places(base.tablespaces, data_dir)
    parts = [(base.object, base.stored_size, base.sha256_stored, base.sha256_plaintext,
              data_dir, "the base backup")] + [
        (t.object, t.stored_size, t.sha256_stored, t.sha256_plaintext, places[t.oid],
         f"tablespace {t.name}") for t in base.tablespaces]
    made = [data_dir]  # emptied again on failure: only what this restore made
    try:
        for place in places.values():
            prepare_data_dir(place)
            made.append(place)
        for key, size, sha256_stored, sha256_plaintext, directory, what in parts:
            item = StoredItem(key, size, sha256_stored, base.encrypted, what=f"this {what}"
                              if what != "the base backup" else "this base backup")

            async def feed(tar_input: int, item: StoredItem = item) -> str | None:
                return await stream_object(item, store, tar_input, reporter, gpg_home,
                                           hash_plaintext=True)

            unpacked = await untar_into(directory, feed, what, base.compression)
            if sha256_plaintext and unpacked != sha256_plaintext:
                raise RestoreRefused(
                    f"{store.location(key)}: the decrypted tar's sha256 is "
                    f"{(unpacked or '')[:16]}…, its manifest's sha256_plaintext says "
                    f"{sha256_plaintext[:16]}…; it is not the base backup the manifest "
                    "describes, so the data directory was emptied again. Restore to a "
                    "point after another base backup, or take a new one")
        refuse_planted(data_dir, store.location(base.object))
        link_tablespaces(data_dir, places)
        for tablespace in base.tablespaces:
            reporter.output(f"tablespace {tablespace.name} (oid {tablespace.oid}, at "
                            f"{tablespace.location} on the source) restored into "
                            f"{places[tablespace.oid]}")
    except BaseException:
        for place in made:
            if place.is_dir() and not place.is_symlink():
                empty_directory(place)
        raise


async def untar_into(directory: Path, feed: Callable[[int], Awaitable[Any]], what: str,
                     compression: str = "none") -> Any:
    """`tar -x` into `directory`, `feed` writing the tar stream (zstd-compressed with
    `compression` "zstd") into its pipe (given the pipe's descriptor); what `feed`
    returns. Raises RestoreRefused when tar fails or stops reading (a full disk, say: its
    own words say why); the caller empties the directory.

    tar runs as the server's account, which owns the directory already: whatever the
    archive holds, or that account puts in the directory meanwhile, tar writes only where
    the server itself could.
    """
    read_end, write_end = os.pipe()
    tar = await asyncio.create_subprocess_exec(
        "tar", "--extract", "--file=-", f"--directory={directory}", "--no-same-owner",
        *(["--zstd"] if compression == "zstd" else []),
        stdin=read_end, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=environment.base(), cwd="/", start_new_session=True, **run_as(server_account()))
    os.close(read_end)
    try:
        fed = False
        try:
            result = await feed(write_end)
            fed = True
        except BrokenPipeError:
            pass  # tar stopped reading: its stderr says why
        finally:
            os.close(write_end)
        _, errors = await tar.communicate()
        if tar.returncode != 0 or not fed:
            raise RestoreRefused(f"tar could not unpack {what} into {directory}: "
                                 f"{errors.decode(errors='replace').strip()[-300:]}")
        return result
    except BaseException:
        await reap(tar)
        raise


def refuse_planted(data_dir: Path, where: str) -> None:
    """Refuse a base backup that holds, where drdeck writes, anything but a regular file.

    drdeck writes there as root: a symbolic link (recovery.signal -> /etc/shadow) would
    have it create, append to or give the server's account a file elsewhere. A spool an
    earlier restore left in the source's data directory is removed: it is made new.
    """
    for name in WRITTEN_BY_DRDECK:
        path = data_dir / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if name == SPOOL and stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
            continue
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            continue
        raise RestoreRefused(
            f"{where}: the base backup holds {name} as {_kind(path, info)}, which "
            "pg_basebackup never makes, and drdeck writes there as root: it was not "
            "restored, and the data directory was emptied again. Anyone who can write the "
            "repository could have put it there: look at who did, and restore from "
            "another base backup")


def _kind(path: Path, info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return f"a symbolic link to {os.readlink(path)!r}"
    if stat.S_ISREG(info.st_mode):
        return f"a file with {info.st_nlink} names (a hard link)"
    if stat.S_ISDIR(info.st_mode):
        return "a directory"
    return "a special file"


def empty_directory(path: Path) -> None:
    """A half-unpacked data directory must not look like a good one."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def configure(cluster: LocalCluster, target: Target, *, command: str, timeline: str) -> None:
    """Recovery settings, read last by the server, and recovery.signal."""
    for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        try:
            (cluster.data_dir / stale).unlink(missing_ok=True)  # a link itself, if one
        except OSError as exc:
            raise RestoreRefused(f"cannot remove {cluster.data_dir / stale} before the "
                                 f"recovery: {exc.strerror or exc}") from None
    settings: dict[str, Any] = {
        "restore_command": command,
        "recovery_target_action": "promote",
        "recovery_target_timeline": timeline or "latest",
        # a base backup taken from a delayed standby carries its delay ('1h'): recovery
        # would hold every commit that long, in the middle of an incident
        "recovery_min_apply_delay": 0,
        # the restored cluster must never archive its new timeline into the archive
        # it was restored from
        "archive_mode": "off",
        # where drdeck starts it, written down: a server started by hand (a failed
        # recovery finished with a plain `pg_ctl start`) comes up the same way, not on
        # the source's listen_addresses or a socket directory that may not exist here
        "port": cluster.port,
        "listen_addresses": LOOPBACK,
        # drdeck's own start passes its socket directory; written down only when it is
        # the data directory itself: a /tmp one may be gone when someone starts it later,
        # so that start listens on TCP alone
        "unix_socket_directories": str(cluster.socket_dir)
        if cluster.socket_dir == cluster.data_dir else "",
        "hot_standby": "on",
        "primary_conninfo": "",
    }
    settings.update(target.settings())
    cluster.configure(**settings)
    descriptor, _ = open_for_append(cluster.data_dir / "recovery.signal")
    try:
        account = server_account()
        if account is not None:
            os.fchown(descriptor, account.uid, account.gid)
    finally:
        os.close(descriptor)
    cluster.give_data_dir_to_server()


def hand_over(cluster: LocalCluster, command: str, notes: list[str] | None = None) -> str:
    """After a failed recovery, leave the data directory ready to be finished by hand.

    Its restore_command reads a spool that no feeder fills any more, so a restart could
    never get a segment: it is pointed at the archive instead (`command`, from
    tui.wal.restore_line: `drdeck wal fetch` with its own prefetcher). The recovery
    target and recovery.signal stay as they were. The message ends with the command.
    """
    cluster.configure(restore_command=command)
    return " ".join([
        f"The data directory {cluster.data_dir} is left as it is; its restore_command now "
        "fetches WAL from the archive itself (drdeck wal fetch).",
        *(f"{note}." for note in notes or []),
        f"Once it is promoted, remove {cluster.data_dir / SPOOL} (WAL fetched ahead).",
        f"Finish the recovery by hand with: {start_by_hand(cluster)}",
    ])


def start_by_hand(cluster: LocalCluster) -> str:
    """The command line that starts the server, as the account PostgreSQL accepts."""
    argv = [pg_bin("pg_ctl"), "-D", str(cluster.data_dir), "-l", str(cluster.log_file), "start"]
    account = server_account()
    if account is not None:  # we are root, and PostgreSQL refuses to run as root
        argv = ["runuser", "-u", account.name, "--", *argv]
    return shlex.join(argv)
