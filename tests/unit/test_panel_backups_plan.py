"""Backups and the plan page, pure: backup and restore rows, the requests the panel
creates (a manual backup; a restore into the same server that may overwrite), the
restore form's typed confirmation, every limit of a plan against the server's use,
backup schedules in words, suspensions explained, the plans on sale and the Stripe
ids read from billing's annotations."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_billing import lifecycle
from vpes_billing import naming as billing
from vpes_operator.models.backup import MailBackupSpec
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.restore import MailRestoreSpec
from vpes_panel import backups_view as bv
from vpes_panel import plan_view as pv
from vpes_panel.routes.plan import stripe_ids

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 6, 7, 20, 40, tzinfo=dt.UTC)


def backup(
    name: str, phase: str | None, trigger: str = "Schedule", **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-12-05T03:17:00Z"},
        "spec": {"server": "mail", "trigger": trigger},
        "status": {"phase": phase, **status} if phase else {},
    }


def test_backup_rows_say_why_when_how_big_and_what_happened() -> None:
    rows = bv.backup_rows(
        [
            backup(
                "b2", "Completed", "Manual", completedAt="2026-12-05T03:18:09Z", totalBytes=3 << 20
            ),
            backup("b1", "Failed", message="the bucket is missing"),
            backup("b0", None),
        ]
    )
    assert rows[0] == bv.Row("b2", "Asked for", "Completed", "2026-12-05 03:18 UTC", "3.0 MiB", "")
    assert rows[1].phase == "Failed" and rows[1].message == "the bucket is missing"
    assert rows[2].phase == "Pending" and rows[2].trigger == "Scheduled"
    assert [r.name for r in bv.restorable(rows)] == ["b2"]


def test_a_restore_under_way_is_seen() -> None:
    def restore(phase: str) -> dict[str, Any]:
        return {"metadata": {"name": "r"}, "spec": {"backup": "b2"}, "status": {"phase": phase}}

    assert bv.busy(bv.restore_rows([restore("Running")]))
    assert bv.busy(bv.restore_rows([{"metadata": {"name": "r"}, "spec": {"backup": "b"}}]))
    assert not bv.busy(bv.restore_rows([restore("Completed"), restore("Failed")]))


def test_the_requests_are_what_the_crds_take() -> None:
    b = bv.manual_backup("ns", "mail", NOW)
    assert b["metadata"] == {"name": "mail-manual-20261206-072040", "namespace": "ns"}
    assert MailBackupSpec.model_validate(b["spec"]).trigger == "Manual"
    r = bv.restore_request("ns", "mail", "mail-manual-20261206-072040", NOW)
    parsed = MailRestoreSpec.model_validate(r["spec"])
    assert (parsed.target, parsed.overwrite) == ("mail", True)
    assert r["metadata"]["name"] == "mail-restore-20261206-072040"


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({"backup": "b2", "confirm": "mail"}, {}),
        ({"backup": "b2", "confirm": " MAIL "}, {}),
        ({"backup": "b2", "confirm": ""}, {"confirm": "Type the server's name, mail"}),
        ({"backup": "b2", "confirm": "yes"}, {"confirm": "Type mail to confirm"}),
        ({"backup": "", "confirm": "mail"}, {"backup": "Choose the backup"}),
        ({"backup": "b1", "confirm": "mail"}, {"backup": "completed backups"}),
        ({}, {"backup": "Choose", "confirm": "Type the server's name"}),
    ],
)
def test_a_restore_needs_a_completed_backup_and_the_servers_name_typed(
    values: dict[str, str], errors: dict[str, str]
) -> None:
    found = bv.check_restore(values, "mail", ["b2"])
    assert set(found) == set(errors)
    for field, start in errors.items():
        assert start in found[field]


PLAN = MailPlanSpec.model_validate(
    {
        "displayName": "Basic",
        "storage": "2Gi",
        "maxDomains": 2,
        "maxMailboxes": 5,
        "outboundPerHour": 100,
        "backup": {"schedule": "30 4 * * 0", "retention": {"daily": 3}},
        "features": {"calendar": True, "antispam": "Strict"},
    }
)


def test_every_limit_of_the_plan_is_shown_against_the_use() -> None:
    spec = {"mailboxes": [{"address": "a@x.org", "quota": "1Gi"}, {"address": "b@x.org"}]}
    status = {
        "usage": {"mailboxes": 2, "domains": 2, "storageUsedBytes": 1825361101},
        "outbound": {"recipients": 85},
    }
    got = {lim.name: lim for lim in pv.limits(PLAN, spec, status)}
    assert got["Mailboxes"] == pv.Limit("Mailboxes", "2", "5", "ok")
    assert got["Domains"].state == "full"
    assert got["Storage"] == pv.Limit("Storage", "1.7 GiB", "2.0 GiB", "near")
    assert got["Quota of each mailbox (unless set for it)"].used == "1 of 2 mailboxes use it"
    assert got["Quota of each mailbox (unless set for it)"].allowed == "512.0 MiB"
    assert got["Largest message, in or out"].allowed == "25.0 MiB"
    assert got["Recipients per hour (sending)"] == pv.Limit(
        "Recipients per hour (sending)", "85 in the last hour", "100", "near"
    )
    assert got["Backups"].allowed == "every Sunday at 04:30 UTC"
    assert got["Backups kept"].allowed == "3 daily, 4 weekly, 6 monthly"
    assert got["Calendar and contacts"].allowed == "included"
    assert got["Webmail"].allowed == "included"
    assert got["Own IP address"].allowed == "not included"
    assert got["Spam filtering"].allowed == "Strict"
    # Every field a customer sees in MailPlanSpec has its row (resources and prices do not).
    assert len(got) == 12


def test_nothing_measured_yet_is_said_so() -> None:
    got = {lim.name: lim for lim in pv.limits(PLAN, {}, {})}
    assert got["Mailboxes"].used == "0"
    assert got["Storage"].used == "not measured yet" and got["Storage"].state == ""
    assert got["Recipients per hour (sending)"].used == "none counted yet"


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("17 3 * * *", "every day at 03:17 UTC"),
        ("0 22 * * 6", "every Saturday at 22:00 UTC"),
        ("*/30 * * * *", "on the schedule “*/30 * * * *” (cron, UTC)"),
    ],
)
def test_backup_schedules_in_words(cron: str, words: str) -> None:
    assert pv.schedule_words(cron) == words


@pytest.mark.parametrize(
    ("by", "says", "portal"),
    [
        (lifecycle.SUSPENDED_FOR_PAYMENT, "Pay the open invoice", True),
        (lifecycle.SUSPENDED_FOR_INCOMPLETE, "Complete it", True),
        (lifecycle.SUSPENDED_FOR_PAUSE, "Resume it", True),
        (lifecycle.SUSPENDED_FOR_CANCELLATION, "contact your provider", False),
        ("", "Contact your provider", False),
    ],
)
def test_a_suspension_says_why_and_what_to_do(by: str, says: str, portal: bool) -> None:
    notes = {billing.ANNOTATION_SUSPENDED_BY: by} if by else {}
    found = pv.suspension({"suspended": True}, notes)
    assert found is not None and says in found.todo and found.portal == portal
    assert pv.suspension({"suspended": False}, notes) is None


def test_the_plans_on_sale_are_those_with_a_price() -> None:
    def plan(name: str, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": spec}

    found = pv.choices(
        [
            plan("plus", displayName="Plus", stripePriceId="price_B", maxMailboxes=20),
            plan("internal"),
            plan("basic", displayName="Basic", stripePriceId="price_A"),
            plan("broken", stripePriceId="not-a-price"),
        ],
        "basic",
    )
    assert [(c.name, c.current) for c in found] == [("basic", True), ("plus", False)]
    assert found[1].mailboxes == 20 and found[0].storage == "1.0 GiB"


@pytest.mark.parametrize(
    ("notes", "ids"),
    [
        (
            {billing.ANNOTATION_CUSTOMER: "cus_A1", billing.ANNOTATION_SUBSCRIPTION: "sub_B2"},
            ("cus_A1", "sub_B2"),
        ),
        ({billing.ANNOTATION_CUSTOMER: "cus_A1"}, ("cus_A1", None)),
        ({billing.ANNOTATION_CUSTOMER: "sub_B2"}, (None, None)),
        ({billing.ANNOTATION_CUSTOMER: "cus_A1/../x"}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_the_stripe_ids_come_from_billings_annotations(
    notes: dict[str, str], ids: tuple[str | None, str | None]
) -> None:
    assert stripe_ids({"metadata": {"annotations": notes}}) == ids
