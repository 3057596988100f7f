"""Grandfather-father-son retention: which snapshots to keep, which to delete, which to move.

A pure planner: no I/O, no storage, no clock. The caller hands in its snapshots (any
objects), how to read each one's time (and, optionally, its storage class) and `now`;
`plan` returns one `Decision` per snapshot, and `summarise` turns them into the lines an
operator reads before confirming a deletion. Deleting and moving are the caller's job.

The rules are restic's (`restic forget --keep-daily/--keep-weekly/--keep-monthly`), with
periods taken in UTC:

- ``daily N``: take the N most recent calendar days (UTC) that *have* snapshots and keep
  the newest snapshot of each. Days without snapshots do not count, so a ten-day outage
  does not eat into the retention: the daily keepers simply reach further back.
- ``weekly N``: the same over ISO 8601 weeks (Monday to Sunday; the ISO year, so
  2027-01-02 falls in 2026-W53). A week that spans two months is one week.
- ``monthly N``: the same over calendar months.
- The three rules are applied independently and a snapshot can be kept for several
  reasons; each reason names its period: ``"daily 2026-11-27"``, ``"weekly 2026-W48"``,
  ``"monthly 2026-11"``. (Borg differs here: there a period whose newest snapshot is
  already kept by an earlier rule does not count toward the later rule's N. Borg also keeps
  the oldest snapshot when a rule finds fewer than N periods; restic and drdeck do not.)
- ``"newest"``: the newest snapshot (not in the future) is always kept, whatever the
  policy, even all zero: pruning never deletes the last good backup.
- ``"in the future"``: a snapshot taken after `now` (clock skew somewhere) is kept and
  counts toward no period, so it cannot push a real snapshot out. Without `now` nothing is
  in the future. A snapshot taken exactly at `now` is not in the future.
- Everything else is deleted (its reasons are empty).
- ``move_to``: with ``Policy.monthly_storage_class`` set, a snapshot kept *only* as a
  monthly keeper (no daily, weekly or newest reason) whose current storage class differs
  (an unknown class, ``None``, differs) gets ``move_to`` set to that class, e.g. to send
  month-end snapshots to a cheaper, slower tier. Everything else has ``move_to = None``.

Decisions come newest first. Snapshots with equal timestamps keep the order they were
given in: the one given first counts as the newer one (it is the one a period keeps).
Times must be timezone-aware; they are converted to UTC. Naive times raise ValueError,
as does a policy with negative (or non-integer) counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")

NEWEST = "newest"
IN_THE_FUTURE = "in the future"
# Reason classes in the order reasons are listed, and summarised.
CLASSES = ("daily", "weekly", "monthly", NEWEST, IN_THE_FUTURE)


@dataclass(frozen=True)
class Policy:
    """How many days, ISO weeks and months to keep a snapshot for (0 = none)."""

    daily: int
    weekly: int
    monthly: int
    monthly_storage_class: str | None = None

    def __post_init__(self) -> None:
        _check_counts(self)
        if self.monthly_storage_class is not None and (
            not isinstance(self.monthly_storage_class, str)
            or not self.monthly_storage_class.strip()
        ):
            raise ValueError(
                "retention monthly_storage_class must be a storage class name, "
                f"not {self.monthly_storage_class!r}"
            )


def _check_counts(policy: Policy) -> None:
    for name in ("daily", "weekly", "monthly"):
        value = getattr(policy, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"retention {name} must be a whole number, not {value!r}")
        if value < 0:
            raise ValueError(f"retention {name} must be 0 or more, not {value}")


@dataclass(frozen=True)
class Decision(Generic[T]):
    """What happens to one snapshot, and why."""

    snapshot: T
    taken_at: datetime  # aware, UTC
    keep: bool
    reasons: tuple[str, ...]  # empty exactly when the snapshot is to be deleted
    move_to: str | None  # storage class to move a monthly-only keeper to

    @property
    def classes(self) -> tuple[str, ...]:
        """The reasons without their periods: ("daily", "monthly"), ("newest",), ()."""
        return tuple(reason_class(reason) for reason in self.reasons)


def reason_class(reason: str) -> str:
    """'daily 2026-11-27' -> 'daily'; 'newest' and 'in the future' are their own class."""
    if reason in (NEWEST, IN_THE_FUTURE):
        return reason
    return reason.split(" ", 1)[0]


# (class, period of a UTC time, the period as a reason names it)
_RULES: tuple[tuple[str, Callable[[datetime], Hashable], Callable[[datetime], str]], ...] = (
    ("daily", lambda t: t.date(), lambda t: t.date().isoformat()),
    (
        "weekly",
        lambda t: t.isocalendar()[:2],
        lambda t: f"{t.isocalendar().year}-W{t.isocalendar().week:02d}",
    ),
    ("monthly", lambda t: (t.year, t.month), lambda t: f"{t.year}-{t.month:02d}"),
)


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, not the naive {value.isoformat()}")
    return value.astimezone(UTC)


def plan(
    snapshots: Iterable[T],
    policy: Policy,
    *,
    taken_at: Callable[[T], datetime],
    storage_class: Callable[[T], str | None] = lambda s: None,
    now: datetime | None = None,
) -> list[Decision[T]]:
    """One decision per snapshot, newest first; see the module docstring for the rules."""
    _check_counts(policy)  # Policy checks itself too; this catches look-alikes
    cutoff = None if now is None else _utc(now, "now")

    items = list(snapshots)
    times = [_utc(taken_at(item), f"the time of snapshot {item!r}") for item in items]
    # sorted() is stable, also with reverse=True: equal times keep the order given.
    order = sorted(range(len(items)), key=times.__getitem__, reverse=True)
    future = {i for i in order if cutoff is not None and times[i] > cutoff}
    counted = [i for i in order if i not in future]

    reasons: dict[int, list[str]] = {i: [] for i in order}
    for i in future:
        reasons[i].append(IN_THE_FUTURE)
    for name, period_of, label in _RULES:
        count = getattr(policy, name)
        seen: set[Hashable] = set()
        for i in counted:
            if len(seen) >= count:
                break
            period = period_of(times[i])
            if period in seen:
                continue  # an older snapshot of a period already kept
            seen.add(period)
            reasons[i].append(f"{name} {label(times[i])}")
    if counted:
        reasons[counted[0]].append(NEWEST)

    decisions: list[Decision[T]] = []
    for i in order:
        why = tuple(reasons[i])
        move_to = None
        target = policy.monthly_storage_class
        if (
            target is not None
            and why
            and all(reason_class(r) == "monthly" for r in why)
            and storage_class(items[i]) != target
        ):
            move_to = target
        decisions.append(
            Decision(
                snapshot=items[i], taken_at=times[i], keep=bool(why), reasons=why, move_to=move_to
            )
        )
    return decisions


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summarise(decisions: Iterable[Decision[T]]) -> str:
    """The lines an operator reads before confirming: what is kept and why, deleted, moved."""
    decisions = list(decisions)
    if not decisions:
        return "No snapshots: nothing to keep, delete or move."
    kept = [d for d in decisions if d.keep]
    deleted = [d for d in decisions if not d.keep]
    moved = [d for d in decisions if d.move_to is not None]
    per_class = Counter(c for d in kept for c in set(d.classes))

    lines = [
        f"{_plural(len(decisions), 'snapshot')}: keep {len(kept)}, "
        f"delete {len(deleted)}, move {len(moved)}."
    ]
    periodic = [f"{per_class[c]} {c}" for c in CLASSES if per_class[c] and c != IN_THE_FUTURE]
    if periodic:
        line = "Keep: " + ", ".join(periodic)
        if sum(per_class[c] for c in CLASSES if c != IN_THE_FUTURE) > len(kept):
            line += " (some snapshots count for several)"
        lines.append(line)
    if per_class[IN_THE_FUTURE]:
        lines.append(
            f"Keep: {_plural(per_class[IN_THE_FUTURE], 'snapshot')} in the future, "
            "taken after now: check the clocks"
        )
    if deleted:
        oldest = min(d.taken_at for d in deleted)
        newest = max(d.taken_at for d in deleted)
        span = _when(oldest) if oldest == newest else f"{_when(oldest)} to {_when(newest)}"
        lines.append(f"Delete: {_plural(len(deleted), 'snapshot')}, taken {span}")
    else:
        lines.append("Delete: nothing")
    for target, count in sorted(Counter(d.move_to for d in moved).items()):
        lines.append(f"Move: {_plural(count, 'monthly snapshot')} to storage class {target}")
    return "\n".join(lines)
