"""A step's condition as the briefing says it: plain words, never a raw `${...}`."""

from __future__ import annotations

import pytest

from tui.app.screens.home import runbook_markdown
from tui.runbook.conditions import in_words
from tui.runbook.discovery import SHIPPED_DIR
from tui.runbook.loader import load_runbook
from tui.runbook.model import Param

PARAMS = {"replace": Param("replace", "bool", default=False),
          "target_db": Param("target_db", "string")}


@pytest.mark.parametrize(("condition", "words"), [
    ("${replace}", "replace is on"),
    ("not ${replace}", "replace is off"),
    ("${target_db}", "target_db is set"),
    ("not ${ target_db }", "target_db is empty"),
    ("${steps.check.output}", "step check gave an output"),
    ("${replace}-${target_db}", "replace-target_db"),
])
def test_conditions_in_plain_words(condition: str, words: str) -> None:
    assert in_words(condition, PARAMS) == words


def test_the_briefing_of_a_snapshot_restore_says_when_it_asks() -> None:
    text = runbook_markdown(load_runbook(SHIPPED_DIR / "snapshot-restore.toml"))
    assert "asks to confirm when replace is on" in text
    assert "${" not in text
