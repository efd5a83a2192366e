"""The shared edge's outbound relay (images/edge, ``vpes-edge relay``) under
podman, with a Redis and two sinks standing for the inbound MX and the
internet (``relay.py``): only authenticated servers relay, only after TLS,
only as their own domains (or foreign ones), their mail is DKIM-signed
(dkimpy verifies RSA and Ed25519), the hourly recipient limit, holds and
releases are enforced at RCPT, Redis down defers, and the maps and the
shard Secrets change without a restart.
"""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator

import dkim
import httpx
import pytest

from .clients import TLS, message, unique, wait_until
from .conftest import host_address
from .relay import HTTP, MX_SINK, NET_SINK, SMTP, DkimKey, Relay, dkim_key, shard_files
from .relay_fleet import (
    ACME,
    HELD,
    HELD_REASON,
    HOSTNAME,
    LIMITED,
    NEWCOMER,
    OTHER,
    OUTSIDE,
    PASSWORDS,
    RELEASED,
    SHARDS,
    SIZE_LIMIT,
    dns_for,
    login,
    maps_for,
    ready,
    send,
    signatures,
    status,
)
from .tenant import build_images, podman

pytestmark = pytest.mark.images


@pytest.fixture(scope="module")
def keys() -> dict[str, list[DkimKey]]:
    return {
        ACME: [
            dkim_key("acme.example", "vpes"),
            dkim_key("acme.example", "vpes-ed25519", "ed25519"),
            dkim_key("acme.example.net", "vpes"),
        ],
        OTHER: [dkim_key("other.example", "vpes")],
    }


