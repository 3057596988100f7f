"""`backup-policy.md` and `recovery-runbook.md`, written from the configuration, the runbooks
and the journal: what the policy says, next to what the journal measured.

Nothing here holds a credential: drdeck.toml has none (the loader refuses a
password in a DSN; S3 credentials come from the environment), URLs are masked
once more anyway, runbook templates are printed unrendered (`${token}`, never
its value), and defaults of secret parameters are not printed.

Which runs count where:
- a run belongs to a cluster when its `cluster` parameter names it, or when it
  has none (or an empty one) and exactly one cluster is configured;
- the backup schedule lists runbooks of scenario `backup` or `verify` and how
  often each ran in the last 30 days (every recorded run, by result);
- drills are the runbooks `tui.journal.due.is_drill` calls drills; their
  estimates use successful, non-dry runs only: the median and worst RTO of the
  runs, and per step the median and worst duration of its successful runs.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tui.durations import format_duration
from tui.journal.due import DRILL_SCENARIOS, due, is_drill
from tui.journal.report import measured_text, spread, utc_text
from tui.redact import mask_credentials
from tui.runbook.params import secret_variable
from tui.sources import sources_for

POLICY_FILE = "backup-policy.md"
RUNBOOK_FILE = "recovery-runbook.md"
SCHEDULE_WINDOW = timedelta(days=30)
BACKUP_SCENARIOS = ("backup", "verify")
_CODE_ARGS = {"command": "sh", "query": "sql", "operator_query": "sql", "instructions": ""}


@dataclass
class Sources:
    """What the documents are written from."""

    config: Any
    runbooks: list[Any]  # valid Runbook objects
    runs: list[Any]  # RunRow, newest first
    step_durations: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    invalid: list[Path] = field(default_factory=list)  # runbook files that do not validate
    journal: str = ""
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def gather(config: Any, journal: Any, now: datetime | None = None) -> Sources:
    """Runbooks from the configured directories, and the journal's runs and step timings."""
    from tui.runbook.discovery import discover

    found = discover(list(config.runbook_dirs))
    runbooks = [f.runbook for f in found if f.runbook is not None]
    invalid = [f.path for f in found if f.runbook is None]
    runs = [r for r in journal.runs() if not r.dry_run]
    durations: dict[tuple[str, str], list[float]] = {}
    for runbook, step_id, duration in journal.execute(
            "select r.runbook, s.step_id, s.duration_s from steps s join runs r on "
            "r.id = s.run_id where r.status = 'succeeded' and r.dry_run = 0 and "
            "s.status = 'succeeded' and s.duration_s is not null"):
        durations.setdefault((runbook, step_id), []).append(float(duration))
    return Sources(config, runbooks, runs, durations, invalid, journal.where,
                   now or datetime.now(UTC))


def write_docs(out_dir: Path, sources: Sources) -> list[Path]:
    """Write both documents into `out_dir` (created if needed); each replaced atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((POLICY_FILE, backup_policy(sources)),
                       (RUNBOOK_FILE, recovery_runbook(sources))):
        path = out_dir / name
        _write_atomically(path, text)
        written.append(path)
    return written


def _write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one."""
    from tui.redact import escape_controls

    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(escape_controls(text))  # it quotes the journal
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- backup-policy.md ---------------------------------------------------------------------


