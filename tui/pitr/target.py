"""Recovery targets: what the operator asked for, checked against what the archive can give.

PostgreSQL itself does not refuse an unreachable target: a time before the base
backup's end silently recovers to the first consistent point, and a time past
the archive fails only after the whole replay. drdeck refuses both before it
writes a byte, and says what the reachable range is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tui.errors import PermanentFailure
from tui.runbook.params import parse_timestamp
from tui.wal.names import format_lsn, parse_lsn

if TYPE_CHECKING:  # only named here: a runbook parameter's check parses targets, fast
    from tui.pitr.basebackup import BaseManifest
    from tui.pitr.window import RecoveryPicture, Window

KINDS = ("time", "lsn", "xid", "name", "immediate", "latest")


class TargetRefused(PermanentFailure):
    pass


@dataclass(frozen=True)
class Target:
    kind: str
    value: str  # as PostgreSQL wants it in recovery_target_<kind>
    moment: datetime | None = None  # kind == time
    lsn: int | None = None  # kind == lsn
    inclusive: bool = True

    def describe(self) -> str:
        if self.kind == "time":
            return self.moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        if self.kind in ("immediate", "latest"):
            return {"immediate": "the first consistent point",
                    "latest": "the end of the archive"}[self.kind]
        return f"{self.kind} {self.value}"

    def settings(self) -> dict[str, str | bool]:
        """The recovery_target_* parameters."""
        if self.kind == "latest":
            return {}
        if self.kind == "immediate":
            return {"recovery_target": "immediate"}
        settings: dict[str, str | bool] = {f"recovery_target_{self.kind}": self.value}
        if self.kind in ("time", "lsn", "xid"):
            settings["recovery_target_inclusive"] = self.inclusive
        return settings


def parse_target(text: str, kind: str = "", inclusive: bool = True) -> Target:
    """A target from the operator's words; the kind is inferred when not given."""
    text = text.strip()
    if not kind:
        kind = infer_kind(text)
    if kind not in KINDS:
        raise TargetRefused(f"target kind {kind!r} is not one of: {', '.join(KINDS)}")
    if kind == "time":
        try:
            moment = parse_timestamp(text)
        except ValueError as exc:
            raise TargetRefused(str(exc)) from None
        return Target("time", moment.isoformat(), moment=moment, inclusive=inclusive)
    if kind == "lsn":
        try:
            lsn = parse_lsn(text)
        except ValueError as exc:
            raise TargetRefused(str(exc)) from None
        return Target("lsn", format_lsn(lsn), lsn=lsn, inclusive=inclusive)
    if kind == "xid":
        if not text.isdigit():
            raise TargetRefused(f"{text!r} is not a transaction id (a whole number)")
        return Target("xid", text, inclusive=inclusive)
    if kind == "name":
        if not text:
            raise TargetRefused("a named restore point needs its name")
        return Target("name", text)
    return Target(kind, "")


# a date (2026-12-02, 2026/12/02, 02.12.2026) or a time of day (14:30) at the start: meant
# as a moment, so a typo in it (14:61) is refused rather than taken for a restore point
# (not \b after the date: 2026-12-02T14:30 has a word character right after it)
_LOOKS_LIKE_A_MOMENT = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?!\d)|\d{1,2}:\d\d(?!\d)")


def infer_kind(text: str) -> str:
    if text in ("", "latest"):
        return "latest"
    if text == "immediate":
        return "immediate"
    if re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", text):
        return "lsn"
    if text.isdigit():
        return "xid"
    if _LOOKS_LIKE_A_MOMENT.match(text):
        return "time"
    return "name"


@dataclass(frozen=True)
class Plan:
    target: Target
    base: BaseManifest
    window: Window


def plan_recovery(target: Target, picture: RecoveryPicture) -> Plan:
    """The base backup to start from, or a refusal that says what can be reached."""
    if not picture.windows:
        why = "; ".join(picture.problems) or "no complete base backup"
        raise TargetRefused(f"nothing is recoverable: {why}")
    if target.kind == "time":
        return _plan_time(target, picture)
    if target.kind == "lsn":
        for window in reversed(picture.windows):
            usable = [b for b in window.bases if parse_lsn(b.stop_lsn) <= target.lsn]
            if usable and target.lsn <= window.end_lsn:
                return Plan(target, usable[-1], window)
        first, last = picture.windows[0], picture.windows[-1]
        raise TargetRefused(
            f"LSN {target.value} cannot be reached: the archive covers "
            f"{first.base.stop_lsn} to {format_lsn(last.end_lsn)}")
    if target.kind in ("latest", "immediate"):
        window = picture.windows[-1]
        return Plan(target, window.bases[-1], window)
    # an xid or a restore point has no position we can check beforehand: start from the
    # oldest base backup of the newest window, so the target cannot lie before it
    window = picture.windows[-1]
    return Plan(target, window.bases[0], window)


def wal_to_replay(plan: Plan) -> int:
    """The WAL bytes a recovery by `plan` replays, from its base backup's start: to the
    target's position when it is one; for a time, as far into the window's WAL as that
    moment lies between the base backup's end and the window's last commit (WAL written
    at an even pace after the backup: an estimate); else to the end of the window
    (latest, or a target whose position cannot be known beforehand). The WAL written
    during the backup is always replayed."""
    start, stop = parse_lsn(plan.base.start_lsn), parse_lsn(plan.base.stop_lsn)
    end, target, window = plan.window.end_lsn, plan.target, plan.window
    stopped = plan.base.stopped
    if target.kind == "immediate":
        end = stop
    elif target.kind == "lsn" and target.lsn is not None:
        end = min(end, target.lsn)
    elif target.moment is not None and window.end is not None and window.end > stopped:
        share = (target.moment - stopped).total_seconds() / \
            (window.end - stopped).total_seconds()
        end = stop + int(max(0, end - stop) * min(1.0, max(0.0, share)))
    return max(0, max(end, stop) - start)


def _plan_time(target: Target, picture: RecoveryPicture) -> Plan:
    moment = target.moment
    assert moment is not None
    window = picture.window_for(moment)
    if window is None:
        earliest, latest = picture.earliest, picture.latest
        if earliest is not None and moment < earliest:
            raise TargetRefused(
                f"{target.describe()} is before the oldest base backup ended: the earliest "
                f"point you can reach is {_when(earliest)}. (PostgreSQL would silently stop "
                "at that point instead.)")
        if latest is not None and moment > latest:
            raise TargetRefused(
                f"{target.describe()} is after the last archived commit: the newest point "
                f"you can reach is {_when(latest)}. Recover to 'latest', or wait for more "
                "WAL to be archived")
        raise TargetRefused(f"{target.describe()} falls in a gap of the WAL archive; "
                            f"recoverable: {picture.describe_windows()}")
    usable = [b for b in window.bases if b.stopped <= moment]
    return Plan(target, usable[-1], window)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
