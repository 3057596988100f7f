"""Signed repository records: with `signed_by`, a manifest or verification record counts
only when a trusted key signed it, and for the very snapshot it names.

The attacks are the real ones, by someone who can write the repository but holds none of
the configured keys: an unsigned "verified" record, a manifest altered after signing, one
signed by the attacker's own key (unknown to drdeck, or known but not trusted), a signed
record copied beside another snapshot, and a signed base backup manifest replayed under a
new stamp. Real GnuPG homes, a real PostgreSQL cluster, real local repositories.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.catalog.inventory import read_cluster
from tui.catalog.layout import manifest_key, stamp_of, verification_key
from tui.catalog.manifest import Verification
from tui.catalog.signatures import Signing, signature_key, write_signed
from tui.config import ConfigInvalid, load_config_text
from tui.pitr.basebackup import base_manifest_key, read_base_backups
from tui.storage import LocalStore

from backup_support import Deck, local_repository, seed_app, write_config
from repo_support import fake_base_backup, fake_snapshot

CLUSTER, DATABASE = "prod", "app"
TAKEN = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def sign_in_place(store: LocalStore, key: str, signing: Signing) -> None:
    """Sign what a test helper wrote unsigned, as drdeck's writers sign theirs."""
    write_signed(store, key, store.read_bytes(key), signing)


def signed_snapshot(store: LocalStore, signing: Signing, taken: datetime = TAKEN) -> str:
    stamp = fake_snapshot(store, CLUSTER, DATABASE, taken)
    sign_in_place(store, manifest_key(CLUSTER, DATABASE, stamp), signing)
    return stamp


def record_for(stamp: str, store: LocalStore, *, ok: bool = True, how: str = "full",
               names: str | None = None) -> tuple[str, bytes]:
    manifest = json.loads(store.read_bytes(manifest_key(CLUSTER, DATABASE, stamp)))
    at = datetime.fromisoformat(manifest["finished_at"]) + timedelta(minutes=5)
    record = Verification(at=at.isoformat(), how=how, ok=ok, detail="restored", by="x@y",
                          duration_s=3.0, snapshot=names or f"{CLUSTER}/{DATABASE}/{stamp}",
                          sha256_stored=manifest["sha256_stored"]).to_json()
    return verification_key(CLUSTER, DATABASE, stamp, stamp_of(at)), record


@pytest.fixture
def keys(make_gpg_home):
    """drdeck's home (the backup key), and an attacker's home with a key of their own."""
    return make_gpg_home(), make_gpg_home(email="attacker@evil.invalid")


def test_only_records_the_trusted_key_signed_count(keys, tmp_path: Path) -> None:
    ours, attacker = keys
    store = LocalStore(tmp_path / "repo")
    trusted = Signing((ours.fingerprint,), str(ours.path))
    good = signed_snapshot(store, trusted)
    unsigned = fake_snapshot(store, CLUSTER, DATABASE, TAKEN + timedelta(days=1))
    forged = signed_snapshot(store, Signing((attacker.fingerprint,), str(attacker.path)),
                             TAKEN + timedelta(days=2))
    altered = signed_snapshot(store, trusted, TAKEN + timedelta(days=3))
    key = manifest_key(CLUSTER, DATABASE, altered)
    store.write_bytes(key, store.read_bytes(key).replace(b"1204332", b"1204333"))

    inventory = read_cluster(store, CLUSTER, signing=trusted)
    problems = {s.stamp: s.problem for s in inventory.snapshots}
    assert problems[good] is None
    assert "refused as forged: it is not signed" in problems[unsigned]
    assert f"signature is by key {attacker.fingerprint[-16:]}" in problems[forged]
    assert "not in drdeck's GnuPG home" in problems[forged]
    assert "its signature does not verify (signature bad)" in problems[altered]
    assert [s.stamp for s in inventory.complete()] == [good]
    # the newest usable one is what a restore of "latest" takes: never a forged one
    assert inventory.latest().stamp == good

    # the attacker's public key in drdeck's home (imported for encryption, say) earns
    # it no trust: only the fingerprints signed_by names count
    ours.gpg.import_keys(attacker.gpg.export_keys(attacker.fingerprint))
    problems = {s.stamp: s.problem for s in read_cluster(store, CLUSTER,
                                                         signing=trusted).snapshots}
    assert f"signed by {attacker.fingerprint}, which is not one of the keys signed_by " \
           "trusts" in problems[forged]

    # the same repository read without signed_by: everything counts (as before)
    assert len(read_cluster(store, CLUSTER).complete()) == 4


def test_a_verification_record_counts_only_signed_and_for_its_own_snapshot(
        keys, tmp_path: Path) -> None:
    ours, attacker = keys
    store = LocalStore(tmp_path / "repo")
    trusted = Signing((ours.fingerprint,), str(ours.path))
    first = signed_snapshot(store, trusted)
    second = signed_snapshot(store, trusted, TAKEN + timedelta(days=1))

    key, record = record_for(first, store, how="list")
    write_signed(store, key, record, trusted)  # the real one: counts
    key, record = record_for(first, store, how="full")
    store.write_bytes(key, record)  # a "full, ok" nobody signed
    key, record = record_for(second, store, how="full")
    write_signed(store, key, record, Signing((attacker.fingerprint,), str(attacker.path)))
    # the first snapshot's real, signed record, copied beside the second
    copied = verification_key(CLUSTER, DATABASE, second, "20261201T000000Z")
    key, record = record_for(first, store, how="full", names=f"{CLUSTER}/{DATABASE}/{first}")
    write_signed(store, copied, record, trusted)

    by_stamp = {s.stamp: s for s in read_cluster(store, CLUSTER, signing=trusted).snapshots}
    assert by_stamp[first].last_verification.how == "list"
    assert by_stamp[first].refused_verifications == 1
    assert by_stamp[second].last_verification is None
    assert by_stamp[second].refused_verifications == 2


