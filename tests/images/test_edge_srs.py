"""SRS at the shared edge (images/edge, relay/srs.sh) under podman: the
outbound relay rewrites a forwarded message's envelope sender into the SRS
domain (postsrsd), never a sender of a hosted domain nor the null sender; the
inbound MX takes a bounce to such an address only when its hash and age
verify, and sends it to the original sender: a hosted domain's to its tenant
(the conftest tenant), any other through its relayhost (a sink in the MX's
network namespace). A forged, expired or foreign SRS address is refused at
RCPT: the MX relays nothing more than before. The secret, shared by both
through a mounted Secret, is in no log and no environment.

The relay's maps are those of test_edge_relay (acme/mail hosts acme.example
and acme.example.net); the MX's those of test_edge_mx (the tenant hosts
example.org and example.net): so alice@example.org is foreign to the relay
(forwarded mail, rewritten) and hosted at the MX.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_string
from pathlib import Path
from typing import Any

import pytest

from .clients import message, unique, wait_until
from .conftest import Running, host_address
from .edge import Edge, EdgeMaps
from .mx_support import maps_for as mx_maps
from .relay import MX_SINK, NET_SINK, Relay, Sink, shard_files, start_sink
from .relay_fleet import ACME, PASSWORDS, SHARDS, login, ready
from .relay_fleet import maps_for as relay_maps
from .tenant import _atomic_write, build_images, container_address, podman
from .test_delivery import find

pytestmark = pytest.mark.images

SRS_DOMAIN = "srs.edge.test"
SECRET = "srs-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
SRS_DIR = "/etc/vpes/srs"
MX_OUT = 2528  # the MX's relayhost: a sink in its network namespace
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def srs0(user: str, host: str, *, days_ago: int = 0, secret: str = SECRET) -> str:
    """An SRS0 address as postsrsd 1.10 makes one: HMAC-SHA1 of the lower-cased
    timestamp, host and user, the first 4 characters of its base64."""
    day = int(time.time() // 86400) - days_ago
    stamp = BASE32[(day >> 5) & 31] + BASE32[day & 31]
    mac = hmac.new(secret.encode(), (stamp + host + user).lower().encode(), hashlib.sha1)
    digest = base64.b64encode(mac.digest()).decode()[:4]
    return f"SRS0={digest}={stamp}={host}={user}@{SRS_DOMAIN}"


def forged(address: str) -> str:
    """The same address with another hash."""
    tag, digest, rest = address.split("=", 2)
    other = "".join(BASE32[(BASE32.find(c.upper()) + 1) % 32] for c in digest)
    return f"{tag}={other}={rest}"


def secret_dir(root: Path) -> Path:
    """The SRS Secret as the kubelet mounts it: one key, root's, 0400."""
    out = root / "srs"
    _atomic_write(out, {"secret": (SECRET, 0o400)})
    return out


@dataclass
class SrsEdge(Edge):
    """The MX with the SRS Secret mounted at /etc/vpes/srs."""

    secrets: Path | None = None

    def run_args(self) -> list[str]:
        args = super().run_args()
        if self.secrets is None:
            return args
        return [*args[:-2], "--volume", f"{self.secrets}:{SRS_DIR}:ro", *args[-2:]]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    root = tmp_path_factory.mktemp("srs-relay")
    box = Relay(
        build_images("edge")[0],
        build_images("rspamd")[0],
        host_address(53),
        root,
        env={
            "VPES_HOSTNAME": "relay.edge.test",
            "VPES_SRS_DOMAIN": SRS_DOMAIN,
            "VPES_MESSAGE_SIZE_LIMIT": str(1024 * 1024),  # the queue: a 64 MB tmpfs
        },
        volumes={str(secret_dir(root)): SRS_DIR},
    )
    box.maps.write(relay_maps("srs-0"))
    box.write_secrets(shard_files(SHARDS, {ACME: PASSWORDS[ACME]}, {}))
    try:
        box.start()
        wait_until(lambda: ready(box), 60, "the relay's 587 and 9146")
        yield box
    finally:
        box.remove()


@dataclass
class MX:
    edge: SrsEdge
    out: Sink


