"""A store in a local directory (or a mounted one: NFS, a USB disk).

Objects are plain files under the root, so an operator can inspect them with ls
and copy them with cp. Writes go to a hidden partial file beside the target and
are renamed into place on commit: a reader, a crash or a full disk never leaves
a half-written file under the real name.

The directory is shared (the operator, root from cron, archive_command as
postgres): what drdeck creates takes the owner, group and mode bits of the
repository's root directory, never anything for "other" (these are database
backups), and a user who cannot keep it usable for the others is refused
before it writes. The rule, and why, is in tui/storage/sharing.py.

Everything below the root belongs to whoever owns the root (the server's
account, say), and drdeck may run as root: so no level below the root is ever
followed if it is a symbolic link, for reading, writing or deleting, and only a
regular file is an object. Each level is opened by descriptor from the one
above it, so a link swapped in between a look and a use is refused too. The
root itself may be a link: the configuration chose it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from tui.units import format_bytes

from .base import (
    IncompleteUpload,
    ObjectExists,
    ObjectNotFound,
    RetryCallback,
    StorageError,
    StoredObject,
    check_key,
    check_prefix,
    is_usable_key,
)
from .sharing import Sharing, describe_denied, sharing_for

# What a partial file or a new directory has until it is given its owner and mode:
# nothing is ever more open, even for an instant, than it will end up.
FILE_MODE = 0o600
DIR_MODE = 0o700

# ".<name>.partial-<16 hex>": hidden, and impossible to mistake for a finished object.
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-[0-9a-f]{16}$")

# A level is walked through with O_PATH (no read permission needed, as for a path),
# listed with O_RDONLY; neither follows a link (O_NOFOLLOW|O_DIRECTORY: ENOTDIR for one).
_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
_LEVEL = _WALK | os.O_NOFOLLOW
_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under an object's name must not hang the reader
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LocalStore:
    """Objects as files under ``root``; the root is created on the first write."""

    parallel_reads = 1  # small files from a local disk: threads cost more than they overlap

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().absolute()
        self.description = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.description!r})"

    def location(self, key: str) -> str:
        return str(self._path(key))

    # --- reading ------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        # Keys sort as strings ("a-b" before "a/b"), not in directory-walk order,
        # so gather the names first: they are small next to the files they name.
        # A file whose name no key can have (a backslash, a control character) was not
        # written through a store: skipped, like a stray file, rather than failing the
        # listing and hiding every good object beside it. So is anything that is not a
        # regular file (a symbolic link, a FIFO): no store write makes one.
        found = sorted((key, info) for key, info in self._walk(prefix)
                       if not _is_partial(key) and is_usable_key(key))
        for key, info in found:
            yield StoredObject(key, info.st_size, _utc(info.st_mtime))

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        *folders, name = key.split("/")
        try:
            folder = self._folder(folders, "read")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise self._error("read", Path(error.filename or path), error) from None
        try:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise self._error("read", path, error) from None
        finally:
            os.close(folder)
        if stat.S_ISLNK(info.st_mode):
            raise self._refusal("read", path, "a symbolic link")
        if not stat.S_ISREG(info.st_mode):
            return None
        return StoredObject(key, info.st_size, _utc(info.st_mtime))

    def read_bytes(self, key: str) -> bytes:
        with self._open_object(key) as handle:
            try:
                return handle.read()
            except OSError as error:
                raise self._error("read", self._path(key), error) from None

    def iter_chunks(
        self,
        key: str,
        *,
        start: int = 0,
        chunk_size: int = 1 << 20,
        on_retry: RetryCallback | None = None,  # a local read has nothing to retry
    ) -> Iterator[bytes]:
        path = self._path(key)
        with self._open_object(key) as handle:
            try:
                size = os.fstat(handle.fileno()).st_size
                if start > size:
                    raise StorageError(f"cannot read {path} from byte {start:,}: "
                                       f"it has only {size:,} bytes")
                handle.seek(start)
                while chunk := handle.read(chunk_size):
                    yield chunk
            except OSError as error:
                raise _error("read", path, error) from None

    def _open_object(self, key: str) -> BinaryIO:
        """The object's file, open for reading: a regular file reached through no link."""
        path = self._path(key)
        *folders, name = key.split("/")
        try:
            folder = self._folder(folders, "read")
        except OSError as error:
            raise self._read_error(key, Path(error.filename or path), error) from None
        try:
            descriptor = os.open(name, _READ, dir_fd=folder)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise self._refusal("read", path, "a symbolic link") from None
            raise self._read_error(key, path, error) from None
        finally:
            os.close(folder)
        try:
            mode = os.fstat(descriptor).st_mode
            if not stat.S_ISREG(mode):
                raise self._refusal("read", path, _kind(mode))
            os.set_blocking(descriptor, True)
            return os.fdopen(descriptor, "rb")
        except BaseException:
            os.close(descriptor)
            raise

    # --- writing ------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> StoredObject:
        with LocalObjectWriter(self, key, if_absent=if_absent) as writer:
            writer.write(data)
            return writer.commit()

    def open_writer(self, key: str, *, storage_class: str | None = None) -> LocalObjectWriter:
        # storage_class: see set_storage_class.
        return LocalObjectWriter(self, key)

    def delete(self, key: str) -> None:
        self._unlink(check_key(key), "delete")

    def set_storage_class(self, key: str, storage_class: str) -> None:
        # A directory has one kind of storage. Accepting the call (for an object
        # that exists) lets retention treat every repository alike; the config
        # loader already refuses monthly_storage_class for a local repository.
        if self.stat(key) is None:
            raise ObjectNotFound(f"no object {key!r} in {self.description}")

    # --- partial files ------------------------------------------------------------

    def incomplete_uploads(self, prefix: str = "") -> list[IncompleteUpload]:
        # The partial file of a write still under way shows here too; its time
        # (last written) lets an operator tell a crashed backup from a running one.
        uploads = []
        for relative, info in self._walk(prefix, partial_names=True):
            folder, _, name = relative.rpartition("/")
            match = _PARTIAL.match(name)
            if match is None:
                continue
            uploads.append(IncompleteUpload(
                key=f"{folder}/{match['name']}" if folder else match["name"],
                started=_utc(info.st_mtime),
                detail=f"partial file, {format_bytes(info.st_size)}",
                upload_id=relative,
            ))
        return sorted(uploads, key=lambda upload: (upload.key, upload.upload_id))

    def abort_incomplete(self, upload: IncompleteUpload) -> None:
        # upload_id names a file to delete: accept only a partial file, so a
        # hand-made IncompleteUpload cannot remove a finished object.
        if not _is_partial(check_key(upload.upload_id)):
            raise StorageError(f"{upload.upload_id!r} is not a partial file in {self.description}")
        self._unlink(upload.upload_id, "delete")

    # --- helpers ------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _folder(self, parts: Sequence[str], verb: str, flags: int = _LEVEL) -> int:
        """A descriptor of root/parts: each level below the root opened from the one above,
        never through a symbolic link (a StorageError saying so). Other failures raise
        the OSError, its filename the level that failed."""
        path = self.root
        try:
            descriptor = os.open(self.root, _WALK if parts else flags & ~os.O_NOFOLLOW)
        except OSError as error:
            error.filename = str(path)
            raise
        try:
            for depth, part in enumerate(parts, 1):
                path = path / part
                try:
                    inner = os.open(part, flags if depth == len(parts) else _LEVEL,
                                    dir_fd=descriptor)
                except NotADirectoryError as error:
                    if _is_link(part, descriptor):
                        raise self._refusal(verb, path, "a symbolic link") from None
                    error.filename = str(path)
                    raise
                except OSError as error:
                    error.filename = str(path)
                    raise
                os.close(descriptor)
                descriptor = inner
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor

    def _unlink(self, key: str, verb: str) -> None:
        path = self.root / key
        *folders, name = key.split("/")
        try:
            folder = self._folder(folders, verb)
        except (FileNotFoundError, NotADirectoryError):
            return  # no such folder: nothing to delete
        except OSError as error:
            raise self._error(verb, Path(error.filename or path), error) from None
        try:
            os.unlink(name, dir_fd=folder)  # a link itself is removed, never what it names
        except FileNotFoundError:
            pass
        except OSError as error:
            raise self._error(verb, path, error) from None
        finally:
            os.close(folder)
        if folders:
            self._remove_if_empty(folders)

    def _remove_if_empty(self, folders: Sequence[str]) -> None:
        """The folder a deleted object was in, once it holds nothing: a deleted base
        backup leaves no empty directory of its name. rmdir refuses a folder something
        was written into meanwhile, and a symbolic link (ENOTDIR)."""
        try:
            parent = self._folder(folders[:-1], "delete")
        except (OSError, StorageError):
            return
        try:
            os.rmdir(folders[-1], dir_fd=parent)
        except OSError:
            pass  # not empty, gone already, or not ours to remove
        finally:
            os.close(parent)

    def _refusal(self, verb: str, path: Path, what: str) -> StorageError:
        return StorageError(
            f"refusing to {verb} {path}: it is {what} inside the repository, which drdeck "
            "never makes; remove it (and look at who could put it there)")

    def _read_error(self, key: str, path: Path, error: OSError) -> StorageError:
        if isinstance(error, FileNotFoundError | NotADirectoryError):
            return ObjectNotFound(f"no object {key!r} in {self.description}")
        return self._error("read", path, error)

    def _walk(self, prefix: str,
              partial_names: bool = False) -> Iterator[tuple[str, os.stat_result]]:
        """(key, lstat) of every regular file whose key starts with ``prefix``.

        With ``partial_names``, partial files also match on the name they will
        get: prefix "a/b" finds the partial file of "a/b.json", ".b.json.partial-...".
        """
        folder, _, stem = check_prefix(prefix).rpartition("/")
        parts = folder.split("/") if folder else []
        base = f"{folder}/" if folder else ""

        def wanted(name: str) -> bool:
            match = _PARTIAL.match(name) if partial_names else None
            return name.startswith(stem) or (match is not None and match["name"].startswith(stem))

        try:
            top = self._folder(parts, "list", _LIST)
        except (FileNotFoundError, NotADirectoryError):
            if self.root.exists() and not self.root.is_dir():
                raise StorageError(f"the repository path {self.root} is not a directory; "
                                   "point the repository at a directory") from None
            return  # no root yet (nothing written) or no such folder: nothing there
        except OSError as error:
            raise _error("list", Path(error.filename or self.root), error) from None
        try:
            yield from _files(top, self.root / folder, base, wanted)
        finally:
            os.close(top)

    def _make_dirs(self, folders: Sequence[str]) -> tuple[int, Sharing]:
        """mkdir -p for an object's folder: (a descriptor of it, how the object is to be
        owned).

        A missing root (and its missing parents) is made private to the running user,
        as it always was; below the root, each new level follows the root (sharing.py).
        The check that the running user may write there comes first: a refusal leaves
        nothing behind. Each level is made and entered by descriptor, never through a
        symbolic link.
        """
        try:
            if not self.root.is_dir():
                self._make_private(self.root)
        except OSError as error:  # an ancestor we may not look into
            raise self._error("create directory", self.root, error) from None
        sharing = sharing_for(self.root)
        path = self.root
        try:
            descriptor = os.open(self.root, _WALK)
        except OSError as error:
            raise self._error("create directory", path, error) from None
        try:
            for part in folders:
                path = path / part
                inner = self._enter_or_make(descriptor, part, path, sharing)
                os.close(descriptor)
                descriptor = inner
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor, sharing

    def _enter_or_make(self, parent: int, name: str, path: Path, sharing: Sharing) -> int:
        """A descriptor of the folder `name` in `parent`, made and given away first if
        missing."""
        try:
            made = False
            try:
                os.mkdir(name, DIR_MODE, dir_fd=parent)
                made = True
            except FileExistsError:  # there already, or another writer made it first
                pass
            try:
                inner = os.open(name, _LIST if made else _LEVEL, dir_fd=parent)
            except NotADirectoryError:
                what = "a symbolic link" if _is_link(name, parent) else "not a directory"
                raise StorageError(
                    f"refusing to write through {path}: it is {what} inside the repository, "
                    "which drdeck never makes; remove it (and look at who could put it "
                    "there)") from None
            if made:
                try:
                    # by descriptor: someone who can write the parent must not get a chown
                    # of whatever a symbolic link put in its place points at
                    sharing.give(inner, directory=True)
                except OSError as error:
                    os.close(inner)
                    with contextlib.suppress(OSError):
                        os.rmdir(name, dir_fd=parent)
                    raise _error(f"give to {sharing.owner_text()}", path, error) from None
            return inner
        except OSError as error:
            raise self._error("create directory", path, error) from None

    def _make_private(self, folder: Path) -> None:
        """The root and its missing parents, 0700 at every new level (os.makedirs
        gives the mode to the last only)."""
        if folder.exists() and not folder.is_dir():
            raise StorageError(f"the repository path {folder} is not a directory; "
                               "point the repository at a directory")
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                pass
            except OSError as error:
                raise self._error("create directory", path, error) from None

    def _error(self, action: str, path: Path, error: OSError) -> StorageError:
        """_error, and on a refusal the entry that refuses us, and how to fix it."""
        if error.errno in (errno.EACCES, errno.EPERM):
            detail = describe_denied(self.root, path, writing=action != "read")
            if detail:
                return StorageError(f"cannot {action} {path}: "
                                    f"{error.strerror or error} ({detail})")
        return _error(action, path, error)


