"""drdeck.toml: discovery order, every kind of mistake at its line and column, the model,
and `set_value` editing a file without losing the operator's comments.

Expected positions are computed from the test's own source text (where the offending
key, header or element starts), not taken from the loader, so a wrong place fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tui.config import (
    ClusterConfig,
    Config,
    ConfigInvalid,
    Notify,
    Repository,
    Retention,
    Webhook,
    find_config,
    load_config,
    load_config_file,
    load_config_text,
    set_value,
)
from tui.errors import EXIT_INVALID, InvalidInput, Problem

SHOWN = "drdeck.toml"

FULL = """\
# drdeck configuration for the payments team
[repositories.offsite]
type = "s3"                     # s3 | local
bucket = "backups"
prefix = "/postgres/"
endpoint_url = "https://r2.example.com"
region = "eu-west-1"
storage_class = "STANDARD"
timeout = "10s"
# credentials come from the normal AWS chain (environment, profile), never from this file

[repositories.nearby]
type = "local"
path = "~/drdeck-backups"

[clusters.prod]
dsn = "postgresql://backup@db.internal/app"   # or dsn_env = "DATABASE_URL"
repository = "offsite"
databases = ["app", "billing"]
gpg_recipients = ["backup@example.com", "0xDEADBEEF"]
rpo = "1h"
rto = "4h"
retention = { daily = 30, weekly = 12, monthly = 12, monthly_storage_class = "GLACIER_IR" }

[clusters.staging]
dsn_env = "STAGING_DATABASE_URL"
repository = "nearby"

[gpg]
home = "~/.gnupg-backup"

[runbooks]
dirs = ["~/ops/runbooks", "local-runbooks"]

[journal]
url = "postgresql://journal@db.internal/drdeck"

[notify]
webhooks = [
  { url = "https://hooks.example.com/a", events = ["run_failed", "rpo_breach"] },
  { url = "https://hooks.example.com/b" },
]
"""

CLUSTER = '[clusters.prod]\ndsn = "postgresql://backup@db/app"\n'
S3 = '[repositories.offsite]\ntype = "s3"\nbucket = "backups"\n'
LOCAL = '[repositories.nearby]\ntype = "local"\npath = "/srv/backups"\n'


def pos(source: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of `needle` in `source`."""
    offset = -1
    for _ in range(nth):
        offset = source.index(needle, offset + 1)
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def problems(source: str) -> list[Problem]:
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(source, SHOWN)
    return info.value.problems


def assert_problem(source: str, needle: str, fragment: str, nth: int = 1) -> Problem:
    """Exactly one problem, placed at `needle`, whose message contains `fragment`."""
    found = problems(source)
    assert len(found) == 1, "\n".join(map(str, found))
    problem = found[0]
    assert fragment in problem.message, str(problem)
    assert (problem.line, problem.col) == pos(source, needle, nth), str(problem)
    assert str(problem) == f"{SHOWN}:{problem.line}:{problem.col}: {problem.message}"
    return problem


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $HOME, so that `~` expands somewhere known."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A working directory and a user config directory of the test's own; no $DRDECK_CONFIG."""
    cwd = tmp_path / "work"
    xdg = tmp_path / "xdg"
    cwd.mkdir()
    (xdg / "drdeck").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.delenv("DRDECK_CONFIG", raising=False)
    return {
        "cwd": cwd / "drdeck.toml",
        "user": xdg / "drdeck" / "drdeck.toml",
        "env": tmp_path / "from-env.toml",
        "explicit": tmp_path / "explicit.toml",
    }


def write_all(places: dict[str, Path]) -> None:
    for name, path in places.items():
        path.write_text(CLUSTER.replace("prod", name))


# --- discovery ----------------------------------------------------------------------------


def test_explicit_beats_everything(places: dict[str, Path], monkeypatch) -> None:
    write_all(places)
    monkeypatch.setenv("DRDECK_CONFIG", str(places["env"]))
    assert find_config(str(places["explicit"])) == places["explicit"]
    assert list(load_config(str(places["explicit"])).clusters) == ["explicit"]


def test_environment_beats_the_working_directory(places: dict[str, Path], monkeypatch) -> None:
    write_all(places)
    monkeypatch.setenv("DRDECK_CONFIG", str(places["env"]))
    assert find_config() == places["env"]
    assert list(load_config().clusters) == ["env"]


def test_working_directory_beats_the_user_config_dir(places: dict[str, Path]) -> None:
    write_all(places)
    assert find_config() == places["cwd"]
    assert list(load_config().clusters) == ["cwd"]


def test_user_config_dir_is_the_last_resort(places: dict[str, Path]) -> None:
    write_all(places)
    places["cwd"].unlink()
    assert find_config() == places["user"]
    config = load_config()
    assert list(config.clusters) == ["user"]
    assert config.path == places["user"]


