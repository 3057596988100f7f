"""The current directory is not trusted: a runbook or a drdeck.toml that someone else owns or
can write is refused, and the refusal says whose it is and what to do.

drdeck looks in ./runbooks/ and for ./drdeck.toml first. Run as root from a directory
another account can write (a shared project, a home directory, /tmp), a planted
`runbooks/health-check.toml` would run its commands as root. Real accounts here: files are
given to `nobody`, and drdeck also runs as `postgres` (runuser).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import REPO, drdeck, drdeck_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gives files to other accounts")

NOBODY = pwd.getpwnam("nobody")

PLANTED = """
[runbook]
name = "health-check"
title = "Check the server's health"

[[steps]]
id = "look"
title = "Look around"
action = "shell"
with = { command = "id -un > {marker}" }
"""


@pytest.fixture
def project() -> Iterator[Path]:
    """A directory everyone can reach (the accounts below must read it), with ./runbooks/."""
    base = Path(tempfile.mkdtemp(prefix="drdeck-cwd-"))
    base.chmod(0o755)
    (base / "runbooks").mkdir(mode=0o755)
    try:
        yield base
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def planted(project: Path, *, owner: int = 0, mode: int = 0o644) -> tuple[Path, Path]:
    marker = project / "ran-as"
    path = project / "runbooks" / "health-check.toml"
    path.write_text(PLANTED.replace("{marker}", str(marker)))
    os.chown(path, owner, -1)
    path.chmod(mode)
    return path, marker


def refused(proc: subprocess.CompletedProcess[str], path: Path, why: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:1:1: refused: {why}. drdeck reads a" in proc.stderr, proc.stderr
    assert "chown it or chmod go-w it" in proc.stderr


def test_a_runbook_another_account_planted_in_the_current_directory_is_refused(
        project: Path) -> None:
    path, marker = planted(project, owner=NOBODY.pw_uid)
    proc = drdeck("run", "health-check", "--headless", state_dir=project / "state",
                  cwd=project)
    refused(proc, path, "it is owned by nobody")
    assert not marker.exists(), "the planted step ran"
    listed = drdeck("runbooks", state_dir=project / "state", cwd=project)
    # the name column is as wide as the longest runbook's name
    assert re.search(rf"^health-check +INVALID  {re.escape(str(path))}", listed.stdout,
                     re.MULTILINE), listed.stdout
    checked = drdeck("validate", str(path), state_dir=project / "state", cwd=project)
    refused(checked, path, "it is owned by nobody")


@pytest.mark.parametrize("mode, group, why", [
    (0o666, "root", "anyone can write it (mode 0666)"),
    (0o664, "ssl-cert", "group ssl-cert can write it (mode 0664), and postgres are in it"),
])
def test_a_runbook_others_can_write_is_refused(project: Path, mode: int, group: str,
                                               why: str) -> None:
    import grp

    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        pytest.skip(f"no group {group} here")
    if group == "ssl-cert" and "postgres" not in grp.getgrgid(gid).gr_mem:
        pytest.skip("postgres is not in ssl-cert here")
    path, marker = planted(project, mode=mode)
    os.chown(path, -1, gid)
    proc = drdeck("run", "health-check", "--headless", state_dir=project / "state",
                  cwd=project)
    refused(proc, path, why)
    assert not marker.exists()


def test_a_runbook_of_ones_own_is_run_even_group_writable_by_a_private_group(
        project: Path) -> None:
    _, marker = planted(project, mode=0o664)  # root:root, and the root group is root's
    proc = drdeck("run", "health-check", "--headless", state_dir=project / "state",
                  cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert marker.read_text().strip() == "root"


def test_a_link_another_account_planted_is_refused(project: Path) -> None:
    target, marker = planted(project)
    target.rename(project / "real.toml")
    link = project / "runbooks" / "health-check.toml"
    link.symlink_to(project / "real.toml")
    os.chown(link, NOBODY.pw_uid, -1, follow_symlinks=False)
    proc = drdeck("run", "health-check", "--headless", state_dir=project / "state",
                  cwd=project)
    refused(proc, link, "the link to it is owned by nobody")
    assert not marker.exists()


def test_a_configuration_file_another_account_owns_is_refused(project: Path) -> None:
    config = project / "drdeck.toml"
    config.write_text('[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\n')
    os.chown(config, NOBODY.pw_uid, -1)
    for args in (["status"], ["inventory"], ["--config", str(config), "status"]):
        proc = drdeck(*args, state_dir=project / "state", cwd=project)
        refused(proc, config, "it is owned by nobody")
        assert "drdeck reads a configuration file only when root owns it" in proc.stderr


def test_a_fifo_in_place_of_a_file_is_refused_not_waited_on(project: Path) -> None:
    runbook = project / "runbooks" / "health-check.toml"
    os.mkfifo(runbook)
    proc = drdeck("validate", str(runbook), state_dir=project / "state", cwd=project,
                  timeout=20)
    refused(proc, runbook, "it is not a regular file")
    config = project / "drdeck.toml"
    os.mkfifo(config)
    proc = drdeck("--config", str(config), "status", state_dir=project / "state", cwd=project,
                  timeout=20)
    assert proc.returncode == 2
    assert proc.stderr == f"drdeck: --config {config}: not a regular file (a drdeck.toml is one)\n"


def test_another_account_trusts_its_own_files_and_roots_not_a_third_accounts(
        project: Path) -> None:
    """As postgres: a runbook root owns is read, one nobody owns is not."""
    path, marker = planted(project)
    project.chmod(0o777)  # the marker is written there, by postgres
    ours = path.read_text()
    theirs = project / "theirs.toml"
    theirs.write_text(ours)
    os.chown(theirs, NOBODY.pw_uid, -1)

    def as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
        state = project / "state-postgres"
        return subprocess.run(["runuser", "-u", "postgres", "--", sys.executable, "-m", "tui",
                               *args], capture_output=True, text=True, timeout=60, cwd=REPO,
                              env=drdeck_env(state), stdin=subprocess.DEVNULL)

    ran = as_postgres("run", str(path), "--headless")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert marker.read_text().strip() == "postgres"
    proc = as_postgres("validate", str(theirs))
    assert proc.returncode == 2
    assert (f"{theirs}:1:1: refused: it is owned by nobody. drdeck reads a runbook only when "
            "postgres or root owns it") in proc.stderr, proc.stderr
