"""A snapshot restored onto a new, empty server: the one the recovery plan is written for.

The source has an application role that logs in with a password, a reporting
role it is a member of, grants, default privileges, role and database
settings, and a database owned by the application role. The second server
has none of that. Everything runs through the real CLI, on two real clusters,
a real GnuPG home and a local repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from backup_support import Deck
from cli_support import json_events

APP_PASSWORD = "app-login-s3cret"
SOURCE_SETUP = f"""
create role app login password '{APP_PASSWORD}';
create role reporting nologin;
create role "Audit Team" nologin;
create role bystander login;
grant reporting to app;
alter role app set statement_timeout = '5min';
create database shop owner app;
alter database shop set search_path to "$user", public;
comment on database shop is 'the shop''s orders';
revoke all on database shop from public;
grant connect on database shop to reporting;
"""
SHOP_SETUP = """
set role app;
create table orders (id int primary key, amount numeric(10, 2), note text);
insert into orders select g, g * 1.25, 'order ' || g from generate_series(1, 300) g;
create table secrets (id int);
grant select on orders to reporting;
grant select (id) on orders to "Audit Team";
alter default privileges in schema public grant select on tables to reporting;
reset role;
alter role app in database shop set work_mem = '8MB';
"""


@pytest.fixture
def source(make_pg_cluster):
    cluster = make_pg_cluster()
    for statement in SOURCE_SETUP.strip().split(";\n"):  # CREATE DATABASE stands alone
        cluster.execute(statement)
    cluster.execute(SHOP_SETUP, dbname="shop")
    return cluster


@pytest.fixture
def new_server(make_pg_cluster):
    """An empty server that asks the application for its password over TCP."""
    cluster = make_pg_cluster()
    hba = cluster.data_dir / "pg_hba.conf"
    hba.write_text("host all app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    cluster.reload()
    return cluster


def shop_deck(tmp_path: Path, dsn: str, gpg_home) -> Deck:
    """A drdeck.toml for the shop in a local repository, and a snapshot taken with it."""
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""
[repositories.backups]
type = "local"
path = "{tmp_path / 'repo'}"

[gpg]
home = "{gpg_home.path}"

[clusters.prod]
dsn = "{dsn}"
repository = "backups"
databases = ["shop"]
gpg_recipients = ["{gpg_home.fingerprint}"]
""")
    deck = Deck(config, tmp_path / "state")
    deck.repo = tmp_path / "repo"
    deck.backup = deck.run("run", "snapshot-backup", "--headless")
    assert deck.backup.returncode == 0, deck.backup.stdout + deck.backup.stderr
    return deck


@pytest.fixture
def deck(source, gpg_home, tmp_path: Path) -> Deck:
    return shop_deck(tmp_path, source.dsn("shop"), gpg_home)


def restore(deck: Deck, server, *params: str, yes: bool = True) -> tuple[int, list[dict], str]:
    args = ["run", "snapshot-restore", "-p", f"target_dsn={server.dsn()}",
            "-p", "target_db=shop", *(f"-p{p}" for p in params), "--json"]
    proc = deck.run(*args, *(["--yes"] if yes else []))
    return proc.returncode, json_events(proc.stdout), proc.stdout + proc.stderr


def outputs(events: list[dict], step: str) -> str:
    return "\n".join(e["line"] for e in events if e["event"] == "output" and e["step"] == step)


def started(events: list[dict]) -> list[str]:
    return [e["step"] for e in events if e["event"] == "step_started"]


