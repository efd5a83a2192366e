"""The hosted domains' web names, and the edge's own mail names, certified by the
operator's own ACME client (`certs/`) where cert-manager is not used (`use_acme`).

One pass (`AcmePublisher.publish`), the same shape as cert-manager's (`webcerts.py`),
over every live server and the domains the edge routes to it:

- each chunk of at most 25 domains (`builders.certificates.chunks`) has its
  certificate in a kubernetes.io/tls Secret of the operator's namespace, named as
  cert-manager's would be (`certificate_name`) and with the same labels, so that the
  same Ingress (`builders.certificates.ingress`, applied where it differs) serves it,
  and the chart's admission policy lets the operator write and delete it;
- `certs.orders.Orders` decides from the certificate in each Secret whether to order
  (none, other names, renewal due) and orders in a bounded pool of threads, never in
  the pass; a failed order backs off;
- the Ingresses and Secrets of servers that are gone or route no domain any more,
  and of chunks no longer needed, are deleted (an order under way keeps its Secret
  until its next pass);
- the edge's mail names (`edge_tls_names`, else the MX, IMAP and SMTP names) go into
  one Secret, `edge_tls_secret`, which the edge's pods mount;
- CertificateReady and the expiry metric through the `certreport.Reporter` the
  cert-manager path shares.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import certstatus, mailhost, metrics
from .builders import certificates as b
from .certreport import Reporter
from .certs import account
from .certs import stored as st
from .certs.choose import solver_for
from .certs.errors import ACMEConfigError
from .certs.issuer import AcmeIssuer, IssuerConfig, normalise_names
from .certs.orders import Orders
from .certstatus import CertState
from .clients.kube import ApiError, Kube
from .conditions import Cond
from .edge.routing import Routing, ServerKey, key_of, live, route
from .models.server import PersonalMailServer
from .settings import OperatorSettings
from .webcerts import SELECTOR, apply_changed

log = logging.getLogger(__name__)

BY = "the operator's ACME client"
KINDS = (("networking.k8s.io/v1", "Ingress"), ("v1", "Secret"))
Found = dict[tuple[str, str], dict[str, Any]]  # (kind, name) → the live object


def use_acme(settings: OperatorSettings, cert_manager_installed: Callable[[], bool]) -> bool:
    """Whether the operator's own client certifies: a CA is set, and cert-manager is not
    used (no issuer configured, or its CRD not installed)."""
    if not settings.acme_directory_url:
        return False
    return not settings.cert_manager_issuer_name or not cert_manager_installed()


def edge_names(settings: OperatorSettings) -> tuple[str, ...]:
    """The edge's mail names: `edge_tls_names`, else the MX, IMAP and SMTP names (none:
    all empty)."""
    hosts = (settings.mx_host, settings.imap_host, settings.smtp_host)
    names = [n for n in settings.edge_tls_names or hosts if n.strip()]
    return normalise_names(names) if names else ()


def make_issuer(kube: Kube, settings: OperatorSettings) -> AcmeIssuer:
    """The issuer of the settings' CA, account and solver (raised as ACMEConfigError)."""
    config = IssuerConfig.from_settings(settings)
    if config is None:
        raise ACMEConfigError("no ACME CA is configured: set certificates.acme.directoryUrl")
    solver = solver_for(settings, kube)
    try:
        key = account.load_or_create(kube, settings.operator_namespace)
    except ApiError as e:
        raise ACMEConfigError(
            f"the ACME account's Secret {settings.operator_namespace}/{account.SECRET_NAME} "
            f"cannot be read or made: {e.message}"
        ) from None
    return AcmeIssuer(config, key, [solver])


