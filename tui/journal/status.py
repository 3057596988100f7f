"""Can we restore right now? Each cluster's backups, archive, verifications and drills,
each judged ok, warning or critical against its target.

The thresholds (documented in `drdeck status --help` and below) follow the
convention of monitoring checks: critical means a restore today would miss a
target or may not work at all; warning means it soon will, or nobody has
proved otherwise lately.

- repository unreadable: critical (nothing below can be judged)
- newest complete snapshot older than the cluster's RPO: critical; older than
  75% of it: warning; no snapshot at all (and no point-in-time backups): critical.
  With several databases the one whose newest snapshot is oldest counts.
- WAL archive lag (age of the newest recoverable point in time, when the
  cluster has base backups or WAL): the same thresholds as snapshots. The
  point is the last commit found in the archive: a database with no writes
  shows a lag it does not really have, so keep `archive_timeout` and some
  traffic (a heartbeat table) if its RPO is short.
- archiver (clusters with a dsn, asked through pg_stat_archiver): archive_command
  failing (its newest failure newer than its newest success): critical, with the
  server's own failure line when its log can be read; the server cannot be asked
  while the repository holds drdeck's WAL archive for it: warning (nobody can
  say the archive still grows). A server that cannot be asked and has no WAL
  archive in the repository, or one that does not archive (a standby, or
  archive_mode off without a WAL archive), has no archiver item. Segments waiting
  to be archived (the archiver's lag) are counted in every archiver item; the oldest
  waiting longer than ARCHIVER_WAIT_WARNING_S: warning (a slow or hung
  archive_command never fails, so this is the only sign of it).
- last verification failed: critical; older than 7 days, or none ever: warning.
- last drill failed, aborted or interrupted: warning; its RTO over the target
  (the cluster's `rto`, else the runbook's): warning; no drill recorded for the
  cluster: warning; a drill overdue (its cadence, monthly by default): warning.

Drills count for a cluster when their `cluster` parameter names it, or when it
is the only cluster configured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from tui.durations import format_duration
from tui.journal.due import DRILL_SCENARIOS, due

OK, WARNING, CRITICAL = "ok", "warning", "critical"
LEVELS = {OK: 0, WARNING: 1, CRITICAL: 2}
STATES = (OK, WARNING, CRITICAL)

RPO_WARNING_FRACTION = 0.75
VERIFICATION_MAX_AGE_S = 7 * 86400
# A working archive_command ships a segment in about a second (bench archive: 3.4 to 11
# segments/s), so a burst of WAL (a bulk load, a big index) drains within a minute or
# two; a segment still waiting after 5 minutes means the archiver no longer keeps up,
# well before a typical RPO (15 min and up) is lost to it. Shorter RPOs are the wal
# item's to judge: it sees the archive itself.
ARCHIVER_WAIT_WARNING_S = 5 * 60
FORMAT = 1

THRESHOLDS = {
    "rpo_warning_fraction": RPO_WARNING_FRACTION,
    "verification_max_age_s": VERIFICATION_MAX_AGE_S,
    "archiver_wait_warning_s": ARCHIVER_WAIT_WARNING_S,
}

# Runs that say nothing about whether a restore works: still going, or refused a lock.
_NOT_ATTEMPTS = ("running", "refused")


@dataclass
class Item:
    """One thing judged: what, its state, and why, with the numbers behind it."""

    check: str  # repository | snapshot | wal | archiver | verification | drill | due
    state: str  # ok | warning | critical
    reason: str
    runbook: str | None = None
    database: str | None = None
    age_s: float | None = None  # snapshot age, WAL lag, verification age, drill age, how
    # long the oldest segment has waited for the archiver
    target_s: float | None = None  # RPO, RTO or wait threshold the age or RTO is judged against
    ok: bool | None = None  # verification or drill result; whether the archiver works
    at: str | None = None  # when the snapshot, point, verification, drill or archive try was
    rto_s: float | None = None  # the last drill's measured RTO
    last_rto_s: float | None = None  # the RTO of the newest drill that measured one
    overdue_s: float | None = None  # due items: seconds past due; None: never succeeded
    run_id: str | None = None
    event: str | None = None  # rpo_breach | drill_overdue: what --notify announces
    waiting_segments: int | None = None  # archiver: finished, not archived; None: unknown

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClusterStatus:
    name: str
    rpo_s: float | None = None
    rto_s: float | None = None
    items: list[Item] = field(default_factory=list)

    @property
    def state(self) -> str:
        return worst(i.state for i in self.items)

    def item(self, check: str, runbook: str | None = None) -> Item | None:
        return next((i for i in self.items if i.check == check
                     and (runbook is None or i.runbook == runbook)), None)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "rpo_s": self.rpo_s,
                "rto_s": self.rto_s, "items": [i.to_json() for i in self.items]}


@dataclass
class Status:
    generated_at: datetime
    clusters: list[ClusterStatus]

    @property
    def state(self) -> str:
        return worst(c.state for c in self.clusters)

    @property
    def exit_code(self) -> int:
        return LEVELS[self.state]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "generated_at": self.generated_at.isoformat(),
            "state": self.state,
            "exit_code": self.exit_code,
            "thresholds": THRESHOLDS,
            "clusters": [c.to_json() for c in self.clusters],
        }


def worst(states: Any) -> str:
    return max(states, key=LEVELS.__getitem__, default=OK)


# --- reading everything ------------------------------------------------------------------


def compute_status(config: Any, names: list[str] | None = None,
                   now: datetime | None = None) -> Status:
    """Read the repositories (in parallel), the journal and the runbooks; judge each cluster."""
    from concurrent.futures import ThreadPoolExecutor

    from tui.catalog.report import load_inventories

    names = names or list(config.clusters)
    # the servers are asked while the repositories are read: a slow one costs its
    # connect timeout once, not once per cluster
    with ThreadPoolExecutor(4) as pool:
        asked = pool.map(lambda name: _ask_archiver(config.cluster(name)), names)
        inventories, now = load_inventories(config, names, now=now)
        archivers = dict(zip(names, asked, strict=True))
    runs, journal_error, missing = _journal_runs(config)
    runbooks = _runbooks(config)
    clusters = [
        cluster_status(config.cluster(inventory.name), inventory, runs, runbooks, now,
                       only_cluster=len(config.clusters) == 1, journal_error=journal_error,
                       journal_missing=missing, archiver=archivers.get(inventory.name))
        for inventory in inventories
    ]
    return Status(now, clusters)


def _ask_archiver(cluster: Any) -> Any:
    """The server's ArchiverStats, the reason it could not be asked, or None without a dsn."""
    import asyncio

    from tui.errors import DrdeckError
    from tui.postgres.archiver import ArchiverUnknown, read_stats

    try:
        dsn = cluster.resolve_dsn()
    except DrdeckError:
        return None
    try:
        return asyncio.run(read_stats(dsn))
    except ArchiverUnknown as exc:
        return str(exc)


