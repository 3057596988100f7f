"""Backup -> inventory -> verify -> restore -> compare, through the real CLI, on real services:
a PostgreSQL cluster, a GnuPG home, and an S3-protocol server or a local directory."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tui.catalog.manifest import Manifest, ManifestInvalid
from tui.postgres.binaries import pg_bin

from backup_support import (
    TEXTS,
    Deck,
    content_of,
    local_repository,
    s3_repository,
    seed_app,
    write_config,
)


@pytest.fixture(params=["s3", "local"])
def deck(request, pg_cluster, gpg_home, tmp_path: Path) -> Deck:
    seed_app(pg_cluster)
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        repository, env = s3_repository(endpoint, bucket), endpoint.environ()
    else:
        repository, env = local_repository(tmp_path / "repo"), {}
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster, repository=repository,
                          gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(config, tmp_path / "state", env)
    deck.kind = request.param
    deck.cluster = pg_cluster
    return deck


def only_snapshot(deck: Deck) -> dict:
    proc = deck.run("inventory", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [cluster] = report["clusters"]
    [snapshot] = cluster["snapshots"]
    return {"cluster": cluster, **snapshot}


def test_backup_inventory_verify_restore_compare(deck: Deck) -> None:
    before = content_of(deck.cluster, "app")

    proc, events = deck.run_json("run", "snapshot-backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert events[-1]["status"] == "succeeded"

    snap = only_snapshot(deck)
    assert snap["complete"] and snap["encrypted"] and snap["problem"] is None
    assert snap["cluster"]["rpo_state"] == "ok"
    assert snap["tables"] == 6 and snap["rows"] == 100_000 + 1 + 10 + 0 + len(before["texts"])\
        + 250
    assert snap["verified"]["how"] == "list" and snap["verified"]["ok"] is True

    proc, events = deck.run_json("run", "verify-backup", "-p", "full=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    snap = only_snapshot(deck)
    assert snap["verified"]["how"] == "full" and snap["verified"]["ok"] is True
    assert "every table's row count matches" in snap["verified"]["detail"]
    assert deck.cluster.scalar("select count(*) from pg_database where datname like "
                               "'drdeck_verify%'") == 0

    incident = datetime.now(UTC)
    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app_restored",
                                 "-p", f"incident_time={incident.isoformat()}", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rpo = next(e for e in events if e["event"] == "measure" and e["name"] == "achieved_rpo")
    taken = datetime.fromisoformat(snap["taken_at"])
    assert rpo["value"] == pytest.approx((incident - taken).total_seconds(), abs=0.01)
    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks["every table's row count matches the snapshot"] is True
    progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
    assert progress and progress[-1]["done"] == progress[-1]["total"]
    assert content_of(deck.cluster, "app_restored") == before
    assert events[-1]["rto_s"] is not None


def test_a_restore_refuses_an_existing_target_and_the_source(deck: Deck) -> None:
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    deck.cluster.execute("create database taken")

    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=taken", "--yes")
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert "database taken already exists" in error and "replace = true" in error
    assert [e["step"] for e in events if e["event"] == "step_started"] == ["preflight"]

    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app",
                                 "-p", "replace=true", "--yes")
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert "refusing to restore into app" in error
    assert deck.cluster.scalar("select count(*) from pgbench_accounts", dbname="app") == 100_000


def test_replace_drops_and_recreates_after_a_typed_confirmation(deck: Deck) -> None:
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    deck.cluster.execute("create database scratch")
    deck.cluster.execute("create table leftover(x int)", dbname="scratch")
    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=scratch",
                                 "-p", "replace=true")
    assert proc.returncode == 1, "without --yes nobody confirmed the drop"
    assert "asks for confirmation" in next(
        e for e in events if e["event"] == "step_finished" and e["status"] == "failed")["error"]
    assert deck.cluster.scalar("select count(*) from leftover", dbname="scratch") == 0

    proc, _ = deck.run_json("run", "snapshot-restore", "-p", "target_db=scratch",
                            "-p", "replace=true", "--yes")
    assert proc.returncode == 0, proc.stdout
    assert deck.cluster.scalar("select to_regclass('leftover') is null", dbname="scratch")
    assert deck.cluster.scalar("select count(*) from texts", dbname="scratch") == 7


# --- compression: pg_dump's, as the repository says; gpg never compresses again -----------


def the_manifest(repo: Path) -> tuple[Path, dict]:
    [path] = (repo / "prod" / "snapshots" / "app").glob("*.json")
    return path, json.loads(path.read_text())


def plain_dump(repo: Path, manifest: dict, gpg_home: Path, into: Path) -> bytes:
    """The stored dump, decrypted with gpg itself."""
    subprocess.run(["gpg", "--homedir", str(gpg_home), "--batch", "--quiet", "--decrypt",
                    "--output", str(into), str(repo / manifest["object"])], check=True)
    return into.read_bytes()


def archive_compression(dump: Path) -> str:
    """What the archive's own header says it is compressed with (`pg_restore --list`)."""
    listed = subprocess.run([pg_bin("pg_restore"), "--list", str(dump)], capture_output=True,
                            text=True, check=True).stdout
    return re.search(r"^;\s+Compression: (\S+)$", listed, re.MULTILINE)[1]