def test_nothing_found_is_an_empty_config(places: dict[str, Path]) -> None:
    assert find_config() is None
    config = load_config()
    assert config.path is None
    assert config.clusters == {} and config.repositories == {}
    assert config.searched == (places["cwd"], places["user"])


def test_an_empty_environment_variable_counts_as_unset(places, monkeypatch) -> None:
    write_all(places)
    monkeypatch.setenv("DRDECK_CONFIG", "")
    assert find_config() == places["cwd"]


def test_an_explicit_file_must_exist(places: dict[str, Path]) -> None:
    write_all(places)  # the others existing does not save a typo
    with pytest.raises(InvalidInput, match=r"--config nope\.toml: no such file") as info:
        find_config("nope.toml")
    assert info.value.exit_code == EXIT_INVALID
    with pytest.raises(InvalidInput, match="is a directory"):
        load_config(str(places["cwd"].parent))


def test_the_environment_file_must_exist(places: dict[str, Path], monkeypatch) -> None:
    write_all(places)
    monkeypatch.setenv("DRDECK_CONFIG", "/nonexistent/drdeck.toml")
    with pytest.raises(InvalidInput, match=r"\$DRDECK_CONFIG=/nonexistent/drdeck.toml: no such"):
        load_config()


def test_an_explicit_path_expands_the_home_directory(home: Path, places) -> None:
    (home / "mine.toml").write_text(CLUSTER)
    assert find_config("~/mine.toml") == home / "mine.toml"


def test_problems_name_the_file_found(places: dict[str, Path]) -> None:
    places["cwd"].write_text("[clusters.prod]\n")
    with pytest.raises(ConfigInvalid) as info:
        load_config()
    assert str(info.value).startswith(f"{places['cwd']}:1:1: a cluster needs dsn")


# --- the model ----------------------------------------------------------------------------


