"""Real services for the snapshot benchmarks: a cluster with data, a key, an S3 server.

The throwaway cluster, GnuPG home and S3-protocol server come from the test
harness (`tests/harness`): set-up, not product code. Two things differ from
the tests:

- moto's server runs in a child process of its own. In this process it would
  share the GIL with whatever the benchmark times here (a boto3 download, the
  Python API's fetch) and slow it down, while `drdeck` in a subprocess would
  not pay that; in its own process every subject meets the same server.
- the data: pgbench's schema and init steps, but `pgbench_accounts.filler`
  holds an md5 (32 hex characters) instead of blanks. pgbench's blank filler
  compresses about 35:1 (scale 40 dumps to 11 MB), so a dump of a size worth
  measuring would need a scale too slow to generate and restore here; hex
  compresses about 2:1, closer to real rows, so the dump's bytes (download,
  decrypt, decompress) weigh in the timings as they would in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchError

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

# A throwaway cluster that nothing must survive: no fsync, no full-page images. The rest
# takes away what made one run differ from the next: checkpoints far enough apart that
# none lands inside a timed restore; WAL segments kept and recycled (min_wal_size), and
# new ones not zero-filled, so the first restores do not pay for creating them; no
# autovacuum starting on a freshly restored table in the middle of whichever subject
# comes next. Every subject restores into the same server: they favour none of them.
SERVER_SETTINGS: dict[str, str | int | float | bool] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "4GB",
    "min_wal_size": "2GB",
    "wal_init_zero": "off",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
}
SETTINGS_TEXT = ("fsync, synchronous_commit, full_page_writes, wal_init_zero and autovacuum "
                 "off, min/max_wal_size 2GB/4GB")

ROWS_PER_SCALE = 100_000
CLUSTER = "prod"  # the cluster's name in drdeck.toml


def use_test_harness() -> None:
    """Make `tests/harness` importable (as `harness`), as tests/conftest.py does."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


@contextlib.contextmanager
def scratch_directory(prefix: str = "drdeck-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def bench_cluster() -> Iterator[Any]:
    use_test_harness()
    from harness.postgres import scratch_cluster

    with scratch_cluster(**SERVER_SETTINGS) as cluster:
        yield cluster


@contextlib.contextmanager
def gpg_home() -> Iterator[Any]:
    use_test_harness()
    from harness.gpg import scratch_gpg_home

    with scratch_gpg_home() as home:
        yield home


def seed_pgbench(cluster: Any, database: str, scale: int, *, unlogged: bool = False) -> int:
    """pgbench's tables at `scale` (md5 filler, see the module's doc); returns the row count.

    `pgbench -i -q -I dt` drops and creates the tables, the rows are generated server
    side as pgbench's own `G` step does (in two sessions at once, one per core), then
    `pgbench -i -q -I vp` vacuums and adds the primary keys.
    """
    from tui.postgres.binaries import pg_bin

    cluster.execute(f'create database "{database}"')
    dsn = cluster.dsn(database)
    flags = ["--unlogged-tables"] if unlogged else []
    _pgbench(pg_bin("pgbench"), "-i", "-q", "-n", "-I", "dt", *flags, "-s", str(scale), dsn)
    cluster.execute(
        f"insert into pgbench_branches (bid, bbalance) "
        f"select bid, 0 from generate_series(1, {scale}) bid;"
        f"insert into pgbench_tellers (tid, bid, tbalance) "
        f"select tid, (tid - 1) / 10 + 1, 0 from generate_series(1, {scale * 10}) tid",
        dbname=database)
    accounts = scale * ROWS_PER_SCALE
    halves = [(1, accounts // 2), (accounts // 2 + 1, accounts)]
    errors: list[BaseException] = []

    def insert(first: int, last: int) -> None:
        try:
            cluster.execute(
                "insert into pgbench_accounts (aid, bid, abalance, filler) "
                f"select aid, (aid - 1) / {ROWS_PER_SCALE} + 1, 0, md5(aid::text) "
                f"from generate_series({first}, {last}) aid", dbname=database)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=half) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    _pgbench(pg_bin("pgbench"), "-i", "-q", "-n", "-I", "vp", dsn)
    return accounts + scale * 11


def _pgbench(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            check=False, timeout=300)
    if result.returncode != 0:
        raise BenchError(f"pgbench failed: {result.stderr.strip()[-300:]}")


@contextlib.contextmanager
def moto_server() -> Iterator[Any]:
    """The harness's moto S3 server, run in a child process; yields its S3Endpoint."""
    use_test_harness()
    from harness.s3 import S3Endpoint

    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from harness.s3 import moto_s3_server\n"
        "with moto_s3_server() as endpoint:\n"
        "    print(endpoint.url, flush=True)\n"
        "    sys.stdin.read()\n"  # until the benchmark closes our stdin
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise BenchError(f"the moto server did not start (exit {proc.poll()})")
        yield S3Endpoint(url=url)
    finally:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def s3_bucket(endpoint: Any) -> Iterator[str]:
    bucket = endpoint.create_bucket("drdeck-bench")
    try:
        yield bucket
    finally:
        with contextlib.suppress(Exception):
            endpoint.delete_bucket(bucket)


def s3_repository(endpoint: Any, bucket: str, prefix: str = "pg") -> str:
    return (f'[repositories.backups]\ntype = "s3"\nbucket = "{bucket}"\n'
            f'prefix = "{prefix}"\nendpoint_url = "{endpoint.url}"\n'
            f'region = "{endpoint.region}"')


def local_repository(path: Path) -> str:
    return f'[repositories.backups]\ntype = "local"\npath = "{path}"'


def write_config(path: Path, *, dsn: str, repository: str, gpg_home: Path,
                 recipients: list[str], databases: list[str]) -> Path:
    quoted = ", ".join(f'"{name}"' for name in databases)
    recipients_toml = ", ".join(f'"{r}"' for r in recipients)
    path.write_text(f"""# written by the benchmark
{repository}

[gpg]
home = "{gpg_home}"

[clusters.{CLUSTER}]
dsn = "{dsn}"
repository = "backups"
databases = [{quoted}]
gpg_recipients = [{recipients_toml}]
rpo = "1h"
rto = "4h"
""", encoding="utf-8")
    return path


def drdeck_argv() -> list[str]:
    """The console script beside this interpreter, or `python -m tui` when there is none."""
    script = Path(sys.executable).parent / "drdeck"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tui"]


def drdeck_env(state_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without AWS_* (a developer's profile must not leak in), plus extra."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"DRDECK_STATE_DIR": str(state_dir), "NO_COLOR": "1", **(extra or {})})
    return env


@contextlib.contextmanager
def environment_variables(values: dict[str, str]) -> Iterator[None]:
    """Set variables in this process for a while (the Python API reads the AWS chain)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class NullReporter:
    """A step context's reporting half that keeps nothing: what the Python API reports to."""

    lines: int = 0

    def output(self, line: str, stream: str = "stdout") -> None:
        self.lines += 1

    def progress(self, done: float, total: float | None = None, unit: str = "",
                 detail: str = "") -> None:
        pass


def mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"