def _journal_runs(config: Any) -> tuple[list[Any], str | None, str | None]:
    """(runs newest first, why the journal cannot be read, where a missing journal would be).

    A SQLite journal that does not exist is not created: status only reads, and
    a monitoring agent running as another user would otherwise start an empty one.
    """
    from pathlib import Path

    from tui.errors import DrdeckError
    from tui.journal.location import journal_location
    from tui.journal.store import Journal

    # outside the try: a malformed $DRDECK_JOURNAL is bad input (exit 2), not a warning
    location = journal_location(config)
    if isinstance(location, Path) and not location.exists():
        return [], None, str(location)
    try:
        journal = Journal(location)
    except DrdeckError as exc:
        return [], str(exc), None
    try:
        return journal.runs(), None, None
    except DrdeckError as exc:
        return [], str(exc), None
    finally:
        journal.close()


def _runbooks(config: Any) -> dict[str, Any]:
    from tui.runbook.discovery import discover

    found = {}
    for item in discover(list(config.runbook_dirs)):
        if item.runbook is not None:
            found.setdefault(item.runbook.name, item.runbook)
    return found


# --- judging one cluster -----------------------------------------------------------------


def cluster_status(cluster: Any, inventory: Any, runs: list[Any], runbooks: dict[str, Any],
                   now: datetime, *, only_cluster: bool = False,
                   journal_error: str | None = None,
                   journal_missing: str | None = None,
                   archiver: Any = None) -> ClusterStatus:
    """Every item of one cluster; `runs` are the journal's, newest first; `archiver` is
    what _ask_archiver found."""
    status = ClusterStatus(cluster.name, cluster.rpo, cluster.rto)
    if inventory.error:
        status.items.append(Item("repository", CRITICAL,
                                 f"cannot read the repository {inventory.repository}: "
                                 f"{inventory.error}"))
    else:
        status.items.extend(_snapshot_items(cluster, inventory, now))
    judged = _archiver_item(archiver, getattr(inventory, "pitr", None) is not None)
    if judged is not None:
        status.items.append(judged)
    status.items.extend(_drill_items(cluster, runs, runbooks, now, only_cluster, journal_error,
                                     journal_missing))
    return status