def test_onto_a_new_server_the_roles_come_along_and_the_application_logs_in(
        deck: Deck, new_server) -> None:
    code, events, text = restore(deck, new_server)
    assert code == 0, text[-4000:]

    roles = outputs(events, "roles")
    assert "created roles Audit Team, app, reporting" in roles
    assert "--yes" in roles, "the journal says who confirmed: nobody, --yes did"
    assert "bystander" not in roles, "a role the dump does not name is not created"
    assert "SCRAM-SHA-256" not in text, "a password hash never reaches the output"

    # the application logs in with its own password, and sees its data
    dsn = f"host=127.0.0.1 port={new_server.port} dbname=shop user=app"
    with psycopg.connect(f"{dsn} password={APP_PASSWORD}") as conn:
        assert conn.execute("select count(*), sum(amount) from orders").fetchone() == (
            300, pytest.approx(56437.5))
        assert conn.execute("show statement_timeout").fetchone() == ("5min",)
        assert conn.execute("show work_mem").fetchone() == ("8MB",)
        assert conn.execute("show search_path").fetchone() == ('"$user", public',)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"{dsn} password=wrong").close()

    def one(sql: str) -> object:
        return new_server.scalar(sql, dbname="shop")

    assert one("select pg_get_userbyid(datdba) from pg_database where datname = 'shop'") \
        == "app"
    assert one("select tableowner from pg_tables where tablename = 'orders'") == "app"
    assert one("select has_table_privilege('reporting', 'orders', 'select')") is True
    assert one("select has_column_privilege('Audit Team', 'orders', 'id', 'select')") is True
    new_server.execute("set role app; create table later (x int)", dbname="shop")
    assert one("select has_table_privilege('reporting', 'later', 'select')") is True, \
        "the default privileges came along: app's new tables are readable by reporting"
    assert one("select has_table_privilege('reporting', 'secrets', 'select')") is False
    assert one("select pg_has_role('app', 'reporting', 'member')") is True
    assert one("select rolcanlogin from pg_roles where rolname = 'reporting'") is False
    assert one("select shobj_description(oid, 'pg_database') from pg_database "
               "where datname = 'shop'") == "the shop's orders"
    assert one("select has_database_privilege('reporting', 'shop', 'connect')") is True
    assert one("select count(*) from pg_roles where rolname = 'bystander'") == 0
    assert one("select count(*) from pg_database where datname like 'drdeck_%'") == 0


def test_without_yes_the_restore_is_refused_before_anything_is_written(
        deck: Deck, new_server) -> None:
    code, events, text = restore(deck, new_server, yes=False)
    assert code == 1, text[-3000:]
    preflight = outputs(events, "preflight")
    assert "roles the dump names that the target lacks: Audit Team, app, reporting" \
        in preflight
    failed = next(e for e in events if e["event"] == "step_finished" and e["status"] ==
                  "failed")
    assert failed["step"] == "roles"
    assert "Audit Team, app, reporting" in failed["error"]
    assert "--yes" in failed["error"] and "no_owner = true" in failed["error"]
    assert started(events) == ["preflight", "roles"], "nothing fetched, nothing written"
    assert new_server.scalar("select count(*) from pg_roles where rolname in "
                             "('app', 'reporting', 'Audit Team')") == 0
    assert new_server.scalar("select count(*) from pg_database where datname not in "
                             "('postgres', 'template0', 'template1')") == 0


def test_no_owner_restores_the_data_without_creating_any_role(deck: Deck, new_server) -> None:
    code, events, text = restore(deck, new_server, "no_owner=true")
    assert code == 0, text[-3000:]
    assert "roles" not in started(events)
    assert "not needed (no_owner = true" in outputs(events, "preflight")
    assert new_server.scalar("select count(*) from orders", dbname="shop") == 300
    assert new_server.scalar("select tableowner from pg_tables where tablename = 'orders'",
                             dbname="shop") == "postgres"
    assert new_server.scalar("select count(*) from pg_roles where rolname in "
                             "('app', 'reporting', 'Audit Team')") == 0
    # what could not be applied without the roles is said, not silently dropped
    assert "not applied: ALTER DATABASE" in outputs(events, "restore")


def test_existing_roles_are_never_changed(deck: Deck, new_server) -> None:
    new_server.execute("create role reporting login connection limit 3")
    code, events, text = restore(deck, new_server)
    assert code == 0, text[-3000:]
    assert "created roles Audit Team, app (" in outputs(events, "roles")
    # the snapshot says NOLOGIN; the server's own role keeps what the server said
    assert new_server.scalar("select rolcanlogin::text || rolconnlimit from pg_roles "
                             "where rolname = 'reporting'") == "true3"
    assert new_server.scalar("select pg_has_role('app', 'reporting', 'member')") is True


