"""Vacation replies in the real tenant image (render/vacation.py): Dovecot's
Pigeonhole runs the rendered script after the user's own (sieve_after) and the reply
leaves through Postfix and the relay (the sink stands in for it).

A message from outside to a mailbox whose reply is on gets exactly one reply, from
that mailbox, with the configured subject and text (nothing in them is Sieve); the
same sender gets no second one within ``days``; a mailbox without a reply only
receives; spam filed into Junk, and bulk mail, get none.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_operator.models.server import PersonalMailServerSpec

from .clients import imap_find, message, unique, wait_until
from .conftest import HERE, SINK_PORT, Sink, host_address, settings_for
from .tenant import PASSWORDS, Tenant, TenantFiles, sample_spec

pytestmark = pytest.mark.images

ALICE, BOB = "alice@example.org", "bob@example.net"
SUBJECT = 'Away: "back" \\ soon'
# Sieve syntax and variables in the text: all of it must come out as written.
TEXT = (
    "I am away until Monday.\n"
    ".\n"
    '"; redirect "evil@elsewhere.example"; keep;\n'
    "..two dots\n"
    "${vnd.dovecot.username} ${1}\n"
    "Alice"
)


# Senders outside the server: the tenant refuses a sender domain it cannot resolve, so
# each writes from example.org, whose forward takes replies out to the sink.
MARKERS = iter(range(20))
SENDERS = (
    "dora", "erin", "fred", "gina", "hank", "bulk0", "bulk1", "bulk2",
    *(f"marker{i}" for i in range(20)),
)  # fmt: skip


def local(name: str) -> str:
    return f"{name}@example.org"


def outside(name: str) -> str:
    return f"{name}@elsewhere.example"


@pytest.fixture(scope="module")
def away(image: str, gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A tenant where alice's reply is on (days 7), bob has none; outbound to a sink."""
    root = tmp_path_factory.mktemp("vacation")
    forwards = tuple({"from": local(n), "to": [outside(n)]} for n in SENDERS)
    wire = sample_spec(extra_forwards=forwards).wire()
    wire["mailboxes"][0]["vacation"] = {"enabled": True, "subject": SUBJECT, "message": TEXT}
    spec = PersonalMailServerSpec.model_validate(wire)
    files = TenantFiles(root, settings_for(f"{gateway}/32"))
    files.write(spec, PASSWORDS)
    tenant = Tenant(image, host_address(61), files)
    process: subprocess.Popen[bytes] | None = None
    try:
        tenant.start()
        tenant.wait_ready()
        out = root / "relayed"
        out.mkdir()
        process = subprocess.Popen(
            ["nsenter", f"--net=/proc/{tenant.pid()}/ns/net", sys.executable,
             str(HERE / "sink.py"), "127.0.0.1", str(SINK_PORT), str(out)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"listening"
        yield tenant, Sink(out, process)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        tenant.remove()


def deliver(host: str, sender: str, rcpt: str, data: bytes) -> None:
    """Port 25, as the edge's MX hands mail in."""
    with smtplib.SMTP(host, 25, timeout=20) as smtp:
        smtp.ehlo("mx.elsewhere.example")
        assert smtp.sendmail(sender, [rcpt], data) == {}


def received(host: str, user: str, subject: str, folder: str = "INBOX") -> bytes:
    return wait_until(
        lambda: imap_find(host, user, PASSWORDS[user], subject, folder),
        what=f"{subject!r} in {user}'s {folder}",
    )


def send(host: str, name: str, rcpt: str, subject: str, header: str = "") -> None:
    data = message(local(name), rcpt, subject)
    deliver(host, local(name), rcpt, f"{header}\r\n".encode() + data if header else data)


def replies_to(sink: Sink, name: str) -> list[dict[str, Any]]:
    return [m for m in sink.messages() if m["to"] == [outside(name)]]


def wait_reply(sink: Sink, name: str) -> dict[str, Any]:
    found = wait_until(lambda: replies_to(sink, name), 20, f"a vacation reply to {name}")
    return found[0]


def settle(tenant: Tenant, sink: Sink) -> None:
    """Until every message delivered so far has had its chance to reply: a marker
    sent now to alice gets its own reply (Postfix delivers and relays in order
    enough: the marker's reply comes after any earlier one)."""
    marker = f"marker{next(MARKERS)}"
    send(tenant.host, marker, ALICE, unique("marker"))
    wait_reply(sink, marker)


def test_one_reply_from_the_mailbox_with_the_subject_and_text(away: Any) -> None:
    tenant, sink = away
    sender = "dora"
    subject = unique("hello")
    send(tenant.host, sender, ALICE, subject)
    received(tenant.host, ALICE, subject)
    reply = wait_reply(sink, sender)
    data = reply["data"]
    assert reply["from"] == ALICE, "sent from the recipient (sieve_vacation_send_from_recipient)"
    assert f"Subject: {SUBJECT}\r\n" in data
    body = data.split("\r\n\r\n", 1)[1].replace("\r\n", "\n")
    assert TEXT in body, body
    assert "Auto-Submitted: auto-replied" in data
    settle(tenant, sink)
    assert len(replies_to(sink, sender)) == 1
    assert not [m for m in sink.messages() if "evil@elsewhere.example" in m["to"]]


def test_the_same_sender_gets_no_second_reply(away: Any) -> None:
    tenant, sink = away
    sender = "erin"
    first, second = unique("first"), unique("second")
    send(tenant.host, sender, ALICE, first)
    wait_reply(sink, sender)
    send(tenant.host, sender, ALICE, second)
    received(tenant.host, ALICE, second)
    settle(tenant, sink)
    assert len(replies_to(sink, sender)) == 1


def test_mail_to_an_alias_gets_a_reply_from_the_alias(away: Any) -> None:
    tenant, sink = away
    sender, alias = "fred", "a@example.net"
    subject = unique("alias")
    send(tenant.host, sender, alias, subject)
    received(tenant.host, ALICE, subject)
    reply = wait_reply(sink, sender)
    headers = reply["data"].split("\r\n\r\n", 1)[0]
    assert f"From: <{alias}>" in headers or f"From: {alias}" in headers, headers


def test_a_mailbox_without_a_reply_only_receives(away: Any) -> None:
    tenant, sink = away
    sender = "gina"
    subject = unique("for bob")
    send(tenant.host, sender, BOB, subject)
    received(tenant.host, BOB, subject)
    settle(tenant, sink)
    assert replies_to(sink, sender) == []


def test_spam_filed_into_junk_gets_no_reply(away: Any) -> None:
    tenant, sink = away
    sender = "hank"
    subject = unique("spam")
    send(tenant.host, sender, ALICE, subject, "X-Spam: Yes")
    received(tenant.host, ALICE, subject, "Junk")
    settle(tenant, sink)
    assert replies_to(sink, sender) == []


@pytest.mark.parametrize(
    ("sender", "header"),
    [
        ("bulk0", "Precedence: bulk"),
        ("bulk1", "List-Id: <news.elsewhere.example>"),
        ("bulk2", "Auto-Submitted: auto-generated"),
    ],
)
def test_bulk_list_and_automatic_mail_get_no_reply(away: Any, sender: str, header: str) -> None:
    tenant, sink = away
    subject = unique("bulk")
    send(tenant.host, sender, ALICE, subject, header)
    received(tenant.host, ALICE, subject)
    settle(tenant, sink)
    assert replies_to(sink, sender) == []


def test_the_script_was_compiled_into_the_users_home(away: Any) -> None:
    tenant, _ = away
    out = tenant.exec("find", "/var/mail/vpes/example.org/alice/sieve-vacation", "-type", "f")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.split()[0]).name.endswith(".svbin"), out.stdout
    assert "rror" not in "\n".join(
        line for line in tenant.logs().splitlines() if "sieve" in line.lower()
    ), tenant.logs()
