"""Is there room for the restore? Checked in the pre-flight, per disk, before a byte is
fetched: a disk that fills up an hour into an unpack costs the hour, and leaves a data
directory half-written.

What a restore writes, and where:
- the data directory: the base backup's data directory, unpacked (its tar's size), and
  the WAL fed ahead to the recovering server (`prefetch` segments, in its spool);
- each tablespace's new directory: that tablespace, unpacked;
- for an incremental chain, the staging directory beside the data directory as well:
  every backup of the chain unpacked at once (tui.pitr.incremental), while the combined
  result, the size of the full backup or so, goes where a plain restore would put it.

Places on one disk (one st_dev) add up. A path that does not exist yet is measured at
the nearest directory above it that does, which is where it will be made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tui.pitr.basebackup import BaseManifest
from tui.pitr.restore import RestoreRefused
from tui.pitr.tablespaces import staging_home
from tui.units import format_bytes


def needed(chain: list[BaseManifest], data_dir: Path, places: dict[int, Path],
           wal_ahead: int) -> list[tuple[Path, int, str]]:
    """(path, bytes, what) for everything the restore writes; `chain` is the backup alone,
    or its chain oldest first (its full backup's sizes stand for the combined result)."""
    full = chain[0]
    wants = [(data_dir, full.plaintext_size + wal_ahead,
              "the data directory and the WAL fed ahead")]
    sizes = {t.oid: t.plaintext_size for t in full.tablespaces}
    for tablespace in chain[-1].tablespaces:
        wants.append((places[tablespace.oid],
                      max(sizes.get(tablespace.oid, 0), tablespace.plaintext_size),
                      f"tablespace {tablespace.name}"))
    if len(chain) > 1:
        unpacked = sum(b.plaintext_size + sum(t.plaintext_size for t in b.tablespaces)
                       for b in chain)
        wants.append((staging_home(data_dir), unpacked,
                      f"the {len(chain)} backups of the chain, unpacked to be combined"))
    return wants


def check_room(wants: list[tuple[Path, int, str]]) -> str:
    """A line saying what fits where; RestoreRefused naming the disk, the need and the way out."""
    disks: dict[int, tuple[Path, int, list[str]]] = {}
    for path, size, what in wants:
        existing = _existing(path)
        device = os.stat(existing).st_dev
        where, total, whats = disks.get(device, (existing, 0, []))
        disks[device] = (where, total + size, [*whats, f"{what} ({format_bytes(size)})"])
    said = []
    for where, total, whats in disks.values():
        free = shutil.disk_usage(where).free
        if free < total:
            raise RestoreRefused(f"the disk holding {where} has {format_bytes(free)} free, and the "
                         f"restore needs {format_bytes(total)} there: {', '.join(whats)}. "
                         "Nothing was written. Free space on it, or restore onto another "
                         "disk (-p data_dir=..., -p tablespace_map=...)")
        said.append(f"{format_bytes(total)} of {format_bytes(free)} free at {where}")
    return "; ".join(said)


def _existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")
