"""`drdeck docs`: write backup-policy.md and recovery-runbook.md, and say where."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from tui.errors import EXIT_OK, InvalidInput

DEFAULT_OUT = Path("docs") / "generated"


def docs_command(args: Namespace) -> int:
    from tui.config import load_config
    from tui.journal.policy import gather, write_docs
    from tui.journal.store import open_journal

    out = Path(args.out).expanduser() if args.out else Path.cwd() / DEFAULT_OUT
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out}: not a directory")
    config = load_config(args.config)
    journal = open_journal(config)
    try:
        journal.mark_interrupted()
        sources = gather(config, journal)
    finally:
        journal.close()
    try:
        written = write_docs(out, sources)
    except OSError as exc:
        raise InvalidInput(f"cannot write into {out}: {exc.strerror or exc}") from None
    for path in written:
        print(path)
    return EXIT_OK