def backup_policy(src: Sources) -> str:
    config = src.config
    lines = ["# Backup policy", "", _provenance(src), ""]
    if not config.clusters:
        lines += ["No cluster is configured: add a `[clusters.NAME]` table to drdeck.toml.", ""]
    for cluster in config.clusters.values():
        lines += _cluster_policy(src, cluster)
    lines += _drills_section(src)
    if src.invalid:
        lines += ["## Runbooks left out", "",
                  "These files do not validate (`drdeck validate FILE` says why):", ""]
        lines += [f"- `{path}`" for path in src.invalid]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cluster_policy(src: Sources, cluster: Any) -> list[str]:
    config = src.config
    lines = [f"## Cluster `{cluster.name}`", ""]
    if cluster.databases:
        lines += [f"Databases: {', '.join(f'`{d}`' for d in cluster.databases)}.", ""]

    engines_only = cluster.repository is None and bool(sources_for(config, cluster))
    newest = ("the newest recoverable point" if engines_only
              else "the newest good snapshot")
    lines += ["### Targets", "", "| Target | Value | Meaning |", "|---|---|---|",
              f"| RPO | {_target(cluster.rpo)} | the most data we accept to lose: {newest} "
              "must be younger than this |",
              f"| RTO | {_target(cluster.rto)} | the longest we accept to be down: from the "
              "start of a restore to service restored |", ""]
    restore = [rb for rb in src.runbooks if rb.scenario in DRILL_SCENARIOS]
    with_targets = [rb for rb in restore if rb.rto or rb.rpo]
    if with_targets:
        lines += ["Targets the restore runbooks hold themselves to:", ""]
        lines += [f"- `{rb.name}` ({rb.title}): RTO {_target(rb.rto)}, RPO {_target(rb.rpo)}"
                  for rb in with_targets]
        lines.append("")

    if engines_only:
        return [*lines, *_engines_only(config, cluster)]
    lines += ["### Backup schedule", "",
              f"Backup and verification runbooks, and how often they ran for this cluster in "
              f"the last {SCHEDULE_WINDOW.days} days (from the journal).", ""]
    lines += _schedule_table(src, cluster)

    retention = cluster.retention
    repository = config.repositories.get(cluster.repository) if cluster.repository else None
    current_class = (repository.storage_class or "the bucket's default (STANDARD)"
                     if repository is not None and repository.type == "s3" else None)
    lines += ["### Retention", "",
              "Grandfather-father-son: a snapshot is kept while any of these keeps it; "
              "`drdeck run prune-snapshots` deletes the rest.", "",
              "| Kept | Count | Storage class |", "|---|---:|---|",
              f"| daily (newest of each day) | {retention.daily} | {current_class or '-'} |",
              f"| weekly (newest of each ISO week) | {retention.weekly} | "
              f"{current_class or '-'} |",
              f"| monthly (newest of each month) | {retention.monthly} | "
              f"{retention.monthly_storage_class or current_class or '-'} |", ""]

    lines += ["### Storage", ""]
    if repository is None:
        missing = (f"repository {cluster.repository!r} is not configured" if cluster.repository
                   else 'add repository = "NAME" to its table')
        lines += [f"No repository for this cluster: {missing}.", ""]
    elif repository.type == "s3":
        lines += [f"- Repository `{repository.name}`: S3 bucket `{repository.bucket}`, "
                  f"prefix `{repository.prefix or '(none)'}`",
                  f"- Endpoint: {mask_credentials(repository.endpoint_url or 'AWS S3')}; "
                  f"region: {repository.region or 'from the environment'}",
                  f"- Storage class: {repository.storage_class or 'the bucket default'}",
                  "- Credentials: from the environment or the AWS configuration of the "
                  "machine that runs drdeck; never in drdeck.toml or this document", ""]
    else:
        lines += [f"- Repository `{repository.name}`: local directory `{repository.path}`", ""]
    for source in sources_for(config, cluster):
        lines += [*source.policy_lines(), ""]

    lines += ["### Encryption", ""]
    if cluster.gpg_recipients:
        lines += ["Snapshots are encrypted with GnuPG, as they stream, to:", ""]
        lines += [f"- `{recipient}`" for recipient in cluster.gpg_recipients]
        lines += ["", "Any one of these keys can decrypt a snapshot: keep the private keys "
                  "where a restore can reach them, and away from the repository.", ""]
    else:
        lines += ["**Not encrypted**: no `gpg_recipients` are configured, so snapshots are "
                  "stored in plain text.", ""]
    return lines