def test_a_base_backup_counts_only_signed_at_its_own_stamp_and_encrypted_if_required(
        keys, tmp_path: Path) -> None:
    ours, _ = keys
    store = LocalStore(tmp_path / "repo")
    trusted = Signing((ours.fingerprint,), str(ours.path))
    good = fake_base_backup(store, CLUSTER, TAKEN)
    sign_in_place(store, base_manifest_key(CLUSTER, good), trusted)
    unsigned = fake_base_backup(store, CLUSTER, TAKEN + timedelta(days=1), start_segment=20)
    # the good backup's manifest and signature replayed under a newer stamp
    replayed = stamp_of(TAKEN + timedelta(days=2))
    for name in ("manifest.json", "manifest.json.sig", "base.tar"):
        store.write_bytes(f"{CLUSTER}/base/{replayed}/{name}",
                          store.read_bytes(f"{CLUSTER}/base/{good}/{name}"))

    problems = {stamp: problem for _, stamp, problem in
                read_base_backups(store, CLUSTER, trusted)}
    assert problems[good] == ""
    assert "refused as forged: it is not signed" in problems[unsigned]
    assert f"its stamp {good!r} is not the {replayed!r} its key says" in problems[replayed]
    # drdeck writes every backup of a cluster with gpg_recipients encrypted
    [(_, _, problem)] = [b for b in read_base_backups(store, CLUSTER, trusted, True)
                         if b[1] == good]
    assert "stored unencrypted, but this cluster encrypts its backups" in problem


def test_signed_by_takes_whole_fingerprints_only(keys) -> None:
    ours, _ = keys
    base = ('[repositories.r]\ntype = "local"\npath = "/srv/b"\n\n[clusters.prod]\n'
            'dsn = "host=/tmp dbname=app"\nrepository = "r"\n')
    spaced = " ".join(ours.fingerprint[i:i + 4] for i in range(0, 40, 4)).lower()
    config = load_config_text(base + f'signed_by = ["{spaced}"]\n')
    assert config.cluster("prod").signed_by == (ours.fingerprint,)
    for weak in (ours.fingerprint[-16:], "backup@example.com"):
        with pytest.raises(ConfigInvalid) as info:
            load_config_text(base + f'signed_by = ["{weak}"]\n', "drdeck.toml")
        assert f"drdeck.toml:8:14: signed_by[0] {weak!r} is not a whole key fingerprint" \
            in str(info.value)


def test_signed_backup_verify_and_restore_end_to_end(pg_cluster, keys, tmp_path: Path) -> None:
    """What an operator sees: backups signed as they are written, a tampered manifest
    refused by inventory and restore, and a host without the key refused before it dumps."""
    ours, attacker = keys
    seed_app(pg_cluster)
    repo = tmp_path / "repo"
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                          repository=local_repository(repo), gpg_home=ours.path,
                          recipients=[ours.fingerprint])
    config.write_text(config.read_text().replace(
        'databases = ["app"]', f'databases = ["app"]\nsigned_by = ["{ours.fingerprint}"]'))
    deck = Deck(config, tmp_path / "state")

    proc = deck.run("run", "snapshot-backup", "--headless")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"the manifest will be signed by {ours.fingerprint}" in proc.stdout
    store = LocalStore(repo)
    [manifest] = [o.key for o in store.list(f"{CLUSTER}/snapshots/") if o.key.endswith(".json")
                  and "verified" not in o.key]
    assert store.read_bytes(signature_key(manifest)).startswith(b"-----BEGIN PGP SIGNATURE")

    report = json.loads(deck.run("inventory", "--json").stdout)
    [snap] = report["clusters"][0]["snapshots"]
    assert snap["complete"] and snap["verified"]["ok"] and snap["refused_verifications"] == 0

    # a repository writer edits the manifest's row counts (say, to hide lost rows)
    edited = json.loads(store.read_bytes(manifest))
    edited["tables"]["public.pgbench_accounts"] = 99_000
    store.write_bytes(manifest, json.dumps(edited, indent=2).encode())
    proc = deck.run("inventory")
    assert "refused as forged: its signature does not verify" in proc.stdout
    proc = deck.run("run", "snapshot-restore", "--headless", "-p", "target_db=app_restored",
                    "--yes")
    assert proc.returncode != 0
    assert "refused as forged" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert pg_cluster.scalar("select count(*) from pg_database where datname like "
                             "'%app_restored%'") == 0

    # a host that has only the public key (the attacker's home, say) cannot write records
    # this cluster would trust: refused before pg_dump starts, nothing written
    attacker.gpg.import_keys(ours.gpg.export_keys(ours.fingerprint))
    shutil.rmtree(repo / CLUSTER / "snapshots")
    config.write_text(config.read_text().replace(str(ours.path), str(attacker.path)))
    proc = deck.run("run", "snapshot-backup", "--headless")
    assert proc.returncode == 1
    assert "holds the secret key of none of them" in proc.stdout
    assert not list(store.list(f"{CLUSTER}/snapshots/"))
