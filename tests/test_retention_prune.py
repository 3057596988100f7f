"""`drdeck run prune-snapshots`, end to end, on a repository holding 500 days of snapshots.

The snapshots are made up (a few bytes of "dump", a valid manifest whose stored_size and
sha256 match it) and written with the store API, so hundreds of days cost no pg_dump. The
run is the real CLI on the shipped runbook against a local directory or moto's S3 server.

The layout hangs off yesterday (UTC), so the keepers depend on the calendar: which weekday
yesterday was and where months end. The expected keepers are therefore written as calendar
facts (the last 7 days, the Sundays ending the 3 weeks before yesterday's, the last days of
the 5 months before yesterday's), never by calling the planner.

    every day, 28 days back from yesterday, at 12:00 (and yesterday at 06:00 too)
    the last day of each of the 15 months before yesterday's, at 12:00
    now and then, back to 499 days ago, at 12:00
    an interrupted upload 40 days ago: a dump and no manifest
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tui.catalog.layout import dump_key, manifest_key, parse_key, stamp_of, verification_key
from tui.catalog.manifest import Manifest, Verification
from tui.storage import LocalStore, S3Store

from backup_support import Deck, write_config

CLUSTER, DATABASE, PREFIX = "prod", "app", "pg"
RETENTION = "retention = { daily = 7, weekly = 4, monthly = 6 }"
TAIL_DAYS_AGO = (45, 100, 200, 300, 400, 499)


@dataclass(frozen=True)
class NoServer:
    """Retention reads only the repository: the cluster's DSN is never dialled."""

    def dsn(self, database: str) -> str:
        return f"postgresql://backup@127.0.0.1:9/{database}"


# --- the layout ------------------------------------------------------------------------


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def month_ends_before(day: date, count: int) -> list[date]:
    """The last days of the `count` months before `day`'s month, newest first."""
    ends, first = [], day.replace(day=1)
    for _ in range(count):
        end = first - timedelta(days=1)
        ends.append(end)
        first = end.replace(day=1)
    return ends


def is_month_end(day: date) -> bool:
    return (day + timedelta(days=1)).day == 1


@dataclass
class Layout:
    yesterday: date
    snapshots: list[datetime]  # complete ones
    verified: list[datetime]  # the snapshots with a verification record
    incomplete: datetime
    keepers: set[datetime]
    monthly_only: set[datetime]


def make_layout() -> Layout:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    days = {yesterday - timedelta(days=n) for n in range(28)}
    days |= set(month_ends_before(yesterday, 15))
    for ago in TAIL_DAYS_AGO:
        day = yesterday - timedelta(days=ago)
        days.add(day + timedelta(days=1) if is_month_end(day) else day)  # not a month's end
    snapshots = sorted({noon(day) for day in days} | {noon(yesterday) - timedelta(hours=6)},
                       reverse=True)
    assert (yesterday - snapshots[-1].date()).days >= 498  # 500 days of snapshots, or 499

    newest = noon(yesterday)
    daily = {noon(yesterday - timedelta(days=n)) for n in range(7)}
    # isoweekday: Monday 1 .. Sunday 7, so the Sunday before yesterday's week is that many
    # days back; every day of those weeks has a snapshot at noon, the Sunday's is the newest.
    sunday = yesterday.isoweekday()
    weekly = {newest} | {noon(yesterday - timedelta(days=sunday + 7 * n)) for n in range(3)}
    monthly = {newest} | {noon(end) for end in month_ends_before(yesterday, 5)}
    keepers = daily | weekly | monthly
    assert len(daily) == 7 and len(weekly) == 4 and len(monthly) == 6

    extra_of_yesterday = noon(yesterday) - timedelta(hours=6)
    # kept (newest, monthly) and deleted (older that day, the oldest of all)
    verified = [newest, extra_of_yesterday, noon(month_ends_before(yesterday, 3)[-1]),
                snapshots[-1]]
    return Layout(
        yesterday=yesterday,
        snapshots=snapshots,
        verified=verified,
        incomplete=datetime.combine(yesterday - timedelta(days=40), time(23, 30), tzinfo=UTC),
        keepers=keepers,
        monthly_only=monthly - daily - weekly,
    )


