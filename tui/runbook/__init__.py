"""Runbooks: the TOML step lists drdeck walks an operator through."""

from tui.runbook.model import Check, Expect, Param, Runbook, Step

__all__ = ["Check", "Expect", "Param", "Runbook", "Step"]