@pytest.fixture(scope="module")
def mx(edge_image: str, tenant: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MX]:
    root = tmp_path_factory.mktemp("srs-mx")
    maps = EdgeMaps(root / "maps")
    maps.write(mx_maps(container_address(tenant.tenant.name), "srs-0"))
    env = {
        "VPES_HOSTNAME": "mx.edge.test",
        "VPES_MESSAGE_SIZE_LIMIT": str(1024 * 1024),
        "VPES_SRS_DOMAIN": SRS_DOMAIN,
        "VPES_RELAYHOST": f"[127.0.0.1]:{MX_OUT}",
    }
    box = SrsEdge(edge_image, host_address(34), maps, env=env, secrets=secret_dir(root))
    sink: Sink | None = None
    try:
        box.start()
        box.wait_ready()
        box.wait_version("srs-0")
        sink = start_sink(box.name, MX_OUT, root / "out")
        yield MX(box, sink)
    finally:
        if sink is not None:
            sink.process.terminate()
            sink.process.wait(10)
        box.remove()


def relay_send(box: Relay, sender: str, rcpt: str, subject: str) -> None:
    author = sender or "MAILER-DAEMON@acme.example"
    with login(box, ACME) as smtp:
        assert smtp.sendmail(sender, [rcpt], message(author, rcpt, subject)) == {}


def rcpt_reply(box: Edge, rcpt: str, sender: str = "") -> tuple[int, bytes]:
    with smtplib.SMTP(box.host, 2525, timeout=30) as smtp:
        smtp.ehlo("bouncer.example.com")
        assert smtp.mail(sender)[0] == 250
        return smtp.docmd(f"RCPT TO:<{rcpt}>")


def bounce(box: Edge, rcpt: str, subject: str) -> None:
    """A delivery status notification from a remote MTA: MAIL FROM:<>."""
    data = message("MAILER-DAEMON@bouncer.example.com", rcpt, subject, body="550 no such user\n")
    with smtplib.SMTP(box.host, 2525, timeout=30) as smtp:
        smtp.ehlo("bouncer.example.com")
        assert smtp.sendmail("", [rcpt], data) == {}


def header(data: str, name: str) -> str:
    return str(message_from_string(data)[name])


# --- the relay ------------------------------------------------------------------


@pytest.mark.parametrize(("rcpt", "sink"), [("someone@elsewhere.test", NET_SINK),
                                            ("bob@other.example", MX_SINK)],
                         ids=["out", "hosted"])  # fmt: skip
def test_forwarded_mail_leaves_with_an_srs_sender(relay: Relay, rcpt: str, sink: int) -> None:
    subject = unique("srs forwarded")
    relay_send(relay, "someone@gmail.test", rcpt, subject)
    got = relay.sinks[sink].wait_for(subject)
    # Exactly what postsrsd makes with the mounted secret (checked by our own
    # computation: a second opinion on hash and timestamp).
    assert got["from"] in (srs0("someone", "gmail.test"), srs0("someone", "gmail.test", days_ago=1))
    assert got["to"] == [rcpt]
    # The envelope only: the From: header is the author's (DKIM and DMARC).
    assert header(got["data"], "From") == "someone@gmail.test"


@pytest.mark.parametrize("sender", ["alice@acme.example", "bob@acme.example.net"])
def test_the_servers_own_mail_keeps_its_sender(relay: Relay, sender: str) -> None:
    subject = unique("srs own")
    relay_send(relay, sender, "someone@elsewhere.test", subject)
    assert relay.sinks[NET_SINK].wait_for(subject)["from"] == sender


def test_a_bounce_keeps_the_null_sender(relay: Relay) -> None:
    subject = unique("srs bounce")
    relay_send(relay, "", "someone@elsewhere.test", subject)
    assert relay.sinks[NET_SINK].wait_for(subject)["from"] == ""


def test_a_domain_added_to_the_maps_is_no_longer_rewritten(relay: Relay) -> None:
    files = relay_maps("srs-fresh")
    files["senders"] += f"@fresh.example {ACME}\n"
    files["domains"] += f"fresh.example {ACME}\n"
    first = unique("srs before")
    relay_send(relay, "x@fresh.example", "someone@elsewhere.test", first)
    assert relay.sinks[NET_SINK].wait_for(first)["from"].startswith("SRS0=")
    try:
        relay.maps.write(files)
        wait_until(lambda: relay.read("/run/vpes/maps-version") == "srs-fresh", 15, "srs-fresh")
        second = unique("srs after")
        relay_send(relay, "x@fresh.example", "someone@elsewhere.test", second)
        assert relay.sinks[NET_SINK].wait_for(second)["from"] == "x@fresh.example"
    finally:
        relay.maps.write(relay_maps("srs-1"))
        wait_until(lambda: relay.read("/run/vpes/maps-version") == "srs-1", 15, "srs-1")


# --- the MX ---------------------------------------------------------------------


