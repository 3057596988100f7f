"""From the names a runbook gives (cluster, database, snapshot) to the things they mean."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tui.catalog.inventory import (
    ClusterInventory,
    Snapshot,
    SnapshotNotFound,
    read_cluster,
    read_snapshot,
)
from tui.catalog.layout import is_stamp
from tui.catalog.signatures import Signing, signing_for
from tui.config import ClusterConfig, Config
from tui.errors import InvalidInput
from tui.postgres.dsn import with_database


@dataclass(frozen=True)
class Target:
    config: Config
    cluster: ClusterConfig
    database: str
    store: Any

    @property
    def gpg_home(self) -> str | None:
        return str(self.config.gpg_home) if self.config.gpg_home else None

    @property
    def signing(self) -> Signing:
        return signing_for(self.config, self.cluster)

    def server_dsn(self) -> str:
        """The cluster's server (its configured DSN, whichever database that names)."""
        return self.cluster.resolve_dsn()

    def database_dsn(self) -> str:
        return with_database(self.server_dsn(), self.database)

    async def inventory(self) -> ClusterInventory:
        return await asyncio.to_thread(self.read_inventory)

    def read_inventory(self) -> ClusterInventory:
        """`inventory()`, blocking."""
        return read_cluster(self.store, self.cluster.name, self.cluster.rpo, self.signing)

    async def snapshot(self, ref: str = "latest") -> Snapshot:
        """A complete snapshot to fetch, verify or restore; refused (SnapshotNotFound) when
        it is stored unencrypted and the cluster encrypts its snapshots."""
        return await asyncio.to_thread(self.find_snapshot, ref)

    def find_snapshot(self, ref: str = "latest") -> Snapshot:
        """`snapshot()`, blocking."""
        inventory = None
        if is_stamp(ref or ""):
            # a known id: its manifest and dump, not the whole listing (round trips on S3)
            snapshot = read_snapshot(self.store, self.cluster.name, self.database, ref,
                                     self.signing)
        else:
            inventory = self.read_inventory()
            if inventory.error:
                raise InvalidInput(f"cannot read the repository: {inventory.error}")
            snapshot = inventory.find(self.database, ref or "latest")
        if self.cluster.gpg_recipients and not snapshot.encrypted:
            raise SnapshotNotFound(self._unencrypted(snapshot, inventory))
        return snapshot

    def _unencrypted(self, snapshot: Snapshot, inventory: ClusterInventory | None) -> str:
        # drdeck stores this cluster's snapshots encrypted: an unencrypted one is what a
        # repository writer without the cluster's keys could put there
        others = [s.stamp for s in inventory.complete(self.database) if s.encrypted] \
            if inventory is not None else []
        instead = (f"restore an encrypted one (-p snapshot={others[0]}; drdeck inventory "
                   "lists them)" if others else "restore an encrypted one (drdeck inventory "
                   "lists them)")
        return (f"snapshot {snapshot.stamp} of {self.database} is stored unencrypted, but "
                f"cluster {self.cluster.name!r} encrypts its snapshots (gpg_recipients): "
                "anyone who can write the repository could have put it there, so drdeck does "
                f"not use it. {instead[0].upper()}{instead[1:]}; if it was taken unencrypted "
                "on purpose (encrypt = false), restore it by hand (docs/restore-by-hand.md)")


_stores: dict[Any, Any] = {}


def store_for(repository: Any) -> Any:
    """One store (and S3 client) per repository for the whole run, not one per step."""
    from tui.storage import open_store

    if repository not in _stores:
        _stores[repository] = open_store(repository)
    return _stores[repository]


def resolve(config: Config, cluster: str = "", database: str = "") -> Target:
    chosen = config.cluster(cluster or None)
    if not database:
        if not chosen.databases:
            raise InvalidInput(f"cluster {chosen.name!r} lists no databases: add "
                               f"databases = [...] to it, or pass -p database=NAME")
        database = chosen.databases[0]
    return Target(config, chosen, database, store_for(config.repository_for(chosen)))
