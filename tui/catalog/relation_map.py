"""Catalog maps: which relation a relfilenode was, at a moment, so WAL can be read in names.

WAL speaks of relations by (tablespace oid, database oid, relfilenode), and a
relfilenode drifts (TRUNCATE and rewrites give a table a new one) and vanishes when
the table is dropped. A map, taken from the live server, holds every database's
relations with their relfilenode as they were then:

    <cluster>/catalog/<UTC stamp>.json.zst   zstd JSON: taken_at, system_identifier,
                                             databases [{oid, name}], relations
                                             [{database, tablespace, relfilenode, oid,
                                               schema, name, kind}]

drdeck takes one with every base backup and whenever `drdeck wal catalog-map` runs
(cron, or a runbook step), so sources whose backups another engine takes are covered
too. An event is named by the newest map taken before it (`newest_before`); a name
not in it is said to be unknown, never guessed.

A map is read from a repository others can write: every field is checked, and a map
that does not check is skipped with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tui.catalog.layout import is_stamp, stamp_of, time_of
from tui.compression import Undecompressable, compress, decompress
from tui.errors import DrdeckError

FORMAT = 1
MAX_MAP_BYTES = 1 << 30  # decompressed: a million relations is some hundred MiB
# tablespace 0 in pg_class means the database's default: WAL names it, so the map does
_RELATIONS = """
select c.oid, pg_relation_filenode(c.oid),
       case when c.reltablespace = 0 then d.dattablespace else c.reltablespace end,
       n.nspname, c.relname, c.relkind::text
  from pg_class c join pg_namespace n on n.oid = c.relnamespace,
       pg_database d
 where d.datname = current_database() and pg_relation_filenode(c.oid) is not null
"""


class MapFailed(DrdeckError):
    pass


def catalog_prefix(cluster: str) -> str:
    return f"{cluster}/catalog/"


def map_key(cluster: str, stamp: str) -> str:
    return f"{catalog_prefix(cluster)}{stamp}.json.zst"


@dataclass(frozen=True)
class Relation:
    database: int
    tablespace: int
    relfilenode: int
    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind: r table, i index, t toast, m matview, S sequence, ...

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class CatalogMap:
    taken_at: datetime
    system_identifier: str
    databases: dict[int, str]
    relations: dict[tuple[int, int, int], Relation]  # (tablespace, database, relfilenode)

    def relation(self, tablespace: int, database: int, relfilenode: int) -> Relation | None:
        return self.relations.get((tablespace, database, relfilenode))

    def to_json(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "taken_at": self.taken_at.isoformat(),
            "system_identifier": self.system_identifier,
            "databases": [{"oid": oid, "name": name} for oid, name in
                          sorted(self.databases.items())],
            "relations": [[r.database, r.tablespace, r.relfilenode, r.oid, r.schema, r.name,
                           r.kind] for r in self.relations.values()],
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> CatalogMap:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a catalog map of format {FORMAT}")
            taken_at = datetime.fromisoformat(_text(data.get("taken_at"), "taken_at"))
            if taken_at.tzinfo is None:
                raise ValueError("taken_at has no time zone")
            databases = {}
            for entry in _list(data.get("databases"), "databases"):
                if not isinstance(entry, dict):
                    raise ValueError("a database must be an object")
                databases[_oid(entry.get("oid"))] = _text(entry.get("name"), "a name")
            relations = {}
            for row in _list(data.get("relations"), "relations"):
                if not isinstance(row, list) or len(row) != 7:
                    raise ValueError("a relation must be a list of 7 fields")
                database, tablespace, relfilenode, oid = (_oid(v) for v in row[:4])
                relation = Relation(database, tablespace, relfilenode, oid,
                                    _text(row[4], "a schema"), _text(row[5], "a name"),
                                    _text(row[6], "a kind"))
                relations[(tablespace, database, relfilenode)] = relation
            return cls(taken_at.astimezone(UTC),
                       _text(data.get("system_identifier"), "system_identifier"),
                       databases, relations)
        except (ValueError, TypeError, RecursionError) as exc:
            raise MapFailed(f"{where}: not a catalog map ({exc})") from None


def _text(value: Any, what: str) -> str:
    # names reach a terminal: printable text only, as PostgreSQL's own limits allow
    if not isinstance(value, str) or not value.isprintable() or len(value) > 4096:
        raise ValueError(f"{what} must be printable text")
    return value


def _oid(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 32:
        raise ValueError("an oid must be a whole number below 2^32")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list")
    return value


async def take_map(dsn: str) -> CatalogMap:
    """The live server's relations in every database that accepts connections."""
    import psycopg

    from tui.postgres.dsn import with_database
    from tui.postgres.query import CONNECT_TIMEOUT_S, error_reason

    try:
        async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            (system,) = await (await conn.execute(
                "select system_identifier::text from pg_control_system()")).fetchone()
            listed = await (await conn.execute(
                "select oid, datname, datallowconn from pg_database order by oid")).fetchall()
            taken_at = (await (await conn.execute("select now()")).fetchone())[0]
        relations = {}
        for oid, name, allowed in listed:
            if not allowed:  # template0: nothing of an operator's is there
                continue
            async with await psycopg.AsyncConnection.connect(
                    with_database(dsn, name), autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S) as conn:
                for row in await (await conn.execute(_RELATIONS)).fetchall():
                    relation = Relation(int(oid), int(row[2]), int(row[1]), int(row[0]),
                                        row[3], row[4], row[5])
                    relations[(relation.tablespace, relation.database,
                               relation.relfilenode)] = relation
    except psycopg.Error as exc:
        raise MapFailed(f"cannot read the catalog: {error_reason(exc)}") from None
    return CatalogMap(taken_at.astimezone(UTC), system,
                      {int(oid): name for oid, name, _ in listed}, relations)


def store_map(store: Any, cluster: str, catalog: CatalogMap, level: int = 3) -> str:
    """Write `catalog` beside the cluster's backups; its key."""
    key = map_key(cluster, stamp_of(catalog.taken_at))
    store.write_bytes(key, compress(catalog.to_json(), level))
    return key


def read_maps(store: Any, cluster: str) -> tuple[list[tuple[datetime, str]], list[str]]:
    """(taken_at, key) of each stored map, oldest first, and why any key was skipped.
    Only names: a map is read when an event needs it (`load_map`)."""
    found, problems = [], []
    for obj in store.list(catalog_prefix(cluster)):
        name = obj.key[len(catalog_prefix(cluster)):]
        stamp = name.removesuffix(".json.zst")
        if name == stamp or not is_stamp(stamp):
            problems.append(f"{store.location(obj.key)}: not a catalog map's name")
            continue
        found.append((time_of(stamp), obj.key))
    return sorted(found), problems


def load_map(store: Any, key: str) -> CatalogMap:
    where = store.location(key)
    try:
        raw = decompress(store.read_bytes(key), MAX_MAP_BYTES, where)
    except Undecompressable as exc:
        raise MapFailed(str(exc)) from None
    return CatalogMap.from_json(raw, where)


def newest_before(maps: list[tuple[datetime, str]], moment: datetime) -> list[str]:
    """Keys of the maps whose stamp is at or before `moment`, newest first. A stamp is
    whole seconds: the first may have been taken a moment after, which its own
    taken_at tells (the caller then takes the next)."""
    return [key for taken_at, key in reversed(maps) if taken_at <= moment]
