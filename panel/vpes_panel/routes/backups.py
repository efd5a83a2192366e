"""Backups (administrators): the server's backups, "back up now", and a restore of
the server's mail to a completed backup, asked for with a warning and the server's
name typed, then followed as it runs. The operator does the work; the panel only
creates the MailBackup or MailRestore, as the customer."""

from __future__ import annotations

import datetime as dt

from starlette.responses import Response
from starlette.routing import Route
from vpes_operator.clients.kube import ApiError

from .. import backups_view as bv
from ..customer import InvalidError
from ..web import Context, Panel, redirect

DONE = {
    "backup": "Your backup is asked for: it appears below and runs within minutes.",
    "restore": "Your restore is asked for: follow it below. Your server is stopped while "
    "its mail is written back.",
}


def routes(panel: Panel) -> list[Route]:
    async def page(ctx: Context, status: int = 200) -> Response:
        backups = bv.backup_rows(await ctx.run(ctx.customer.objects, "MailBackup"))
        restores = bv.restore_rows(await ctx.run(ctx.customer.objects, "MailRestore"))
        return ctx.render(
            "backups.html",
            "Backups",
            status,
            backups=backups,
            restorable=bv.restorable(backups),
            restores=restores,
            restoring=bv.busy(restores),
            server=ctx.session.server,
            done=DONE.get(ctx.request.query_params.get("done", ""), ""),
        )

    async def show(ctx: Context) -> Response:
        return await page(ctx)

    async def back_up(ctx: Context) -> Response:
        body = bv.manual_backup(
            ctx.customer.namespace, ctx.customer.server, dt.datetime.now(dt.UTC)
        )
        return await request(ctx, body, "backup-now", "backup")

    async def restore(ctx: Context) -> Response:
        backups = bv.backup_rows(await ctx.run(ctx.customer.objects, "MailBackup"))
        completed = [r.name for r in bv.restorable(backups)]
        if bv.busy(bv.restore_rows(await ctx.run(ctx.customer.objects, "MailRestore"))):
            ctx.form.error("backup", "A restore is under way: wait until it has ended.")
            return await page(ctx, 409)
        for name, message in bv.check_restore(
            ctx.form.values, ctx.session.server, completed
        ).items():
            ctx.form.error(name, message)
        if not ctx.form.ok:
            return await page(ctx, 422)
        body = bv.restore_request(
            ctx.customer.namespace,
            ctx.customer.server,
            ctx.form.get("backup"),
            dt.datetime.now(dt.UTC),
        )
        return await request(ctx, body, "backup", "restore")

    async def request(ctx: Context, body: bv.JSON, field: str, done: str) -> Response:
        """Create the MailBackup or MailRestore `body`; the API server's refusal next
        to `field`. One already there (the same second's request: a double click) is
        taken as made."""
        try:
            await ctx.run(ctx.customer.create, body)
        except ApiError as e:
            if e.status != 409:
                raise
        except InvalidError as e:
            ctx.form.error(field, str(e))
            return await page(ctx, 422)
        return redirect(f"/backups?done={done}")

    return [
        Route("/backups", panel.page(show, admin=True), methods=["GET"]),
        Route("/backups/now", panel.page(back_up, admin=True), methods=["POST"]),
        Route("/backups/restore", panel.page(restore, admin=True), methods=["POST"]),
    ]
