"""WAL file names: TTTTTTTTXXXXXXXXYYYYYYYY segments, TTTTTTTT.history timelines.

A segment's number is its position in the WAL stream: log X, segment Y within
it. How many segments a log holds depends on the cluster's wal_segment_size
(256 of 16 MiB, 4096 of 1 MiB), so "the next segment" needs that size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEGMENT = re.compile(r"[0-9A-F]{24}")
HISTORY = re.compile(r"[0-9A-F]{8}\.history")
PARTIAL = re.compile(r"[0-9A-F]{24}\.partial")
BACKUP = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")
_LOG_SPAN = 0x100000000  # bytes of WAL per "log" (the X part of a segment name)


def is_segment(name: str) -> bool:
    return SEGMENT.fullmatch(name) is not None


def is_history(name: str) -> bool:
    return HISTORY.fullmatch(name) is not None


def is_archivable(name: str) -> bool:
    """What archive_command hands us: segments, timeline history, .partial and backup files."""
    return bool(SEGMENT.fullmatch(name) or HISTORY.fullmatch(name) or PARTIAL.fullmatch(name)
                or BACKUP.fullmatch(name))


def is_restorable(name: str) -> bool:
    """What a recovering server asks restore_command for: segments, timeline histories and
    backup history files."""
    return bool(SEGMENT.fullmatch(name) or HISTORY.fullmatch(name) or BACKUP.fullmatch(name))


@dataclass(frozen=True, order=True)
class Segment:
    timeline: int
    number: int  # position in the stream: log * segments_per_log + seg
    size: int  # wal_segment_size in bytes

    @classmethod
    def parse(cls, name: str, size: int) -> Segment:
        if not is_segment(name):
            raise ValueError(f"{name!r} is not a WAL segment name")
        per_log = _LOG_SPAN // size
        timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
        return cls(timeline, log * per_log + seg, size)

    @classmethod
    def of_lsn(cls, timeline: int, lsn: int, size: int) -> Segment:
        return cls(timeline, lsn // size, size)

    @property
    def name(self) -> str:
        per_log = _LOG_SPAN // self.size
        log, seg = divmod(self.number, per_log)
        return f"{self.timeline:08X}{log:08X}{seg:08X}"

    @property
    def start_lsn(self) -> int:
        return self.number * self.size

    @property
    def end_lsn(self) -> int:
        return (self.number + 1) * self.size

    def next(self) -> Segment:
        return Segment(self.timeline, self.number + 1, self.size)

    def on_timeline(self, timeline: int) -> Segment:
        return Segment(timeline, self.number, self.size)


def parse_lsn(text: str) -> int:
    """'3/9A000028' -> an integer position."""
    high, _, low = text.strip().partition("/")
    if not low:
        raise ValueError(f"{text!r} is not an LSN (write it like 3/9A000028)")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:08X}"


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


@dataclass(frozen=True)
class TimelineSwitch:
    parent: int
    switch_lsn: int  # where the child timeline branched off
    reason: str


def parse_history(text: str) -> list[TimelineSwitch]:
    """A timeline history file: one line per ancestor, `parentTLI  switchLSN  reason`."""
    switches = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        switches.append(TimelineSwitch(int(parts[0]), parse_lsn(parts[1]),
                                       parts[2] if len(parts) > 2 else ""))
    return switches