def test_a_bounce_to_a_forwarded_message_goes_back_to_its_sender(relay: Relay, mx: MX) -> None:
    # The relay makes the address (a forward of someone@gmail.test's mail)...
    subject = unique("srs forwarded")
    relay_send(relay, "someone@gmail.test", "someone@elsewhere.test", subject)
    srs = relay.sinks[NET_SINK].wait_for(subject)["from"]
    # ... the receiving side bounces it to the MX, which returns it to the
    # original sender through its relayhost.
    returned = unique("srs returned")
    bounce(mx.edge, srs, returned)
    got = mx.out.wait_for(returned)
    assert got["from"] == ""
    assert [a.lower() for a in got["to"]] == ["someone@gmail.test"]
    assert header(got["data"], "To") == srs  # headers are left as they were


def test_a_bounce_for_a_hosted_sender_reaches_its_tenant(
    relay: Relay, mx: MX, tenant: Running
) -> None:
    # alice@example.org's mail, forwarded by a server of the relay: the bounce
    # goes to alice's mailbox at the tenant that hosts example.org.
    subject = unique("srs forwarded")
    relay_send(relay, "alice@example.org", "someone@elsewhere.test", subject)
    srs = relay.sinks[NET_SINK].wait_for(subject)["from"]
    assert srs.startswith("SRS0=") and srs.endswith(f"=example.org=alice@{SRS_DOMAIN}")
    returned = unique("srs to tenant")
    bounce(mx.edge, srs, returned)
    fetched = find(tenant, "alice@example.org", returned)
    assert b"Delivered-To: alice@example.org" in fetched


REFUSED = {
    "forged hash": lambda: forged(srs0("victim", "gmail.test")),
    "another secret": lambda: srs0("victim", "gmail.test", secret="not-the-secret-0123456789"),
    "expired": lambda: srs0("victim", "gmail.test", days_ago=30),
    "unsigned": lambda: f"SRS0=gmail.test=victim@{SRS_DOMAIN}",
    "plain address": lambda: f"victim@{SRS_DOMAIN}",
}


@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("sender", ["", "spammer@bad.example"], ids=["null", "sender"])
def test_a_forged_or_expired_srs_address_is_refused_at_rcpt(mx: MX, make: Any, sender: str) -> None:
    code, text = rcpt_reply(mx.edge, make(), sender)
    assert code == 550, text
    assert b"Recipient address rejected: not a valid SRS address" in text


def test_a_valid_hash_relays_nothing_outside_the_srs_domain(mx: MX) -> None:
    # The same signed local part at another domain: not ours to relay; at a
    # hosted domain, an unknown recipient (only the SRS domain is reversed).
    signed = srs0("victim", "gmail.test").split("@")[0]
    code, text = rcpt_reply(mx.edge, f"{signed}@elsewhere.test")
    assert code == 554 and b"Relay access denied" in text, text
    code, text = rcpt_reply(mx.edge, f"{signed}@example.org")
    assert code == 550 and b"User unknown in relay recipient table" in text, text
    # And with the right domain it is taken (the control for both above).
    assert rcpt_reply(mx.edge, f"{signed}@{SRS_DOMAIN}")[0] == 250


# --- the secret and the processes -----------------------------------------------


def test_the_secret_is_in_no_log_and_no_environment(relay: Relay, mx: MX) -> None:
    for name, logs in ((relay.name, relay.logs()), (mx.edge.name, mx.edge.logs())):
        assert "started postsrsd" in logs, logs
        assert SECRET not in logs
        inspect = podman("inspect", "--format", "{{json .Config.Env}}", name).stdout
        assert SECRET not in inspect
    # The package's own install-time secret is not in the image.
    assert podman("exec", relay.name, "test", "-e", "/etc/postsrsd.secret", check=False).returncode
    # postsrsd runs as its own user, which cannot read the mounted secret.
    users = podman("top", relay.name, "user", "comm").stdout.split("\n")
    assert [u for u in users if "postsrsd" in u and u.split()[0] != "postsrsd"] == []
    assert any(u.split()[:1] == ["postsrsd"] for u in users), users
    out = podman("exec", "--user", "postsrsd", relay.name, "cat", f"{SRS_DIR}/secret", check=False)
    assert out.returncode != 0 and SECRET not in out.stdout


def test_srs_without_its_secret_refuses_to_start(edge_image: str, tmp_path: Path) -> None:
    maps = EdgeMaps(tmp_path / "maps")
    maps.write(mx_maps("192.0.2.1", "v"))
    box = SrsEdge(
        edge_image, host_address(35), maps,
        env={"VPES_HOSTNAME": "mx.edge.test", "VPES_SRS_DOMAIN": SRS_DOMAIN},
    )  # fmt: skip
    assert f"there is no {SRS_DIR}/secret" in box.start_refused()