def outputs_of(events: list[dict], step: str) -> list[str]:
    return [e["line"] for e in events if e["event"] == "output" and e["step"] == step]


@pytest.fixture
def local_deck(pg_cluster, gpg_home, tmp_path: Path) -> Callable[[str], Deck]:
    """local_deck(repository settings): a Deck on a local repository, encrypted."""
    seed_app(pg_cluster)

    def make(settings: str = "") -> Deck:
        deck = Deck(write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                                 repository=local_repository(tmp_path / "repo") + settings,
                                 gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint]),
                    tmp_path / "state")
        deck.repo, deck.cluster, deck.gpg_home = tmp_path / "repo", pg_cluster, gpg_home.path
        return deck

    return make


@pytest.mark.parametrize("pg_major", [pytest.param(15, id="pg15")], indirect=True)
def test_pg_dump_15_compresses_with_its_default_and_the_manifest_says_gzip(
        pg_major, local_deck, tmp_path: Path) -> None:
    deck = local_deck()  # the repository's compression: zstd, its default
    proc, events = deck.run_json("run", "snapshot-backup")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr

    _, manifest = the_manifest(deck.repo)
    assert manifest["compression"] == "gzip" and manifest["format"] == 3
    version = manifest["pg_dump_version"]
    assert f"pg_dump {version} compresses with its default, gzip: zstd needs pg_dump 16 or " \
        "later" in outputs_of(events, "snapshot")
    plain_dump(deck.repo, manifest, deck.gpg_home, tmp_path / "app.dump")
    assert archive_compression(tmp_path / "app.dump") == "-1"  # 15's word for its default


def test_a_repository_with_compression_none_stores_an_uncompressed_dump(
        local_deck, tmp_path: Path) -> None:
    deck = local_deck('\ncompression = "none"')
    proc, events = deck.run_json("run", "snapshot-backup")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr

    _, manifest = the_manifest(deck.repo)
    assert manifest["compression"] == "none"
    assert 'pg_dump does not compress (the repository\'s compression = "none")' in \
        outputs_of(events, "snapshot")
    dump = plain_dump(deck.repo, manifest, deck.gpg_home, tmp_path / "app.dump")
    assert archive_compression(tmp_path / "app.dump") in ("0", "none")  # 15 says 0
    # the rows are in the dump as they are in the table, and gpg did not squeeze them
    for _, body in TEXTS:
        assert "\\" in body or body.encode() in dump  # COPY writes a backslash as two
    assert manifest["plaintext_size"] == len(dump) > 5_000_000  # gzip: about 300 kB
    assert manifest["stored_size"] > manifest["plaintext_size"]


def test_a_snapshot_whose_manifest_predates_compression_still_restores(
        local_deck, tmp_path: Path) -> None:
    deck = local_deck()
    before = content_of(deck.cluster, "app")
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    # the manifest as drdeck wrote it before it recorded the dump's compression
    path, manifest = the_manifest(deck.repo)
    assert manifest.pop("compression") == "gzip"
    path.write_text(json.dumps({**manifest, "format": 2}, indent=2, sort_keys=True) + "\n")

    snap = only_snapshot(deck)
    assert snap["complete"] and snap["problem"] is None
    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app_restored",
                                 "--yes")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks["every table's row count matches the snapshot"] is True
    assert content_of(deck.cluster, "app_restored") == before


def test_a_manifest_reads_its_compression_and_one_before_it_reads_as_gzip() -> None:
    where = "prod/snapshots/app/20261127T020000Z.json"
    written = json.loads(A_MANIFEST.to_json())
    assert written["format"] == 3 and written["compression"] == "zstd:3"
    assert Manifest.from_json(json.dumps(written).encode(), where).compression == "zstd:3"

    format_2 = {key: value for key, value in written.items() if key != "compression"}
    format_2["format"] = 2
    old = Manifest.from_json(json.dumps(format_2).encode(), where)
    assert old.compression == "gzip"
    assert json.loads(old.to_json()) == format_2, "written back as it was read"

    for data, why in [({**format_2, "compression": "gzip"}, "compression came with format 3"),
                      ({**written, "compression": "zstd:23"}, "compression must be gzip"),
                      ({**written, "compression": "brotli"}, "compression must be gzip"),
                      ({**written, "compression": 3}, "compression must be gzip")]:
        with pytest.raises(ManifestInvalid, match=why):
            Manifest.from_json(json.dumps(data).encode(), where)


A_MANIFEST = Manifest(
    cluster="prod", database="app", stamp="20261127T020000Z",
    object="prod/snapshots/app/20261127T020000Z.dump.gpg",
    started_at="2026-11-27T02:00:00+00:00", finished_at="2026-11-27T02:03:12+00:00",
    server_version="17.10", pg_dump_version="17.10", encrypted=True,
    recipients=("9C1F0A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6F",), plaintext_size=1024,
    stored_size=1100, sha256_stored="ab" * 32, sha256_plaintext="cd" * 32,
    tables={"public.orders": 12}, compression="zstd:3")