def test_the_manifest_records_the_globals_and_the_inventory_shows_them(deck: Deck) -> None:
    [manifest_path] = (deck.repo / "prod" / "snapshots" / "shop").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == 3
    assert manifest["roles"] == ["Audit Team", "app", "reporting"]
    record = manifest["globals"]
    assert record["role_passwords"] is True and record["missing"] == []
    stored = deck.repo / record["object"]
    assert stored.name.endswith(".globals.sql.gpg") and stored.stat().st_size == \
        record["stored_size"]
    assert b"CREATE ROLE" not in stored.read_bytes(), "encrypted like the dump"

    proc = deck.run("inventory", "--json")
    [snapshot] = json.loads(proc.stdout)["clusters"][0]["snapshots"]
    assert snapshot["globals"] == "complete"
    assert "globals" in deck.run("inventory").stdout


def test_a_backup_role_that_cannot_read_password_hashes_records_what_is_missing(
        source, gpg_home, tmp_path: Path, new_server) -> None:
    """The database's owner takes the snapshots: it reads its tables, not pg_authid."""
    deck = shop_deck(tmp_path, source.dsn("shop", user="app"), gpg_home)
    proc = deck.backup
    assert "the globals do not include role password hashes" in proc.stdout + proc.stderr
    [manifest_path] = (tmp_path / "repo" / "prod" / "snapshots" / "shop").glob("*.json")
    record = json.loads(manifest_path.read_text())["globals"]
    assert record["role_passwords"] is False
    assert record["missing"] == ["role password hashes (the backup role cannot read "
                                 "pg_authid)"]
    [snapshot] = json.loads(deck.run("inventory", "--json").stdout)["clusters"][0]["snapshots"]
    assert snapshot["globals"] == "no password hashes"

    # restored by a superuser of the new server: the roles come, without their passwords
    deck.config.write_text(deck.config.read_text().replace(source.dsn("shop", user="app"),
                                                           source.dsn("shop")))
    code, events, text = restore(deck, new_server)
    assert code == 0, text[-3000:]
    roles = outputs(events, "roles")
    assert "WARNING: app can log in but has no password" in roles


def test_a_snapshot_from_before_globals_still_restores_and_its_dump_is_checked(
        deck: Deck, new_server, source) -> None:
    """Format 1: no globals object, no list of roles. On its own server it restores; on a
    new one the dump's own SQL names the missing roles before anything is written."""
    [manifest_path] = (deck.repo / "prod" / "snapshots" / "shop").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    (deck.repo / manifest.pop("globals")["object"]).unlink()
    del manifest["roles"], manifest["tablespaces"], manifest["compression"]
    manifest["format"] = 1
    manifest_path.write_text(json.dumps(manifest))

    code, events, text = restore(deck, new_server)
    assert code == 1, text[-3000:]
    failed = next(e for e in events if e["event"] == "step_finished" and e["status"] ==
                  "failed")
    assert failed["step"] == "restore"
    assert "the dump names roles the target lacks: Audit Team, app, reporting" in \
        failed["error"]
    assert new_server.scalar("select count(*) from pg_database where datname not in "
                             "('postgres', 'template0', 'template1')") == 0

    proc = deck.run("run", "snapshot-restore", "-p", "target_db=shop_copy", "--json", "--yes")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert source.scalar("select count(*) from orders", dbname="shop_copy") == 300


