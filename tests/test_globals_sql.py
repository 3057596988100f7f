"""Reading pg_dump's and pg_dumpall's SQL: the roles a dump names, and a globals file.

The globals file comes from a repository that others can write, so what drdeck
would run from it is checked statement by statement. These tests feed the
readers the text pg_dump writes, and text an attacker would write.
"""

from __future__ import annotations

import pytest

from tui.postgres.dumpnames import names_in, worth_reading
from tui.postgres.globals_file import (
    GlobalsInvalid,
    Membership,
    membership_sql,
    parse_globals,
    role_sql,
)
from tui.postgres.sqltext import SqlSyntaxError, statements
from tui.postgres.staging import create_statement, property_statements
from tui.snapshots.globals import build_file, database_statements

SCHEMA = r"""
-- a comment; with a semicolon and GRANT x TO fake
CREATE FUNCTION public.f(a interval day to second) RETURNS integer
    LANGUAGE sql
    BEGIN ATOMIC
 SELECT 1;
END;
ALTER FUNCTION public.f(a interval day to second) OWNER TO app;
CREATE FUNCTION public.g() RETURNS text LANGUAGE plpgsql AS $body$
begin return 'GRANT ALL ON t TO dollar_fake; ALTER TABLE t OWNER TO dollar_fake'; end
$body$;
ALTER FUNCTION public.g() OWNER TO "Owner ""Quoted"" Here";
SET default_tablespace = fast_ssd;
CREATE TABLE public."TO x" (id integer, note text DEFAULT E'it''s \' TO fake');
ALTER TABLE public."TO x" OWNER TO app;
SET default_tablespace = '';
/* nested /* comment */ GRANT ALL ON t TO nested_fake; */
GRANT SELECT ON TABLE public."TO x" TO reporting, "Audit Team" WITH GRANT OPTION;
REVOKE ALL ON FUNCTION public.f(a interval day to second) FROM PUBLIC;
SET SESSION AUTHORIZATION grantor_role;
GRANT SELECT(id) ON TABLE public."TO x" TO auditor;
RESET SESSION AUTHORIZATION;
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES  TO reader;
CREATE POLICY p ON public."TO x" FOR SELECT TO policy_role USING ((id > 0));
CREATE USER MAPPING FOR mapped_role SERVER remote OPTIONS (user 'x');
\connect shop
"""


def test_the_roles_and_tablespaces_a_schema_names_and_nothing_else() -> None:
    named = names_in(statements(SCHEMA))
    assert named.roles == {"app", 'Owner "Quoted" Here', "reporting", "Audit Team",
                           "grantor_role", "auditor", "reader", "policy_role", "mapped_role"}
    assert named.tablespaces == {"fast_ssd"}


def test_skipping_what_cannot_name_a_role_reads_the_same_names() -> None:
    tricky = SCHEMA + r"""
CREATE TABLE t (a text DEFAULT E'\'; GRANT x TO skipped_fake; --', b text DEFAULT $$;$$);
CREATE VIEW v AS SELECT ';' AS "GRANT ALL ON t TO quoted_fake;" ;
GRANT SELECT ON t TO after_skip;
"""
    kept = list(statements(tricky, keep=worth_reading))
    assert names_in(kept) == names_in(statements(tricky))
    assert "after_skip" in names_in(kept).roles
    assert not any(s.starts("create", "table") for s in kept)


def test_statements_end_where_sql_ends_them() -> None:
    found = [s for s in statements(SCHEMA) if not s.is_meta]
    everything = list(statements(SCHEMA))
    begin_atomic = found.index(next(s for s in found if "BEGIN ATOMIC" in s.text))
    # BEGIN ATOMIC's inner ';' cuts the function in two: harmless, as neither piece is a
    # statement that names a role (its OWNER TO, after END, is read whole)
    assert [t.value for t in found[begin_atomic + 1].tokens] == ["end"]
    assert found[begin_atomic + 2].starts("alter", "function")
    dollar = next(s for s in found if "plpgsql" in s.text)
    assert "dollar_fake" in dollar.text and dollar.text.rstrip().endswith("$body$")
    assert everything[-1].is_meta


@pytest.mark.parametrize("broken", ["select 'never ends", 'select "never ends',
                                    "select $x$ never ends", "/* never ends"])