def write_snapshot(store: Any, taken_at: datetime, *, manifest: bool = True,
                   verified: bool = False) -> None:
    stamp = stamp_of(taken_at)
    payload = f"not really a dump of {DATABASE} at {stamp}\n".encode() * 3
    key = dump_key(CLUSTER, DATABASE, stamp, True)
    store.write_bytes(key, payload)
    if not manifest:
        return
    digest = hashlib.sha256(payload).hexdigest()
    store.write_bytes(manifest_key(CLUSTER, DATABASE, stamp), Manifest(
        cluster=CLUSTER, database=DATABASE, stamp=stamp, object=key,
        started_at=taken_at.isoformat(),
        finished_at=(taken_at + timedelta(seconds=42)).isoformat(),
        server_version="15.8", pg_dump_version="15.8", encrypted=True,
        recipients=("0123456789ABCDEF0123456789ABCDEF01234567",),
        plaintext_size=len(payload), stored_size=len(payload), sha256_stored=digest,
        sha256_plaintext=digest, tables={"public.orders": 1000},
    ).to_json())
    if verified:
        at = taken_at + timedelta(minutes=5)
        store.write_bytes(verification_key(CLUSTER, DATABASE, stamp, stamp_of(at)), Verification(
            at=at.isoformat(), how="list", ok=True, detail="archive lists 12 items",
            by="backup@ci", duration_s=1.5).to_json())


def fill(store: Any, layout: Layout) -> None:
    for taken_at in layout.snapshots:
        write_snapshot(store, taken_at, verified=taken_at in layout.verified)
    write_snapshot(store, layout.incomplete, manifest=False)


# --- reading the repository back (files and boto3, not drdeck) -------------------------


@dataclass
class Repo:
    kind: str
    root: Path | None = None
    endpoint: Any = None
    bucket: str | None = None

    def keys(self) -> set[str]:
        if self.kind == "local":
            return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}
        client = self.endpoint.client()
        found = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            found |= {item["Key"].removeprefix(f"{PREFIX}/") for item in page.get("Contents", ())}
        return found

    def storage_class(self, key: str) -> str:
        head = self.endpoint.client().head_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")
        return head.get("StorageClass") or "STANDARD"


def snapshot_parts(keys: set[str]) -> dict[str, set[str]]:
    """stamp -> the parts present: dump, manifest, verification."""
    parts: dict[str, set[str]] = {}
    for key in keys:
        parsed = parse_key(key)
        assert parsed is not None, key
        parts.setdefault(parsed.stamp, set()).add(parsed.part)
    return parts


def stamps(moments: set[datetime] | list[datetime]) -> set[str]:
    return {stamp_of(m) for m in moments}


def plan_lines(events: list[dict]) -> tuple[set[str], set[str], dict[str, str]]:
    """From the plan step's output: kept stamps, would-delete stamps, and each kept line."""
    lines = [e["line"] for e in events if e["event"] == "output" and e["step"] == "plan"]
    kept = {line.split()[1]: line for line in lines if line.startswith("keep ")}
    deleted = {line.split()[2] for line in lines if line.startswith("would delete ")}
    return set(kept), deleted, kept


# --- the runs ----------------------------------------------------------------------------