@dataclass
class AcmePublisher:
    kube: Kube
    settings: OperatorSettings
    report: Reporter
    orders: Orders = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.orders = Orders(
            self.kube,
            s.operator_namespace,
            lambda: make_issuer(self.kube, s),
            s.acme_concurrency,
            s.acme_renew_before_fraction,
        )

    def publish(self, servers: Iterable[PersonalMailServer]) -> None:
        """One pass; an API error is raised (the caller tries again soon)."""
        current = live(servers)
        conds, ends, secrets = self.converge(current)
        self.edge()
        self.orders.forget(secrets | {self.settings.edge_tls_secret} - {""})
        self.report.export(ends)
        self.report.write_conditions(current, conds)

    def converge(
        self, servers: list[PersonalMailServer]
    ) -> tuple[dict[ServerKey, Cond], dict[ServerKey, dt.datetime], set[str]]:
        """Each server's CertificateReady and first expiry; the Secrets wanted."""
        found = self.found()
        if not self.settings.web_service_name:
            self.sweep(found, set())
            why = "certificates are not configured: vpes-web (web.enabled) is not installed"
            return {key_of(s): certstatus.not_configured(why) for s in servers}, {}, set()
        routes = route(servers)
        wanted: set[tuple[str, str]] = set()
        conds: dict[ServerKey, Cond] = {}
        ends: dict[ServerKey, dt.datetime] = {}
        for server in servers:
            key = key_of(server)
            cond, states = self.one_server(key, routes, found, wanted)
            cond, states = mailhost.MailHosts(self.kube, self.settings).acme(  # spec.mailHost
                self.orders, mailhost.wanted(self.kube, server), found, wanted, (cond, states), BY
            )
            conds[key] = cond
            if (end := certstatus.expiry(states)) is not None:
                ends[key] = end
        self.sweep(found, wanted)
        return conds, ends, {name for kind, name in wanted if kind == "Secret"}

    def one_server(
        self, key: ServerKey, routes: Routing, found: Found, wanted: set[tuple[str, str]]
    ) -> tuple[Cond, list[tuple[str, CertState]]]:
        """A server's Ingress applied and its certificates' states (ordering what is due)."""
        domains = routes.domains_of(key)
        if not domains:
            return certstatus.no_domains(), []
        groups = b.chunks(domains)
        secrets = [b.certificate_name(key.namespace, key.name, i) for i in range(len(groups))]
        wanted |= {("Secret", name) for name in secrets}
        ingress = b.ingress(key.namespace, key.name, domains, self.settings)
        wanted.add(("Ingress", ingress["metadata"]["name"]))
        try:
            apply_changed(self.kube, ingress, found.get(("Ingress", ingress["metadata"]["name"])))
        except ApiError as e:
            if e.status not in (400, 422):
                raise
            return certstatus.rejected(e.message), []
        labels = b.labels(key.namespace, key.name)
        states = []
        for name, group in zip(secrets, groups, strict=True):
            names = tuple(b.web_names(group, self.settings))
            have = st.read(found.get(("Secret", name)))
            states.append((name, self.orders.state(name, names, labels, have)))
        return certstatus.condition(states, by=BY, kind="Secret"), states

    def found(self) -> Found:
        out: Found = {}
        for api_version, kind in KINDS:
            listed = self.kube.list(
                api_version, kind, self.settings.operator_namespace, labels=SELECTOR
            )
            for obj in listed:
                out[(kind, obj["metadata"]["name"])] = obj
        return out

    def sweep(self, found: Found, wanted: set[tuple[str, str]]) -> None:
        """Delete the Ingresses and Secrets of ours nobody wants (not one being ordered)."""
        ns = self.settings.operator_namespace
        for kind, name in sorted(set(found) - wanted):
            if kind == "Secret" and self.orders.busy(name):
                continue
            api_version = dict((k, v) for v, k in KINDS)[kind]
            try:
                self.kube.delete(api_version, kind, ns, name)
            except ApiError as e:
                if e.status != 403:
                    raise
                log.warning("the %s %s is left: %s", kind, name, e.message)
                continue
            log.info("%s %s deleted", kind, name)

    def edge(self) -> None:
        """The edge's mail names in the Secret `edge_tls_secret`; its expiry metric."""
        name, names = self.settings.edge_tls_secret, edge_names(self.settings)
        if not name or not names:
            return
        have = self.kube.get("v1", "Secret", self.settings.operator_namespace, name)
        state = self.orders.state(name, names, b.edge_labels(), st.read(have))
        if state.not_after is not None:
            metrics.EDGE_CERTIFICATE_EXPIRY.labels(name).set(state.not_after.timestamp())
