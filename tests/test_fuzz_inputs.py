"""Hypothesis over what drdeck reads from outside: manifests and verification records in a
repository, repository listings with odd keys, timestamps and time zones, and parameter
values and DSNs full of quotes, semicolons, newlines and shell metacharacters.

The properties: a clear answer (a value, or the one documented exception) and never a
traceback; odd keys are ignored or reported, never fatal to the good snapshots beside
them; and a value reaches a command or a query as data: the tests read back what
actually ran (the shell writes its arguments to files, the query returns the bound
value) and look for a canary file and a canary table that an injection would create.
Runbooks and configuration files are fuzzed in test_runbook_fuzz.py and test_config.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tui.catalog.inventory import read_cluster
from tui.catalog.layout import dump_key, manifest_key, parse_key
from tui.catalog.manifest import Manifest, ManifestInvalid, Verification
from tui.catalog.report import inventory_json, retention_classes
from tui.commands.inventory import _print_cluster
from tui.config import ClusterConfig
from tui.runbook.params import parse_timestamp
from tui.storage.local import LocalStore

from cli_support import REPO, drdeck, json_events
from repo_support import fake_snapshot

QUICK = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
# through the real CLI (a process each): a few examples, each one a whole run
CLI = settings(max_examples=10, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow,
                                      HealthCheck.function_scoped_fixture])

NOW = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)


# --- manifests and verification records ----------------------------------------------------

VALID = json.loads(Manifest(
    cluster="prod", database="app", stamp="20261127T020000Z",
    object="prod/snapshots/app/20261127T020000Z.dump.gpg",
    started_at="2026-11-27T02:00:00+00:00", finished_at="2026-11-27T02:03:12+00:00",
    server_version="15.18", pg_dump_version="15.18", encrypted=True,
    recipients=("9C1F0A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6F",), plaintext_size=1024,
    stored_size=1100, sha256_stored="ab" * 32, sha256_plaintext="cd" * 32,
    tables={"public.orders": 1_204_332, "billing.\"Invoice Lines\"": 250},
).to_json())

ODD_VALUES = st.sampled_from([
    None, True, False, 0, -1, 2**70, 1.5, float("inf"), "", "x", "2026-11-27T02:00:00",
    "2026-11-27", "2026-11-27T02:00:00Z", "2026-11-27T02:00:00+14:00", "not a date",
    [], ["a", 1], {}, {"a": "b"}, {"t": True}, {"t": -5}, "\u0000", "🦆",
]) | JSON


@st.composite
def mutated_manifest(draw: st.DrawFn) -> bytes:
    data: dict[str, Any] = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        key = draw(st.sampled_from(sorted(VALID)))
        if op == "replace":
            data[key] = draw(ODD_VALUES)
        elif op == "delete":
            data.pop(key, None)
        elif op == "add":
            data[draw(st.text(max_size=12))] = draw(ODD_VALUES)
        else:
            data = {"manifest": data} if draw(st.booleans()) else [data]  # type: ignore[assignment]
            break
    return json.dumps(data, allow_nan=True).encode()


RAW_MANIFESTS = (
    mutated_manifest()
    | JSON.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
    | st.integers(1, 30_000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(1, 30_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth)
)


def assert_manifest_or_invalid(raw: bytes) -> Manifest | None:
    where = "s3://bucket/prod/snapshots/app/20261127T020000Z.json"
    try:
        manifest = Manifest.from_json(raw, where)
    except ManifestInvalid as exc:
        assert str(exc).startswith(f"{where}: "), exc
        assert str(exc).isprintable(), f"one line, no control characters: {exc!r}"
        return None
    # what the inventory, retention and reports then do with it
    assert manifest.taken_at.tzinfo is not None
    assert isinstance(manifest.dump_seconds, float)
    assert isinstance(manifest.total_rows, int)
    assert isinstance(manifest.encrypted, bool)
    assert all(isinstance(r, str) for r in manifest.recipients)
    assert Manifest.from_json(manifest.to_json(), where) == manifest
    return manifest


def test_the_valid_manifest_is_read() -> None:
    assert assert_manifest_or_invalid(json.dumps(VALID).encode()) is not None


@QUICK
@given(RAW_MANIFESTS)
def test_a_manifest_is_a_manifest_or_manifest_invalid_never_another_exception(
        raw: bytes) -> None:
    assert_manifest_or_invalid(raw)


@pytest.mark.parametrize("field, value, why", [
    ("started_at", "2026-11-27T02:00:00", "no time zone"),
    ("finished_at", "2026-11-27", "no time zone"),
    ("encrypted", "no", "true or false"),
    ("recipients", "ABCDEF", "list of key fingerprints"),
    ("tables", {"public.orders": True}, "row counts"),
    ("tables", {"public.orders": -1}, "row counts"),
    ("server_version", 15, "must be text"),
])
def test_manifest_values_the_inventory_cannot_use_are_refused(field, value, why) -> None:
    data = {**VALID, field: value}
    with pytest.raises(ManifestInvalid, match=why):
        Manifest.from_json(json.dumps(data).encode(), "m.json")


VALID_VERIFICATION = {"at": "2026-11-27T02:20:00+00:00", "how": "full", "ok": True,
                      "detail": "every table's row count matches", "by": "dba@host",
                      "duration_s": 12.5}


@st.composite
def mutated_verification(draw: st.DrawFn) -> bytes:
    data = dict(VALID_VERIFICATION)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(VALID_VERIFICATION)))
        if draw(st.booleans()):
            data[key] = draw(ODD_VALUES)
        else:
            data.pop(key, None)
    return json.dumps(data).encode()


@QUICK
@given(mutated_verification() | RAW_MANIFESTS)
def test_a_verification_record_is_read_or_ignored_never_an_exception(raw: bytes) -> None:
    from tui.journal.report import measured_text

    record = Verification.from_json(raw)
    if record is not None:
        # the inventory sorts by `at`, prints it and shows `ok` as a mark
        assert isinstance(record.at, str) and record.when.tzinfo is not None
        assert isinstance(record.ok, bool)
        assert all(isinstance(v, str) for v in (record.how, record.detail, record.by))
        # the month report prints its duration, and its JSON must be JSON
        assert measured_text(record.duration_s)
        json.dumps(record.duration_s, allow_nan=False)


@pytest.mark.parametrize("duration", ["NaN", "Infinity", "-Infinity", "-1", "1e308"])
def test_a_verification_with_an_impossible_duration_is_ignored_by_every_reader(
        tmp_path: Path, duration: str) -> None:
    from tui.catalog.layout import stamp_of, verification_key

    now = datetime.now(UTC)
    store = LocalStore(tmp_path / "repo")
    taken = now - timedelta(hours=2)
    good = fake_snapshot(store, "prod", "app", taken, verified=("full", True))  # at +20 min
    at = now - timedelta(minutes=30)
    raw = json.dumps({**VALID_VERIFICATION, "at": at.isoformat(), "duration_s": 0.0})
    raw = raw.replace('"duration_s": 0.0', f'"duration_s": {duration}').encode()
    assert Verification.from_json(raw) is None
    store.write_bytes(verification_key("prod", "app", good, stamp_of(at)), raw)
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{tmp_path / "repo"}"'
                      '\n\n[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\n'
                      'repository = "backups"\ndatabases = ["app"]\nrpo = "1d"\n')
    month = (taken + timedelta(minutes=20)).strftime("%Y-%m")
    for args in (["inventory"], ["report", "--month", month],
                 ["report", "--month", month, "--format", "json"]):
        proc = drdeck("--config", str(config), *args, state_dir=tmp_path)
        assert proc.returncode == 0 and "internal error" not in proc.stderr, proc.stderr
        assert "Infinity" not in proc.stdout and "NaN" not in proc.stdout
    report = json.loads(proc.stdout)
    assert [r["ok"] for r in report["repository_verifications"]] == [True]


# --- base backup manifests -----------------------------------------------------------------

VALID_BASE = {
    "cluster": "prod", "stamp": "20261127T020000Z",
    "object": "prod/base/20261127T020000Z/base.tar", "started_at": "2026-11-27T02:00:00+00:00",
    "stopped_at": "2026-11-27T02:03:00+00:00", "start_lsn": "0/2000028",
    "stop_lsn": "0/2000138", "timeline": 1, "system_identifier": "7312345678901234567",
    "server_version": "15.18", "wal_segment_size": 1 << 20, "encrypted": False,
    "recipients": [], "plaintext_size": 15, "stored_size": 15, "sha256_stored": "ab" * 32,
    "sha256_plaintext": "ab" * 32, "format": 1, "kind": "base", "compression": "none",
    "tablespaces": [{"oid": 16390, "name": "fast", "location": "/srv/fast",
                     "object": "prod/base/20261127T020000Z/16390.tar", "plaintext_size": 10,
                     "stored_size": 10, "sha256_stored": "cd" * 32,
                     "sha256_plaintext": "cd" * 32}],
}

# what the window's arithmetic divides by, indexes with or compares
BASE_ODD_VALUES = ODD_VALUES | st.sampled_from([
    "1", "0/0", "FFFFFFFF/FFFFFFFF", "-1/0", "0x1/0", " 0/1", "1/", "/1", "0/2000027",
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 1 << 19, 1 << 31, 3 << 20,
    0xFFFFFFFF, 0x100000000, float("nan"),
])


@st.composite
def mutated_base_manifest(draw: st.DrawFn) -> bytes:
    data: Any = json.loads(json.dumps(VALID_BASE))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "nest"]))
        key = draw(st.sampled_from(sorted(VALID_BASE)))
        if op == "replace":
            data[key] = draw(BASE_ODD_VALUES)
        elif op == "delete":
            data.pop(key, None)
        elif op == "add":
            data[draw(st.text(max_size=12))] = draw(BASE_ODD_VALUES)
        else:
            data = {"manifest": data} if draw(st.booleans()) else [data]
            break
    return json.dumps(data, allow_nan=True).encode()


RAW_BASE_MANIFESTS = (
    mutated_base_manifest()
    | JSON.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
    | st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(1, 30_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth)
)


def assert_base_or_refused(raw: bytes) -> Any:
    from tui.pitr.basebackup import BaseBackupFailed, BaseManifest

    where = "s3://bucket/prod/base/20261127T020000Z/manifest.json"
    try:
        manifest = BaseManifest.from_json(raw, where)
    except BaseBackupFailed as exc:
        assert str(exc).startswith(f"{where}: not a valid base backup manifest ("), exc
        assert str(exc).isprintable(), f"one line, no control characters: {exc!r}"
        return None
    # what the recovery window and the inventory then do with it
    assert manifest.stopped.tzinfo is not None
    assert manifest.first_segment.number <= manifest.last_segment.number + 1
    assert len(manifest.first_segment.name) == len(manifest.last_segment.name) == 24
    assert BaseManifest.from_json(manifest.to_json(), where) == manifest
    return manifest


def test_the_valid_base_backup_manifest_is_read() -> None:
    assert assert_base_or_refused(json.dumps(VALID_BASE).encode()) is not None


@QUICK
@given(RAW_BASE_MANIFESTS)
def test_a_base_backup_manifest_is_one_or_refused_never_another_exception(raw: bytes) -> None:
    assert_base_or_refused(raw)


@pytest.mark.parametrize("field, value, why", [
    ("wal_segment_size", 0, "power of two"),
    ("wal_segment_size", 3 << 20, "power of two"),
    ("timeline", "1", "timeline must be a whole number"),
    ("timeline", 0, "timeline must be a whole number"),
    ("timeline", True, "timeline must be a whole number"),
    ("start_lsn", "-1/0", "start_lsn is not an LSN"),
    ("stop_lsn", "0/1", "stop_lsn is before start_lsn"),
    ("stopped_at", "2026-11-27T02:03:00", "no time zone"),
    ("stored_size", -1, "whole number"),
    ("recipients", "ABCDEF", "list of key fingerprints"),
    ("format", True, "format True of kind 'base'"),
    ("tablespaces", {"oid": 16390}, "tablespaces must be a list"),
    ("tablespaces", [VALID_BASE["tablespaces"][0]] * 2, "listed twice"),
    ("tablespaces", [{"oid": 16390}], "exactly the fields"),
    ("tablespaces", [VALID_BASE["tablespaces"][0] | {"oid": 0}], "oid must be a whole"),
    ("tablespaces", [VALID_BASE["tablespaces"][0] | {"oid": True}], "oid must be a whole"),
    ("tablespaces", [VALID_BASE["tablespaces"][0] | {"name": "x\x1b]0;owned\x07"}],
     "1 to 63 printable"),
    ("tablespaces", [VALID_BASE["tablespaces"][0] | {"name": "n" * 64}], "1 to 63 printable"),
    ("tablespaces", [VALID_BASE["tablespaces"][0] | {"location": "srv/fast"}],
     "printable absolute path"),
    ("tablespaces", [VALID_BASE["tablespaces"][0] | {"stored_size": -1}], "whole number"),
])
def test_base_backup_values_the_window_cannot_use_are_refused(field, value, why) -> None:
    from tui.pitr.basebackup import BaseBackupFailed, BaseManifest

    with pytest.raises(BaseBackupFailed, match=why):
        BaseManifest.from_json(json.dumps({**VALID_BASE, field: value}).encode(), "m.json")


def pitr_repository(root: Path, bad: bytes) -> tuple[LocalStore, str, str, str]:
    """A good snapshot and a good base backup with its WAL, then a newer base backup whose
    manifest is `bad`."""
    from tui.pitr.basebackup import base_manifest_key

    from repo_support import fake_base_backup

    store = LocalStore(root)
    snapshot = fake_snapshot(store, "prod", "app", NOW - timedelta(hours=1))
    good = fake_base_backup(store, "prod", NOW - timedelta(hours=3))
    bad_stamp = fake_base_backup(store, "prod", NOW - timedelta(hours=2), segments=0)
    (root / base_manifest_key("prod", bad_stamp)).write_bytes(bad)
    return store, snapshot, good, bad_stamp


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RAW_BASE_MANIFESTS)
def test_a_bad_base_backup_beside_good_backups_hides_nothing(raw: bytes) -> None:
    from tui.catalog.report import pitr_json
    from tui.commands.inventory import _print_pitr
    from tui.pitr.window import picture

    with tempfile.TemporaryDirectory() as tmp:
        store, snapshot, good, _ = pitr_repository(Path(tmp), raw)
        inventory = inventory_everything(store)
        seen = picture(store, "prod", read_commit_times=False)
        json.dumps(pitr_json(seen))
        with contextlib.redirect_stdout(io.StringIO()):
            _print_pitr(seen)
    assert [s.stamp for s in inventory.complete("app")] == [snapshot]
    listed = {stamp: (manifest, problem) for manifest, stamp, problem in seen.base_backups}
    assert len(listed) == 2 and listed[good][0] is not None and not listed[good][1]
    assert any(w.base.stamp == good for w in seen.windows), seen.problems


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({**VALID_BASE, "wal_segment_size": 0}).encode(),
    json.dumps({**VALID_BASE, "timeline": "1"}).encode(),
    # a good manifest padded past what is read of one
    json.dumps({**VALID_BASE, "stamp": "20261127T023000Z"}).encode() + b" " * (2 << 20),
], ids=["deeply nested", "segment size 0", "timeline as text", "two MiB"])
def test_drdeck_inventory_status_and_pitr_name_the_bad_base_backup_and_list_the_rest(
        tmp_path: Path, raw: bytes) -> None:
    _, snapshot, good, bad_stamp = pitr_repository(tmp_path / "repo", raw)
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{tmp_path / "repo"}"'
                      '\n\n[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\n'
                      'repository = "backups"\ndatabases = ["app"]\nrpo = "1d"\n')
    runs = {
        "inventory": drdeck("--config", str(config), "inventory", state_dir=tmp_path),
        "json": drdeck("--config", str(config), "inventory", "--json", state_dir=tmp_path),
        "status": drdeck("--config", str(config), "status", state_dir=tmp_path),
        "pitr": drdeck("--config", str(config), "run", "pitr-restore", "-p", "target=latest",
                       "-p", f"data_dir={tmp_path / 'restored'}", "-p", "port=1", "--json",
                       state_dir=tmp_path),
    }
    for name, proc in runs.items():
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, \
            f"{name}: {proc.stderr}"
    assert runs["inventory"].returncode == 0, runs["inventory"].stderr
    text = runs["inventory"].stdout
    bad = next(line for line in text.splitlines() if f"base backup {bad_stamp}" in line)
    assert "INCOMPLETE" in bad and "manifest.json" in bad and good not in bad
    assert f"base backup {good}  ended" in text and snapshot[:8] in text.replace("-", "")
    [cluster] = json.loads(runs["json"].stdout)["clusters"]
    assert [s["id"] for s in cluster["snapshots"] if s["complete"]] == [snapshot]
    assert [b["id"] for b in cluster["pitr"]["base_backups"] if b["complete"]] == [good]
    assert "wal" in runs["status"].stdout and runs["status"].returncode in (0, 1, 2)
    checks = {e["name"]: e["ok"] for e in json_events(runs["pitr"].stdout)
              if e["event"] == "check"}
    assert checks.get("target inside the recoverable window") is True, runs["pitr"].stdout


# --- repository listings with odd keys ------------------------------------------------------

# a path segment a file system holds: no "/", no NUL (backslashes and control
# characters included: drdeck's own keys refuse them, a listing must skip them)
SEGMENT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
    min_size=1, max_size=16,
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)

STAMPS = st.sampled_from([
    "20261127T020000Z", "20261127T020000z", "2026112T020000Z", "20261127T0200000Z",
    "20261399T999999Z", "00000000T000000Z", "20260230T120000Z", "٢٠٢٦١١٢٧T٠٢٠٠٠٠Z",
    "２０２６１１２７T０２００００Z", "20261127 020000Z", "latest",
]) | SEGMENT

SUFFIXES = st.sampled_from([
    ".dump.gpg", ".dump", ".json", ".json~", ".JSON", ".dump.gpg.bak", ".dump.gpg.partial",
    ".verified/20261127T030000Z.json", ".verified/20261127T030000Z-abc123.json",
    ".verified/x.json", ".verified/20261127T030000Z.json/deeper", "", ".gpg",
])


@st.composite
def odd_key(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["near", "random", "deep", "elsewhere"]))
    if kind == "near":  # almost the layout
        database = draw(st.sampled_from(["app", "App", "app ", "ápp", "日本"]) | SEGMENT)
        return f"prod/snapshots/{database}/{draw(STAMPS)}{draw(SUFFIXES)}"
    if kind == "deep":
        parts = draw(st.lists(SEGMENT, min_size=1, max_size=6))
        return "prod/snapshots/" + "/".join(parts) + draw(SUFFIXES)
    if kind == "elsewhere":
        top = draw(st.sampled_from(["prod2", "prod ", "Prod", "prod/snapshot", "prod/wal"]))
        return f"{top}/{draw(SEGMENT)}/{draw(STAMPS)}{draw(SUFFIXES)}"
    return "prod/snapshots/" + draw(SEGMENT)


ODD_CONTENT = (st.binary(max_size=64) | mutated_manifest() | mutated_verification()
               | st.just(json.dumps(VALID).encode()))


def plant(root: Path, key: str, content: bytes) -> bool:
    """Write a file under the repository by hand, as a stray upload or a person would."""
    path = root / key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            return False
        path.write_bytes(content)
    except OSError:  # a file where a folder must be, a name too long: not this example
        return False
    return True


def inventory_everything(store: LocalStore) -> Any:
    """What `drdeck inventory` (text and --json) and retention do with a listing."""
    inventory = read_cluster(store, "prod", 3600)
    cluster = ClusterConfig(name="prod", repository="backups", databases=("app",), rpo=3600)
    retention_classes(inventory, cluster, NOW)
    json.dumps(inventory_json([inventory], NOW))
    with contextlib.redirect_stdout(io.StringIO()):
        _print_cluster(inventory, NOW)
    return inventory


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(odd_key(), ODD_CONTENT), min_size=1, max_size=6))
def test_odd_keys_beside_a_good_snapshot_are_ignored_or_reported(planted) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = LocalStore(root)
        good = fake_snapshot(store, "prod", "app", NOW - timedelta(hours=1))
        good_keys = {dump_key("prod", "app", good, True), manifest_key("prod", "app", good)}
        for key, content in planted:
            if key in good_keys or any(k.startswith(key + "/") or key.startswith(k + "/")
                                       for k in good_keys):
                continue
            plant(root, key, content)

        inventory = inventory_everything(store)

    assert inventory.error is None, inventory.error
    ours = [s for s in inventory.snapshots if (s.database, s.stamp) == ("app", good)]
    assert len(ours) == 1 and ours[0].complete, ours
    for snapshot in inventory.snapshots:
        # only what the layout names becomes a snapshot; anything else is left out
        assert parse_key(manifest_key("prod", snapshot.database, snapshot.stamp)) is not None
        assert snapshot.taken_at.tzinfo is not None
        assert snapshot.complete or snapshot.problem


@pytest.mark.parametrize("name", ["a\\b", "line\nbreak", "tab\there", "bell\x07"])
def test_a_stray_file_with_a_backslash_or_control_character_hides_nothing(
        tmp_path: Path, name: str) -> None:
    store = LocalStore(tmp_path)
    good = fake_snapshot(store, "prod", "app", NOW - timedelta(hours=1))
    assert plant(tmp_path, f"prod/snapshots/{name}/20261127T020000Z.dump", b"stray")

    inventory = inventory_everything(store)

    assert inventory.error is None, inventory.error
    assert [s.stamp for s in inventory.complete("app")] == [good]


@QUICK
@given(st.text(max_size=120) | st.builds(
    lambda c, d, s, r: f"{c}/snapshots/{d}/{s}{r}",
    SEGMENT | st.just("prod"), SEGMENT | st.just("app"), STAMPS, SUFFIXES))
def test_parse_key_names_a_piece_of_the_layout_or_nothing(key: str) -> None:
    parsed = parse_key(key)
    if parsed is None:
        return
    if parsed.part == "dump":
        assert key == dump_key(parsed.cluster, parsed.database, parsed.stamp, parsed.encrypted)
    elif parsed.part == "manifest":
        assert key == manifest_key(parsed.cluster, parsed.database, parsed.stamp)
    else:
        assert key.startswith(manifest_key(parsed.cluster, parsed.database, parsed.stamp)[:-5])
    from tui.catalog.layout import time_of
    assert time_of(parsed.stamp).tzinfo is UTC  # a real moment: the inventory shows its age


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(odd_key(), ODD_CONTENT), min_size=3, max_size=8))
def test_drdeck_inventory_over_odd_keys_answers_without_a_traceback(tmp_path: Path,
                                                                    planted) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        root = Path(tmp) / "repo"
        store = LocalStore(root)
        good = fake_snapshot(store, "prod", "app", datetime.now(UTC) - timedelta(minutes=5))
        naive = json.dumps({**VALID, "started_at": "2026-11-27T02:00:00"}).encode()
        known = [("prod/snapshots/app/20261399T999999Z.dump.gpg", b"stray"),  # near misses
                 ("prod/snapshots/db/20261127T020000Z.json", naive),
                 ("prod/snapshots/db/20261127T020000Z.dump.gpg", b"x" * 1100)]
        for key, content in [*known, *planted]:
            if not key.startswith(f"prod/snapshots/app/{good}"):
                plant(root, key, content)
        config = Path(tmp) / "drdeck.toml"
        config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{root}"\n\n'
                          '[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\n'
                          'repository = "backups"\ndatabases = ["app"]\nrpo = "1h"\n')
        for fmt in (["--json"], []):
            proc = drdeck("--config", str(config), "inventory", *fmt, state_dir=Path(tmp))
            assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, \
                proc.stderr
            assert proc.returncode == 0, proc.stderr
        [cluster] = json.loads(drdeck("--config", str(config), "inventory", "--json",
                                      state_dir=Path(tmp)).stdout)["clusters"]
        assert good in [s["id"] for s in cluster["snapshots"] if s["complete"]]


# --- timestamps and time zones -------------------------------------------------------------

OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30),
                       timezones=OFFSETS)


def written(moment: datetime, sep: str, fraction: str, zone: str) -> str:
    text = moment.replace(tzinfo=None).isoformat(sep=sep, timespec=fraction)
    offset = moment.utcoffset() or timedelta(0)
    if zone == "Z" and offset == timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    if zone == "compact":
        return f"{text}{sign}{hours:02d}{mins:02d}"
    if zone == "hours" and mins == 0:
        return f"{text}{sign}{hours:02d}"
    return f"{text}{sign}{hours:02d}:{mins:02d}"


@QUICK
@given(MOMENTS, st.sampled_from(["T", " "]),
       st.sampled_from(["seconds", "milliseconds", "microseconds"]),
       st.sampled_from(["Z", "colon", "compact", "hours"]), st.sampled_from(["", " ", "\t"]))
def test_a_timestamp_with_its_zone_means_that_instant(moment, sep, fraction, zone,
                                                      pad) -> None:
    text = pad + written(moment, sep, fraction, zone) + pad
    parsed = parse_timestamp(text)
    expected = moment if fraction == "microseconds" else moment.replace(
        microsecond=moment.microsecond // 1000 * 1000 if fraction == "milliseconds" else 0)
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset(), text


@QUICK
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30)),
       st.sampled_from(["T", " "]))
def test_a_timestamp_without_a_zone_is_refused_not_guessed(moment: datetime, sep: str) -> None:
    text = moment.isoformat(sep=sep)
    with pytest.raises(ValueError, match="has no time zone; add one") as refused:
        parse_timestamp(text)
    assert repr(text) in str(refused.value)


@QUICK
@given(st.text(max_size=40) | st.builds(
    lambda a, b: a + b, st.sampled_from(["2026-11-27 14:29:59", "2026-11-27T14:29:59+00:00",
                                         "2026-11-27", "14:29:59Z", ""]),
    st.sampled_from(["+24:00", "+99", "z", "UTC", " +00:00 x", "'; drop table t; --",
                     "$(date)", "\n", "+00:00:00:00", "Z+01:00", "++01"])))
def test_anything_else_is_a_timestamp_or_a_value_error_naming_it(text: str) -> None:
    try:
        parsed = parse_timestamp(text)
    except ValueError as exc:
        assert repr(text) in str(exc)
        return
    assert isinstance(parsed, datetime) and parsed.tzinfo is not None


# --- parameter values and DSNs through the real CLI ----------------------------------------

VALUES_RUNBOOK = """
[runbook]
name = "echo-values"
title = "Values reach commands and queries as data, never as code"

