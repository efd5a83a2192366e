"""The customers of ``bench/panel.py``: realistic servers, their status and the objects the
operator would have made for the panel in each namespace (the operator does not run
in the benchmark).

Each customer is a namespace ``bp-NNNN`` with a PersonalMailServer ``mail``: two
domains, five mailboxes (quotas, display names, aliases), a forward, the owner
managing it from the panel; its status as the operator writes it (through the status
subresource): every condition, the DNS records of both domains (the operator's own
record builder) with live verdicts, usage per mailbox, outbound counts, the last
backup. Beside it: the ServiceAccount ``vpes-customer`` and its RoleBinding, the
panel's RoleBinding ``vpes-panel`` (impersonation), the Secret ``vpes-logins`` with
the mailboxes' BLF-CRYPT hashes and the panel's empty Secret ``vpes-panel``.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from vpes_operator import API_VERSION, crypto
from vpes_operator.builders import access
from vpes_operator.clients.kube import Kube
from vpes_operator.dns.records import server_records
from vpes_operator.models.conditions import ConditionType as C
from vpes_operator.models.conditions import Reason
from vpes_operator.models.server import PersonalMailServerStatus
from vpes_operator.settings import OperatorSettings

PLAN = "bench-panel"
SERVER = "mail"
PANEL_NAMESPACE = "vpes-system"
PANEL_SA = "vpes-panel"
# The operator as the chart configures it for the panel (its access builders read these).
OPERATOR = OperatorSettings(panel_service_account=PANEL_SA, panel_namespace=PANEL_NAMESPACE)
GIB = 1024**3
MIB = 1024**2
# The mailboxes of every customer: local part, domain (0 or 1), quota, aliases.
MAILBOXES: list[tuple[str, int, str, list[str]]] = [
    ("owner", 0, "4Gi", ["postmaster", "abuse"]),
    ("alice", 0, "2Gi", ["info"]),
    ("bob", 0, "", []),
    ("carol", 1, "2Gi", ["sales", "orders"]),
    ("dave", 1, "1Gi", []),
]
NAMES = {"owner": "Olivia Owner", "alice": "Alice", "carol": "Carol (shop)"}


def plan_body() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailPlan",
        "metadata": {"name": PLAN},
        "spec": {
            "displayName": "Family",
            "resources": {
                "requests": {"cpu": "10m", "memory": "24Mi"},
                "limits": {"memory": "96Mi"},
            },
            "storage": "10Gi",
            "maxDomains": 3,
            "maxMailboxes": 10,
            "defaultQuota": "1Gi",
            "maxMessageSize": "25Mi",
            "outboundPerHour": 200,
        },
    }


@dataclass(frozen=True)
class Customer:
    index: int
    password: str

    @property
    def namespace(self) -> str:
        return f"bp-{self.index:04d}"

    @property
    def domains(self) -> list[str]:
        return [f"family{self.index}.example", f"shop{self.index}.example"]

    def address(self, local: str, domain: int = 0) -> str:
        return f"{local}@{self.domains[domain]}"

    @property
    def owner(self) -> str:
        return self.address("owner")

    @property
    def addresses(self) -> list[str]:
        return [self.address(local, d) for local, d, _, _ in MAILBOXES]


def spec(c: Customer, openpgp_key: str | None = None) -> dict[str, Any]:
    """The server's spec; with `openpgp_key` (armored), the owner's mailbox publishes it
    in the Web Key Directory."""
    mailboxes = []
    for local, d, quota, aliases in MAILBOXES:
        entry: dict[str, Any] = {"address": c.address(local, d)}
        if quota:
            entry["quota"] = quota
        if aliases:
            entry["aliases"] = aliases if d == 0 else [f"{a}@{c.domains[d]}" for a in aliases]
        if local in NAMES:
            entry["displayName"] = NAMES[local]
        if openpgp_key and local == "owner":
            entry["openpgpKey"] = openpgp_key
        mailboxes.append(entry)
    return {
        "plan": PLAN,
        "owner": {"email": f"olivia{c.index}@elsewhere.example", "name": "Olivia Owner"},
        "domains": c.domains,
        "mailboxes": mailboxes,
        "forwards": [
            {"from": c.address("support", 1), "to": [f"olivia{c.index}@elsewhere.example"]}
        ],
        "panel": {"admins": [c.owner]},
    }


def _condition(type_: str, reason: str, message: str, now: str, ok: bool = True) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "observedGeneration": 1,
    }


def status(c: Customer, dkim: str, now: dt.datetime) -> dict[str, Any]:
    """The status the operator writes for a healthy server whose second domain's records
    are not all published yet; checked against the operator's own status model."""
    ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    shop = c.domains[1]
    records = []
    for r in server_records(c.domains, OperatorSettings(), {d: {"vpes": dkim} for d in c.domains}):
        rec = r.wire()
        if r.domain == shop and r.type in ("TXT", "SRV") and "_dmarc" not in r.name:
            rec.update(check="Fail", found=[], fix=f"Publish this {r.type} record at {r.name}.")
        else:
            rec.update(check="Pass", found=[r.value])
        records.append(rec)
    failed = sum(1 for r in records if r["check"] == "Fail")
    used = [812 * MIB, 95 * MIB, 3 * MIB, 1400 * MIB, 0]
    quotas = [4 * GIB, 2 * GIB, 1 * GIB, 2 * GIB, 1 * GIB]
    usage = [
        {"address": a, "quotaBytes": q, "usedBytes": u, "messages": u // (40 * 1024)}
        for a, q, u in zip(c.addresses, quotas, used, strict=True)
    ]
    conditions = [
        _condition(C.READY, Reason.MAIL_SERVER_RUNNING, "the mail server runs and takes mail", ts),
        _condition(C.PROVISIONED, Reason.APPLIED, "every object of the server is applied", ts),
        _condition(
            C.DNS_PUBLISHED, Reason.PUBLISHED, "the records of 2 domain(s) are published", ts
        ),
        _condition(
            C.DNS_VERIFIED,
            Reason.RECORDS_NOT_FOUND,
            f"{failed} record(s) of {shop} are not published or answer otherwise",
            ts,
            ok=False,
        ),
        _condition(C.CERTIFICATE_READY, Reason.APPLIED, "the certificate is valid for 89 days", ts),
        _condition(C.BACKUP_HEALTHY, Reason.BACKUP_CURRENT, "the last backup completed today", ts),
        _condition(C.DELIVERABLE, Reason.RELAYING, "outbound mail is relayed", ts),
        _condition(C.STORAGE_HEALTHY, Reason.STORAGE_AVAILABLE, "77% of the volume is free", ts),
        _condition(C.DOMAINS_ROUTED, Reason.ROUTED, "the edge routes both domains here", ts),
    ]
    body: dict[str, Any] = {
        "phase": "Ready",
        "message": "running; DNS records of one domain missing",
        "observedGeneration": 1,
        "conditions": conditions,
        "endpoints": {
            "imapHost": "imap.vpes.test",
            "smtpHost": "smtp.vpes.test",
            "service": f"{SERVER}.{c.namespace}.svc",
            "webmailUrl": "https://webmail.vpes.test",
            "panelUrl": "https://panel.vpes.test",
        },
        "dnsRecords": records,
        "usage": {
            "mailboxes": len(usage),
            "domains": 2,
            "storageRequested": "10Gi",
            "quotaCommittedBytes": sum(quotas),
            "storageCapacityBytes": 10 * GIB,
            "storageUsedBytes": sum(used),
            "storageAvailableBytes": 10 * GIB - sum(used),
            "measuredAt": ts,
            "mailboxUsage": usage,
        },
        "outbound": {"recipients": 14, "limit": 200, "spam": 0, "held": False},
        "lastBackup": {"name": f"{SERVER}-nightly", "completedAt": ts, "snapshotId": "4f1c2a9e"},
    }
    return PersonalMailServerStatus.model_validate(body).wire()


def hashes(c: Customer) -> dict[str, str]:
    """The mailboxes' BLF-CRYPT hashes (cost 4), as the operator writes ``vpes-logins``."""
    return {a: crypto.hash_password(c.password, 4) for a in c.addresses}


def objects(c: Customer, openpgp_key: str | None = None) -> list[dict[str, Any]]:
    """The namespace, what the operator makes in it for the panel (its own builders:
    the ServiceAccount, both bindings, the panel's empty Secret, ``vpes-logins`` with
    this server's hashes) and the server (`spec`)."""
    ns = c.namespace
    logins = access.secret(access.LOGINS_SECRET, ns)
    doc = access.logins_document(hashes(c)).encode()
    logins["data"] = {access.logins_key(SERVER): base64.b64encode(doc).decode()}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        *access.access_objects(OPERATOR, ns),
        access.secret(access.PANEL_SECRET, ns),
        logins,
        {
            "apiVersion": API_VERSION,
            "kind": "PersonalMailServer",
            "metadata": {"name": SERVER, "namespace": ns},
            "spec": spec(c, openpgp_key),
        },
    ]


def make(kube: Kube, c: Customer, dkim: str, openpgp_key: str | None = None) -> None:
    """The customer's namespace, objects and server with its status."""
    for obj in objects(c, openpgp_key):
        kube.apply(obj)
    path = kube.resource(API_VERSION, "PersonalMailServer").path(c.namespace, SERVER) + "/status"
    kube.request(
        "PATCH",
        path,
        body={"status": status(c, dkim, dt.datetime.now(dt.UTC))},
        content_type="application/merge-patch+json",
    )


def dkim_value() -> str:
    """A DKIM TXT value of a 2048-bit key (one for every domain: only its size matters)."""
    return crypto.dkim_public_record(crypto.generate_dkim_key(2048))
