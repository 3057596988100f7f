"""Where a restore puts a backup's tablespaces, and the links that lead the server there.

By default each tablespace goes beside the new data directory, one directory per oid
(<data_dir>.tablespaces/<oid>): never to the source's own location, which on the same
machine is the live cluster's tablespace, and not inside the data directory, where the
next base backup of the restored server would copy it twice. The operator may map any
of them elsewhere: `tablespace_map = "fast=/srv/fast, 16390=/mnt/archive"`, each key a
tablespace's name, its oid or its location on the source (as pg_basebackup -T maps).

The links in pg_tblspc are made by drdeck, and the backup's tablespace_map (which names
the source's own directories) is removed: the server never follows the source's paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tui.pitr.restore import RestoreRefused, check_data_dir
from tui.postgres.cluster import server_account


class TablespaceLike(Protocol):
    oid: int
    name: str
    location: str  # on the source server


def tablespace_home(data_dir: Path) -> Path:
    """Where a restore puts the backup's tablespaces unless they are mapped elsewhere."""
    return data_dir.with_name(data_dir.name + ".tablespaces")


def staging_home(data_dir: Path) -> Path:
    """Where an incremental restore unpacks its chain (tui.pitr.incremental), removed
    afterwards: no tablespace may go there."""
    return data_dir.with_name(data_dir.name + ".chain")


def parse_tablespace_map(text: str) -> list[tuple[str, Path]]:
    """`name=/dir, oid=/dir, /old/location=/dir` -> [(key, directory)]."""
    pairs = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, equals, directory = item.rpartition("=")
        key, directory = key.strip(), directory.strip()
        if not equals or not key or not directory:
            raise RestoreRefused(f"tablespace_map: {item!r} is not NAME=DIRECTORY (a "
                                 "tablespace's name, oid or location on the source, then "
                                 "where to restore it)")
        place = Path(directory).expanduser()
        if not place.is_absolute():
            raise RestoreRefused(f"tablespace_map: {directory!r} is not an absolute path")
        pairs.append((key, place))
    return pairs


def tablespace_places(tablespaces: Sequence[TablespaceLike], data_dir: Path,
                      mapping: str = "") -> dict[int, Path]:
    """Each tablespace's oid -> the directory it is restored into, checked: new or empty,
    none inside another, the data directory or a source location. Raises RestoreRefused
    saying which and why."""
    data_dir = Path(os.path.abspath(data_dir))
    chosen: dict[int, Path] = {}
    for key, place in parse_tablespace_map(mapping):
        matches = [t for t in tablespaces if key in (t.name, str(t.oid))
                   or key.rstrip("/") == t.location.rstrip("/")]
        if not matches:
            held = ", ".join(f"{t.name} (oid {t.oid}, at {t.location})"
                             for t in tablespaces) or "no tablespace but the data directory's"
            raise RestoreRefused(f"tablespace_map names {key!r}, which is no tablespace of "
                                 f"this backup: it has {held}")
        if len(matches) > 1:
            raise RestoreRefused(f"tablespace_map names {key!r}, which could be any of "
                                 + ", ".join(f"{t.name} (oid {t.oid})" for t in matches)
                                 + ": name it by its oid")
        if matches[0].oid in chosen:
            raise RestoreRefused(f"tablespace_map maps tablespace {matches[0].name} twice")
        chosen[matches[0].oid] = Path(os.path.abspath(place))
    places = {t.oid: chosen.get(t.oid, tablespace_home(data_dir) / str(t.oid))
              for t in tablespaces}
    sources = [Path(os.path.abspath(t.location)) for t in tablespaces if t.location]
    named = {t.oid: t.name for t in tablespaces}
    for oid, place in places.items():
        what = f"tablespace {named[oid]} would be restored into {place}"
        if any(ch in str(place) for ch in "\n\r"):
            raise RestoreRefused(f"{what}: a directory name with a line break is refused")
        for source in sources:
            if _overlap(place, source):
                raise RestoreRefused(f"{what}, which is or holds a tablespace directory of "
                                     f"the source ({source}): drdeck never restores into "
                                     "the source's tablespaces. Map it elsewhere with "
                                     "tablespace_map")
        if _overlap(place, staging_home(data_dir)):
            raise RestoreRefused(f"{what}, which is or is inside {staging_home(data_dir)}, "
                                 "where a restore unpacks and then removes an incremental "
                                 "chain: give it a directory of its own")
        if _overlap(place, data_dir):
            raise RestoreRefused(f"{what}, which is or is inside the new data directory "
                                 f"{data_dir}: give it a directory of its own")
        for other, elsewhere in places.items():
            if other != oid and _overlap(place, elsewhere):
                raise RestoreRefused(f"{what}, and tablespace {named[other]} into "
                                     f"{elsewhere}: each needs a directory of its own")
        check_data_dir(place)
    return places


def describe_places(tablespaces: Sequence[TablespaceLike], places: dict[int, Path]) -> str:
    return ", ".join(f"{t.name} -> {places[t.oid]}" for t in tablespaces)


def check_tablespaces(check: Callable[[str, str], None], tablespaces: Sequence[TablespaceLike],
                      data_dir: Path, mapping: str = "") -> dict[int, Path]:
    """The pre-flight's part: `tablespace_places`, named as a check when there are any."""
    places = tablespace_places(tablespaces, data_dir, mapping)
    if tablespaces:
        check("tablespaces placed", describe_places(tablespaces, places))
    return places


def link_tablespaces(data_dir: Path, places: dict[int, Path]) -> None:
    """Remove the backup's tablespace_map (it names the source's directories) and link
    pg_tblspc/<oid> to each tablespace's new directory."""
    try:
        (data_dir / "tablespace_map").unlink(missing_ok=True)  # the name, not a target
    except OSError as exc:
        raise RestoreRefused(f"the backup's tablespace_map is not a file ({exc.strerror or exc})"
                             ", which a backup never carries: not restored") from None
    for oid, place in places.items():
        link_tablespace(data_dir, oid, place)


def link_tablespace(data_dir: Path, oid: int, place: Path) -> None:
    """pg_tblspc/<oid> -> the tablespace's new directory. Made through a descriptor of
    pg_tblspc that follows no link: the directory is the server account's, and root
    must not be led elsewhere."""
    try:
        folder = os.open(data_dir / "pg_tblspc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise RestoreRefused(f"the backup's pg_tblspc cannot hold the tablespace links "
                             f"({exc.strerror or exc}): it is not a plain directory") from None
    try:
        try:
            os.symlink(place, str(oid), dir_fd=folder)
        except FileExistsError:
            raise RestoreRefused(f"the backup's pg_tblspc already holds {oid}, which a "
                                 "backup never carries: not restored") from None
        account = server_account()
        if account is not None:
            os.chown(str(oid), account.uid, account.gid, dir_fd=folder,
                     follow_symlinks=False)
    finally:
        os.close(folder)


def _overlap(one: Path, other: Path) -> bool:
    return one == other or one.is_relative_to(other) or other.is_relative_to(one)
