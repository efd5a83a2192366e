"""CalDAV/CardDAV discovery (RFC 6764) through the operator into a real Knot DNS server:
a plan with calendar and contacts publishes and verifies `_caldavs._tcp` and
`_carddavs._tcp` SRV records; turning it off in the plan withdraws them at once (the
plan's change, not the next scheduled check), leaving the other records."""

from __future__ import annotations

import uuid

import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .dns_support import ZONE, KnotServer
from .operator_support import OperatorProcess, plan_body, server_body, wait_for
from .test_dns_rfc2136 import (  # noqa: F401 (the module's fixtures, a Knot and an operator of our own)
    knot,
    metrics_port,
    operator,
    secret_file,
    spec,
    wait_condition,
)

pytestmark = pytest.mark.integration
LABELS = ("_caldavs._tcp", "_carddavs._tcp")
WEB = "web.vpes.test."  # the default edge_web_host: vpes-web answers there


def test_calendar_srv_records_follow_the_plan(
    api: Kube,
    operator: OperatorProcess,  # noqa: F811
    knot: KnotServer,  # noqa: F811
    namespace: str,
) -> None:
    plan = f"cal-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan, features={"calendar": True}))
    d = f"cal.{ZONE}"
    try:
        api.apply(server_body("cal", namespace, spec(plan, d)))
        obj = wait_condition(api, namespace, "cal", "DNSVerified", "True")
        listed = {(r["type"], r["name"]): r for r in obj["status"]["dnsRecords"]}
        for label in LABELS:
            record = listed[("SRV", f"{label}.{d}")]
            assert record["value"] == f"0 1 443 {WEB}"
            assert record["check"] == "Pass", record
            assert knot.query(f"{label}.{d}", "SRV") == [f"0 1 443 {WEB}"]

        api.apply(plan_body(plan, features={"calendar": False}))
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
