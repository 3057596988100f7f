"""`drdeck demo`: a sandbox built from nothing, two drills end to end, nothing left behind."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tui.postgres.access import give_back, give_to_server, let_server_account_run_drdeck
from tui.postgres.cluster import server_account

from cli_support import REPO, drdeck_env
from tmux_support import Tmux

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_the_headless_demo_runs_its_drills_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tui", "demo", "--headless"],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=drdeck_env(tmp_path / "state"), stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr
    root = Path(out.splitlines()[0].removeprefix("building a sandbox in "))
    assert "sandbox built in" in out
    assert ("sandbox drills: snapshot restore succeeded, restore onto a new server succeeded, "
            "point-in-time restore succeeded") in out
    # the snapshot restored onto the empty server brought its roles: the application logs in
    assert "created roles shop_app, shop_reporting" in out
    assert "the application role logs in on the disaster-recovery server: yes, " in out
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


def _sandbox_processes(root: Path) -> str:
    return subprocess.run(["pgrep", "-af", str(root)], capture_output=True, text=True).stdout


def _demo_in_tmux(tmp_path: Path, socket: str):
    """`drdeck demo` in a real terminal, once its Home screen shows the sandbox banner."""
    # in /tmp like the default: the postgres account cannot enter pytest's 0700 directories
    root = Path(tempfile.mkdtemp(prefix="drdeck-demo-test-"))
    rc_file = tmp_path / "rc"
    drdeck = Path(sys.executable).parent / "drdeck"
    # COLUMNS and LINES (pytest sets them) would override the pane's size
    state = shlex.quote(str(tmp_path / "state"))
    command = (f"env -u COLUMNS -u LINES TERM=xterm-256color DRDECK_STATE_DIR={state} "
               f"{shlex.quote(str(drdeck))} demo --dir {shlex.quote(str(root))}; "
               f"echo $? > {shlex.quote(str(rc_file))}")
    tmux = Tmux(socket)
    tmux("new-session", "-d", "-s", "drill", "-x", "140", "-y", "40", command)
    try:
        screen = tmux.wait_for("everything.", timeout=90)  # the banner's last word
    except AssertionError:
        tmux("kill-server")
        shutil.rmtree(root, ignore_errors=True)
        raise
    return tmux, root, rc_file, screen


def _exit_code(rc_file: Path, tmux: Tmux, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while not rc_file.exists() or not rc_file.read_text().strip():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.1)
    return int(rc_file.read_text())


@needs_tmux
def test_quitting_the_interactive_demo_removes_the_sandbox(tmp_path: Path) -> None:
    tmux, root, rc_file, screen = _demo_in_tmux(tmp_path, f"drdeck-demo-{os.getpid()}")
    try:
        assert "SANDBOX" in screen and str(root) in screen
        assert "snapshot-restore" in screen and "pitr-restore" in screen
        assert _sandbox_processes(root), "the sandbox cluster should be running while the app is"
        tmux("send-keys", "-t", "drill", "C-q")
        assert _exit_code(rc_file, tmux) == 0
    finally:
        tmux("kill-server")
    assert not root.exists()
    assert _sandbox_processes(root) == "", "a process of the sandbox outlived it"


@needs_tmux
def test_a_terminated_demo_still_removes_the_sandbox(tmp_path: Path) -> None:
    tmux, root, rc_file, _ = _demo_in_tmux(tmp_path, f"drdeck-demo-term-{os.getpid()}")
    try:
        demo_pid = subprocess.run(["pgrep", "-f", f"demo --dir {root}$"], capture_output=True,
                                  text=True).stdout.split()
        assert len(demo_pid) == 1, demo_pid
        os.kill(int(demo_pid[0]), signal.SIGTERM)
        assert _exit_code(rc_file, tmux) != 0  # interrupted, not a clean finish
    finally:
        tmux("kill-server")
    assert not root.exists()
    assert _sandbox_processes(root) == ""


@needs_tmux
def test_closing_the_terminal_removes_the_sandbox(tmp_path: Path) -> None:
    """A dropped SSH session hangs up the demo; the cluster and agent must go with it."""
    tmux, root, _, _ = _demo_in_tmux(tmp_path, f"drdeck-demo-hup-{os.getpid()}")
    tmux("kill-server")  # the terminal goes away: SIGHUP
    deadline = time.monotonic() + 60
    while root.exists() or _sandbox_processes(root):
        assert time.monotonic() < deadline, f"left behind: {_sandbox_processes(root)}"
        time.sleep(0.2)


@pytest.mark.skipif(server_account() is None, reason="needs root to become the postgres account")
def test_the_demo_runs_without_root(tmp_path: Path) -> None:
    """An operator's own account: no chown, no privilege drop; postgres runs it as itself."""
    home = Path(tempfile.mkdtemp(prefix="drdeck-nonroot-"))
    opened = let_server_account_run_drdeck()
    try:
        give_to_server(home)
        env = {**drdeck_env(home / "state"), "HOME": str(home)}
        proc = subprocess.run(["runuser", "-u", "postgres", "--", sys.executable, "-m", "tui",
                               "demo", "--headless", "--dir", str(home / "sandbox")],
                              capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        assert ("sandbox drills: snapshot restore succeeded, restore onto a new server "
                "succeeded, point-in-time restore succeeded") in proc.stdout
        assert not (home / "sandbox").exists()
    finally:
        give_back(opened)
        shutil.rmtree(home, ignore_errors=True)