def test_a_full_file_loads_into_the_model(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "etc" / "drdeck.toml"
    path.parent.mkdir()
    path.write_text(FULL)
    config = load_config_file(path)
    assert config.path == path
    assert config.repositories == {
        "offsite": Repository(
            "offsite", "s3", bucket="backups", prefix="postgres",
            endpoint_url="https://r2.example.com", region="eu-west-1",
            storage_class="STANDARD", timeout=10,
        ),
        "nearby": Repository("nearby", "local", path=home / "drdeck-backups"),
    }  # fmt: skip
    assert config.clusters["prod"] == ClusterConfig(
        name="prod",
        dsn="postgresql://backup@db.internal/app",
        repository="offsite",
        databases=("app", "billing"),
        gpg_recipients=("backup@example.com", "0xDEADBEEF"),
        rpo=3600.0,
        rto=4 * 3600.0,
        retention=Retention(30, 12, 12, "GLACIER_IR"),
    )
    assert config.clusters["prod"].encrypted
    assert config.clusters["staging"] == ClusterConfig(
        name="staging", dsn_env="STAGING_DATABASE_URL", repository="nearby"
    )
    assert not config.clusters["staging"].encrypted
    assert config.gpg_home == home / ".gnupg-backup"
    assert config.runbook_dirs == (home / "ops" / "runbooks", path.parent / "local-runbooks")
    assert config.journal_url == "postgresql://journal@db.internal/drdeck"
    assert config.notify == Notify((
        Webhook("https://hooks.example.com/a", ("run_failed", "rpo_breach")),
        Webhook("https://hooks.example.com/b"),
    ))  # fmt: skip
    assert config.repository_for("prod") is config.repositories["offsite"]
    assert config.repository_for(config.clusters["staging"]).type == "local"


def test_defaults() -> None:
    config = load_config_text(S3 + CLUSTER)
    assert config.path is None
    cluster = config.cluster()
    assert cluster.retention == Retention(daily=7, weekly=4, monthly=6)
    assert cluster.retention.monthly_storage_class is None
    assert (cluster.repository, cluster.dsn_env, cluster.rpo, cluster.rto) == (None,) * 4
    assert cluster.databases == () and cluster.gpg_recipients == ()
    repository = config.repositories["offsite"]
    assert repository.prefix == ""
    assert (repository.endpoint_url, repository.region, repository.storage_class) == (None,) * 3
    assert repository.timeout == 30  # botocore's own read timeout would be 60 s
    assert config.gpg_home is None and config.runbook_dirs == () and config.journal_url is None
    assert config.notify == Notify()


def test_an_empty_file_is_an_empty_config() -> None:
    assert load_config_text("# nothing yet\n") == Config()


def test_a_partial_retention_keeps_the_other_defaults() -> None:
    config = load_config_text(CLUSTER + "retention = { daily = 0, monthly = 24 }\n")
    assert config.cluster().retention == Retention(daily=0, weekly=4, monthly=24)


def test_retention_may_be_a_table_of_its_own() -> None:
    config = load_config_text(CLUSTER + "\n[clusters.prod.retention]\nweekly = 8\n")
    assert config.cluster().retention == Retention(weekly=8)


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "drdeck.toml"
    path.write_bytes(b"\xef\xbb\xbf" + CLUSTER.encode())
    assert list(load_config_file(path).clusters) == ["prod"]


# --- paths --------------------------------------------------------------------------------


def test_local_repository_paths(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "conf" / "drdeck.toml"
    path.parent.mkdir()
    path.write_text(
        '[repositories.a]\ntype = "local"\npath = "~/backups"\n'
        '[repositories.b]\ntype = "local"\npath = "relative/dir"\n'
        '[repositories.c]\ntype = "local"\npath = "/abs/dir"\n'
        '[gpg]\nhome = "gnupg"\n'
    )
    config = load_config_file(path)
    assert config.repositories["a"].path == home / "backups"
    assert config.repositories["b"].path == path.parent / "relative" / "dir"
    assert config.repositories["c"].path == Path("/abs/dir")
    assert config.gpg_home == path.parent / "gnupg"


@pytest.mark.parametrize("text", [
    '[runbooks]\ndirs = ["~nosuchuser-drdeck/runbooks"]\n',
    '[gpg]\nhome = "~nosuchuser-drdeck"\n',
    '[repositories.a]\ntype = "local"\npath = "~nosuchuser-drdeck/b"\n',
])
def test_a_home_directory_of_no_user_is_a_placed_problem(text: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        load_config_text(text)
    (problem,) = caught.value.problems
    assert "'~nosuchuser-drdeck' is no home directory on this machine" in problem.message
    assert problem.line == text.count("\n")


def test_a_repository_compresses_with_zstd_at_level_3_unless_told() -> None:
    config = load_config_text(
        '[repositories.a]\ntype = "local"\npath = "/abs/a"\n'
        '[repositories.b]\ntype = "s3"\nbucket = "b"\ncompression = "zstd"\n'
        'compression_level = 19\n'
        '[repositories.c]\ntype = "local"\npath = "/abs/c"\ncompression = "none"\n')
    found = {name: (repo.compression, repo.compression_level)
             for name, repo in config.repositories.items()}
    assert found == {"a": ("zstd", 3), "b": ("zstd", 19), "c": ("none", 3)}


@pytest.mark.parametrize("setting, expected", [
    ('compression = "gzip"', "compression 'gzip' is not one of: zstd, none"),
    ("compression = 3", "compression must be"),
    ("compression_level = 0", "compression_level must be a whole number from 1 to 19, not 0"),
    ("compression_level = 22", "from 1 to 19, not 22"),
    ('compression_level = "3"', "from 1 to 19, not '3'"),
    ("compression_level = true", "from 1 to 19, not True"),
])
def test_a_compression_it_cannot_use_is_a_placed_problem(setting: str, expected: str) -> None:
    text = f'[repositories.a]\ntype = "local"\npath = "/abs/a"\n{setting}\n'
    with pytest.raises(ConfigInvalid) as caught:
        load_config_text(text)
    (problem,) = caught.value.problems
    assert expected in problem.message, problem.message
    assert problem.line == 4


def test_relative_paths_follow_the_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "drdeck.toml").write_text(
        '[repositories.a]\ntype = "local"\npath = "backups"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = load_config_file(Path("conf/drdeck.toml"))
    assert config.repositories["a"].path == tmp_path / "conf" / "backups"
    assert config.repositories["a"].path.is_absolute()


# --- cluster() and repository_for() -------------------------------------------------------


def test_the_only_cluster_is_the_default() -> None:
    config = load_config_text(CLUSTER)
    assert config.cluster().name == "prod"
    assert config.cluster("prod") is config.cluster()


def test_no_clusters_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "drdeck.toml"
    path.write_text(S3)
    with pytest.raises(InvalidInput, match=f"no clusters in {path}"):
        load_config_file(path).cluster()


def test_no_clusters_and_no_file(places: dict[str, Path]) -> None:
    config = load_config()
    for name in (None, "prod"):
        with pytest.raises(InvalidInput) as info:
            config.cluster(name)
        message = str(info.value)
        assert "no drdeck.toml found; searched: " in message
        assert str(places["cwd"]) in message and str(places["user"]) in message


def test_several_clusters_need_a_name() -> None:
    config = load_config_text(CLUSTER + CLUSTER.replace("prod", "staging"))
    with pytest.raises(InvalidInput) as info:
        config.cluster()
    message = str(info.value)
    assert "prod, staging" in message
    assert "--cluster" in message and "-p cluster=" in message
    assert config.cluster("staging").name == "staging"


def test_an_unknown_cluster_lists_the_known_ones() -> None:
    config = load_config_text(CLUSTER + CLUSTER.replace("prod", "staging"))
    with pytest.raises(InvalidInput, match=r"no cluster named 'qa'.*known: prod, staging"):
        config.cluster("qa")


def test_repository_for_a_cluster_without_one() -> None:
    config = load_config_text(CLUSTER)
    with pytest.raises(InvalidInput, match=r"cluster 'prod' has no repository"):
        config.repository_for("prod")


# --- resolve_dsn --------------------------------------------------------------------------


def test_resolve_dsn_from_the_file() -> None:
    assert load_config_text(CLUSTER).cluster().resolve_dsn() == "postgresql://backup@db/app"


def test_resolve_dsn_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = load_config_text('[clusters.prod]\ndsn_env = "PROD_URL"\n').cluster()
    monkeypatch.setenv("PROD_URL", "postgresql://u:secret@db/app")  # a password is fine here
    assert cluster.resolve_dsn() == "postgresql://u:secret@db/app"
    assert cluster.resolve_dsn({"PROD_URL": "postgresql://other"}) == "postgresql://other"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_resolve_dsn_names_the_missing_variable(monkeypatch, value: str | None) -> None:
    cluster = load_config_text('[clusters.prod]\ndsn_env = "PROD_URL"\n').cluster()
    if value is None:
        monkeypatch.delenv("PROD_URL", raising=False)
    else:
        monkeypatch.setenv("PROD_URL", value)
    with pytest.raises(InvalidInput, match=r"\$PROD_URL, which is not set") as info:
        cluster.resolve_dsn()
    assert info.value.exit_code == EXIT_INVALID


# --- mistakes: syntax and reading ---------------------------------------------------------


def test_toml_syntax_error_uses_tomllibs_position() -> None:
    source = CLUSTER + "rpo = 1h\n"
    found = problems(source)
    assert len(found) == 1
    assert (found[0].line, found[0].col) == (3, 8)
    assert found[0].message.startswith("TOML syntax: ")
    assert "line 3" not in found[0].message  # the position is said once, up front
    with pytest.raises(tomllib.TOMLDecodeError, match=r"at line 3, column 8"):
        tomllib.loads(source)


def test_toml_syntax_error_at_the_end_of_the_file() -> None:
    found = problems(CLUSTER + 'databases = ["app"\n')
    assert len(found) == 1 and found[0].line == 3
    assert "end of the file" in found[0].message


def test_a_duplicate_table_is_a_syntax_error() -> None:
    source = CLUSTER + CLUSTER
    found = problems(source)
    assert len(found) == 1 and found[0].message.startswith("TOML syntax")
    assert found[0].line == pos(source, "[clusters.prod]", 2)[0]


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigInvalid, match=r"missing\.toml:1:1: no such file"):
        load_config_file(missing)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"# ok\n# \xff\xfe\n")
    with pytest.raises(ConfigInvalid, match=r"binary.toml:2:1: not UTF-8 text") as info:
        load_config_file(binary)
    assert isinstance(info.value, InvalidInput) and info.value.exit_code == EXIT_INVALID


# --- mistakes: unknown keys ---------------------------------------------------------------


def test_unknown_top_level_table_suggests_the_near_miss() -> None:
    source = '[cluster.prod]\ndsn = "postgresql://db/app"\n'
    assert_problem(source, "[cluster.prod]",
                   "unknown key 'cluster' in drdeck.toml (did you mean 'clusters'?)")  # fmt: skip


def test_unknown_top_level_key_without_a_near_miss() -> None:
    problem = assert_problem(CLUSTER + "[logging]\nlevel = 1\n", "[logging]",
                             "unknown key 'logging' in drdeck.toml")  # fmt: skip
    assert "did you mean" not in problem.message


def test_unknown_key_in_a_cluster_suggests_the_near_miss() -> None:
    source = CLUSTER + 'database = "app"\n'
    assert_problem(source, "database =",
                   "unknown key 'database' in [clusters.prod] (did you mean 'databases'?)")


def test_unknown_key_in_a_repository() -> None:
    source = S3 + 'acl = "private"\n'
    assert_problem(source, "acl", "unknown key 'acl' in [repositories.offsite]")


def test_a_key_of_the_other_repository_type() -> None:
    source = LOCAL + 'bucket = "x"\n'
    assert_problem(source, "bucket", 'bucket goes with type = "s3", not "local"')
    source = S3 + 'path = "/x"\n'
    assert_problem(source, "path", 'path goes with type = "local", not "s3"')


def test_unknown_key_in_retention_suggests_the_near_miss() -> None:
    source = CLUSTER + "retention = { daily = 3, montly = 2 }\n"
    assert_problem(source, "montly",
                   "unknown key 'montly' in retention (did you mean 'monthly'?)")


@pytest.mark.parametrize(
    ("table", "key"),
    [("gpg", "homedir"), ("runbooks", "dir"), ("journal", "dsn"), ("notify", "slack")],
)
def test_unknown_keys_in_the_small_tables(table: str, key: str) -> None:
    source = f'[{table}]\n{key} = "x"\n'
    assert_problem(source, f"{key} =", f"unknown key {key!r} in [{table}]")


# --- mistakes: types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle", "fragment"),
    [
        ("repository = true", "repository", "repository must be text, not true/false"),
        ('databases = "app"', "databases", "databases must be a list of database names, "
         "not text"),
        ("databases = [1]", "1]", "databases[0] must be text (a database name), not a number"),
        ('gpg_recipients = "me@example.com"', "gpg_recipients",
         "gpg_recipients must be a list of gpg recipients, not text"),
        ("retention = 30", "retention", "retention must be a table like"),
        ("rpo = 1970-01-01", "rpo", "rpo must be text, not a date/time"),
    ],
)  # fmt: skip
def test_wrong_types_in_a_cluster(line: str, needle: str, fragment: str) -> None:
    assert_problem(CLUSTER + line + "\n", needle, fragment)


