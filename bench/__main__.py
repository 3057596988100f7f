"""`python -m bench`: run the benchmarks and print one table (or JSON with --json).

Exit code 0 even when a target is missed or a benchmark cannot run: these are
measurements, not tests; the table says MISSED or ERROR plainly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback

from bench.common import (
    Note,
    Report,
    Row,
    environment,
    format_environment,
    format_ratio,
    format_value,
    reproduce,
)

# name -> module with `run() -> Report`; one line per benchmark
BENCHMARKS = {
    "startup": "bench.startup",
    "engine": "bench.engine",
    "tui": "bench.tui",
    "snapshot-restore": "bench.snapshot_restore",
    "snapshot-memory": "bench.snapshot_memory",
    "snapshot-compression": "bench.snapshot_compression",
    "wal-fetch": "bench.wal_fetch",
    "barman-wal": "bench.barman_wal",
    "archive": "bench.archive",
    "wal-events": "bench.wal_events",
    "inventory": "bench.inventory",
    "journal": "bench.journal",
    "history": "bench.history",
}

COLUMNS = ("benchmark", "measured", "baseline", "ratio", "target", "result", "reproduce")
LEGEND = ("ratio: measured / baseline as time (for a rate, baseline / measured): "
          "2.0x takes twice as long as the baseline")


def run_one(name: str, debug: bool = False) -> Report:
    """Run a benchmark; a crash becomes an ERROR row, never an exception."""
    try:
        return importlib.import_module(BENCHMARKS[name]).run()
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        return Report(rows=[Row(name, "", [], "", [], reproduce(name), error=message)])


def result_text(row: Row) -> str:
    if row.error is not None:
        return "ERROR"
    if row.met is None:
        return "-"
    if row.met:
        return "met"
    missed = [t.description for t in row.targets if not t.met]
    return "MISSED (" + "; ".join(missed) + ")"


def cells_of(rows: list[Row]) -> list[tuple[str, ...]]:
    cells = []
    for row in rows:
        if row.error is not None:
            cells.append((row.name, "-", "-", "-", "-", "ERROR", row.command))
            continue
        cells.append((
            row.name,
            format_value(row.measured, row.unit),
            f"{format_value(row.baseline, row.unit)} ({row.baseline_label})",
            format_ratio(row.ratio),
            " and ".join(t.description for t in row.targets) or "-",
            result_text(row),
            row.command,
        ))
    return cells


def table(rows: list[Row]) -> str:
    cells = [COLUMNS, *cells_of(rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    right = {1, 2, 3}  # numbers line up on the right

    def render(line: tuple[str, ...]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])


def markdown(rows: list[Row], env: dict) -> str:
    """The table as the README shows it: one row per measurement, commands in code."""
    def line(cells: tuple[str, ...]) -> str:
        *first, command = cells
        return "| " + " | ".join([*first, f"`{command}`"]) + " |"

    when = env.get("date") or ""
    return "\n".join([
        f"The latest `make bench`{f', run on {when}' if when else ''} on "
        f"`{format_environment(env)}`:",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|:--|--:|--:|--:|:--|:--|:--|",
        *(line(cells) for cells in cells_of(rows)),
        "",
        LEGEND + ". To reproduce, run `make bench`, or a row's own command.",
    ])


def note_text(note: Note) -> str:
    mark = {None: "·", True: "OK", False: "MISSED"}[note.ok]
    return f"  {mark} {note.benchmark}: {note.text}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure drdeck against baselines taken in the same run.",
    )
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table in Markdown, as the README shows it")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback when a benchmark fails to run")
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]

    env = environment()
    if not (args.json or args.markdown):
        print(format_environment(env), flush=True)
    rows: list[Row] = []
    notes: list[Note] = []
    for name in names:
        if sys.stderr.isatty() and not args.json:
            print(f"running {name}…", end="\r", file=sys.stderr, flush=True)
        report = run_one(name, args.debug)
        if sys.stderr.isatty() and not args.json:
            print(" " * 40, end="\r", file=sys.stderr, flush=True)
        rows.extend(report.rows)
        notes.extend(report.notes)

    if args.json:
        print(json.dumps({
            "environment": env,
            "benchmarks": [row.to_json() for row in rows],
            "notes": [{"benchmark": n.benchmark, "text": n.text, "ok": n.ok} for n in notes],
        }, indent=2, ensure_ascii=False))
        return 0
    if args.markdown:
        print(markdown(rows, env))
        for note in notes:  # the why behind the numbers, kept out of the pasted table
            print(note_text(note), file=sys.stderr)
        return 0
    print()
    print(table(rows))
    print(LEGEND)
    errors = [row for row in rows if row.error is not None]
    if notes or errors:
        print()
    for note in notes:
        print(note_text(note))
    for row in errors:
        print(f"  ERROR {row.name}: {row.error} (run with --debug for the traceback)")
    missed = sum(1 for row in rows if row.met is False and row.error is None)
    missed += sum(1 for note in notes if note.ok is False)
    summary = [f"{missed} MISSED"] if missed else []
    if errors:
        summary.append(f"{len(errors)} ERROR (not measured)")
    print()
    print(", ".join(summary) if summary else "all targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
