"""external-dns: one DNSEndpoint object per server, so any provider external-dns supports works.

external-dns keeps its own ownership registry (TXT records) and never
overwrites records it did not create; the DNSEndpoint is the operator's own
object (owned by the server, deleted with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...builders.meta import Owner, metadata
from ...clients.kube import ApiError, Kube
from ..errors import ProviderNotConfiguredError, UpdateRefusedError
from ..ownership import Owned, OwnedRRset
from ..records import Record
from .base import Result

NAME = "external-dns"
API_VERSION = "externaldns.k8s.io/v1alpha1"
KIND = "DNSEndpoint"
# Types external-dns publishes for every provider it supports.
TYPES = {"MX", "TXT", "SRV", "CNAME", "A", "AAAA", "NS"}


def endpoint_name(server: str) -> str:
    return f"{server}-dns"


def target(rtype: str, value: str) -> str:
    return value if rtype == "TXT" else value.rstrip(".")


def endpoints(records: Sequence[Record]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if not r.shared and r.type in TYPES:
            grouped.setdefault((r.name, r.type), []).append(r)
    return [
        {
            "dnsName": name,
            "recordType": rtype,
            "recordTTL": rs[0].ttl,
            "targets": sorted(target(rtype, r.value) for r in rs),
        }
        for (name, rtype), rs in sorted(grouped.items())
    ]


def dns_endpoint(owner: Owner, records: Sequence[Record]) -> dict[str, Any]:
    meta = metadata(owner, endpoint_name(owner.name))
    meta["labels"]["vpes.io/component"] = "dns"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta,
        "spec": {"endpoints": endpoints(records)},
    }


class ExternalDNSProvider:
    name = NAME

    def __init__(self, kube: Kube, owner: Owner, signed: Callable[[str], bool]) -> None:
        self.kube = kube
        self.owner = owner
        self._signed = signed

    def publish(self, records: Sequence[Record], owned: Owned) -> Result:
        obj = dns_endpoint(self.owner, records)
        before = self.kube.get(API_VERSION, KIND, self.owner.namespace, obj["metadata"]["name"])
        try:
            after = self.kube.apply(obj)
        except ApiError as e:
            if e.status == 404:
                raise ProviderNotConfiguredError(
                    "the DNSEndpoint kind is not installed: install external-dns's CRD "
                    "(dnsendpoints.externaldns.k8s.io), or choose another spec.dns.provider"
                ) from None
            raise UpdateRefusedError(
                f"the API server refused the DNSEndpoint: {e.message}"
            ) from None
        out = Owned(provider=NAME)
        for ep in obj["spec"]["endpoints"]:
            rr = OwnedRRset(
                "", ep["dnsName"], ep["recordType"], tuple(ep["targets"]), ep["recordTTL"]
            )
            out.rrsets[rr.key] = rr
        old_version = (before or {}).get("metadata", {}).get("resourceVersion")
        changed = int(old_version != after.get("metadata", {}).get("resourceVersion"))
        return Result(out, changed=changed)

    def remove(self, owned: Owned) -> Result:
        self.kube.delete(API_VERSION, KIND, self.owner.namespace, endpoint_name(self.owner.name))
        return Result(Owned(provider=NAME), changed=1)

    def signed(self, domain: str) -> bool:
        return self._signed(domain)