def prune_end_to_end(deck: Deck, repo: Repo, layout: Layout) -> list[dict]:
    before = repo.keys()
    everything = stamps(layout.snapshots)
    keepers, incomplete = stamps(layout.keepers), stamp_of(layout.incomplete)
    assert len(everything) >= 45 and keepers < everything

    # Without --yes: the plan is printed, the deleting step cannot be confirmed.
    proc, events = deck.run_json("run", "prune-snapshots")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    kept, would_delete, _ = plan_lines(events)
    assert kept == keepers
    assert would_delete == everything - keepers
    [refused] = [e for e in events if e["event"] == "step_finished" and e["status"] == "failed"]
    assert refused["step"] == "prune" and "confirm" in refused["error"]
    assert any(f"left alone (incomplete): {DATABASE}/{incomplete}" in e["line"]
               for e in events if e["event"] == "output")
    assert repo.keys() == before, "nothing may be deleted without a confirmation"

    # With --yes: exactly the keepers remain, with their verification records.
    proc, events = deck.run_json("run", "prune-snapshots", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parts = snapshot_parts(repo.keys())
    assert set(parts) == keepers | {incomplete}
    assert parts.pop(incomplete) == {"dump"}, "the interrupted upload is left as it was"
    for stamp, present in parts.items():
        expected = {"dump", "manifest"} | (
            {"verification"} if stamp in stamps(layout.verified) else set())
        assert present == expected, stamp
    deleted_and_verified = stamps(layout.verified) - keepers
    assert deleted_and_verified and not deleted_and_verified & set(parts)
    finished = [e["line"] for e in events if e["event"] == "output" and e["step"] == "prune"]
    assert f"deleted {len(everything - keepers)} snapshots" in finished[-1]

    # The inventory agrees: the keepers, newest first, and the incomplete one.
    proc = deck.run("inventory", "--json")
    assert proc.returncode == 0, proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    listed = {s["id"]: s for s in cluster["snapshots"]}
    assert set(listed) == keepers | {incomplete}
    assert not listed[incomplete]["complete"]
    assert all(s["retention"] not in (None, "expires") for s in listed.values() if s["complete"])
    return events


def deck_for(tmp_path: Path, repository: str, env: dict[str, str], retention: str) -> Deck:
    config = write_config(tmp_path / "drdeck.toml", cluster=NoServer(), repository=repository,
                          gpg_home=None, recipients=[], retention=retention)
    return Deck(config, tmp_path / "state", env)


def test_prune_keeps_exactly_the_keepers_in_a_local_repository(tmp_path: Path):
    layout = make_layout()
    root = tmp_path / "repo"
    fill(LocalStore(root), layout)
    deck = deck_for(tmp_path, f'[repositories.backups]\ntype = "local"\npath = "{root}"', {},
                    RETENTION)
    prune_end_to_end(deck, Repo("local", root=root), layout)


def test_prune_moves_monthly_keepers_to_their_storage_class_in_s3(tmp_path: Path, s3_env,
                                                                  s3_bucket: str):
    layout = make_layout()
    fill(S3Store(s3_bucket, prefix=PREFIX, endpoint_url=s3_env.url, region=s3_env.region),
         layout)
    repository = (f'[repositories.backups]\ntype = "s3"\nbucket = "{s3_bucket}"\n'
                  f'prefix = "{PREFIX}"\nendpoint_url = "{s3_env.url}"\n'
                  f'region = "{s3_env.region}"')
    retention = RETENTION.replace(" }", ', monthly_storage_class = "GLACIER_IR" }')
    deck = deck_for(tmp_path, repository, s3_env.environ(), retention)
    repo = Repo("s3", endpoint=s3_env, bucket=s3_bucket)

    events = prune_end_to_end(deck, repo, layout)

    monthly_only = stamps(layout.monthly_only)
    # Only the end of last month can be 21 days back or less: the 4 before are monthly only.
    assert len(monthly_only) >= 4
    _, _, kept = plan_lines(events)
    for stamp, line in kept.items():
        assert line.endswith("→ GLACIER_IR") == (stamp in monthly_only), line
    for moment in layout.keepers:
        stamp = stamp_of(moment)
        expected = "GLACIER_IR" if stamp in monthly_only else "STANDARD"
        assert repo.storage_class(dump_key(CLUSTER, DATABASE, stamp, True)) == expected, stamp
        assert repo.storage_class(manifest_key(CLUSTER, DATABASE, stamp)) == "STANDARD"
    finished = [e["line"] for e in events if e["event"] == "output" and e["step"] == "prune"]
    assert finished[-1].endswith(f"moved {len(monthly_only)} to colder storage")
