"""`drdeck wal push|fetch|prefetch|restore-command`: archive_command and restore_command.

These run once per WAL segment, as the postgres OS user, so they import as
little as they can and say what went wrong on stderr, where PostgreSQL logs it.

Exit codes follow restore_command's contract: 0 restored, 1 not in the
archive (recovery ends there, as it should at the end of the archive), and
126 when the archive cannot be read at all: PostgreSQL treats an exit code
above 125 as fatal and stops recovery, rather than silently promoting at the
wrong point because a bucket was unreachable.
"""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

from tui.child_python import python_module

EXIT_NOT_FOUND = 1
EXIT_ARCHIVE_UNREADABLE = 126


def _target(args: Namespace):
    """(cluster, store, gpg_home, repository) of the command's cluster."""
    from tui.config import load_config
    from tui.storage import open_store

    config = load_config(args.config)
    cluster = config.cluster(args.cluster)
    repository = config.repository_for(cluster)
    store = open_store(repository)
    gpg_home = str(config.gpg_home) if config.gpg_home else None
    return cluster, store, gpg_home, repository


def push_command(args: Namespace) -> int:
    from tui.wal.archive import push

    # read first, with a spool too: a mistake in the configuration is said at once, not
    # after a wait for a pusher that could not start
    cluster, store, gpg_home, repository = _target(args)
    path = Path(args.path)

    def push_here() -> str:
        return push(store, cluster.name, path, recipients=cluster.gpg_recipients,
                    gpg_home=gpg_home, compression=repository.compression,
                    level=repository.compression_level)

    if args.spool:
        from tui.wal.push_ahead import push_through_spool, spawn_pusher

        spool = Path(args.spool).absolute()
        argv = [*python_module("tui"), *(["--config", args.config] if args.config
                                               else []),
                "wal", "push-ahead", "--cluster", cluster.name, "--spool", str(spool),
                str(path.absolute().parent)]
        message = push_through_spool(path, spool, lambda: spawn_pusher(argv), push_here)
    else:
        message = push_here()
    if args.verbose:
        print(message, file=sys.stderr)
    return 0


def push_ahead_command(args: Namespace) -> int:
    from tui.wal.archive import push
    from tui.wal.push_ahead import run_pusher

    cluster, store, gpg_home, repository = _target(args)
    run_pusher(Path(args.wal_dir), Path(args.spool), lambda file: push(
        store, cluster.name, file, recipients=cluster.gpg_recipients, gpg_home=gpg_home,
        compression=repository.compression, level=repository.compression_level))
    return 0


def fetch_command(args: Namespace) -> int:
    """Exit 1 only when the archive answered that it does not have the file: anything
    else (a spool it cannot use, an error of drdeck's own) stops recovery with 126."""
    try:
        return _fetch(args)
    except Exception as exc:  # exit 1 here would end recovery early
        print(f"drdeck wal fetch {args.name}: {exc}", file=sys.stderr)
        return EXIT_ARCHIVE_UNREADABLE


def _fetch(args: Namespace) -> int:
    from tui.errors import DrdeckError
    from tui.wal.archive import fetch
    from tui.wal.prefetch import note_request, start_prefetcher, take_from_spool

    dest = Path(args.dest)
    spool = Path(args.spool) if args.spool else None
    if spool is not None:
        try:
            if take_from_spool(spool, args.name, dest):
                return 0
        except OSError as exc:  # a spool it cannot use is a miss: the archive still has it
            print(f"drdeck wal fetch {args.name}: spool {spool}: {exc.strerror or exc}",
                  file=sys.stderr)
            spool = None
    try:
        cluster, store, gpg_home, _ = _target(args)
        found = fetch(store, cluster.name, args.name, dest, gpg_home,
                      encrypted_first=bool(cluster.gpg_recipients))
    except (DrdeckError, OSError) as exc:
        # anything but "not in the archive" must stop recovery, not end it early
        print(f"drdeck wal fetch {args.name}: {exc}", file=sys.stderr)
        return EXIT_ARCHIVE_UNREADABLE
    if not found:
        return EXIT_NOT_FOUND
    if spool is not None:
        try:  # the file is delivered: prefetching is a help, its failure is not fatal
            note_request(spool, args.name)
            if args.prefetch > 0 and _is_segment(args.name):
                prefix = python_module("tui") + (
                    ["--config", args.config] if args.config else [])
                start_prefetcher(prefix, ["--cluster", cluster.name], spool, args.name,
                                 dest.stat().st_size, args.prefetch)
        except OSError as exc:
            print(f"drdeck wal fetch {args.name}: cannot prefetch into {spool}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
    return 0


def prefetch_command(args: Namespace) -> int:
    from tui.wal.prefetch import run_prefetcher

    cluster, store, gpg_home, _ = _target(args)
    run_prefetcher(store, cluster.name, Path(args.spool), args.after, args.segment_size,
                   args.depth, gpg_home, bool(cluster.gpg_recipients))
    return 0


def _is_segment(name: str) -> bool:
    from tui.wal.names import is_segment

    return is_segment(name)


def restore_command_line(args: Namespace) -> int:
    from tui.commands.init import drdeck_executable
    from tui.config import load_config
    from tui.errors import InvalidInput
    from tui.postgres.cluster import config_value
    from tui.wal import restore_line

    config = load_config(args.config)
    cluster = config.cluster(args.cluster)
    where = config.path.absolute() if config.path else None
    if args.spool:
        if args.prefetch < 1:
            raise InvalidInput("--prefetch must be 1 or more")
        line = restore_line.spooled(drdeck_executable(), where, cluster.name,
                                    Path(args.spool).absolute(), args.prefetch)
    else:
        line = restore_line.direct(drdeck_executable(), where, cluster.name)
    print(f"restore_command = {config_value('restore_command', line)}")
    return 0



def archive_command_line(args: Namespace) -> int:
    from tui.commands.init import drdeck_executable
    from tui.config import load_config
    from tui.postgres.cluster import config_value
    from tui.wal import restore_line

    config = load_config(args.config)
    cluster = config.cluster(args.cluster)
    where = config.path.absolute() if config.path else None
    if args.spool:
        line = restore_line.archive_spooled(drdeck_executable(), where, cluster.name,
                                            Path(args.spool).absolute())
    else:
        argv = [*drdeck_executable(), *(["--config", str(where)] if where else []), "wal",
                "push", "--cluster", cluster.name]
        line = " ".join(restore_line.quoted(word) for word in argv) + ' "%p"'
    print(f"archive_command = {config_value('archive_command', line)}")
    return 0


def catalog_map_command(args: Namespace) -> int:
    """Take the live server's catalog map (tui.catalog.relation_map) into the repository:
    what names the relations of WAL written from now on."""
    import asyncio

    from tui.catalog.relation_map import store_map, take_map

    cluster, store, _, repository = _target(args)
    catalog = asyncio.run(take_map(cluster.resolve_dsn()))
    key = store_map(store, cluster.name, catalog, repository.compression_level)
    print(f"catalog map of {len(catalog.relations)} relations in {len(catalog.databases)} "
          f"databases, taken {catalog.taken_at:%Y-%m-%d %H:%M:%S} UTC: {store.location(key)}")
    return 0
