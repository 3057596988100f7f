"""The terminal the app draws on, and what happens when it goes away.

A dropped SSH session or a closed window leaves the app writing to a terminal that
answers every write with EIO. Textual's writer thread dies on the first one; its queue
(30 writes) then fills, and the next write blocks the app for good: the SIGHUP that
should stop the run, record it and clean up never gets that far. Here a terminal that
has gone away swallows what is still written to it, so the app ends as it should.
"""

from __future__ import annotations

from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver


class VanishingTerminal:
    """A file that stops writing, quietly, once its terminal is gone."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._file.write(text)
            except (OSError, ValueError):  # EIO from a hung-up terminal; a closed file
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self.gone = True

    def __getattr__(self, name: str) -> Any:  # fileno(), isatty(), encoding: the terminal's
        return getattr(self._file, name)


class TerminalDriver(LinuxDriver):
    """Textual's driver for Linux and macOS, drawing through a VanishingTerminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file = VanishingTerminal(self._file)