def test_verify_backup_checks_the_globals_too(deck: Deck) -> None:
    [manifest_path] = (deck.repo / "prod" / "snapshots" / "shop").glob("*.json")
    stored = deck.repo / json.loads(manifest_path.read_text())["globals"]["object"]
    proc = deck.run("run", "verify-backup", "-p", "full=false", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "globals read: 5 roles" in proc.stdout

    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    proc = deck.run("run", "verify-backup", "-p", "full=false", "--json")
    assert proc.returncode == 1
    [snapshot] = json.loads(deck.run("inventory", "--json").stdout)["clusters"][0]["snapshots"]
    assert snapshot["verified"]["ok"] is False
    assert "globals" in snapshot["verified"]["detail"] and "corrupt" in \
        snapshot["verified"]["detail"]


def test_the_globals_file_restores_by_hand_with_psql(deck: Deck, new_server, gpg_home,
                                                     tmp_path: Path) -> None:
    """The three parts of the file, as its header says to run them."""
    from tui.postgres.binaries import pg_bin

    [stored] = (deck.repo / "prod" / "snapshots" / "shop").glob("*.globals.sql.gpg")
    plain = tmp_path / "globals.sql"
    subprocess.run(["gpg", "--homedir", str(gpg_home.path), "--batch", "--quiet",
                    "--decrypt", "--output", str(plain), str(stored)], check=True)
    psql = [pg_bin("psql"), "-X", "-q", "-d", new_server.dsn(), "-f", str(plain)]
    subprocess.run(psql, check=True, capture_output=True)
    subprocess.run([*psql, "-v", "create_database=shop"], check=True, capture_output=True)
    subprocess.run([*psql, "-v", "target_db=shop"], check=True, capture_output=True)
    assert new_server.scalar("select pg_get_userbyid(datdba) from pg_database "
                             "where datname = 'shop'") == "app"
    assert new_server.scalar("select pg_has_role('app', 'reporting', 'member')") is True


def test_a_tablespace_the_new_server_lacks_is_said_and_its_tables_restore_anyway(
        source, gpg_home, tmp_path: Path, new_server) -> None:
    import tempfile

    from tui.postgres.access import give_to_server

    place = Path(tempfile.mkdtemp(prefix="ts"))
    give_to_server(place)
    source.execute(f"create tablespace fast location '{place}'")
    source.execute("create table hot (id int) tablespace fast; insert into hot values (1)",
                   dbname="shop")
    deck = shop_deck(tmp_path, source.dsn("shop"), gpg_home)
    try:
        code, events, text = restore(deck, new_server)
        assert code == 0, text[-3000:]
        assert "the target has no tablespace fast" in outputs(events, "preflight")
        assert "restoring without tablespaces: the target has no fast" in \
            outputs(events, "restore")
        assert new_server.scalar("select count(*) from hot", dbname="shop") == 1
    finally:
        source.execute("drop database shop with (force)")
        source.execute("drop tablespace fast")
        shutil.rmtree(place, ignore_errors=True)


FORGED_CLUSTER = r"""
CREATE ROLE intruder;
ALTER ROLE intruder WITH LOGIN PASSWORD 'x\''; ALTER ROLE postgres WITH NOLOGIN; --';
CREATE ROLE boss;
ALTER ROLE boss WITH LOGIN;
GRANT postgres TO boss;
GRANT pg_execute_server_program TO boss;
"""


def test_a_forged_globals_file_cannot_reach_past_its_own_roles(make_pg_cluster) -> None:
    """A repository writer's globals file, on a server whose strings take backslashes."""
    import asyncio

    from tui.postgres.globals_file import parse_globals
    from tui.postgres.roles import create_roles, plan_roles, read_target
    from tui.snapshots.globals import build_file

    server = make_pg_cluster()
    server.execute("alter database postgres set standard_conforming_strings = off")
    text = build_file(header="forged", create=[], properties=[], cluster_text=FORGED_CLUSTER,
                      missing=())
    forged = parse_globals(text, "forged")
    target = asyncio.run(read_target(server.dsn()))

    plan = plan_roles(forged, ["intruder"], target)
    assert plan.powers == []
    asyncio.run(create_roles(server.dsn(), plan))
    assert server.scalar("select rolcanlogin from pg_roles where rolname = 'postgres'") is True
    assert server.scalar("select count(*) from pg_roles where rolname = 'intruder'") == 1

    # what a person must see before a role gets power over the server
    plan = plan_roles(forged, ["boss"], target)
    assert plan.powers == [
        "boss would be a member of postgres, a superuser of the target",
        "boss would be a member of pg_execute_server_program: it acts on the server's files "
        "or programs as the server's account"]
    shown = "\n".join(plan.describe())
    assert "2 memberships, 2 with powers over the server" in shown
    assert "boss: LOGIN, NO PASSWORD; member of postgres, pg_execute_server_program" in shown
