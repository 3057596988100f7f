"""The journal recorder: a subscriber of the run's events that writes them down as they come.

Every event is committed as it comes, so a crash or a SIGKILL loses nothing
that happened. Output is kept as each step's last lines, written as soon as
the event loop is free: after each chunk of a flood, at once for a line that
comes alone.

Each event is also kept whole, in order, as `--json` prints it (the events
table): what someone following the run from elsewhere replays and follows
(`drdeck serve`). Output and progress join them when the loop is free, like
the tails; any other event writes what waits before it, then itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import json
import os
import socket
import time
from collections import deque
from typing import Any

from tui.engine import events as ev
from tui.journal.store import Journal, RunDetail, RunRow, StepRow, now_iso
from tui.redact import json_text

TAIL_LINES = 40
HEARTBEAT_S = 5.0


def operator_identity() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    host = socket.gethostname()
    return f"{user}@{host}", host


class Recorder:
    def __init__(self, journal: Journal, runner: Any, *, resumed: RunDetail | None = None):
        self.journal = journal
        self.runner = runner
        self.resumed = resumed
        self.lock_key: str | None = None
        self._steps: dict[str, StepRow] = {}
        self._tails: dict[str, deque[str]] = {}
        self._dirty: set[str] = set()
        self._events: list[tuple[int, str]] = []  # numbered, waiting to be written
        self._next_seq = 0
        self._flush_due = False
        self._heartbeat = time.monotonic()
        self._beat: asyncio.TimerHandle | None = None
        self._history: tuple[str, list[Any]] | None = None  # (cluster, runs): read once
        if resumed is not None:
            for step in resumed.steps:
                # a copy: the runner replays from `resumed`, which must keep what it said
                self._steps[step.step_id] = dataclasses.replace(step)
                self._tails[step.step_id] = deque(step.output_tail.splitlines(),
                                                  maxlen=TAIL_LINES)
            self._next_seq = journal.last_event(resumed.run.id) + 1

    def _forecast(self, planned: Any = None) -> dict[str, Any] | None:
        """The forecast this run starts with: a resumed run keeps the one it began with."""
        if self.resumed is not None:
            kept = self.resumed.run.forecast_json
            return json.loads(kept) if kept else None
        from tui.journal.forecast import cluster_of, forecast, read_history

        if self._history is None:
            config = self.runner.config
            cluster = cluster_of(self.runner.shown_params(), config)
            try:
                self._history = cluster, read_history(self.journal, self.runner.runbook.name,
                                                      cluster, config)
            except Exception:  # a forecast never stands between an operator and a restore
                return None
        cluster, history = self._history
        return forecast(self.runner.runbook, cluster, history,
                        volumes=planned.sizes if planned else None,
                        unknown_why=planned.problem if planned else "").to_json()

    def wants_volumes(self) -> bool:
        """Whether what the run will move would change its forecast: a new run whose
        forecast learns from earlier runs that measured what they moved."""
        from tui.journal.forecast import from_json

        if self.resumed is not None:
            return False
        made = self.runner.forecast if self.runner.forecast is not None else \
            self._forecast()
        return bool(made) and from_json(made).scalable

    def read_volumes(self) -> Any:
        """What this run will move, from its source (tui.engine.volumes.Planned): blocking,
        and safe in another thread (it uses no journal connection)."""
        from tui.engine.volumes import Planned, planned_volumes

        planned = planned_volumes(self.runner.config, self.runner.runbook, self.runner.params)
        return Planned(planned.sizes, self.runner.redact(planned.problem))

    def scale(self, planned: Any) -> None:
        """After `begin`, before the run starts: the forecast again, scaled to what this
        run will move (read by the caller off the event loop). A journal that cannot take
        it leaves the run with the forecast it has: it never stops a run."""
        if not self.wants_volumes():
            return
        scaled = self._forecast(planned)
        if scaled is None:
            return
        with contextlib.suppress(Exception):
            self.journal.update_run(self.runner.run_id, forecast_json=json.dumps(scaled))
            self.runner.forecast = scaled

    def begin(self, lock_key: str | None, planned: Any = None) -> None:
        """Before the run starts: its row, with its forecast (scaled to what the run will
        move, tui.engine.volumes.Planned, when the caller read it), and its lock on the
        target (or LockHeld)."""
        runbook = self.runner.runbook
        operator, host = operator_identity()
        self.runner.forecast = self._forecast(planned)
        if self.resumed is None:
            self.journal.insert_run(RunRow(
                id=self.runner.run_id, runbook=runbook.name, runbook_sha256=runbook.sha256,
                title=runbook.title, scenario=runbook.scenario, mode=self.runner.mode,
                operator=operator, host=host, pid=os.getpid(), started_at=now_iso(),
                heartbeat_at=now_iso(), status="running",
                params_json=json.dumps(self.runner.shown_params(), sort_keys=True),
                rto_target_s=runbook.rto, rpo_target_s=runbook.rpo, lock_key=lock_key,
                dry_run=int(self.runner.dry_run),
                runbook_path=str(runbook.path.resolve()) if runbook.path else None,
                forecast_json=json.dumps(self.runner.forecast)))
        else:
            self.journal.update_run(self.runner.run_id, status="running", ended_at=None,
                                    error=None, host=host, pid=os.getpid(),
                                    heartbeat_at=now_iso(),
                                    resumes=self.resumed.run.resumes + 1, operator=operator)
        if lock_key:
            try:
                self.journal.acquire_lock(lock_key, self.runner.run_id)
            except BaseException:
                self.journal.update_run(self.runner.run_id, status="refused",
                                        ended_at=now_iso(),
                                        error="another run holds the same target")
                raise
            self.lock_key = lock_key

    def relock(self, key: str | None) -> None:
        """Move the run's lock to a new target (its parameters were edited): the new one is
        taken first, so the run is never without it; LockHeld when another run has it."""
        if key == self.lock_key:
            return
        if key:
            self.journal.acquire_lock(key, self.runner.run_id)
        if self.lock_key:
            self.journal.release_lock(self.lock_key, self.runner.run_id)
        self.lock_key = key
        self.journal.update_run(self.runner.run_id, lock_key=key)

    def __call__(self, event: ev.Event) -> None:
        self._events.append((self._next_seq, json_text(event.to_json(), default=str)))
        self._next_seq += 1
        flood = isinstance(event, ev.Output | ev.Progress)
        if not flood:  # before what the event changes: a run seen ended has all its events
            self._write_events()
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)
        if flood:
            self._flush_soon()
        now = time.monotonic()
        if now - self._heartbeat >= HEARTBEAT_S:
            self._heartbeat = now
            self.journal.update_run(self.runner.run_id, heartbeat_at=now_iso())

    # --- events -----------------------------------------------------------------------

    def _step(self, step_id: str) -> StepRow:
        if step_id not in self._steps:
            ids = [s.id for s in self.runner.runbook.steps]
            spec = self.runner.runbook.step(step_id)
            self._steps[step_id] = StepRow(self.runner.run_id, step_id, ids.index(step_id),
                                           spec.title, spec.action, "pending")
            self._tails[step_id] = deque(maxlen=TAIL_LINES)
        return self._steps[step_id]

    def _on_run_started(self, e: ev.RunStarted) -> None:
        for info in e.steps:
            step = self._step(info.id)
            if step.status == "pending":
                self.journal.upsert_step(step)
        self._keep_beating()

    def _keep_beating(self) -> None:
        """The heartbeat goes on while no event comes (a manual step waiting for a person,
        a command that prints nothing): without it, drdeck on another host would take the
        live run for a dead one, mark it interrupted and free its lock on the target."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._beat = loop.call_later(HEARTBEAT_S, self._beat_now)

    def _beat_now(self) -> None:
        self._beat = None
        if time.monotonic() - self._heartbeat >= HEARTBEAT_S / 2:
            self._heartbeat = time.monotonic()
            # best effort: an unwritable journal is said by the next event that is written
            with contextlib.suppress(Exception):
                self.journal.update_run(self.runner.run_id, heartbeat_at=now_iso())
        self._keep_beating()

    def _on_step_started(self, e: ev.StepStarted) -> None:
        step = self._step(e.step)
        step.status, step.attempts, step.command = "running", e.attempt, e.command
        step.started_at = step.started_at or now_iso()
        self.journal.upsert_step(step)

    def _on_output(self, e: ev.Output) -> None:
        self._tails.setdefault(e.step, deque(maxlen=TAIL_LINES)).append(e.line)
        self._dirty.add(e.step)

    def _flush_soon(self) -> None:
        """Written as soon as the loop is free: once per chunk of a flood, at once otherwise."""
        if self._flush_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        self._flush_due = True
        loop.call_soon(self._flush)

    def _write_events(self) -> None:
        if self._events:
            waiting, self._events = self._events, []
            self.journal.add_events(self.runner.run_id, waiting)

    def _on_check(self, e: ev.CheckResult) -> None:
        self.journal.add("checks", run_id=self.runner.run_id, step_id=e.step, name=e.name,
                         ok=int(e.ok), detail=e.detail, at=now_iso())

    def _on_measure(self, e: ev.Measure) -> None:
        self.journal.add("measures", run_id=self.runner.run_id, step_id=e.step, name=e.name,
                         value=e.value, unit=e.unit, detail=e.detail, at=now_iso())
        if e.name == "achieved_rpo":
            self.journal.update_run(self.runner.run_id, rpo_s=e.value)

    def _on_milestone(self, e: ev.Milestone) -> None:
        self.journal.add("milestones", run_id=self.runner.run_id, name=e.name,
                         elapsed_s=e.elapsed_s, at=now_iso())

    def _on_operator_wait(self, e: ev.OperatorWait) -> None:
        step = self._step(e.step)
        step.status = "waiting"
        step.started_at = step.started_at or now_iso()
        self.journal.upsert_step(step)

    def _on_operator_answer(self, e: ev.OperatorAnswer) -> None:
        step = self._step(e.step)
        step.status = "running"
        step.operator_wait_s += e.waited_s
        self.journal.upsert_step(step)

    def _on_params_edited(self, e: ev.ParamsEdited) -> None:
        """The record says what changed and what ran again: an auditor sees the retry's
        values, and a resume after a crash runs those steps again too."""
        self.journal.update_run(self.runner.run_id,
                                params_json=json.dumps(e.params, sort_keys=True))
        changed = "; ".join(f"{name}: {old or '(empty)'} → {new or '(empty)'}"
                            for name, (old, new) in e.changed.items())
        after = f"; after: {e.error}" if e.error else ""
        self.journal.add("checks", run_id=self.runner.run_id, step_id=e.step,
                         name="parameters edited", ok=1,
                         detail=f"{changed}; steps from {e.rerun_from} run again{after}",
                         at=now_iso())
        ids = [s.id for s in self.runner.runbook.steps]
        for step_id in ids[ids.index(e.rerun_from):ids.index(e.step) + 1]:
            step = self._step(step_id)
            step.status, step.captured, step.error = "pending", None, None
            self.journal.upsert_step(step)

    def _on_step_finished(self, e: ev.StepFinished) -> None:
        if e.replayed:
            return
        step = self._step(e.step)
        step.status, step.duration_s, step.attempts = e.status, e.duration_s, e.attempts
        step.error, step.reason, step.ended_at = e.error, e.reason, now_iso()
        step.started_at = step.started_at or step.ended_at
        step.captured = e.captured
        step.output_tail = "\n".join(self._tails.get(e.step, ()))
        self._dirty.discard(e.step)
        self.journal.upsert_step(step)

    def stop_beating(self) -> None:
        """No more heartbeats: the run has ended (RunFinished does this; a caller whose
        run ended another way does it too)."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        self.stop_beating()
        self._flush()
        self.journal.update_run(self.runner.run_id, status=e.status, ended_at=now_iso(),
                                rto_s=e.rto_s, error=e.error, heartbeat_at=now_iso())
        if self.lock_key:
            self.journal.release_lock(self.lock_key, self.runner.run_id)

    def _flush(self) -> None:
        self._flush_due = False
        self._write_events()
        for step_id in list(self._dirty):
            step = self._step(step_id)
            step.output_tail = "\n".join(self._tails[step_id])
            self.journal.upsert_step(step)
        self._dirty.clear()
