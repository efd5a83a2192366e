"""Route53 with boto3: compare-and-swap through change batches.

A change batch DELETEs the RRset exactly as it was read (Route53 refuses a
DELETE that does not match the current values and TTL) and CREATEs the new
one, atomically: a record someone changed in between makes the whole batch
fail, and nothing is overwritten. A CREATE fails when the RRset exists.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.exceptions

from .. import rdata
from ..errors import (
    ChangedError,
    KeyRejectedError,
    UnreachableError,
    UpdateRefusedError,
    ZoneNotServedError,
)
from .base import EMPTY, RRset, RRsetProvider

NAME = "route53"


def _abs(name: str) -> str:
    return name.rstrip(".") + "."


def _unescape(name: str) -> str:
    # Route53 returns some characters octal-escaped (e.g. '*' as \052).
    return name.replace("\\052", "*").rstrip(".").lower()


class Route53Store:
    def __init__(self, client: Any) -> None:
        self.client = client

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, op)(**kwargs)
        except botocore.exceptions.EndpointConnectionError as e:
            raise UnreachableError(
                f"Route53 cannot be reached ({e}); the operator retries"
            ) from None
        except botocore.exceptions.NoCredentialsError:
            raise KeyRejectedError(
                "no AWS credentials for Route53: give the operator credentials "
                "(environment, profile or the pod's role)"
            ) from None
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            message = e.response.get("Error", {}).get("Message", str(e))
            if code == "InvalidChangeBatch":
                raise ChangedError(f"Route53 refused the change: {message}") from None
            if code in ("AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch"):
                raise KeyRejectedError(
                    f"Route53 refused the credentials ({code}): {message}: fix the operator's "
                    "AWS credentials or its IAM policy"
                ) from None
            if code == "NoSuchHostedZone":
                raise ZoneNotServedError(f"Route53: {message}") from None
            raise UpdateRefusedError(f"Route53 {op} failed ({code}): {message}") from None

    def zone_for(self, domain: str) -> str:
        best: tuple[int, str] | None = None
        target = _abs(domain).lower()
        marker: dict[str, Any] = {}
        while True:
            page = self._call("list_hosted_zones", **marker)
            for z in page.get("HostedZones", []):
                if z.get("Config", {}).get("PrivateZone"):
                    continue
                name = z["Name"].lower()
                if (target == name or target.endswith("." + name)) and (
                    best is None or len(name) > best[0]
                ):
                    best = (len(name), z["Id"].rsplit("/", 1)[-1])
            if not page.get("IsTruncated"):
                break
            marker = {"Marker": page["NextMarker"]}
        if best is None:
            raise ZoneNotServedError(
                f"no Route53 hosted zone contains {domain}: create the hosted zone (and delegate "
                "the domain to it), or set this server's spec.dns to Manual"
            )
        return best[1]

    def read(self, zone: str, name: str, rtype: str) -> RRset:
        page = self._call(
            "list_resource_record_sets",
            HostedZoneId=zone,
            StartRecordName=_abs(name),
            StartRecordType=rtype,
            MaxItems="1",
        )
        for rs in page.get("ResourceRecordSets", []):
            if _unescape(rs["Name"]) == name.lower() and rs["Type"] == rtype:
                values = frozenset(
                    rdata.from_presentation(rtype, r["Value"])
                    for r in rs.get("ResourceRecords", [])
                )
                return RRset(values, int(rs.get("TTL", 0)))
        return EMPTY

    def _rrset(self, name: str, rtype: str, rr: RRset) -> dict[str, Any]:
        return {
            "Name": _abs(name),
            "Type": rtype,
            "TTL": rr.ttl,
            "ResourceRecords": [{"Value": rdata.presentation(rtype, v)} for v in sorted(rr.values)],
        }

    def swap(self, zone: str, name: str, rtype: str, old: RRset, new: RRset) -> None:
        changes = []
        if old.values:
            changes.append({"Action": "DELETE", "ResourceRecordSet": self._rrset(name, rtype, old)})
        if new.values:
            changes.append({"Action": "CREATE", "ResourceRecordSet": self._rrset(name, rtype, new)})
        self._call(
            "change_resource_record_sets",
            HostedZoneId=zone,
            ChangeBatch={"Comment": "vpes", "Changes": changes},
        )

    def signed(self, zone: str) -> bool:
        try:
            status = self._call("get_dnssec", HostedZoneId=zone)
        except UpdateRefusedError:
            return False
        return bool(status.get("Status", {}).get("ServeSignature") == "SIGNING")


def provider(endpoint_url: str = "", region: str = "us-east-1") -> RRsetProvider:
    client = boto3.client("route53", region_name=region, endpoint_url=endpoint_url or None)
    return RRsetProvider(NAME, Route53Store(client))
