"""Names for the relations and databases of WAL events: the newest catalog map taken
before each event (tui.catalog.relation_map), then the live server for relations that
still exist. What neither can name is said so, with why; never guessed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tui.catalog.relation_map import CatalogMap, MapFailed, load_map, newest_before, read_maps
from tui.wal.events import DestructiveEvent, RelFile

TABLE_KINDS = ("r", "p", "m")  # what an operator calls a table: tables, partitioned, matviews
# what each kind of event is called on screen
KIND_WORDS = {"drop_table": "DROP TABLE", "drop_schema": "DROP SCHEMA", "truncate": "TRUNCATE",
              "drop_database": "DROP DATABASE", "rewrite": "rewrite", "delete": "DELETE",
              "update": "UPDATE"}


@dataclass(frozen=True)
class NamedEvent:
    event: DestructiveEvent
    database: str  # its name, or "database <oid>" when nothing names it
    relations: tuple[str, ...]  # schema.name, tables first
    unnamed: tuple[str, ...]  # why each relation it touched has no name
    tables: tuple[tuple[str, str], ...] = ()  # (schema, name) of the tables among them

    @property
    def what(self) -> str:
        """'DROP TABLE', 'DELETE', ...: the kind of event in an operator's words."""
        return KIND_WORDS.get(self.event.kind, self.event.kind)

    def expect_back(self) -> str:
        """What a restore to just before this event must bring back, in the words of
        pitr-restore's `expect_back` (tui.pitr.expect_back)."""
        from tui.pitr.expect_back import Expectation

        e = self.event
        named = not self.database.startswith("database ")
        return Expectation(
            database=self.database if named else None,
            tables=tuple((self.database, *t) for t in self.tables) if named else (),
            rows=e.rows if e.kind == "delete" else None).text()

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {"kind": e.kind, "xid": e.xid, "commit_lsn": e.commit_lsn,
                "commit_time": e.commit_time, "database": self.database,
                "database_oid": e.database, "relations": list(self.relations),
                "unnamed": list(self.unnamed), "rows": e.rows, "timeline": e.timeline,
                "stop_lsn": e.stop_lsn, "expect_back": self.expect_back()}


class Namer:
    def __init__(self, store: Any, cluster: str, live: Any = None) -> None:
        """`live(database_oid, relfile)` -> (database name, schema.name or None), from the
        server as it is now; None when there is no server to ask."""
        self.store = store
        self.maps, self.problems = read_maps(store, cluster) if store is not None else ([], [])
        self.live = live
        self._loaded: dict[str, CatalogMap | None] = {}

    def name(self, event: DestructiveEvent) -> NamedEvent:
        moment = datetime.fromisoformat(event.commit_time) if event.commit_time else None
        catalog = self._map_before(moment)
        database = catalog.databases.get(event.database) if catalog else None
        named: list[tuple[bool, str]] = []
        tables: list[tuple[str, str]] = []
        unnamed = []
        for relfile in event.relations:
            relation = catalog.relation(*relfile) if catalog else None
            if relation is not None:
                named.append((relation.kind in TABLE_KINDS, relation.qualified))
                if relation.kind in TABLE_KINDS:
                    tables.append((relation.schema, relation.name))
                continue
            found = self.live(event.database, relfile) if self.live else None
            if found is not None and found[1] is not None:
                database = database or found[0]
                schema, relname, relkind = found[1]
                named.append((relkind in TABLE_KINDS, f"{schema}.{relname}"))
                if relkind in TABLE_KINDS:
                    tables.append((schema, relname))
                continue
            unnamed.append(_why_unnamed(relfile, catalog))
        if database is None and self.live and not event.relations:
            found = self.live(event.database, None)
            database = found[0] if found else None
        # tables, then their indexes and the like, then toast: what an operator knows first
        tables_first = [name for _, name in sorted(
            named, key=lambda n: (not n[0], n[1].startswith("pg_toast.")))]
        return NamedEvent(event, database or f"database {event.database}",
                          tuple(tables_first), tuple(unnamed), tuple(sorted(set(tables))))

    def _map_before(self, moment: datetime | None) -> CatalogMap | None:
        if moment is None:
            return None
        for key in newest_before(self.maps, moment):
            if key not in self._loaded:
                try:
                    self._loaded[key] = load_map(self.store, key)
                except MapFailed as exc:
                    self.problems.append(str(exc))
                    self._loaded[key] = None
            catalog = self._loaded[key]
            if catalog is not None and catalog.taken_at <= moment:
                return catalog
        return None


def _why_unnamed(relfile: RelFile, catalog: CatalogMap | None) -> str:
    where = f"relfilenode {relfile.relfilenode} in database {relfile.database}"
    if catalog is None:
        return f"{where}: no catalog map was taken before it (drdeck wal catalog-map)"
    return f"{where}: created after the last catalog map ({catalog.taken_at:%Y-%m-%d %H:%M} UTC)"


def live_names(dsn: str) -> Any:
    """`Namer`'s `live`: the server's current names (database, (schema, name, relkind) or None)
    by database oid and relfilenode,
    each database asked once per relation; None when the server cannot be reached."""
    import psycopg

    from tui.postgres.dsn import with_database
    from tui.postgres.query import CONNECT_TIMEOUT_S

    databases: dict[int, str] | None = None
    cache: dict[tuple[int, RelFile | None], tuple[str, tuple[str, str, str] | None] | None] = {}

    def ask(database: int, relfile: RelFile | None
            ) -> tuple[str, tuple[str, str, str] | None] | None:
        nonlocal databases
        if (database, relfile) in cache:
            return cache[(database, relfile)]
        answer = None
        try:
            if databases is None:
                with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    databases = dict(conn.execute("select oid::int, datname from pg_database"
                                                  ).fetchall())
            name = databases.get(database)
            if name is not None:
                answer = (name, None)
                if relfile is not None:
                    with psycopg.connect(with_database(dsn, name),
                                         connect_timeout=CONNECT_TIMEOUT_S) as conn:
                        # tablespace 0 is the database's default, as pg_class says it
                        row = conn.execute(
                            "select n.nspname, c.relname, c.relkind::text from pg_class c join "
                            "pg_namespace n on n.oid = c.relnamespace where c.oid = "
                            "pg_filenode_relation(case when %s = (select dattablespace "
                            "from pg_database where datname = current_database()) then 0 "
                            "else %s end, %s)",
                            (relfile.tablespace, relfile.tablespace, relfile.relfilenode),
                        ).fetchone()
                    answer = (name, (row[0], row[1], row[2]) if row else None)
        except psycopg.Error:
            databases = databases or {}
            answer = None
        cache[(database, relfile)] = answer
        return answer

    return ask
