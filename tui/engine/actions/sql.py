"""`sql`: run a query with bound parameters; rows feed checks, capture and the output pane."""

from __future__ import annotations

from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.context import StepContext
from tui.engine.expect import Observed
from tui.postgres.query import run_query
from tui.runbook.templating import to_text


class Sql(Action):
    produces_output = True
    name = "sql"
    summary = "Run an SQL query"
    args = {
        "dsn": Arg("text", required=True, help="connection string"),
        "query": Arg("sql", help="the query; ${...} values are bound parameters"),
        "operator_query": Arg("text", help="SQL the operator wrote (a parameter), run as it "
                              "is: for checks a person types in, never for untrusted input"),
        "params": Arg("sql_params", help="named parameters for %(name)s placeholders"),
    }

    def describe(self, args: dict[str, Any]) -> str:
        query = args.get("query")
        return query.display if query is not None else args.get("operator_query", "")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        query = args.get("query") or args.get("operator_query")
        result = await run_query(args["dsn"], query, on_notice=ctx.output)
        for line in result.table_lines():
            ctx.output(line)
        first = result.first
        return ActionResult(
            observed=Observed(value=first, rows=len(result.rows)),
            output=None if first is None else to_text(first),
        )
