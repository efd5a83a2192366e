"""The web names of a server's domains, and the cert-manager Certificates and the Ingress
that give them HTTPS at vpes-web: pure functions of (server, its routed domains,
settings).

Every hosted domain's DNS records point `autoconfig.`, `autodiscover.`, `openpgpkey.`
and (unless MTA-STS is off) `mta-sts.<domain>` at the edge's web name, where vpes-web
answers them by Host. These objects live in the operator's namespace (where vpes-web
and its Service are), not in the server's: no owner reference can tie them to the
server, so they carry labels naming it and the operator deletes them itself
(`webcerts.py`).

An ACME CA takes at most 100 names in one certificate (Let's Encrypt's limit, which
cert-manager passes on); with four names a domain, a server's domains go 25 to a
Certificate, in domain order: its first 25 in `<base>`, the next in `<base>-2`, and so
on (MAX_DOMAINS, 100, makes at most four). Domains are A-labels already (the CRD
refuses anything else), so the names are exactly those of the CNAME records.

The edge's own mail names (MX, IMAP, SMTP: `acmecerts.edge_names`) have one
Certificate of their own, `edge_certificate`, whose Secret is the one the edge's pods
mount (`edge_tls_secret`), labelled as the operator's ACME client labels it
(`edge_labels`), so either path may write it after the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from .. import naming
from ..settings import OperatorSettings

CERTIFICATE_API = "cert-manager.io/v1"
INGRESS_API = "networking.k8s.io/v1"
COMPONENT = "web-certificate"
EDGE_COMPONENT = "edge-tls"
LABEL_SERVER_NAMESPACE = f"{naming.PREFIX}/server-namespace"
# The most names one certificate may carry (ACME CAs: 100), and so its domains.
MAX_NAMES = 100
WEB_PREFIXES = ("autoconfig", "autodiscover", "mta-sts", "openpgpkey")
DOMAINS_PER_CERTIFICATE = MAX_NAMES // len(WEB_PREFIXES)
NAME_BUDGET = 48  # of the readable part of a base name; + "-" + 8 hex + "-NN" stays < 63


def web_prefixes(settings: OperatorSettings) -> tuple[str, ...]:
    """The labels the records put before each domain (no mta-sts. with MTA-STS off)."""
    if settings.mta_sts_mode == "off":
        return tuple(p for p in WEB_PREFIXES if p != "mta-sts")
    return WEB_PREFIXES


def web_names(domains: Sequence[str], settings: OperatorSettings) -> list[str]:
    """Every web name of `domains`, by domain then prefix."""
    prefixes = web_prefixes(settings)
    return [f"{p}.{d}" for d in sorted(set(domains)) for p in prefixes]


def chunks(domains: Sequence[str]) -> list[list[str]]:
    """The domains in groups of DOMAINS_PER_CERTIFICATE, in domain order."""
    ordered = sorted(set(domains))
    step = DOMAINS_PER_CERTIFICATE
    return [ordered[i : i + step] for i in range(0, len(ordered), step)]


def base_name(namespace: str, server: str) -> str:
    """`web-<namespace>-<server>`, cut to NAME_BUDGET, then 8 hex of a digest of both:
    two servers never share a name however their names split ("a-b"/"c", "a"/"b-c")."""
    digest = hashlib.sha256(f"{namespace}/{server}".encode()).hexdigest()[:8]
    readable = f"web-{namespace}-{server}"[:NAME_BUDGET].rstrip("-.").replace(".", "-")
    return f"{readable}-{digest}"


def certificate_name(namespace: str, server: str, index: int) -> str:
    """The name of a server's `index`th Certificate (0: the first), and of its Secret."""
    base = base_name(namespace, server)
    return base if index == 0 else f"{base}-{index + 1}"


def labels(namespace: str, server: str) -> dict[str, str]:
    """Which server the objects belong to; the operator lists them by component."""
    return {
        "app.kubernetes.io/part-of": "vpes",
        "app.kubernetes.io/managed-by": naming.MANAGED_BY,
        naming.LABEL_COMPONENT: COMPONENT,
        naming.LABEL_SERVER: server,
        LABEL_SERVER_NAMESPACE: namespace,
    }


