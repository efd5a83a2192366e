"""What the administrator pages share: reading the server and its plan, saving a spec
change with its refusals mapped to fields, and the fixed messages shown after a save."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from .. import forms
from ..customer import ConflictError, InvalidError
from ..web import Context
from .overview import plan_of

JSON = dict[str, Any]
Mutate = Callable[[JSON], None]


@dataclass
class Server:
    """The server as read for one request: its object, spec, status, generation, plan."""

    obj: JSON
    plan: JSON

    @property
    def spec(self) -> JSON:
        return self.obj.get("spec") or {}

    @property
    def status(self) -> JSON:
        return self.obj.get("status") or {}

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation") or 0)


async def load(ctx: Context) -> Server:
    obj = await ctx.run(ctx.customer.get)
    plan = await ctx.run(plan_of, ctx.panel, obj)
    return Server(obj, plan)


def generation_of(ctx: Context) -> int:
    """The generation the form was made from (0, never a server's: a conflict, if absent)."""
    try:
        return int(ctx.form.get("generation"))
    except ValueError:
        return 0


async def save(
    ctx: Context,
    mutate: Mutate,
    fields: dict[str, str],
    default: str,
) -> int | None:
    """Store `mutate`'s change as of the form's generation: None when stored, else the
    HTTP status to show the form again with (409: stale, its message next to `default`;
    422: refused, each reason next to its field)."""
    try:
        await ctx.run(ctx.customer.change, generation_of(ctx), mutate)
    except ConflictError as e:
        ctx.form.error(default, str(e))
        return 409
    except InvalidError as e:
        forms.apply_causes(ctx.form, str(e), e.causes, fields, default)
        return 422
    return None


def notice(ctx: Context, messages: dict[str, str]) -> str:
    """The message for `?done=<key>` after a save: fixed texts only, never the query's."""
    return messages.get(ctx.request.query_params.get("done", ""), "")


def not_found(ctx: Context, what: str) -> Response:
    return ctx.render(
        "message.html", "Not found", 404, text=f"This server has no {what} of that name."
    )
