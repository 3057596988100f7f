"""What a restore moves, by volume, in bytes: read before it starts, to scale its
forecast (tui.journal.forecast), and measured as it runs.

A volume is one kind of data a step moves, with a throughput of its own:

    snapshot   the snapshot's stored bytes, fetched, checked and decrypted
    dump       the dump's bytes (the snapshot decrypted), restored by pg_restore
    base       the base backup's stored bytes, laid down in the new data directory
    wal        the WAL bytes replayed, from the base backup's start to the target

Before a run, a runbook's pre-flight action says what the run would move
(`Action.volumes`, which asks the cluster's source). As a run goes, each step that
moves a volume records two measures, `<volume>_bytes` and `<volume>_s`: how much, and
how long it took (`record`). Earlier runs' pairs give the throughput a forecast uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from tui.engine.actions.base import Action
from tui.units import format_bytes

# what each volume is called in a sentence
WORDS = {"snapshot": "snapshot", "dump": "dump", "base": "base backup", "wal": "WAL"}
READ_TIMEOUT_S = 10.0  # the longest a run's start or a forecast waits for the source


def record(ctx: Any, volume: str, moved: float, seconds: float, detail: str = "") -> None:
    """Measure `moved` bytes of `volume` moved in `seconds` (ctx: a StepContext)."""
    if moved <= 0:
        return
    ctx.measure(f"{volume}_bytes", float(moved), "B", detail)
    ctx.measure(f"{volume}_s", float(seconds), "s",
                f"{format_bytes(moved / seconds) if seconds > 0 else '-'}/s")


def planned_volumes(config: Any, runbook: Any, given: dict[str, Any],
                    timeout_s: float = READ_TIMEOUT_S) -> dict[str, int]:
    """What a run of `runbook` with the parameters `given` would move, by volume, as the
    first of its steps that can say reads it from the source; {} when none can, or the
    source cannot be read within `timeout_s`: a forecast never stands between an
    operator and a restore (the pre-flight says what is wrong with the source)."""
    from tui.engine.actions import get_action

    planners = ((get_action(step.action), step.args) for step in runbook.steps)
    action, raw = next(((a, r) for a, r in planners
                        if a is not None and a.volumes is not Action.volumes), (None, {}))
    if action is None:
        return {}
    found: dict[str, int] = {}

    def read() -> None:
        with contextlib.suppress(Exception):  # unreadable now: the pre-flight says why
            found.update(asyncio.run(action().volumes(config, _args_from_params(
                action, raw, given))))

    # a thread of its own: an unreachable store is waited for no longer than this
    reader = threading.Thread(target=read, name="drdeck-volumes", daemon=True)
    reader.start()
    reader.join(timeout_s)
    return {} if reader.is_alive() else dict(found)


def _args_from_params(action: type[Action], raw: dict[str, Any],
                      given: dict[str, Any]) -> dict[str, Any]:
    """The step's arguments as far as the parameters make them: an argument made of
    anything else (another step's output, a parameter not given) is left out."""
    from tui.engine.render import render_arg

    def lookup(name: str) -> Any:
        if name not in given:
            raise KeyError(name)
        return given[name]

    args: dict[str, Any] = {}
    for name, spec in action.args.items():
        try:
            args[name] = render_arg(spec, raw[name], lookup) if name in raw else spec.default
        except Exception:
            args[name] = spec.default
    return {name: value for name, value in args.items() if value is not None}
