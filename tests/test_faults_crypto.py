"""Keys that are not quite right, met through the real CLI with real GnuPG: an expired key,
a passphrase-protected key without its passphrase, a home with the public key only (for a
snapshot restore and for a WAL fetch, each named as what it is).

A home holding somebody else's secret key is test_snapshot_faults.py's
(test_a_wrong_key_fails_the_fetch_and_leaves_nothing); not repeated here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.catalog.layout import dump_key

from backup_support import content_of, seed_app
from fault_support import (
    CLUSTER,
    DATABASE,
    TARGET,
    SnapshotDeck,
    expired_key,
    failure,
    fast_runbooks,
    files_under,
    local_repository_toml,
    output_lines,
    public_key_only,
    steps_started,
    workdir_of,
)
from harness.gpg import GpgHome, scratch_gpg_home
from harness.postgres import ScratchCluster, scratch_cluster

PASSPHRASE = "correct horse battery staple"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded() -> Iterator[ScratchCluster]:
    with scratch_cluster() as cluster:
        seed_app(cluster)
        yield cluster


@pytest.fixture(scope="module")
def runbooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return fast_runbooks(tmp_path_factory.mktemp("runbooks"))


@pytest.fixture(scope="module")
def protected_key() -> Iterator[GpgHome]:
    with scratch_gpg_home(passphrase=PASSPHRASE, email="locked@drdeck.invalid") as home:
        yield home


@pytest.fixture
def deck(seeded: ScratchCluster, runbooks, tmp_path: Path) -> Iterator[SnapshotDeck]:
    """A deck on the seeded cluster and a new local repository; no key yet."""
    deck = SnapshotDeck(tmp_path / "drdeck.toml", tmp_path / "state", cluster=seeded,
                        repository=local_repository_toml(tmp_path / "repo"), runbooks=runbooks)
    yield deck
    seeded.execute(f"drop database if exists {TARGET} with (force)")


def assert_nothing_restored(deck: SnapshotDeck, events: list[dict]) -> None:
    assert "restore" not in steps_started(events)
    assert not deck.target_exists(), f"database {TARGET} was created"
    leftovers = [p for p in files_under(workdir_of(events))
                 if p.name.endswith((".dump", ".partial"))]
    assert leftovers == []


def repository_files(deck: SnapshotDeck) -> list[Path]:
    return files_under(deck.config.parent / "repo")


# --- an expired key ------------------------------------------------------------------------


def test_an_expired_key_refuses_the_backup_before_anything_is_stored(deck: SnapshotDeck):
    with expired_key() as old:
        deck.configure(gpg_home=old.path, recipients=[old.fingerprint])

        proc, events = deck.backup()

    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, attempts = failure(events)
    assert (step, attempts) == ("snapshot", 1)  # no retry finds a fresh key
    assert f"the key for {old.fingerprint!r}" in error
    assert "cannot encrypt (expired, revoked or without an encryption subkey)" in error
    assert repository_files(deck) == []  # no dump, no manifest, no partial file


def test_a_snapshot_taken_before_its_key_expired_still_restores(deck: SnapshotDeck):
    before = content_of(deck.cluster, DATABASE)
    with expired_key() as old:
        deck.configure(gpg_home=old.path, recipients=[old.fingerprint])
        old.fake_time("20200101T120000")  # back when the key was good
        proc, _ = deck.backup()
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        old.fake_time(None)  # today: the key has expired since

        proc, _ = deck.restore()

    # an expired key still decrypts what was encrypted for it: refusing would lose backups
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert content_of(deck.cluster, TARGET) == before


# --- a passphrase-protected key ------------------------------------------------------------


def test_a_protected_key_without_its_passphrase_says_to_set_drdeck_gpg_passphrase(
        deck: SnapshotDeck, protected_key: GpgHome):
    before = content_of(deck.cluster, DATABASE)
    deck.configure(gpg_home=protected_key.path, recipients=[protected_key.fingerprint])
    deck.env = {"DRDECK_GPG_PASSPHRASE": PASSPHRASE}  # the backup's own verification decrypts
    proc, _ = deck.backup()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr

    deck.env = {"DRDECK_GPG_PASSPHRASE": ""}
    proc, events = deck.restore()

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, attempts = failure(events)
    assert (step, attempts) == ("fetch", 1)
    assert "the secret key needs a passphrase: set DRDECK_GPG_PASSPHRASE" in error, error
    assert PASSPHRASE not in proc.stdout + proc.stderr
    assert_nothing_restored(deck, events)

    deck.env = {"DRDECK_GPG_PASSPHRASE": "not the passphrase"}
    proc, events = deck.restore()

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, _ = failure(events)
    assert step == "fetch"
    assert "the passphrase in DRDECK_GPG_PASSPHRASE does not unlock the secret key" in error
    assert "not the passphrase" not in proc.stdout + proc.stderr
    assert_nothing_restored(deck, events)

    deck.env = {"DRDECK_GPG_PASSPHRASE": PASSPHRASE}
    proc, events = deck.restore()

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert content_of(deck.cluster, TARGET) == before
    assert PASSPHRASE not in proc.stdout + proc.stderr


# --- the public key only ------------------------------------------------------------------------


def test_a_home_with_the_public_key_only_cannot_restore_and_says_so(deck: SnapshotDeck,
                                                                    gpg_home: GpgHome):
    deck.configure(gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    proc, _ = deck.backup()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    [stamp] = [s["id"] for s in deck.inventory()["snapshots"]]

    with public_key_only(gpg_home.path, gpg_home.fingerprint) as public:
        # what a restore machine has when only the encrypting side was set up
        deck.configure(gpg_home=public.path)
        proc, events = deck.restore()

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, attempts = failure(events)
    assert (step, attempts) == ("fetch", 1)
    where = deck.config.parent / "repo" / dump_key(CLUSTER, DATABASE, stamp, True)
    assert error.startswith(str(where)), error
    assert f"no secret key to decrypt this snapshot in GnuPG home {public.path}" in error
    assert "import the private key it was encrypted for" in error
    assert any("fetching" in line for line in output_lines(events, "fetch"))
    assert_nothing_restored(deck, events)


def test_wal_fetch_with_a_protected_key_takes_drdeck_gpg_passphrase(
        deck: SnapshotDeck, protected_key: GpgHome, tmp_path: Path):
    """A PITR is as unattended as a snapshot restore: its WAL decrypts the same way."""
    deck.configure(gpg_home=protected_key.path, recipients=[protected_key.fingerprint])
    segment = tmp_path / "000000010000000000000042"
    segment.write_bytes(os.urandom(64 * 1024))
    pushed = deck.run("wal", "push", "--cluster", CLUSTER, str(segment))
    assert pushed.returncode == 0, pushed.stderr

    deck.env = {"DRDECK_GPG_PASSPHRASE": ""}
    fetched = deck.run("wal", "fetch", "--cluster", CLUSTER, segment.name,
                       str(tmp_path / "without"))
    assert fetched.returncode == 126, fetched.stderr  # fatal to recovery, not its end
    assert "the secret key needs a passphrase: set DRDECK_GPG_PASSPHRASE" in fetched.stderr
    assert not (tmp_path / "without").exists()

    deck.env = {"DRDECK_GPG_PASSPHRASE": PASSPHRASE}
    fetched = deck.run("wal", "fetch", "--cluster", CLUSTER, segment.name,
                       str(tmp_path / "with"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "with").read_bytes() == segment.read_bytes()
    assert PASSPHRASE not in fetched.stdout + fetched.stderr


def test_wal_fetch_without_the_secret_key_names_the_wal_file_not_a_snapshot(
        deck: SnapshotDeck, gpg_home: GpgHome, tmp_path: Path):
    deck.configure(gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    segment = tmp_path / "000000010000000000000043"
    segment.write_bytes(os.urandom(64 * 1024))
    pushed = deck.run("wal", "push", "--cluster", CLUSTER, str(segment))
    assert pushed.returncode == 0, pushed.stderr

    with public_key_only(gpg_home.path, gpg_home.fingerprint) as public:
        deck.configure(gpg_home=public.path)
        fetched = deck.run("wal", "fetch", "--cluster", CLUSTER, segment.name,
                           str(tmp_path / "restored"))

    assert fetched.returncode == 126, fetched.stderr  # fatal to recovery, not its end
    assert (f"no secret key to decrypt WAL file {segment.name} in GnuPG home {public.path}; "
            "import the private key it was encrypted for (see the cluster's gpg_recipients "
            "in drdeck.toml)") in fetched.stderr, fetched.stderr
    assert "snapshot" not in fetched.stderr and "manifest" not in fetched.stderr
    assert "Traceback" not in fetched.stdout + fetched.stderr
    assert not (tmp_path / "restored").exists()
