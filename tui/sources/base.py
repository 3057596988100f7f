"""The Source protocol: one backup engine's account of one cluster.

drdeck is the console; the engine that takes a cluster's backups has often been
chosen long before (pgBackRest, Barman Cloud, drdeck's own archive). Inventory,
status, the inventory screen, reports and policy documents ask every engine the
same questions through this class, and never name an engine themselves.

A source is found through `tui.sources.source_classes()`: the built-in ones, and
any a package ships under the `drdeck.sources` entry-point group. A cluster may
have any number of sources, or none; a cluster with one is complete.

The report a source reads is a plain dict, the engine's own block of
`drdeck inventory --json` (docs/inventory-json.md). Whatever else it holds, these
keys mean the same for every engine:

    {"kind": "<Source.kind>",
     "backups": [...],                           # oldest first
     "window": {"start": ISO, "end": ISO} | None, # earliest .. latest reachable
     "gaps": ["..."], "problems": ["..."],
     "error": "..."}                             # only when it could not be read
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from tui.errors import DrdeckError


class SourceError(DrdeckError):
    """An engine that could not be read: its program missing or failing, its store
    unreachable, what it printed unreadable. The message says which, for a person."""


@dataclass(frozen=True)
class Line:
    """One line of a source's summary, and how it reads: "" plain, good, warn or bad."""

    text: str
    tone: str = ""


