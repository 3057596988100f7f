"""Durations as operators write them (90s, 15m, 4h, 1h30m, 2d, 250ms) and as we show them."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError with a message fit for an operator."""
    cleaned = text.strip().replace(" ", "")
    if not cleaned or not _WHOLE.fullmatch(cleaned):
        raise ValueError(
            f"{text!r} is not a duration; write it like 90s, 15m, 4h, 1h30m or 2d"
        )
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))


def format_clock(seconds: float | None) -> str:
    """H:MM:SS, the way the RTO clock reads; '-' when unknown."""
    if seconds is None:
        return "-"
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_duration(seconds: float | None) -> str:
    """Short human duration: 0.04s, 3.2s, 4m05s, 1h02m, 2d03h; '-' for none (or for
    what no clock gives: infinite, not a number)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        major, minor, units = whole // 60, whole % 60, "ms"
    elif whole < 86400:
        major, minor, units = whole // 3600, whole % 3600 // 60, "hm"
    else:
        major, minor, units = whole // 86400, whole % 86400 // 3600, "dh"
    if minor == 0:
        return f"{major}{units[0]}"
    return f"{major}{units[0]}{minor:02d}{units[1]}"
