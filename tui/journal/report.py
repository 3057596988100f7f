"""Reports from the journal: one run, or one month, as Markdown an auditor reads and JSON.

Each report is built once as a JSON-able dict and both renderings read that
dict, so the Markdown never says something the JSON does not. Everything in a
report comes from the journal, where parameters of type secret are already
`***` and output is redacted as it was recorded; credential-shaped text (a
password in a URL or a key/value DSN) is masked once more on the way out.

JSON contract, `format` 1 (fields are added, never renamed or removed, within
a format; times are ISO 8601 UTC; durations are seconds):

A target, measured against the runbook's (`rto`, `rpo`)::

    {"measured_s": float|null, "target_s": float|null, "share": float|null,
     "verdict": "met" | "missed" | "not measured" | "no target"}

`share` is measured / target (0.05 is 5 % of the target). RTO is measured from
the start of the run to the `service-restored` milestone, or to the end of a
successful run without one; RPO is what the runbook computed (PITR: the target
minus the last replayed commit; snapshot: the incident time minus the snapshot).

A run summary (`drdeck drills --json` rows, month report drills)::

    {"id", "runbook", "title", "runbook_sha256", "scenario", "mode": "drill"|"incident",
     "operator", "host", "started_at", "ended_at", "duration_s", "status", "error",
     "resumes": int, "dry_run": bool, "rto": TARGET, "rpo": TARGET,
     "resume_hint": "drdeck resume ID" | null}

A run report (`run_report`, `drdeck drills show --format json`)::

    {"format": 1, "kind": "run", "generated_at",
     "run": RUN SUMMARY + {"runbook_path", "params": {name: shown value},
                           "rto": TARGET + {"measured_to": "service-restored" |
                                            "end of run" | null}},
     "steps": [{"id", "position", "title", "action", "status", "attempts", "started_at",
                "ended_at", "duration_s", "operator_wait_s", "error", "reason", "command",
                "output_tail", "checks": [{"name", "ok", "detail", "at"}]}],
     "milestones": [{"name", "elapsed_s", "at"}],
     "measures": [{"step", "name", "value", "unit", "detail", "at"}],
     "summary": {"steps": {status: count}, "checks": {"passed": n, "failed": n}}}

A month report (`month_report`, `drdeck report --month YYYY-MM --format json`)::

    {"format": 1, "kind": "month", "month": "2026-11", "from", "to", "generated_at",
     "journal": where the journal is (credentials masked),
     "drills": [RUN SUMMARY],            # runs of drill runbooks, oldest first
     "drill_summary": {"runs", "succeeded", "not_succeeded", "rto_met", "rto_missed",
                       "rto_not_measured", "rpo_met", "rpo_missed"},
     "worst_rto": [{"runbook", "title", "runs", "run_id", "measured_s", "target_s",
                    "share", "verdict"}],
     "verifications": [{"run_id", "runbook", "step", "started_at", "status", "ok",
                        "duration_s", "error", "cluster", "database"}],
     "verification_summary": {"runs", "passed", "failed"},
     "repository_verifications": null | [{"cluster", "database", "snapshot", "at", "how",
                                          "ok", "detail", "by", "duration_s"}],
     "repositories": [{"cluster", "repository", "error"}],
     "repository_summary": {"records", "passed", "failed"}}

Which runs are in a month report: those started in the month (UTC), except dry
runs and runs refused because their target was locked (they never ran). A
drill is a run of a drill runbook (scenario snapshot or pitr, or a runbook
with a `cadence`; see tui.journal.due). A backup verification is every step of
the `snapshot.verify` action that started (snapshot-backup's verify step,
verify-backup's), and a run of any other runbook of scenario `verify`. With a
configuration, the verification records kept beside the snapshots in each
cluster's repository (written by whoever verified, from any machine or
journal) are listed too, separately: a journal run and the record it wrote
describe the same verification from two sides, so they are not added up.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tui.durations import format_clock, format_duration
from tui.errors import InvalidInput
from tui.units import format_bytes

FORMAT = 1
VERIFY_ACTION = "snapshot.verify"
NOT_RUN = ("refused",)  # never ran: left out of the month report
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")


# --- targets ------------------------------------------------------------------------------


def target_json(measured: float | None, target: float | None) -> dict[str, Any]:
    """A measured value against its target (lower is better for both RTO and RPO)."""
    share = round(measured / target, 4) if measured is not None and target else None
    if not target:
        verdict = "no target"
    elif measured is None:
        verdict = "not measured"
    else:
        verdict = "met" if measured <= target else "missed"
    return {"measured_s": measured, "target_s": target, "share": share, "verdict": verdict}


def target_sentence(target: dict[str, Any]) -> str:
    """'0:12:41 of 4:00:00 target (5%, met)': the sentence the headless summary prints."""
    from tui.rto import rto_verdict

    return rto_verdict(target["measured_s"], target["target_s"])


def share_text(target: dict[str, Any]) -> str:
    return "-" if target["share"] is None else f"{target['share']:.0%}"


def measured_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_clock(seconds) if seconds >= 1 else f"{seconds:.2f}s"


# --- one run ------------------------------------------------------------------------------


def run_summary(run: Any) -> dict[str, Any]:
    """The run row's facts and its verdicts; no steps (see the module docstring)."""
    return {
        "id": run.id,
        "runbook": run.runbook,
        "title": run.title,
        "runbook_sha256": run.runbook_sha256,
        "scenario": run.scenario,
        "mode": run.mode,
        "operator": run.operator,
        "host": run.host,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": _rounded(run.duration_s),
        "status": run.status,
        "error": _masked(run.error),
        "resumes": run.resumes,
        "dry_run": bool(run.dry_run),
        "rto": target_json(run.rto_s, run.rto_target_s),
        "rpo": target_json(run.rpo_s, run.rpo_target_s),
        "resume_hint": f"drdeck resume {run.id}" if run.status == "interrupted" else None,
    }


