"""Junk filing and spam training at the tenant (render/antispam.py, images/tenant
vpes-learn), with the conftest's Rspamd and Redis (``antispam``) as the edge's.

Filing: mail the edge's MX hands in on port 25 with Rspamd's ``X-Spam: Yes`` lands
in Junk before any script of the user's runs; a sender's own X-Spam header is
dropped by the MX and, off port 25, by the tenant. Training: a message moved into
Junk over IMAP is learned as spam by that user's Bayes in Rspamd, one moved out
(not to Trash) as ham; the spool keeps them while the controller is away and stays
within its bounds.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Iterator
from email import message_from_bytes

import pytest

from .clients import TLS, ManageSieve, ProxySMTP, message, proxy_v1, unique, wait_until
from .conftest import host_address
from .edge import Edge, map_text
from .junk_support import (
    ALICE,
    BOB,
    Trainee,
    absent,
    append,
    find,
    move,
    send,
    start_trainee,
    text,
)
from .mx_support import start_edge
from .rspamd_support import CONTROLLER_PASSWORD, MAP, REDIS_PASSWORD, Antispam, spammy
from .tenant import PASSWORDS, container_address, podman

pytestmark = pytest.mark.images


@pytest.fixture(scope="module")
def trainee(
    image: str, gateway: str, antispam: Antispam, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trainee]:
    yield from start_trainee(image, gateway, antispam, tmp_path_factory.mktemp("trainee"))


def spam(to: str, subject: str, verdict: str = "Yes") -> bytes:
    """A message as the edge's MX delivers it once Rspamd marked it."""
    data = message("carol@example.org", to, subject, text(subject))
    return f"X-Spam: {verdict}\r\n".encode() + data


# --- filing ----------------------------------------------------------------------------------


def test_edge_verdict_files_spam_into_junk_and_ham_into_inbox(trainee: Trainee) -> None:
    marked, ham = unique("marked"), unique("ham")
    send(trainee.host, 25, ALICE, spam(ALICE, marked))
    send(trainee.host, 25, ALICE, message("carol@example.org", ALICE, ham, text(ham)))
    assert b"X-Spam: Yes" in find(trainee.host, ALICE, marked, "Junk")
    find(trainee.host, ALICE, ham, "INBOX")
    assert absent(trainee.host, ALICE, marked, "INBOX")
    assert absent(trainee.host, ALICE, ham, "Junk")


def submit(host: str, rcpt: str, data: bytes) -> None:
    with smtplib.SMTP(host, 587, timeout=20) as smtp:
        smtp.starttls(context=TLS)
        smtp.login(BOB, PASSWORDS[BOB])
        assert smtp.sendmail(BOB, [rcpt], data) == {}


@pytest.mark.parametrize("way", ["dedicated-address", "submission"])
def test_a_senders_x_spam_header_counts_only_from_the_edge(trainee: Trainee, way: str) -> None:
    """Mail that did not come through the edge's MX (a dedicated address's PROXY port,
    submission) cannot file itself into Junk: the tenant drops its X-Spam header."""
    subject = unique(way)
    if way == "submission":
        submit(trainee.host, ALICE, spam(ALICE, subject))
    else:
        send(trainee.host, 10025, ALICE, spam(ALICE, subject))
    fetched = find(trainee.host, ALICE, subject, "INBOX")
    assert b"X-Spam" not in fetched
    assert absent(trainee.host, ALICE, subject, "Junk")


def test_a_users_own_script_cannot_pull_spam_out_of_junk(trainee: Trainee) -> None:
    sieve = ManageSieve(trainee.host)
    try:
        sieve.starttls()
        sieve.login(BOB, PASSWORDS[BOB])
        sieve.put_active("everything-in-inbox", 'require ["fileinto"];\nfileinto "INBOX";\nstop;\n')
    finally:
        sieve.close()
    marked, ham = unique("pulled"), unique("kept")
    send(trainee.host, 25, BOB, spam(BOB, marked))
    send(trainee.host, 25, BOB, message("carol@example.org", BOB, ham, text(ham)))
    find(trainee.host, BOB, marked, "Junk")
    find(trainee.host, BOB, ham, "INBOX")  # the user's script still runs for ham
    assert absent(trainee.host, BOB, marked, "INBOX")