def _engines_only(config: Any, cluster: Any) -> list[str]:
    """Storage and encryption of a cluster that other engines alone back up: drdeck keeps
    nothing of it, so its own schedule, retention and keys do not apply."""
    lines = ["### Storage", "",
             "drdeck keeps no repository for this cluster: its backups are those of the "
             "engines below. Their schedule, retention and encryption are their own "
             "configuration's.", ""]
    for source in sources_for(config, cluster):
        lines += [*source.policy_lines(), ""]
    return lines


def _schedule_table(src: Sources, cluster: Any) -> list[str]:
    since = src.now - SCHEDULE_WINDOW
    single = len(src.config.clusters) == 1
    runs = [r for r in src.runs if r.started >= since and _belongs(r, cluster.name, single)]
    runbooks = {rb.name: rb for rb in src.runbooks if rb.scenario in BACKUP_SCENARIOS}
    recorded = {r.runbook: r for r in reversed(runs) if r.scenario in BACKUP_SCENARIOS}
    names = sorted(set(runbooks) | set(recorded))
    if not names:
        return ["No backup runbook is found and none ran.", ""]
    lines = ["| Runbook | Scenario | Runs | Succeeded | Failed or other | Typical interval | "
             "Last run (UTC) |", "|---|---|---:|---:|---:|---:|---|"]
    for name in names:
        mine = [r for r in runs if r.runbook == name]  # newest first
        succeeded = sum(1 for r in mine if r.status == "succeeded")
        starts = sorted(r.started for r in mine)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        interval = format_duration(statistics.median(gaps)) if gaps else "-"
        last = f"{utc_text(mine[0].started_at, short=True)} {mine[0].status}" if mine else "never"
        runbook = runbooks.get(name)
        title = (f"{_cell(runbook.title)} (`{name}`)" if runbook
                 else f"`{name}` (runbook not found)")
        scenario = runbook.scenario if runbook else recorded[name].scenario
        lines.append(f"| {title} | {scenario} | {len(mine)} | {succeeded} | "
                     f"{len(mine) - succeeded} | {interval} | {last} |")
    return [*lines, ""]


def _belongs(run: Any, cluster: str, single: bool) -> bool:
    named = run.params.get("cluster") or ""
    return named == cluster or (not named and single)


def _drills_section(src: Sources) -> list[str]:
    drills = sorted((rb for rb in src.runbooks if is_drill(rb)), key=_scenario_order)
    lines = ["## Recovery drills", "",
             "Each restore runbook is drilled on a cadence (monthly unless the runbook sets "
             "`cadence`); only a successful drill resets the clock. The owners are the "
             "runbook's contacts.", ""]
    if not drills:
        return [*lines, "No drill runbook is found.", ""]
    lines += ["| Runbook | Scenario | RTO target | RPO target | Cadence | Owner / contacts | "
              "Last successful drill (UTC) | Its RTO | Next due |",
              "|---|---|---:|---:|---:|---|---|---:|---|"]
    for runbook in drills:
        when = due(runbook, src.runs)
        last = next((r for r in src.runs if r.runbook == runbook.name
                     and r.status == "succeeded"), None)
        cadence = format_duration(when.cadence_s) if when else "-"
        contacts = "; ".join(runbook.contacts) or "**none named**"
        lines.append(
            f"| {_cell(runbook.title)} (`{runbook.name}`) | {runbook.scenario} | "
            f"{_target(runbook.rto)} | {_target(runbook.rpo)} | {cadence} | {_cell(contacts)} | "
            f"{utc_text(last.started_at, short=True) if last else 'never'} | "
            f"{measured_text(last.rto_s) if last else '-'} | "
            f"{when.describe(src.now) if when else '-'} |")
    return [*lines, ""]


# --- recovery-runbook.md ------------------------------------------------------------------


