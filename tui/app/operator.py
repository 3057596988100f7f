"""The app's Operator: every question the engine asks becomes a screen, answered by a person."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.message import Message
from textual.widget import Widget

from tui.engine.operator import (
    Answer,
    ConfirmRequest,
    FailureDecision,
    FailureRequest,
    ManualRequest,
)


class OperatorRequest(Message):
    """The run waits for the person: show `request` and resolve `answer` with their answer."""

    def __init__(self, kind: str, request: Any, answer: asyncio.Future) -> None:
        super().__init__()
        self.kind = kind
        self.request = request
        self.answer = answer


class OperatorRequestClosed(Message):
    """The question is over (answered, or the run was aborted while it waited)."""


class AppOperator:
    interactive = True

    def __init__(self, target: Widget) -> None:
        self.target = target

    async def confirm(self, request: ConfirmRequest) -> Answer:
        return await self._ask("confirm", request)

    async def manual(self, request: ManualRequest) -> Answer:
        return await self._ask("manual", request)

    async def on_failure(self, request: FailureRequest) -> FailureDecision:
        return await self._ask("failure", request)

    async def _ask(self, kind: str, request: Any) -> Any:
        answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self.target.post_message(OperatorRequest(kind, request, answer))
        try:
            return await answer
        finally:
            self.target.post_message(OperatorRequestClosed())
