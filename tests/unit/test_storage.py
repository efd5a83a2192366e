"""The storage figures and the StorageHealthy condition (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
from vpes_operator import storage
from vpes_operator.models.conditions import Reason
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import MailboxUsage, Usage
from vpes_operator.render import RenderError

from .render_support import ctx_of

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
MIB = 1 << 20
LIMITS = storage.Limits(85.0, 50 * MIB, dt.timedelta(minutes=15))
REPORT = """vpes-usage 1
volume 4096 262144 131072 120000 65536 60000
mailbox alice@example.org 2048000 12
mailbox bob@example.net -5 0
end
"""


@pytest.mark.parametrize(
    ("storage_bytes", "message", "reserve"),
    [
        (1 << 30, 25 * MIB, (1 << 30) // 20),  # 5 % of the volume
        (1 << 30, 40 * MIB, 80 * MIB),  # twice the largest message
        (32 * MIB, 1 * MIB, 2 * MIB),
    ],
)
def test_reserve(storage_bytes: int, message: int, reserve: int) -> None:
    assert storage.reserve_bytes(storage_bytes, message) == reserve
    assert reserve >= 1.5 * message  # what Postfix asks of queue_minfree
    assert storage.reserve_problem(storage_bytes, message) is None


def test_a_plan_whose_messages_do_not_fit_its_volume_is_refused() -> None:
    plan = MailPlanSpec(storage="64Mi", max_message_size="20Mi")
    assert storage.reserve_problem(64 * MIB, 20 * MIB) is not None
    with pytest.raises(RenderError, match="maxMessageSize"):
        ctx_of(plan=plan)
    assert ctx_of(plan=MailPlanSpec(storage="64Mi", max_message_size="16Mi"))


def test_parse_report() -> None:
    report = storage.parse_report(REPORT)
    assert report.volume == storage.Volume(1 << 30, 512 * MIB, 120000 * 4096, 65536, 60000)
    assert report.volume.used == 512 * MIB
    # A Maildir++ sum below 0 (a recalculation is due) is taken as 0.
    assert report.mailboxes == {"alice@example.org": (2048000, 12), "bob@example.net": (0, 0)}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not a vpes-usage"),
        ("vpes-usage 2\nend\n", "not a vpes-usage"),
        ("vpes-usage 1\nvolume 4096 1 1 1 1 1\n", "cut short"),
        ("vpes-usage 1\nend\n", "no volume"),
        ("vpes-usage 1\nvolume 4096 x 1 1 1 1\nend\n", "not a number"),
        ("vpes-usage 1\nvolume 4096 -1 1 1 1 1\nend\n", "negative"),
        ("vpes-usage 1\nvolume 4096 1 1 1 1 1\nmailbox ../etc 1 1\nend\n", "unexpected"),
        ("vpes-usage 1\nvolume 4096 1 1 1 1 1\nrm -rf /\nend\n", "unexpected"),
        ("vpes-usage 1\nvolume 4096 1 1 1 1 1\nmailbox a@b 1 " + "9" * 30 + "\nend\n", "number"),
    ],
)
def test_a_bad_report_is_refused(text: str, why: str) -> None:
    with pytest.raises(storage.ReportError, match=why):
        storage.parse_report(text)


def _measured(report: str = REPORT, committed: int = 600 * MIB) -> Usage:
    quotas = {"alice@example.org": 500 * MIB, "bob@example.net": 100 * MIB, "new@example.org": 1}
    base = Usage(mailboxes=3, storage_requested="1Gi", quota_committed_bytes=committed)
    return storage.measured(base, storage.parse_report(report), quotas, NOW)


def test_measured_lists_the_spec_mailboxes_with_what_dovecot_counted() -> None:
    usage = _measured()
    assert (usage.storage_capacity_bytes, usage.storage_used_bytes) == (1 << 30, 512 * MIB)
    assert usage.storage_available_bytes == 120000 * 4096
    assert usage.measured_at == NOW
    assert usage.mailbox_usage == [
        MailboxUsage(
            address="alice@example.org", quota_bytes=500 * MIB, used_bytes=2048000, messages=12
        ),
        MailboxUsage(address="bob@example.net", quota_bytes=100 * MIB, used_bytes=0, messages=0),
        MailboxUsage(address="new@example.org", quota_bytes=1),  # not counted yet
    ]


def test_a_reconcile_keeps_what_was_measured() -> None:
    before = _measured()
    new = Usage(
        mailboxes=1,
        storage_requested="1Gi",
        mailbox_usage=[MailboxUsage(address="alice@example.org", quota_bytes=7)],
    )
    kept = storage.keep_measured(new, before)
    assert kept.storage_used_bytes == before.storage_used_bytes
    assert kept.measured_at == NOW
    assert kept.mailbox_usage == [
        MailboxUsage(address="alice@example.org", quota_bytes=7, used_bytes=2048000, messages=12)
    ]
    assert storage.keep_measured(new, None) == new


def _volume(used_mib: int, avail_mib: int) -> str:
    blocks = 1024  # 1 GiB in 1 MiB blocks
    volume = f"volume {MIB} {blocks} {blocks - used_mib} {avail_mib} 9 9"
    return f"vpes-usage 1\n{volume}\nmailbox alice@example.org 2048000 12\nend\n"


@pytest.mark.parametrize(
    ("report", "committed", "at", "status", "reason"),
    [
        (_volume(100, 900), 600 * MIB, NOW, True, Reason.STORAGE_AVAILABLE),
        (_volume(880, 140), 600 * MIB, NOW, False, Reason.VOLUME_NEARLY_FULL),
        (_volume(990, 30), 600 * MIB, NOW, False, Reason.VOLUME_FULL),
        (_volume(990, 30), 2 << 30, NOW, False, Reason.VOLUME_FULL),
        (_volume(100, 900), 2 << 30, NOW, False, Reason.QUOTAS_OVERCOMMITTED),
        # An old measurement says nothing (but the quotas are known).
        (_volume(990, 30), 600 * MIB, NOW - dt.timedelta(hours=1), False, Reason.USAGE_UNKNOWN),
        (
            _volume(990, 30),
            2 << 30,
            NOW - dt.timedelta(hours=1),
            False,
            Reason.QUOTAS_OVERCOMMITTED,
        ),
    ],
)
def test_condition(report: str, committed: int, at: dt.datetime, status: bool, reason: str) -> None:
    usage = _measured(report, committed).model_copy(update={"measured_at": at})
    cond = storage.condition(usage, LIMITS, now=NOW)
    assert (cond.status, cond.reason) == (status, reason), cond.message


def test_condition_messages_say_what_to_do() -> None:
    full = storage.condition(_measured(_volume(990, 30), 2 << 30), LIMITS, now=NOW)
    assert "deferred (452)" in full.message and "also" in full.message
    # Where room can be made: the mailboxes Dovecot counted, largest first.
    assert "(largest mailboxes: alice@example.org 2 MiB)" in full.message
    over = storage.condition(_measured(_volume(100, 900), 2 << 30), LIMITS, now=NOW)
    assert "2048 MiB, more than the 1024 MiB volume" in over.message
    # Before any measurement, the plan's size stands for the volume.
    unmeasured = Usage(storage_requested="1Gi", quota_committed_bytes=2 << 30)
    assert storage.condition(unmeasured, LIMITS, now=NOW).reason == Reason.QUOTAS_OVERCOMMITTED
    assert storage.condition(Usage(), LIMITS, now=NOW).reason == Reason.USAGE_UNKNOWN
