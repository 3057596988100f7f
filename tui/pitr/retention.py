"""Which base backups to keep, which to delete, and from where the WAL archive is needed.

A pure planner over `read_base_backups`'s list (newest first): no I/O, no clock. The
rules are the two a backup tool usually offers, a count of full backups and a recovery
window, joined:

- ``full N``: the newest N full backups are kept, and every incremental built on one of
  them ("full backup 1 of 2", "incremental on 20261201T000000Z").
- ``window W``: every moment of the last W stays restorable: each backup that ended in
  the window is kept, and so is the newest one that ended before it (a restore into
  the window's first hours starts from that one).
- ``"newest"``: the newest usable backup is always kept, whatever the policy.
- ``"in the future"``: a backup that ended after `now` (clock skew) is kept and counts
  for nothing.
- ``"parent of ..."``: a kept incremental's parent, and its parent's, are kept: without
  them it cannot be restored. An unkept incremental whose chain reaches a deleted full
  backup goes with it.
- Backups that are not usable (no manifest: an upload that may still be running; a
  broken chain, a forged or unsigned manifest) are left alone and said so: retention
  acts only on what it can read and trust.

WAL older than the oldest kept backup's first segment serves no kept backup, so it can
go: `wal_needed_from` is that segment (on any timeline, by position), or None when
nothing may be deleted. Timeline history files are always kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tui.durations import format_duration
from tui.pitr.basebackup import BaseManifest
from tui.units import format_bytes
from tui.wal.names import BACKUP, PARTIAL, SEGMENT, Segment

NEWEST = "newest"
IN_THE_FUTURE = "in the future"


@dataclass(frozen=True)
class BaseDecision:
    stamp: str
    manifest: BaseManifest | None
    keep: bool
    reasons: tuple[str, ...]  # why it is kept; empty when it is deleted or left alone
    left_alone: str = ""  # why retention does not touch it (it is not usable)


@dataclass(frozen=True)
class BasePlan:
    decisions: list[BaseDecision]  # newest first, as given
    wal_needed_from: Segment | None  # WAL before this position may be deleted

    @property
    def deleted(self) -> list[BaseDecision]:
        return [d for d in self.decisions if not d.keep and not d.left_alone]


def plan_base(backups: list[tuple[BaseManifest | None, str, str]], full: int,
              window: float | None, now: datetime) -> BasePlan:
    usable = {stamp: m for m, stamp, problem in backups if m is not None and not problem}
    reasons: dict[str, list[str]] = {stamp: [] for stamp in usable}
    newest_first = sorted(usable, reverse=True)
    future = {s for s in newest_first if usable[s].stopped > now}
    counted = [s for s in newest_first if s not in future]
    for stamp in future:
        reasons[stamp].append(IN_THE_FUTURE)

    def root_of(stamp: str) -> str:
        while usable[stamp].parent is not None:
            stamp = usable[stamp].parent  # usable: read_base_backups checked each link
        return stamp

    fulls = [s for s in counted if usable[s].parent is None][:full]
    for rank, stamp in enumerate(fulls, 1):
        reasons[stamp].append(f"full backup {rank} of {full}")
    for stamp in counted:
        if usable[stamp].parent is not None and root_of(stamp) in fulls:
            reasons[stamp].append(f"incremental on {root_of(stamp)}")
    if window is not None:
        since = now - timedelta(seconds=window)
        label = format_duration(window)
        inside = [s for s in counted if usable[s].stopped >= since]
        before = next((s for s in counted if usable[s].stopped < since), None)
        for stamp in inside:
            reasons[stamp].append(f"in the {label} window")
        if before is not None:
            reasons[before].append(f"starts the {label} window")
    if counted:
        reasons[counted[0]].append(NEWEST)
    for stamp in newest_first:  # newest first: a parent's reason reaches its own parent
        if reasons[stamp]:
            parent = usable[stamp].parent
            if parent is not None and not any(r.startswith("parent of") for r in
                                               reasons[parent]):
                reasons[parent].append(f"parent of {stamp}")

    decisions = []
    for manifest, stamp, problem in backups:
        if stamp not in usable:
            decisions.append(BaseDecision(stamp, manifest, True, (), problem or "not usable"))
        else:
            decisions.append(BaseDecision(stamp, manifest, bool(reasons[stamp]),
                                          tuple(reasons[stamp])))
    kept = [usable[d.stamp] for d in decisions if d.keep and not d.left_alone]
    needed = min((m.first_segment for m in kept), key=lambda s: s.number, default=None)
    return BasePlan(decisions, needed)


def wal_to_delete(names: list[str], needed_from: Segment | None) -> list[str]:
    """The archived WAL files (names without .zst/.gpg) before `needed_from`: segments,
    their .partial and .backup files. Never a timeline history."""
    if needed_from is None:
        return []
    doomed = []
    for name in names:
        wal_file = SEGMENT.fullmatch(name) or PARTIAL.fullmatch(name) or BACKUP.fullmatch(name)
        if wal_file and Segment.parse(name[:24], needed_from.size).number < needed_from.number:
            doomed.append(name)
    return doomed


def describe(decision: BaseDecision, deleting: bool) -> str:
    """One line per backup: keep (why), delete, or left alone (why)."""
    manifest = decision.manifest
    kind = "" if manifest is None else (" incremental" if manifest.parent else " full")
    if decision.left_alone:
        return f"left alone  {decision.stamp}{kind}: {decision.left_alone}"
    if decision.keep:
        return f"keep    {decision.stamp}{kind}  {', '.join(decision.reasons)}"
    return f"{'delete ' if deleting else 'would delete'}  {decision.stamp}{kind}"


def summary(plan: BasePlan, wal: list[str], wal_bytes: int) -> str:
    """What the plan keeps and deletes, in two lines."""
    kept = sum(1 for d in plan.decisions if d.keep and not d.left_alone)
    left = sum(1 for d in plan.decisions if d.left_alone)
    line = (f"{len(plan.decisions)} base backups: keep {kept}, delete {len(plan.deleted)}"
            + (f", leave {left} alone" if left else "") + ".")
    if plan.wal_needed_from is None:
        return line + "\nWAL: nothing is deleted (no usable base backup to keep)."
    return (line + f"\nWAL: needed from {plan.wal_needed_from.name} on; "
            + (f"{len(wal)} older files ({format_bytes(wal_bytes)}) serve no kept backup."
               if wal else "nothing older is stored."))