# --- the edge's MX: a forged header never reaches the tenant ------------------------------------


@pytest.fixture(scope="module")
def mx(
    edge_image: str,
    trainee: Trainee,
    antispam: Antispam,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Edge]:
    """The edge's MX with Rspamd as its milter, routing the trainee's domains to it;
    Rspamd's map makes example.org Strict and example.net Off."""
    route = f"smtp:[{container_address(trainee.tenant.name)}]:25"
    maps = {
        "domains": map_text({"example.org": "customer/tenant", "example.net": "customer/tenant"}),
        "recipients": map_text({ALICE: "OK", BOB: "OK"}),
        "transport": map_text({"example.org": route, "example.net": route}),
        "access": "",
        "antispam": map_text({"example.org": "strict", "example.net": "off"}),
        "proxy": "",
        "version": "junk-0\n",
    }
    applied = antispam.logs().count("antispam levels applied")
    antispam.write_map(MAP + "example.org strict\nexample.net off\n")
    milter = f"inet:{container_address(antispam.rspamd)}:11332"
    box = start_edge(
        edge_image,
        tmp_path_factory.mktemp("mx"),
        host_address(34),
        maps,
        {"VPES_MILTER": milter, "VPES_MESSAGE_SIZE_LIMIT": str(2 * 1024 * 1024)},
    )
    try:
        wait_until(
            lambda: antispam.logs().count("antispam levels applied") > applied, 20, "the map"
        )
        box.start()
        box.wait_ready()
        yield box
    finally:
        box.remove()
        antispam.write_map(MAP)


def through_mx(mx: Edge, rcpt: str, data: bytes) -> None:
    header = proxy_v1("198.51.100.26", "192.0.2.25", 40026, 25)
    with ProxySMTP(mx.host, 25, header, timeout=60) as smtp:
        smtp.ehlo("mail.sender.example")
        assert smtp.sendmail("carol@example.org", [rcpt], data) == {}


def x_spam(data: bytes) -> list[str]:
    return [str(v) for v in message_from_bytes(data).get_all("X-Spam") or []]


def test_the_mx_drops_forged_verdict_headers_and_adds_its_own(mx: Edge, trainee: Trainee) -> None:
    # Off (Rspamd does not scan): a forged "Yes" does not get ham filed into Junk.
    forged = unique("forged")
    through_mx(mx, BOB, spam(BOB, forged))
    assert x_spam(find(trainee.host, BOB, forged, "INBOX")) == []
    assert absent(trainee.host, BOB, forged, "Junk")
    # Strict, spammy: a forged "No" does not get it out of Junk; one header, Rspamd's.
    subject = unique("spammy")
    data = spammy().replace(b"Subject: CHEAP MEDS ONLINE NOW", f"Subject: {subject}".encode())
    forged_results = b"Authentication-Results: mx.example.net; dkim=pass; spf=pass; dmarc=pass\r\n"
    through_mx(
        mx,
        ALICE,
        b"X-Spam: No\r\n"
        + forged_results
        + data.replace(b"someone@standard.example", ALICE.encode()),
    )
    delivered = find(trainee.host, ALICE, subject, "Junk")
    assert x_spam(delivered) == ["Yes"]
    assert absent(trainee.host, ALICE, subject, "INBOX")
    # Authentication-Results likewise: one, Rspamd's (nothing resolves here: no pass).
    (results,) = message_from_bytes(delivered).get_all("Authentication-Results") or [None]
    assert results is not None and "spf=" in str(results) and "=pass" not in str(results)


# --- training ------------------------------------------------------------------------------


def test_moving_into_junk_learns_spam_for_that_user(trainee: Trainee) -> None:
    before, others = trainee.learns(BOB, "spam"), trainee.learns(ALICE, "spam")
    subject = unique("moved-in")
    append(trainee.host, BOB, "INBOX", message("carol@example.org", BOB, subject, text(subject)))
    move(trainee.host, BOB, subject, "INBOX", "Junk")
    trainee.wait_learns(BOB, "spam", before + 1)
    # APPEND straight into Junk (a client moving mail between accounts) counts too.
    appended = unique("appended")
    append(trainee.host, BOB, "Junk", message("carol@example.org", BOB, appended, text(appended)))
    trainee.wait_learns(BOB, "spam", before + 2)
    wait_until(lambda: trainee.spool() == [], 10, "an empty spool")
    assert trainee.learns(ALICE, "spam") == others  # only the user who moved it
    # The message stays where the user put it.
    find(trainee.host, BOB, subject, "Junk")