class LocalObjectWriter:
    """Writes into ``.<name>.partial-<random>`` beside the target; renames it on commit.

    Every step happens in the object's folder through one descriptor of it, taken
    without following a link: the partial file, the rename, the fsync.
    """

    def __init__(self, store: LocalStore, key: str, *, if_absent: bool = False):
        self.key = check_key(key)
        self.path = store.root / key
        self.if_absent = if_absent
        self.bytes_written = 0
        self._committed = False
        *folders, self._name = key.split("/")
        self._folder, sharing = store._make_dirs(folders)
        self._partial = f".{self._name}.partial-{secrets.token_hex(8)}"
        try:
            descriptor = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE,
                                 dir_fd=self._folder)
        except OSError as error:
            self._close_folder()
            raise store._error("write", self.path, error) from None
        try:
            sharing.give(descriptor, directory=False)
        except OSError as error:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                os.unlink(self._partial, dir_fd=self._folder)
            self._close_folder()
            raise _error(f"give to {sharing.owner_text()}", self.path.with_name(self._partial),
                         error) from None
        self._file: BinaryIO | None = os.fdopen(descriptor, "wb")

    def write(self, data: bytes) -> None:
        if self._file is None:
            state = "committed" if self._committed else "aborted"
            raise StorageError(f"cannot write {self.path}: the write was already {state}")
        try:
            self._file.write(data)
        except OSError as error:
            self.abort()
            raise _error("write", self.path, error) from None
        self.bytes_written += len(data)

    def commit(self) -> StoredObject:
        if self._file is None:
            state = "committed" if self._committed else "aborted"
            raise StorageError(f"cannot commit {self.path}: the write was already {state}")
        folder = self._folder
        try:
            # Durable before visible: the bytes reach the disk before the rename.
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if self.if_absent:
                _create_only(self._partial, self._name, folder)
            else:
                os.replace(self._partial, self._name, src_dir_fd=folder, dst_dir_fd=folder)
        except FileExistsError:
            self.abort()
            raise ObjectExists(f"{self.path} already exists") from None
        except OSError as error:
            self.abort()
            raise _error("write", self.path, error) from None
        try:
            # ...and the rename reaches the disk before we say "stored".
            _fsync_directory(folder)
            info = os.stat(self._name, dir_fd=folder, follow_symlinks=False)
        except OSError as error:
            # The caller will treat the object as not stored: do not leave it behind.
            with contextlib.suppress(OSError):
                os.unlink(self._name, dir_fd=folder)
            self._close_folder()
            raise _error("write", self.path, error) from None
        self._committed = True
        self._close_folder()
        return StoredObject(self.key, info.st_size, _utc(info.st_mtime))

    def abort(self) -> None:
        if self._committed:
            return
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._folder is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._partial, dir_fd=self._folder)
        self._close_folder()

    def _close_folder(self) -> None:
        if self._folder is not None:
            os.close(self._folder)
            self._folder = None

    def __enter__(self) -> LocalObjectWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._committed:
            self.abort()


