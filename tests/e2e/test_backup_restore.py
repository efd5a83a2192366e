"""Backup and restore, end to end: mail in through SMTP, out through IMAP, via S3.

The operator runs as the chart's ServiceAccount; the tenant StatefulSet's pod
and the backup and restore Jobs' pods really run (on the real node: kubelet,
containerd) with the tenant and backup images; S3 is moto's server with real key checks.
200 messages go in over SMTP, get flags and folders over IMAP, are backed up;
the server and its volume are deleted; a MailRestore brings them back into a
new server, where IMAP shows the same messages, flags, folders and bytes, and
the same login and DKIM key work. A second restore into that (now non-empty)
server is refused without touching its mail.
"""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import ssl
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from vpes_devcluster import Cluster
from vpes_devcluster.node_config import NODE_IP, POD_CIDR
from vpes_operator import API_VERSION
from vpes_operator.backup.repository import Repository
from vpes_operator.builders.dav import DAV_PORT
from vpes_operator.clients.kube import Kube

from tests.backup_support import backup_env, install_credentials, s3_server
from tests.dav_samples import event
from tests.e2e.support import READINESS_ENV, service_ip
from tests.integration.operator_support import (
    OperatorProcess,
    condition,
    harvest_secrets,
    install_platform,
    plan_body,
    server_body,
    wait_for,
    wait_ready,
)
from tests.s3_support import S3Server

DOMAIN = "restore.example"
ADDRESS = f"alice@{DOMAIN}"
PASSWORD = "alice-" + uuid.uuid4().hex[:12]
MESSAGES = 200


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    # On the node's address: the backup Jobs' pods reach it there.
    yield from s3_server(tmp_path_factory, host=NODE_IP)


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    api: Kube,
    s3: S3Server,
    images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    tenant, backup = images["tenant"], images["backup"]
    kubeconfig = install_platform(cluster)
    install_credentials(api, s3)
    env = backup_env(
        s3,
        backup,
        VPES_TENANT_IMAGE=tenant,
        VPES_DAV_IMAGE=images["dav"],
        VPES_EDGE_NETWORKS=POD_CIDR,
        VPES_DNS_DEFAULT_PROVIDER="manual",
        **READINESS_ENV,
    )
    op = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator-e2e"), env)
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def plan(api: Kube) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    api.apply(
        plan_body(
            name,
            resources={"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
            backup={"enabled": False},
            features={"calendar": True},
        )
    )
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


@pytest.fixture
def ns(api: Kube, namespace: str) -> Iterator[str]:
    yield namespace
    harvest_secrets(api, namespace)


def spec(plan: str) -> dict[str, Any]:
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": [DOMAIN],
        "mailboxes": [
            {
                "address": ADDRESS,
                "quota": "512Mi",
                "passwordSecretRef": {"name": "alice-password", "key": "password"},
            }
        ],
    }


def tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the operator's bootstrap certificate is self-signed
    return ctx


