"""A mail volume that fills up: new mail is deferred (4xx), nothing stored is lost
or half-written, delivery resumes once space is freed, and the usage report
(what the operator reads) says so, and lists the image's Debian packages. The volume
is a 32 MiB tmpfs."""

from __future__ import annotations

import datetime as dt
import json
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpes_operator import storage
from vpes_operator.clients.usage import read_report
from vpes_operator.models.conditions import Reason
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import Usage
from vpes_operator.quantity import parse_bytes
from vpes_operator.render import MAIL_DIR

from .clients import imap_find, imap_login, message, unique, wait_until
from .conftest import host_address, settings_for
from .tenant import PASSWORDS, Tenant, TenantFiles, sample_spec

pytestmark = pytest.mark.images

ALICE = "alice@example.org"
# A volume of 32 MiB and messages up to 1 MiB: Postfix keeps 2 MiB free.
PLAN = MailPlanSpec(storage="32Mi", max_message_size="1Mi")
RESERVE = storage.reserve_bytes(32 << 20, 1 << 20)
FILLER = f"{MAIL_DIR}/filler"
# Mail from this sender waits in Postfix's hold queue until released (the test
# decides when it is delivered); the rest of the configuration is the operator's.
HELD_SENDER = "held@example.org"


def _hold(config: dict[str, str]) -> None:
    main = config["postfix/main.cf"]
    old = "smtpd_sender_restrictions =\n"
    assert old in main
    main = main.replace(old, f"{old}    check_sender_access inline:{{{HELD_SENDER}=HOLD}},\n")
    # Deferred mail is retried every second, not every five minutes (the image
    # has no pickup service, so `postqueue -f` cannot ask for it).
    retry = ("queue_run_delay", "minimal_backoff_time", "maximal_backoff_time")
    config["postfix/main.cf"] = main + "".join(f"{p} = 1s\n" for p in retry)


@pytest.fixture
def small(image: str, gateway: str, tmp_path: Path) -> Iterator[Tenant]:
    files = TenantFiles(tmp_path, settings_for(f"{gateway}/32"), plan=PLAN)
    files.write(sample_spec(), PASSWORDS, edit=_hold)
    tenant = Tenant(image, host_address(16), files, mail_size="32m")
    try:
        tenant.start()
        tenant.wait_ready()
        yield tenant
    finally:
        tenant.remove()


def _send(host: str, sender: str, data: bytes) -> None:
    with smtplib.SMTP(host, 25, timeout=15) as smtp:
        smtp.ehlo("mx.edge.example")
        assert smtp.sendmail(sender, [ALICE], data) == {}


def _fill(t: Tenant, leave: int) -> None:
    """Size the filler file so that ``leave`` bytes are available on the volume."""
    have = t.exec("stat", "-c", "%s", FILLER)
    current = int(have.stdout) if have.returncode == 0 else 0
    size = max(0, current + read_report(t.host).volume.available - leave)
    # A new file each time: fallocate only grows one.
    out = t.exec("sh", "-c", f"rm -f {FILLER} && fallocate -l {size} {FILLER}")
    assert out.returncode == 0, out.stderr
    available = read_report(t.host).volume.available
    assert abs(available - leave) <= 64 * 1024, (available, leave)


def _queue(t: Tenant) -> list[dict[str, object]]:
    out = t.exec("postqueue", "-j")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _inbox(host: str) -> list[bytes]:
    with imap_login(host, ALICE, PASSWORDS[ALICE]) as client:
        client.select("INBOX", readonly=True)
        _, data = client.search(None, "ALL")
        out = []
        for n in data[0].split():
            _, fetched = client.fetch(n, "(BODY.PEEK[])")
            out += [bytes(p[1]) for p in fetched if isinstance(p, tuple)]
        return out


