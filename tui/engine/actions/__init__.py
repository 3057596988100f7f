"""The action registry: a new action is one module and one line here."""

from __future__ import annotations

from tui.engine.actions.base import Action
from tui.engine.actions.manual import Manual
from tui.engine.actions.milestone import MilestoneAction
from tui.engine.actions.neon import NeonRestoreBranch
from tui.engine.actions.pgbackrest import PgbackrestPreflight, PgbackrestRestore
from tui.engine.actions.pitr import BaseBackupCreate, PitrPreflight, PitrRestore
from tui.engine.actions.restore import PgPublish, PgRestore, RestorePreflight, RestoreRoles
from tui.engine.actions.retention import RetentionPrune
from tui.engine.actions.shell import Shell
from tui.engine.actions.snapshot import (
    SnapshotCompare,
    SnapshotCreate,
    SnapshotFetch,
    SnapshotVerify,
)
from tui.engine.actions.sql import Sql
from tui.engine.actions.wait import Wait

ACTIONS: dict[str, type[Action]] = {
    cls.name: cls
    for cls in (
        Shell, Sql, Wait, Manual, MilestoneAction,
        SnapshotCreate, SnapshotFetch, SnapshotVerify, SnapshotCompare,
        RestorePreflight, RestoreRoles, PgRestore, PgPublish, RetentionPrune,
        BaseBackupCreate, PitrPreflight, PitrRestore,
        NeonRestoreBranch,
        PgbackrestPreflight, PgbackrestRestore,
    )
}


def get_action(name: str) -> type[Action] | None:
    return ACTIONS.get(name)
