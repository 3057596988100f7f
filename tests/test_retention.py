"""Grandfather-father-son retention planning (tui.catalog.retention).

The planner is pure, so these tests build snapshot sets in memory. The expected keepers
are written out by hand for the small policy and computed by the plainest possible
group-by for the large one, never by calling the planner's own logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.catalog.retention import Decision, Policy, plan, summarise


@dataclass(frozen=True)
class Snap:
    name: str
    at: datetime
    storage_class: str | None = "STANDARD"


def at(text: str) -> datetime:
    """'2026-11-27 15:00' -> that moment in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run(snaps, policy, now=None):
    return plan(
        snaps,
        policy,
        taken_at=lambda s: s.at,
        storage_class=lambda s: s.storage_class,
        now=now,
    )


def kept(decisions) -> set[datetime]:
    return {d.snapshot.at for d in decisions if d.keep}


def by_time(decisions) -> dict[datetime, Decision]:
    return {d.snapshot.at: d for d in decisions}


# --- the case: 500 days of snapshots -----------------------------------------

FIRST_DAY = date(2025, 7, 16)
LAST_DAY = date(2026, 11, 27)  # a Friday, ISO 2026-W48
NOW = at("2026-11-27 18:00")
# Ten days without backups at the end of September (the whole of ISO 2026-W39 among
# them), and two more in the last week.
GAP = {date(2026, 9, 21) + timedelta(days=n) for n in range(10)}
SHORT_GAP = {date(2026, 11, 24), date(2026, 11, 25)}
EXTRAS = [
    at("2026-11-27 15:00"),  # the newest of all
    at("2026-11-27 01:00"),  # earlier than the 03:00 one: never a keeper
    at("2026-11-22 23:30"),  # a Sunday evening: the newest of 2026-W47
    at("2026-10-31 21:00"),  # the newest of October
    at("2026-06-30 12:00"),  # the newest of June, already in the cold class
    at("2025-12-31 23:59"),  # the newest of December 2025, in ISO 2026-W01
]


def five_hundred_days() -> list[Snap]:
    snaps = []
    for n in range((LAST_DAY - FIRST_DAY).days + 1):
        day = FIRST_DAY + timedelta(days=n)
        if day in GAP or day in SHORT_GAP:
            continue
        moment = datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC)
        snaps.append(Snap(moment.strftime("%Y%m%dT%H%M%SZ"), moment))
    for moment in EXTRAS:
        cls = "GLACIER_IR" if moment == at("2026-06-30 12:00") else "STANDARD"
        snaps.append(Snap(moment.strftime("%Y%m%dT%H%M%SZ"), moment, cls))
    # The inventory lists by key, i.e. oldest first; shuffle-proof anyway: interleave.
    return snaps[::2] + snaps[1::2]


def test_the_fixture_is_what_the_test_says():
    snaps = five_hundred_days()
    days = {s.at.date() for s in snaps}
    assert (LAST_DAY - FIRST_DAY).days + 1 == 500
    assert min(days) == FIRST_DAY and max(days) == LAST_DAY
    assert len(days) == 500 - 10 - 2
    assert len(snaps) == 488 + len(EXTRAS)
    assert LAST_DAY.isocalendar()[:2] == (2026, 48)


SMALL_KEEPERS = {
    # daily 7: the seven most recent days that have snapshots (not the 24th or 25th)
    at("2026-11-27 15:00"),  # also weekly 2026-W48, monthly 2026-11, newest
    at("2026-11-26 03:00"),
    at("2026-11-23 03:00"),
    at("2026-11-22 23:30"),  # also weekly 2026-W47
    at("2026-11-21 03:00"),
    at("2026-11-20 03:00"),
    at("2026-11-19 03:00"),
    # weekly 4: W48 and W47 above, then the Sundays of W46 and W45
    at("2026-11-15 03:00"),
    at("2026-11-08 03:00"),
    # monthly 6: November above, then the newest of October .. June
    at("2026-10-31 21:00"),
    at("2026-09-20 03:00"),  # September's last ten days are the gap
    at("2026-08-31 03:00"),
    at("2026-07-31 03:00"),
    at("2026-06-30 12:00"),
}