@pytest.fixture(scope="module")
def relay(
    keys: dict[str, list[DkimKey]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    image = build_images("edge")[0]
    redis_image = build_images("rspamd")[0]
    box = Relay(
        image,
        redis_image,
        host_address(51),
        tmp_path_factory.mktemp("relay"),
        env={"VPES_HOSTNAME": HOSTNAME, "VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT)},
    )
    box.maps.write(maps_for("base-0"))
    users = {s: p for s, p in PASSWORDS.items() if s != NEWCOMER}
    box.write_secrets(shard_files(SHARDS, users, keys))
    try:
        box.start()
        wait_until(lambda: ready(box), 60, "the relay's 587 and 9146")
        yield box
    finally:
        box.remove()


# --- what goes through ----------------------------------------------------------


@pytest.mark.parametrize(
    ("rcpt", "sink"), [(OUTSIDE, NET_SINK), ("bob@other.example", MX_SINK)], ids=["out", "hosted"]
)
def test_own_domain_is_relayed_and_signed(
    relay: Relay, keys: dict[str, list[DkimKey]], rcpt: str, sink: int
) -> None:
    subject = unique("relay own")
    send(relay, ACME, "alice@acme.example", [rcpt], subject)
    got = relay.sinks[sink].wait_for(subject)
    assert got["from"] == "alice@acme.example"
    assert got["to"] == [rcpt]
    data = got["data"].encode()
    sigs = signatures(got["data"])
    assert any("a=rsa-sha256" in s and "s=vpes;" in s.replace(" ", "") for s in sigs), sigs
    assert any("a=ed25519-sha256" in s for s in sigs), sigs
    assert len(sigs) == 2, sigs
    verifier = dkim.DKIM(data)
    for i in range(len(sigs)):
        assert verifier.verify(idx=i, dnsfunc=dns_for(keys)), (i, sigs[i])


def test_foreign_sender_is_relayed_unsigned(relay: Relay) -> None:
    # Forwarded mail: a sender domain no server hosts is allowed, not signed.
    subject = unique("relay forwarded")
    send(relay, ACME, "someone@gmail.test", [OUTSIDE], subject)
    got = relay.sinks[NET_SINK].wait_for(subject)
    assert got["from"] == "someone@gmail.test"
    assert signatures(got["data"]) == []


def test_other_servers_from_header_is_never_signed(relay: Relay) -> None:
    # acme's own envelope sender, but other.example in the From: header.
    subject = unique("relay header")
    with login(relay, ACME) as smtp:
        data = message("boss@other.example", OUTSIDE, subject)
        assert smtp.sendmail("alice@acme.example", [OUTSIDE], data) == {}
    got = relay.sinks[NET_SINK].wait_for(subject)
    assert signatures(got["data"]) == []


# --- what does not --------------------------------------------------------------


def test_auth_only_after_tls(relay: Relay) -> None:
    with smtplib.SMTP(relay.host, SMTP, timeout=30) as smtp:
        smtp.ehlo("tenant.example")
        assert "auth" not in smtp.esmtp_features
        assert "starttls" in smtp.esmtp_features
        code, _ = smtp.docmd("AUTH PLAIN", "AGFjbWUvbWFpbABwYXNzd29yZA==")
        assert code // 100 == 5
        code, text = smtp.mail("alice@acme.example")
        assert code == 530, text  # Must issue a STARTTLS command first
        smtp.starttls(context=TLS)
        smtp.ehlo("tenant.example")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN"]
        assert smtp.esmtp_features["size"] == str(SIZE_LIMIT)
        assert isinstance(smtp.sock, ssl.SSLSocket)


def test_wrong_password_is_refused(relay: Relay) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
        login(relay, ACME, "not-the-password")
    assert failed.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPAuthenticationError):
        login(relay, OTHER, PASSWORDS[ACME])  # another server's password


@pytest.mark.parametrize("rcpt", [OUTSIDE, "bob@other.example"], ids=["out", "hosted"])
def test_no_relay_without_login(relay: Relay, rcpt: str) -> None:
    with smtplib.SMTP(relay.host, SMTP, timeout=30) as smtp:
        smtp.ehlo("tenant.example")
        smtp.starttls(context=TLS)
        smtp.ehlo("tenant.example")
        assert smtp.mail("alice@acme.example")[0] == 250
        code, text = smtp.docmd(f"RCPT TO:<{rcpt}>")
    assert code // 100 == 5, (code, text)


def test_cannot_send_as_another_servers_domain(relay: Relay) -> None:
    with login(relay, ACME) as smtp:
        code, text = smtp.docmd("MAIL FROM:<boss@other.example>")
        if code == 250:
            code, text = smtp.docmd(f"RCPT TO:<{OUTSIDE}>")
    assert code == 553, text
    assert b"5.7.1" in text
    assert b"not owned by user acme/mail" in text


def test_held_server_gets_450_with_the_reason(relay: Relay) -> None:
    with login(relay, HELD) as smtp:
        assert smtp.mail("x@held.example")[0] == 250
        code, text = smtp.docmd(f"RCPT TO:<{OUTSIDE}>")
    assert code == 450, text
    assert text.decode().startswith("4.7.1 <someone@elsewhere.test>: Recipient address rejected: ")
    assert text.decode().endswith(f": {HELD_REASON}")


def test_unknown_server_gets_454(relay: Relay) -> None:
    # A login the passwd-file knows but the limits do not (maps behind).
    files = maps_for("v-unknown")
    files["limits"] = "".join(line for line in files["limits"].splitlines(True) if ACME not in line)
    try:
        relay.maps.write(files)
        wait_until(lambda: relay.read("/run/vpes/maps-version") == "v-unknown", 15, "v-unknown")
        with login(relay, ACME) as smtp:
            assert smtp.mail("alice@acme.example")[0] == 250
            code, text = smtp.docmd(f"RCPT TO:<{OUTSIDE}>")
        assert code == 454, text
    finally:
        restore(relay)


def restore(box: Relay) -> None:
    version = f"base-{uuid.uuid4().hex[:8]}"
    box.maps.write(maps_for(version))
    wait_until(lambda: box.read("/run/vpes/maps-version") == version, 15, version)


def rcpt_codes(box: Relay, server: str, sender: str, n: int) -> list[int]:
    codes = []
    with login(box, server) as smtp:
        assert smtp.mail(sender)[0] == 250
        for i in range(n):
            codes.append(smtp.docmd(f"RCPT TO:<r{i}-{uuid.uuid4().hex[:6]}@elsewhere.test>")[0])
    return codes


def test_limit_defers_the_next_recipient_and_status_says_so(relay: Relay) -> None:
    codes = rcpt_codes(relay, LIMITED, "a@lim.example", 3)  # the limit: 3
    assert codes == [250, 250, 250]
    with login(relay, LIMITED) as smtp:
        assert smtp.mail("a@lim.example")[0] == 250
        code, text = smtp.docmd(f"RCPT TO:<{OUTSIDE}>")
    assert code == 450, text
    assert text.decode().endswith(f": <{LIMITED}> reached its limit of 3 recipients an hour")
    assert text.startswith(b"4.7.1 ")
    state = status(relay)
    assert state["window_seconds"] == 3600
    assert state["servers"][LIMITED] == {
        "recipients": 3, "limit": 3, "token": "-", "over_limit": True, "deferred": 1,
        "spam": 0, "spam_hold": False,
    }  # fmt: skip
    assert HELD not in state["servers"]  # no activity counted for a held server
    metrics = httpx.get(f"http://{relay.host}:{HTTP}/metrics", timeout=10).text
    assert 'vpes_relay_recipients_total{result="over_limit"} 1' in metrics
    assert "vpes_relay_servers_over_limit 1" in metrics
    assert "vpes_relay_queue_messages " in metrics
    assert 'vpes_relay_maps_version_info{version="' in metrics


def test_the_count_is_shared_by_replicas(relay: Relay) -> None:
    # The window is in Redis: the keys every replica reads.
    keys = podman(
        "exec", relay.redis, "sh", "-c",
        "REDISCLI_AUTH=$VPES_REDIS_PASSWORD redis-cli --scan --pattern 'vpes:relay:*'",
    ).stdout.split()  # fmt: skip
    assert f"vpes:relay:rcpt:{ACME}" in keys
    assert all(k.startswith("vpes:relay:") for k in keys)


def test_a_new_release_token_forgets_the_count(relay: Relay) -> None:
    assert rcpt_codes(relay, RELEASED, "a@rel.example", 3) == [250, 250, 450]
    version = f"released-{uuid.uuid4().hex[:6]}"
    try:
        relay.maps.write(maps_for(version, {RELEASED: "1796480000"}))
        wait_until(lambda: relay.read("/run/vpes/maps-version") == version, 15, version)
        assert rcpt_codes(relay, RELEASED, "a@rel.example", 3) == [250, 250, 450]
        assert status(relay)["servers"][RELEASED]["token"] == "1796480000"
    finally:
        relay.maps.write(maps_for(f"{version}-b", {RELEASED: "1796480000"}))
        wait_until(lambda: relay.read("/run/vpes/maps-version") == f"{version}-b", 15, "b")


def test_redis_down_defers(relay: Relay) -> None:
    podman("pause", relay.redis)
    try:
        with login(relay, ACME) as smtp:
            assert smtp.mail("alice@acme.example")[0] == 250
            code, text = smtp.docmd(f"RCPT TO:<{OUTSIDE}>")
        assert code // 100 == 4, (code, text)
    finally:
        podman("unpause", relay.redis)
    assert rcpt_codes(relay, ACME, "alice@acme.example", 1) == [250]


def test_maps_and_users_change_live(relay: Relay, keys: dict[str, list[DkimKey]]) -> None:
    master = relay.read("/var/spool/postfix/pid/master.pid")
    # A new server: its password in a shard, its domain, its limit.
    with pytest.raises(smtplib.SMTPAuthenticationError):
        login(relay, NEWCOMER)
    new_key = dkim_key("new.example", "vpes")
    relay.write_secrets(shard_files(SHARDS, PASSWORDS, {**keys, NEWCOMER: [new_key]}))
    files = maps_for("v-new")
    files["senders"] += f"@new.example {NEWCOMER}\n"
    files["domains"] += f"new.example {NEWCOMER}\n"
    files["limits"] += f"{NEWCOMER} 10 -\n"
    try:
        relay.maps.write(files)
        wait_until(lambda: relay.read("/run/vpes/maps-version") == "v-new", 15, "v-new")
        subject = unique("relay newcomer")
        send(relay, NEWCOMER, "n@new.example", [OUTSIDE], subject)
        got = relay.sinks[NET_SINK].wait_for(subject)
        # OpenDKIM reloaded (SIGUSR1) with the new key and setup script.
        assert "d=new.example" in "".join(signatures(got["data"]))
        assert dkim.verify(got["data"].encode(), dnsfunc=dns_for({NEWCOMER: [new_key]}))
        with login(relay, ACME) as smtp:  # new.example is now another server's
            assert smtp.mail("x@new.example")[0] == 250
            assert smtp.docmd(f"RCPT TO:<{OUTSIDE}>")[0] == 553
        assert relay.read("/var/spool/postfix/pid/master.pid") == master
    finally:
        restore(relay)


def test_broken_maps_keep_the_last_good_ones(relay: Relay) -> None:
    files = maps_for("v-broken")
    files["limits"] += "not a limit line\n"
    relay.maps.write(files)
    try:
        line = "maps version v-broken and relay keys not loaded"
        wait_until(lambda: line in relay.logs(), 15, "the error line")
        assert "limits line 6" in relay.logs()
        assert relay.read("/run/vpes/maps-version") != "v-broken"
        assert rcpt_codes(relay, ACME, "alice@acme.example", 1) == [250]
        time.sleep(5)
        assert relay.logs().count(line) == 1
    finally:
        restore(relay)


LIVE_GENERATION = "/run/vpes/relay/current/generation"
# What OpenDKIM cannot sign with, made and mended inside the running relay.
UNSIGNABLE = {
    # A key below a directory others may write: refused (RequireSafeKeys).
    "unusable key": ("chmod 1777 /run/vpes", "chmod 0755 /run/vpes"),
    # An OpenDKIM still on an older generation (its reload failed, or is yet to
    # come) would not know a new server's keys: its script is not the live one's.
    "stale script": (
        f"cp {LIVE_GENERATION} /run/vpes/was && echo gen.elsewhere > {LIVE_GENERATION}",
        f"cat /run/vpes/was > {LIVE_GENERATION} && rm /run/vpes/was",
    ),
}


@pytest.mark.parametrize(("breaks", "mends"), UNSIGNABLE.values(), ids=UNSIGNABLE.keys())
def test_what_opendkim_cannot_sign_is_deferred_never_sent_unsigned(
    relay: Relay, breaks: str, mends: str
) -> None:
    """The setup script fails the message with a 4xx (the tenant keeps it queued);
    once mended, the same message goes out signed."""
    podman("exec", relay.name, "sh", "-c", breaks)
    subject = unique("relay unsignable")
    try:
        with login(relay, ACME) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@acme.example", [OUTSIDE], message("a@acme.example", OUTSIDE, subject))
        assert refused.value.smtp_code // 100 == 4, refused.value
    finally:
        podman("exec", relay.name, "sh", "-c", mends)
    time.sleep(2)
    assert not [m for m in relay.sinks[NET_SINK].messages() if subject in m["data"]]
    send(relay, ACME, "a@acme.example", [OUTSIDE], subject)
    got = relay.sinks[NET_SINK].wait_for(subject)
    assert "d=acme.example" in "".join(signatures(got["data"]))


def test_starts_clean_and_sigterm_stops_everything(relay: Relay) -> None:
    # Last in this module: it stops the module's relay.
    logs = relay.logs()
    assert "postfix check:" not in logs  # it printed nothing
    assert "overriding earlier entry" not in logs  # main.cf sets nothing twice
    assert "fatal" not in logs.lower(), logs
    errors = [x for x in logs.splitlines() if "vpes-edge: error" in x]
    assert all("v-broken" in x for x in errors), errors
    podman("stop", "--time", "20", relay.name)
    assert podman("wait", relay.name).stdout.strip() == "0"
    logs = relay.logs()
    assert "SIGTERM received: stopping Postfix, Dovecot, OpenDKIM" in logs
    assert "vpes-edge: stopped" in logs
