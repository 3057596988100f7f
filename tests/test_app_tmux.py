"""The real `drdeck` binary in a real terminal (tmux): briefing, run, summary, quit."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tmux_support import Tmux

RUNBOOK = """
[runbook]
name = "tmux-drill"
title = "A drill in a real terminal"
rto = "1h"

[params.who]
type = "string"
help = "Who is on call"

[[steps]]
id = "greet"
title = "Greet the person on call"
action = "shell"
with = { command = ["echo", "on call: ${who}"] }

[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = { name = "service-restored" }
"""

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_a_drill_in_a_real_terminal(tmp_path: Path) -> None:
    path = tmp_path / "tmux-drill.toml"
    path.write_text(RUNBOOK)
    rc_file = tmp_path / "rc"
    drdeck = Path(sys.executable).parent / "drdeck"
    command = (f"env TERM=xterm-256color DRDECK_STATE_DIR={shlex.quote(str(tmp_path))} "
               f"{shlex.quote(str(drdeck))} run {shlex.quote(str(path))}; "
               f"echo $? > {shlex.quote(str(rc_file))}")
    tmux = Tmux(f"drdeck-test-{os.getpid()}")
    try:
        tmux("new-session", "-d", "-s", "drill", "-x", "120", "-y", "35", command)
        tmux.wait_for("Start run")
        screen = tmux.screen()
        assert "A drill in a real terminal" in screen and "who  (string)  required" in screen
        tmux("send-keys", "-t", "drill", "-l", "Ada Lovelace")
        tmux("send-keys", "-t", "drill", "C-s")
        screen = tmux.wait_for("SUCCEEDED")
        assert "RTO 0:00:00 of 1:00:00 target (0%, met)" in screen
        tmux("send-keys", "-t", "drill", "Enter")  # back to the log
        screen = tmux.wait_for("on call: Ada Lovelace")
        assert "✓ Greet the person on call" in screen
        tmux("send-keys", "-t", "drill", "C-q")
        deadline = time.monotonic() + 15
        while not rc_file.exists():
            assert time.monotonic() < deadline, tmux.screen()
            time.sleep(0.1)
        assert rc_file.read_text().strip() == "0"
    finally:
        tmux("kill-server")


WAITING_RUNBOOK = """
[runbook]
name = "tmux-waits"
title = "A run that waits for a person"

[params.target_db]
type = "string"
default = "shop_restored"

[[steps]]
id = "fetch"
title = "Fetch the snapshot"
action = "shell"
with = { command = ["echo", "fetched"] }

[[steps]]
id = "replace"
title = "Replace the target"
action = "shell"
confirm = "This replaces ${target_db}."
confirm_input = "${target_db}"
with = { command = ["echo", "replaced"] }

[[steps]]
id = "switch"
title = "Point the application at the restored database"
action = "manual"
with = { instructions = "Restart the orders service." }
"""

# (where the run waits, the keys that stop it, what the screen shows first)
STOPS = [
    ("confirm", ["C-q", "y"], "Type shop_restored to confirm"),
    ("confirm", ["Escape", "y"], "Type shop_restored to confirm"),
    ("manual", ["C-q", "y"], "Done (enter)"),
    ("manual", ["a", "y"], "Done (enter)"),
    ("manual", ["SIGTERM"], "Done (enter)"),
]


@pytest.mark.parametrize("size", [(80, 24), (140, 42)], ids=["80x24", "140x42"])
def test_stopping_while_the_run_waits_ends_cleanly(tmp_path: Path, size: tuple[int, int]) -> None:
    """Quit, abort, esc or SIGTERM at a confirmation or a manual step: out within 2 s,
    the run recorded as aborted, no traceback on the terminal."""
    path = tmp_path / "tmux-waits.toml"
    path.write_text(WAITING_RUNBOOK)
    drdeck = Path(sys.executable).parent / "drdeck"
    tmux = Tmux(f"drdeck-stop-{os.getpid()}-{size[0]}")
    try:
        for number, (where, keys, shown) in enumerate(STOPS):
            state = tmp_path / f"state-{number}"
            rc_file = tmp_path / f"rc-{number}"
            command = (f"env TERM=xterm-256color DRDECK_STATE_DIR={shlex.quote(str(state))} "
                       f"{shlex.quote(str(drdeck))} run {shlex.quote(str(path))} "
                       f"; echo $? > {shlex.quote(str(rc_file))}; "
                       "sleep 30")
            tmux("new-session", "-d", "-s", "drill", "-x", str(size[0]), "-y", str(size[1]),
                 command)
            tmux.wait_for("Start run")
            tmux("send-keys", "-t", "drill", "C-s")
            tmux.wait_for("Type shop_restored to confirm")
            if where == "manual":
                time.sleep(0.5)  # the field takes the keys once it has focus
                # typed and confirmed in one burst, as a quick typist does
                tmux("send-keys", "-t", "drill", "-l", "shop_restored")
                tmux("send-keys", "-t", "drill", "Enter")
            tmux.wait_for(shown)
            if keys == ["SIGTERM"]:
                pid = tmux("display-message", "-p", "-t", "drill", "#{pane_pid}").strip()
                subprocess.run(["pkill", "-TERM", "-P", pid, "-f", "drdeck"], check=False)
            else:
                for key in keys[:-1]:
                    tmux("send-keys", "-t", "drill", key)
                    time.sleep(0.3)
                tmux.wait_for("(y)")
                tmux("send-keys", "-t", "drill", keys[-1])
            asked = time.monotonic()
            stays_open = keys[0] in ("a", "Escape")  # the run ends, the app stays on its summary
            if stays_open:
                tmux.wait_for("ABORTED", timeout=2)
                tmux("send-keys", "-t", "drill", "C-q")
            while not rc_file.exists():
                assert time.monotonic() - asked < 2 + stays_open, (
                    f"{where} {keys}: still running after 2 s:\n{tmux.screen()}")
                time.sleep(0.05)
            time.sleep(0.2)  # what the shell shows once drdeck has gone
            screen = tmux.screen()
            assert "Traceback" not in screen and "Error" not in screen, screen
            runs = subprocess.run(
                [str(drdeck), "drills", "--json"], capture_output=True, text=True,
                env={**os.environ, "DRDECK_STATE_DIR": str(state)}, check=True)
            (run,) = json.loads(runs.stdout)["runs"]
            assert run["status"] == "aborted", (where, keys, run)
            tmux("kill-session", "-t", "drill")
    finally:
        tmux("kill-server")
