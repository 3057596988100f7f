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
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator
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
        # listing and hiding every good object beside it.
        keys = sorted(key for key, _ in self._walk(prefix)
                      if not _is_partial(key) and is_usable_key(key))
        for key in keys:
            stored = self.stat(key)
            if stored is not None:  # None: deleted by someone else since the walk
                yield stored

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise self._error("read", path, error) from None
        if not stat.S_ISREG(info.st_mode):
            return None
        return StoredObject(key, info.st_size, _utc(info.st_mtime))

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except OSError as error:
            raise self._read_error(key, path, error) from None

    def iter_chunks(
        self,
        key: str,
        *,
        start: int = 0,
        chunk_size: int = 1 << 20,
        on_retry: RetryCallback | None = None,  # a local read has nothing to retry
    ) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except OSError as error:
            raise self._read_error(key, path, error) from None
        with handle:
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

    # --- writing ------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> StoredObject:
        with LocalObjectWriter(self, key, if_absent=if_absent) as writer:
            writer.write(data)
            return writer.commit()

    def open_writer(self, key: str, *, storage_class: str | None = None) -> LocalObjectWriter:
        # storage_class: see set_storage_class.
        return LocalObjectWriter(self, key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise self._error("delete", path, error) from None

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
        for relative, path in self._walk(prefix, partial_names=True):
            folder, _, name = relative.rpartition("/")
            match = _PARTIAL.match(name)
            if match is None:
                continue
            try:
                info = path.stat()
            except FileNotFoundError:  # committed or aborted meanwhile
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
        path = self.root / upload.upload_id
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise _error("delete", path, error) from None

    # --- helpers ------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _read_error(self, key: str, path: Path, error: OSError) -> StorageError:
        if isinstance(error, FileNotFoundError | NotADirectoryError):
            return ObjectNotFound(f"no object {key!r} in {self.description}")
        return self._error("read", path, error)

    def _walk(self, prefix: str, partial_names: bool = False) -> Iterator[tuple[str, Path]]:
        """(key, path) of every file whose key starts with ``prefix``.

        With ``partial_names``, partial files also match on the name they will
        get: prefix "a/b" finds the partial file of "a/b.json", ".b.json.partial-...".
        """
        folder, _, stem = check_prefix(prefix).rpartition("/")
        top = self.root / folder if folder else self.root
        base = f"{folder}/" if folder else ""

        def wanted(name: str) -> bool:
            match = _PARTIAL.match(name) if partial_names else None
            return name.startswith(stem) or (match is not None and match["name"].startswith(stem))

        try:
            with os.scandir(top) as entries:
                level = [entry for entry in entries if wanted(entry.name)]
        except (FileNotFoundError, NotADirectoryError):
            if self.root.exists() and not self.root.is_dir():
                raise StorageError(f"the repository path {self.root} is not a directory; "
                                   "point the repository at a directory") from None
            return  # no root yet (nothing written) or no such folder: nothing there
        except OSError as error:
            raise _error("list", top, error) from None
        try:
            for entry in level:
                if entry.is_dir(follow_symlinks=False):
                    yield from _walk_all(Path(entry.path), f"{base}{entry.name}/")
                elif entry.is_file():
                    yield f"{base}{entry.name}", Path(entry.path)
        except OSError as error:
            raise _error("list", Path(error.filename or top), error) from None

    def _make_dirs(self, folder: Path) -> Sharing:
        """mkdir -p for an object's folder; how the object itself is to be owned.

        A missing root (and its missing parents) is made private to the running user,
        as it always was; below the root, each new level follows the root (sharing.py).
        The check that the running user may write there comes first: a refusal leaves
        nothing behind.
        """
        try:
            if not self.root.is_dir():
                self._make_private(self.root)
        except OSError as error:  # an ancestor we may not look into
            raise self._error("create directory", self.root, error) from None
        sharing = sharing_for(self.root)
        wanted, missing = folder, []
        try:
            while not folder.exists():
                missing.append(folder)
                folder = folder.parent
        except OSError as error:  # a level we may not even look into
            raise self._error("create directory", folder, error) from None
        self._refuse_links(folder)  # before anything is made below a level that is a link
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:  # another writer made it first, and gave it away
                continue
            except OSError as error:
                raise self._error("create directory", path, error) from None
            try:
                # by descriptor, not following links: someone who can write the parent
                # must not get a chown of whatever a symlink put in its place points at
                descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                try:
                    sharing.give(descriptor, directory=True)
                finally:
                    os.close(descriptor)
            except OSError as error:
                with contextlib.suppress(OSError):
                    path.rmdir()
                raise _error(f"give to {sharing.owner_text()}", path, error) from None
        self._refuse_links(wanted)
        return sharing

    def _refuse_links(self, folder: Path) -> None:
        """Every level from the root down to `folder` is a directory, not a symbolic link.

        The levels below the root belong to the repository's owner (the server's
        account, say): a link planted there must not lead a root drdeck to write, and
        give away, a file elsewhere. (A link swapped in after this look is not seen.)
        """
        try:
            relative = folder.relative_to(self.root)
        except ValueError:
            return
        path = self.root
        for part in relative.parts:
            path = path / part
            try:
                info = os.lstat(path)
            except OSError as error:
                raise self._error("create directory", path, error) from None
            if not stat.S_ISDIR(info.st_mode):
                raise StorageError(
                    f"refusing to write through {path}: it is "
                    f"{'a symbolic link' if stat.S_ISLNK(info.st_mode) else 'not a directory'}"
                    " inside the repository, which drdeck never makes; remove it (and look "
                    "at who could put it there)")

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
    """Writes into ``.<name>.partial-<random>`` beside the target; renames it on commit."""

    def __init__(self, store: LocalStore, key: str, *, if_absent: bool = False):
        self.key = check_key(key)
        self.path = store.root / key
        self.if_absent = if_absent
        self.bytes_written = 0
        self._committed = False
        sharing = store._make_dirs(self.path.parent)
        self._partial = self.path.with_name(f".{self.path.name}.partial-{secrets.token_hex(8)}")
        try:
            descriptor = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        except OSError as error:
            raise store._error("write", self.path, error) from None
        try:
            sharing.give(descriptor, directory=False)
        except OSError as error:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                self._partial.unlink()
            raise _error(f"give to {sharing.owner_text()}", self._partial, error) from None
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
        try:
            # Durable before visible: the bytes reach the disk before the rename.
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if self.if_absent:
                _create_only(self._partial, self.path)
            else:
                os.replace(self._partial, self.path)
        except FileExistsError:
            self.abort()
            raise ObjectExists(f"{self.path} already exists") from None
        except OSError as error:
            self.abort()
            raise _error("write", self.path, error) from None
        try:
            # ...and the rename reaches the disk before we say "stored".
            _fsync_directory(self.path.parent)
            info = self.path.stat()
        except OSError as error:
            # The caller will treat the object as not stored: do not leave it behind.
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise _error("write", self.path, error) from None
        self._committed = True
        return StoredObject(self.key, info.st_size, _utc(info.st_mtime))

    def abort(self) -> None:
        if self._committed:
            return
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._partial.unlink()

    def __enter__(self) -> LocalObjectWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._committed:
            self.abort()


def _walk_all(top: Path, base: str) -> Iterator[tuple[str, Path]]:
    for folder, _dirs, files in os.walk(top, onerror=_raise):
        relative = Path(folder).relative_to(top).as_posix()
        inner = "" if relative == "." else f"{relative}/"
        for name in files:
            yield f"{base}{inner}{name}", Path(folder, name)


def _raise(error: OSError) -> None:
    # os.walk skips unreadable folders by default; a backup hidden that way would
    # look missing, so stop and say which folder could not be read. A folder
    # removed since its parent was read simply has nothing in it.
    if not isinstance(error, FileNotFoundError):
        raise error


def _is_partial(key: str) -> bool:
    return _PARTIAL.match(key.rpartition("/")[2]) is not None


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
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


def _create_only(partial: Path, path: Path) -> None:
    """Move `partial` to `path` unless `path` exists (FileExistsError)."""
    try:
        # link() fails if the name exists, however close the other writer was
        os.link(partial, path)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # a file system without hard links (vfat, FUSE mounts of object stores): look,
        # then rename; a writer in that instant is not seen, as before create-only writes
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(partial, path)
        return
    os.unlink(partial)
