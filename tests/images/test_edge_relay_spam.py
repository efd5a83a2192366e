"""The outbound relay's antispam (images/edge, ``vpes-edge relay`` with
``VPES_SPAM_MILTER``) under podman: the relay of ``relay.py`` with the conftest's
Rspamd (``rspamd_support.py``) as its first milter. Every message is judged with
the login Rspamd gets from ``{auth_authen}``; a reject is a 5xx at the relay
(nothing leaves), counted per server in Redis until ``/status`` says
``spam_hold``; a new release token forgets the count; clean mail is signed and
passes with nothing of Rspamd's added; Rspamd not answering defers (4xx).
Holding itself is the operator's (the maps' ``held``: test_edge_relay.py).
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Iterator
from email import message_from_string
from pathlib import Path

import dkim
import httpx
import pytest

from .clients import message, unique, wait_until
from .conftest import host_address
from .edge import map_text
from .relay import HTTP, NET_SINK, DkimKey, Relay, dkim_key, shard_files
from .relay_fleet import HOSTNAME, login, ready, status
from .rspamd_support import GTUBE, HAM, MILTER, Antispam
from .tenant import build_images, container_address, podman

pytestmark = pytest.mark.images

THRESHOLD = 3
CLEAN, SPAMMER = "clean/mail", "spam/mail"
DOMAINS = {"clean.example": CLEAN, "spammer.example": SPAMMER}
PASSWORDS = {s: "pw-" + uuid.uuid4().hex for s in (CLEAN, SPAMMER)}
OUTSIDE = "someone@elsewhere.test"
FOOTER = "the outbound relay's antispam judged this message spam"


def maps_for(version: str, token: str = "-") -> dict[str, str]:
    return {
        "domains": map_text(DOMAINS),
        "recipients": "",
        "transport": "",
        "access": "",
        "antispam": "",
        "proxy": "",
        "senders": map_text({f"@{d}": s for d, s in DOMAINS.items()}),
        "limits": f"{CLEAN} 100 -\n{SPAMMER} 100 {token}\n",
        "held": "",
        "version": f"{version}\n",
    }


@pytest.fixture(scope="module")
def keys() -> dict[str, list[DkimKey]]:
    return {
        CLEAN: [dkim_key("clean.example", "vpes"), dkim_key("clean.example", "ed", "ed25519")],
        SPAMMER: [dkim_key("spammer.example", "vpes")],
    }


def start_relay(root: Path, host: int, milter: str, keys: dict[str, list[DkimKey]]) -> Relay:
    box = Relay(
        build_images("edge")[0],
        build_images("rspamd")[0],
        host_address(host),
        root,
        env={
            "VPES_HOSTNAME": HOSTNAME,
            "VPES_SPAM_MILTER": milter,
            "VPES_SPAM_HOLD_THRESHOLD": str(THRESHOLD),
        },
    )
    box.maps.write(maps_for("spam-0"))
    box.write_secrets(shard_files(2, PASSWORDS, keys))
    box.start()
    wait_until(lambda: ready(box), 60, "the relay's 587 and 9146")
    return box


@pytest.fixture(scope="module")
def relay(
    antispam: Antispam, keys: dict[str, list[DkimKey]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    milter = f"inet:{container_address(antispam.rspamd)}:{MILTER}"
    box = None
    try:
        box = start_relay(tmp_path_factory.mktemp("spam-relay"), 55, milter, keys)
        yield box
    finally:
        if box is not None:
            box.remove()


def send(box: Relay, server: str, sender: str, subject: str, body: str) -> None:
    with login(box, server, PASSWORDS[server]) as smtp:
        assert smtp.sendmail(sender, [OUTSIDE], message(sender, OUTSIDE, subject, body)) == {}


def refused(box: Relay, server: str, sender: str, subject: str, body: str) -> smtplib.SMTPDataError:
    with login(box, server, PASSWORDS[server]) as smtp, pytest.raises(smtplib.SMTPDataError) as e:
        smtp.sendmail(sender, [OUTSIDE], message(sender, OUTSIDE, subject, body))
    return e.value


def spam_count(box: Relay, server: str) -> int:
    return int(status(box)["servers"].get(server, {}).get("spam", 0))


def test_clean_mail_is_judged_then_signed_with_nothing_of_rspamds_added(
    relay: Relay, antispam: Antispam, keys: dict[str, list[DkimKey]]
) -> None:
    subject = unique("clean outbound")
    send(relay, CLEAN, "alice@clean.example", subject, HAM)
    got = relay.sinks[NET_SINK].wait_for(subject)
    parsed = message_from_string(got["data"])
    sigs = parsed.get_all("DKIM-Signature", [])
    assert len(sigs) == 2, sigs
    records = {f"{k.selector}._domainkey.{k.domain}.".encode(): k.dns for k in keys[CLEAN]}
    verifier = dkim.DKIM(got["data"].encode())
    for i in range(2):
        assert verifier.verify(idx=i, dnsfunc=lambda name, timeout=5: records.get(name))
    # Rspamd only judged: no X-Spam, no Authentication-Results, no signature of its own.
    added = {k.lower() for k in parsed}
    assert not added & {"x-spam", "x-spamd-result", "x-rspamd-server", "authentication-results"}
    assert "ARC-Seal" not in got["data"]
    # It saw the login ({auth_authen}), the relay's SASL user.
    wait_until(lambda: CLEAN in antispam.logs(), 10, "the login in Rspamd's log")
    assert CLEAN not in status(relay)["servers"] or spam_count(relay, CLEAN) == 0


def test_spam_is_refused_counted_and_reported_at_the_threshold(relay: Relay) -> None:
    for i in range(THRESHOLD):
        subject = unique("gtube outbound")
        error = refused(relay, SPAMMER, "bob@spammer.example", subject, f"{GTUBE}\n")
        assert error.smtp_code == 554, error
        text = error.smtp_error.decode()
        assert text.startswith("5.7.1 Gtube pattern (the outbound"), text  # Rspamd's words
        assert FOOTER in text, text
        wait_until(lambda n=i + 1: spam_count(relay, SPAMMER) == n, 15, f"spam count {i + 1}")
        entry = status(relay)["servers"][SPAMMER]
        assert entry["spam_hold"] is (i + 1 >= THRESHOLD), entry
    time.sleep(1)
    assert not [m for m in relay.sinks[NET_SINK].messages() if "gtube outbound" in m["data"]]
    doc = status(relay)
    assert doc["spam_threshold"] == THRESHOLD
    assert doc["servers"][SPAMMER]["token"] == "-"
    metrics = httpx.get(f"http://{relay.host}:{HTTP}/metrics", timeout=10).text
    assert f"vpes_relay_spam_total {THRESHOLD}" in metrics
    assert "vpes_relay_servers_spam_hold 1" in metrics
    keys = podman(
        "exec", relay.redis, "sh", "-c",
        "REDISCLI_AUTH=$VPES_REDIS_PASSWORD redis-cli --scan --pattern 'vpes:relay:spam:*'",
    ).stdout.split()  # fmt: skip
    assert keys == [f"vpes:relay:spam:{SPAMMER}"]
    assert f"{SPAMMER}: message refused by the antispam, {THRESHOLD} in the last hour" in (
        relay.logs()
    )
    # The relay only reports: until the operator holds it, clean mail still goes.
    subject = unique("spammer clean")
    send(relay, SPAMMER, "bob@spammer.example", subject, HAM)
    assert "d=spammer.example" in relay.sinks[NET_SINK].wait_for(subject)["data"]
    # The other server is not touched.
    assert spam_count(relay, CLEAN) == 0


def test_a_new_release_token_forgets_the_spam_count(relay: Relay) -> None:
    if spam_count(relay, SPAMMER) == 0:
        refused(relay, SPAMMER, "bob@spammer.example", unique("gtube"), f"{GTUBE}\n")
        wait_until(lambda: spam_count(relay, SPAMMER) > 0, 15, "a spam count")
    relay.maps.write(maps_for("spam-released", "1796490000"))
    wait_until(lambda: relay.read("/run/vpes/maps-version") == "spam-released", 15, "released")
    # Under the old token the count is not reported, before any new message...
    assert spam_count(relay, SPAMMER) == 0
    # ...and the next one forgets it in Redis; a new refusal counts from 1.
    refused(relay, SPAMMER, "bob@spammer.example", unique("gtube"), f"{GTUBE}\n")
    wait_until(lambda: spam_count(relay, SPAMMER) == 1, 15, "a count of 1")
    entry = status(relay)["servers"][SPAMMER]
    assert entry["token"] == "1796490000" and entry["spam_hold"] is False, entry


def test_rspamd_not_answering_defers_nothing_leaves_unscanned(
    keys: dict[str, list[DkimKey]], tmp_path: Path
) -> None:
    box = start_relay(tmp_path, 56, f"inet:127.0.0.1:{MILTER}", keys)  # nothing listens
    try:
        subject = unique("unscanned")
        try:
            with login(box, CLEAN, PASSWORDS[CLEAN]) as smtp:
                smtp.sendmail(
                    "alice@clean.example",
                    [OUTSIDE],
                    message("alice@clean.example", OUTSIDE, subject, HAM),
                )
            code = 250
        except smtplib.SMTPResponseException as e:
            code = e.smtp_code
        except smtplib.SMTPRecipientsRefused as e:
            code = e.recipients[OUTSIDE][0]
        assert code // 100 == 4, code
        time.sleep(2)
        assert not [m for m in box.sinks[NET_SINK].messages() if subject in m["data"]]
        assert "antispam: inet:127.0.0.1:11332 judges every message" in box.logs()
    finally:
        box.remove()


def test_a_bad_milter_address_stops_the_start(relay: Relay, tmp_path: Path) -> None:
    box = Relay(
        relay.image, relay.redis_image, host_address(57), tmp_path,
        env={"VPES_HOSTNAME": HOSTNAME, "VPES_SPAM_MILTER": "rspamd 11332; rm"},
    )  # fmt: skip
    box.maps.write(maps_for("start"))
    box.write_secrets(shard_files(1, {}, {}))
    try:
        box.start(sinks=False)
        assert podman("wait", box.name, timeout=60).stdout.strip() == "2"
        assert "is not a milter address" in box.logs()
    finally:
        box.remove()