def test_a_dsn_that_is_not_text() -> None:
    assert_problem("[clusters.prod]\ndsn = 5\n", "dsn", "dsn must be text, not a number")
    assert_problem("[clusters.prod]\ndsn_env = 5\n", "dsn_env",
                   "dsn_env must be text, not a number")


def test_clusters_must_be_a_table() -> None:
    assert_problem('clusters = "prod"\n', "clusters", "clusters must be a table, not text")


def test_a_cluster_must_be_a_table() -> None:
    source = "[clusters]\nprod = 1\n"
    assert_problem(source, "prod", "[clusters.prod] must be a table, not a number")


def test_a_cluster_name_must_fit_a_path() -> None:
    source = '[clusters."prod/eu"]\ndsn = "postgresql://db/app"\n'
    assert_problem(source, '[clusters."prod/eu"]', "cluster name 'prod/eu': use letters")


def test_wrong_types_in_the_small_tables() -> None:
    assert_problem("[gpg]\nhome = true\n", "home", "home must be text, not true/false")
    assert_problem('[runbooks]\ndirs = "x"\n', "dirs",
                   "dirs must be a list of directories, not text")
    assert_problem('[runbooks]\ndirs = ["a", ""]\n', '""',
                   "dirs[1] is empty: write a directory path")
    assert_problem("[journal]\nurl = 5\n", "url", "url must be text, not a number")