def test_a_full_volume_defers_mail_and_loses_none(small: Tenant) -> None:
    host = small.host
    # Mail stored before the volume fills.
    kept = message("carol@example.org", ALICE, unique("kept"), size=200 * 1024)
    _send(host, "carol@example.org", kept)
    wait_until(lambda: any(m.endswith(kept) for m in _inbox(host)), what="the first message")
    before = _inbox(host)

    # What the operator reads: the volume's statfs and Dovecot's count of each mailbox.
    report = read_report(host)
    assert report.volume.capacity == 32 << 20
    assert report.mailboxes[ALICE] == _doveadm_quota(small, ALICE)
    # ... and the image's Debian packages, as dpkg knows them in the running image.
    dpkg = small.exec("dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\n")
    assert dpkg.returncode == 0, dpkg.stderr
    installed = [line.split() for line in dpkg.stdout.splitlines()]
    assert report.packages == {p[1]: p[2] for p in installed if p[0] == "installed"}
    assert {"postfix", "dovecot-core", "dovecot-imapd"} <= report.packages.keys()

    # Under the reserve (but above the 1.5 MiB Postfix keeps by default), new
    # mail gets 452 at MAIL FROM: the sender (the edge) keeps it and retries.
    _fill(small, RESERVE - 256 * 1024)
    with smtplib.SMTP(host, 25, timeout=15) as smtp:
        smtp.ehlo("mx.edge.example")
        code, text = smtp.mail("carol@example.org")
    assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
    usage = _usage(host)
    cond = storage.condition(usage, _limits(), now=dt.datetime.now(dt.UTC))
    assert (cond.status, cond.reason) == (False, Reason.VOLUME_FULL)

    # A message that reached the queue while there was room, delivered once the
    # disk is full: Dovecot fails to store it, says 4xx, Postfix keeps it.
    _fill(small, 8 << 20)
    late = message(HELD_SENDER, ALICE, unique("late"), size=600 * 1024)
    _send(host, HELD_SENDER, late)
    wait_until(lambda: [m for m in _queue(small) if m["queue_name"] == "hold"], what="held")
    _fill(small, 128 * 1024)
    # Released into the deferred queue, tried within a second.
    assert small.exec("postsuper", "-H", "ALL").returncode == 0

    def deferred() -> list[str]:
        return [
            str(r["delay_reason"])
            for m in _queue(small)
            if m["queue_name"] == "deferred"
            for r in m["recipients"]  # type: ignore[attr-defined]
            if r.get("delay_reason")
        ]

    reasons = wait_until(deferred, 60, "the delivery tried and deferred")
    # ENOSPC while saving: Dovecot's LMTP says 451 4.2.0 (its save fails as an
    # internal error) and removes what it wrote; EDQUOT, what volumes limited by
    # project quotas return, is "over quota": 452 with quota_full_tempfail.
    assert re.search(r"said: 45[0-9] 4\.", reasons[0]), reasons
    # Nothing lost or half-written: the mailbox is as it was, no partial file left.
    assert _inbox(host) == before
    tmp = small.exec("sh", "-c", f"ls -A {MAIL_DIR}/example.org/alice/Maildir/tmp")
    assert tmp.stdout.strip() == ""

    # Space freed: the deferred message and new mail are delivered, whole.
    assert small.exec("rm", "-f", FILLER).returncode == 0
    wait_until(lambda: any(m.endswith(late) for m in _inbox(host)), 60, "the deferred message")
    again = message("carol@example.org", ALICE, unique("again"))
    _send(host, "carol@example.org", again)
    wait_until(lambda: imap_find(host, ALICE, PASSWORDS[ALICE], _subject(again)), what="again")
    after = _inbox(host)
    assert sum(m.endswith(late) for m in after) == 1
    assert after[: len(before)] == before
    usage = _usage(host)
    cond = storage.condition(usage, _limits(), now=dt.datetime.now(dt.UTC))
    # Room again; the sample's quotas (1 GiB for alice alone) exceed the volume.
    assert (cond.status, cond.reason) == (False, Reason.QUOTAS_OVERCOMMITTED), cond
    box = next(b for b in usage.mailbox_usage if b.address == ALICE)
    assert box.messages == 3 and box.used_bytes is not None and box.used_bytes > 800 * 1024


def _doveadm_quota(t: Tenant, user: str) -> tuple[int, int]:
    """What ``doveadm quota get`` says (KiB, messages), in the report's units where it can."""
    out = t.exec("doveadm", "-f", "tab", "quota", "get", "-u", user, user="vmail")
    rows = [line.split("\t") for line in out.stdout.splitlines()[1:]]
    values = {row[1]: int(row[2]) for row in rows if len(row) >= 3}
    used = read_report(t.host).mailboxes[user][0]
    assert -(-used // 1024) == values["STORAGE"], (used, out.stdout, out.stderr)  # KiB, up
    return used, values["MESSAGE"]


def _subject(data: bytes) -> str:
    line = next(x for x in data.split(b"\r\n") if x.startswith(b"Subject: "))
    return line[len(b"Subject: ") :].decode()


def _limits() -> storage.Limits:
    return storage.Limits(85.0, RESERVE, dt.timedelta(minutes=15))


def _usage(host: str) -> Usage:
    quotas = {m.address: parse_bytes(m.quota or "512Mi") for m in sample_spec().mailboxes}
    base = Usage(storage_requested=PLAN.storage, quota_committed_bytes=sum(quotas.values()))
    return storage.measured(base, read_report(host), quotas, dt.datetime.now(dt.UTC))


def test_a_delivery_over_quota_is_deferred_not_bounced(small: Tenant) -> None:
    # full@example.net (40 KiB quota, empty) passes the RCPT check (nothing
    # stored yet, no SIZE given); the message is larger than its room, so
    # Dovecot refuses to store it: 452, deferred in the queue (as a volume
    # limited by a project quota is, EDQUOT), never a bounce.
    full = "full@example.net"
    data = message("carol@example.org", full, unique("too big"), size=60 * 1024)
    with smtplib.SMTP(small.host, 25, timeout=15) as smtp:
        smtp.ehlo("mx.edge.example")
        assert smtp.mail("carol@example.org")[0] == 250  # no SIZE=
        assert smtp.rcpt(full)[0] == 250
        assert smtp.data(data)[0] == 250

    def deferred() -> list[str]:
        return [
            str(r["delay_reason"])
            for m in _queue(small)
            for r in m["recipients"]  # type: ignore[attr-defined]
            if r.get("delay_reason")
        ]

    reasons = wait_until(deferred, 60, "the delivery tried and deferred")
    assert "452 4.2.2" in reasons[0], reasons
    assert "status=bounced" not in small.logs()
