"""A step's `when` / `confirm_when` in plain words, for the briefing a person reads.

The engine decides with the rendered value (empty, false, 0, no, off are false; `not`
inverts); this says the same thing about the parameters, before any value exists.
"""

from __future__ import annotations

from collections.abc import Mapping

from tui.runbook.model import Param
from tui.runbook.templating import Ref, TemplateError, parse


def in_words(condition: str, params: Mapping[str, Param]) -> str:
    """`${replace}` -> "replace is on"; `not ${target_db}` -> "target_db is empty"."""
    text = condition.strip()
    negate = text.startswith("not ")
    body = text[4:].strip() if negate else text
    try:
        pieces = parse(body)
    except TemplateError:
        return text
    if len(pieces) == 1 and isinstance(pieces[0], Ref) and pieces[0].filter is None:
        return _one_value(pieces[0].name, params, negate)
    words = "".join(p.name if isinstance(p, Ref) else p for p in pieces)
    return f"not {words}" if negate else words


def _one_value(name: str, params: Mapping[str, Param], negate: bool) -> str:
    param = params.get(name)
    if param is not None and param.type == "bool":
        return f"{name} is {'off' if negate else 'on'}"
    if name.startswith("steps.") and name.endswith(".output"):
        step = name.removeprefix("steps.").removesuffix(".output")
        return f"step {step} gave {'no output' if negate else 'an output'}"
    return f"{name} is {'empty' if negate else 'set'}"
