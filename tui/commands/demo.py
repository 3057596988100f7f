"""`drdeck demo`: build a sandbox, open the app on it (or run two drills headless), clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from argparse import Namespace
from datetime import UTC, datetime

from tui.child_python import python_module
from tui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

BANNER = (
    "SANDBOX in {root}: a cluster \"demo\" taking live orders, with encrypted snapshots, "
    "a base backup and WAL archiving. Try: restore the last snapshot (snapshot-restore), "
    "onto the empty disaster-recovery server too (target_dsn = {dr}), or press i, then p, "
    "to restore to a point in time. Quitting removes everything."
)


def demo_command(args: Namespace) -> int:
    from tui.demo.sandbox import Sandbox, new_root

    def say(line: str) -> None:
        print(line, flush=True)

    root = new_root(args.dir)
    sandbox = Sandbox(root, keep=args.keep, say=say)
    # SIGHUP too: a dropped SSH session must not leave a cluster and an agent running
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        say(f"building a sandbox in {root}")
        sandbox.build()
        say(f"sandbox built in {sandbox.built_in_s:.1f}s")
        if args.headless:
            return _drills(sandbox, say)
        return _app(sandbox)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.close()
        say(f"sandbox kept in {root}" if args.keep else "sandbox removed")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _app(sandbox) -> int:
    from tui.app.app import DrdeckApp
    from tui.config import load_config

    os.environ["DRDECK_STATE_DIR"] = str(sandbox.state)
    config = load_config(str(sandbox.config))
    app = DrdeckApp(config=config, runbook_dirs=list(config.runbook_dirs),
                    banner=BANNER.format(root=sandbox.root, dr=_short_dsn(sandbox.dr)))
    app.run()
    return EXIT_INTERRUPTED if app.signalled else EXIT_OK


def _drills(sandbox, say) -> int:
    """A snapshot restore and a PITR drill end to end; 0 only if both succeed."""
    assert sandbox.cluster is not None and sandbox.config is not None
    say("\n== drill 1: restore the newest snapshot into a new database")
    snapshot_ok = _run(sandbox, "run", "snapshot-restore", "--yes", "--headless",
                       "-p", f"incident_time={datetime.now(UTC).isoformat()}")

    say("\n== drill 2: restore the newest snapshot onto the empty disaster-recovery server")
    say(f"   drdeck run snapshot-restore -p target_dsn='{sandbox.dr.dsn()}' "
        "-p target_db=shop --yes")
    new_server_ok = _run(sandbox, "run", "snapshot-restore", "--yes", "--headless",
                         "-p", f"target_dsn={sandbox.dr.dsn()}", "-p", "target_db=shop")
    if new_server_ok:
        orders = _app_logs_in(sandbox)
        say(f"the application role logs in on the disaster-recovery server: "
            f"{'yes, ' + str(orders) + ' orders' if orders is not None else 'NO'}")
        new_server_ok = orders is not None

    say("\n== drill 3: restore to a point in time, one second ago")
    time.sleep(3)  # orders before the target
    target = datetime.now(UTC)
    time.sleep(1.5)  # and after it
    expected = sandbox.cluster.scalar("select count(*) from orders where placed_at <= %s",
                                      (target,), dbname="shop")
    sandbox.cluster.execute("select pg_switch_wal()")
    _wait_archived(sandbox.cluster)
    pitr_ok = _run(sandbox, "run", "pitr-restore", "--yes", "--headless",
                   "-p", f"target={target.isoformat()}")
    if pitr_ok:
        restored = _restored_orders(sandbox)
        say(f"orders committed by the target: {expected}; in the restored server: {restored}")
        pitr_ok = restored == expected

    say("\n== the journal")
    _run(sandbox, "drills")
    ok = snapshot_ok and new_server_ok and pitr_ok
    say(f"\nsandbox drills: snapshot restore {'succeeded' if snapshot_ok else 'FAILED'}, "
        f"restore onto a new server {'succeeded' if new_server_ok else 'FAILED'}, "
        f"point-in-time restore {'succeeded' if pitr_ok else 'FAILED'}")
    return EXIT_OK if ok else EXIT_FAILED


def _run(sandbox, *args: str) -> bool:
    result = subprocess.run([*python_module("tui"), "--config", str(sandbox.config),
                             *args], env=sandbox.env(), stdin=subprocess.DEVNULL, check=False)
    return result.returncode == 0


def _short_dsn(cluster) -> str:
    """What target_dsn needs of a local server: where it is, and a superuser."""
    return f"host={cluster.socket_dir} port={cluster.port} user=postgres"


def _app_logs_in(sandbox) -> int | None:
    """The orders the application role sees on the DR server, logged in with its password."""
    import psycopg

    from tui.demo.sandbox import APP_ROLE, DATABASE

    dsn = sandbox.dr.dsn(DATABASE, user=APP_ROLE, tcp=True)
    try:
        with psycopg.connect(f"{dsn} passfile={sandbox.app_passfile}",
                             connect_timeout=5) as conn:
            return conn.execute("select count(*) from orders").fetchone()[0]
    except psycopg.Error:
        return None


def _wait_archived(cluster, timeout: float = 30) -> None:
    wanted = cluster.scalar("select pg_walfile_name(pg_current_wal_lsn() - 1)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = cluster.scalar("select last_archived_wal from pg_stat_archiver")
        if last is not None and last >= wanted:
            return
        time.sleep(0.2)


def _restored_orders(sandbox) -> int | None:
    import psycopg

    from tui.config import load_config

    config = load_config(str(sandbox.config))
    defaults = config.defaults_for("pitr-restore")
    from tui.postgres.cluster import LocalCluster

    data_dir = defaults["data_dir"]
    probe = LocalCluster(data_dir, int(defaults["port"]), data_dir, f"{data_dir}/x.log")
    try:
        with psycopg.connect(probe.dsn("shop", tcp=True), connect_timeout=5) as conn:
            return conn.execute("select count(*) from orders").fetchone()[0]
    except psycopg.Error:
        return None
