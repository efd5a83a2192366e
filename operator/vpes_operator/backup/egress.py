"""What a backup or restore pod may reach: S3, and cluster DNS to find it. Nothing else.

A backup pod holds a customer's repository key and S3 credentials, and mounts
their mail: its NetworkPolicy lets it out only to the S3 endpoint's addresses
on the endpoint's port, and to the cluster DNS (port 53) when the endpoint is
a name; nothing comes in. Not the tenant's ports, not the API server, not
other namespaces, not a cloud's metadata address.

NetworkPolicy names peers by address, so the operator resolves the endpoint's
host as it starts each Job and names what it found (each address a /32 or a
/128). That is right for an S3 that keeps its addresses (MinIO, Ceph RGW,
Garage, a provider's fixed endpoint). Some providers answer each look-up with
other addresses from a large pool (AWS S3 above all: the pod would resolve an
address the operator never saw); for those the provider lists the ranges in
the chart value `backup.s3.egressCIDRs` (for AWS, the S3 prefixes of the
region in ip-ranges.json), which then replace the look-up. Without that list,
an AWS endpoint is refused with a condition that says so, rather than left to
fail now and then.

`resolve` is the one impure function (a DNS look-up); `network_policy` is a
pure builder.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, WaitingError
from ..models.conditions import Reason
from ..settings import OperatorSettings
from . import repository as repo
from .jobs import JobSpec, labels

# Providers whose S3 answers look-ups from a pool too large to follow.
ROTATING_S3_SUFFIXES = (".amazonaws.com",)
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]

Lookup = Callable[..., list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Endpoint:
    """Where a Job's restic connects: host and port of the S3 API."""

    host: str
    port: int

    @property
    def literal(self) -> bool:
        """An IP address: the pod needs no DNS to reach it."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Egress:
    """What the policy admits: S3's networks on its port, and DNS when needed."""

    cidrs: tuple[str, ...]
    port: int
    dns: bool


def endpoint(settings: OperatorSettings) -> Endpoint:
    """The endpoint as backup pods use it (restic's default scheme is https)."""
    url = repo.s3_endpoint(settings, for_job=True)
    parts = urlsplit(url if "://" in url else f"https://{url}")
    default = 80 if parts.scheme == "http" else 443
    return Endpoint(parts.hostname or "", parts.port or default)


def _cidr(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return f"{ip}/{ip.max_prefixlen}"


def resolve(settings: OperatorSettings, lookup: Lookup = socket.getaddrinfo) -> Egress:
    """The addresses the policy names: the chart's list, or the endpoint's addresses now.

    Raises ConfigError when the host does not exist or its addresses cannot be
    followed, WaitingError when the look-up failed for a while (SERVFAIL, timeout).
    """
    where = endpoint(settings)
    if settings.backup_s3_egress_cidrs:
        return Egress(tuple(settings.backup_s3_egress_cidrs), where.port, not where.literal)
    if where.literal:
        return Egress((_cidr(where.host),), where.port, False)
    fix = "fix backup.s3.jobEndpoint (or backup.s3.endpoint)"
    if where.host.lower().rstrip(".").endswith(ROTATING_S3_SUFFIXES):
        raise ConfigError(
            Reason.S3_EGRESS_CIDRS_REQUIRED,
            f"backup pods may reach only S3, and {where.host} answers each look-up with other "
            "addresses of its pool: list its ranges in backup.s3.egressCIDRs (for AWS, the "
            "S3 prefixes of the region in https://ip-ranges.amazonaws.com/ip-ranges.json)",
        )
    try:
        found = lookup(where.host, where.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise WaitingError(
                Reason.S3_UNREACHABLE,
                f"cannot resolve the S3 endpoint {where.host} for the backup pods' "
                f"NetworkPolicy just now ({e.strerror}); trying again",
                delay=60,
            ) from e
        raise ConfigError(
            Reason.S3_ENDPOINT_UNRESOLVABLE,
            f"the S3 endpoint {where.host} does not resolve ({e.strerror}), so the backup "
            f"pods' NetworkPolicy cannot name its addresses: {fix}, or list its "
            "addresses in backup.s3.egressCIDRs",
        ) from e
    cidrs = sorted({_cidr(str(info[4][0])) for info in found})
    return Egress(tuple(cidrs), where.port, True)


def network_policy(spec: JobSpec, settings: OperatorSettings, egress: Egress) -> dict[str, Any]:
    """The Job's pods: no ingress; egress to S3 (and cluster DNS) only."""
    rules: list[dict[str, Any]] = [
        {
            "to": [{"ipBlock": {"cidr": cidr}} for cidr in egress.cidrs],
            "ports": [{"port": egress.port, "protocol": "TCP"}],
        }
    ]
    if egress.dns:
        rules.append(
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {
                                "kubernetes.io/metadata.name": settings.cluster_dns_namespace
                            }
                        }
                    }
                ],
                "ports": [dict(p) for p in DNS_PORTS],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": spec.job_name,
            "namespace": spec.request.namespace,
            "labels": labels(spec),
            "ownerReferences": [spec.request.owner_reference()],
        },
        "spec": {
            "podSelector": {"matchLabels": labels(spec)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": rules,
        },
    }
