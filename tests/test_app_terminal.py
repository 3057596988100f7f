"""A terminal that goes away (a dropped SSH session) must not hang the app: what is still
written to it is dropped, so SIGHUP's stop, record and clean-up can finish."""

from __future__ import annotations

import contextlib
import os
import pty
import threading

import pytest
from textual.drivers._writer_thread import WriterThread

from tui.app.app import DrdeckApp
from tui.app.terminal import TerminalDriver, VanishingTerminal

FRAMES = 200  # far more than the writer thread's queue holds (30)


@pytest.fixture
def hung_up_terminal():
    """The app's side of a pseudo-terminal whose other side has been closed."""
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w", buffering=1)
    os.close(master)
    yield tty
    with contextlib.suppress(OSError):  # its buffer cannot be flushed either
        tty.close()


def test_a_hung_up_terminal_answers_writes_with_an_error(hung_up_terminal) -> None:
    """What the app meets after SIGHUP; without it the other tests here would prove nothing."""
    with pytest.raises(OSError):
        hung_up_terminal.write("frame\n" * 100)
        hung_up_terminal.flush()


def test_drawing_on_a_hung_up_terminal_neither_raises_nor_blocks(hung_up_terminal) -> None:
    terminal = VanishingTerminal(hung_up_terminal)
    writer = WriterThread(terminal)
    writer.start()

    def draw() -> None:
        for number in range(FRAMES):
            writer.write(f"frame {number}\n" * 50)
        writer.stop()  # what the app's shutdown does last: it waits for the queue to drain

    drawing = threading.Thread(target=draw, daemon=True)
    drawing.start()
    drawing.join(timeout=20)

    assert not drawing.is_alive(), "the app blocked writing to a terminal that has gone away"
    assert terminal.gone
    assert terminal.fileno() == hung_up_terminal.fileno()  # termios still gets the tty


def test_the_app_draws_through_the_driver_that_tolerates_a_vanished_terminal() -> None:
    assert DrdeckApp().get_driver_class() is TerminalDriver
