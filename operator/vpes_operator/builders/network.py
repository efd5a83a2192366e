"""How a server is reached: its Service, and the NetworkPolicy that isolates it."""

from __future__ import annotations

from typing import Any

from .. import naming
from ..render import layout
from ..settings import OperatorSettings
from . import dav
from .meta import Owner, metadata

PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]


def service(owner: Owner, *, calendar: bool = False) -> dict[str, Any]:
    """The in-cluster Service the edge routes to: every port, plain and PROXY; with
    `calendar` (the plan's features.calendar) also the DAV port vpes-web proxies to."""
    ports = [
        {"name": p.name, "port": p.port, "targetPort": p.name, "protocol": "TCP"}
        for p in layout.PORTS
    ]
    if calendar:
        ports.append(
            {
                "name": dav.DAV_PORT_NAME,
                "port": dav.DAV_PORT,
                "targetPort": dav.DAV_PORT_NAME,
                "protocol": "TCP",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, naming.service(owner.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector_labels(owner.name),
            "ports": ports,
        },
    }


def service_host(server: str, namespace: str, cluster_domain: str) -> str:
    """The fully qualified name of a server's Service, as the edge's pods reach it."""
    return f"{naming.service(server)}.{namespace}.svc.{cluster_domain}"


def public_service(owner: Owner, settings: OperatorSettings) -> dict[str, Any]:
    """A plan's dedicated address: a LoadBalancer on the standard ports.

    The load balancer must send a PROXY protocol header (the provider's
    annotations say so to their cloud), so every port leads to its PROXY twin
    and the client's real address reaches Postfix and Dovecot;
    externalTrafficPolicy Local keeps it on the way in.
    """
    meta = metadata(owner, naming.public_service(owner.name))
    if settings.dedicated_service_annotations:
        meta["annotations"] = dict(sorted(settings.dedicated_service_annotations.items()))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": naming.selector_labels(owner.name),
            "ports": [
                {
                    "name": p.protocol,
                    "port": layout.DEDICATED_PORTS[p.protocol],
                    "targetPort": p.name,
                    "protocol": "TCP",
                }
                for p in layout.PORTS
                if p.proxy
            ],
        },
    }


def _namespace(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


EDGE_ROLE_LABEL = "vpes.io/edge-role"
# The plain ports a fleet upgrade's health gate connects to (fleet/probe.py).
HEALTH_GATE_PORTS = ("smtp", "imap")


def _edge(settings: OperatorSettings, roles: tuple[str, ...]) -> dict[str, Any]:
    """The edge's pods of these roles, in the operator's namespace."""
    return {
        "namespaceSelector": _namespace(settings.operator_namespace),
        "podSelector": {
            "matchLabels": dict(settings.edge_pod_labels),
            "matchExpressions": [{"key": EDGE_ROLE_LABEL, "operator": "In", "values": list(roles)}],
        },
    }


# The Rspamd controller's port: a training tenant posts what its users move into
# or out of Junk there (render/antispam.py).
ANTISPAM_CONTROLLER_PORT = 11334


def _egress(
    settings: OperatorSettings, edge: list[dict[str, Any]], *, training: bool
) -> list[dict[str, Any]]:
    """Where the pod may connect: cluster DNS, the edge's relay, Rspamd's controller
    when the server trains it, and without a relay the internet's port 25."""
    egress: list[dict[str, Any]] = [
        {
            "to": [{"namespaceSelector": _namespace(settings.cluster_dns_namespace)}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        },
        {"to": edge},
    ]
    if training:
        rspamd = {
            "namespaceSelector": _namespace(settings.operator_namespace),
            "podSelector": {"matchLabels": dict(settings.antispam_pod_labels)},
        }
        egress.append(
            {"to": [rspamd], "ports": [{"port": ANTISPAM_CONTROLLER_PORT, "protocol": "TCP"}]}
        )
    if not settings.relay_host:
        # No relay configured: the server delivers outbound mail itself, to the
        # internet only (never to other pods).
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
                "ports": [{"port": 25, "protocol": "TCP"}],
            }
        )
    return egress


def network_policy(
    owner: Owner,
    settings: OperatorSettings,
    *,
    dedicated_address: bool,
    training: bool = False,
    calendar: bool = False,
) -> dict[str, Any]:
    """Only the edge and the operator reach the pod; it reaches DNS and the relay
    (and, when it trains, Rspamd's controller port). With `calendar`, vpes-web
    reaches the DAV port, and nothing else.

    The mail ports admit the edge's MX and login proxy alone (not its relay, which
    only takes mail from tenants): the tenant trusts what they forward (the
    client's address: Dovecot's login_trusted_networks, Postfix's XCLIENT), so
    nothing else in the cluster may reach those ports. The operator reads the usage
    report's port, and its fleet upgrades' health gate reads the SMTP banner (25) and
    the IMAP greeting (143), sending nothing. A trade-off, taken knowingly: on 143 an
    address in `edge_networks` may forward a client's address (Dovecot's
    login_trusted_networks), so the operator could; it already holds far more (it
    reads every server's Secrets). Port 25 authorizes no XCLIENT, and the PROXY ports
    stay the edge's alone.

    Other tenants, even in the same namespace, are not among the allowed peers.
    """
    edge = _edge(settings, settings.edge_ingress_roles)
    operator = {
        "namespaceSelector": _namespace(settings.operator_namespace),
        "podSelector": {"matchLabels": dict(settings.operator_pod_labels)},
    }
    ingress: list[dict[str, Any]] = [
        {"from": [edge], "ports": [{"port": p.name, "protocol": "TCP"} for p in layout.PORTS]},
        # The storage usage report and the fleet upgrades' health gate: the operator alone.
        {
            "from": [operator],
            "ports": [
                {"port": name, "protocol": "TCP"}
                for name in (layout.USAGE_PORT_NAME, *HEALTH_GATE_PORTS)
            ],
        },
    ]
    if calendar:
        # CalDAV/CardDAV: vpes-web proxies https://<edge_web_host>/dav/ here.
        web = {
            "namespaceSelector": _namespace(settings.operator_namespace),
            "podSelector": {"matchLabels": dict(settings.web_pod_labels)},
        }
        ingress.append({"from": [web], "ports": [{"port": dav.DAV_PORT_NAME, "protocol": "TCP"}]})
    if dedicated_address:
        # Postfix trusts any PROXY header on its PROXY ports: only the
        # internet through the load balancer reaches them, never other pods.
        ingress.append(
            {
                "from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
                "ports": [{"port": p.name, "protocol": "TCP"} for p in layout.PORTS if p.proxy],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, naming.network_policy(owner.name)),
        "spec": {
            "podSelector": {"matchLabels": naming.selector_labels(owner.name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": _egress(
                settings, [_edge(settings, (settings.edge_relay_role,))], training=training
            ),
        },
    }