def run_report(detail: Any, now: datetime | None = None) -> dict[str, Any]:
    """One run from the journal (a RunDetail), in the shape documented above."""
    run = detail.run
    summary = run_summary(run)
    restored = any(m["name"] == "service-restored" for m in detail.milestones)
    summary["rto"]["measured_to"] = ("service-restored" if restored else
                                     "end of run" if run.rto_s is not None else None)
    summary["runbook_path"] = run.runbook_path
    summary["params"] = {name: _masked(str(value)) for name, value in run.params.items()}
    checks_by_step: dict[str, list[dict[str, Any]]] = {}
    for check in detail.checks:
        checks_by_step.setdefault(check["step_id"], []).append({
            "name": check["name"], "ok": bool(check["ok"]), "detail": _masked(check["detail"]),
            "at": check["at"]})
    steps = [{
        "id": step.step_id,
        "position": step.position,
        "title": step.title,
        "action": step.action,
        "status": step.status,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "ended_at": step.ended_at,
        "duration_s": _rounded(step.duration_s),
        "operator_wait_s": _rounded(step.operator_wait_s),
        "error": _masked(step.error),
        "reason": step.reason,
        "command": _masked(step.command),
        "output_tail": _masked(step.output_tail),
        "checks": checks_by_step.get(step.step_id, []),
    } for step in detail.steps]
    passed = sum(1 for c in detail.checks if c["ok"])
    return {
        "format": FORMAT,
        "kind": "run",
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "run": summary,
        "steps": steps,
        "milestones": [{"name": m["name"], "elapsed_s": m["elapsed_s"], "at": m["at"]}
                       for m in detail.milestones],
        "measures": [{"step": m["step_id"], "name": m["name"], "value": m["value"],
                      "unit": m["unit"], "detail": _masked(m["detail"]), "at": m["at"]}
                     for m in detail.measures],
        "summary": {"steps": dict(Counter(s.status for s in detail.steps)),
                    "checks": {"passed": passed, "failed": len(detail.checks) - passed}},
    }