# --- mistakes: durations ------------------------------------------------------------------


def test_a_bad_duration() -> None:
    source = CLUSTER + 'rpo = "1 hour"\n'
    assert_problem(source, "rpo", "bad duration for rpo: '1 hour' is not a duration")


def test_a_duration_without_quotes() -> None:
    source = CLUSTER + "rto = 4\n"
    assert_problem(source, "rto", 'rto must be a duration in quotes, like "4s"')


# --- mistakes: clusters -------------------------------------------------------------------


def test_a_cluster_without_dsn_or_dsn_env() -> None:
    source = S3 + '\n[clusters.prod]\nrepository = "offsite"\n'
    assert_problem(source, "[clusters.prod]",
                   'a cluster needs dsn = "postgresql://..." or dsn_env = "VARIABLE"')


def test_a_cluster_with_both_dsn_and_dsn_env() -> None:
    source = CLUSTER + 'dsn_env = "DATABASE_URL"\n'
    assert_problem(source, "dsn_env", "give either dsn or dsn_env, not both")


def test_dsn_env_must_be_a_variable_name() -> None:
    source = '[clusters.prod]\ndsn_env = "$DATABASE_URL"\n'
    assert_problem(source, "dsn_env", "dsn_env '$DATABASE_URL' is not an environment variable")


def test_an_empty_dsn() -> None:
    assert_problem('[clusters.prod]\ndsn = ""\n', "dsn", "dsn is empty")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://backup:hunter2@db/app",
        "postgresql://backup@db/app?password=hunter2",
        "host=db user=backup password=hunter2 dbname=app",
        "host=db password = 'hunter 2'",
    ],
)
def test_a_password_in_a_dsn_is_refused(dsn: str) -> None:
    source = f'[clusters.prod]\ndsn = "{dsn}"\n'
    problem = assert_problem(source, "dsn", "dsn contains a password: put the password in "
                             "~/.pgpass or PGPASSWORD, or use dsn_env")
    assert "hunter" not in str(problem)  # the error itself must not show it


def test_a_password_in_the_journal_url_is_refused() -> None:
    source = '[journal]\nurl = "postgresql://drdeck:hunter2@db/journal"\n'
    problem = assert_problem(source, "url", "url contains a password")
    assert "hunter2" not in str(problem)


def test_an_unknown_repository_suggests_the_near_miss() -> None:
    source = S3 + LOCAL + CLUSTER + 'repository = "ofsite"\n'
    assert_problem(source, 'repository = "ofsite"', "unknown repository 'ofsite' "
                   "(did you mean 'offsite'? known: offsite, nearby)")


