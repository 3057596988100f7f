"""barman-cloud (from .tools/barman, built by `make tools`) writing into moto's S3.

The cluster's archive_command runs barman-cloud-wal-archive, and barman-cloud-backup
runs as the postgres OS user, as both do on a database host. The server passes no
environment of ours to archive_command, so the AWS settings are on its command line
(moto's dummy credentials: nothing secret).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.postgres.cluster import server_account

from harness.s3 import S3Endpoint

BARMAN_BIN = Path(__file__).resolve().parent.parent / ".tools" / "barman" / "bin"
BARMAN_CLOUD_BACKUP = BARMAN_BIN / "barman-cloud-backup"
BARMAN_CLOUD_WAL_ARCHIVE = BARMAN_BIN / "barman-cloud-wal-archive"


def missing_reason() -> str | None:
    """Why the barman-cloud tests cannot run here, or None."""
    if not BARMAN_CLOUD_BACKUP.exists():
        return f"{BARMAN_CLOUD_BACKUP} is missing: `make tools` installs barman-cloud"
    return None


@dataclass
class BarmanCloud:
    """One Barman server's place in a bucket: s3://<bucket>/<path>/<server_name>/."""

    endpoint: S3Endpoint
    bucket: str
    path: str = "cnpg"
    server_name: str = "pg"

    @property
    def destination(self) -> str:
        return f"s3://{self.bucket}/{self.path}"

    @property
    def prefix(self) -> str:
        """The server's keys in the bucket start with this."""
        return f"{self.path}/{self.server_name}/"

    def archive_command(self, compression: str = "--gzip") -> str:
        settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.endpoint.env().items())
        return (f"env {settings} {BARMAN_CLOUD_WAL_ARCHIVE} --endpoint-url {self.endpoint.url} "
                f"{compression} {self.destination} {self.server_name} %p")

    def start_archiving(self, cluster: Any) -> None:
        """Point a running cluster's archive_command at the store (a reload is enough)."""
        command = self.archive_command().replace("'", "''")
        cluster.execute(f"alter system set archive_command = '{command}'")
        cluster.execute("select pg_reload_conf()")

    def backup(self, cluster: Any, *options: str) -> str:
        """Run barman-cloud-backup against the cluster; the new backup's id."""
        before = self.backup_ids()
        self._run(BARMAN_CLOUD_BACKUP, "--endpoint-url", self.endpoint.url,
                  "-h", str(cluster.socket_dir), "-p", str(cluster.port),
                  "--immediate-checkpoint", *options, self.destination, self.server_name)
        (new,) = set(self.backup_ids()) - set(before)
        return new

    def backup_ids(self) -> list[str]:
        client = self.endpoint.client()
        answer = client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}base/",
                                        Delimiter="/")
        return sorted(p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                      for p in answer.get("CommonPrefixes", []))

    def object_keys(self) -> list[str]:
        client = self.endpoint.client()
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                     Prefix=self.prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def wal_key(self, name: str, suffix: str = ".gz") -> str:
        return f"{self.prefix}wals/{name[:16]}/{name}{suffix}"

    def read(self, key: str) -> bytes:
        return self.endpoint.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def copy_as(self, server_name: str, leave_out: tuple[str, ...] = ()) -> BarmanCloud:
        """The same objects under another server name (server-side copies), less some:
        a store a test may break without touching this one."""
        other = BarmanCloud(self.endpoint, self.bucket, self.path, server_name)
        client = self.endpoint.client()
        for key in self.object_keys():
            if key not in leave_out:
                client.copy_object(Bucket=self.bucket, Key=other.prefix + key[len(self.prefix):],
                                   CopySource={"Bucket": self.bucket, "Key": key})
        return other

    def put(self, key: str, body: bytes) -> None:
        self.endpoint.client().put_object(Bucket=self.bucket, Key=key, Body=body)

    def _run(self, program: Path, *args: str) -> subprocess.CompletedProcess[str]:
        account = server_account()
        run_as: dict[str, Any] = {}
        if account is not None:
            run_as = {"user": account.uid, "group": account.gid,
                      "extra_groups": account.groups}
        result = subprocess.run([str(program), *args], capture_output=True, text=True,
                                cwd="/", env=self.endpoint.environ(), check=False, **run_as)
        if result.returncode != 0:
            raise AssertionError(f"{program.name} {' '.join(args)} failed "
                                 f"({result.returncode}):\n{result.stdout[-2000:]}\n"
                                 f"{result.stderr[-2000:]}")
        return result
