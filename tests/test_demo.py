"""`drdeck demo`: a sandbox built from nothing, two drills end to end, nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_support import REPO, drdeck_env


def test_the_headless_demo_runs_both_drills_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tui", "demo", "--headless"],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=drdeck_env(tmp_path / "state"), stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr
    root = Path(out.splitlines()[0].removeprefix("building a sandbox in "))
    assert "sandbox built in" in out
    assert "sandbox drills: snapshot restore succeeded, point-in-time restore succeeded" in out
    # the journal summary: both drills with their RTO and RPO
    journal = out.split("== the journal", 1)[1]
    assert "snapshot-restore" in journal and "pitr-restore" in journal
    counts = next(line for line in out.splitlines() if line.startswith("orders committed"))
    committed, restored = (int(part.rsplit(" ", 1)[1]) for part in counts.split(";"))
    assert committed == restored > 1000
    assert "sandbox removed" in out
    assert not root.exists()
    leftovers = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True)
    assert leftovers.stdout == "", "a process of the sandbox outlived it"