def _judge_age(age: float, rpo: float | None) -> str:
    if rpo is None:
        return OK
    if age > rpo:
        return CRITICAL
    return WARNING if age > rpo * RPO_WARNING_FRACTION else OK


def _against_rpo(age: float, rpo: float | None) -> str:
    if rpo is None:
        return "no RPO target"
    if age > rpo:
        return f"over the RPO of {format_duration(rpo)}"
    if age > rpo * RPO_WARNING_FRACTION:
        return (f"over {RPO_WARNING_FRACTION:.0%} of the RPO of {format_duration(rpo)}: "
                "the next backup is due")
    return f"RPO {format_duration(rpo)}"


def _snapshot_items(cluster: Any, inventory: Any, now: datetime) -> list[Item]:
    items = []
    pitr = getattr(inventory, "pitr", None)
    sources = getattr(inventory, "sources", [])
    point_in_time = pitr is not None or bool(sources)
    rpo = cluster.rpo
    has_snapshots = bool(inventory.snapshots)
    databases = list(cluster.databases) or sorted({s.database for s in inventory.snapshots})
    if not has_snapshots and not point_in_time:
        items.append(Item("snapshot", CRITICAL, "no snapshot in the repository: nothing to "
                           "restore from", target_s=rpo, event="rpo_breach"))
    elif has_snapshots:
        oldest: tuple[float, str, Any] | None = None
        missing = []
        for database in databases:
            latest = inventory.latest(database)
            if latest is None:
                missing.append(database)
                continue
            age = latest.age_s(now)
            if oldest is None or age > oldest[0]:
                oldest = (age, database, latest)
        if missing:
            items.append(Item("snapshot", CRITICAL,
                              f"no complete snapshot of {', '.join(missing)}", target_s=rpo,
                              database=missing[0], event="rpo_breach"))
        elif oldest is not None:
            age, database, latest = oldest
            state = _judge_age(age, rpo)
            items.append(Item(
                "snapshot", state,
                f"newest snapshot of {database} is {format_duration(age)} old "
                f"({_against_rpo(age, rpo)})",
                database=database, age_s=round(age, 1), target_s=rpo,
                at=latest.taken_at.isoformat(),
                event="rpo_breach" if state == CRITICAL else None))
    wal = _wal_item(pitr, sources, rpo, now)
    if wal is not None:
        items.append(wal)
    if has_snapshots:
        items.append(_verification_item(inventory, now))
    return items


def _wal_item(pitr: Any, sources: list[Any], rpo: float | None,
              now: datetime) -> Item | None:
    """drdeck's own archive when the repository holds one; else the first other engine
    (tui.sources) of the cluster."""
    latest: datetime | None = None
    if pitr is not None:
        latest = pitr.latest
        why = pitr.describe_windows()
    elif sources:
        report = sources[0]
        if report.error:
            return Item("wal", CRITICAL, f"{report.source.title}: {report.error}",
                        target_s=rpo, event="rpo_breach")
        latest = report.window_end
        why = f"{report.source.title} reports no recoverable window"
    else:
        return None
    if latest is None:
        return Item("wal", CRITICAL, f"no point in time is recoverable: {why}", target_s=rpo,
                    event="rpo_breach")
    lag = max(0.0, (now - latest).total_seconds())
    state = _judge_age(lag, rpo)
    return Item("wal", state,
                f"newest recoverable point is {format_duration(lag)} old "
                f"({_against_rpo(lag, rpo)})",
                age_s=round(lag, 1), target_s=rpo, at=latest.isoformat(),
                event="rpo_breach" if state == CRITICAL else None)


