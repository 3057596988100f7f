"""One run's events as the journal keeps them, read by one thread for every viewer.

However many browsers follow a run, the journal is read once per poll: a thread
of its own (a Journal is not shared between threads) reads the events written
since its last look and hands them to the event loop, where each viewer's
stream takes them from the feed's list. A viewer who comes mid-run starts at
the top of that list, so it gets the events so far first.

The feed knows the run has ended when the journal says so and no event is
left to read: the recorder writes a run's last event before its status, so
nothing is missed between the two. A run whose drdeck has gone silent (killed,
with no chance to say so) never ends in the journal: the feed says so instead,
with a Notice, and again with an empty one if it is heard from.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tui.journal.follow import ENDED, Silence

POLL_S = 0.2
BATCH = 5000  # events read at once: a flood of output comes in a few reads


@dataclass(frozen=True)
class Notice:
    """Between events: the run's drdeck has not been heard from (follow.unheard), or ""
    once it is again."""

    unheard: str


@dataclass(frozen=True)
class Ended:
    """The last item of a stream: the run's status, or why the journal could not be read."""

    status: str
    error: str | None = None


class Feed:
    def __init__(self, run_id: str, open_journal: Callable[[], Any],
                 loop: asyncio.AbstractEventLoop, poll_s: float = POLL_S):
        self.run_id = run_id
        self.events: list[tuple[int, str]] = []  # (seq, the event's --json text)
        self.ended: str | None = None  # the run's status once it has ended and all is read
        self.error: str | None = None  # why the journal could not be read
        self.unheard = ""  # tui.journal.follow.unheard, as the last look found it
        self.viewers = 0
        self._open = open_journal
        self._loop = loop
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._follow, name=f"feed-{run_id[:8]}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def stream(self, after: int = -1
                     ) -> AsyncIterator[tuple[int, str] | Notice | Ended]:
        """The events after sequence number `after`, then each new one as it comes, and a
        Notice when the run's drdeck falls silent or is heard again; Ended once the run
        has ended (or the journal failed) and every event is given."""
        at, told = 0, ""  # a viewer who comes back was told again by the page's reconnect
        while True:
            while at < len(self.events):
                seq, body = self.events[at]
                at += 1
                if seq > after:
                    yield seq, body
            if self.unheard != told:
                told = self.unheard
                yield Notice(told)
            if self.ended is not None or self.error is not None:
                yield Ended(self.ended or "unknown", self.error)
                return
            wake = self._wake
            await wake.wait()

    # --- the reading thread, and what it hands to the loop ---------------------------------

    def _follow(self) -> None:
        from tui.errors import DrdeckError

        last = -1
        try:
            journal = self._open()
        except DrdeckError as exc:
            self._hand(error=str(exc))
            return
        try:
            said, silence = "", Silence()
            while not self._stop.is_set():
                pulse = journal.run_pulse(self.run_id)
                status = pulse[0] if pulse else None
                words = silence.words(self.run_id, *pulse, datetime.now(UTC),
                                      time.monotonic()) if pulse else ""
                rows = journal.events(self.run_id, after=last, limit=BATCH)
                # handed with the events, after them, once they are all read: a notice
                # follows what came before it
                told = None
                if words != said and len(rows) < BATCH:
                    told, said = words, words
                if rows or told is not None:
                    self._hand(rows=rows, silence=told)
                if rows:
                    last = rows[-1][0]
                    if len(rows) == BATCH:
                        continue
                elif status is None or status in ENDED:
                    self._hand(ended=status or "gone")
                    return
                self._stop.wait(self._poll_s)
        except DrdeckError as exc:
            self._hand(error=str(exc))
        finally:
            journal.close()

    def _hand(self, rows: list[tuple[int, str]] | None = None, ended: str | None = None,
              error: str | None = None, silence: str | None = None) -> None:
        def arrive() -> None:
            if rows:
                self.events.extend(rows)
            if silence is not None:
                self.unheard = silence
            self.ended = ended or self.ended
            self.error = error or self.error
            wake, self._wake = self._wake, asyncio.Event()
            wake.set()

        try:
            self._loop.call_soon_threadsafe(arrive)
        except RuntimeError:  # the loop has closed: the server is on its way out
            self._stop.set()


class Feeds:
    """The feeds of the runs someone follows now; a feed goes when its last viewer does."""

    def __init__(self, open_journal: Callable[[], Any], poll_s: float = POLL_S):
        self._open = open_journal
        self._poll_s = poll_s
        self._feeds: dict[str, Feed] = {}

    async def follow(self, run_id: str, after: int = -1
                     ) -> AsyncIterator[tuple[int, str] | Notice | Ended]:
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = Feed(run_id, self._open, asyncio.get_running_loop(), self._poll_s)
            self._feeds[run_id] = feed
        feed.viewers += 1
        try:
            async for item in feed.stream(after):
                yield item
        finally:
            feed.viewers -= 1
            if feed.viewers == 0:
                feed.stop()
                if self._feeds.get(run_id) is feed:
                    del self._feeds[run_id]

    def close(self) -> None:
        for feed in self._feeds.values():
            feed.stop()
        self._feeds.clear()