def _files(descriptor: int, path: Path, base: str,
           wanted=lambda name: True) -> Iterator[tuple[str, os.stat_result]]:
    """(key, lstat) of every regular file below the open folder `descriptor`, entering
    each subfolder by descriptor and never through a link."""
    try:
        with os.scandir(descriptor) as listing:
            entries = [entry.name for entry in listing if wanted(entry.name)]
    except OSError as error:
        raise _error("list", path, error) from None
    for name in entries:
        try:
            info = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
        except FileNotFoundError:  # removed since the listing
            continue
        except OSError as error:
            raise _error("list", path / name, error) from None
        if stat.S_ISREG(info.st_mode):
            yield f"{base}{name}", info
        elif stat.S_ISDIR(info.st_mode):
            try:
                inner = os.open(name, _LIST, dir_fd=descriptor)
            except (FileNotFoundError, NotADirectoryError):  # removed or swapped since
                continue
            except OSError as error:
                # a folder we may not read would hide the backups in it: say which
                raise _error("list", path / name, error) from None
            try:
                yield from _files(inner, path / name, f"{base}{name}/")
            finally:
                os.close(inner)


def _is_link(name: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _is_partial(key: str) -> bool:
    return _PARTIAL.match(key.rpartition("/")[2]) is not None


def _fsync_directory(folder: int) -> None:
    descriptor = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


_ADVICE = {
    errno.EACCES: "check the owner and permissions of the repository directory",
    errno.EPERM: "check the owner and permissions of the repository directory",
    errno.ENOSPC: "free some space or point the repository at a bigger disk",
    errno.EDQUOT: "free some space or raise the quota",
    errno.EROFS: "the file system is mounted read-only",
}


def _error(action: str, path: Path, error: OSError) -> StorageError:
    """One line naming the file, what failed and, where we know it, what to do."""
    reason = error.strerror or str(error)
    advice = _ADVICE.get(error.errno or 0)
    return StorageError(f"cannot {action} {path}: {reason}" + (f"; {advice}" if advice else ""))


def _create_only(partial: str, name: str, folder: int) -> None:
    """Move `partial` to `name` (both in `folder`) unless `name` exists (FileExistsError)."""
    try:
        # link() fails if the name exists, however close the other writer was
        os.link(partial, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # a file system without hard links (vfat, FUSE mounts of object stores): look,
        # then rename; a writer in that instant is not seen, as before create-only writes
        try:
            os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            os.replace(partial, name, src_dir_fd=folder, dst_dir_fd=folder)
            return
        raise FileExistsError(errno.EEXIST, "exists", name) from None
    os.unlink(partial, dir_fd=folder)