def test_an_unknown_repository_with_none_configured() -> None:
    source = CLUSTER + 'repository = "offsite"\n'
    assert_problem(source, "repository", "unknown repository 'offsite' (known: none)")


def test_a_broken_repository_is_reported_once() -> None:
    # the cluster names it: that is not a second mistake
    source = '[repositories.offsite]\ntype = "s3"\n' + CLUSTER + 'repository = "offsite"\n'
    assert_problem(source, "[repositories.offsite]", "an s3 repository needs bucket")


def test_duplicate_databases() -> None:
    source = CLUSTER + 'databases = ["app", "billing", "app"]\n'
    assert_problem(source, '"app"', "duplicate database 'app'", nth=2)


@pytest.mark.parametrize(
    ("recipients", "needle", "fragment"),
    [
        ('["a@example.com", ""]', '""', "gpg_recipients[1] is empty: write a key id"),
        ('["  "]', '"  "', "gpg_recipients[0] is empty"),
        ('["a@example.com", 42]', "42", "gpg_recipients[1] must be text (a key id, "
         "fingerprint or email), not a number"),
        ("[[\"a\"]]", '["a"]', "gpg_recipients[0] must be text"),
    ],
)  # fmt: skip
def test_invalid_gpg_recipients(recipients: str, needle: str, fragment: str) -> None:
    source = CLUSTER + f"gpg_recipients = {recipients}\n"
    assert_problem(source, needle, fragment)


# --- mistakes: retention ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [("-1", "-1"), ("1.5", "1.5"), ("true", "true"), ('"7"', "text")],
)
def test_bad_retention_counts(value: str, shown: str) -> None:
    source = CLUSTER + f"retention = {{ daily = 3, weekly = {value} }}\n"
    assert_problem(source, "weekly",
                   f"retention.weekly must be a whole number, 0 or more, not {shown}")


def test_retention_that_keeps_nothing() -> None:
    source = CLUSTER + "retention = { daily = 0, weekly = 0, monthly = 0 }\n"
    assert_problem(source, "retention", "retention keeps nothing")


def test_a_monthly_storage_class_needs_s3() -> None:
    source = LOCAL + CLUSTER + 'repository = "nearby"\n' + (
        'retention = { monthly_storage_class = "GLACIER_IR" }\n'
    )
    assert_problem(source, "monthly_storage_class",
                   "monthly_storage_class needs an s3 repository; 'nearby' is local")


# --- mistakes: repositories ---------------------------------------------------------------


def test_an_unknown_repository_type() -> None:
    source = '[repositories.offsite]\ntype = "gcs"\nbucket = "b"\n'
    assert_problem(source, "type", "type 'gcs' is not one of: s3, local")


def test_a_repository_without_a_type() -> None:
    source = '[repositories.offsite]\nbucket = "b"\n'
    assert_problem(source, "[repositories.offsite]", "missing required key 'type' (s3 or local)")


def test_s3_without_a_bucket() -> None:
    source = '\n[repositories.offsite]\ntype = "s3"\nprefix = "pg"\n'
    assert_problem(source, "[repositories.offsite]", 'an s3 repository needs bucket = "BUCKET"')


def test_local_without_a_path() -> None:
    source = '[repositories.nearby]\ntype = "local"\n'
    assert_problem(source, "[repositories.nearby]",
                   'a local repository needs path = "DIRECTORY"')


def test_local_with_an_empty_path() -> None:
    assert_problem('[repositories.nearby]\ntype = "local"\npath = ""\n', "path", "path is empty")


def test_an_endpoint_url_needs_a_scheme() -> None:
    source = S3 + 'endpoint_url = "minio.internal:9000"\n'
    assert_problem(source, "endpoint_url", "must start with http:// or https://")


@pytest.mark.parametrize(("value", "message"), [
    ('"0s"', "timeout must be between 1s and 1h"),
    ('"2h"', "timeout must be between 1s and 1h"),
    ("5", 'timeout must be a duration in quotes, like "5s"'),
    ('"soon"', "bad duration for timeout"),
])
def test_an_s3_timeout_must_be_a_sensible_duration(value: str, message: str) -> None:
    assert_problem(S3 + f"timeout = {value}\n", "timeout", message)


def test_a_timeout_goes_with_s3_only() -> None:
    source = '[repositories.nearby]\ntype = "local"\npath = "/b"\ntimeout = "5s"\n'
    assert_problem(source, "timeout", 'timeout goes with type = "s3", not "local"')


def test_a_repository_defined_inline() -> None:
    source = 'repositories = { offsite = { type = "s3" } }\n'
    assert_problem(source, "offsite", "an s3 repository needs bucket")


# --- mistakes: notify ---------------------------------------------------------------------


def test_webhooks_must_be_a_list() -> None:
    source = '[notify]\nwebhooks = "https://hooks"\n'
    assert_problem(source, "webhooks", "webhooks must be a list of tables")


