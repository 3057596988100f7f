"""Shared fixtures: real PostgreSQL, real GnuPG and a real S3-protocol server.

Nothing here is a mock. The helpers live in tests/harness/ so benchmarks and
scripts can use them too; this file only turns them into fixtures.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.gpg import GpgHome, scratch_gpg_home
from harness.postgres import (
    MissingBinaries,
    ScratchCluster,
    majors_to_test,
    pg_bin_dir_for,
    scratch_cluster,
)
from harness.s3 import S3Endpoint, moto_s3_server

# Tests using these start PostgreSQL servers: marked slow, so that
# `pytest -m "not slow"` gives a quick run.
SLOW_FIXTURES = {"pg_cluster", "make_pg_cluster", "pg_major"}


@pytest.fixture(autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own state directory: work directories and the journal."""
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("DRDECK_JOURNAL", raising=False)
    monkeypatch.delenv("DRDECK_CONFIG", raising=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# --- PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def make_pg_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., ScratchCluster]]:
    """Factory: make_pg_cluster(archive=False, wal_segsize_mb=None, start=True, **settings).

    Each call initdb's a new cluster in its own temporary directory and starts
    it on a free loopback port; all are stopped and removed after the test.
    In a test using pg_major, that major's programs make them.
    """
    if "pg_major" in request.fixturenames:
        request.getfixturevalue("pg_major")  # first, whatever order the test names them in
    with contextlib.ExitStack() as clusters:

        def make(
            archive: bool = False,
            wal_segsize_mb: int | None = None,
            start: bool = True,
            **settings: Any,
        ) -> ScratchCluster:
            return clusters.enter_context(
                scratch_cluster(
                    archive=archive, wal_segsize_mb=wal_segsize_mb, start=start, **settings
                )
            )

        yield make


@pytest.fixture
def pg_cluster(make_pg_cluster: Callable[..., ScratchCluster]) -> ScratchCluster:
    """A running throwaway cluster: .dsn(), .execute(sql), .scalar(sql), .stop()..."""
    return make_pg_cluster()


@pytest.fixture(params=majors_to_test(), ids=lambda major: f"pg{major}")
def pg_major(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Each major version in turn: the distribution's and those `make pg-binaries` installs.

    $DRDECK_PG_BIN points at that major's programs for the test, so the clusters it makes
    (pg_cluster, make_pg_cluster, scratch_cluster) and the drdeck it runs use them. Narrow
    it with ``@pytest.mark.parametrize("pg_major", [17, 18], indirect=True)``. Missing
    programs fail the test, saying to run `make pg-binaries`: it never passes unrun.
    """
    major = request.param
    try:
        bin_dir = pg_bin_dir_for(major)
    except MissingBinaries as exc:
        missing = str(exc)
    else:
        monkeypatch.setenv("DRDECK_PG_BIN", str(bin_dir))
        return major
    pytest.fail(missing, pytrace=False)


# --- GnuPG --------------------------------------------------------------------------


@pytest.fixture
def make_gpg_home() -> Iterator[Callable[..., GpgHome]]:
    """Factory: make_gpg_home(passphrase=None, email=...) -> GpgHome, one key each."""
    with contextlib.ExitStack() as homes:

        def make(passphrase: str | None = None, **kwargs: Any) -> GpgHome:
            return homes.enter_context(scratch_gpg_home(passphrase, **kwargs))

        yield make


@pytest.fixture
def gpg_home(make_gpg_home: Callable[..., GpgHome]) -> GpgHome:
    """A GnuPG home with one unprotected EdDSA/cv25519 key: .path, .gpg, .fingerprint."""
    return make_gpg_home()


# --- S3 -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    """moto's S3 server on 127.0.0.1 for the whole session (one per xdist worker)."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_client(s3_server: S3Endpoint) -> Any:
    """A boto3 S3 client bound to s3_server, with explicit dummy credentials."""
    return s3_server.client()


@pytest.fixture
def s3_bucket(s3_server: S3Endpoint) -> Iterator[str]:
    """The name of a new, empty bucket, deleted (with its objects) after the test."""
    name = s3_server.create_bucket()
    yield name
    s3_server.delete_bucket(name)


@pytest.fixture
def s3_env(s3_server: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """Point this process's environment (and so its subprocesses) at s3_server."""
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server