def recovery_runbook(src: Sources) -> str:
    drills = sorted((rb for rb in src.runbooks if is_drill(rb)), key=_scenario_order)
    lines = ["# Recovery runbook", "", _provenance(src), "",
             "Each scenario below is a drdeck runbook: `drdeck` opens the console and walks "
             "you through it; `drdeck run NAME --headless` runs it without the console. "
             "Commands and queries are shown as the runbook writes them: `${...}` is filled "
             "in from the parameters when the step runs.", ""]
    lines += ["## Contacts", ""]
    contacts: dict[str, list[str]] = {}
    for runbook in drills:
        for contact in runbook.contacts:
            contacts.setdefault(contact, []).append(runbook.name)
    if contacts:
        lines += [f"- {contact} (for {', '.join(f'`{n}`' for n in names)})"
                  for contact, names in contacts.items()]
    else:
        lines.append("No runbook names a contact: add `contacts = [...]` to each runbook.")
    lines.append("")

    if src.config.clusters:
        lines += ["## Clusters", "", "| Cluster | Repository | RPO | RTO | Encrypted |",
                  "|---|---|---:|---:|---|"]
        lines += [f"| `{c.name}` | {c.repository or '-'} | {_target(c.rpo)} | {_target(c.rto)} | "
                  f"{'yes' if c.gpg_recipients else 'NO'} |" for c in src.config.clusters.values()]
        lines.append("")

    lines += ["## Scenarios", ""]
    if not drills:
        lines += ["No restore runbook is found.", ""]
    lines += [f"- [{_link_text(rb.title)}](#{_anchor(rb)}) (`{rb.name}`, {rb.scenario})"
              for rb in drills]
    lines.append("")
    for runbook in drills:
        lines += _scenario(src, runbook)
    return "\n".join(lines).rstrip() + "\n"


def _scenario(src: Sources, runbook: Any) -> list[str]:
    runs = [r for r in src.runs if r.runbook == runbook.name and r.status == "succeeded"]
    lines = [f'<a id="{_anchor(runbook)}"></a>', "", f"## {runbook.title}", "",
             f"- Runbook: `{runbook.name}` ({runbook.path}), sha256 `{runbook.sha256}`",
             f"- Scenario: {runbook.scenario}; RTO target {_target(runbook.rto)}, RPO target "
             f"{_target(runbook.rpo)}",
             f"- Contacts: {'; '.join(runbook.contacts) or 'none named'}"]
    rto = spread([r.rto_s for r in runs if r.rto_s is not None])
    if rto is not None:
        lines.append(f"- Estimated time, from {len(runs)} successful drill{_s(len(runs))}: "
                     f"median {measured_text(rto[0])}, worst {measured_text(rto[1])} "
                     "(start to service restored)")
    else:
        lines.append("- Estimated time: no successful drill recorded yet")
    lines.append("")
    if runbook.description.strip():
        lines += [runbook.description.strip(), ""]

    required = [p for p in runbook.params.values() if p.required]
    command = " ".join([*(f"{secret_variable(p.name)}=..." for p in required if p.is_secret),
                        "drdeck run", runbook.name,
                        *(f"-p {p.name}=..." for p in required if not p.is_secret)])
    lines += ["To run it:", "", "```sh", command, "```", ""]
    if runbook.params:
        lines += ["| Parameter | Type | Default | Meaning |", "|---|---|---|---|"]
        for param in runbook.params.values():
            if param.required:
                default = "(required)"
            elif param.is_secret:
                default = "(secret, not shown)"
            elif _shown_default(param.default) == "":
                default = "(empty)"
            else:
                default = f"`{_shown_default(param.default)}`"
            choices = (f" One of: {', '.join(c or '(empty)' for c in param.choices)}."
                       if param.choices else "")
            lines.append(f"| `{param.name}` | {param.type} | {_cell(default)} | "
                         f"{_cell(param.help + choices)} |")
        lines.append("")

    lines += ["### Steps", ""]
    for index, step in enumerate(runbook.steps, 1):
        lines += _step(src, runbook, index, step)
    return lines


