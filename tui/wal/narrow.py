"""Which of a timeline's segments a scan bounded by --since and --until must read.

Commit times grow along the WAL (nearly: concurrent commits may swap by moments), so the
first segment worth reading is found by bisection, reading the commit times of a few
segments (tui.pitr.window.commit_times) instead of the whole archive. A transaction's
records all come before its commit, so the scan starts LOOK_BACK earlier than the first
commit at `since`: a transaction that ran longer than that has only the rows it wrote
since then counted. It stops after the first segment whose commits all came after `until`
and the one after it (where a commit record of that segment can end).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

LOOK_BACK = timedelta(minutes=10)
WORTH_IT = 32  # segments: fewer are read whole sooner than bisected


def segments_between(fetch: Callable[[str], bytes | None], names: list[str],
                     since: datetime | None, until: datetime | None, *,
                     look_back: timedelta = LOOK_BACK, worth_it: int = WORTH_IT) -> list[str]:
    """The run of `names` (one timeline's, in order) a scan from `since` to `until` reads."""
    if len(names) < worth_it or (since is None and until is None):
        return names
    times = _CommitTimes(fetch)
    first = 0 if since is None else _first_at_or_after(names, since - look_back, times)
    last = len(names) - 1
    if until is not None:
        after = _first_at_or_after(names, until, times, start=first, strictly=True)
        last = min(last, after + 1)
    return names[max(0, first - 1):last + 1]


class _CommitTimes:
    """Each segment's commit times, read once."""

    def __init__(self, fetch: Callable[[str], bytes | None]) -> None:
        self.fetch = fetch
        self.read: dict[str, list[datetime]] = {}

    def of(self, name: str) -> list[datetime]:
        from tui.pitr.window import commit_times

        if name not in self.read:
            data = self.fetch(name)
            self.read[name] = commit_times(data, name) if data else []
        return self.read[name]


def _first_at_or_after(names: list[str], moment: datetime, times: _CommitTimes,
                       start: int = 0, strictly: bool = False) -> int:
    """The index of the first segment with a commit at or after `moment` (after it, when
    `strictly`); len(names) when none has. A segment without commits takes the verdict of
    the next one that has."""
    low, high = start, len(names)
    while low < high:
        middle = (low + high) // 2
        probe = middle
        while probe < high and not times.of(names[probe]):
            probe += 1
        if probe == high:  # no commit from middle on, below high: the answer is before
            high = middle
            continue
        newest = max(times.of(names[probe]))
        if newest > moment or (newest == moment and not strictly):
            high = middle
        else:
            low = probe + 1
    return low