def test_webhook_shapes() -> None:
    source = (
        "[notify]\nwebhooks = [\n"
        '  { url = "https://a", events = ["run_failed", 1] },\n'
        '  "https://b",\n'
        '  { events = ["run_failed"] },\n'
        '  { url = "https://c", event = ["x"] },\n'
        '  { url = "https://d", events = ["run.failed"] },\n'
        '  { url_env = "HOOK", url = "https://e" },\n'
        "]\n"
    )
    found = problems(source)
    expected = [
        (pos(source, "1]"), "events[1] must be text (an event name), not a number"),
        (pos(source, '"https://b"'), "each webhook must be a table, not text"),
        (pos(source, '{ events'), "a webhook needs url = \"https://...\" or url_env = "
         "\"VARIABLE\" (a webhook URL is a secret: prefer url_env)"),
        (pos(source, "event ="), "unknown key 'event' in a webhook (did you mean 'events'?)"),
        (pos(source, '"run.failed"'), "unknown event 'run.failed' (known: run_failed, "
         "rpo_breach, drill_overdue)"),
        (pos(source, '{ url_env'), "a webhook needs url = \"https://...\" or url_env = "
         "\"VARIABLE\" (a webhook URL is a secret: prefer url_env)"),
    ]
    assert [((p.line, p.col), p.message) for p in found] == expected


# --- all at once --------------------------------------------------------------------------


def test_every_problem_is_reported_in_file_order() -> None:
    source = (
        '[repositories.offsite]\ntype = "s3"\n'  # no bucket
        '[clusters.prod]\ndsn = "postgresql://u:pw@db/app"\nrpo = "soon"\n'
        'repository = "elsewhere"\n'
        "retention = { daily = -1 }\n"
    )
    found = problems(source)
    assert [(p.line, p.col) for p in found] == [
        pos(source, "[repositories.offsite]"),
        pos(source, "dsn ="),
        pos(source, "rpo"),
        pos(source, "repository ="),
        pos(source, "daily"),
    ]
    with pytest.raises(ConfigInvalid) as info:
        load_config_text(source, SHOWN)
    assert str(info.value) == "\n".join(str(p) for p in found)
    assert info.value.exit_code == EXIT_INVALID


# --- set_value ----------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, home: Path) -> Path:
    path = tmp_path / "drdeck.toml"
    path.write_text(FULL)
    return path


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "#" in line]


def test_set_value_replaces_a_value_and_keeps_comments(config_file: Path) -> None:
    set_value(config_file, ("clusters", "prod", "dsn"), "postgresql://backup@db2.internal/app")
    text = config_file.read_text()
    # the trailing comment on the replaced line survives too
    assert 'dsn = "postgresql://backup@db2.internal/app"   # or dsn_env' in text
    assert comment_lines(text) == [
        c.replace("db.internal/app", "db2.internal/app") for c in comment_lines(FULL)
    ]
    assert load_config_file(config_file).cluster("prod").dsn == (
        "postgresql://backup@db2.internal/app"
    )
    assert text.replace("db2.internal/app", "db.internal/app") == FULL  # nothing else moved


def test_set_value_creates_a_private_file_whatever_the_umask(tmp_path: Path) -> None:
    import stat

    path = tmp_path / "new" / "drdeck.toml"
    path.parent.mkdir()
    old = os.umask(0)
    try:
        set_value(path, ("clusters", "prod", "dsn"), "postgresql://backup@db.internal/app")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config_file(path).cluster("prod").dsn == "postgresql://backup@db.internal/app"


def test_set_value_adds_a_key_above_the_tables_trailing_comment(config_file: Path) -> None:
    set_value(config_file, ("repositories", "offsite", "prefix"), "pg")  # replaced
    set_value(config_file, ("repositories", "offsite", "region"), None)  # removed
    set_value(config_file, ("clusters", "staging", "rpo"), "15m")  # added
    text = config_file.read_text()
    assert comment_lines(text) == comment_lines(FULL)
    lines = text.splitlines()
    credentials = lines.index(next(line for line in lines if "credentials come" in line))
    assert lines[credentials - 1] == 'timeout = "10s"'
    assert 'dsn_env = "STAGING_DATABASE_URL"\nrepository = "nearby"\nrpo = "15m"\n' in text
    config = load_config_file(config_file)
    assert config.repositories["offsite"].prefix == "pg"
    assert config.repositories["offsite"].region is None
    assert config.cluster("staging").rpo == 900


def test_set_value_inside_an_inline_table(config_file: Path) -> None:
    set_value(config_file, ("clusters", "prod", "retention", "daily"), 14)
    text = config_file.read_text()
    assert "retention = { daily = 14, weekly = 12," in text
    assert comment_lines(text) == comment_lines(FULL)
    assert load_config_file(config_file).cluster("prod").retention.daily == 14


