"""Judge an observed result against an `expect` table, and say why in one line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tui.runbook.model import MISSING, Expect, shown_value
from tui.runbook.templating import to_text


@dataclass(frozen=True)
class Observed:
    """What a step or a check produced. SQL fills value/rows; a command fills text/exit_code."""

    value: Any = None
    rows: int | None = None
    text: str | None = None
    exit_code: int | None = None

    def shown(self) -> str:
        if self.text is not None and self.value is None:
            first = self.text.strip().splitlines()[:1]
            if first:
                return first[0][:120]
            return f"exit code {self.exit_code}" if self.exit_code is not None else "(no output)"
        return "NULL" if self.value is None else to_text(self.value)[:120]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def _scalar(observed: Observed) -> Any:
    return observed.value if observed.value is not None else (
        observed.text.strip() if observed.text is not None else None
    )


def evaluate(expect: Expect, observed: Observed) -> tuple[bool, str]:
    """(ok, detail). The detail names the observed value and every failed condition."""
    failures: list[str] = []
    scalar = _scalar(observed)
    if expect.exit_code is not None and observed.exit_code != expect.exit_code:
        failures.append(f"exit code {observed.exit_code}, expected {expect.exit_code}")
    if expect.equals is not MISSING and not _equal(scalar, expect.equals):
        failures.append(f"expected {shown_value(expect.equals)}")
    if expect.min is not None or expect.max is not None:
        number = _number(scalar)
        if number is None:
            failures.append("not a number")
        else:
            if expect.min is not None and number < expect.min:
                failures.append(f"below the minimum {shown_value(expect.min)}")
            if expect.max is not None and number > expect.max:
                failures.append(f"above the maximum {shown_value(expect.max)}")
    if expect.rows is not None:
        count = observed.rows
        if count is None and observed.text is not None:
            count = len([ln for ln in observed.text.splitlines() if ln.strip()])
        if count != expect.rows:
            failures.append(f"{count} rows, expected {expect.rows}")
    text = observed.text if observed.text is not None else to_text(scalar)
    if expect.contains is not None and expect.contains not in text:
        failures.append(f"does not contain {expect.contains!r}")
    if expect.matches is not None and not re.search(expect.matches, text, re.MULTILINE):
        failures.append(f"does not match /{expect.matches}/")
    shown = observed.shown()
    if failures:
        return False, f"got {shown}, " + "; ".join(failures)
    # a value that had to equal something says all there is to say
    if expect.describe() and expect.describe() not in (f"= {shown}", shown):
        return True, f"{shown} ({expect.describe()})"
    return True, shown


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return to_text(actual).lower() in (("true", "t") if expected else ("false", "f"))
    if isinstance(expected, int | float):
        number = _number(actual)
        return number is not None and number == float(expected)
    return to_text(actual).strip() == to_text(expected).strip()