def _archiver_item(archiver: Any, has_wal_archive: bool) -> Item | None:
    """`archiver`: ArchiverStats, the reason the server could not be asked, or None."""
    from tui.postgres.archiver import ArchiverCheck

    if archiver is None:
        return None
    if isinstance(archiver, str):
        if not has_wal_archive:
            return None  # it may archive nowhere: nothing says it should
        return Item("archiver", WARNING, f"cannot check the server's archiver: {archiver}")
    if not archiver.archives:
        if not has_wal_archive or archiver.in_recovery:
            return None
        return Item("archiver", WARNING, f"archive_mode is {archiver.archive_mode}, but the "
                    "repository holds a WAL archive of this cluster: nothing new reaches it")
    at = archiver.last_failed_time if archiver.failing else archiver.last_archived_time
    waited = archiver.waited_s
    lag = {"waiting_segments": archiver.waiting_segments, "target_s": ARCHIVER_WAIT_WARNING_S,
           "age_s": None if waited is None else round(waited, 1),
           "at": at.isoformat() if at else None}
    if archiver.failing:
        return Item("archiver", CRITICAL, ArchiverCheck(archiver, archiver).explain(),
                    ok=False, **lag)
    if waited is not None and waited > ARCHIVER_WAIT_WARNING_S:
        # the lag first: it is the news, and the rest of the line may be cut off
        return Item("archiver", WARNING,
                    f"{archiver.describe_waiting()} (over "
                    f"{format_duration(ARCHIVER_WAIT_WARNING_S)}: archive_command is slow "
                    f"or hung); {archiver.describe_counts()}", ok=True, **lag)
    return Item("archiver", OK, f"archiving works: {archiver.describe_counts()}; "
                f"{archiver.describe_waiting()}", ok=True, **lag)


def _verification_item(inventory: Any, now: datetime) -> Item:
    found = [(v, s) for s in inventory.snapshots for v in s.verifications]
    if not found:
        return Item("verification", WARNING, "no snapshot has ever been verified: run "
                    "verify-backup")
    verification, snapshot = max(found, key=lambda pair: _parse_time(pair[0].at) or now)
    at = _parse_time(verification.at) or now
    age = max(0.0, (now - at).total_seconds())
    which = f"{verification.how}, {snapshot.database} {snapshot.stamp}"
    if not verification.ok:
        state = CRITICAL
        reason = (f"last verification FAILED {format_duration(age)} ago ({which}): "
                  f"{verification.detail}")
    elif age > VERIFICATION_MAX_AGE_S:
        state = WARNING
        reason = (f"last verification passed {format_duration(age)} ago ({which}): older "
                  f"than {VERIFICATION_MAX_AGE_S / 86400:g} days")
    else:
        state = OK
        reason = f"last verification passed {format_duration(age)} ago ({which})"
    return Item("verification", state, reason, database=snapshot.database,
                age_s=round(age, 1), ok=bool(verification.ok), at=at.isoformat())


def run_cluster(run: Any, only_cluster: str | None) -> str | None:
    """The cluster a run worked on: its `cluster` parameter, else the only one configured."""
    try:
        named = (run.params or {}).get("cluster") or ""
    except ValueError:
        named = ""
    return named or only_cluster


def _restore_runbooks(cluster: Any) -> list[str]:
    """The shipped runbooks that restore this cluster: drdeck's own when it has a
    repository, and each of its engines' (tui.sources)."""
    from tui.sources import source_classes

    own = ["snapshot-restore", "pitr-restore"] if cluster.repository else []
    engines = [source_classes()[kind].restore_runbook for kind, _ in cluster.engines
               if kind in source_classes()]
    return [*own, *(name for name in engines if name)] or ["a restore runbook"]