def test_unfinished_text_is_an_error_not_a_guess(broken: str) -> None:
    with pytest.raises(SqlSyntaxError):
        list(statements(broken))


DUMP_WITH_CREATE = """
CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'C';
ALTER DATABASE shop OWNER TO app;
\\connect shop
COMMENT ON DATABASE shop IS 'the shop''s data';
ALTER DATABASE shop SET search_path TO '$user', 'public';
ALTER ROLE app IN DATABASE shop SET work_mem TO '8MB';
ALTER ROLE app IN DATABASE other SET work_mem TO '1GB';
REVOKE CONNECT,TEMPORARY ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO reporting;
GRANT SELECT ON TABLE public.shop TO reporting;
"""
CLUSTER = """
SET default_transaction_read_only = off;
CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc'
    VALID UNTIL 'infinity' CONNECTION LIMIT -1;
CREATE ROLE reporting;
ALTER ROLE reporting WITH NOLOGIN;
CREATE ROLE "we""ird";
ALTER ROLE app SET statement_timeout TO '5min';
COMMENT ON ROLE app IS 'the application';
GRANT reporting TO app, "we""ird" WITH INHERIT TRUE, SET TRUE GRANTED BY postgres;
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
"""


def globals_text(create: list[str] | None = None, properties: list[str] | None = None,
                 cluster: str = CLUSTER) -> str:
    found_create, found_properties = database_statements(statements(DUMP_WITH_CREATE), "shop")
    return build_file(header="test", create=found_create if create is None else create,
                      properties=found_properties if properties is None else properties,
                      cluster_text=cluster, missing=())


def test_a_globals_file_reads_back_into_roles_memberships_and_the_database() -> None:
    parsed = parse_globals(globals_text(), "test")
    assert sorted(parsed.roles) == ["app", "reporting", 'we"ird']
    app = parsed.roles["app"]
    assert app.has_password and app.comment == "the application"
    assert app.settings == ["SET statement_timeout TO '5min'"]
    assert "SCRAM" not in app.describe() and "its password hash" in app.describe()
    assert parsed.memberships == [
        Membership("reporting", "app", "WITH INHERIT TRUE, SET TRUE", "postgres"),
        Membership("reporting", 'we"ird', "WITH INHERIT TRUE, SET TRUE", "postgres")]
    assert parsed.tablespaces == {"fast"}
    assert parsed.create_database.startswith('CREATE DATABASE :"create_database" WITH')
    # only the statements about this database, its name left to psql (or to drdeck)
    assert [p.split(" ")[0:2] for p in parsed.properties] == [
        ["ALTER", "DATABASE"], ["COMMENT", "ON"], ["ALTER", "DATABASE"], ["ALTER", "ROLE"],
        ["REVOKE", "CONNECT,TEMPORARY"], ["GRANT", "CONNECT"]]
    assert all(':"target_db"' in p for p in parsed.properties)
    assert not any("other" in p for p in parsed.properties)


def test_the_statements_drdeck_runs_quote_every_name() -> None:
    parsed = parse_globals(globals_text(), "test")
    assert role_sql(parsed.roles['we"ird']) == ['CREATE ROLE "we""ird"']
    assert role_sql(parsed.roles["app"])[1] == (
        "ALTER ROLE \"app\" WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc' "
        "VALID UNTIL 'infinity' CONNECTION LIMIT -1")
    membership = parsed.memberships[0]
    assert membership_sql(membership, grantor_exists=True).endswith('GRANTED BY "postgres"')
    assert "GRANTED BY" not in membership_sql(membership, grantor_exists=False)
    assert create_statement(parsed.create_database, 'drdeck_restore_1').startswith(
        'CREATE DATABASE "drdeck_restore_1" WITH TEMPLATE = template0')
    in_a_tablespace = parsed.create_database + " TABLESPACE = fast"
    assert create_statement(in_a_tablespace, "x", missing_tablespaces=frozenset({"fast"})) \
        == create_statement(parsed.create_database, "x")
    assert create_statement(in_a_tablespace, "x", missing_tablespaces=frozenset({"other"})
                            ).endswith("TABLESPACE = fast")
    run, left_out = property_statements(parsed.properties, "drdeck_restore_1", no_owner=True,
                                        roles={"app", "reporting"}, superusers={"postgres"})
    assert run[0] == "COMMENT ON DATABASE \"drdeck_restore_1\" IS 'the shop''s data'"
    assert len(left_out) == 3 and all("no_owner" in line for line in left_out)
    # a template database's flags and library-loading settings are read, never applied;
    # an existing superuser's settings are the target's own business
    odd = parse_globals(globals_text(properties=[
        'ALTER DATABASE :"target_db" IS_TEMPLATE = true;',
        'ALTER DATABASE :"target_db" SET session_preload_libraries TO \'evil\';',
        'ALTER ROLE postgres IN DATABASE :"target_db" SET search_path TO evil;']), "test")
    run, left_out = property_statements(odd.properties, "x", no_owner=False,
                                        roles={"postgres"}, superusers={"postgres"})
    assert run == [] and len(left_out) == 3


