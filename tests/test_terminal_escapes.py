"""Text from a repository, a server or a command never drives the reader's terminal.

A repository is written by others: a verification record whose `how` is
"\\x1b[2K\\r✓ succeeded" would erase a line and print a success that did not happen, and a
crafted dump's object names come back in pg_restore's output. Every printer drdeck has
(headless human and JSON, inventory, status, the journal's listing, Markdown and JSON
exports) shows control characters as escapes, and hides nothing else.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tui.catalog.layout import stamp_of, verification_key
from tui.storage import LocalStore

from cli_support import drdeck, json_events
from repo_support import fake_snapshot

# what a terminal acts on: C0 but newline (and tab), DEL, C1 (CSI is U+009B)
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
FAKE_SUCCESS = "\x1b[2K\r✓ succeeded"

SHELL = r"""
[runbook]
name = "escapes"
title = "Output that would drive a terminal"

[[steps]]
id = "restore"
title = "A restore's output quoting object names"
action = "shell"
[steps.with]
command = '''
printf 'restoring table evil\033[2K\r\342\234\223 succeeded\n'
printf 'csi \302\23331m red \177\n'
printf 'bell\a\n' >&2
exit 3'''
"""


def assert_no_raw_control(text: str, where: str) -> None:
    found = RAW_CONTROL.findall(text)
    assert not found, f"{where} holds raw control characters {found!r}:\n{text[-1500:]}"


def test_a_runs_printers_and_its_journal_show_control_characters_as_escapes(
        tmp_path: Path) -> None:
    runbook = tmp_path / "escapes.toml"
    runbook.write_text(SHELL)
    state = tmp_path / "state"
    human = drdeck("run", str(runbook), "--headless", state_dir=state)
    machine = drdeck("run", str(runbook), "--json", state_dir=state)
    assert human.returncode == machine.returncode == 1, human.stdout + human.stderr

    for name, proc in (("--headless", human), ("--json", machine)):
        assert_no_raw_control(proc.stdout + proc.stderr, name)
    assert r"restoring table evil\x1b[2K\r✓ succeeded" in human.stdout
    assert r"csi \x9b31m red \x7f" in human.stdout and r"bell\x07" in human.stdout
    lines = [e["line"] for e in json_events(machine.stdout) if e["event"] == "output"]
    assert r"restoring table evil\x1b[2K\r✓ succeeded" in lines
    # the run still failed, and says so: nothing printed over the verdict
    assert "FAILED" in human.stdout and "✗ restore  failed" in human.stdout

    listing = drdeck("drills", state_dir=state)
    run_id = json.loads(drdeck("drills", "--json", state_dir=state).stdout)["runs"][0]["id"]
    month = datetime.now(UTC).strftime("%Y-%m")
    exports = {
        "drills": listing,
        "drills show md": drdeck("drills", "show", run_id, "--format", "md", state_dir=state),
        "drills show json": drdeck("drills", "show", run_id, "--format", "json",
                                   state_dir=state),
        "report md": drdeck("report", "--month", month, state_dir=state),
        "report json": drdeck("report", "--month", month, "--format", "json",
                              state_dir=state),
    }
    for name, proc in exports.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        assert_no_raw_control(proc.stdout, name)
    assert r"\x1b[2K\r✓ succeeded" in exports["drills show md"].stdout


def test_a_verification_record_from_the_repository_cannot_fake_a_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    store = LocalStore(repo)
    now = datetime.now(UTC)
    good = fake_snapshot(store, "prod", "app", now - timedelta(hours=1))
    at = now - timedelta(minutes=30)
    store.write_bytes(verification_key("prod", "app", good, stamp_of(at)), json.dumps({
        "at": at.isoformat(), "how": FAKE_SUCCESS, "ok": False,
        "detail": f"row counts differ{FAKE_SUCCESS}\x9b2J", "by": "ci\x1b]0;owned\x07",
        "duration_s": 3.0}).encode())
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{repo}"\n\n'
                      '[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\n'
                      'repository = "backups"\ndatabases = ["app"]\nrpo = "1d"\n')
    month = now.strftime("%Y-%m")
    runs = {
        "inventory": drdeck("--config", str(config), "inventory", state_dir=tmp_path),
        "inventory --json": drdeck("--config", str(config), "inventory", "--json",
                                   state_dir=tmp_path),
        "status": drdeck("--config", str(config), "status", state_dir=tmp_path),
        "report md": drdeck("--config", str(config), "report", "--month", month,
                            state_dir=tmp_path),
        "report json": drdeck("--config", str(config), "report", "--month", month,
                              "--format", "json", state_dir=tmp_path),
    }
    for name, proc in runs.items():
        assert "internal error" not in proc.stderr, f"{name}: {proc.stderr}"
        assert_no_raw_control(proc.stdout + proc.stderr, name)
    shown = runs["inventory"].stdout
    assert good[:8] in shown.replace("-", "") and r"✗" in shown
    assert r"\x1b[2K\r✓ succeeded" in shown
    assert "verification" in runs["status"].stdout
    assert r"ci\x1b]0;owned\x07" in runs["report md"].stdout
    assert "FAILED" in runs["report md"].stdout