def run_markdown(report: dict[str, Any]) -> str:
    """A run report (from `run_report`) as Markdown."""
    run = report["run"]
    kind = "Incident" if run["mode"] == "incident" else "Drill"
    lines = [f"# {kind} report: {' '.join(run['title'].split())} (`{run['runbook']}`)", ""]
    rto = run["rto"]
    rto_line = target_sentence(rto)
    if rto["measured_to"] == "service-restored":
        rto_line += ", measured from the start to the service-restored milestone"
    elif rto["measured_to"] == "end of run":
        rto_line += ", measured from the start to the end of the run (no service-restored " \
                    "milestone)"
    rpo = run["rpo"]
    rpo_line = (target_sentence(rpo) if rpo["measured_s"] is not None else
                "not measured: this runbook computes no achieved RPO" +
                (f" (target {format_clock(rpo['target_s'])})" if rpo["target_s"] else ""))
    resumed = ("no" if not run["resumes"] else
               f"yes, {run['resumes']} time{'s' if run['resumes'] != 1 else ''}: one run with "
               "its full history; times count from the first start")
    facts = [
        ("Run", f"`{run['id']}`"),
        ("Runbook", f"{_text(run['title'])} (`{run['runbook']}`)"),
        ("Runbook file sha256", f"`{run['runbook_sha256']}`"),
        ("Runbook file", f"`{run['runbook_path']}`" if run["runbook_path"] else "-"),
        ("Scenario", run["scenario"]),
        ("Mode", run["mode"].upper()),
        ("Operator", _text(run["operator"])),
        ("Started", utc_text(run["started_at"])),
        ("Ended", utc_text(run["ended_at"]) if run["ended_at"] else "not ended"),
        ("Duration", measured_text(run["duration_s"])),
        ("Result", _result(run["status"])),
        ("Resumed", resumed),
        ("RTO", rto_line),
        ("RPO", rpo_line),
    ]
    if run["error"]:
        facts.append(("Error", _text(run["error"])))
    if run["resume_hint"]:
        facts.append(("To continue", f"`{run['resume_hint']}`"))
    lines += ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in facts]
    lines.append("")

    lines += ["## Parameters", ""]
    if run["params"]:
        lines += ["Parameters of type secret are never recorded; they show as `***`.", "",
                  "| Name | Value |", "|---|---|"]
        lines += [f"| `{name}` | {_code(value)} |" for name, value in sorted(run["params"].items())]
    else:
        lines.append("None.")
    lines.append("")

    lines += ["## Steps", "",
              "| # | Step | Action | Status | Attempts | Started (UTC) | Duration | "
              "Operator wait | Error or reason |",
              "|---:|---|---|---|---:|---|---:|---:|---|"]
    for index, step in enumerate(report["steps"], 1):
        note = step["error"] or step["reason"] or ""
        lines.append(
            f"| {index} | {_text(step['title'])} (`{step['id']}`) | `{step['action']}` | "
            f"{step['status']} | {step['attempts']} | {utc_text(step['started_at'], True, True)} | "
            f"{measured_text(step['duration_s'])} | "
            f"{format_duration(step['operator_wait_s']) if step['operator_wait_s'] else '-'} | "
            f"{_text(note)} |")
    lines.append("")

    checks = [(step, check) for step in report["steps"] for check in step["checks"]]
    lines += ["## Checks", ""]
    if checks:
        counts = report["summary"]["checks"]
        lines += [f"{counts['passed']} passed, {counts['failed']} failed.", "",
                  "| Step | Check | Result | Detail |", "|---|---|---|---|"]
        lines += [f"| `{step['id']}` | {_text(check['name'])} | "
                  f"{'PASS' if check['ok'] else 'FAIL'} | {_text(check['detail'])} |"
                  for step, check in checks]
    else:
        lines.append("None recorded.")
    lines.append("")

    lines += ["## Milestones", ""]
    if report["milestones"]:
        lines += ["| Milestone | At (UTC) | Since the start |", "|---|---|---:|"]
        lines += [f"| {_text(m['name'])} | {utc_text(m['at'])} | {measured_text(m['elapsed_s'])} |"
                  for m in report["milestones"]]
    else:
        lines.append("None recorded.")
    lines.append("")

    if report["measures"]:
        lines += ["## Measures", "", "| Step | Measure | Value | Detail |", "|---|---|---:|---|"]
        lines += [f"| `{m['step']}` | {_text(m['name'])} | {_measure(m)} | "
                  f"{_text(m['detail'])} |" for m in report["measures"]]
        lines.append("")

    commands = [s for s in report["steps"] if s["command"]]
    if commands:
        lines += ["## What each step ran", ""]
        for step in commands:
            lines += [f"- `{step['id']}`: {_code(step['command'])}"]
        lines.append("")

    failed = [s for s in report["steps"] if s["status"] in ("failed", "interrupted")]
    if failed:
        lines += ["## Failures", ""]
        for step in failed:
            lines += [f"### {_text(step['title'])} (`{step['id']}`): {step['status']}", ""]
            if step["error"]:
                lines += [_text(step["error"]), ""]
            tail = step["output_tail"].splitlines()[-15:]
            if tail:
                lines += ["Last lines of its output:", "", "```", *tail, "```", ""]
    lines.append(f"_Generated by drdeck at {utc_text(report['generated_at'])} from the journal._")
    return _document(lines)