def test_500_days_small_policy_keeps_exactly_the_expected_snapshots():
    decisions = run(five_hundred_days(), Policy(7, 4, 6, "GLACIER_IR"), now=NOW)

    assert len(decisions) == 494
    assert kept(decisions) == SMALL_KEEPERS
    d = by_time(decisions)
    assert d[at("2026-11-27 15:00")].reasons == (
        "daily 2026-11-27",
        "weekly 2026-W48",
        "monthly 2026-11",
        "newest",
    )
    assert d[at("2026-11-27 03:00")].reasons == ()
    assert d[at("2026-11-27 01:00")].reasons == ()
    assert d[at("2026-11-22 23:30")].reasons == ("daily 2026-11-22", "weekly 2026-W47")
    assert d[at("2026-11-22 03:00")].reasons == ()
    assert d[at("2026-11-19 03:00")].reasons == ("daily 2026-11-19",)
    assert d[at("2026-11-08 03:00")].reasons == ("weekly 2026-W45",)
    assert d[at("2026-09-20 03:00")].reasons == ("monthly 2026-09",)
    assert d[at("2026-06-30 12:00")].reasons == ("monthly 2026-06",)
    assert d[at("2026-05-31 03:00")].reasons == ()

    # Monthly-only keepers move to the cold class, except the one already there.
    moved = {x.snapshot.at for x in decisions if x.move_to is not None}
    assert moved == {
        at("2026-10-31 21:00"),
        at("2026-09-20 03:00"),
        at("2026-08-31 03:00"),
        at("2026-07-31 03:00"),
    }
    assert all(x.move_to == "GLACIER_IR" for x in decisions if x.move_to is not None)

    text = summarise(decisions)
    assert "494 snapshots: keep 14, delete 480, move 4." in text
    assert "7 daily, 4 weekly, 6 monthly, 1 newest" in text
    assert "2025-07-16 03:00 UTC to 2026-11-27 03:00 UTC" in text
    assert "Move: 4 monthly snapshots to storage class GLACIER_IR" in text


def oracle(snaps: list[Snap], daily: int, weekly: int, monthly: int) -> set[datetime]:
    """The plainest reading of the rules: group by period, take the newest N periods."""
    keep = {max(s.at for s in snaps)}
    for count, period_of in (
        (daily, lambda t: t.date()),
        (weekly, lambda t: tuple(t.isocalendar())[:2]),
        (monthly, lambda t: (t.year, t.month)),
    ):
        newest_in: dict[object, datetime] = {}
        for s in snaps:
            p = period_of(s.at)
            if p not in newest_in or s.at > newest_in[p]:
                newest_in[p] = s.at
        for p in sorted(newest_in, reverse=True)[:count]:
            keep.add(newest_in[p])
    return keep


def test_the_oracle_agrees_with_the_hand_written_list():
    assert oracle(five_hundred_days(), 7, 4, 6) == SMALL_KEEPERS


