"""Compare a restored database with its manifest, table by table."""

from __future__ import annotations

from dataclasses import dataclass

from tui.catalog.manifest import Manifest
from tui.errors import DrdeckError
from tui.postgres.rowcounts import count_rows


@dataclass(frozen=True)
class Difference:
    table: str
    expected: int | None  # None: the table is not in the manifest
    actual: int | None  # None: the table is missing from the restore

    def describe(self) -> str:
        if self.actual is None:
            return f"{self.table} is missing (expected {self.expected:,} rows)"
        if self.expected is None:
            return f"{self.table} is not in the snapshot ({self.actual:,} rows)"
        return f"{self.table} has {self.actual:,} rows, expected {self.expected:,}"


async def restored_counts(dsn: str) -> tuple[dict[str, int], int]:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
            await conn.execute("set transaction isolation level repeatable read, read only")
            return await count_rows(conn)
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        raise DrdeckError(f"cannot count rows in the restored database: "
                          f"{text[0] if text else exc}") from None


async def compare_counts(dsn: str, manifest: Manifest) -> list[Difference]:
    counts, large_objects = await restored_counts(dsn)
    return differences(manifest, counts, large_objects)


def differences(manifest: Manifest, counts: dict[str, int],
                large_objects: int) -> list[Difference]:
    found = []
    for table in sorted(set(manifest.tables) | set(counts)):
        expected, actual = manifest.tables.get(table), counts.get(table)
        if expected != actual:
            found.append(Difference(table, expected, actual))
    if large_objects != manifest.large_objects:
        found.append(Difference("(large objects)", manifest.large_objects, large_objects))
    return found