[params.value]
type = "string"
default = ""

[params.dir]
type = "string"

[params.dsn]
type = "dsn"

[[steps]]
id = "argv"
title = "An argv item"
action = "shell"
with = { command = ["sh", "-c", 'printf "%s" "$1" > "$2/argv.out"', "sh", "${value}", "${dir}"] }

[[steps]]
id = "string"
title = "A shell string"
action = "shell"
with = { command = '''printf '%s|%s' ${value} x${value}y > ${dir}/shell.out''' }

[[steps]]
id = "bound"
title = "A bound parameter"
action = "sql"
capture = true
with = { dsn = "${dsn}", query = "select ${value}::text" }

[[steps]]
id = "literal"
title = "A quoted literal, and a length"
action = "sql"
capture = true
with = { dsn = "${dsn}", query = "select ${literal:value}::text || '|' || length(${value})" }

[[steps]]
id = "readback"
title = "What the queries returned"
action = "shell"
[steps.with]
command = ["sh", "-c", 'printf "%s" "$1" > "$3/bound.out"; printf "%s" "$2" > "$3/literal.out"',
           "sh", "${steps.bound.output}", "${steps.literal.output}", "${dir}"]
"""

CANARY_TABLE = "canary_injected"
# what an attacker would type; {canary} is a file the injection would create
PAYLOADS = [
    "'; create table canary_injected(x int); --",
    "x'); create table canary_injected(x int); --",
    "$$; create table canary_injected(x int); $$",
    "\\'; create table canary_injected(x int); --",
    "1; create table canary_injected(x int)",
    "$(touch {canary})", "`touch {canary}`", "; touch {canary}", "| touch {canary}",
    "&& touch {canary}", "\"; touch {canary}; echo \"", "' ; touch {canary} ; '",
    "\ntouch {canary}\n", "x\r\ntouch {canary}", "$((1+1))$HOME", "${env.HOME}", "$${x}",
    "%s %(x)s %% %%(_t0)s", "--", "-n", "'", "\"", "\\", "", " ", "a b  c", "*", "~",
    "é ☃ 日本 🦆 \u200b", "${value}", "${steps.bound.output}",
    "{canary}",
]
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                      blacklist_characters="\x00"), max_size=30)


@st.composite
def hostile_value(draw: st.DrawFn, canary: str) -> str:
    parts = draw(st.lists(st.sampled_from(PAYLOADS) | TEXT, min_size=1, max_size=3))
    return "".join(parts).replace("{canary}", canary)


@pytest.fixture
def values_book(tmp_path: Path) -> Path:
    path = tmp_path / "echo-values.toml"
    path.write_text(VALUES_RUNBOOK)
    return path


def no_canary_table(cluster: Any) -> bool:
    return cluster.scalar("select count(*) from pg_class where relname = %s",
                          (CANARY_TABLE,)) == 0


def test_hostile_values_reach_commands_and_queries_as_data(pg_cluster, values_book: Path,
                                                            tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    @CLI
    @given(hostile_value(str(canary)))
    def check(value: str) -> None:
        with tempfile.TemporaryDirectory(dir=tmp_path) as out:
            proc = drdeck("run", str(values_book), "-p", f"value={value}", "-p", f"dir={out}",
                          "-p", f"dsn={pg_cluster.dsn()}", "--json", state_dir=Path(out))
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
            written = {name: (Path(out) / f"{name}.out").read_bytes().decode()
                       for name in ("argv", "shell", "bound", "literal")}
        assert written == {"argv": value, "shell": f"{value}|x{value}y", "bound": value,
                           "literal": f"{value}|{len(value)}"}
        assert not canary.exists(), "a value ran as a command"
        assert no_canary_table(pg_cluster), "a value ran as SQL"

    check()


def test_a_dsn_with_quotes_and_metacharacters_reaches_libpq_whole(pg_cluster, values_book,
                                                                   tmp_path: Path) -> None:
    from psycopg.conninfo import make_conninfo

    canary = tmp_path / "canary"
    # application_name: printable ASCII (the server shows others as ?), at most 63 bytes
    name_text = st.text(alphabet=string.printable[:95], max_size=20)

    @CLI
    @given(st.lists(st.sampled_from(["'", "\"", "\\", ";", " ", "=", "$(touch {canary})",
                                     "`id`", "' dbname=template1 '", "| touch {canary}"])
                    | name_text, min_size=1, max_size=4))
    def check(parts: list[str]) -> None:
        name = "".join(parts).replace("{canary}", str(canary))[:63]
        assume(name.strip())
        dsn = make_conninfo(pg_cluster.dsn(), application_name=name)
        book = tmp_path / "dsn-echo.toml"
        book.write_text(VALUES_RUNBOOK.replace("select ${value}::text",
                                               "select current_setting('application_name')"))
        with tempfile.TemporaryDirectory(dir=tmp_path) as out:
            proc = drdeck("run", str(book), "-p", f"value={dsn}", "-p", f"dir={out}",
                          "-p", f"dsn={dsn}", "--json", state_dir=Path(out))
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
            bound = (Path(out) / "bound.out").read_text()
            argv = (Path(out) / "argv.out").read_text()
        assert bound == name  # the whole value reached the server as one setting
        assert argv == dsn  # and a command as one argument
        assert not canary.exists()
        assert no_canary_table(pg_cluster)

    check()


INVALID_RUNBOOK = """
[runbook]
name = "typed-params"
title = "Typed parameters"