def test_set_value_creates_tables(config_file: Path) -> None:
    set_value(config_file, ("clusters", "qa", "dsn"), "postgresql://qa@db/app")
    set_value(config_file, ("clusters", "qa", "retention"), {"daily": 3})
    set_value(config_file, ("clusters", "qa", "databases"), ("app",))
    text = config_file.read_text()
    assert "[clusters.qa]" in text and "[clusters]\n" not in text
    assert '\n\n[clusters.qa]\ndsn = "postgresql://qa@db/app"\n' in text
    assert text.index("[clusters.qa]") < text.index("\n\n[gpg]")  # apart from the next table
    assert "retention = {daily = 3}" in text.replace("{ ", "{").replace(" }", "}")
    assert comment_lines(text) == comment_lines(FULL)
    qa = load_config_file(config_file).cluster("qa")
    assert (qa.dsn, qa.retention.daily, qa.databases) == ("postgresql://qa@db/app", 3, ("app",))


def test_set_value_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "drdeck.toml"
    set_value(path, ("repositories", "nearby"), {"type": "local", "path": tmp_path / "b"})
    set_value(path, ("gpg", "home"), "~/.gnupg-backup")
    config = load_config_file(path)
    assert config.repositories["nearby"].path == tmp_path / "b"
    text = path.read_text()
    assert text.startswith("[repositories.nearby]\n") and text.endswith('"\n')
    assert '\n\n[gpg]\nhome = "~/.gnupg-backup"\n' in text


def test_set_value_refuses_a_password_and_writes_nothing(config_file: Path) -> None:
    with pytest.raises(ConfigInvalid, match="dsn contains a password"):
        set_value(config_file, ("clusters", "prod", "dsn"), "postgresql://u:hunter2@db/app")
    assert config_file.read_text() == FULL
    assert sorted(p.name for p in config_file.parent.iterdir()) == ["drdeck.toml", "home"]


def test_set_value_validates_unless_told_not_to(config_file: Path) -> None:
    with pytest.raises(ConfigInvalid, match="unknown repository 'later'"):
        set_value(config_file, ("clusters", "prod", "repository"), "later")
    assert config_file.read_text() == FULL
    set_value(config_file, ("clusters", "prod", "repository"), "later", validate=False)
    assert 'repository = "later"' in config_file.read_text()


def test_set_value_keeps_the_mode_and_a_symbolic_link(tmp_path: Path, config_file: Path) -> None:
    config_file.chmod(0o640)
    link = tmp_path / "link.toml"
    link.symlink_to(config_file)
    set_value(link, ("clusters", "prod", "rto"), "2h")
    assert link.is_symlink()
    assert os.stat(config_file).st_mode & 0o777 == 0o640
    assert load_config_file(config_file).cluster("prod").rto == 7200


def test_set_value_below_a_value_that_is_not_a_table(config_file: Path) -> None:
    with pytest.raises(InvalidInput, match=r"clusters\.prod\.dsn is not a table"):
        set_value(config_file, ("clusters", "prod", "dsn", "host"), "x")


def test_set_value_on_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "drdeck.toml"
    path.write_text("[clusters.prod\n")
    with pytest.raises(ConfigInvalid, match=r"drdeck.toml:1:\d+: TOML syntax"):
        set_value(path, ("gpg", "home"), "x")


# --- any shape at all ---------------------------------------------------------------------

_LEAF = (
    st.text(max_size=12) | st.integers(-3, 40) | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["s3", "local", "1h"])
)  # fmt: skip
_VALUES = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["url", "events", "daily", "x"]), inner, max_size=3),
    max_leaves=6,
)
_PATHS = [
    ("repositories", "r", key)
    for key in ("type", "bucket", "prefix", "endpoint_url", "path", "region", "typo")
] + [
    ("clusters", "c", key)
    for key in ("dsn", "dsn_env", "repository", "databases", "gpg_recipients", "rpo",
                "retention")
] + [
    ("clusters", "c", "retention", "weekly"), ("clusters",), ("repositories", "r"),
    ("gpg", "home"), ("runbooks", "dirs"), ("journal", "url"), ("notify", "webhooks"),
    ("notify",),
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _VALUES), max_size=8))
def test_any_shape_gives_a_config_or_placed_problems(assignments) -> None:
    import tomlkit

    document: dict = {}
    for path, value in assignments:
        table = document
        for key in path[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                break
        else:
            table[path[-1]] = value
    try:
        source = tomlkit.dumps(document)
        tomllib.loads(source)
    except Exception:
        assume(False)
    try:
        load_config_text(source, SHOWN)
    except ConfigInvalid as exc:
        lines = source.count("\n") + 1
        assert exc.problems
        assert all(1 <= p.line <= lines and p.col >= 1 for p in exc.problems)


def test_importing_the_package_stays_cheap() -> None:
    code = (
        "import sys, tui.config\n"
        "heavy = {'tomlkit', 'platformdirs', 'tomllib', 'textual', 'boto3', 'psycopg'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"