class Source(ABC):
    """One engine's view of one cluster. Subclasses set `kind` and `title`."""

    kind: ClassVar[str]  # the registry's name, and the source's key in the inventory JSON
    title: ClassVar[str]  # what people call the engine: "pgBackRest"
    # `[clusters.NAME] <kind> = { ... }` configures it: each key, and whether it is required;
    # every value is text (the loader checks both, and says where a mistake is)
    settings: ClassVar[dict[str, bool]] = {}
    example: ClassVar[str] = ""  # the table as a person would write it, for messages
    restore_runbook: ClassVar[str] = ""  # the shipped runbook that restores from it, if any

    def restore_given(self, cluster: str) -> dict[str, str]:
        """The parameters of `restore_runbook` that say where to restore from, filled in
        for this source of `cluster`."""
        return {"cluster": cluster}

    @classmethod
    def configured(cls, config: Any, cluster: Any) -> Source | None:
        """This engine's source for a configured cluster (tui.config.Config and its
        ClusterConfig), or None when the cluster does not use the engine. Never raises for
        a cluster that does not: every source of a cluster is optional."""
        settings = cluster.engine(cls.kind)
        return None if settings is None else cls.from_settings(settings, config)

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: dict[str, str], config: Any = None) -> Source:
        """The source its checked settings describe (only keys of `settings` are there);
        `config` gives what the whole configuration says (its GnuPG home, say)."""

    @classmethod
    def check_settings(cls, settings: dict[str, str]) -> list[tuple[str, str]]:
        """(key, what is wrong) for each value the loader cannot judge by its type alone."""
        return []

    @abstractmethod
    def describe(self) -> str:
        """Which of the engine's repositories this is, in a few words ("stanza main")."""

    @abstractmethod
    def read(self, read_commit_times: bool = True) -> dict[str, Any]:
        """The report (see the module's docstring): backups, windows, gaps, problems.

        `read_commit_times` False skips reading WAL for the time of the last commit,
        which costs a download; the window then ends where the engine's records say.
        Raises SourceError (or another DrdeckError) when the engine cannot be read."""

    def recovery_picture(self) -> Any:
        """The windows and base backups a point-in-time recovery from this engine plans
        against (a tui.pitr.window.RecoveryPicture, for tui.pitr.target.plan_recovery).
        Raises SourceError when the engine cannot be read, NotImplementedError when drdeck
        restores nothing from it to a point in time."""
        raise NotImplementedError

    def base_bytes(self, backup: Any, picture: Any) -> int | None:
        """The bytes restoring `backup` (a plan's base, from `picture`) reads from the
        engine's store; None when the engine does not say."""
        return None

    def restore_volumes(self, target: Any) -> dict[str, int]:
        """What a recovery to `target` (tui.pitr.target.Target) would move, in bytes by
        volume (tui.engine.volumes): its base backup, and the WAL to replay. Reads the
        engine, as `recovery_picture()` does, and raises as it does; TargetRefused when
        the target cannot be reached."""
        from tui.pitr.target import plan_recovery, wal_to_replay

        picture = self.recovery_picture()
        plan = plan_recovery(target, picture)
        volumes = {"wal": wal_to_replay(plan)}
        stored = self.base_bytes(plan.base, picture)
        if stored:
            volumes["base"] = int(stored)
        return volumes

    def wal_fetcher(self) -> Callable[[str], bytes | None]:
        """A function from a WAL file's name (a segment, a timeline history, a backup
        history) to its plain bytes, decrypted and decompressed; None when the engine does
        not hold it. It is called from several threads at once (tui.wal.feeder prefetches),
        and asks the engine again for a name it did not find before: archiving goes on
        during a restore. It raises SourceError (or another DrdeckError) for a file the
        engine holds but that cannot be read. Reuses what the last `recovery_picture()`
        listed. NotImplementedError when the engine keeps no WAL drdeck can read."""
        raise NotImplementedError

    async def unpack_base_backup(self, backup: Any, data_dir: Path, reporter: Any,
                                 places: dict[int, Path] | None = None) -> None:
        """Lay `backup` (a plan's base, from `recovery_picture()`) down in `data_dir`, which
        exists, is empty and belongs to the server's account, reporting progress to
        `reporter` (tui.engine.context.StepContext or alike). Its tablespaces go where
        `places` says (oid -> directory, from tui.pitr.tablespaces.tablespace_places),
        by default beside the data directory. On any failure the directory
        is emptied again and the error raised: nothing half-written is left to start.
        NotImplementedError when the engine's own program lays its backups down (pgBackRest:
        `pgbackrest restore` writes the recovery settings too)."""
        raise NotImplementedError

    def report(self, read_commit_times: bool = True) -> dict[str, Any]:
        """`read()`, or the error as a report: one engine failing hides no other."""
        try:
            return self.read(read_commit_times)
        except DrdeckError as exc:
            return {"kind": self.kind, "source": self.describe(), "error": str(exc),
                    "backups": [], "window": None, "gaps": [], "problems": []}

    def summary(self, report: dict[str, Any]) -> list[Line]:
        """What `drdeck inventory` and the inventory screen show of a report, a line each:
        the window, the backups, the gaps. Engines may say more by overriding it."""
        lines = [Line(f"{self.title} {self.describe()}", "title")]
        if report.get("error"):
            return [*lines, Line(f"cannot read it: {report['error']}", "bad")]
        window = report.get("window")
        if window:
            lines.append(Line(f"recoverable {shown_time(window['start'])} to "
                              f"{shown_time(window['end'])}", "good"))
        else:
            lines.append(Line("no recoverable window", "bad"))
        lines += [Line(self.backup_line(backup)) for backup in report.get("backups", [])]
        lines += [Line(gap, "bad") for gap in report.get("gaps", [])]
        lines += [Line(problem, "warn") for problem in report.get("problems", [])]
        return lines

    def backup_line(self, backup: dict[str, Any]) -> str:
        """One backup of the report, for a person."""
        return str(backup)

    @classmethod
    def action_classes(cls) -> tuple[type, ...]:
        """The runbook actions the engine brings (tui.engine.actions.base.Action
        subclasses: its pre-flight and restore, say), imported only when asked for."""
        return ()

    def policy_lines(self) -> list[str]:
        """Markdown lines for the cluster's policy document (tui.journal.policy)."""
        return [f"- {self.title} {self.describe()} also backs this cluster up; drdeck reads "
                "it and restores from it, and never writes to it."]


def shown_time(iso: Any) -> str:
    """A report's ISO 8601 time as people read it (2026-12-02 21:56:30 UTC); a value that
    is not one is shown as it is."""
    try:
        moment = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if moment.tzinfo is None:
        return str(iso)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class SourceReport:
    """A source and what it reported, as the inventory keeps them."""

    source: Source
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def error(self) -> str | None:
        return self.data.get("error") or None

    @property
    def window_end(self) -> datetime | None:
        """The latest point it can recover to; None without a window."""
        window = self.data.get("window") or {}
        try:
            return datetime.fromisoformat(window["end"]) if window.get("end") else None
        except (TypeError, ValueError):
            return None

    def summary(self) -> list[Line]:
        return self.source.summary(self.data)
