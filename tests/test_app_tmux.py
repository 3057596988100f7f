"""The real `drdeck` binary in a real terminal (tmux): briefing, run, summary, quit."""

from __future__ import annotations

import os
import shlex
import shutil
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
