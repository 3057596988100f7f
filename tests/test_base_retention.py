"""Base backup retention's plan: which backups stay (and why), which go, and the WAL
that goes with them. The planner reads read_base_backups's list; here that list is
written out by hand, days apart, with chains."""

from __future__ import annotations

import pytest

from tui.config.load import load_config
from tui.errors import InvalidInput
from tui.pitr.retention import plan_base, summary, wal_to_delete
from tui.wal.names import Segment

from pitr_support import NOW, MiB, backup


def newest_first(*backups):
    return sorted(backups, key=lambda b: b[1], reverse=True)


def outcome(plan) -> dict[str, tuple[str, ...] | str]:
    """stamp -> its reasons when kept, "delete", or "left alone: why"."""
    return {d.stamp: (f"left alone: {d.left_alone}" if d.left_alone else
                      d.reasons if d.keep else "delete") for d in plan.decisions}


def test_the_newest_full_backups_stay_with_every_incremental_built_on_them() -> None:
    old_full = backup(20)
    old_inc = backup(19, parent=old_full[1])
    mid_full = backup(13)
    mid_inc = backup(12, parent=mid_full[1])
    mid_inc2 = backup(11, parent=mid_inc[1])
    new_full = backup(6)
    new_inc = backup(5, parent=new_full[1])
    plan = plan_base(newest_first(old_full, old_inc, mid_full, mid_inc, mid_inc2, new_full,
                                  new_inc), full=2, window=None, now=NOW)
    assert outcome(plan) == {
        new_inc[1]: (f"incremental on {new_full[1]}", "newest"),
        new_full[1]: ("full backup 1 of 2", f"parent of {new_inc[1]}"),
        mid_inc2[1]: (f"incremental on {mid_full[1]}",),
        mid_inc[1]: (f"incremental on {mid_full[1]}", f"parent of {mid_inc2[1]}"),
        mid_full[1]: ("full backup 2 of 2", f"parent of {mid_inc[1]}"),
        old_inc[1]: "delete",
        old_full[1]: "delete",
    }
    # the old chain goes child first: a crash between the two leaves an incremental
    # that says its parent is missing, never a parent without its child's record
    assert [d.stamp for d in plan.deleted] == [old_inc[1], old_full[1]]
    assert plan.wal_needed_from == mid_full[0].first_segment


def test_a_window_keeps_the_backup_its_first_moment_needs_and_that_backups_parents() -> None:
    full = backup(30)
    inc_a = backup(20, parent=full[1])
    inc_b = backup(10, parent=inc_a[1])  # ended before the window: it starts it
    inc_c = backup(3, parent=inc_b[1])
    recent_full = backup(1)
    plan = plan_base(newest_first(full, inc_a, inc_b, inc_c, recent_full), full=1,
                     window=7 * 86400, now=NOW)
    got = outcome(plan)
    assert got[recent_full[1]] == ("full backup 1 of 1", "in the 7d window", "newest")
    assert got[inc_c[1]] == ("in the 7d window",)
    assert got[inc_b[1]] == ("starts the 7d window", f"parent of {inc_c[1]}")
    # a parent a kept backup needs is kept, however far back its chain reaches
    assert got[inc_a[1]] == (f"parent of {inc_b[1]}",)
    assert got[full[1]] == (f"parent of {inc_a[1]}",)
    assert plan.deleted == []
    assert plan.wal_needed_from == full[0].first_segment


def test_the_newest_backup_stays_whatever_the_policy_and_the_future_counts_for_nothing(
        ) -> None:
    older, newer = backup(9), backup(2)
    skewed = backup(-1)  # a clock ahead of ours wrote it
    plan = plan_base(newest_first(older, newer, skewed), full=0, window=None, now=NOW)
    assert outcome(plan) == {skewed[1]: ("in the future",), newer[1]: ("newest",),
                             older[1]: "delete"}


def test_backups_retention_cannot_trust_are_left_alone_and_keep_no_wal() -> None:
    good = backup(2)
    old = backup(8)
    interrupted = (None, "20261203T000000Z", "no manifest: an incomplete or interrupted upload")
    orphan = (backup(1, parent="20261101T000000Z")[0], backup(1)[1],
              "incremental on base backup 20261101T000000Z, which is missing: it cannot be "
              "restored")
    plan = plan_base([orphan, interrupted, good, old], full=1, window=None, now=NOW)
    got = outcome(plan)
    assert got[interrupted[1]] == "left alone: no manifest: an incomplete or interrupted upload"
    assert got[orphan[1]].startswith("left alone: incremental on base backup 20261101")
    assert got[good[1]] == ("full backup 1 of 1", "newest")
    assert got[old[1]] == "delete"
    assert plan.wal_needed_from == good[0].first_segment

    nothing_usable = plan_base([interrupted], full=1, window=None, now=NOW)
    assert nothing_usable.deleted == [] and nothing_usable.wal_needed_from is None
    assert summary(nothing_usable, [], 0).endswith(
        "WAL: nothing is deleted (no usable base backup to keep).")


def test_wal_before_the_oldest_kept_backup_goes_and_timeline_histories_stay() -> None:
    needed = Segment(2, 4096 + 5, MiB)  # log 1, segment 5
    names = ["000000010000000100000004", "000000010000000100000005",
             "000000020000000100000004.partial", "000000020000000100000003.00000028.backup",
             "00000002.history", "000000020000000100000005", "000000030000000100000006",
             "not-wal"]
    assert wal_to_delete(names, needed) == [
        "000000010000000100000004", "000000020000000100000004.partial",
        "000000020000000100000003.00000028.backup"]
    assert wal_to_delete(names, None) == []


def _config(tmp_path, line: str):
    path = tmp_path / "drdeck.toml"
    path.write_text(f'[repositories.r]\ntype = "local"\npath = "{tmp_path}"\n\n'
                    f'[clusters.prod]\ndsn = "host=/tmp"\nrepository = "r"\n{line}\n')
    return load_config(path)


def test_base_retention_is_read_from_the_cluster_and_a_bad_one_is_refused(tmp_path) -> None:
    cluster = _config(tmp_path, 'base_retention = { full = 3, window = "14d" }').cluster()
    assert (cluster.base_retention.full, cluster.base_retention.window) == (3, 14 * 86400)
    assert _config(tmp_path, "").cluster().base_retention.full == 2
    for line, said in (("base_retention = { full = -1 }", "base_retention.full must be a "
                        "whole number"),
                       ("base_retention = { full = 0 }", "base_retention keeps nothing"),
                       ('base_retention = { fulls = 2 }', "unknown key 'fulls'"),
                       ('base_retention = { window = "a week" }', "bad duration for window"),
                       ("base_retention = 2", "base_retention must be a table")):
        with pytest.raises(InvalidInput) as refused:
            _config(tmp_path, line)
        assert said in str(refused.value), (line, str(refused.value))
