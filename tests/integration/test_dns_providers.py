"""The other providers against real peers: external-dns DNSEndpoints in the real
control plane (the operator subprocess), Route53 through boto3 against moto's server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.dns import records
from vpes_operator.dns.ownership import Owned
from vpes_operator.dns.providers import route53
from vpes_operator.settings import OperatorSettings

from .dns_support import free_port
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    harvest_secrets,
    install_platform,
    plan_body,
    server_body,
    wait_for,
)

CRD = Path(__file__).parent / "fixtures" / "dnsendpoint-crd.yaml"
DKIM = {"vpes": "v=DKIM1; k=rsa; p=" + "B" * 392}


@pytest.fixture(scope="module")
def operator(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/dnsendpoints.externaldns.k8s.io")
    kubeconfig = install_platform(cluster)
    op = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("operator-xdns"),
        {
            "VPES_DNS_DEFAULT_PROVIDER": "external-dns",
            # No resolver answers here: verification reports Unknown quickly.
            "VPES_DNS_RESOLVERS": f"127.0.77.9:{free_port('127.0.0.1')}",
            "VPES_DNS_TIMEOUT": "0.5",
        },
    )
    op.start()
    yield op
    op.stop()


def test_external_dns_endpoint(api: Kube, operator: OperatorProcess, namespace: str) -> None:
    plan = f"xdns-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan))
    try:
        api.apply(
            server_body(
                "shop",
                namespace,
                {
                    "plan": plan,
                    "owner": {"email": "o@example.net"},
                    "domains": ["shop.example"],
                    "mailboxes": [{"address": "me@shop.example"}],
                },
            )
        )

        def endpoint() -> dict[str, Any] | None:
            obj = api.get("externaldns.k8s.io/v1alpha1", "DNSEndpoint", namespace, "shop-dns")
            eps = ((obj or {}).get("spec") or {}).get("endpoints") or []
            return obj if any(e["dnsName"].startswith("vpes._domainkey.") for e in eps) else None

        obj = wait_for(endpoint, "the DNSEndpoint with the DKIM record", timeout=90)
        eps = {(e["dnsName"], e["recordType"]): e for e in obj["spec"]["endpoints"]}
        assert eps[("shop.example", "MX")]["targets"] == ["10 mx.vpes.test"]
        assert eps[("_imaps._tcp.shop.example", "SRV")]["targets"] == ["0 1 993 imap.vpes.test"]
        assert eps[("shop.example", "TXT")]["targets"] == ["v=spf1 mx -all"]
        assert [r["kind"] for r in obj["metadata"]["ownerReferences"]] == ["PersonalMailServer"]

        def published() -> dict[str, Any] | None:
            o = get_server(api, namespace, "shop")
            c = condition(o, "DNSPublished")
            return o if c and c["status"] == "True" else None

        srv = wait_for(published, "DNSPublished=True", timeout=60)
        c = condition(srv, "DNSVerified")
        assert c is not None and c["status"] == "False"  # nothing resolves these names here
        harvest_secrets(api, namespace)
        api.delete(API_VERSION, "PersonalMailServer", namespace, "shop")
        wait_for(
            lambda: (
                api.get("externaldns.k8s.io/v1alpha1", "DNSEndpoint", namespace, "shop-dns") is None
            ),
            "the DNSEndpoint to go with the server",
        )
        assert operator.alive()
    finally:
        api.delete(API_VERSION, "MailPlan", None, plan)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port("127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_route53_publish_conflict_and_remove(moto_url: str, aws_env: None) -> None:
    client = boto3.client("route53", region_name="us-east-1", endpoint_url=moto_url)
    zone = client.create_hosted_zone(Name="r53.example", CallerReference=uuid.uuid4().hex)
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]

    def rrsets(name: str, rtype: str) -> list[str]:
        out = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return sorted(
            r["Value"]
            for rs in out
            if rs["Name"].rstrip(".") == name and rs["Type"] == rtype
            for r in rs["ResourceRecords"]
        )

    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "taken.r53.example.",
                        "Type": "TXT",
                        "TTL": 60,
                        "ResourceRecords": [
                            {"Value": '"v=spf1 include:other.example -all"'},
                            {"Value": '"site-verification=1"'},
                        ],
                    },
                }
            ]
        },
    )
    settings = OperatorSettings(outbound_addresses=("192.0.2.25",))
    provider = route53.provider(moto_url)
    recs = records.server_records(
        ["a.r53.example", "taken.r53.example"], settings, {"a.r53.example": DKIM}
    )
    result = provider.publish(recs, Owned())
    assert [p.reason for p in result.problems] == ["RecordConflict"]
    assert "taken.r53.example" in result.problems[0].message
    assert rrsets("a.r53.example", "MX") == ["10 mx.vpes.test."]
    assert rrsets("a.r53.example", "TXT") == ['"v=spf1 ip4:192.0.2.25 -all"']
    dkim = rrsets("vpes._domainkey.a.r53.example", "TXT")
    assert len(dkim) == 1 and dkim[0].startswith('"v=DKIM1; k=rsa; p=BBBB')
    assert rrsets("taken.r53.example", "TXT") == [
        '"site-verification=1"',
        '"v=spf1 include:other.example -all"',
    ]
    again = provider.publish(recs, result.owned)
    assert again.changed == 0 and again.owned == result.owned

    removed = provider.remove(result.owned)
    assert not removed.problems and not removed.owned
    assert rrsets("a.r53.example", "MX") == []
    assert rrsets("taken.r53.example", "MX") == []
    assert rrsets("taken.r53.example", "TXT") == [
        '"site-verification=1"',
        '"v=spf1 include:other.example -all"',
    ], "someone else's records stay"
    unknown = provider.publish(records.server_records(["x.nowhere"], settings, {}), Owned())
    assert {p.reason for p in unknown.problems} == {"ZoneNotServed"}