def edge_labels() -> dict[str, str]:
    """The edge's certificate's (its Certificate and Secret): it belongs to no server."""
    return {
        "app.kubernetes.io/part-of": "vpes",
        "app.kubernetes.io/managed-by": naming.MANAGED_BY,
        naming.LABEL_COMPONENT: EDGE_COMPONENT,
    }


def issuer_ref(settings: OperatorSettings) -> dict[str, str]:
    return {
        "name": settings.cert_manager_issuer_name,
        "kind": settings.cert_manager_issuer_kind,
        "group": settings.cert_manager_issuer_group,
    }


def _metadata(namespace: str, server: str, name: str, settings: OperatorSettings) -> Any:
    return {
        "name": name,
        "namespace": settings.operator_namespace,
        "labels": labels(namespace, server),
    }


def certificate(
    namespace: str, server: str, index: int, domains: Sequence[str], settings: OperatorSettings
) -> dict[str, Any]:
    """A cert-manager Certificate for the web names of `domains` (at most 25 of them)."""
    names = web_names(domains, settings)
    if len(names) > MAX_NAMES:
        raise ValueError(f"{len(names)} names in one certificate; at most {MAX_NAMES}")
    name = certificate_name(namespace, server, index)
    return {
        "apiVersion": CERTIFICATE_API,
        "kind": "Certificate",
        "metadata": _metadata(namespace, server, name, settings),
        "spec": {
            "secretName": name,
            "dnsNames": names,
            "issuerRef": issuer_ref(settings),
            "privateKey": {"rotationPolicy": "Always"},
            # The Secret carries our labels too: the operator deletes it with the
            # Certificate (cert-manager leaves it), and the chart's admission policy
            # lets it delete only Secrets so labelled in its own namespace.
            "secretTemplate": {"labels": labels(namespace, server)},
        },
    }


def ingress(
    namespace: str, server: str, domains: Sequence[str], settings: OperatorSettings
) -> dict[str, Any]:
    """The Ingress of every web name of `domains` to vpes-web, with each Certificate's
    Secret for its names."""
    tls = []
    for index, group in enumerate(chunks(domains)):
        secret = certificate_name(namespace, server, index)
        tls.append({"hosts": web_names(group, settings), "secretName": secret})
    backend = {
        "service": {
            "name": settings.web_service_name,
            "port": {"number": settings.web_service_port},
        }
    }
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    rules = [{"host": host, "http": {"paths": [path]}} for host in web_names(domains, settings)]
    spec: dict[str, Any] = {"tls": tls, "rules": rules}
    if settings.web_ingress_class:
        spec["ingressClassName"] = settings.web_ingress_class
    return {
        "apiVersion": INGRESS_API,
        "kind": "Ingress",
        "metadata": _metadata(namespace, server, base_name(namespace, server), settings),
        "spec": spec,
    }


def objects(
    namespace: str, server: str, domains: Sequence[str], settings: OperatorSettings
) -> list[dict[str, Any]]:
    """The Certificates, then the Ingress, of a server the edge routes `domains` to
    (none when it routes it none)."""
    if not domains:
        return []
    certs = [
        certificate(namespace, server, i, group, settings)
        for i, group in enumerate(chunks(domains))
    ]
    return [*certs, ingress(namespace, server, domains, settings)]


def edge_certificate(names: Sequence[str], settings: OperatorSettings) -> dict[str, Any]:
    """The cert-manager Certificate of the edge's mail names (already normalised, at
    least one), named as its Secret, `edge_tls_secret`, which the edge's pods mount."""
    if not names:
        raise ValueError("the edge's Certificate needs at least one name")
    if len(names) > MAX_NAMES:
        raise ValueError(f"{len(names)} names in one certificate; at most {MAX_NAMES}")
    name = settings.edge_tls_secret
    if not name:
        raise ValueError("the edge's Certificate needs a Secret name (edge_tls_secret)")
    return {
        "apiVersion": CERTIFICATE_API,
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": settings.operator_namespace,
            "labels": edge_labels(),
        },
        "spec": {
            "secretName": name,
            "dnsNames": list(names),
            "issuerRef": issuer_ref(settings),
            "privateKey": {"rotationPolicy": "Always"},
            "secretTemplate": {"labels": edge_labels()},
        },
    }
