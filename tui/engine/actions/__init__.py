"""The action registry: a new action is one module and one line here.

A backup engine's actions (its pre-flight and restore) live with the engine in
tui.sources, and come from its Source class's `action_classes()`: the registry is
built on first use, so an engine is loaded only when a runbook asks for an action.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from tui.engine.actions.base import Action
from tui.engine.actions.expect_back import CheckBack
from tui.engine.actions.manual import Manual
from tui.engine.actions.milestone import MilestoneAction
from tui.engine.actions.pitr import (
    BaseBackupCreate,
    CatalogMapTake,
    PitrPreflight,
    PitrRestore,
)
from tui.engine.actions.restore import PgPublish, PgRestore, RestorePreflight, RestoreRoles
from tui.engine.actions.retention import BaseRetentionPrune, RetentionPrune
from tui.engine.actions.shell import Shell
from tui.engine.actions.snapshot import (
    SnapshotCompare,
    SnapshotCreate,
    SnapshotFetch,
    SnapshotVerify,
)
from tui.engine.actions.sql import Sql
from tui.engine.actions.wait import Wait

BUILT_IN: tuple[type[Action], ...] = (
    Shell, Sql, Wait, Manual, MilestoneAction,
    SnapshotCreate, SnapshotFetch, SnapshotVerify, SnapshotCompare,
    RestorePreflight, RestoreRoles, PgRestore, PgPublish, RetentionPrune,
    BaseRetentionPrune, BaseBackupCreate, PitrPreflight, PitrRestore, CheckBack,
    CatalogMapTake,
)


@cache
def all_actions() -> dict[str, type[Action]]:
    """Every action by name: the built-in ones, then each engine's (which cannot
    replace a built-in one)."""
    from tui.sources import source_classes

    found = {cls.name: cls for cls in BUILT_IN}
    for source in source_classes().values():
        for cls in source.action_classes():
            found.setdefault(cls.name, cls)
    return found


def get_action(name: str) -> type[Action] | None:
    return all_actions().get(name)


def __getattr__(name: str) -> Any:
    if name == "ACTIONS":  # the whole registry, built when first asked for
        return all_actions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
