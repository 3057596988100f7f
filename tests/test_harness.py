"""Smoke tests for the real-service fixtures in conftest.py and tests/harness/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tui.errors import DrdeckError
from tui.postgres.binaries import (
    data_dir_major_version,
    pg_bin,
    require_binaries_for,
    server_major_version,
)
from tui.postgres.cluster import LocalCluster

from harness.postgres import MissingBinaries, pg_bin_dir_for
from harness.s3 import S3Endpoint

# --- PostgreSQL ---------------------------------------------------------------------


def test_pg_cluster_accepts_connections(pg_cluster):
    with psycopg.connect(pg_cluster.dsn()) as conn:
        version = conn.execute("show server_version_num").fetchone()[0]
    assert int(version) >= 150000
    assert pg_cluster.scalar("select current_setting('listen_addresses')") == "127.0.0.1"


def test_pg_cluster_over_tcp_and_sql_helpers(pg_cluster):
    pg_cluster.execute("create table t (n int); insert into t select generate_series(1, 3)")
    with psycopg.connect(pg_cluster.dsn(tcp=True)) as conn:
        assert conn.execute("select sum(n) from t").fetchone()[0] == 6
    assert pg_cluster.execute("select n from t order by n") == [(1,), (2,), (3,)]
    assert pg_cluster.execute("vacuum t") == []


def test_archiving_cluster_archives_a_switched_segment(make_pg_cluster):
    cluster = make_pg_cluster(archive=True, wal_segsize_mb=1)
    assert cluster.scalar("show wal_segment_size") == "1MB"
    cluster.execute("create table t as select generate_series(1, 1000) as n")
    segment = cluster.scalar("select pg_walfile_name(pg_current_wal_lsn())")
    cluster.execute("select pg_switch_wal()")

    archived = cluster.archive_dir / segment
    deadline = time.monotonic() + 30
    # done when the archiver says so: the file exists while cp is still writing it
    while (cluster.scalar("select last_archived_wal from pg_stat_archiver") or "") < segment \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert archived.exists(), f"{segment} not archived; log:\n{cluster.log_file.read_text()}"
    assert archived.stat().st_size == 1024 * 1024


def test_settings_and_restart(make_pg_cluster):
    cluster = make_pg_cluster(max_connections=17, application_name="it's a test")
    assert cluster.scalar("show max_connections") == "17"
    cluster.stop()
    assert not cluster.is_running()
    cluster.configure(max_connections=18)
    cluster.start()
    assert cluster.is_running()
    assert cluster.scalar("show max_connections") == "18"


def test_two_clusters_side_by_side(make_pg_cluster):
    first, second = make_pg_cluster(), make_pg_cluster()
    assert first.port != second.port
    assert first.scalar("select system_identifier from pg_control_system()") != second.scalar(
        "select system_identifier from pg_control_system()"
    )


def test_initdb_refuses_a_non_empty_directory(pg_cluster):
    again = LocalCluster(
        pg_cluster.data_dir, pg_cluster.port, pg_cluster.socket_dir, pg_cluster.log_file
    )
    with pytest.raises(DrdeckError, match="not empty"):
        again.init()


def test_start_failure_quotes_the_log(make_pg_cluster):
    cluster = make_pg_cluster(start=False, shared_buffers="not-a-size")
    with pytest.raises(DrdeckError, match="shared_buffers") as failure:
        cluster.start()
    assert str(cluster.log_file) in str(failure.value)


def test_overlong_socket_path_is_refused(tmp_path):
    with pytest.raises(DrdeckError, match="107 bytes"):
        LocalCluster(tmp_path / "data", 5432, Path("/tmp") / ("s" * 100), tmp_path / "log")


def test_binaries_are_found():
    assert os.access(pg_bin("initdb"), os.X_OK)
    assert server_major_version() >= 15


def test_missing_binary_names_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("DRDECK_PG_BIN", str(tmp_path))
    with pytest.raises(DrdeckError, match=r"DRDECK_PG_BIN=.* has no initdb.*apt-get install"):
        pg_bin("initdb")


def test_pg_bin_pointing_nowhere_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("DRDECK_PG_BIN", str(tmp_path / "missing"))
    with pytest.raises(DrdeckError, match="is not a directory"):
        pg_bin("pg_dump")


def test_a_data_directory_of_another_major_is_refused_before_pg_ctl(tmp_path):
    have = server_major_version()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text(f"{have + 80}\n")
    cluster = LocalCluster(data_dir, 5432, tmp_path, tmp_path / "postgres.log")

    with pytest.raises(DrdeckError) as refused:
        cluster.start()

    programs = Path(pg_bin("postgres")).parent
    assert str(refused.value) == (
        f"{data_dir} is a PostgreSQL {have + 80} data directory, but the server programs in "
        f"{programs} are PostgreSQL {have}: a server starts only a data directory of its own "
        f"major version. To use it, install PostgreSQL {have + 80}'s server programs (on "
        f"Debian 'apt-get install postgresql-{have + 80}', which puts them in "
        f"/usr/lib/postgresql/{have + 80}/bin) and set DRDECK_PG_BIN to their directory")
    assert not cluster.log_file.exists(), "refused before pg_ctl ran"


def test_a_data_directory_of_the_programs_major_or_none_yet_is_let_through(tmp_path):
    require_binaries_for(tmp_path)  # no PG_VERSION: the server says what is wrong
    (tmp_path / "PG_VERSION").write_text(f"{server_major_version()}\n")
    require_binaries_for(tmp_path)
    # the server's account owns a data directory: its PG_VERSION is never followed
    (tmp_path / "PG_VERSION").unlink()
    (tmp_path / "elsewhere").write_text("99\n")
    (tmp_path / "PG_VERSION").symlink_to(tmp_path / "elsewhere")
    assert data_dir_major_version(tmp_path) is None
    require_binaries_for(tmp_path)


def test_a_major_the_setup_did_not_install_says_to_run_make_pg_binaries():
    with pytest.raises(MissingBinaries, match=r"PostgreSQL 99's programs are not installed "
                                              r".*run `make pg-binaries`"):
        pg_bin_dir_for(99)


# --- GnuPG --------------------------------------------------------------------------


def test_gpg_home_encrypts_and_decrypts(gpg_home):
    secret = os.urandom(4096)
    encrypted = gpg_home.gpg.encrypt(secret, gpg_home.fingerprint, armor=False)
    assert encrypted.ok, encrypted.status
    decrypted = gpg_home.gpg.decrypt(encrypted.data)
    assert decrypted.ok, decrypted.status
    assert decrypted.data == secret


def test_gpg_wrong_passphrase_really_fails(make_gpg_home):
    home = make_gpg_home(passphrase="correct horse")
    encrypted = home.gpg.encrypt(b"payload", home.fingerprint, armor=False)
    assert home.gpg.decrypt(encrypted.data, passphrase="correct horse").data == b"payload"
    # With the agent caching nothing, the right passphrase just used does not help.
    assert not home.gpg.decrypt(encrypted.data, passphrase="wrong").ok


def test_gpg_home_env_works_for_a_subprocess(gpg_home):
    listing = subprocess.run(
        ["gpg", "--batch", "--list-secret-keys", "--with-colons"],
        env={**os.environ, **gpg_home.env()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert gpg_home.fingerprint in listing.stdout


# --- S3 -----------------------------------------------------------------------------


def test_s3_put_list_paginated_get(s3_client, s3_bucket):
    keys = [f"wal/{i:04d}" for i in range(12)]
    for key in keys:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())

    pages = list(
        s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket, Prefix="wal/", PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(page["Contents"]) for page in pages] == [5, 5, 2]
    assert [item["Key"] for page in pages for item in page["Contents"]] == keys
    assert s3_client.get_object(Bucket=s3_bucket, Key="wal/0007")["Body"].read() == b"wal/0007"


def test_s3_buckets_are_fresh_per_test(s3_client, s3_bucket):
    assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_s3_env_reaches_a_subprocess(s3_env: S3Endpoint, s3_bucket):
    script = (
        "import boto3; c = boto3.client('s3'); "
        f"c.put_object(Bucket='{s3_bucket}', Key='from-child', Body=b'hi')"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert s3_env.client().get_object(Bucket=s3_bucket, Key="from-child")["Body"].read() == b"hi"