@pytest.mark.parametrize("forged", [
    'DROP DATABASE postgres',
    'ALTER DATABASE postgres OWNER TO evil',
    'ALTER DATABASE :"target_db" RENAME TO postgres; ALTER DATABASE :"target_db" OWNER TO x',
    'ALTER ROLE postgres PASSWORD \'x\'',
    'GRANT ALL ON DATABASE postgres TO evil',
    'COPY (select 1) TO PROGRAM \'id\'',
    'ALTER DATABASE :"target_db" SET x TO (select 1)',
    'ALTER DATABASE :"target_db" SET TABLESPACE pg_global',
    'CREATE DATABASE :"target_db"',
    'GRANT CONNECT ON DATABASE :"target_db", prod TO evil',
    'REVOKE CONNECT ON DATABASE :"target_db", prod FROM PUBLIC',
    'COMMENT ON DATABASE :"target_db" IS E\'x\\\' \'',
])
def test_a_forged_database_part_is_refused_whole(forged: str) -> None:
    text = globals_text(properties=[f"{statement};" for statement in forged.split("; ")])
    with pytest.raises(GlobalsInvalid, match=r"unexpected statement|outside its part"):
        parse_globals(text, "repo/x.globals.sql")


@pytest.mark.parametrize("forged", [
    "ALTER ROLE app WITH LOGIN CONNECTION LIMIT (select 1);",
    "ALTER ROLE app WITH SUPERUSER PASSWORD (select 'x');",
    "ALTER ROLE ghost WITH SUPERUSER;",
    "ALTER ROLE app SET search_path TO (select 1);",
    "GRANT reporting TO app WITH SUPERUSER;",
    "ALTER ROLE app WITH PASSWORD E'\\'; ALTER ROLE postgres PASSWORD $$x$$; --';",
])
def test_a_forged_role_statement_is_refused(forged: str) -> None:
    with pytest.raises(GlobalsInvalid):
        parse_globals(globals_text(cluster=CLUSTER + forged), "repo/x.globals.sql")


def test_other_cluster_statements_are_never_run_only_listed() -> None:
    parsed = parse_globals(globals_text(cluster=CLUSTER + "COPY x TO PROGRAM 'id';\n"
                                        "DROP ROLE postgres;\n"), "test")
    assert len(parsed.skipped) == 2
    assert "COPY x TO PROGRAM" in parsed.skipped[0] and "id" not in parsed.skipped[0]
    assert "DROP ROLE postgres" in parsed.skipped[1]


def test_a_file_without_its_parts_is_not_a_globals_file() -> None:
    with pytest.raises(GlobalsInvalid, match="parts are missing"):
        parse_globals(CLUSTER, "test")


@pytest.mark.parametrize("forged", [
    'CREATE DATABASE :"create_database" WITH TEMPLATE = prod;',
    'CREATE DATABASE :"create_database" WITH TEMPLATE = template0 OWNER = evil;',
    'CREATE DATABASE :"create_database" WITH TEMPLATE = template0 IS_TEMPLATE = true;',
])
def test_a_forged_create_database_is_refused(forged: str) -> None:
    with pytest.raises(GlobalsInvalid, match="unexpected statement"):
        parse_globals(globals_text(create=[forged]), "repo/x.globals.sql")
