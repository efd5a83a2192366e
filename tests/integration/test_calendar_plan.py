"""A plan's calendar and contacts, turned on and off, with the operator against the real
API server and a real Knot DNS server: the tenant's `dav` container, its Service port
and NetworkPolicy rule are applied and, once the plan drops calendar, taken back (the
API server accepts them, server-side apply removes them); the `_caldavs._tcp` and
`_carddavs._tcp` SRV records (RFC 6764) are published and verified, and withdrawn at
once (the plan's change, not the next scheduled check), leaving the other records."""

from __future__ import annotations

import uuid

import pytest
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube

from .dns_support import ZONE, KnotServer
from .operator_support import OperatorProcess, plan_body, server_body, wait_for
from .rfc2136_support import (  # noqa: F401 (the DNS fixtures: an operator of our own)
    metrics_port,
    operator,
    secret_file,
    spec,
    wait_condition,
)

pytestmark = pytest.mark.integration
LABELS = ("_caldavs._tcp", "_carddavs._tcp")
WEB = "web.vpes.test."  # the default edge_web_host: vpes-web answers there


def dav_parts(api: Kube, namespace: str, name: str) -> tuple[bool, bool, bool] | None:
    """Whether the StatefulSet has the dav container, the Service the dav port, the
    NetworkPolicy a rule for it (None while one of them is not there)."""
    sts = api.get("apps/v1", "StatefulSet", namespace, naming.statefulset(name))
    svc = api.get("v1", "Service", namespace, naming.service(name))
    policy = api.get(
        "networking.k8s.io/v1", "NetworkPolicy", namespace, naming.network_policy(name)
    )
    if sts is None or svc is None or policy is None:
        return None
    containers = sts["spec"]["template"]["spec"]["containers"]
    rules = policy["spec"]["ingress"]
    return (
        any(c["name"] == "dav" for c in containers),
        any(p["name"] == "dav" for p in svc["spec"]["ports"]),
        any(p.get("port") == "dav" for r in rules for p in r.get("ports", [])),
    )


def test_calendar_follows_the_plan(
    api: Kube,
    operator: OperatorProcess,  # noqa: F811
    knot: KnotServer,
    namespace: str,
) -> None:
    plan = f"cal-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan, features={"calendar": True}))
    d = f"cal.{ZONE}"
    try:
        api.apply(server_body("cal", namespace, spec(plan, d)))
        wait_for(lambda: dav_parts(api, namespace, "cal") == (True, True, True), "dav applied")
        obj = wait_condition(api, namespace, "cal", "DNSVerified", "True")
        listed = {(r["type"], r["name"]): r for r in obj["status"]["dnsRecords"]}
        for label in LABELS:
            record = listed[("SRV", f"{label}.{d}")]
            assert record["value"] == f"0 1 443 {WEB}"
            assert record["check"] == "Pass", record
            assert knot.query(f"{label}.{d}", "SRV") == [f"0 1 443 {WEB}"]

        api.apply(plan_body(plan, features={"calendar": False}))
        wait_for(
            lambda: dav_parts(api, namespace, "cal") == (False, False, False),
            "the dav container, port and rule taken back after the plan change",
            timeout=30,
        )
        wait_for(
            lambda: all(knot.query(f"{label}.{d}", "SRV") == [] for label in LABELS),
            "the CalDAV/CardDAV SRV records withdrawn after the plan change",
            timeout=30,
        )

        def relisted() -> list[dict[str, str]] | None:
            found = (api.get(API_VERSION, "PersonalMailServer", namespace, "cal") or {}).get(
                "status", {}
            )
            records = found.get("dnsRecords", [])
            return None if any("dav" in r["name"] for r in records) else records

        records = wait_for(relisted, "status.dnsRecords without the DAV records", timeout=30)
        assert ("SRV", f"_imaps._tcp.{d}") in {(r["type"], r["name"]) for r in records}
        assert knot.query(f"_imaps._tcp.{d}", "SRV") != []
    finally:
        api.delete(API_VERSION, "PersonalMailServer", namespace, "cal")
        wait_for(
            lambda: api.get(API_VERSION, "PersonalMailServer", namespace, "cal") is None,
            "the server deleted (its DNS cleaned up)",
        )
        api.delete(API_VERSION, "MailPlan", None, plan)