def test_500_days_large_policy_keeps_exactly_the_expected_snapshots():
    snaps = five_hundred_days()
    decisions = run(snaps, Policy(30, 12, 12), now=NOW)
    expected = oracle(snaps, 30, 12, 12)
    assert kept(decisions) == expected

    d = by_time(decisions)
    weekly = sorted(
        (x.snapshot.at for x in decisions if any(r.startswith("weekly") for r in x.reasons)),
        reverse=True,
    )
    # Twelve weeks that have snapshots: W48 .. W40, then W38 .. W36 (W39 is all gap).
    assert len(weekly) == 12
    assert weekly[-4:] == [
        at("2026-10-04 03:00"),  # W40: the gap ends on Wednesday the 30th
        at("2026-09-20 03:00"),  # W38
        at("2026-09-13 03:00"),  # W37
        at("2026-09-06 03:00"),  # W36
    ]
    assert d[at("2026-09-20 03:00")].reasons == ("weekly 2026-W38", "monthly 2026-09")
    # Twelve months reach back to December 2025, whose newest is in ISO 2026-W01.
    assert d[at("2025-12-31 23:59")].reasons == ("monthly 2025-12",)
    assert d[at("2025-11-30 03:00")].reasons == ()
    # Thirty days that have snapshots: two more than a calendar month back.
    daily = [x for x in decisions if any(r.startswith("daily") for r in x.reasons)]
    assert len(daily) == 30
    assert min(x.snapshot.at for x in daily) == at("2026-10-27 03:00")
    # Without a monthly storage class, nothing moves.
    assert all(x.move_to is None for x in decisions)
    # 30 daily; weekly adds W43 .. W36 but W39 (7); monthly adds August 2026 .. December
    # 2025 (9); November and October's keepers are daily, September's is weekly.
    assert len(expected) == 30 + 7 + 9


# --- edge cases ----------------------------------------------------------------------


def test_empty_input():
    assert run([], Policy(7, 4, 6)) == []
    assert summarise([]) == "No snapshots: nothing to keep, delete or move."


def test_one_snapshot_is_kept_for_every_reason():
    only = Snap("a", at("2026-11-27 03:00"))
    [decision] = run([only], Policy(7, 4, 6))
    assert decision.snapshot is only
    assert decision.keep
    assert decision.reasons == ("daily 2026-11-27", "weekly 2026-W48", "monthly 2026-11", "newest")
    assert decision.classes == ("daily", "weekly", "monthly", "newest")
    assert decision.move_to is None


def test_all_zero_policy_keeps_only_the_newest():
    snaps = [Snap(str(n), at("2026-11-01 03:00") + timedelta(days=n)) for n in range(40)]
    decisions = run(snaps, Policy(0, 0, 0, "GLACIER_IR"))
    assert kept(decisions) == {at("2026-12-10 03:00")}
    assert decisions[0].reasons == ("newest",)
    assert decisions[0].move_to is None  # kept as newest, not only as a monthly keeper
    assert all(d.reasons == () and d.move_to is None for d in decisions[1:])
    assert "keep 1, delete 39, move 0" in summarise(decisions)


def test_two_snapshots_on_one_day_keep_the_newer():
    morning = Snap("morning", at("2026-11-27 03:00"))
    evening = Snap("evening", at("2026-11-27 21:00"))
    decisions = run([morning, evening], Policy(7, 4, 6))
    assert [d.snapshot for d in decisions] == [evening, morning]
    assert decisions[0].reasons == (
        "daily 2026-11-27",
        "weekly 2026-W48",
        "monthly 2026-11",
        "newest",
    )
    assert decisions[1].keep is False and decisions[1].reasons == ()


def test_days_are_utc_days():
    # 01:00 at UTC+2 is 23:00 the day before in UTC.
    plus_two = timezone(timedelta(hours=2))
    late = Snap("late", datetime(2026, 11, 27, 1, 0, tzinfo=plus_two))
    early = Snap("early", at("2026-11-26 20:00"))
    decisions = run([early, late], Policy(1, 0, 0))
    assert decisions[0].snapshot is late
    assert decisions[0].taken_at == at("2026-11-26 23:00")
    assert decisions[0].taken_at.tzinfo is UTC
    assert decisions[0].reasons == ("daily 2026-11-26", "newest")
    assert decisions[1].reasons == ()


