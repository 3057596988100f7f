"""A pgBackRest stanza's WAL by name, as tui.sources.base.Source.wal_fetcher gives it.

The files are read with `pgbackrest repo-get`, which decrypts what an encrypted
repository holds, and are decompressed here by their extension. `archive-get` is
not used: it checks the files against a local data directory the stanza's
configuration names, which the machine reading the archive may not have.
"""

from __future__ import annotations

import json
import threading
import time

from tui.sources.pgbackrest import (
    _ARCHIVED,
    _HISTORY_FILE,
    Pgbackrest,
    PgbackrestError,
    decompress,
    read_info,
)
from tui.wal.names import SEGMENT

RELIST_AFTER_S = 1.0  # a name not found is looked for again at most this often


class StanzaWal:
    """The stanza's WAL files, found by listing its archives: all of them once, then
    the directory of a name not found yet (archiving goes on during a restore)."""

    def __init__(self, pgbackrest: Pgbackrest) -> None:
        self.pgbackrest = pgbackrest
        self._where: dict[str, tuple[int, str, str]] = {}  # name -> (repo, archive id, path)
        self._archives: list[tuple[int, str]] | None = None
        self._looked_at: dict[str, float] = {}
        self._lock = threading.Lock()  # the feeder fetches from several threads

    def fetch(self, name: str) -> bytes | None:
        found = self._find(name)
        if found is None:
            return None
        repo, archive_id, path = found
        raw = self.pgbackrest.run("repo-get", f"--repo={repo}", self._repo_path(archive_id, path),
                                  what=f"pgbackrest repo-get (reading {name})")
        plain = decompress(raw, path)
        if plain is None:
            tool = {"lz4": "lz4", "zst": "zstd"}.get(path.rsplit(".", 1)[-1], "?")
            raise PgbackrestError(f"{path} in stanza {self.pgbackrest.stanza} is compressed "
                                  f"with {tool}, and this machine has no {tool} program to "
                                  "decompress it: install it")
        return plain

    def _repo_path(self, archive_id: str, path: str = "") -> str:
        return f"archive/{self.pgbackrest.stanza}/{archive_id}" + (f"/{path}" if path else "")

    def _find(self, name: str) -> tuple[int, str, str] | None:
        with self._lock:
            if self._archives is None:
                info = read_info(self.pgbackrest)
                self._archives = [(a.repo, a.id) for a in info.archives]
                for repo, archive_id in self._archives:
                    self._file(repo, archive_id, self._list(repo, archive_id, "", True))
            elif name not in self._where:
                now = time.monotonic()
                if now - self._looked_at.get(name, -RELIST_AFTER_S) >= RELIST_AFTER_S:
                    self._looked_at[name] = now
                    # a segment lives in the directory of its first 16 characters; a
                    # history file at the archive's top
                    folder = name[:16] if SEGMENT.fullmatch(name) else ""
                    for repo, archive_id in self._archives:
                        listed = self._list(repo, archive_id, folder, False)
                        self._file(repo, archive_id,
                                   [f"{folder}/{p}" if folder else p for p in listed])
            return self._where.get(name)

    def _list(self, repo: int, archive_id: str, folder: str, recurse: bool) -> list[str]:
        try:
            raw = self.pgbackrest.run(
                "repo-ls", f"--repo={repo}", "--output=json",
                *(["--recurse"] if recurse else []),
                self._repo_path(archive_id, folder), what="pgbackrest repo-ls (listing WAL)")
            entries = json.loads(raw)
            return [path for path, meta in entries.items() if meta.get("type") == "file"]
        except (ValueError, AttributeError) as exc:
            raise PgbackrestError(f"pgbackrest repo-ls printed something drdeck cannot read "
                                  f"({exc})") from None

    def _file(self, repo: int, archive_id: str, paths: list[str]) -> None:
        for path in paths:
            file_name = path.rsplit("/", 1)[-1]
            match = _ARCHIVED.fullmatch(file_name) or _HISTORY_FILE.fullmatch(file_name)
            if match:
                self._where.setdefault(match[1], (repo, archive_id, path))