def imap(host: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(host, 993, ssl_context=tls(), timeout=30)
    client.login(ADDRESS, PASSWORD)
    return client


def send_all(host: str) -> dict[str, bytes]:
    """200 messages in through port 25; Message-ID → the bytes sent."""
    sent: dict[str, bytes] = {}
    with smtplib.SMTP(host, 25, timeout=30) as smtp:
        smtp.ehlo("sender.example")
        for i in range(MESSAGES):
            msg = EmailMessage()
            msg["From"] = f"carol@{DOMAIN}"  # a hosted domain: no DNS look-up here
            msg["To"] = ADDRESS
            msg["Subject"] = f"message {i}"
            msg["Message-ID"] = f"<m{i}.{uuid.uuid4().hex}@sender.example>"
            msg.set_content(f"body {i}\n" + "x" * (i * 37 % 3000))
            smtp.send_message(msg)
            sent[str(msg["Message-ID"])] = msg.as_bytes()
    return sent


def mailbox_state(client: imaplib.IMAP4_SSL) -> dict[str, tuple[str, frozenset[str], bytes]]:
    """Message-ID → (folder, flags, the body as stored) for every message of every folder."""
    out: dict[str, tuple[str, frozenset[str], bytes]] = {}
    _, folders = client.list()
    for line in folders:
        name = line.decode().split(" ")[-1].strip('"')
        client.select(name, readonly=True)
        _, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item
            flags = frozenset(re.findall(rb"\\[A-Za-z]+", head.split(b"BODY[]")[0]))
            found = re.search(rb"(?im)^message-id:\s*(<[^>]+>)", body)
            assert found, body[:200]
            out[found.group(1).decode()] = (name, frozenset(f.decode() for f in flags), body)
    return out


def arrange(client: imaplib.IMAP4_SSL) -> None:
    """Folders and flags a person would leave: an Archive, flagged and read messages."""
    client.create("Archive")
    client.select("INBOX")
    client.uid("STORE", "1:100", "+FLAGS", r"(\Seen)")
    client.uid("STORE", "20:49", "+FLAGS", r"(\Flagged)")
    client.uid("COPY", "150:199", "Archive")
    client.uid("STORE", "150:199", "+FLAGS", r"(\Deleted)")
    client.expunge()
    client.select("Archive")
    client.store("1:10", "+FLAGS", r"(\Answered)")


def wait_phase(api: Kube, kind: str, ns: str, name: str, phase: str, timeout: float) -> Any:
    def check() -> dict[str, Any] | None:
        obj = api.get(API_VERSION, kind, ns, name)
        status = (obj or {}).get("status") or {}
        if status.get("phase") == "Failed" and phase != "Failed":
            raise AssertionError(f"{kind} {name} failed: {status.get('message')}")
        return obj if status.get("phase") == phase else None

    return wait_for(check, f"{kind} {name} {phase}", timeout=timeout)


def dkim_keys(api: Kube, ns: str, server: str) -> dict[str, str]:
    secret = api.get("v1", "Secret", ns, f"{server}-credentials") or {}
    return {k: v for k, v in (secret.get("data") or {}).items() if "dkim" in k}


EVENT = event("kept@restore.example", "Kept across a restore")
CALENDAR_EVENT = f"/{ADDRESS}/family/kept.ics"


def store_event(host: str) -> None:
    """A calendar with one event in the server's own Radicale (its Service's dav port)."""
    with httpx.Client(base_url=f"http://{host}:{DAV_PORT}", auth=(ADDRESS, PASSWORD)) as c:
        assert c.request("MKCALENDAR", f"/{ADDRESS}/family/").status_code == 201
        assert c.put(CALENDAR_EVENT, content=EVENT).status_code == 201


def read_event(host: str) -> str | None:
    try:
        with httpx.Client(base_url=f"http://{host}:{DAV_PORT}", auth=(ADDRESS, PASSWORD)) as c:
            got = c.get(CALENDAR_EVENT)
    except httpx.HTTPError:
        return None
    return got.text if got.status_code == 200 else None


def test_mail_survives_backup_deletion_and_restore_into_a_new_server(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, ns: str
) -> None:
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "alice-password", "namespace": ns},
            "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
        }
    )
    api.apply(server_body("alice", ns, spec(plan)))
    wait_ready(api, ns, "alice", timeout=240)
    host = service_ip(api, ns, "alice")

    sent = send_all(host)
    client = wait_for(lambda: imap(host), "IMAP login", timeout=60)
    wait_for(
        lambda: client.select("INBOX")[1][0] == str(MESSAGES).encode(),
        f"{MESSAGES} messages delivered",
        timeout=120,
    )
    arrange(client)
    before = mailbox_state(client)
    client.logout()
    assert len(before) == MESSAGES
    assert {
        mid: body.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
        for mid, (_, _, body) in before.items()
    } == {mid: raw.split(b"\n\n", 1)[1] for mid, raw in sent.items()}
    assert sum(1 for f, _, _ in before.values() if f == "Archive") == 50
    keys_before = dkim_keys(api, ns, "alice")
    assert keys_before
    service_ip(api, ns, "alice", port=DAV_PORT)
    store_event(host)
    event_before = read_event(host)
    assert event_before and "Kept across a restore" in event_before

    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "MailBackup",
            "metadata": {"name": "before-delete", "namespace": ns},
            "spec": {"server": "alice"},
        }
    )
    done = wait_phase(api, "MailBackup", ns, "before-delete", "Completed", timeout=240)
    status = done["status"]
    assert re.fullmatch(r"[0-9a-f]{8,64}", status["snapshotId"])
    assert status["files"] >= MESSAGES and status["totalBytes"] > 0
    assert status["repository"].startswith(f"{ns}/alice-")
    # In the server's own bucket (isolation "bucket": the Job had that bucket's key only).
    own = f"{s3.bucket}-{Repository.parse(status['repository']).label}"
    assert s3.keys(f"vpes/{status['repository']}/snapshots/", bucket=own)

    def last_backup() -> str | None:
        server = api.get(API_VERSION, "PersonalMailServer", ns, "alice") or {}
        return str(((server.get("status") or {}).get("lastBackup") or {}).get("name") or "")

    # The server's status follows the MailBackup's (a write of its own, just after).
    assert wait_for(last_backup, "the server's lastBackup", timeout=30) == "before-delete"
    # The Job's Secret (S3 credentials, the key) left the namespace with the Job's end.
    assert api.get("v1", "Secret", ns, f"{status['job']}-env") is None

    api.delete(API_VERSION, "PersonalMailServer", ns, "alice")

    def gone() -> bool:
        tenant = "app.kubernetes.io/name=vpes-tenant,vpes.io/server=alice"
        return (
            api.get(API_VERSION, "PersonalMailServer", ns, "alice") is None
            and api.get("v1", "PersistentVolumeClaim", ns, "alice-mail") is None
            and not api.list("v1", "Pod", ns, labels=tenant)
        )

    wait_for(gone, "the server, its pod and its volume gone", timeout=120)
    # Its backups stay (the provider's retention), with the key outside the namespace.
    assert api.get(API_VERSION, "MailBackup", ns, "before-delete") is not None

    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "MailRestore",
            "metadata": {"name": "bring-back", "namespace": ns},
            "spec": {"backup": "before-delete", "target": "alice-restored"},
        }
    )
    restored = wait_phase(api, "MailRestore", ns, "bring-back", "Completed", timeout=300)
    assert restored["status"]["files"] >= MESSAGES
    wait_ready(api, ns, "alice-restored", timeout=240)
    assert dkim_keys(api, ns, "alice-restored") == keys_before
    host = service_ip(api, ns, "alice-restored")

    client = wait_for(lambda: imap(host), "IMAP login on the restored server", timeout=60)
    after = mailbox_state(client)
    client.logout()
    assert after == before
    # The calendar came back with the mail (it lives on the same volume).
    service_ip(api, ns, "alice-restored", port=DAV_PORT)
    assert wait_for(lambda: read_event(host), "the restored calendar event", timeout=60) == (
        event_before
    )

    # A second restore into the restored server, which now holds mail: refused.
    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "MailRestore",
            "metadata": {"name": "again", "namespace": ns},
            "spec": {"backup": "before-delete", "target": "alice-restored"},
        }
    )
    refused = wait_phase(api, "MailRestore", ns, "again", "Failed", timeout=300)
    c = condition(refused, "Failed")
    assert c is not None and c["reason"] == "VolumeNotEmpty"
    assert "overwrite: true" in c["message"]
    wait_ready(api, ns, "alice-restored", timeout=240)
    # The target was held stopped while the Job looked at its volume: it starts again.
    client = wait_for(lambda: imap(host), "IMAP login after the refused restore", timeout=180)
    assert mailbox_state(client) == before
    client.logout()
