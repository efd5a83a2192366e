"""CertificateReady of a server from its cert-manager Certificates' status (or the
operator's own ACME orders, `certs/orders.py`): pure.

cert-manager says how a Certificate is with two conditions: Ready (True once a valid
certificate for the current spec is in its Secret) and Issuing (True while it orders
one; False with reason Failed and the CA's or the solver's words when an order
failed, until the next attempt). `status.notAfter` is when the certificate in the
Secret expires.

A server with several Certificates (over 25 domains) is as good as its worst one: a
failed one makes CertificateReady False, else one still being issued makes it
Unknown, else it is True until the earliest expiry.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import Cond
from .models.conditions import ConditionType, Reason

CERTIFICATE_READY = ConditionType.CERTIFICATE_READY
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,127}$")


@dataclass(frozen=True)
class CertState:
    """What one Certificate says: True (valid), False (failed), None (not yet)."""

    ready: bool | None
    reason: str
    message: str
    names: int
    not_after: dt.datetime | None


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time as the API server writes it (None: absent or not a time)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def state(cert: Mapping[str, Any] | None, names: int) -> CertState:
    """One Certificate as read (None: not there yet) → its state."""
    if cert is None:
        return CertState(
            None, Reason.CERTIFICATE_ISSUING, "the Certificate is being made", names, None
        )
    status = cert.get("status") or {}
    generation = (cert.get("metadata") or {}).get("generation")
    ready, issuing = _condition(status, "Ready"), _condition(status, "Issuing")
    not_after = parse_time(status.get("notAfter"))
    current = ready is not None and (
        ready.get("observedGeneration") is None or ready.get("observedGeneration") == generation
    )
    if ready is not None and ready.get("status") == "True" and current:
        return CertState(True, Reason.CERTIFICATE_ISSUED, "", names, not_after)
    if issuing is not None and issuing.get("status") == "False":
        return _failed(issuing, names, not_after)
    if issuing is not None and issuing.get("status") == "True":
        said = str(issuing.get("message") or "an order is under way")
        return CertState(None, Reason.CERTIFICATE_ISSUING, said, names, not_after)
    if ready is not None and ready.get("status") == "False" and current:
        return _failed(ready, names, not_after)
    return CertState(
        None, Reason.CERTIFICATE_ISSUING, "waiting for cert-manager to take it up", names, None
    )


def _failed(cond: Mapping[str, Any], names: int, not_after: dt.datetime | None) -> CertState:
    raw = str(cond.get("reason") or "")
    reason = raw if _REASON.fullmatch(raw) else Reason.CERTIFICATE_FAILED
    message = str(cond.get("message") or "cert-manager gave no message")
    return CertState(False, reason, message, names, not_after)


def when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def condition(
    states: Sequence[tuple[str, CertState]], by: str = "cert-manager", kind: str = "Certificate"
) -> Cond:
    """CertificateReady from each certificate's (name, state) of one server; `by` who
    issues them, `kind` of the object `name` names (with several)."""
    several = len(states) > 1
    for name, s in states:
        if s.ready is False:
            where = f"{kind} {name}: " if several else ""
            return Cond(
                CERTIFICATE_READY,
                False,
                s.reason,
                f"{where}{by} could not issue the certificate: {s.message}",
            )
    for name, s in states:
        if s.ready is None:
            where = f"{kind} {name}" if several else "the certificate"
            return Cond(
                CERTIFICATE_READY,
                None,
                Reason.CERTIFICATE_ISSUING,
                f"{by} is issuing {where} for {s.names} names: {s.message}",
            )
    names = sum(s.names for _, s in states)
    ends = [s.not_after for _, s in states if s.not_after is not None]
    until = f" valid until {when(min(ends))}" if ends else ""
    word = "certificate" if len(states) == 1 else f"{len(states)} certificates"
    return Cond(
        CERTIFICATE_READY, True, Reason.CERTIFICATE_ISSUED, f"{word} for {names} names{until}"
    )


def expiry(states: Sequence[tuple[str, CertState]]) -> dt.datetime | None:
    """When the first of a server's certificates expires (None: none issued yet)."""
    ends = [s.not_after for _, s in states if s.not_after is not None]
    return min(ends) if ends else None


def not_configured(why: str) -> Cond:
    return Cond(CERTIFICATE_READY, False, Reason.CERTIFICATES_NOT_CONFIGURED, why)


def not_installed() -> Cond:
    return Cond(
        CERTIFICATE_READY,
        False,
        Reason.CERT_MANAGER_NOT_INSTALLED,
        "a cert-manager issuer is configured but cert-manager is not installed (no "
        "certificates.cert-manager.io CRD): install cert-manager, or set "
        "certificates.issuer.name to empty",
    )


def no_domains() -> Cond:
    return Cond(
        CERTIFICATE_READY,
        False,
        Reason.NO_DOMAINS_ROUTED,
        "the edge routes none of this server's domains to it (see DomainsRouted): "
        "there are no names to certify",
    )


def rejected(message: str) -> Cond:
    """The API server refused the server's Certificate or Ingress (e.g. a webhook)."""
    return Cond(
        CERTIFICATE_READY,
        False,
        Reason.APPLY_REJECTED,
        f"the API server refused the certificate's objects: {message}",
    )
