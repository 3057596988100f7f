"""Backup engines behind one protocol (tui.sources.base), and the registry that finds them.

A new engine is one module with a `Source` subclass and one line in BUILT_IN; a
third party ships one as a package of its own, under the `drdeck.sources`
entry-point group (`name = "package.module:SourceClass"`).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from tui.errors import InvalidInput
from tui.sources.base import Line, Source, SourceError, SourceReport

__all__ = ["Line", "Source", "SourceError", "SourceReport", "engine_for", "source_classes",
           "source_for", "sources_for"]

ENTRY_POINT_GROUP = "drdeck.sources"

# kind -> "module:class"; imported only when a cluster is asked about its sources
BUILT_IN = {
    "pgbackrest": "tui.sources.pgbackrest:PgbackrestSource",
    "barman_cloud": "tui.sources.barman_cloud:BarmanCloudSource",
    "barman": "tui.sources.barman:BarmanSource",
    "neon": "tui.sources.neon:NeonSource",
}


def _load(where: str, spec: str) -> type[Source]:
    module_name, _, class_name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"the backup source {spec!r} ({where}) cannot be loaded: "
                           f"{exc}") from None
    if not (isinstance(found, type) and issubclass(found, Source)):
        raise InvalidInput(f"the backup source {spec!r} ({where}) is not a "
                           "tui.sources.base.Source")
    return found


@cache
def source_classes() -> dict[str, type[Source]]:
    """Every engine drdeck knows, by kind: the built-in ones, then installed plugins
    (a plugin cannot replace a built-in engine)."""
    from importlib.metadata import entry_points

    classes = {kind: _load("built in", spec) for kind, spec in BUILT_IN.items()}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in classes:
            classes[point.name] = _load(f"entry point {point.name}", point.value)
    return classes


def engine_for(key: str) -> type[Source] | None:
    """The engine a cluster table's key configures (`pgbackrest = {...}`), if any."""
    return source_classes().get(key)


def sources_for(config: Any, cluster: Any) -> list[Source]:
    """The sources a configured cluster has, in registry order (none is an answer)."""
    found = []
    for source_class in source_classes().values():
        source = source_class.configured(config, cluster)
        if source is not None:
            found.append(source)
    return found


def source_for(config: Any, cluster: Any, kind: str) -> Source | None:
    """The cluster's source of `kind`: an engine's, or drdeck's own archive in the
    cluster's repository (tui.sources.archive, kind "pitr"); None when it has none."""
    from tui.sources.archive import ArchiveSource

    source_class = ArchiveSource if kind == ArchiveSource.kind else engine_for(kind)
    return None if source_class is None else source_class.configured(config, cluster)
