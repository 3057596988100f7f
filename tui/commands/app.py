"""Open the Textual app (the only command that imports it)."""

from __future__ import annotations

from typing import Any

from tui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, InvalidInput
from tui.runbook.model import Runbook
from tui.runbook.params import resolve


def open_app(*, mode: str = "drill", runbook: Runbook | None = None,
             given: dict[str, str] | None = None, autostart: bool = False,
             config: Any = None, config_path: str | None = None,
             resume_run: str | None = None, watch: str | None = None) -> int:
    """Run the app; the exit code follows the last run (0 when none failed)."""
    from tui.app.app import DrdeckApp
    from tui.config import load_config
    from tui.journal.location import journal_location

    if config is None:
        config = load_config(config_path)
    journal_location(config)  # a malformed $DRDECK_JOURNAL exits 2 before the screen opens

    start: dict[str, Any] | None = None
    if runbook is not None and autostart:
        try:
            start = resolve(runbook, given or {})
        except InvalidInput:
            start = None  # something is missing: the briefing asks for it
    resume = None
    if resume_run is not None:
        from tui.journal.resumable import load_resumable

        resume = load_resumable(config, resume_run, given or {})
    app = DrdeckApp(mode=mode, open_runbook=runbook, params=given, autostart=start,
                    config=config, runbook_dirs=list(config.runbook_dirs), resume=resume,
                    watch=watch)
    app.run()
    result = app.last_result
    if app.signalled or (result is not None and result.interrupted):
        return EXIT_INTERRUPTED
    if result is None:
        return EXIT_OK
    return EXIT_OK if result.status == "succeeded" else EXIT_FAILED
