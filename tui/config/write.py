"""Change one value in drdeck.toml, keeping the operator's comments and layout (tomlkit)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tui.errors import InvalidInput
from tui.tomlfile import Unreadable, parse

from .load import ConfigInvalid, load_config_text

# Tables this deep or deeper are written inline: [clusters.prod] is a table of its own,
# its retention an inline { daily = 30, ... }, as in the documented example.
_INLINE_DEPTH = 3


def set_value(path: str | Path, dotted_key: tuple[str, ...], value: Any, *,
              validate: bool = True) -> None:  # fmt: skip
    """Set `dotted_key` (e.g. ("clusters", "prod", "rpo")) to `value` in the file at `path`.

    Missing tables are created; a missing file is created. `value` None removes the key.
    With `validate` (the default) the edited text must be a valid drdeck.toml, or nothing
    is written and ConfigInvalid says why: this is also what keeps a password out of a
    `dsn`. The file is replaced atomically, through a symbolic link if it is one.
    """

    import tomlkit

    if not dotted_key:
        raise ValueError("set_value needs a key")
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    try:
        source = target.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        source = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from None
    try:
        parse(source, str(path))
    except Unreadable as exc:
        raise ConfigInvalid([exc.problem]) from None
    document = tomlkit.parse(source)

    from tomlkit.items import Table

    inline = len(dotted_key) >= _INLINE_DEPTH
    item = None if value is None else _toml(value, inline, tomlkit)
    created: list[Any] = []  # new [tables]: each gets a blank line after it
    container: Any = document
    for depth, key in enumerate(dotted_key[:-1], 1):
        if key not in container:
            if value is None:
                return  # removing what is not there
            # a table holding only tables is "super": [clusters.prod], without [clusters]
            child_is_table = depth + 1 < len(dotted_key) or isinstance(item, Table)
            super_table = depth + 1 < _INLINE_DEPTH and child_is_table
            table: Any = (
                tomlkit.inline_table() if depth >= _INLINE_DEPTH
                else tomlkit.table(is_super_table=super_table)
            )
            container[key] = table
            if isinstance(table, Table) and not super_table:
                created.append(table)
        container = container[key]
        if not isinstance(container, dict):
            shown = ".".join(dotted_key[:depth])
            raise InvalidInput(f"{path}: {shown} is not a table, cannot set "
                               f"{'.'.join(dotted_key)}")
    last = dotted_key[-1]
    if item is None:
        if last in container:
            del container[last]
    elif last in container or isinstance(item, Table):
        container[last] = item
        if isinstance(item, Table):
            created.append(item)
    elif not _insert_after_last_value(container, last, item):
        container[last] = item
    for table in created:
        table.add(tomlkit.nl())

    text = tomlkit.dumps(document)
    if created and not source.endswith("\n\n"):
        text = text.rstrip("\n") + "\n"  # the blank line after a table that ends the file
    if validate:
        load_config_text(text, str(path), path=path)
    _replace(target, text)


def _toml(value: Any, inline: bool, tomlkit: Any) -> Any:
    """A Python value as a tomlkit item; nested tables inline below the table level."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        table = tomlkit.inline_table() if inline else tomlkit.table()
        for key, item in value.items():
            table[key] = _toml(item, True, tomlkit)
        return table
    if isinstance(value, list | tuple):
        array = tomlkit.array()
        for item in value:
            array.append(_toml(item, True, tomlkit))
        return array
    return value


def _insert_after_last_value(container: Any, key: str, item: Any) -> bool:
    """Put a new key right after the table's last key, above any trailing comment.

    tomlkit appends after the table's trailing blank lines and comments, which usually
    belong to the next table. False when this table has no plain key to follow.
    """
    body = getattr(getattr(container, "value", None), "body", None)
    if body is None:
        return False
    from tomlkit.items import AoT, Table

    plain = [k for k, value in body if k is not None and not isinstance(value, Table | AoT)]
    if not plain:
        return False
    try:
        container.value._insert_after(plain[-1], key, item)
    except Exception:  # a private tomlkit helper: fall back to a plain append
        return False
    return True


def _replace(target: Path, text: str) -> None:
    import tempfile

    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        # an existing file keeps its mode; a new one is private, whatever the umask
        os.chmod(tmp, mode if mode is not None else 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