def test_a_week_spanning_a_month_boundary_is_one_week():
    # ISO 2026-W40 runs from Monday 28 September to Sunday 4 October.
    snaps = [
        Snap("tue", at("2026-09-29 03:00")),
        Snap("wed", at("2026-09-30 03:00")),
        Snap("fri", at("2026-10-02 03:00")),
    ]
    d = by_time(run(snaps, Policy(0, 2, 2)))
    assert d[at("2026-10-02 03:00")].reasons == ("weekly 2026-W40", "monthly 2026-10", "newest")
    # One week: the second weekly keeper would be in an older week, and there is none.
    assert d[at("2026-09-30 03:00")].reasons == ("monthly 2026-09",)
    assert d[at("2026-09-29 03:00")].reasons == ()


def test_iso_week_53():
    snaps = [
        Snap("2020-12-31", at("2020-12-31 03:00")),  # Thursday, 2020-W53
        Snap("2021-01-01", at("2021-01-01 03:00")),  # Friday, still 2020-W53
        Snap("2026-12-28", at("2026-12-28 03:00")),  # Monday, 2026-W53
        Snap("2027-01-02", at("2027-01-02 03:00")),  # Saturday, 2026-W53
        Snap("2027-01-04", at("2027-01-04 03:00")),  # Monday, 2027-W01
    ]
    d = by_time(run(snaps, Policy(0, 3, 0)))
    assert d[at("2027-01-04 03:00")].reasons == ("weekly 2027-W01", "newest")
    assert d[at("2027-01-02 03:00")].reasons == ("weekly 2026-W53",)
    assert d[at("2026-12-28 03:00")].reasons == ()
    assert d[at("2021-01-01 03:00")].reasons == ("weekly 2020-W53",)
    assert d[at("2020-12-31 03:00")].reasons == ()
    # The same snapshot is in January by month.
    d = by_time(run(snaps, Policy(0, 0, 5)))
    assert d[at("2021-01-01 03:00")].reasons == ("monthly 2021-01",)
    assert d[at("2020-12-31 03:00")].reasons == ("monthly 2020-12",)


def test_a_snapshot_in_the_future_is_kept_and_counts_for_nothing():
    now = at("2026-11-27 12:00")
    snaps = [
        Snap("skewed", at("2026-11-27 18:00")),
        Snap("today", at("2026-11-27 03:00")),
        Snap("yesterday", at("2026-11-26 03:00")),
        Snap("older", now - timedelta(days=3)),
    ]
    decisions = run(snaps, Policy(1, 0, 0), now=now)
    d = by_time(decisions)
    assert decisions[0].snapshot.name == "skewed"
    assert d[at("2026-11-27 18:00")].reasons == ("in the future",)
    # The day of the skewed snapshot still has its real keeper, which is also the newest.
    assert d[at("2026-11-27 03:00")].reasons == ("daily 2026-11-27", "newest")
    assert d[at("2026-11-26 03:00")].reasons == ()
    assert (
        "Keep: 1 snapshot in the future, taken after now: check the clocks"
        in summarise(decisions).splitlines()
    )


def test_a_snapshot_taken_exactly_now_is_not_in_the_future():
    now = at("2026-11-27 12:00")
    [decision] = run([Snap("now", now)], Policy(1, 0, 0), now=now)
    assert decision.reasons == ("daily 2026-11-27", "newest")


def test_only_future_snapshots_are_all_kept():
    now = at("2026-11-27 12:00")
    snaps = [Snap("a", at("2026-11-28 03:00")), Snap("b", at("2026-11-29 03:00"))]
    decisions = run(snaps, Policy(0, 0, 0), now=now)
    assert [d.reasons for d in decisions] == [("in the future",), ("in the future",)]


def test_without_now_nothing_is_in_the_future():
    far = Snap("far", at("2999-01-01 00:00"))
    [decision] = run([far], Policy(1, 0, 0))
    assert decision.reasons == ("daily 2999-01-01", "newest")


