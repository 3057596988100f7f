"""The validated, immutable shape of drdeck.toml. The loader builds it; commands read it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tui.errors import InvalidInput

REPOSITORY_TYPES = ("s3", "local")


@dataclass(frozen=True)
class Repository:
    """Where a cluster's backups live: an S3(-compatible) bucket or a local directory."""

    name: str
    type: str  # one of REPOSITORY_TYPES
    bucket: str | None = None  # s3
    prefix: str = ""  # s3: without leading or trailing "/"
    endpoint_url: str | None = None  # s3: R2, MinIO, GCS interoperability, a test server
    region: str | None = None  # s3
    storage_class: str | None = None  # s3
    # s3: seconds one request may wait for the endpoint before it is retried; a stalled
    # endpoint must fail over to a retry, not hang an incident
    timeout: float = 30
    path: Path | None = None  # local: absolute, ~ expanded
    # what WAL and base backups are compressed with before they are encrypted, and what
    # pg_dump 16 and later compresses snapshots with: "zstd" or "none"
    compression: str = "zstd"
    compression_level: int = 3  # zstd's own default: most of the saving, little of the time


@dataclass(frozen=True)
class Retention:
    """Grandfather-father-son: how many daily, weekly and monthly snapshots to keep."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 6
    monthly_storage_class: str | None = None  # s3: where monthly keepers may move


@dataclass(frozen=True)
class BaseRetention:
    """Which base backups (and so which WAL) `prune-base-backups` keeps: the newest `full`
    full backups with every incremental built on them, and, with `window`, whatever
    keeps each moment of that many seconds back restorable. A parent a kept backup
    needs is always kept."""

    full: int = 2
    window: float | None = None  # seconds


@dataclass(frozen=True)
class ClusterConfig:
    """One PostgreSQL cluster drdeck backs up and restores."""

    name: str
    dsn: str | None = None  # never holds a password: the loader refuses one
    dsn_env: str | None = None  # the environment variable holding the DSN instead
    repository: str | None = None
    databases: tuple[str, ...] = ()
    gpg_recipients: tuple[str, ...] = ()
    # fingerprints whose signatures on manifests and verification records are trusted;
    # when set, anything in the repository not signed by one of them is refused
    signed_by: tuple[str, ...] = ()
    rpo: float | None = None  # seconds
    rto: float | None = None  # seconds
    retention: Retention = field(default_factory=Retention)
    base_retention: BaseRetention = field(default_factory=BaseRetention)
    # the other engines that back it up (tui.sources), as (kind, ((key, value), ...)):
    # `[clusters.NAME] <kind> = { key = "value" }` is ("<kind>", (("key", "value"),))
    engines: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def engine(self, kind: str) -> dict[str, str] | None:
        """The settings the cluster gives an engine, or None when it does not use it."""
        for name, settings in self.engines:
            if name == kind:
                return dict(settings)
        return None

    @property
    def encrypted(self) -> bool:
        """Whether the cluster's snapshots are encrypted (unless a runbook says otherwise)."""
        return bool(self.gpg_recipients)

    def resolve_dsn(self, environ: Mapping[str, str] | None = None) -> str:
        """The DSN to connect with: `dsn`, or the value of the `dsn_env` variable."""
        if self.dsn is not None:
            return self.dsn
        environ = os.environ if environ is None else environ
        if self.dsn_env is None:
            raise InvalidInput(f"cluster {self.name!r} has neither dsn nor dsn_env")
        value = environ.get(self.dsn_env, "")
        if not value.strip():
            raise InvalidInput(
                f"cluster {self.name!r} reads its DSN from ${self.dsn_env}, which is not set"
            )
        return value


@dataclass(frozen=True)
class Webhook:
    url: str  # empty when url_env names the variable holding it
    events: tuple[str, ...] = ()  # empty: every event
    url_env: str | None = None


@dataclass(frozen=True)
class Notify:
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True)
class Config:
    """Everything drdeck.toml says. An empty Config (path None) when there is no file."""

    path: Path | None = None
    repositories: dict[str, Repository] = field(default_factory=dict)
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    gpg_home: Path | None = None  # None: GnuPG's own default
    runbook_dirs: tuple[Path, ...] = ()
    # a PostgreSQL connection string or a SQLite file's absolute path (the loader resolves
    # sqlite:/// and relative paths: tui.journal.location); None: the state directory's
    journal_url: str | None = None
    notify: Notify = field(default_factory=Notify)
    searched: tuple[Path, ...] = ()  # where drdeck.toml was looked for, when none was found
    # [runbooks.defaults.<runbook>]: parameter values the command line and forms start from
    runbook_defaults: dict[str, dict[str, str]] = field(default_factory=dict)

    def defaults_for(self, runbook: str) -> dict[str, str]:
        return dict(self.runbook_defaults.get(runbook, {}))

    def _where(self) -> str:
        if self.path is not None:
            return f"in {self.path}"
        searched = ", ".join(str(p) for p in self.searched) or "nowhere"
        return f"configured: no drdeck.toml found; searched: {searched}"

    def cluster(self, name: str | None = None) -> ClusterConfig:
        """The named cluster; without a name, the only one configured."""
        if not self.clusters:
            raise InvalidInput(f"no clusters {self._where()}")
        if name is None:
            if len(self.clusters) == 1:
                return next(iter(self.clusters.values()))
            names = ", ".join(self.clusters)
            raise InvalidInput(
                f"several clusters are configured ({names}): "
                "pick one with --cluster NAME or -p cluster=NAME"
            )
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(self.clusters)
            raise InvalidInput(
                f"no cluster named {name!r} {self._where()}; known: {known}"
            ) from None

    def repository_for(self, cluster: ClusterConfig | str) -> Repository:
        """The repository a cluster's backups go to."""
        if isinstance(cluster, str):
            cluster = self.cluster(cluster)
        if cluster.repository is None:
            raise InvalidInput(
                f"cluster {cluster.name!r} has no repository: add repository = \"NAME\" "
                f"to [clusters.{cluster.name}] {self._where()}"
            )
        try:
            return self.repositories[cluster.repository]
        except KeyError:
            known = ", ".join(self.repositories) or "none"
            raise InvalidInput(
                f"cluster {cluster.name!r} names repository {cluster.repository!r}, "
                f"which is not configured; known: {known}"
            ) from None