def _step(src: Sources, runbook: Any, index: int, step: Any) -> list[str]:
    timing = spread(src.step_durations.get((runbook.name, step.id), []))
    estimate = (f"median {measured_text(timing[0])}, worst {measured_text(timing[1])} "
                f"({len(src.step_durations[(runbook.name, step.id)])} successful run"
                f"{_s(len(src.step_durations[(runbook.name, step.id)]))})"
                if timing else "not measured yet")
    lines = [f"#### {index}. {step.title}", "",
             f"- Step `{step.id}`, action `{step.action}`; estimated time: {estimate}"]
    if step.when:
        lines.append(f"- Runs only when `{step.when}` holds")
    if step.confirm:
        typed = f" (type `{step.confirm_input}`)" if step.confirm_input else ""
        lines.append(f"- Asks for confirmation{typed}: {_cell(step.confirm)}")
    if step.timeout:
        lines.append(f"- Timeout {format_duration(step.timeout)}")
    if step.retries:
        lines.append(f"- Retried {step.retries} time{_s(step.retries)}, "
                     f"{format_duration(step.retry_delay)} apart")
    if step.on_failure != "abort":
        lines.append(f"- On failure: {step.on_failure}")
    lines.append("")
    if step.description.strip():
        lines += [step.description.strip(), ""]
    lines += _step_args(step.args)
    if step.expect is not None:
        lines += [f"Expected result: {step.expect.describe()}.", ""]
    if step.checks:
        lines += ["Checks after the step:", ""]
        for check in step.checks:
            what = (f"query `{_one_line(check.query)}`" if check.query else
                    f"command `{_command_text(check.command)}`" if check.command else "")
            lines.append(f"- {check.name}: {what} — expects {check.expect.describe()}")
        lines.append("")
    return lines


def _step_args(args: dict[str, Any]) -> list[str]:
    lines = []
    plain = {k: v for k, v in args.items() if k not in _CODE_ARGS}
    for key, language in _CODE_ARGS.items():
        if key not in args:
            continue
        value = args[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        fence = "~~~~" if "```" in text else "```"
        lines += [f"{key}:", "", f"{fence}{language}", mask_credentials(text.strip()), fence, ""]
    if plain:
        lines += [f"- `{key} = {mask_credentials(_toml_value(value))}`"
                  for key, value in plain.items()]
        lines.append("")
    return lines


# --- helpers ------------------------------------------------------------------------------


def _provenance(src: Sources) -> str:
    config = src.config.path or "no drdeck.toml (defaults)"
    return (f"_Generated by drdeck at {src.now.strftime('%Y-%m-%d %H:%M UTC')} from {config}, "
            f"{len(src.runbooks)} runbook{_s(len(src.runbooks))} and the journal at "
            f"`{src.journal}`. Regenerate it with `drdeck docs`; edits here are overwritten._")


def _scenario_order(runbook: Any) -> tuple[int, str]:
    order = {"snapshot": 0, "pitr": 1}
    return order.get(runbook.scenario, 2), runbook.name


def _anchor(runbook: Any) -> str:
    return f"runbook-{runbook.name}"


def _target(seconds: float | None) -> str:
    return format_duration(seconds) if seconds else "not set"


def _shown_default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, default=str)


def _command_text(command: str | list[str] | None) -> str:
    if isinstance(command, list):
        return json.dumps(command, ensure_ascii=False)
    return _one_line(command or "")


def _one_line(text: str) -> str:
    return " ".join(mask_credentials(text).split())


def _link_text(text: str) -> str:
    return " ".join(text.split()).replace("[", "\\[").replace("]", "\\]")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _s(count: int) -> str:
    return "" if count == 1 else "s"
