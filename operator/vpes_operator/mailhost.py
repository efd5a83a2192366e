"""A server's own mail host (spec.mailHost) in the certificates passes.

Mail clients of a server with a mail host connect to that name, which the DNS points
at the server's dedicated LoadBalancer (`dns/mailhost.py`): straight to the tenant,
which then must present a certificate for it. Whichever path certifies the web names
also certifies the mail host, as one more certificate of the server:

- cert-manager (`webcerts.py`): one more Certificate (`builders.mailhost`), swept
  with the server's others;
- the operator's own ACME client (`acmecerts.py`): one more Secret ordered by DNS-01
  only (the tenant serves no HTTP, so HTTP-01 cannot prove the name);

and once that Secret holds a pair that serves the name (`certs.mailhost.problem`), it
is copied into the server's own Secret's `tls.crt` and `tls.key` (a pod mounts only
Secrets of its namespace), where the tenant picks it up without a restart
(images/tenant/vpes-init reloads on a changed pair; open sessions go on) and
`credentials.gather` keeps it to its end instead of its self-signed bootstrap. Until
then the bootstrap stays.

CertificateReady covers the mail host's certificate too (as good as the worst one),
and False says what to fix when the mail host cannot be served: a plan without a
dedicated address (`MailHostNeedsDedicatedAddress`), or ACME by HTTP-01
(`MailHostNeedsDNS01`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import API_VERSION, certstatus, naming, watched
from .builders import certificates, mailhost
from .certs import stored as st
from .certs.mailhost import problem
from .certs.orders import Orders
from .certstatus import CertState
from .clients.kube import Kube
from .conditions import Cond
from .edge.routing import ServerKey, key_of
from .models.conditions import Reason
from .models.plan import MailPlanSpec
from .models.server import PersonalMailServer
from .settings import OperatorSettings

log = logging.getLogger(__name__)

CERT, KEY = st.CERT_FIELD, st.KEY_FIELD
Found = dict[tuple[str, str], dict[str, Any]]
States = list[tuple[str, CertState]]
# The pair last refused per server, and why (its warning is logged once).
_refused: dict[ServerKey, tuple[str, str]] = {}


@dataclass(frozen=True)
class MailHost:
    """A server's mail host; `blocked` says why it cannot be served (None: it can)."""

    key: ServerKey
    host: str
    blocked: Cond | None = None


def sells_dedicated(plan: Mapping[str, Any] | None) -> bool:
    """Whether a plan (its spec as stored) gives its servers a dedicated address; one
    that does not exist or is invalid does not (Provisioned says what is wrong)."""
    if plan is None:
        return False
    try:
        return MailPlanSpec.model_validate(plan).features.dedicated_address
    except ValidationError:
        return False


def plan_of(kube: Kube, name: str) -> Mapping[str, Any] | None:
    """The plan as the watch delivered it, else as the API server has it."""
    spec = watched.PLANS.first(name)
    if spec is not None or not name:
        return spec
    plan = kube.get(API_VERSION, "MailPlan", None, name)
    return dict(plan.get("spec") or {}) if plan is not None else None


def needs_dedicated(host: str, plan: str) -> Cond:
    return Cond(
        certstatus.CERTIFICATE_READY,
        False,
        Reason.MAIL_HOST_NEEDS_DEDICATED_ADDRESS,
        f"the mail host {host} (spec.mailHost) needs a plan with a dedicated address "
        f"(features.dedicatedAddress), and the plan {plan!r} has none: mail clients would "
        "reach the shared edge, whose certificate does not name it. Move the server to a "
        "plan with a dedicated address, or remove spec.mailHost and use the provider's mail "
        "host names",
    )


def needs_dns01(host: str, challenge: str) -> Cond:
    return Cond(
        certstatus.CERTIFICATE_READY,
        False,
        Reason.MAIL_HOST_NEEDS_DNS01,
        f"the mail host {host} (spec.mailHost) can be certified by DNS-01 only (clients "
        f"reach the server itself, which serves no HTTP), and the operator's ACME client "
        f"answers {challenge}: set certificates.acme.challenge to dns-01 (with the RFC 2136 "
        "DNS provider), or issue through cert-manager with a DNS-01 issuer",
    )


