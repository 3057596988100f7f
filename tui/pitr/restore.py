"""Lay down a base backup and start a server that recovers to the target.

    store ──▶ sha256 ──▶ gpg --decrypt ──▶ tar -x into the new data directory

then recovery settings in postgresql.auto.conf (read last, so they beat the
copied postgresql.conf), recovery.signal, and the server started as the
`postgres` OS user. The restore_command only moves files out of a spool
directory that drdeck fills (see tui.wal.feeder).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.errors import PermanentFailure
from tui.pitr.basebackup import BaseManifest
from tui.pitr.target import Target
from tui.postgres.cluster import LocalCluster, server_account
from tui.snapshots.fetch import StoredItem, stream_object
from tui.snapshots.pipes import Reporter, reap

SPOOL = "drdeck.spool"


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
                            self.data_dir / "drdeck-recovery.log")


def check_data_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RestoreRefused(f"{path} is not empty: drdeck never restores over existing files. "
                             "Choose a new directory, or empty this one yourself")


def check_port(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise RestoreRefused(f"port {port} is in use on 127.0.0.1: choose another port "
                                 "for the restored server") from None


def prepare_data_dir(path: Path) -> None:
    """Create the (empty) data directory, owned by the server account, mode 0700."""
    check_data_dir(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    account = server_account()
    if account is not None:
        os.chown(path, account.uid, account.gid)


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
                      gpg_home: str | None) -> None:
    """Stream the base backup into `tar -x`; on any doubt, the directory is emptied again."""
    read_end, write_end = os.pipe()
    tar = await asyncio.create_subprocess_exec(
        "tar", "--extract", "--file=-", f"--directory={data_dir}", "--no-same-owner",
        stdin=read_end, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    os.close(read_end)
    item = StoredItem(base.object, base.stored_size, base.sha256_stored, base.encrypted)
    try:
        try:
            await stream_object(item, store, write_end, reporter, gpg_home)
        finally:
            os.close(write_end)
        _, errors = await tar.communicate()
        if tar.returncode != 0:
            raise RestoreRefused(f"tar could not unpack the base backup: "
                                 f"{errors.decode(errors='replace').strip()[-300:]}")
    except BaseException:
        await reap(tar)
        _empty(data_dir)
        raise


def _empty(path: Path) -> None:
    """A half-unpacked data directory must not look like a good one."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def configure(cluster: LocalCluster, target: Target, *, command: str, timeline: str) -> None:
    """Recovery settings, read last by the server, and recovery.signal."""
    for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (cluster.data_dir / stale).unlink(missing_ok=True)
    settings: dict[str, Any] = {
        "restore_command": command,
        "recovery_target_action": "promote",
        "recovery_target_timeline": timeline or "latest",
        # the restored cluster must never archive its new timeline into the archive
        # it was restored from
        "archive_mode": "off",
        "port": cluster.port,
        "hot_standby": "on",
        "primary_conninfo": "",
    }
    settings.update(target.settings())
    cluster.configure(**settings)
    signal = cluster.data_dir / "recovery.signal"
    signal.touch()
    account = server_account()
    if account is not None:
        os.chown(signal, account.uid, account.gid)
        cluster.give_data_dir_to_server()