@pytest.mark.parametrize("flip", [False, True])
def test_ties_are_broken_by_the_order_given(flip):
    first = Snap("first", at("2026-11-27 03:00"))
    second = Snap("second", at("2026-11-27 03:00"))
    given = [second, first] if flip else [first, second]
    decisions = run(given, Policy(7, 4, 6))
    assert [d.snapshot for d in decisions] == given
    assert decisions[0].reasons == (
        "daily 2026-11-27",
        "weekly 2026-W48",
        "monthly 2026-11",
        "newest",
    )
    assert decisions[1].reasons == ()
    # Deterministic: the same input gives the same plan.
    assert run(given, Policy(7, 4, 6)) == decisions


def test_decisions_come_newest_first():
    snaps = [Snap(str(n), at("2026-01-01 00:00") + timedelta(hours=7 * n)) for n in range(50)]
    shuffled = snaps[7:] + snaps[:7]
    decisions = run(shuffled, Policy(3, 2, 1))
    assert [d.snapshot for d in decisions] == sorted(snaps, key=lambda s: s.at, reverse=True)


def test_move_to_only_for_monthly_only_keepers_not_already_in_the_class():
    snaps = [
        Snap("nov", at("2026-11-27 03:00"), "STANDARD"),  # daily, weekly, monthly, newest
        Snap("oct-weekly", at("2026-10-31 03:00"), "STANDARD"),  # weekly 2026-W44 + monthly
        Snap("sep", at("2026-09-30 03:00"), "STANDARD"),  # monthly only: moves
        Snap("aug", at("2026-08-31 03:00"), "GLACIER_IR"),  # monthly only, already there
        Snap("jul", at("2026-07-31 03:00"), None),  # monthly only, class unknown: moves
        Snap("jun", at("2026-06-30 03:00"), "STANDARD"),  # beyond monthly 5: deleted
    ]
    decisions = run(snaps, Policy(1, 2, 5, "GLACIER_IR"))
    moves = {d.snapshot.name: d.move_to for d in decisions}
    assert moves == {
        "nov": None,
        "oct-weekly": None,
        "sep": "GLACIER_IR",
        "aug": None,
        "jul": "GLACIER_IR",
        "jun": None,
    }
    assert by_time(decisions)[at("2026-10-31 03:00")].reasons == (
        "weekly 2026-W44",
        "monthly 2026-10",
    )
    # No monthly storage class: nothing moves.
    assert all(d.move_to is None for d in run(snaps, Policy(1, 2, 5)))
    assert "Move: 2 monthly snapshots to storage class GLACIER_IR" in summarise(decisions)


@pytest.mark.parametrize(
    "counts", [(-1, 4, 6), (7, -1, 6), (7, 4, -1), (-5, -5, -5)], ids=["d", "w", "m", "all"]
)
def test_negative_counts_are_refused(counts):
    with pytest.raises(ValueError, match="must be 0 or more"):
        Policy(*counts)


@pytest.mark.parametrize("bad", [1.5, "7", True, None])
def test_counts_must_be_whole_numbers(bad):
    with pytest.raises(ValueError, match="whole number"):
        Policy(bad, 4, 6)


def test_plan_rechecks_a_policy_look_alike():
    @dataclass
    class LooksLikeAPolicy:
        daily: int = -1
        weekly: int = 0
        monthly: int = 0
        monthly_storage_class: str | None = None

    with pytest.raises(ValueError, match="daily must be 0 or more"):
        plan([], LooksLikeAPolicy(), taken_at=lambda s: s)  # type: ignore[arg-type]


def test_an_empty_storage_class_is_refused():
    with pytest.raises(ValueError, match="storage class"):
        Policy(1, 1, 1, "  ")