# --- one month ----------------------------------------------------------------------------


def parse_month(text: str) -> tuple[datetime, datetime]:
    """'2026-11' -> (2026-11-01 00:00 UTC, 2026-12-01 00:00 UTC); InvalidInput otherwise."""
    match = _MONTH.fullmatch(text.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise InvalidInput(f"--month {text!r}: write the month as YYYY-MM, e.g. 2026-11")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_report(journal: Any, month: str, config: Any = None,
                 runbooks: list[Any] | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Every drill and backup verification started in `month` (YYYY-MM, UTC).

    `runbooks` (default: discovered from the configuration's runbook directories)
    tells which runbooks are drills by their cadence; a run whose runbook is no
    longer found is judged by its recorded scenario. With a `config`, each
    cluster's repository is read for its verification records.
    """
    from tui.journal.due import DRILL_SCENARIOS, is_drill

    start, end = parse_month(month)
    if runbooks is None:
        runbooks = _discovered(config)
    drill_names = {rb.name for rb in runbooks if is_drill(rb)}
    known = {rb.name for rb in runbooks}
    runs = [r for r in journal.runs() if not r.dry_run and r.status not in NOT_RUN
            and start <= r.started < end]
    runs.reverse()  # oldest first: a month reads in order

    def drill(run: Any) -> bool:
        return run.runbook in drill_names if run.runbook in known else \
            run.scenario in DRILL_SCENARIOS

    drills = [run_summary(r) for r in runs if drill(r)]
    verifications = _verifications(journal, runs)
    repository, repositories = (_repository_verifications(config, start, end)
                                if config is not None and config.clusters else (None, []))
    return {
        "format": FORMAT,
        "kind": "month",
        "month": f"{start.year:04d}-{start.month:02d}",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "journal": journal.where,
        "drills": drills,
        "drill_summary": _drill_summary(drills),
        "worst_rto": _worst_rto(drills),
        "verifications": verifications,
        "verification_summary": {
            "runs": len(verifications),
            "passed": sum(1 for v in verifications if v["ok"]),
            "failed": sum(1 for v in verifications if not v["ok"]),
        },
        "repository_verifications": repository,
        "repositories": repositories,
        "repository_summary": {
            "records": len(repository or []),
            "passed": sum(1 for v in repository or [] if v["ok"]),
            "failed": sum(1 for v in repository or [] if not v["ok"]),
        },
    }


def _discovered(config: Any) -> list[Any]:
    from tui.runbook.discovery import discover

    dirs = list(config.runbook_dirs) if config is not None else []
    return [found.runbook for found in discover(dirs) if found.runbook is not None]


def _drill_summary(drills: list[dict[str, Any]]) -> dict[str, int]:
    def count(key: str, verdict: str) -> int:
        return sum(1 for d in drills if d[key]["verdict"] == verdict)

    succeeded = sum(1 for d in drills if d["status"] == "succeeded")
    return {
        "runs": len(drills),
        "succeeded": succeeded,
        "not_succeeded": len(drills) - succeeded,
        "rto_met": count("rto", "met"),
        "rto_missed": count("rto", "missed"),
        "rto_not_measured": count("rto", "not measured"),
        "rpo_met": count("rpo", "met"),
        "rpo_missed": count("rpo", "missed"),
    }


def _worst_rto(drills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_runbook: dict[str, list[dict[str, Any]]] = {}
    for run in drills:
        by_runbook.setdefault(run["runbook"], []).append(run)
    worst = []
    for name in sorted(by_runbook):
        runs = by_runbook[name]
        measured = [r for r in runs if r["rto"]["measured_s"] is not None]
        pick = max(measured, key=lambda r: r["rto"]["measured_s"]) if measured else runs[-1]
        worst.append({"runbook": name, "title": pick["title"], "runs": len(runs),
                      "run_id": pick["id"] if measured else None, **pick["rto"]})
    return worst


def _verifications(journal: Any, runs: list[Any]) -> list[dict[str, Any]]:
    by_id = {r.id: r for r in runs}
    steps: dict[str, list[tuple[Any, ...]]] = {}
    if by_id:
        for row in journal.execute(
                "select run_id, step_id, status, started_at, duration_s, error from steps "
                "where action = ? and started_at is not null order by started_at",
                (VERIFY_ACTION,)):
            if row[0] in by_id:
                steps.setdefault(row[0], []).append(row)
    found = []
    for run in runs:
        params = run.params
        base = {"run_id": run.id, "runbook": run.runbook,
                "cluster": params.get("cluster") or None,
                "database": params.get("database") or None}
        if run.id in steps:
            for _, step_id, status, started_at, duration_s, error in steps[run.id]:
                found.append({**base, "step": step_id, "started_at": started_at,
                              "status": status, "ok": status == "succeeded",
                              "duration_s": _rounded(duration_s), "error": _masked(error)})
        elif run.scenario == "verify":
            found.append({**base, "step": None, "started_at": run.started_at,
                          "status": run.status, "ok": run.status == "succeeded",
                          "duration_s": _rounded(run.duration_s), "error": _masked(run.error)})
    return found


def _repository_verifications(config: Any, start: datetime, end: datetime
                              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tui.catalog.inventory import ClusterInventory, read_cluster
    from tui.catalog.signatures import signing_for
    from tui.storage import open_store

    records, read = [], []
    for cluster in config.clusters.values():
        # the snapshots and their records only: no PITR picture, no other engine asked
        try:
            inventory = read_cluster(open_store(config.repository_for(cluster)), cluster.name,
                                     signing=signing_for(config, cluster))
        except Exception as exc:  # a misconfigured repository is reported, not fatal
            inventory = ClusterInventory(cluster.name, cluster.repository or "-", None,
                                         error=str(exc))
        read.append({"cluster": inventory.name, "repository": _masked(inventory.repository),
                     "error": _masked(inventory.error)})
        for snapshot in inventory.snapshots:
            for verification in snapshot.verifications:
                try:
                    when = verification.when
                except ValueError:
                    continue
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                if not start <= when < end:
                    continue
                records.append({
                    "cluster": inventory.name, "database": snapshot.database,
                    "snapshot": snapshot.stamp, "at": verification.at,
                    "how": verification.how, "ok": bool(verification.ok),
                    "detail": _masked(verification.detail), "by": verification.by,
                    "duration_s": _rounded(verification.duration_s)})
    records.sort(key=lambda r: r["at"])
    return records, read


def month_markdown(report: dict[str, Any]) -> str:
    """A month report (from `month_report`) as Markdown."""
    start = datetime.fromisoformat(report["from"])
    lines = [f"# Drills and backup verifications: {_MONTH_NAMES[start.month - 1]} {start.year}",
             "",
             f"From {utc_text(report['from'])} to {utc_text(report['to'])} (runs started in the "
             f"month). Journal: `{report['journal']}`.", ""]
    d = report["drill_summary"]
    v = report["verification_summary"]
    r = report["repository_summary"]
    lines += ["## Summary", "",
              f"- Drills: {d['runs']} run{_s(d['runs'])}, {d['succeeded']} succeeded, "
              f"{d['not_succeeded']} did not succeed.",
              f"- RTO target: met {d['rto_met']}, missed {d['rto_missed']}, not measured "
              f"{d['rto_not_measured']}.",
              f"- RPO target: met {d['rpo_met']}, missed {d['rpo_missed']}.",
              f"- Backup verifications recorded in the journal: {v['runs']}, {v['passed']} "
              f"passed, {v['failed']} failed."]
    if report["repository_verifications"] is not None:
        lines.append(f"- Verification records in the repositories: {r['records']}, "
                     f"{r['passed']} passed, {r['failed']} failed (the same verification may "
                     "appear both here and in the journal).")
    lines.append("")

    lines += ["## Worst RTO per runbook", ""]
    if report["worst_rto"]:
        lines += ["| Runbook | Drills | Worst RTO | Target | % of target | Verdict | Run |",
                  "|---|---:|---:|---:|---:|---|---|"]
        lines += [f"| {_text(w['title'])} (`{w['runbook']}`) | {w['runs']} | "
                  f"{measured_text(w['measured_s'])} | {_clock(w['target_s'])} | "
                  f"{share_text(w)} | {_verdict(w['verdict'])} | "
                  f"{'`' + w['run_id'] + '`' if w['run_id'] else '-'} |"
                  for w in report["worst_rto"]]
    else:
        lines.append("No drills this month.")
    lines.append("")

    lines += ["## Drills", ""]
    if report["drills"]:
        lines += ["| Started (UTC) | Run | Runbook | Mode | Operator | Result | RTO | Target | "
                  "% | RTO verdict | RPO | RPO target | RPO verdict |",
                  "|---|---|---|---|---|---|---:|---:|---:|---|---:|---:|---|"]
        for run in report["drills"]:
            rto, rpo = run["rto"], run["rpo"]
            lines.append(
                f"| {utc_text(run['started_at'], short=True)} | `{run['id']}` | "
                f"`{run['runbook']}` | {run['mode'].upper()} | {_text(run['operator'])} | "
                f"{_result(run['status'])} | "
                f"{measured_text(rto['measured_s'])} | {_clock(rto['target_s'])} | "
                f"{share_text(rto)} | {_verdict(rto['verdict'])} | "
                f"{measured_text(rpo['measured_s'])} | {_clock(rpo['target_s'])} | "
                f"{_verdict(rpo['verdict'])} |")
    else:
        lines.append("No drills this month.")
    lines.append("")

    lines += ["## Backup verifications (journal)", ""]
    if report["verifications"]:
        lines += ["| Started (UTC) | Run | Runbook | Step | Cluster | Database | Result | "
                  "Duration | Error |", "|---|---|---|---|---|---|---|---:|---|"]
        lines += [f"| {utc_text(x['started_at'], short=True)} | `{x['run_id']}` | "
                  f"`{x['runbook']}` | {x['step'] or '-'} | {x['cluster'] or '-'} | "
                  f"{x['database'] or '-'} | {'PASSED' if x['ok'] else x['status'].upper()} | "
                  f"{measured_text(x['duration_s'])} | {_text(x['error'] or '')} |"
                  for x in report["verifications"]]
    else:
        lines.append("No backup verification ran this month.")
    lines.append("")

    if report["repository_verifications"] is not None:
        lines += ["## Verification records in the repositories", ""]
        for repo in report["repositories"]:
            if repo["error"]:
                lines.append(f"- cluster `{repo['cluster']}`: cannot read "
                             f"{repo['repository']}: {_text(repo['error'])}")
        if any(repo["error"] for repo in report["repositories"]):
            lines.append("")
        if report["repository_verifications"]:
            lines += ["| Verified at (UTC) | Cluster | Database | Snapshot | How | Result | By | "
                      "Duration | Detail |", "|---|---|---|---|---|---|---|---:|---|"]
            lines += [f"| {utc_text(x['at'], short=True)} | {x['cluster']} | {x['database']} | "
                      f"`{x['snapshot']}` | {x['how']} | {'PASSED' if x['ok'] else 'FAILED'} | "
                      f"{_text(x['by'])} | {measured_text(x['duration_s'])} | "
                      f"{_text(x['detail'])} |"
                      for x in report["repository_verifications"]]
        else:
            lines.append("No verification record dated this month.")
        lines.append("")
    lines.append(f"_Generated by drdeck at {utc_text(report['generated_at'])}._")
    return _document(lines)


# --- estimates (shared with the generated recovery runbook) --------------------------------


def spread(values: list[float]) -> tuple[float, float] | None:
    """(median, worst) of measured durations, or None without any."""
    if not values:
        return None
    return statistics.median(values), max(values)


# --- text helpers -------------------------------------------------------------------------


def _document(lines: list[str]) -> str:
    """A Markdown export, its control characters escaped: a report is read with `cat` or
    `less -R` as often as rendered, and it quotes the journal and the repository."""
    from tui.redact import escape_controls

    return escape_controls("\n".join(lines) + "\n")


def _masked(text: str | None) -> str | None:
    if text is None:
        return None
    from tui.redact import mask_credentials

    return mask_credentials(text)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def utc_text(iso: str | None, short: bool = False, seconds: bool = False) -> str:
    """An ISO time as UTC: '2026-11-05 12:00:05 UTC'; short: '2026-11-05 12:00', with
    seconds: '2026-11-05 12:00:05'."""
    if not iso:
        return "-"
    when = datetime.fromisoformat(iso)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    if short:
        return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(seconds: float | None) -> str:
    return format_clock(seconds) if seconds else "-"


def _result(status: str) -> str:
    return status.upper()


def _verdict(verdict: str) -> str:
    return "MISSED" if verdict == "missed" else verdict


def _measure(measure: dict[str, Any]) -> str:
    if measure["unit"] == "s":
        return measured_text(measure["value"])
    if measure["unit"] == "B":
        return format_bytes(measure["value"])
    return f"{measure['value']:g} {measure['unit']}".strip()


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _text(value: Any) -> str:
    """A table cell: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = _text(value)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}" if text else "-"
