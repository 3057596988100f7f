"""A small production to back up: a cluster with non-trivial data, a config, a key, a bucket."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.postgres.binaries import pg_bin

from cli_support import drdeck, json_events

TEXTS = [
    ("el", "Καλημέρα κόσμε"),
    ("ja", "こんにちは世界"),
    ("ar", "مرحبا بالعالم"),
    ("he", "שלום עולם"),
    ("ru", "Привет, мир"),
    ("emoji", "restore ✓ 🚑 … \u200b zero-width"),
    ("quotes", "it's a \"quoted\" \\ back\\slash; DROP TABLE x;--"),
]
LARGE_OBJECT = b"\x00\x01 large object payload \xff" * 100


def seed_app(cluster: Any, database: str = "app") -> None:
    """pgbench tables plus text in several scripts, bytea, json and a large object."""
    cluster.execute(f"create database {database}")
    subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", "-n", cluster.dsn(database)],
                   check=True, capture_output=True)
    cluster.execute("""
        create table texts (id serial primary key, lang text, body text, raw bytea,
                            doc jsonb, at timestamptz default now());
        create schema billing;
        create table billing."Invoice Lines" (id int, amount numeric(12, 2));
        insert into billing."Invoice Lines" select g, g * 1.5 from generate_series(1, 250) g;
    """, dbname=database)
    for lang, body in TEXTS:
        cluster.execute(
            "insert into texts (lang, body, raw, doc) values (%s, %s, %s, %s)",
            (lang, body, body.encode() + b"\x00\xfe", f'{{"lang": "{lang}", "n": [1, 2.5]}}'),
            dbname=database)
    cluster.execute("select lo_from_bytea(0, %s)", (LARGE_OBJECT,), dbname=database)


def content_of(cluster: Any, database: str) -> dict[str, Any]:
    """What a faithful restore must reproduce, read back for comparison."""
    return {
        "accounts": cluster.scalar("select count(*), sum(abalance) from pgbench_accounts",
                                   dbname=database),
        "counts": cluster.execute(
            "select (select count(*) from pgbench_accounts), (select count(*) from "
            "pgbench_branches), (select count(*) from pgbench_tellers), (select count(*) "
            "from texts), (select count(*) from billing.\"Invoice Lines\")", dbname=database),
        "texts": cluster.execute("select lang, body, raw, doc::text from texts order by id",
                                 dbname=database),
        "large_objects": cluster.execute(
            "select lo_get(oid) from pg_largeobject_metadata order by oid", dbname=database),
    }


@dataclass
class Deck:
    """A drdeck.toml for one cluster and one repository, and a way to run drdeck with it."""

    config: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 180) -> Any:
        return drdeck("--config", str(self.config), *args, state_dir=self.state,
                      timeout=timeout, **self.env)

    def run_json(self, *args: str) -> tuple[Any, list[dict]]:
        proc = self.run(*args, "--json")
        return proc, json_events(proc.stdout) if proc.stdout.strip() else []


def write_config(path: Path, *, cluster: Any, repository: str, gpg_home: Path | None,
                 recipients: list[str], rpo: str = "1h", retention: str = "") -> Path:
    dsn = cluster.dsn("app")
    gpg = f'[gpg]\nhome = "{gpg_home}"\n\n' if gpg_home else ""
    recipients_toml = ", ".join(f'"{r}"' for r in recipients)
    path.write_text(f"""# a test configuration
{repository}

{gpg}[clusters.prod]
dsn = "{dsn}"
repository = "backups"
databases = ["app"]
gpg_recipients = [{recipients_toml}]
rpo = "{rpo}"
rto = "4h"
{retention}
""")
    return path


def s3_repository(endpoint: Any, bucket: str) -> str:
    return (f'[repositories.backups]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "pg"\n'
            f'endpoint_url = "{endpoint.url}"\nregion = "{endpoint.region}"')


def local_repository(path: Path) -> str:
    return f'[repositories.backups]\ntype = "local"\npath = "{path}"'