def test_moving_out_of_junk_learns_ham_but_into_trash_nothing(trainee: Trainee) -> None:
    before, spam_before = trainee.learns(ALICE, "ham"), trainee.learns(ALICE, "spam")
    trashed, rescued = unique("trashed"), unique("rescued")
    send(trainee.host, 25, ALICE, spam(ALICE, trashed))
    send(trainee.host, 25, ALICE, spam(ALICE, rescued))
    find(trainee.host, ALICE, trashed, "Junk")
    find(trainee.host, ALICE, rescued, "Junk")
    move(trainee.host, ALICE, trashed, "Junk", "Trash")
    move(trainee.host, ALICE, rescued, "Junk", "INBOX")
    trainee.wait_learns(ALICE, "ham", before + 1)
    wait_until(lambda: trainee.spool() == [], 10, "an empty spool")
    assert trainee.learns(ALICE, "ham") == before + 1  # the trashed one was not learned
    assert trainee.learns(ALICE, "spam") == spam_before
    find(trainee.host, ALICE, rescued, "INBOX")


def test_the_spool_keeps_messages_while_the_controller_is_away(trainee: Trainee) -> None:
    before = trainee.learns(BOB, "spam")
    trainee.block_controller(True)
    try:
        subject = unique("while-away")
        append(trainee.host, BOB, "Junk", message("carol@example.org", BOB, subject, text(subject)))
        wait_until(
            lambda: "cannot reach the controller" in trainee.logs(), 20, "the sender to notice"
        )
        time.sleep(3)
        assert len(trainee.spool()) == 1
        assert trainee.learns(BOB, "spam") == before
    finally:
        trainee.block_controller(False)
    trainee.wait_learns(BOB, "spam", before + 1, timeout=90)
    wait_until(lambda: trainee.spool() == [], 10, "an empty spool")
    assert "the controller takes messages again" in trainee.logs()


def test_the_spool_drops_its_oldest_entries_past_its_bounds(trainee: Trainee) -> None:
    """64 KiB of spool (a message cut at 16 KiB): six 14 KiB messages leave four."""
    before = trainee.learns(ALICE, "spam")
    trainee.block_controller(True)
    try:
        subjects = [unique(f"bulk-{i}") for i in range(6)]
        for s in subjects:
            body = text(s, words=1400)[: 14 * 1024]
            append(trainee.host, ALICE, "Junk", message("carol@example.org", ALICE, s, body))
        entries = trainee.spool()
        assert len(entries) == 4, entries
        dropped = re.findall(
            r"dropped its oldest entry, \S+ \(spam for alice@example.org\)", trainee.logs()
        )
        assert len(dropped) >= 2, trainee.logs()[-3000:]
        sizes = trainee.tenant.exec("du", "-sb", "/var/mail/vpes/learn-spool").stdout.split()[0]
        assert int(sizes) <= 64 * 1024 + 4096
    finally:
        trainee.block_controller(False)
    trainee.wait_learns(ALICE, "spam", before + 4, timeout=90)
    wait_until(lambda: trainee.spool() == [], 20, "an empty spool")
    assert trainee.learns(ALICE, "spam") == before + 4


# --- secrets ----------------------------------------------------------------------------------


def test_the_password_is_in_no_log_and_the_mail_user_cannot_read_it(
    trainee: Trainee, antispam: Antispam
) -> None:
    logs = trainee.logs() + antispam.logs() + podman("logs", antispam.redis, check=False).stdout
    assert CONTROLLER_PASSWORD not in logs and REDIS_PASSWORD not in logs
    for path in ("/run/vpes/learn/curl.conf", "/etc/vpes/secrets/antispam-password"):
        assert trainee.tenant.exec("cat", path).returncode == 0, path  # root reads it
        out = trainee.tenant.exec("cat", path, user="vmail")
        assert out.returncode != 0 and CONTROLLER_PASSWORD not in out.stdout, path
    # Nor is it on any process's command line (the sender runs every few seconds).
    out = trainee.tenant.exec("sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert CONTROLLER_PASSWORD not in out.stdout
