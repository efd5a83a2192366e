"""The edge's own mail names certified through cert-manager: one Certificate.

Where cert-manager is used (an issuer configured and its Certificate CRD installed),
each certificates pass (`EdgeCertificate.publish`) applies one Certificate of the
edge's mail names (`acmecerts.edge_names`: the names the operator's own ACME client
certifies) whose Secret is `edge_tls_secret`, the one the edge's pods mount
(`builders.certificates.edge_certificate`), and reads its status:

- `vpes_edge_certificate_expiry_timestamp_seconds{secret}` from `status.notAfter`,
  the same series the ACME path sets (and the alert VpesEdgeCertificateExpiring
  reads); removed when no Certificate is wanted any more;
- the certificate belongs to no server, so no CertificateReady says how it is: a
  change of its state is logged and posted as an event on the Certificate itself
  (Warning with cert-manager's reason and message when issuance failed, Normal once
  issued), beside cert-manager's own events there; a Certificate the API server
  refuses (a webhook, say) is logged with its words, and the pass goes on.

Another Certificate of ours (another Secret name), or this one when the issuer or
the edge's names are emptied, is deleted; its Secret is kept: the edge's pods mount
it and keep serving what it holds. Switching to the operator's own ACME client
(`release`) deletes the Certificate and keeps the Secret too: that client takes the
same Secret over, keeping its certificate until renewal is due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import certstatus, metrics
from .acmecerts import edge_names
from .builders import certificates as b
from .certreport import Poster
from .certstatus import CertState
from .clients.kube import ApiError, Kube
from .conditions import Event
from .models.conditions import Reason
from .naming import LABEL_COMPONENT
from .settings import OperatorSettings
from .webcerts import apply_changed

log = logging.getLogger(__name__)

SELECTOR = f"{LABEL_COMPONENT}={b.EDGE_COMPONENT}"


def wanted(settings: OperatorSettings) -> dict[str, Any] | None:
    """The edge's Certificate under cert-manager (None: an issuer, a Secret name or
    the names are missing)."""
    names = edge_names(settings)
    if not settings.cert_manager_issuer_name or not settings.edge_tls_secret or not names:
        return None
    return b.edge_certificate(names, settings)


def event(s: CertState) -> Event | None:
    """What a change to state `s` is worth saying (None: nothing, while issuing)."""
    if s.ready is False and s.reason == Reason.APPLY_REJECTED:
        return Event(
            "Warning", s.reason, f"the API server refused the edge's Certificate: {s.message}"
        )
    if s.ready is False:
        return Event(
            "Warning",
            s.reason,
            f"cert-manager could not issue the certificate of the edge's {s.names} mail "
            f"names: {s.message}",
        )
    if s.ready is True:
        until = f", valid until {certstatus.when(s.not_after)}" if s.not_after else ""
        return Event(
            "Normal",
            Reason.CERTIFICATE_ISSUED,
            f"the certificate of the edge's {s.names} mail names is issued{until}",
        )
    return None


@dataclass
class EdgeCertificate:
    kube: Kube
    settings: OperatorSettings
    post: Poster
    said: tuple[str, bool | None, str, str] | None = None  # (name, ready, reason, message)
    exported: str | None = None  # the metric's `secret` label, when set

    def publish(self, installed: bool) -> None:
        """One pass under cert-manager's path (`installed`: its CRD serves v1)."""
        want = wanted(self.settings) if installed else None
        name = want["metadata"]["name"] if want else None
        have = self.sweep(name) if installed else None
        if want is None or name is None:
            self.export(None, None)
            self.said = None
            return
        try:
            have = apply_changed(self.kube, want, have)
        except ApiError as e:
            if e.status not in (400, 422):
                raise
            names = len(want["spec"]["dnsNames"])
            self.tell(have, CertState(False, Reason.APPLY_REJECTED, e.message, names, None))
            return
        state = certstatus.state(have, len(want["spec"]["dnsNames"]))
        self.export(name, state)
        self.tell(have, state)

    def export(self, secret: str | None, state: CertState | None) -> None:
        """The expiry series of `secret` (none: removed, as an old Secret name's)."""
        end = state.not_after if state is not None else None
        if self.exported is not None and (secret != self.exported or end is None):
            metrics.EDGE_CERTIFICATE_EXPIRY.remove(self.exported)
            self.exported = None
        if secret is not None and end is not None:
            metrics.EDGE_CERTIFICATE_EXPIRY.labels(secret).set(end.timestamp())
            self.exported = secret

    def tell(self, cert: dict[str, Any] | None, s: CertState) -> None:
        """Log and post a change of the Certificate's state (once per change)."""
        name = self.settings.edge_tls_secret
        said = (name, s.ready, s.reason, s.message)
        if said == self.said:
            return
        self.said = said
        e = event(s)
        if e is None:
            log.info("the edge's Certificate %s: %s", name, s.message)
            return
        if e.type == "Warning":
            log.warning("the edge's Certificate %s: %s: %s", name, e.reason, e.message)
        else:
            log.info("the edge's Certificate %s: %s", name, e.message)
        meta = (cert or {}).get("metadata") or {}
        if meta.get("uid"):
            ref = {
                "apiVersion": b.CERTIFICATE_API,
                "kind": "Certificate",
                "metadata": {"name": name, "namespace": meta["namespace"], "uid": meta["uid"]},
            }
            self.post(ref, [e])

    def sweep(self, keep: str | None) -> dict[str, Any] | None:
        """Delete our edge Certificates but `keep` (returned as it is, None: not there);
        their Secrets stay (the edge's)."""
        ns = self.settings.operator_namespace
        kept = None
        for obj in self.kube.list(b.CERTIFICATE_API, "Certificate", ns, labels=SELECTOR):
            name = obj["metadata"]["name"]
            if name == keep:
                kept = obj
                continue
            self.kube.delete(b.CERTIFICATE_API, "Certificate", ns, name)
            log.info("the edge's Certificate %s deleted (its Secret is kept)", name)
        return kept

    def release(self, installed: bool) -> None:
        """The operator's own ACME client certifies now: our Certificates go, their
        Secrets stay (that client keeps what they hold until renewal is due)."""
        if installed:
            self.sweep(None)
        self.said = None
