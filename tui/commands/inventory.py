"""`drdeck inventory`: what can we restore, and how fresh is it?"""

from __future__ import annotations

import json
import sys
from argparse import Namespace

from tui.durations import format_duration
from tui.errors import EXIT_FAILED, EXIT_OK

VERIFIED_MARK = {True: "✓", False: "✗"}
# what a snapshot carries to be restored onto a new server (roles, the database's properties)
GLOBALS_MARK = {"complete": "✓", "no password hashes": "no pw", "no roles": "no roles",
                "none": "-",
                "missing": "MISSING", "damaged": "DAMAGED", None: "?"}


def inventory_command(args: Namespace) -> int:
    from tui.catalog.report import inventory_json, load_inventories
    from tui.config import load_config

    config = load_config(args.config)
    names = [config.cluster(args.cluster).name] if args.cluster else list(config.clusters)
    if not names:
        config.cluster()  # raises the "no clusters configured" message
    inventories, now = load_inventories(config, names)
    if args.json:
        json.dump(inventory_json(inventories, now), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for inventory in inventories:
            _print_cluster(inventory, now)
    unreadable = any(i.error for i in inventories)
    return EXIT_FAILED if unreadable else EXIT_OK


def _say(line: str) -> None:
    """Print a line whose text partly comes from the repository (a verification's `how`, a
    backup label an engine reports, a problem quoting a manifest): control characters
    escaped."""
    from tui.redact import escape_controls

    print(escape_controls(line))


def _print_cluster(inventory, now) -> None:
    from tui.units import format_bytes

    state, age = inventory.rpo_state(now)
    rpo = f"RPO {format_duration(inventory.rpo_s)}" if inventory.rpo_s else "no RPO target"
    if inventory.engines_only:
        _say(f"{inventory.name}  no drdeck repository: backed up by "
             f"{', '.join(r.source.title for r in inventory.sources)}")
        _say(f"  {recoverable_line(inventory, now)}")
        for report in inventory.sources:
            _print_source(report)
        return
    newest = f"newest {format_duration(age)} old" if age is not None else "no snapshot"
    _say(f"{inventory.name}  {inventory.repository}")
    _say(f"  {newest} · {rpo} · {state.upper() if state == 'breached' else state}")
    if inventory.error:
        _say(f"  cannot read the repository: {inventory.error}")
        return
    if inventory.snapshots:
        _say(f"  {'taken (UTC)':<17} {'database':<14} {'stored':>10} {'age':>7}  "
              f"{'enc':<3}  {'globals':<8} {'verified':<22} retention")
    for snap in inventory.snapshots:
        taken = snap.taken_at.strftime("%Y-%m-%d %H:%M")
        size = format_bytes(snap.manifest.stored_size if snap.manifest else
                            (snap.dump.size if snap.dump else None))
        encrypted = {True: "✓", False: "NO!", None: "?"}[snap.encrypted]
        globals_ = GLOBALS_MARK.get(snap.globals_state, "?")
        verified = snap.last_verification
        shown = "never" if verified is None else (
            f"{VERIFIED_MARK[verified.ok]} {verified.at[:16].replace('T', ' ')} {verified.how}")
        line = (f"  {taken:<17} {snap.database:<14} {size:>10} "
                f"{format_duration(snap.age_s(now)):>7}  {encrypted:<3}  {globals_:<8} {shown:<22} "
                f"{snap.retention or '-'}")
        if not snap.complete:
            line += f"  INCOMPLETE: {snap.problem}"
        _say(line)
    for upload in inventory.incomplete_uploads:
        _say(f"  incomplete upload: {upload.key} ({upload.detail})")
    if inventory.pitr is not None:
        _print_pitr(inventory.pitr)
    for report in inventory.sources:
        _print_source(report)


def recoverable_line(inventory, now) -> str:
    """How fresh the newest recoverable point of a cluster's engines is, against its RPO."""
    state, age, title = inventory.recoverable_state(now)
    rpo = f"RPO {format_duration(inventory.rpo_s)}" if inventory.rpo_s else "no RPO target"
    if age is None:
        return f"no recoverable point · {rpo} · {state}"
    return (f"newest recoverable point {format_duration(age)} old ({title}) · {rpo} · "
            f"{state.upper() if state == 'breached' else state}")


def _print_source(report) -> None:
    """One engine's summary (tui.sources): its first line a heading, the rest below it."""
    heading, *lines = report.summary()
    _say(f"  {heading.text}:")
    for line in lines:
        _say(f"    {'WARNING: ' if line.tone in ('bad', 'warn') else ''}{line.text}")


def _print_pitr(picture) -> None:
    from tui.units import format_bytes

    _say(f"  point in time: recoverable {picture.describe_windows()}")
    for manifest, stamp, problem in picture.base_backups:
        if manifest is None:
            _say(f"    base backup {stamp}  INCOMPLETE: {problem}")
            continue
        ended = manifest.stopped.strftime("%Y-%m-%d %H:%M:%S")
        state = f"  INCOMPLETE: {problem}" if problem else ""
        count = len(manifest.tablespaces)
        spaces = f" (with {count} tablespace{'s' if count > 1 else ''})" if count else ""
        if manifest.parent:
            spaces += f"  incremental on {manifest.parent}"
        _say(f"    base backup {stamp}  ended {ended}  "
             f"{format_bytes(manifest.total_stored_size)}{spaces}  "
             f"timeline {manifest.timeline}  LSN {manifest.start_lsn}..{manifest.stop_lsn}"
             f"{state}")
    archive = picture.archive
    for timeline in archive.timelines:
        count = len(archive.segments.get(timeline, ()))
        _say(f"    WAL timeline {timeline}: {count} segments")
    for gap in picture.gaps:
        _say(f"    WARNING: {gap.describe()}")
    for problem in picture.problems:
        _say(f"    WARNING: {problem}")
