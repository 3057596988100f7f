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

A leaf: the actions import `record`, so this imports no action at its top.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tui.units import format_bytes

# what each volume is called in a sentence
WORDS = {"snapshot": "snapshot", "dump": "dump", "base": "base backup", "wal": "WAL"}
READ_TIMEOUT_S = 10.0  # the longest a run's start or a forecast waits for the source
MOST_BYTES = 1 << 62  # past any real volume: a size beyond it is not believed


def record(ctx: Any, volume: str, moved: float, seconds: float, detail: str = "") -> None:
    """Measure `moved` bytes of `volume` moved in `seconds` (ctx: a StepContext). A size
    that cannot be one (a forged manifest's) is not measured: a measure never fails the
    step that moved the data."""
    if not 0 < moved < MOST_BYTES or not seconds >= 0:
        return
    ctx.measure(f"{volume}_bytes", float(moved), "B", detail)
    ctx.measure(f"{volume}_s", float(seconds), "s",
                f"{format_bytes(moved / seconds) if seconds > 0 else '-'}/s")


@dataclass(frozen=True)
class Planned:
    """What a run would move, by volume, in bytes; or, empty, why the source could not
    say (for the forecast's basis: the pre-flight will meet the same source)."""

    sizes: dict[str, int] = field(default_factory=dict)
    problem: str = ""


def planned_volumes(config: Any, runbook: Any, given: dict[str, Any],
                    timeout_s: float = READ_TIMEOUT_S) -> Planned:
    """What a run of `runbook` with the parameters `given` would move, as the first of
    its steps that can say reads it from the source, within `timeout_s`: a forecast never
    stands between an operator and a restore, and never fails."""
    from tui.engine.actions import get_action
    from tui.engine.actions.base import Action
    from tui.errors import DrdeckError
    from tui.redact import mask_credentials

    planners = ((get_action(step.action), step.args) for step in runbook.steps)
    action, raw = next(((a, r) for a, r in planners
                        if a is not None and a.volumes is not Action.volumes), (None, {}))
    if action is None:
        return Planned(problem="no step of the runbook says what it moves")
    found: list[Planned] = []

    def read() -> None:
        try:
            sizes = action().volumes(config, _args_from_params(action, raw, given))
            found.append(Planned(dict(sizes)))
        except DrdeckError as exc:
            found.append(Planned(problem=str(exc)))  # says what, and what to do
        except Exception as exc:
            found.append(Planned(problem=f"its source cannot be read ({type(exc).__name__})"))

    # a daemon thread with no event loop: an unreachable store is waited for no longer
    # than this, and an abandoned read does not hold up the process's exit
    reader = threading.Thread(target=read, name="drdeck-volumes", daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not found:
        return Planned(problem=f"its source did not answer within {timeout_s:.0f}s")
    return Planned(found[0].sizes, mask_credentials(found[0].problem))


def _args_from_params(action: Any, raw: dict[str, Any],
                      given: dict[str, Any]) -> dict[str, Any]:
    """The step's arguments as far as the parameters make them: an argument made of
    anything else (another step's output, a parameter not given) takes its default."""
    from tui.engine.render import render_arg

    def lookup(name: str) -> Any:
        if name not in given:
            raise KeyError(name)
        return given[name]

    args: dict[str, Any] = {}
    for name, spec in action.args.items():
        try:
            args[name] = render_arg(spec, raw[name], lookup) if name in raw else spec.default
        except Exception:  # not known before the run
            args[name] = spec.default
    return {name: value for name, value in args.items() if value is not None}
