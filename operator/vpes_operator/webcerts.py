"""The hosted domains' web names certified through cert-manager, and CertificateReady.

One pass (`Publisher.publish`) takes every server the watches delivered
(`watched.EDGE`), decides which domains the edge routes to each (`edge.routing`, the
same decision as the edge's maps), and, when an issuer is configured and
cert-manager's Certificate CRD is installed:

- applies each server's Certificates and Ingress (`builders.certificates`) in the
  operator's namespace when the live ones differ (one list of each kind a pass);
- deletes those of servers that are gone, being deleted or route no domain any more,
  and of chunks a shrinking server no longer needs, with the Secrets cert-manager
  made for them (cert-manager leaves a Certificate's Secret behind);
- reads the Certificates' status into CertificateReady and the expiry metric.

Without an issuer (or vpes-web's Service) CertificateReady says certificates are not
configured; with an issuer but no CRD, that cert-manager is not installed. Whether
the CRD exists is asked every `certificates_crd_check_seconds`.

CertificateReady and the metric are written by `certreport.Reporter`, which the
operator's own ACME path (`acmecerts.py`, where cert-manager is not used) shares.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import certstatus, mailhost
from .builders import certificates
from .certreport import Poster, Reporter
from .certstatus import CertState
from .clients.kube import ApiError, Kube
from .conditions import Cond
from .edge.routing import ServerKey, key_of, live, route
from .models.server import PersonalMailServer
from .naming import LABEL_COMPONENT
from .settings import OperatorSettings

log = logging.getLogger(__name__)

CRD_API = "apiextensions.k8s.io/v1"
CRD_NAME = "certificates.cert-manager.io"
SELECTOR = f"{LABEL_COMPONENT}={certificates.COMPONENT}"
KINDS = (
    (certificates.CERTIFICATE_API, "Certificate"),
    (certificates.INGRESS_API, "Ingress"),
)
Found = dict[tuple[str, str], dict[str, Any]]  # (kind, name) → the live object


@dataclass
class CertManager:
    """Whether cert-manager's Certificate CRD serves v1, asked again every `every` s."""

    kube: Kube
    every: float
    present: bool = False
    checked: float | None = None

    def installed(self) -> bool:
        now = time.monotonic()
        if self.checked is not None and now - self.checked < self.every:
            return self.present
        crd = self.kube.get(CRD_API, "CustomResourceDefinition", None, CRD_NAME)
        versions = ((crd or {}).get("spec") or {}).get("versions") or []
        present = any(v.get("name") == "v1" and v.get("served") for v in versions)
        if present != self.present or self.checked is None:
            log.info("cert-manager's Certificate CRD %s", "found" if present else "not found")
        self.present, self.checked = present, now
        return present


