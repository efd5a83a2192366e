"""Backups and the plan page against the real API server, as the customer: "back up
now" creates a MailBackup of the server; a restore without the server's name typed,
or from a backup that is not completed, creates nothing; the plan page shows the
plan and every limit; its billing buttons open Stripe's customer portal (stripe-mock)
for the customer billing annotated the server with, and are absent where billing
is not set up or the server is not billed online."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from vpes_billing import naming as billing
from vpes_devcluster.stripe_mock import StripeMock
from vpes_operator import API_VERSION
from vpes_panel.app import build_app

from tests import panel_web

from . import panel_support
from .panel_support import PanelEnv, Tenant

panel_env = panel_support.panel_env

LIMITS = [
    "Mailboxes",
    "Domains",
    "Storage",
    "Quota of each mailbox",
    "Largest message",
    "Recipients per hour",
    "Backups",
    "Backups kept",
    "Webmail",
    "Calendar and contacts",
    "Spam filtering",
    "Own IP address",
]


def objects(env: PanelEnv, t: Tenant, kind: str) -> list[dict[str, Any]]:
    return env.admin.list(API_VERSION, kind, t.namespace)


def test_back_up_now_creates_a_manual_backup_of_the_server(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    assert "No backups yet" in c.get("/backups").text
    r = panel_web.post(c, "/backups", "/backups/now")
    assert r.status_code == 303 and r.headers["location"] == "/backups?done=backup"
    made = objects(panel_env, t, "MailBackup")
    assert len(made) == 1
    spec = made[0]["spec"]
    assert spec == {"server": t.server, "method": "Restic", "trigger": "Manual"}
    name = str(made[0]["metadata"]["name"])
    assert name.startswith(f"{t.server}-manual-")
    page = c.get(r.headers["location"]).text
    assert name in page and "Your backup is asked for" in page


def completed_backup(env: PanelEnv, t: Tenant, name: str) -> None:
    """A MailBackup as the operator leaves a good one (this cluster has no S3)."""
    env.admin.create(
        {
            "apiVersion": API_VERSION,
            "kind": "MailBackup",
            "metadata": {"name": name, "namespace": t.namespace},
            "spec": {"server": t.server, "trigger": "Schedule"},
        }
    )
    env.admin.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{t.namespace}/mailbackups/{name}/status",
        body={
            "status": {
                "phase": "Completed",
                "snapshotId": "0123abcd",
                "completedAt": "2026-12-05T03:18:09Z",
                "totalBytes": 1 << 20,
            }
        },
        content_type="application/merge-patch+json",
    )


def test_a_restore_needs_the_servers_name_typed_and_a_completed_backup(
    panel_env: PanelEnv,
) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    assert "none yet" in c.get("/backups").text  # no form without a completed backup
    assert panel_web.post(c, "/backups", "/backups/now").status_code == 303
    pending = str(objects(panel_env, t, "MailBackup")[0]["metadata"]["name"])
    good = f"{t.server}-nightly"
    completed_backup(panel_env, t, good)
    page = c.get("/backups").text
    assert "Mail received since then" in page and f'<option value="{good}"' in page
    assert f'<option value="{pending}"' not in page
    for confirm in ("", "yes", "other", f"{t.server}x"):
        r = panel_web.post(c, "/backups", "/backups/restore", backup=good, confirm=confirm)
        assert r.status_code == 422
        assert panel_web.field_error(r.text, "confirm"), confirm
    # Typed right, but that backup has not completed: still nothing.
    r = panel_web.post(c, "/backups", "/backups/restore", backup=pending, confirm=t.server)
    assert r.status_code == 422
    assert "completed" in (panel_web.field_error(r.text, "backup") or "")
    assert objects(panel_env, t, "MailRestore") == []
    # Both right: the restore is asked for, into this server, and followed on the page.
    r = panel_web.post(c, "/backups", "/backups/restore", backup=good, confirm=t.server)
    assert r.status_code == 303 and r.headers["location"] == "/backups?done=restore"
    made = objects(panel_env, t, "MailRestore")
    assert [m["spec"] for m in made] == [{"backup": good, "target": t.server, "overwrite": True}]
    page = c.get(r.headers["location"]).text
    assert '<table class="stack" id="restores">' in page and f"<td>{good}</td>" in page


def test_a_mailbox_user_can_neither_back_up_nor_restore(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    owner_page = panel_env.login(t.owner, t.passwords[t.owner]).get("/backups").text
    token = panel_web.token(c.get("/account").text)
    for action in ("/backups/now", "/backups/restore"):
        r = c.post(action, data={"csrf": token, "backup": "x", "confirm": t.server})
        assert r.status_code == 403
    assert "Back up now" in owner_page
    assert objects(panel_env, t, "MailBackup") == []


def test_the_plan_page_shows_the_plan_and_every_limit(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    page = c.get("/plan").text
    assert '<strong id="plan-name">Panel test</strong>' in page
    for name in LIMITS:
        assert f"<td>{name}" in page, name
    # No Stripe key in this panel's settings: no buttons, and a sentence why.
    assert "Online billing is not set up here" in page
    assert "/plan/portal" not in page


@dataclasses.dataclass
class Billed:
    url: str
    stripe: StripeMock


@pytest.fixture(scope="module")
def billed_panel(panel_env: PanelEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Billed]:
    """A second panel of the same cluster with Stripe set up (stripe-mock)."""
    stripe = StripeMock(Path(tmp_path_factory.mktemp("panel-stripe")))
    stripe.start()
    port = panel_web.free_port()
    settings = dataclasses.replace(
        panel_env.settings,
        public_url=f"http://127.0.0.1:{port}",
        stripe_api_key="sk_test_panel",
        stripe_api_base=stripe.url,
    )
    served = panel_web.Served(build_app(settings, panel_env.sa), port)
    served.start()
    try:
        yield Billed(served.url, stripe)
    finally:
        served.stop()
        stripe.stop()


def test_the_billing_buttons_open_stripes_customer_portal(
    panel_env: PanelEnv, billed_panel: Billed
) -> None:
    t = panel_env.customer()
    c = panel_web.login(billed_panel.url, t.owner, t.passwords[t.owner])
    page = c.get("/plan").text
    assert "not billed online" in page and "/plan/portal" not in page
    # What billing writes on a server it provisioned:
    panel_env.admin.patch_metadata(
        API_VERSION,
        "PersonalMailServer",
        t.namespace,
        t.server,
        {
            "annotations": {
                billing.ANNOTATION_CUSTOMER: "cus_Panel1",
                billing.ANNOTATION_SUBSCRIPTION: "sub_Panel1",
            }
        },
    )
    page = c.get("/plan").text
    assert "Manage payment and invoices" in page and "Change plan" in page
    # stripe-mock answers with its fixture's session URL (a real Stripe: the session's).
    fixture = billed_panel.stripe.fixtures["resources"]["billing_portal.session"]["url"]
    expected = quote(fixture, safe=":/%#?=@[]!$&'()*+,;")
    for purpose in ("billing", "plan"):
        r = panel_web.post(c, "/plan", "/plan/portal", purpose=purpose)
        assert r.status_code == 303, r.text[:300]
        assert r.headers["location"] == expected
    # A purpose the page does not offer goes nowhere.
    r = panel_web.post(c, "/plan", "/plan/portal", purpose="cus_Other")
    assert r.status_code == 303 and r.headers["location"] == "/plan"
    # Suspended for a failed payment: the page says so and what to do, beside the button.
    panel_env.admin.patch_metadata(
        API_VERSION,
        "PersonalMailServer",
        t.namespace,
        t.server,
        {"annotations": {billing.ANNOTATION_SUSPENDED_BY: "payment"}},
    )
    panel_env.admin.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{t.namespace}/personalmailservers/{t.server}",
        body={"spec": {"suspended": True}},
        content_type="application/merge-patch+json",
    )
    page = c.get("/plan").text
    assert 'id="suspended"' in page and "Pay the open invoice" in page
    assert "Manage payment and invoices" in page