[params.count]
type = "int"
default = 1

[params.flag]
type = "bool"
default = false

[params.at]
type = "timestamp"
default = ""

[params.mode]
type = "choice"
choices = ["fast", "safe"]
default = "safe"

[params.target]
type = "dsn"
default = ""

[params.dir]
type = "string"

[[steps]]
id = "ran"
title = "Would run"
action = "shell"
with = { command = ["touch", "${dir}/ran"] }
"""
METACHARACTERS = st.sampled_from(list(";'\"`$|&<>(){}\\*?#"))  # none is whitespace


@st.composite
def invalid_assignment(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(["count", "flag", "at", "mode", "target"]))
    junk = draw(TEXT)
    meta = draw(METACHARACTERS)
    at = draw(st.integers(0, len(junk)))
    value = junk[:at] + meta + junk[at:]  # a metacharacter: no int, bool, time or choice
    if name == "target":  # no "=": libpq cannot read it as key=value pairs
        value = value.replace("=", "")
        assume(not value.strip().startswith("postgres"))
    if name == "at":
        value = draw(st.sampled_from(["2026-11-27 14:29:59", "2026-11-27T14:29:59+00:00",
                                      "yesterday"])) + value
    return name, value


def test_invalid_values_exit_2_naming_the_parameter_and_nothing_runs(tmp_path: Path) -> None:
    book = tmp_path / "typed-params.toml"
    book.write_text(INVALID_RUNBOOK)

    @CLI
    @given(invalid_assignment())
    def check(assignment: tuple[str, str]) -> None:
        name, value = assignment
        proc = drdeck("run", str(book), "-p", f"{name}={value}", "-p", f"dir={tmp_path}",
                      "--json", state_dir=tmp_path / "state")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"parameter {name}: " in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        if name == "target":  # a DSN may hold a password: the message never echoes it
            assert "parameter target: not a connection string; write" in proc.stderr
        else:
            assert repr(value) in proc.stderr, proc.stderr
        assert not (tmp_path / "ran").exists()
        assert proc.stdout == ""

    check()


def test_a_valid_value_of_each_type_runs(tmp_path: Path) -> None:
    book = tmp_path / "typed-params.toml"
    book.write_text(INVALID_RUNBOOK)
    proc = drdeck("run", str(book), "-p", "count= 7 ", "-p", "flag=Yes", "-p",
                  "at=2026-11-27 14:29:59.5+05:45", "-p", "mode=fast", "-p",
                  "target=host=/tmp dbname='a b'", "-p", f"dir={tmp_path}", "--json",
                  state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    [started] = [e for e in json_events(proc.stdout) if e["event"] == "run_started"]
    assert started["params"]["at"] == "2026-11-27T14:29:59.500000+05:45"
    assert (tmp_path / "ran").exists()


def test_the_runbooks_here_are_valid() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, text in (("echo-values", VALUES_RUNBOOK), ("typed-params", INVALID_RUNBOOK)):
            path = Path(tmp) / f"{name}.toml"
            path.write_text(text)
            paths.append(str(path))
        proc = subprocess.run([sys.executable, "-m", "tui", "validate", *paths],
                              capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
