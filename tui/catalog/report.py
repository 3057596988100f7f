"""The inventory as a report: the `--json` contract and the rows the CLI and the app show.

The JSON shape is documented in docs/inventory-json.md and versioned by
`format`; fields are added, never renamed or removed, within a format.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tui.catalog.inventory import ClusterInventory, Snapshot
from tui.catalog.retention import Policy, plan, reason_class
from tui.catalog.signatures import signing_for
from tui.config import ClusterConfig
from tui.sources import SourceReport, source_classes, sources_for
from tui.sources.archive import ArchiveSource, picture_dict

FORMAT = 1


def load_inventories(config: Any, names: list[str] | None = None,
                     now: datetime | None = None) -> tuple[list[ClusterInventory], datetime]:
    """Every named cluster's inventory (default: all), read in parallel: each is a listing."""
    from concurrent.futures import ThreadPoolExecutor

    from tui.catalog.inventory import now_utc, read_cluster
    from tui.storage import open_store

    now = now or now_utc()
    clusters = [config.cluster(name) for name in (names or list(config.clusters))]

    def read(cluster: ClusterConfig) -> ClusterInventory:
        sources = sources_for(config, cluster)
        if cluster.repository is None and sources:
            # a cluster backed up only by other engines (tui.sources) is complete
            inventory = ClusterInventory(cluster.name, "-", cluster.rpo, engines_only=True)
        else:
            try:
                store = open_store(config.repository_for(cluster))
            except Exception as exc:  # a misconfigured repository is shown, not fatal
                inventory = ClusterInventory(cluster.name, cluster.repository or "-",
                                             cluster.rpo, error=str(exc))
            else:
                inventory = read_cluster(store, cluster.name, cluster.rpo,
                                         signing_for(config, cluster))
                # an endpoint that did not answer will not for the rest either: asking
                # again would only make the operator wait for every timeout (a 403 on one
                # prefix may not be one on the others: those are still asked)
                if not inventory.unreachable:
                    retention_classes(inventory, cluster, now)
                    inventory.pitr = read_pitr(store, cluster.name, config)
        inventory.sources = [SourceReport(source, source.report()) for source in sources]
        return inventory

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(read, clusters)), now


def read_pitr(store: Any, cluster: str, config: Any) -> Any:
    """The recovery picture when the repository holds base backups or WAL; else None."""
    configured = config.clusters.get(cluster)
    trust = () if configured is None else (signing_for(config, configured),
                                           bool(configured.gpg_recipients))
    gpg_home = str(config.gpg_home) if config.gpg_home else None
    return ArchiveSource(store, cluster, gpg_home, *trust).picture_or_none()


def retention_classes(inventory: ClusterInventory, cluster: ClusterConfig,
                      now: datetime) -> None:
    """Mark each complete snapshot with the retention classes that keep it, or "expires"."""
    retention = cluster.retention
    policy = Policy(retention.daily, retention.weekly, retention.monthly,
                    retention.monthly_storage_class)
    for database in {s.database for s in inventory.snapshots}:
        for decision in plan(inventory.complete(database), policy,
                             taken_at=lambda s: s.taken_at, now=now):
            classes = dict.fromkeys(reason_class(r) for r in decision.reasons)
            decision.snapshot.retention = "+".join(classes) if decision.keep else "expires"


def snapshot_json(snapshot: Snapshot, now: datetime) -> dict[str, Any]:
    manifest = snapshot.manifest
    verified = snapshot.last_verification
    return {
        "id": snapshot.stamp,
        "database": snapshot.database,
        "taken_at": snapshot.taken_at.isoformat(),
        "age_s": round(snapshot.age_s(now), 1),
        "complete": snapshot.complete,
        "problem": snapshot.problem,
        "encrypted": snapshot.encrypted,
        "object": snapshot.dump.key if snapshot.dump else None,
        "stored_size": manifest.stored_size if manifest else (
            snapshot.dump.size if snapshot.dump else None),
        "plaintext_size": manifest.plaintext_size if manifest else None,
        "sha256": manifest.sha256_stored if manifest else None,
        "server_version": manifest.server_version if manifest else None,
        "dump_seconds": round(manifest.dump_seconds, 3) if manifest else None,
        "tables": len(manifest.tables) if manifest else None,
        "rows": manifest.total_rows if manifest else None,
        "storage_class": getattr(snapshot.dump, "storage_class", None),
        "retention": snapshot.retention,
        "globals": snapshot.globals_state,
        "roles": list(manifest.roles) if manifest and manifest.roles is not None else None,
        "verified": None if verified is None else {
            "at": verified.at, "how": verified.how, "ok": verified.ok,
            "detail": verified.detail, "by": verified.by,
        },
        "refused_verifications": snapshot.refused_verifications,
    }


def pitr_json(picture: Any) -> dict[str, Any] | None:
    """The point-in-time side: base backups, WAL per timeline, windows, gaps."""
    return None if picture is None else picture_dict(picture)


def cluster_json(inventory: ClusterInventory, now: datetime) -> dict[str, Any]:
    state, age = inventory.rpo_state(now)
    return {
        "name": inventory.name,
        "repository": inventory.repository,
        "error": inventory.error,
        "rpo_s": inventory.rpo_s,
        "rpo_state": state,
        "latest_age_s": None if age is None else round(age, 1),
        "snapshots": [snapshot_json(s, now) for s in inventory.snapshots],
        "incomplete_uploads": [
            {"key": u.key, "started": u.started.isoformat() if u.started else None,
             "detail": u.detail}
            for u in inventory.incomplete_uploads
        ],
        "pitr": pitr_json(getattr(inventory, "pitr", None)),
        # each engine under its own key, null when the cluster does not use it
        **{kind: None for kind in source_classes()},
        **{report.kind: report.data for report in inventory.sources},
    }


def inventory_json(inventories: list[ClusterInventory], now: datetime) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "generated_at": now.isoformat(),
        "clusters": [cluster_json(i, now) for i in inventories],
    }
