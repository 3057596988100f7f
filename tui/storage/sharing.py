"""Who owns what drdeck creates in a local repository, and with which mode.

A local repository is shared: the operator, root (cron), and the server's
archive_command, which runs `drdeck wal push` as the postgres OS user, all
write into it. One private directory made by the wrong user stops the archive,
and then pg_wal grows until the disk is full. So the repository's root
directory is the reference for everything drdeck creates below it:

- Owner and group: those of the root. As root, drdeck gives every new
  directory and file to the root's owner and group (fchown on the open
  descriptor, never through a path that could have become a symbolic link).
  Any other user's entries are its own, in the root's group.
- Directories: rwx for the owner, the root's group bits, no bits for others,
  and the root's setgid bit (so the group keeps being inherited). A root of
  0750 postgres:postgres gives 0750 postgres:postgres; 2770 gives 2770.
- Files: rw for the owner, read for the group when the root lets the group
  read, nothing for others: 0640 or 0600. Nobody needs to write a file: it is
  written once under a partial name and renamed; removing it needs only the
  directory.
- A root that does not exist yet is made by whoever writes first, private to
  them (0700, as before). Make it yourself when several users share it, e.g.
  `install -d -o postgres -g postgres -m 0750 /srv/backups`.

When the running user cannot keep that promise (it is not root, and neither
the root's owner nor a member of its group who can write there, or what it
creates could not reach the owner), the store refuses before writing anything,
naming the user, the path and what to change.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from .base import StorageError

KEEP = -1  # os.fchown: leave the owner or the group as it is


@dataclass(frozen=True)
class Sharing:
    """How an entry created under the repository root is owned and moded."""

    uid: int = KEEP
    gid: int = KEEP
    dir_mode: int = 0o700
    file_mode: int = 0o600

    def give(self, descriptor: int, *, directory: bool) -> None:
        """Apply owner, group and mode to a just-created entry, through its descriptor."""
        if self.uid != KEEP or self.gid != KEEP:
            os.fchown(descriptor, self.uid, self.gid)
        # after fchown: a chown may clear the setgid bit, and the umask narrowed mkdir's mode
        os.fchmod(descriptor, self.dir_mode if directory else self.file_mode)

    def owner_text(self) -> str:
        uid = os.geteuid() if self.uid == KEEP else self.uid
        gid = os.getegid() if self.gid == KEEP else self.gid
        return f"{_user(uid)}:{_group(gid)}"


def sharing_for(root: Path) -> Sharing:
    """The Sharing for entries under the existing directory `root`, or a StorageError
    naming who cannot write there and why, before anything is written."""
    try:
        info = root.stat()
    except OSError as error:
        raise StorageError(f"cannot use the repository {root}: "
                           f"{error.strerror or error}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StorageError(f"the repository path {root} is not a directory; "
                           "point the repository at a directory")
    mode = stat.S_IMODE(info.st_mode)
    uid = os.geteuid()
    if uid == 0:
        # root can give everything to the root's owner, and must: root's own 0700
        # directory is exactly what locks the archive out
        return _modes(mode, info.st_uid, info.st_gid)
    problem = _why_not(root, info, uid)
    if problem:
        raise StorageError(problem)
    # a member of the root's group can give its entries that group (chgrp): without a
    # setgid root they would get the user's primary group, which the others lack
    gid = info.st_gid if info.st_gid in _my_groups() else KEEP
    return _modes(mode, KEEP, gid, setgid_sticks=gid != KEEP)


def _modes(root_mode: int, uid: int, gid: int, *, setgid_sticks: bool = True) -> Sharing:
    group = root_mode & 0o070
    # setgid only where it will stay: fchmod drops it for a user outside the group
    setgid = root_mode & stat.S_ISGID if setgid_sticks else 0
    return Sharing(uid, gid, dir_mode=0o700 | group | setgid,
                   file_mode=0o600 | (group & 0o040))


def _why_not(root: Path, info: os.stat_result, uid: int) -> str | None:
    """Why a non-root user cannot write into `root` so that the others keep access."""
    me, owner, group = _user(uid), _user(info.st_uid), _group(info.st_gid)
    mode = stat.S_IMODE(info.st_mode)
    mine = info.st_gid in _my_groups()
    group_writes = mode & 0o030 == 0o030
    owner_in_group = info.st_uid == 0 or info.st_gid in _groups_of(info.st_uid)
    head = (f"cannot write into {root} as {me}: it belongs to {owner}:{group} "
            f"with mode {mode:04o}")
    if info.st_uid == uid:
        if mode & 0o300 != 0o300:
            return f"{head}; give its owner write access: chmod u+rwx {root}"
        if mode & 0o070 and not mine:
            return (f"{head}; what {me} creates there could not be given to group {group}: "
                    f"add {me} to group {group}, or run as root")
        return None
    if mine and group_writes and owner_in_group:
        return None  # new entries are ours, in the root's group, which the owner is in
    if mine and group_writes:
        return (f"{head}; {owner} is not in group {group}, so it could not write what "
                f"{me} creates there: run as {owner} or root")
    if mine:
        return f"{head}; run as {owner} or root, or let group {group} write: chmod g+rwx {root}"
    if group_writes and owner_in_group:
        return f"{head}; run as {owner} or root, or add {me} to group {group}"
    # writable for others maybe, but what we made would lock the owner out
    return f"{head}; run as {owner} or root"


def describe_denied(root: Path, path: Path, *, writing: bool) -> str | None:
    """For a "permission denied" on `path` (under `root`, or the root itself): the entry
    that stops the running user, its owner and mode, and, inside the repository, how to
    give it the root's owner and group. None when no mode bit explains it (an ACL, a
    read-only export...)."""
    try:
        base, parts = root, path.relative_to(root).parts
    except ValueError:
        parts = ()
    if not parts:  # the root itself (or a place outside it): look down from the top
        base, parts = Path(path.anchor), path.relative_to(path.anchor).parts
    folders = [base.joinpath(*parts[:n]) for n in range(len(parts))]  # base .. parent
    if not folders:
        return None
    blocker = next((f for f in folders if not os.access(f, os.X_OK, effective_ids=True)),
                   None)
    if blocker is None:
        if writing and not os.access(folders[-1], os.W_OK | os.X_OK, effective_ids=True):
            blocker = folders[-1]
        elif not writing and not os.access(path, os.R_OK, effective_ids=True):
            blocker = path
    try:
        info = blocker.stat() if blocker is not None else None
    except OSError:
        info = None
    if blocker is None or info is None:
        return None
    text = (f"as {_user(os.geteuid())}, {blocker} belongs to {_user(info.st_uid)}:"
            f"{_group(info.st_gid)} with mode {stat.S_IMODE(info.st_mode):04o}")
    top = root.stat() if root in blocker.parents else None
    if top is not None and (info.st_uid, info.st_gid) != (top.st_uid, top.st_gid):
        # the mark of an older drdeck that made it as root: hand it back
        text += (f"; give it the repository's owner and group: chown -R "
                 f"{_user(top.st_uid)}:{_group(top.st_gid)} {blocker}")
    return text


def _my_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def _groups_of(uid: int) -> set[int]:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return set()
    return set(os.getgrouplist(entry.pw_name, entry.pw_gid))


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