def test_naive_times_are_refused():
    naive = Snap("naive", datetime(2026, 11, 27, 3, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        run([naive], Policy(1, 1, 1))
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        run([], Policy(1, 1, 1), now=datetime(2026, 11, 27))


def test_the_snapshot_objects_are_passed_through_untouched():
    # Any object will do: here plain tuples, read by the caller's functions.
    rows = [("b", at("2026-11-26 03:00"), "X"), ("a", at("2026-11-27 03:00"), "X")]
    decisions = plan(
        rows,
        Policy(0, 0, 2, "COLD"),
        taken_at=lambda r: r[1],
        storage_class=lambda r: r[2],
    )
    assert [d.snapshot for d in decisions] == [rows[1], rows[0]]
    assert decisions[0].snapshot is rows[1]
    # a generator is fine too
    assert len(plan((r for r in rows), Policy(1, 0, 0), taken_at=lambda r: r[1])) == 2


def test_summary_reads_well():
    snaps = [Snap(str(n), at("2026-11-01 03:00") + timedelta(days=n)) for n in range(27)]
    text = summarise(run(snaps, Policy(7, 4, 6, "GLACIER_IR"), now=NOW))
    assert text.splitlines() == [
        "27 snapshots: keep 9, delete 18, move 0.",
        "Keep: 7 daily, 4 weekly, 1 monthly, 1 newest (some snapshots count for several)",
        "Delete: 18 snapshots, taken 2026-11-01 03:00 UTC to 2026-11-20 03:00 UTC",
    ]
    [one] = run([Snap("x", at("2026-11-01 03:00"))], Policy(0, 0, 0))
    assert summarise([one]).splitlines() == [
        "1 snapshot: keep 1, delete 0, move 0.",
        "Keep: 1 newest",
        "Delete: nothing",
    ]


# --- properties ----------------------------------------------------------------------

EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
moments = st.integers(min_value=0, max_value=3 * 366 * 24).map(lambda h: EPOCH + timedelta(hours=h))
snapshot_sets = st.lists(
    st.tuples(moments, st.sampled_from(["STANDARD", "GLACIER_IR", None])), max_size=60
)
policies = st.builds(
    Policy,
    st.integers(0, 10),
    st.integers(0, 10),
    st.integers(0, 10),
    st.sampled_from([None, "GLACIER_IR"]),
)


@settings(max_examples=300, deadline=None)
@given(snapshot_sets, policies, st.one_of(st.none(), moments))
def test_properties(raw, policy, now):
    snaps = [Snap(str(i), moment, cls) for i, (moment, cls) in enumerate(raw)]
    decisions = run(snaps, policy, now=now)

    # one decision per snapshot, the same objects, newest first
    assert sorted(id(d.snapshot) for d in decisions) == sorted(id(s) for s in snaps)
    times = [d.taken_at for d in decisions]
    assert times == sorted(times, reverse=True)

    counts = {"daily": 0, "weekly": 0, "monthly": 0, "newest": 0}
    for d in decisions:
        assert d.keep == bool(d.reasons)  # kept: a reason; deleted: none
        assert len(set(d.classes)) == len(d.classes)  # at most one reason per class
        for c in d.classes:
            if c in counts:
                counts[c] += 1
        if d.move_to is not None:
            assert d.move_to == policy.monthly_storage_class
            assert set(d.classes) == {"monthly"}
            assert d.snapshot.storage_class != d.move_to
    assert counts["daily"] <= policy.daily
    assert counts["weekly"] <= policy.weekly
    assert counts["monthly"] <= policy.monthly
    assert counts["newest"] <= 1

    # every snapshot in the future is kept, for that reason alone
    for d in decisions:
        if now is not None and d.taken_at > now:
            assert d.reasons == ("in the future",)

    # the newest snapshot is always kept; the newest not in the future is "newest"
    if snaps:
        assert decisions[0].keep
        present = [d for d in decisions if now is None or d.taken_at <= now]
        if present:
            assert "newest" in present[0].reasons
            assert counts["newest"] == 1
        assert len([d for d in decisions if d.keep]) <= (
            policy.daily + policy.weekly + policy.monthly + 1 + (len(decisions) - len(present))
        )

    # agrees with the group-by oracle when nothing is in the future
    if snaps and now is None and len({s.at for s in snaps}) == len(snaps):
        assert kept(decisions) == oracle(snaps, policy.daily, policy.weekly, policy.monthly)

    summarise(decisions)  # never fails
