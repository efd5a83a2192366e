"""The address records of a server's own mail host (spec.mailHost): pure, but for
reading the address its dedicated LoadBalancer was given.

Mail clients of the server connect to its mail host, so its A/AAAA records point at
the server's dedicated LoadBalancer (`builders.network.public_service`), whose
address the cloud assigns some time after the Service is made
(`status.loadBalancer.ingress`). Until then the records wait: DNSPublished and
DNSVerified say so (`WaitingForAddress`) and the check comes again soon, as for a
DKIM key not made yet. A load balancer known by a name only (no address) gets a
CNAME instead. A server whose plan has no dedicated address gets no records for its
mail host (CertificateReady says what to fix, `mailhost.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from .. import naming
from ..clients.kube import Kube
from ..models.server import PersonalMailServerSpec
from .records import MAIL_HOST, Record, fqdn


def load_balancer(service: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """The addresses and host names a LoadBalancer Service was given (none yet: empty)."""
    ingress = (((service or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress")
    ips: list[str] = []
    names: list[str] = []
    for entry in ingress or []:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("ip"):
            ips.append(str(ipaddress.ip_address(str(entry["ip"]))))
        elif entry.get("hostname"):
            names.append(str(entry["hostname"]))
    return sorted(set(ips)), sorted(set(names))


def owning_domain(host: str, domains: Sequence[str]) -> str:
    """The domain `host` is (or is under): the longest such, as a record's domain."""
    under = [d for d in domains if host == d or host.endswith("." + d)]
    if not under:
        raise ValueError(f"{host} is not in any of {', '.join(domains)}")
    return max(under, key=len)


def records(
    host: str, domains: Sequence[str], ips: Sequence[str], names: Sequence[str], ttl: int
) -> list[Record]:
    """A and AAAA records of `host` at `ips`; a CNAME to the first of `names` when the
    load balancer has no address (none at all: no records)."""
    domain = owning_domain(host, domains)
    out = []
    for ip in ips:
        type_ = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
        out.append(Record(domain, MAIL_HOST, type_, host, ip, ttl))
    if not out and names:
        out.append(Record(domain, MAIL_HOST, "CNAME", host, fqdn(names[0]), ttl))
    return out


def for_server(
    kube: Kube,
    namespace: str,
    server: str,
    spec: PersonalMailServerSpec,
    ttl: int,
    *,
    dedicated: bool,
) -> tuple[list[Record], str | None]:
    """The mail host's records, and what they wait for (None: nothing)."""
    host = spec.mail_host
    if host is None or not dedicated:
        return [], None
    service = kube.get("v1", "Service", namespace, naming.public_service(server))
    ips, names = load_balancer(service)
    found = records(host, spec.domains, ips, names, ttl)
    if found:
        return found, None
    return [], (
        f"the mail host {host} waits for the address of the server's dedicated load "
        f"balancer (Service {naming.public_service(server)}, status.loadBalancer)"
    )
