"""The drdeck app: Home -> briefing -> run, with help, palette and a guarded quit."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.driver import Driver
from textual.reactive import reactive
from textual.screen import Screen

from tui.runbook.discovery import Found, discover
from tui.runbook.model import Runbook

from .screens.briefing import BriefingScreen
from .screens.confirm import AskYesNo
from .screens.help import HelpScreen
from .screens.home import HomeScreen
from .screens.run import RunScreen


def local_time() -> str:
    return time.strftime("%H:%M:%S")


class DrdeckApp(App[None]):
    CSS_PATH = "drdeck.tcss"
    TITLE = "drdeck"
    # every screen gets -narrow/-wide and -short/-tall: drdeck.tcss fits 80x24 with them
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        # ctrl+c must never kill a running restore silently: it asks, like quit
        Binding("ctrl+c", "request_quit", "quit", show=False, priority=True),
        Binding("ctrl+q", "request_quit", "quit", priority=True),
        Binding("question_mark,f1", "help", "help"),
    ]

    mode: reactive[str] = reactive("drill")

    def __init__(
        self,
        *,
        mode: str = "drill",
        runbooks: list[Found] | None = None,
        runbook_dirs: list[Path] | None = None,
        open_runbook: Runbook | None = None,
        params: dict[str, str] | None = None,
        autostart: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], str] = local_time,
        run_id: str | None = None,
        cursor_blink: bool = True,
        config: Any = None,
        utc_now: Callable[[], Any] | None = None,
        journal: bool = True,
        resume: Any = None,
        banner: str | None = None,
        watch: str | None = None,
    ) -> None:
        super().__init__()
        from tui.config import Config

        self.config = config if config is not None else Config()
        self.cursor_blink = cursor_blink
        self.journal_enabled = journal
        self._resume = resume
        self.banner = banner
        from tui.catalog.inventory import now_utc

        self.utc_now = utc_now or now_utc
        self.mode = mode
        self.clock = clock
        self.wall_clock = wall_clock
        self._runbooks = runbooks
        self._runbook_dirs = runbook_dirs
        self._open_runbook = open_runbook
        self._given = params or {}
        self._autostart = autostart
        self._run_id = run_id
        self._watch = watch  # a run to follow through the journal, read only
        self.last_result = None
        self._signals: dict[int, Any] = {}
        # a runbook's values from its last failed or aborted run, per runbook name (in
        # memory only: secrets among them are never written down)
        self._remembered: dict[str, dict[str, str]] = {}
        # the last WAL scan per cluster (tui.wal.finder.Found): the events list, and the
        # inventory's marks
        self.wal_events: dict[str, Any] = {}
        self._stopping: asyncio.Task | None = None
        self.signalled = False  # ended by SIGTERM or SIGHUP: the exit code says interrupted

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        if driver.__module__ != "textual.drivers.linux_driver":  # Windows; TEXTUAL_DRIVER
            return driver
        from .terminal import TerminalDriver  # a hung-up terminal must not hang the app

        return TerminalDriver

    def on_mount(self) -> None:
        _freeze_start_up_heap()
        self._watch_signals()
        found = self._runbooks if self._runbooks is not None else discover(self._runbook_dirs)
        self._found = found
        self.push_screen(HomeScreen(found))
        if self._watch is not None:
            from .screens.watch import WatchScreen

            self.push_screen(WatchScreen(self._watch))
        elif self._resume is not None:
            # once Home is drawn: resuming sets the mode shown in its breadcrumb
            self.call_after_refresh(self.resume_run, *self._resume)
        elif self._open_runbook is not None:
            if self._autostart is not None:
                self.start_run(self._open_runbook, self._autostart)
            else:
                self.open_briefing(self._open_runbook, self._given)

    # --- navigation -----------------------------------------------------------------

    def open_briefing(self, runbook: Runbook, given: dict[str, str] | None = None) -> None:
        defaults = {k: v for k, v in self.config.defaults_for(runbook.name).items()
                    if k in runbook.params}
        kept = {k: v for k, v in self._remembered.get(runbook.name, {}).items()
                if k in runbook.params}
        self.push_screen(BriefingScreen(runbook, {**defaults, **kept, **(given or {})}))

    def remember_values(self, runbook: str, values: dict[str, str] | None) -> None:
        """What the briefing of `runbook` starts from next time (None: its defaults)."""
        if values is None:
            self._remembered.pop(runbook, None)
        else:
            self._remembered[runbook] = dict(values)

    def open_journal(self) -> Any:
        """A journal connection for the app's own thread (workers open their own)."""
        from tui.journal.store import open_journal

        return open_journal(self.config)

    def open_inventory(self) -> None:
        from .screens.inventory import InventoryScreen

        self.push_screen(InventoryScreen())

    def open_history(self) -> None:
        from .screens.history import HistoryScreen

        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen())

    def resume_run(self, detail: Any, runbook: Runbook, params: dict[str, Any]) -> None:
        """Continue a journal run (from `load_resumable`) in the mode it was started in."""
        self.mode = detail.run.mode
        if isinstance(self.screen, HomeScreen):
            self.screen.sync_mode()
        self.push_screen(RunScreen(runbook, params, mode=self.mode, config=self.config,
                                   resume=detail))

    def open_runbook_named(self, name: str, given: dict[str, str]) -> None:
        """Open a runbook's briefing with some parameters filled (from the inventory)."""
        from tui.errors import DrdeckError
        from tui.runbook.discovery import find_runbook
        from tui.runbook.loader import load_runbook

        found = next((f for f in (self._runbooks or []) if f.path.stem == name), None)
        try:
            runbook = found.runbook if found and found.runbook else load_runbook(
                find_runbook(name, self._runbook_dirs))
        except DrdeckError as exc:
            self.notify(str(exc), severity="error")
            return
        known = {k: v for k, v in given.items() if k in runbook.params}
        self.open_briefing(runbook, known)

    def start_run(self, runbook: Runbook, values: dict[str, Any]) -> None:
        screen = RunScreen(runbook, values, mode=self.mode, run_id=self._run_id,
                           config=self.config)
        self._run_id = None
        if isinstance(self.screen, BriefingScreen):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def go_home(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()
        if isinstance(self.screen, HomeScreen):
            self.screen.sync_mode()

    def _run_screen(self) -> RunScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen):
                return screen
        return None

    # --- quitting -------------------------------------------------------------------

    def _watch_signals(self) -> None:
        """SIGTERM or a closed terminal (SIGHUP) stop the run as an interruption, record it,
        and leave the terminal clean: never a traceback over a half-drawn screen."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread: whoever runs us handles signals
            self._signals[sig] = previous

    def _on_signal(self) -> None:
        self.signalled = True
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_and_exit("interrupted"))

    async def _stop_and_exit(self, reason: str) -> None:
        run = self._run_screen()
        if run is not None and run.running:
            await run.stop_run(reason)
        self._remember(run)
        self.exit()

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._signals.items():
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, previous)
        self._signals.clear()

    def action_quit(self) -> None:  # the palette's Quit: the same guarded way out
        self.action_request_quit()

    def action_request_quit(self) -> None:
        run = self._run_screen()
        if run is None or not run.running:
            self._remember(run)
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes and self._stopping is None:
                self._stopping = asyncio.ensure_future(
                    self._stop_and_exit("the operator quit drdeck during the run"))

        self.push_screen(AskYesNo(
            "A run is in progress. Abort it and quit?",
            "The current step is stopped and the run is recorded as aborted.",
            yes="Abort and quit", no="Keep running"), answer)

    def _remember(self, run: RunScreen | None) -> None:
        if run is not None and run.result is not None:
            self.last_result = run.result

    def on_screen_resume(self) -> None:
        run = self._run_screen()
        self._remember(run)

    # --- help and the palette -------------------------------------------------------

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        title = {
            HomeScreen: "home",
            BriefingScreen: "briefing",
            RunScreen: "run",
        }.get(type(screen), type(screen).__name__.removesuffix("Screen").lower())
        self.push_screen(HelpScreen(screen, title, getattr(screen, "help_notes", "")))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "The keys of this screen", self.action_help)
        if isinstance(screen, RunScreen) and screen.running:
            yield SystemCommand("Abort the run", "Stop the current step and record the run "
                                "as aborted", screen.action_abort)
        if isinstance(screen, RunScreen):
            yield SystemCommand("Follow the output", "Toggle following the end of the log",
                                screen.action_follow)
            yield SystemCommand("Search the output", "Find text in the log",
                                screen.action_search)
        if isinstance(screen, HomeScreen):
            yield SystemCommand("Switch mode", "DRILL or INCIDENT, recorded with each run",
                                screen.action_toggle_mode)
            if screen.interrupted:
                yield SystemCommand("Resume the interrupted run", "Continue it from its "
                                    "first unfinished step", screen.action_resume)
        from .screens.history import HistoryScreen

        if isinstance(screen, HistoryScreen):
            yield SystemCommand("Export the selected run", "Its report as "
                                "drdeck-run-ID.md in the current directory",
                                screen.action_export)
            yield SystemCommand("Filter the runs", "By runbook, mode or result",
                                screen.action_filter)
        elif not isinstance(screen, RunScreen) and not screen.is_modal:
            yield SystemCommand("History", "Every recorded run: results, RTO against target, "
                                "each step on a time line", self.open_history)
        if screen.is_modal:
            return
        # navigation: anywhere a run is not holding the screen
        run = self._run_screen()
        if run is None or not run.running:
            if not isinstance(screen, HomeScreen):
                yield SystemCommand("Home", "The runbooks, their last run and next drill",
                                    lambda: self._leave_form_then(self.go_home))
            from .screens.inventory import InventoryScreen

            if not isinstance(screen, InventoryScreen):
                yield SystemCommand("Inventory", "Backups, snapshots and the recoverable "
                                    "window of each cluster",
                                    lambda: self._leave_form_then(self.open_inventory))
            for found in getattr(self, "_found", []):
                if found.runbook is not None:
                    runbook = found.runbook
                    yield SystemCommand(f"Runbook: {runbook.name}", runbook.title,
                                        lambda r=runbook: self._leave_form_then(
                                            lambda: self.open_briefing_from_anywhere(r)))

    def _leave_form_then(self, go: Callable[[], None]) -> None:
        """A filled-in briefing is not thrown away by the palette without asking."""
        if isinstance(self.screen, BriefingScreen):
            self.screen.action_back(then=go)
        else:
            go()

    def open_briefing_from_anywhere(self, runbook: Runbook) -> None:
        self.go_home()
        self.open_briefing(runbook)


_heap_frozen = False


def _freeze_start_up_heap() -> None:
    """Textual and our imports are hundreds of thousands of long-lived objects; frozen,
    the full collections an output flood triggers no longer walk them (66 -> 20 ms each).
    Once per process: frozen objects are never collected, so a second app's must not be.
    """
    global _heap_frozen
    if not _heap_frozen:
        gc.freeze()
        _heap_frozen = True
