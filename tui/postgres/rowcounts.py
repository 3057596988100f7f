"""Row counts of every table, read inside a given snapshot of the database.

Taken in the same exported snapshot pg_dump reads, they are the exact
contents of the dump: what a restore must bring back, table by table.
"""

from __future__ import annotations

from typing import Any

# Ordinary tables outside the system schemas that pg_dump dumps with data
# (extension member tables are the extension's business, not ours).
TABLES = """
select n.nspname, c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r'
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_class'::regclass and d.objid = c.oid
                    and d.deptype = 'e')
order by 1, 2
"""


async def count_rows(conn: Any) -> tuple[dict[str, int], int]:
    """({"schema.table": rows}, large objects) as seen by `conn`'s current transaction."""
    from psycopg import sql

    counts: dict[str, int] = {}
    cursor = await conn.execute(TABLES)
    for schema, table in await cursor.fetchall():
        query = sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table))
        row = await (await conn.execute(query)).fetchone()
        counts[f"{schema}.{table}"] = int(row[0])
    row = await (await conn.execute("select count(*) from pg_largeobject_metadata")).fetchone()
    return counts, int(row[0])
