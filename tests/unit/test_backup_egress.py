"""Backup and restore pods reach S3 only: the endpoint, its addresses, the policy."""

from __future__ import annotations

import socket
from typing import Any, cast

import pytest
from pydantic import ValidationError
from vpes_operator.backup import egress, runner
from vpes_operator.backup.access import Access
from vpes_operator.backup.egress import Egress, Endpoint
from vpes_operator.backup.jobs import JobSpec, Request, job, labels
from vpes_operator.backup.repository import Repository
from vpes_operator.backup.store import Credentials
from vpes_operator.clients.kube import Kube
from vpes_operator.errors import ConfigError, WaitingError
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

REPO = Repository.of("customer-a", "alice", "0f3c2b1a-9d8e-4c7b-a6f5-e4d3c2b1a098")
REQUEST = Request("vpes.io/v1alpha1", "MailBackup", "alice-manual", "customer-a", "abc-123-def-456")
SPEC = JobSpec(request=REQUEST, server="alice", repository=REPO, action="backup")


def settings(**kw: Any) -> OperatorSettings:
    return OperatorSettings(backup_s3_bucket="backups", **kw)


def answers(*addresses: str) -> egress.Lookup:
    def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return lookup


def failing(errno: int) -> egress.Lookup:
    def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(errno, "lookup failed")

    return lookup


def never(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
    raise AssertionError("no look-up expected")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"backup_s3_endpoint": "https://s3.example.net"}, Endpoint("s3.example.net", 443)),
        (
            {"backup_s3_endpoint": "https://s3.example.net", "backup_job_s3_endpoint": ""},
            Endpoint("s3.example.net", 443),
        ),
        (
            {"backup_s3_endpoint": "https://x", "backup_job_s3_endpoint": "http://s3.in:9000"},
            Endpoint("s3.in", 9000),
        ),
        ({"backup_s3_endpoint": "http://10.0.0.5"}, Endpoint("10.0.0.5", 80)),
        ({"backup_s3_endpoint": "s3.example.net:8443"}, Endpoint("s3.example.net", 8443)),
        ({"backup_s3_region": "eu-west-1"}, Endpoint("s3.eu-west-1.amazonaws.com", 443)),
    ],
)
def test_the_endpoint_backup_pods_use(kw: dict[str, str], expected: Endpoint) -> None:
    assert egress.endpoint(settings(**kw)) == expected


def test_a_name_is_resolved_to_each_of_its_addresses() -> None:
    s = settings(backup_s3_endpoint="https://s3.example.net")
    got = egress.resolve(s, answers("192.0.2.7", "192.0.2.5", "192.0.2.7"))
    assert got == Egress(("192.0.2.5/32", "192.0.2.7/32"), 443, dns=True)
    got6 = egress.resolve(s, answers("2001:db8::7"))
    assert got6 == Egress(("2001:db8::7/128",), 443, dns=True)


def test_an_address_needs_no_lookup_and_no_dns() -> None:
    s = settings(backup_s3_endpoint="http://192.0.2.9:9000")
    assert egress.resolve(s, never) == Egress(("192.0.2.9/32",), 9000, dns=False)


def test_the_charts_networks_replace_the_lookup() -> None:
    s = settings(backup_s3_egress_cidrs=("52.216.0.0/15", "3.5.0.1/16", "2600:1fa0::/32"))
    assert s.backup_s3_egress_cidrs == ("52.216.0.0/15", "3.5.0.0/16", "2600:1fa0::/32")
    got = egress.resolve(s, never)
    assert got == Egress(s.backup_s3_egress_cidrs, 443, dns=True)
    env = OperatorSettings.from_env({"VPES_BACKUP_S3_EGRESS_CIDRS": "10.1.0.0/16, 192.0.2.1"})
    assert env.backup_s3_egress_cidrs == ("10.1.0.0/16", "192.0.2.1/32")
    with pytest.raises(ValidationError, match=r"backup.s3.egressCIDRs"):
        settings(backup_s3_egress_cidrs=("s3.example.net",))


def test_aws_needs_the_charts_networks() -> None:
    with pytest.raises(ConfigError) as e:
        egress.resolve(settings(), never)
    assert e.value.reason == "S3EgressCIDRsRequired"
    assert "backup.s3.egressCIDRs" in e.value.message and "ip-ranges" in e.value.message


def test_a_name_that_does_not_resolve_says_what_to_fix() -> None:
    s = settings(backup_s3_endpoint="https://s3.nowhere.example")
    with pytest.raises(ConfigError) as e:
        egress.resolve(s, failing(socket.EAI_NONAME))
    assert e.value.reason == "S3EndpointUnresolvable"
    assert "s3.nowhere.example" in e.value.message
    assert "backup.s3.jobEndpoint" in e.value.message
    assert "backup.s3.egressCIDRs" in e.value.message
    # A resolver that fails for a while: wait and try again.
    with pytest.raises(WaitingError) as w:
        egress.resolve(s, failing(socket.EAI_AGAIN))
    assert w.value.reason == "S3Unreachable"


def test_the_policy_admits_s3_and_dns_only_and_nothing_in() -> None:
    s = settings(backup_s3_endpoint="https://s3.example.net")
    policy = egress.network_policy(SPEC, s, Egress(("192.0.2.5/32",), 443, dns=True))
    assert policy["metadata"]["name"] == SPEC.job_name
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "MailBackup"
    body = policy["spec"]
    # It selects exactly the Job's pods (their template's labels), never the tenant.
    template = job(SPEC, s)["spec"]["template"]["metadata"]["labels"]
    assert body["podSelector"] == {"matchLabels": template} == {"matchLabels": labels(SPEC)}
    assert body["policyTypes"] == ["Ingress", "Egress"] and body["ingress"] == []
    assert body["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "192.0.2.5/32"}}],
            "ports": [{"port": 443, "protocol": "TCP"}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    }
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        },
    ]
    literal = egress.network_policy(SPEC, s, Egress(("192.0.2.9/32",), 9000, dns=False))
    assert [r["ports"][0]["port"] for r in literal["spec"]["egress"]] == [9000]


class Recorder:
    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj["kind"])
        return obj


def test_the_policy_is_in_place_before_the_job_and_nothing_is_made_without_it() -> None:
    kube = Recorder()
    access = Access("pw", "backups-0123", Credentials("AKID", "SECRET"))
    runner.start(
        cast(Kube, kube), settings(backup_s3_endpoint="http://192.0.2.9:9000"), SPEC, access
    )
    assert kube.applied == ["NetworkPolicy", "Secret", "Job"]
    kube = Recorder()
    with pytest.raises(ConfigError):
        runner.start(cast(Kube, kube), settings(), SPEC, access)  # AWS, no networks
    assert kube.applied == []
