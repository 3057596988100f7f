"""The RTO against its target, in the words a drill report uses."""

from __future__ import annotations

from tui.durations import format_clock


def rto_verdict(rto_s: float | None, target_s: float | None, precise: bool = True) -> str:
    """'0:12:41 of 4:00:00 target (5%, met)' — the sentence a drill report needs."""
    if rto_s is None:
        measured = "not reached"
        return f"{measured} (target {format_clock(target_s)})" if target_s else measured
    measured = format_clock(rto_s) if rto_s >= 1 or not precise else f"{rto_s:.2f}s"
    if not target_s:
        return f"{measured} (no target set)"
    share = rto_s / target_s
    verdict = "met" if share <= 1 else "MISSED"
    return f"{measured} of {format_clock(target_s)} target ({share:.0%}, {verdict})"