def wanted(kube: Kube, server: PersonalMailServer) -> MailHost | None:
    """The server's mail host (None: it has none)."""
    host = server.spec.get("mailHost")
    if not isinstance(host, str) or not host:
        return None
    key = key_of(server)
    if not sells_dedicated(plan_of(kube, server.plan)):
        return MailHost(key, host, needs_dedicated(host, server.plan))
    return MailHost(key, host)


def combine(cond: Cond, states: States, mine: tuple[str, CertState], by: str, kind: str) -> Cond:
    """CertificateReady with the mail host's certificate among the server's others; a
    condition that no certificate made (no domains routed, refused) stays."""
    if not states and cond.status is False:
        return cond
    return certstatus.condition([*states, mine], by=by, kind=kind)


def _decoded(secret: Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    """A Secret's tls.crt and tls.key as text and as stored (base64); empty when absent."""
    data = (secret or {}).get("data") or {}
    raw_cert, raw_key = str(data.get(CERT) or ""), str(data.get(KEY) or "")
    try:
        cert = base64.b64decode(raw_cert, validate=True).decode()
        key = base64.b64decode(raw_key, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", "", "", ""
    return cert, key, raw_cert, raw_key


def install(
    kube: Kube, mail: MailHost, source: Mapping[str, Any] | None, now: dt.datetime | None = None
) -> bool:
    """Copy the issued pair in `source` (the certificate's Secret) into the server's own
    Secret when it serves the mail host and is not there yet; whether it was copied.
    Anything else keeps what the server's Secret holds (the bootstrap until then)."""
    cert, key, raw_cert, raw_key = _decoded(source)
    if not cert:
        return False
    why = problem(cert, key, mail.host, now or dt.datetime.now(dt.UTC))
    if why is not None:
        if _refused.get(mail.key) != (raw_cert, why):  # once per certificate, not each pass
            log.warning(
                "the certificate for %s is not installed in %s: %s", mail.host, mail.key, why
            )
            _refused[mail.key] = (raw_cert, why)
        return False
    _refused.pop(mail.key, None)
    ns, name = mail.key.namespace, naming.credentials_secret(mail.key.name)
    target = kube.get("v1", "Secret", ns, name)
    if target is None:
        return False  # the server's reconcile makes it first
    data = target.get("data") or {}
    if data.get(CERT) == raw_cert and data.get(KEY) == raw_key:
        return False
    kube.merge_patch("v1", "Secret", ns, name, {"data": {CERT: raw_cert, KEY: raw_key}})
    log.info("the certificate for %s is installed in Secret %s/%s", mail.host, ns, name)
    return True


@dataclass
class MailHosts:
    """The mail hosts' part of a certificates pass (one per path)."""

    kube: Kube
    settings: OperatorSettings

    def certificates(self, mail: MailHost | None) -> list[dict[str, Any]]:
        """cert-manager: the mail host's Certificate, when it can be served."""
        if mail is None or mail.blocked is not None:
            return []
        key = mail.key
        return [mailhost.certificate(key.namespace, key.name, mail.host, self.settings)]

    def after_cert_manager(self, mail: MailHost | None, cond: Cond) -> Cond:
        """cert-manager: install what its Secret holds; the server's CertificateReady."""
        if mail is None:
            return cond
        if mail.blocked is not None:
            return mail.blocked
        name = mailhost.secret_name(mail.key.namespace, mail.key.name)
        install(
            self.kube, mail, self.kube.get("v1", "Secret", self.settings.operator_namespace, name)
        )
        return cond

    def acme(
        self,
        orders: Orders,
        mail: MailHost | None,
        found: Found,
        wanted: set[tuple[str, str]],
        done: tuple[Cond, States],
        by: str,
    ) -> tuple[Cond, States]:
        """The operator's ACME client: order the mail host's certificate when due (DNS-01
        only), install it; the server's CertificateReady and certificates' states."""
        cond, states = done
        if mail is None:
            return cond, states
        if mail.blocked is not None:
            return mail.blocked, states
        if self.settings.acme_challenge != "dns-01":
            return needs_dns01(mail.host, self.settings.acme_challenge), states
        key = mail.key
        name = mailhost.secret_name(key.namespace, key.name)
        wanted.add(("Secret", name))
        have = found.get(("Secret", name))
        labels = certificates.labels(key.namespace, key.name)
        state = orders.state(name, (mail.host,), labels, st.read(have))
        install(self.kube, mail, have)
        mine = (name, state)
        return combine(cond, states, mine, by, "Secret"), [*states, mine]
