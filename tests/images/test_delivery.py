"""Mail in on port 25 (as the edge MX hands it over), through Dovecot LMTP, out
through IMAP and POP3; aliases, forwards, plus-addressing, quotas, size, Sieve."""

from __future__ import annotations

import poplib
import smtplib

import pytest
from vpes_operator import credentials

from .clients import (
    TLS,
    ManageSieve,
    idle_until_exists,
    imap_find,
    imap_login,
    message,
    unique,
    wait_until,
)
from .conftest import Running
from .tenant import PASSWORDS, podman

pytestmark = pytest.mark.images

ALICE, BOB, FULL = "alice@example.org", "bob@example.net", "full@example.net"


def send(host: str, rcpts: list[str], data: bytes, sender: str = "carol@example.org") -> None:
    with smtplib.SMTP(host, 25, timeout=15) as smtp:
        smtp.ehlo("mx.edge.example")
        refused = smtp.sendmail(sender, rcpts, data)
        assert refused == {}


def find(t: Running, user: str, subject: str, folder: str = "INBOX") -> bytes:
    return wait_until(
        lambda: imap_find(t.host, user, PASSWORDS[user], subject, folder),
        what=f"{subject!r} in {user}'s {folder}",
    )


def test_smtp_in_imap_out_same_bytes(tenant: Running) -> None:
    subject = unique("imap")
    data = message("carol@example.org", ALICE, subject, body="first line\nsecond line\n")
    send(tenant.host, [ALICE], data)
    fetched = find(tenant, ALICE, subject)
    # Delivery adds trace headers at the top (Return-Path, Delivered-To,
    # Received); the message itself is byte for byte what was sent.
    assert fetched.endswith(data)
    assert b"Delivered-To: alice@example.org" in fetched
    maildir = tenant.mail_root() / "example.org" / "alice" / "Maildir"
    files = list((maildir / "new").iterdir()) + list((maildir / "cur").iterdir())
    # Dovecot stores LF line ends and gives CRLF back.
    assert any(f.read_bytes().endswith(data.replace(b"\r\n", b"\n")) for f in files)
    assert (maildir.parent / "index").is_dir()  # indexes kept apart from the maildir
    assert maildir.stat().st_uid == 5000


