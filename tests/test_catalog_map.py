"""Catalog maps: `drdeck wal catalog-map` records which relation each relfilenode is, so a
dropped or rewritten table can still be named from its WAL; a map from the repository is
checked, field by field, before it names anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.catalog.relation_map import (
    CatalogMap,
    MapFailed,
    load_map,
    newest_before,
    read_maps,
)
from tui.compression import compress
from tui.storage import LocalStore

from backup_support import Deck


def _deck(tmp_path: Path, cluster) -> tuple[Deck, Path]:
    repo = tmp_path / "repo"
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[repositories.r]\ntype = "local"\npath = "{repo}"\n\n'
                      f'[clusters.prod]\ndsn = "{cluster.dsn("postgres")}"\n'
                      'repository = "r"\n')
    return Deck(config, tmp_path / "state"), repo


def test_a_map_names_a_table_before_and_after_truncate_and_drop(pg_cluster, tmp_path) -> None:
    cluster = pg_cluster
    cluster.execute("create database shop")
    cluster.execute("create schema billing", dbname="shop")
    cluster.execute("create table billing.invoices (id int primary key, note text)",
                    dbname="shop")
    before = {name: int(node) for name, node in cluster.execute(
        "select relname, pg_relation_filenode(oid) from pg_class "
        "where relname in ('invoices', 'invoices_pkey')", dbname="shop")}
    shop = int(cluster.scalar("select oid from pg_database where datname = 'shop'"))
    deck, repo = _deck(tmp_path, cluster)

    proc = deck.run("wal", "catalog-map", "--cluster", "prod")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("catalog map of "), proc.stdout
    assert f"{repo}/prod/catalog/" in proc.stdout

    cluster.execute("truncate billing.invoices", dbname="shop")
    cluster.execute("drop table billing.invoices", dbname="shop")
    store = LocalStore(repo)
    maps, problems = read_maps(store, "prod")
    assert problems == [] and len(maps) == 1
    catalog = load_map(store, maps[0][1])
    assert catalog.databases[shop] == "shop"
    default = int(cluster.scalar("select dattablespace from pg_database where oid = %s",
                                 (shop,)))
    table = catalog.relation(default, shop, before["invoices"])
    index = catalog.relation(default, shop, before["invoices_pkey"])
    assert (table.qualified, table.kind) == ("billing.invoices", "r")
    assert (index.qualified, index.kind) == ("billing.invoices_pkey", "i")
    # a shared catalog and a mapped one are there too, by their real file nodes
    assert any(r.name == "pg_class" for r in catalog.relations.values())
    # a moment before the map: no map names it
    assert newest_before(maps, catalog.taken_at - timedelta(seconds=2)) == []
    assert newest_before(maps, catalog.taken_at + timedelta(seconds=1)) == [maps[0][1]]


def test_a_map_from_the_repository_that_does_not_check_is_refused(tmp_path) -> None:
    store = LocalStore(tmp_path / "repo")
    good = CatalogMap(datetime(2026, 12, 4, tzinfo=UTC), "7", {5: "shop"}, {})
    raw = json.loads(good.to_json())
    key = "prod/catalog/20261204T000000Z.json.zst"
    for broken, said in (
            ({**raw, "format": 9}, "not a catalog map of format 1"),
            ({**raw, "relations": [[5, 1663, 16384, 16384, "public", "t\x1b[2J", "r"]]},
             "a name must be printable text"),
            ({**raw, "relations": [[5, 1663, -1, 16384, "public", "t", "r"]]},
             "an oid must be a whole number"),
            ({**raw, "taken_at": "2026-12-04T00:00:00"}, "taken_at has no time zone")):
        store.write_bytes(key, compress(json.dumps(broken).encode(), 3))
        with pytest.raises(MapFailed, match=said):
            load_map(store, key)
    store.write_bytes(key, b"not zstd")
    with pytest.raises(MapFailed, match="is damaged"):
        load_map(store, key)
    store.write_bytes("prod/catalog/notes.txt", b"")
    assert read_maps(store, "prod")[1] == [f"{tmp_path / 'repo'}/prod/catalog/notes.txt: "
                                            "not a catalog map's name"]