def within(want: Any, have: Any) -> bool:
    """Whether `have` says everything `want` says (what the API server added is fine)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(within(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(within(w, h) for w, h in zip(want, have, strict=True))
        )
    return bool(want == have)


def differs(want: dict[str, Any], have: dict[str, Any] | None) -> bool:
    if have is None:
        return True
    labels = (have.get("metadata") or {}).get("labels") or {}
    return not within(want["metadata"]["labels"], labels) or not within(
        want["spec"], have.get("spec")
    )


def apply_changed(kube: Kube, obj: dict[str, Any], have: dict[str, Any] | None) -> dict[str, Any]:
    """The object as it is after applying it where it differs from `have`."""
    if not differs(obj, have):
        assert have is not None
        return have
    applied = kube.apply(obj)
    log.info("%s %s applied", obj["kind"], obj["metadata"]["name"])
    return applied


@dataclass
class Publisher:
    kube: Kube
    settings: OperatorSettings
    post: Poster
    report: Reporter | None = None  # None: one of its own
    cert_manager: CertManager = field(init=False)

    def __post_init__(self) -> None:
        self.cert_manager = CertManager(self.kube, self.settings.certificates_crd_check_seconds)
        if self.report is None:
            self.report = Reporter(self.kube, self.post)

    def off_reason(self) -> str | None:
        """Why certificates are off (None: they are on, where cert-manager is installed)."""
        s = self.settings
        if not s.cert_manager_issuer_name:
            return (
                "certificates are not configured: set certificates.issuer.name (a cert-manager "
                "Issuer or ClusterIssuer) in the chart's values"
            )
        if not s.web_service_name:
            return "certificates are not configured: vpes-web (web.enabled) is not installed"
        return None

    def publish(self, servers: Iterable[PersonalMailServer]) -> None:
        """One pass; an API error is raised (the caller tries again soon)."""
        current = live(servers)
        conds, ends = self.converge(current)
        assert self.report is not None
        self.report.export(ends)
        self.report.write_conditions(current, conds)

    def converge(
        self, servers: list[PersonalMailServer]
    ) -> tuple[dict[ServerKey, Cond], dict[ServerKey, dt.datetime]]:
        why = self.off_reason()
        if why is not None or not self.cert_manager.installed():
            if why is not None and self.cert_manager.installed():
                self.sweep(self.found(), set())  # switched off: take ours back
            cond = certstatus.not_configured(why) if why else certstatus.not_installed()
            return {key_of(s): cond for s in servers}, {}
        routes, found = route(servers), self.found()
        wanted: set[tuple[str, str]] = set()
        conds: dict[ServerKey, Cond] = {}
        ends: dict[ServerKey, dt.datetime] = {}
        for server in servers:
            key = key_of(server)
            objs = certificates.objects(
                key.namespace, key.name, routes.domains_of(key), self.settings
            )
            mail = mailhost.wanted(self.kube, server)  # spec.mailHost: one more Certificate
            objs += mailhost.MailHosts(self.kube, self.settings).certificates(mail)
            wanted |= {(obj["kind"], obj["metadata"]["name"]) for obj in objs}
            try:
                states = [self.apply_one(obj, found) for obj in objs]
            except ApiError as e:
                if e.status not in (400, 422):
                    raise
                conds[key] = certstatus.rejected(e.message)  # this server only
                continue
            issued = [state for state in states if state is not None]
            conds[key] = certstatus.condition(issued) if objs else certstatus.no_domains()
            conds[key] = mailhost.MailHosts(self.kube, self.settings).after_cert_manager(
                mail, conds[key]
            )
            if (end := certstatus.expiry(issued)) is not None:
                ends[key] = end
        self.sweep(found, wanted)
        return conds, ends

    def apply_one(self, obj: dict[str, Any], found: Found) -> tuple[str, CertState] | None:
        """Apply where it differs; a Certificate's (name, state)."""
        name = obj["metadata"]["name"]
        have = self.apply(obj, found.get((obj["kind"], name)))
        if obj["kind"] != "Certificate":
            return None
        return name, certstatus.state(have, len(obj["spec"]["dnsNames"]))

    def release(self) -> None:
        """Delete our Certificates (where cert-manager is installed), and leave their
        Secrets and the Ingresses: the operator's own ACME client takes those over."""
        if not self.cert_manager.installed():
            return
        ns = self.settings.operator_namespace
        for obj in self.kube.list(certificates.CERTIFICATE_API, "Certificate", ns, labels=SELECTOR):
            name = obj["metadata"]["name"]
            self.kube.delete(certificates.CERTIFICATE_API, "Certificate", ns, name)
            log.info("Certificate %s deleted: the operator's ACME client certifies now", name)

    def found(self) -> Found:
        """Ours of both kinds (without vpes-web, the Certificates only: the chart grants
        Ingresses only with it)."""
        ns = self.settings.operator_namespace
        out: Found = {}
        for api_version, kind in KINDS:
            if kind == "Ingress" and not self.settings.web_service_name:
                continue
            try:
                listed = self.kube.list(api_version, kind, ns, labels=SELECTOR)
            except ApiError as e:
                if e.status == 404:  # the CRD went away: ask again at the next pass
                    self.cert_manager.checked = None
                raise
            for obj in listed:
                out[(kind, obj["metadata"]["name"])] = obj
        return out

    def apply(self, obj: dict[str, Any], have: dict[str, Any] | None) -> dict[str, Any]:
        return apply_changed(self.kube, obj, have)

    def sweep(self, found: Found, wanted: set[tuple[str, str]]) -> None:
        """Delete what we made that is not wanted; a Certificate's Secret with it."""
        ns = self.settings.operator_namespace
        for (kind, name), obj in sorted(found.items()):
            if (kind, name) in wanted:
                continue
            api_version = {k: api for api, k in KINDS}[kind]  # list items name no kind
            self.kube.delete(api_version, kind, ns, name)
            if kind == "Certificate":
                self.delete_secret(str((obj.get("spec") or {}).get("secretName") or ""))
            log.info("%s %s deleted", kind, name)

    def delete_secret(self, name: str) -> None:
        """A deleted Certificate's Secret; one without our labels (made before they were
        asked for) is refused by the chart's admission policy, and left."""
        if not name:
            return
        try:
            self.kube.delete("v1", "Secret", self.settings.operator_namespace, name)
        except ApiError as e:
            if e.status != 403:
                raise
            log.warning("the Secret %s of a deleted Certificate is left: %s", name, e.message)