def _drill_items(cluster: Any, runs: list[Any], runbooks: dict[str, Any], now: datetime,
                 only_cluster: bool, journal_error: str | None,
                 journal_missing: str | None = None) -> list[Item]:
    if journal_error is not None:
        return [Item("drill", WARNING, f"cannot read the journal: {journal_error}")]
    sole = cluster.name if only_cluster else None
    drills = [r for r in runs if not r.dry_run and r.status not in _NOT_ATTEMPTS
              and _is_drill(r, runbooks) and run_cluster(r, sole) == cluster.name]
    if not drills:
        where = (f" (no journal at {journal_missing}: is this the user that runs drills, "
                 "or is [journal] url missing?)" if journal_missing else "")
        return [Item("drill", WARNING, "no restore drill of this cluster in the journal: run "
                     f"one ({', '.join(_restore_runbooks(cluster))}){where}"),
                Item("due", WARNING, "never drilled: due now", event="drill_overdue")]
    items = []
    for name in dict.fromkeys(r.runbook for r in drills):  # newest first
        mine = [r for r in drills if r.runbook == name]
        runbook = runbooks.get(name) or SimpleNamespace(name=name, scenario=mine[0].scenario,
                                                       cadence=None, rto=None)
        items.append(_drill_item(cluster, runbook, mine, now))
        items.append(_due_item(runbook, mine, now))
    return items


def _is_drill(run: Any, runbooks: dict[str, Any]) -> bool:
    runbook = runbooks.get(run.runbook)
    if runbook is not None:
        return runbook.scenario in DRILL_SCENARIOS or runbook.cadence is not None
    return run.scenario in DRILL_SCENARIOS


def _drill_item(cluster: Any, runbook: Any, runs: list[Any], now: datetime) -> Item:
    last = runs[0]
    when = last.ended or last.started
    age = max(0.0, (now - when).total_seconds())
    target = cluster.rto or last.rto_target_s or runbook.rto
    measured = next((r for r in runs if r.status == "succeeded" and r.rto_s is not None), None)
    common = {"runbook": runbook.name, "age_s": round(age, 1), "target_s": target,
              "at": when.isoformat(), "run_id": last.id, "rto_s": last.rto_s,
              "last_rto_s": measured.rto_s if measured else None,
              "ok": last.status == "succeeded"}
    ago = f"{format_duration(age)} ago"
    if last.status != "succeeded":
        error = f": {last.error}" if last.error else ""
        return Item("drill", WARNING, f"last drill {last.status.upper()} {ago}{error}",
                    **common)
    if last.rto_s is None:
        return Item("drill", OK, f"last drill succeeded {ago} (no RTO measured)", **common)
    against = f"target {format_duration(target)}" if target else "no RTO target"
    if target and last.rto_s > target:
        return Item("drill", WARNING, f"last drill {ago} took RTO {format_duration(last.rto_s)}"
                    f": over the {against}", **common)
    return Item("drill", OK, f"last drill {ago}: RTO {format_duration(last.rto_s)} ({against})",
                **common)


def _due_item(runbook: Any, runs: list[Any], now: datetime) -> Item:
    next_due = due(runbook, runs)
    if next_due is None:  # not a drill by its own definition: nothing falls due
        return Item("due", OK, "no cadence", runbook=runbook.name, overdue_s=0.0)
    if next_due.due_at is None:
        return Item("due", WARNING, "no successful drill yet: due now", runbook=runbook.name,
                    target_s=next_due.cadence_s, event="drill_overdue")
    late = next_due.overdue_by(now)
    at = next_due.due_at.isoformat()
    if late is None:
        return Item("due", OK, f"next drill {next_due.describe(now)}", runbook=runbook.name,
                    at=at, overdue_s=0.0, target_s=next_due.cadence_s)
    return Item("due", WARNING, f"drill {next_due.describe(now)}", runbook=runbook.name, at=at,
                overdue_s=round(late, 1), target_s=next_due.cadence_s, event="drill_overdue")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- Prometheus ----------------------------------------------------------------------------

