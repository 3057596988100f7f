"""What drdeck's children find in their environment: the base set and what their job needs,
never drdeck's secrets.

drdeck runs with DRDECK_GPG_PASSPHRASE, DRDECK_SECRET_<NAME> and the AWS credentials in its
environment. A restored server runs whatever its data brings (`COPY ... FROM PROGRAM 'env'`
by any superuser of the restored database), and the postgres OS account can read the
postmaster's /proc/PID/environ: neither may show them. A runbook's shell step gets the
documented base set and what the runbook gives it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.postgres.cluster import free_port

from cli_support import drdeck, json_events
from pitr_support import (
    archiving_setup,
    give_to_server,
    point_config_at,
    stop_restored,
    wait_archived,
)

pytestmark = pytest.mark.slow


def secret_environment() -> dict[str, str]:
    tag = secrets.token_hex(6)
    return {
        "DRDECK_GPG_PASSPHRASE": f"gpg-passphrase-{tag}",
        "DRDECK_SECRET_TOKEN": f"secret-parameter-{tag}",
        "AWS_ACCESS_KEY_ID": f"AKIA{tag.upper()}",
        "AWS_SECRET_ACCESS_KEY": f"aws-secret-{tag}",
        "NEON_API_KEY": f"neon-key-{tag}",
    }


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A cluster archiving through `drdeck wal push`, with one base backup."""
    from harness.gpg import scratch_gpg_home
    from harness.postgres import scratch_cluster

    state = tmp_path_factory.mktemp("state")
    with scratch_gpg_home() as gpg:
        give_to_server(gpg.path)
        setup = archiving_setup(state, recipients=[gpg.fingerprint], gpg_home=gpg.path)
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=setup.archive_command()) as cluster:
            cluster.execute("create database app")
            cluster.execute("create table notes (n int)", dbname="app")
            point_config_at(setup, cluster)
            wait_archived(cluster)
            backup = setup.deck.run("run", "base-backup", "--headless")
            assert backup.returncode == 0, backup.stdout + backup.stderr
            cluster.execute("insert into notes select generate_series(1, 10)", dbname="app")
            wait_archived(cluster)
            try:
                yield {"setup": setup, "cluster": cluster}
            finally:
                shutil.rmtree(setup.base, ignore_errors=True)


def test_a_restored_postmaster_has_none_of_drdecks_secrets(archived: dict) -> None:
    setup = archived["setup"]
    hidden = secret_environment()
    data_dir = setup.base / f"restored-{free_port()}"
    proc = drdeck("--config", str(setup.config), "run", "pitr-restore", "-p", "target=latest",
                  "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "--yes", "--json",
                  state_dir=setup.deck.state, timeout=240, **hidden)
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        events = json_events(proc.stdout)
        announced = next(e["line"] for e in events if e["event"] == "output"
                         and e["line"].startswith("recovered and promoted"))
        dsn = announced.split("connect with ", 1)[1]

        # what the postgres account reads in /proc, for the postmaster and every child
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                                  text=True).stdout.split()
        seen = [environ_of(postmaster), *(environ_of(int(pid)) for pid in children)]
        assert len(seen) > 1 and "PATH" in seen[0]

        # what SQL on the restored server reads
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("create temporary table seen (line text)")
            conn.execute("copy seen from program 'env'")
            lines = [row[0] for row in conn.execute("select line from seen")]
            assert conn.execute("select count(*) from notes").fetchone() == (10,)
        assert any(line.startswith("PATH=") for line in lines)

        for environ in [*seen, dict(line.split("=", 1) for line in lines if "=" in line)]:
            assert not set(hidden) & set(environ), sorted(environ)
            assert not {key for key in environ if key.startswith(("AWS_", "DRDECK_"))}
            for value in hidden.values():
                assert value not in environ.values()
    finally:
        stop_restored(data_dir)


SHELL_STEP = """
[runbook]
name = "environment"
title = "What a shell step's environment holds"

[[steps]]
id = "env"
title = "Print the environment"
action = "shell"
[steps.with]
command = ["env"]
env = { GIVEN = "${env.FOR_THE_STEP}" }

[[steps.checks]]
name = "a check's command sees no secret either"
command = "env | grep -c -e ^AWS_ -e ^DRDECK_GPG -e ^DRDECK_SECRET -e ^NEON -e ^EDITOR= || true"
expect = { equals = 0 }

[[steps.checks]]
name = "a check's command knows the run"
command = "printenv DRDECK_RUN_ID"
expect = { matches = "^[0-9a-f]{12}$" }
"""


def test_a_shell_step_gets_the_base_set_and_what_the_runbook_gives(tmp_path: Path) -> None:
    runbook = tmp_path / "environment.toml"
    runbook.write_text(SHELL_STEP)
    hidden = secret_environment()
    proc = drdeck("run", str(runbook), "--json", state_dir=tmp_path / "state",
                  FOR_THE_STEP="handed over", EDITOR="not-handed-over",
                  LC_TIME="C.UTF-8", TZ="Europe/Paris", **hidden)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = dict(e["line"].split("=", 1) for e in json_events(proc.stdout)
                   if e["event"] == "output" and "=" in e["line"])
    checks = {e["name"]: e["ok"] for e in json_events(proc.stdout) if e["event"] == "check"}
    assert checks == {"a check's command sees no secret either": True,
                      "a check's command knows the run": True}, proc.stdout
    assert printed["GIVEN"] == "handed over"
    assert printed["PATH"] == os.environ["PATH"]
    assert printed["LC_TIME"] == "C.UTF-8" and printed["TZ"] == "Europe/Paris"
    assert printed["DRDECK_WORKDIR"] and len(printed["DRDECK_RUN_ID"]) == 12
    for name in [*hidden, "EDITOR", "FOR_THE_STEP", "DRDECK_STATE_DIR", "NO_COLOR"]:
        assert name not in printed, name