def test_smtp_in_pop3_out_same_bytes(tenant: Running) -> None:
    subject = unique("pop3")
    data = message("carol@example.org", BOB, subject)
    send(tenant.host, [BOB], data)
    find(tenant, BOB, subject)  # delivered
    pop = poplib.POP3_SSL(tenant.host, 995, context=TLS, timeout=10)
    try:
        pop.user(BOB)
        pop.pass_(PASSWORDS[BOB])
        count, _ = pop.stat()
        texts = [b"\r\n".join(pop.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
    finally:
        pop.quit()
    assert any(t.endswith(data) for t in texts)


def test_alias_delivers_to_every_owner(tenant: Running) -> None:
    subject = unique("alias")
    # "info" is an alias of both alice and bob: info@example.net reaches both;
    # a@example.net is alice's alone.
    send(tenant.host, ["info@example.net"], message("c@example.org", "info", subject))
    find(tenant, ALICE, subject)
    find(tenant, BOB, subject)
    subject2 = unique("alias2")
    send(tenant.host, ["a@example.net"], message("c@example.org", "a", subject2))
    find(tenant, ALICE, subject2)


def test_forward_leaves_through_the_relay(tenant: Running) -> None:
    subject = unique("forward")
    send(tenant.host, ["sales@example.org"], message("c@example.org", "sales", subject))
    relayed = tenant.sink.wait_for(subject)
    assert relayed["to"] == ["carol@elsewhere.example"]
    # Through TLS and logged in as the server, with the password the operator made
    # (Cyrus SASL's PLAIN client plugin: libsasl2-modules in the image).
    assert relayed["tls"] is True
    assert relayed["login"] == "customer/tenant"
    stored = tenant.files.stored[credentials.RELAY_PASSWORD_KEY]
    assert relayed["password"] == stored and len(stored) == 32


def test_the_relay_password_hash_is_dovecots_ssha512(tenant: Running) -> None:
    """What the relay's shards hold verifies with Dovecot's own doveadm."""
    password = tenant.files.stored[credentials.RELAY_PASSWORD_KEY]
    hashed = tenant.files.stored[credentials.RELAY_HASH_KEY]
    out = podman(
        "exec", tenant.tenant.name, "doveadm", "pw", "-t", hashed, "-p", password, check=False
    )
    assert "(verified)" in out.stdout + out.stderr, out
    wrong = podman(
        "exec", tenant.tenant.name, "doveadm", "pw", "-t", hashed, "-p", password + "x",
        check=False,
    )  # fmt: skip
    assert "(verified)" not in wrong.stdout + wrong.stderr


def test_postmaster_goes_to_the_owner(tenant: Running) -> None:
    subject = unique("postmaster")
    send(tenant.host, ["postmaster@example.net"], message("c@example.org", "pm", subject))
    assert tenant.sink.wait_for(subject)["to"] == ["owner@owner.example"]


def _rcpt(host: str, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP(host, 25, timeout=10) as smtp:
        smtp.ehlo("mx.edge.example")
        smtp.mail("carol@example.org")
        return smtp.rcpt(rcpt)


def test_unknown_recipient_refused_where_no_catch_all(tenant: Running) -> None:
    code, text = _rcpt(tenant.host, "nobody-here@example.org")
    assert code == 550, text
    assert b"User unknown" in text


def test_catch_all_takes_only_unknown_addresses_of_its_domain(tenant: Running) -> None:
    # example.net has a catch-all to alice@example.org; example.org has none.
    subject = unique("catch-all")
    send(tenant.host, ["nobody-here@example.net"], message("c@example.org", "nobody", subject))
    fetched = find(tenant, ALICE, subject)
    assert b"Delivered-To: alice@example.org" in fetched
    # The domain's own mailboxes (and their +details) keep their mail.
    own = unique("own mail")
    send(tenant.host, ["bob+x@example.net"], message("c@example.org", BOB, own))
    find(tenant, BOB, own)
    assert not imap_find(tenant.host, ALICE, PASSWORDS[ALICE], own)
    # ...and the other domain still refuses unknown recipients at RCPT time.
    assert _rcpt(tenant.host, "nobody-here@example.org")[0] == 550


def test_plus_addressing(tenant: Running) -> None:
    subject = unique("plus")
    send(tenant.host, ["alice+newsletters@example.org"], message("c@example.org", "a", subject))
    fetched = find(tenant, ALICE, subject)  # no such folder: INBOX
    assert b"Delivered-To: alice+newsletters@example.org" in fetched


def test_full_mailbox_is_refused_at_rcpt(tenant: Running) -> None:
    # full@example.net has a 40 KiB quota: fill it, then the next RCPT is
    # refused by the quota-status policy (no bounce later).
    codes = []
    for _ in range(6):
        with smtplib.SMTP(tenant.host, 25, timeout=10) as smtp:
            smtp.ehlo("mx.edge.example")
            smtp.mail("carol@example.org")
            code, text = smtp.rcpt(FULL)
            codes.append(code)
            if code != 250:
                break
            smtp.data(message("carol@example.org", FULL, unique("fill"), size=20 * 1024))
        wait_until(lambda: _delivered(tenant), what="the previous message delivered")
    assert codes[-1] == 552, codes
    assert b"Mailbox is full" in text
    # With the SIZE of a message, the check happens before anything is stored.
    with smtplib.SMTP(tenant.host, 25, timeout=10) as smtp:
        smtp.ehlo("mx.edge.example")
        smtp.mail("carol@example.org", ["SIZE=30000"])
        code, _ = smtp.rcpt(FULL)
    assert code == 552


def _delivered(t: Running) -> bool:
    out = t.tenant.exec("postqueue", "-j")
    return out.returncode == 0 and not out.stdout.strip()


def test_message_size_limit_from_the_plan(tenant: Running) -> None:
    with smtplib.SMTP(tenant.host, 25, timeout=20) as smtp:
        smtp.ehlo("mx.edge.example")
        assert smtp.esmtp_features["size"] == str(1024 * 1024)
        code, _ = smtp.docmd("MAIL FROM:<carol@example.org> SIZE=2000000")
        assert code == 552
        smtp.rset()
        # Without SIZE, the limit is enforced while the data streams in.
        smtp.mail("carol@example.org")
        smtp.rcpt(ALICE)
        code, _ = smtp.data(message("carol@example.org", ALICE, unique("big"), size=1100 * 1024))
    assert code == 552


def test_sieve_uploaded_with_managesieve_files_into_a_folder(tenant: Running) -> None:
    sieve = ManageSieve(tenant.host)
    try:
        assert any(b'"STARTTLS"' in line for line in sieve.capabilities)
        sieve.starttls()
        sieve.login(BOB, PASSWORDS[BOB])
        sieve.put_active(
            "lists",
            'require ["fileinto", "mailbox"];\n'
            'if header :contains "subject" "[lists]" { fileinto :create "Lists"; stop; }\n',
        )
    finally:
        sieve.close()
    subject = unique("[lists] weekly")
    send(tenant.host, [BOB], message("c@example.org", BOB, subject))
    assert find(tenant, BOB, subject, folder="Lists")
    assert not imap_find(tenant.host, BOB, PASSWORDS[BOB], subject, "INBOX")


def test_sieve_redirect_leaves_through_the_internal_relay(tenant: Running) -> None:
    # Dovecot hands the redirect to Postfix's loopback-only listener
    # (layout.INTERNAL_SUBMISSION), the one place loopback may relay.
    sieve = ManageSieve(tenant.host)
    try:
        sieve.starttls()
        sieve.login(ALICE, PASSWORDS[ALICE])
        sieve.put_active(
            "redirect",
            'if header :contains "subject" "[redirect-me]" '
            '{ redirect "carol@elsewhere.example"; }\n',
        )
    finally:
        sieve.close()
    subject = unique("[redirect-me]")
    send(tenant.host, [ALICE], message("c@example.org", ALICE, subject))
    assert tenant.sink.wait_for(subject)["to"] == ["carol@elsewhere.example"]
    assert "postfix/internal/smtpd" in tenant.logs()
    assert not imap_find(tenant.host, ALICE, PASSWORDS[ALICE], subject)


def test_imap_idle_sees_new_mail(tenant: Running) -> None:
    client = imap_login(tenant.host, ALICE, PASSWORDS[ALICE])
    try:
        assert "IDLE" in client.capabilities
        client.select("INBOX")
        subject = unique("idle")
        line = idle_until_exists(
            client,
            lambda: send(tenant.host, [ALICE], message("c@example.org", ALICE, subject)),
            timeout=20,
        )
        assert line.endswith(b"EXISTS\r\n")
    finally:
        client.logout()