METRICS = {
    "drdeck_status": "State of the cluster: 0 ok, 1 warning, 2 critical",
    "drdeck_snapshot_age_seconds": "Age of the newest complete snapshot (the oldest among "
                                   "the cluster's databases)",
    "drdeck_rpo_seconds": "The cluster's recovery point objective",
    "drdeck_rto_seconds": "The cluster's recovery time objective",
    "drdeck_wal_lag_seconds": "Age of the newest point in time recoverable from the archive",
    "drdeck_archiver_ok": "Whether the server's archive_command works (1) or fails (0)",
    "drdeck_archiver_waiting_segments": "Finished WAL segments the server's archiver has "
                                        "not archived yet",
    "drdeck_last_verification_age_seconds": "Age of the newest snapshot verification",
    "drdeck_last_verification_ok": "Whether the newest snapshot verification passed (1) or "
                                   "failed (0)",
    "drdeck_last_drill_ok": "Whether the last drill of a runbook succeeded (1) or not (0)",
    "drdeck_last_drill_age_seconds": "Time since the last drill of a runbook ended",
    "drdeck_last_drill_rto_seconds": "RTO measured by the newest drill of a runbook that "
                                     "measured one",
    "drdeck_drill_overdue_seconds": "Seconds a drill is past due (0: not due; +Inf: never "
                                    "drilled)",
    "drdeck_status_generated_timestamp_seconds": "When drdeck status ran (Unix time)",
}


def prometheus_text(status: Status) -> str:
    """The text exposition format, for node_exporter's textfile collector."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in METRICS}

    def add(name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            samples[name].append((labels, float(value)))

    for cluster in status.clusters:
        name = cluster.name
        add("drdeck_status", LEVELS[cluster.state], cluster=name)
        add("drdeck_rpo_seconds", cluster.rpo_s, cluster=name)
        add("drdeck_rto_seconds", cluster.rto_s, cluster=name)
        snapshot = cluster.item("snapshot")
        add("drdeck_snapshot_age_seconds", snapshot.age_s if snapshot else None, cluster=name)
        wal = cluster.item("wal")
        add("drdeck_wal_lag_seconds", wal.age_s if wal else None, cluster=name)
        archiver = cluster.item("archiver")
        if archiver is not None and archiver.ok is not None:
            add("drdeck_archiver_ok", int(archiver.ok), cluster=name)
        if archiver is not None:
            add("drdeck_archiver_waiting_segments", archiver.waiting_segments, cluster=name)
        verification = cluster.item("verification")
        if verification is not None and verification.ok is not None:
            add("drdeck_last_verification_age_seconds", verification.age_s, cluster=name)
            add("drdeck_last_verification_ok", int(verification.ok), cluster=name)
        for item in cluster.items:
            if item.check == "drill" and item.runbook:
                add("drdeck_last_drill_ok", int(bool(item.ok)), cluster=name,
                    runbook=item.runbook)
                add("drdeck_last_drill_age_seconds", item.age_s, cluster=name,
                    runbook=item.runbook)
                add("drdeck_last_drill_rto_seconds", item.last_rto_s, cluster=name,
                    runbook=item.runbook)
            elif item.check == "due":
                # never (successfully) drilled: infinitely late, so `> 0` alerts fire
                overdue = float("inf") if item.overdue_s is None else item.overdue_s
                add("drdeck_drill_overdue_seconds", overdue, cluster=name,
                    runbook=item.runbook or "")
    add("drdeck_status_generated_timestamp_seconds", status.generated_at.timestamp())
    lines = []
    for metric, help_text in METRICS.items():
        if not samples[metric]:
            continue
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} gauge")
        for labels, value in samples[metric]:
            shown = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{metric}{{{shown}}} {_number(value)}" if shown
                         else f"{metric} {_number(value)}")
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if value.is_integer():
        return str(int(value))
    return repr(round(value, 3))
