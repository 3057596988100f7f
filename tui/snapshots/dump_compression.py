"""How pg_dump compresses a snapshot's dump, and which pg_restore can read it back.

pg_dump -Fc compresses the data itself, and gpg is told not to compress again
(tui.crypto.encrypt_argv). pg_dump's default is gzip at zlib's level 6; from
PostgreSQL 16 it also writes zstd, which at the repository's default level 3
dumps in half the time and 40% of the CPU of gzip, 6% smaller, and restores in
the same time (`make bench`, snapshot-compression: pgbench with md5 filler on
pg_dump 17). So a repository that says compression = "zstd" gets zstd at its
level from pg_dump 16 or later, pg_dump's default from an older one (it knows
gzip alone), and compression = "none" an uncompressed dump.

The manifest records the choice (Manifest.compression): a zstd dump needs a
pg_restore of 16 or later, and the restore says so before anything is fetched.
"""

from __future__ import annotations

from typing import Any

from tui.postgres.binaries import major_of_version, require_program_for

GZIP = "gzip"  # pg_dump's own default; every snapshot before drdeck chose one had it
NONE = "none"
ZSTD_SINCE = 16  # the first pg_dump that writes, and pg_restore that reads, zstd


def choose(wanted: str, level: int, pg_dump_major: int | None) -> str:
    """What pg_dump compresses with: "zstd:<level>", "gzip" or "none".

    `wanted` is the repository's compression ("zstd" or "none"), or "gzip" for
    pg_dump's default; `pg_dump_major` None when pg_dump's version is unknown.
    """
    if wanted == NONE:
        return NONE
    if wanted == "zstd" and pg_dump_major is not None and pg_dump_major >= ZSTD_SINCE:
        return f"zstd:{level}"
    return GZIP


def pg_dump_args(compression: str) -> list[str]:
    """pg_dump's arguments for a choice of choose()."""
    if compression == GZIP:
        return []  # its default, in every major
    if compression == NONE:
        return ["--compress=0"]  # "none" is unknown to pg_dump 15; 0 means none in all
    return [f"--compress={compression}"]


def restore_needs(compression: str) -> int | None:
    """The oldest pg_restore major that reads a dump so compressed; None: any."""
    return ZSTD_SINCE if compression.startswith("zstd") else None


def require_pg_restore_for(manifest: Any, what: str) -> None:
    """Refuse, naming what to install or set, a pg_restore that cannot read the snapshot's
    dump: one older than the pg_dump that wrote it (an archive's format only grows), or
    than zstd needs. Before anything is fetched: pg_restore's own refusal comes after the
    download, in words ("unsupported version (1.16) in file header") that name no fix."""
    dumped_by = major_of_version(manifest.pg_dump_version)
    compressed = restore_needs(manifest.compression)
    needed = max(dumped_by or 0, compressed or 0)
    if not needed:
        return
    how = f", compressed with {manifest.compression}" if compressed else ""
    require_program_for("pg_restore", needed,
                        f"{what} (dumped by pg_dump {manifest.pg_dump_version}{how})")
