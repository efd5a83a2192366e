"""Measuring servers' usage: who may reach the report, the pass over the pods, what
is written (pure parts, and the pass with a stand-in API and pods)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from vpes_operator import status, storage, usage
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.network import network_policy
from vpes_operator.builders.workload import statefulset
from vpes_operator.conditions import Cond, Event, find
from vpes_operator.metrics import summary
from vpes_operator.models.conditions import ConditionType, Reason
from vpes_operator.models.server import PersonalMailServer, PersonalMailServerStatus
from vpes_operator.render.layout import USAGE_PORT, USAGE_PORT_NAME
from vpes_operator.settings import OperatorSettings

from .render_support import PLAN, SETTINGS

pytestmark = pytest.mark.unit

OWNER = Owner(name="alice", namespace="customer-1", uid="0f3c2b1a", plan="personal")
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
MIB = 1 << 20
PLAN_RAW = {"storage": "1Gi", "defaultQuota": "512Mi", "maxMessageSize": "25Mi"}
SPEC = {
    "plan": "personal",
    "domains": ["example.org"],
    "mailboxes": [{"address": "alice@example.org", "quota": "1Gi"}, {"address": "b@example.org"}],
}
STORAGE = storage.STORAGE_HEALTHY


def _report(used_mib: int, avail_mib: int, alice: int = 5 * MIB) -> storage.Report:
    return storage.parse_report(
        f"vpes-usage 1\nvolume {MIB} 1024 {1024 - used_mib} {avail_mib} 9 9\n"
        f"mailbox alice@example.org {alice} 3\nend\n"
    )


def test_only_the_operator_reaches_the_usage_report() -> None:
    ports = statefulset(OWNER, PLAN, SETTINGS, suspended=False)["spec"]["template"]["spec"][
        "containers"
    ][0]["ports"]
    assert {"name": USAGE_PORT_NAME, "containerPort": USAGE_PORT, "protocol": "TCP"} in ports
    rules = network_policy(OWNER, SETTINGS, dedicated_address=True)["spec"]["ingress"]
    reaching = [r for r in rules if {"port": USAGE_PORT_NAME, "protocol": "TCP"} in r["ports"]]
    assert len(reaching) == 1
    operator = {"matchLabels": dict(SETTINGS.operator_pod_labels)}
    assert [peer["podSelector"] for peer in reaching[0]["from"]] == [operator]
    assert all("ipBlock" not in peer for peer in reaching[0]["from"])


def test_spec_usage_adds_up_the_quotas() -> None:
    got, reserve = usage.spec_usage(SPEC, PLAN_RAW)
    assert got.quota_committed_bytes == (1 << 30) + 512 * MIB
    assert [(b.address, b.quota_bytes) for b in got.mailbox_usage] == [
        ("alice@example.org", 1 << 30),
        ("b@example.org", 512 * MIB),
    ]
    assert (got.mailboxes, got.domains, got.storage_requested) == (2, 1, "1Gi")
    assert reserve == storage.reserve_bytes(1 << 30, 25 * MIB)
    # Without its plan the default quota is unknown: no sum, no reserve.
    got, reserve = usage.spec_usage(SPEC, None)
    assert (got.quota_committed_bytes, reserve) == (None, 0)


def _provisioned() -> PersonalMailServerStatus:
    return PersonalMailServerStatus.model_validate(
        {
            "conditions": [
                {
                    "type": "Provisioned",
                    "status": "True",
                    "reason": "Applied",
                    "lastTransitionTime": "2026-12-04T11:00:00Z",
                }
            ]
        }
    )


def _current() -> dict[str, Any]:
    return {"metadata": {"name": "alice", "generation": 2, "uid": "u1"}, "spec": SPEC}


def _server() -> PersonalMailServer:
    return PersonalMailServer.model_validate(_current())


def test_a_measurement_writes_usage_and_storage_healthy() -> None:
    after = usage.with_measurement(
        _server(), _provisioned(), _report(900, 100), PLAN_RAW, OperatorSettings(), NOW
    )
    assert after is not None and after.usage is not None
    assert after.usage.storage_used_bytes == 900 * MIB
    assert after.usage.measured_at == NOW
    cond = find(after.conditions, STORAGE)
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", Reason.VOLUME_NEARLY_FULL)
    # Not reconciled yet: left alone (its reconcile writes the first status).
    empty = PersonalMailServerStatus()
    assert usage.with_measurement(_server(), empty, _report(1, 1), None, SETTINGS, NOW) is None


def test_a_reconcile_keeps_the_measurement_and_rechecks_the_quotas() -> None:
    measured = usage.with_measurement(
        _server(), _provisioned(), _report(100, 900), PLAN_RAW, OperatorSettings(), NOW
    )
    assert measured is not None
    bigger = {**SPEC, "mailboxes": [*SPEC["mailboxes"], {"address": "c@example.org"}]}
    spec_side, reserve = usage.spec_usage(bigger, PLAN_RAW)
    after = status.compute(
        measured,
        generation=3,
        sts=None,
        suspended=False,
        provisioned=Cond(ConditionType.PROVISIONED, True, Reason.APPLIED, "ok"),
        usage=spec_side,
        storage_limits=usage.limits(OperatorSettings(), reserve),
        now=NOW + dt.timedelta(minutes=1),
    )
    assert after.usage is not None and measured.usage is not None
    assert after.usage.storage_used_bytes == measured.usage.storage_used_bytes
    assert after.usage.mailboxes == 3
    cond = find(after.conditions, STORAGE)
    assert cond is not None and cond.reason == Reason.QUOTAS_OVERCOMMITTED
    # The phase follows Ready, not the storage.
    assert find(after.conditions, ConditionType.READY) is not None


def test_the_gauges_read_the_status() -> None:
    after = usage.with_measurement(
        _server(), _provisioned(), _report(1000, 10), PLAN_RAW, OperatorSettings(), NOW
    )
    assert after is not None
    body = {
        "metadata": {"namespace": "c1", "name": "alice"},
        "spec": SPEC,
        "status": after.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    s = summary(PersonalMailServer.model_validate(body))
    assert (s.storage_used, s.storage_capacity) == (1000 * MIB, 1 << 30)
    assert s.quota_committed == (1 << 30) + 512 * MIB
    assert s.storage_healthy is False


class Api:
    """Pods in pages, and one server's status, as the API server keeps them."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.status: dict[str, Any] = _provisioned().model_dump(by_alias=True, mode="json")
        self.queries: list[dict[str, str]] = []

    def request(self, method: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        self.queries.append(query)
        start = int(query.get("continue", "0"))
        end = start + 1
        more = {"continue": str(end)} if end < len(self.pods) else {}
        return {"items": self.pods[start:end], "metadata": more}

    def update_status(self, *args: Any, **_: Any) -> dict[str, Any] | None:
        obj = {**_current(), "status": self.status}
        new = args[-1](obj)
        if new is None:
            return None
        self.status = new
        return {**obj, "status": new}


def _pod(server: str, ip: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "c1",
            "name": f"{server}-0",
            "labels": {"vpes.io/server": server},
        },
        "status": {"podIP": ip, **status},
    }


def test_a_pass_measures_every_running_pod_page_by_page() -> None:
    api = Api([_pod("alice", "10.0.0.1"), _pod("bob", "10.0.0.2"), _pod("nobody", "")])
    asked: list[str] = []
    posted: list[tuple[str, list[Event]]] = []

    def read(ip: str) -> storage.Report:
        asked.append(ip)
        if ip == "10.0.0.2":
            raise ConnectionRefusedError("refused")
        return _report(990, 5)

    poll = usage.UsagePoll(
        api,  # type: ignore[arg-type]
        OperatorSettings(usage_interval_seconds=0.1),
        plan=lambda name: PLAN_RAW,
        post=lambda ref, events: posted.append((ref["metadata"]["uid"], events)),
        read=read,
    )
    assert poll.run() == (1, 1)
    assert sorted(asked) == ["10.0.0.1", "10.0.0.2"]
    assert len(api.queries) == 3  # one page each
    assert all(q["limit"] == usage.PAGE for q in api.queries)
    assert api.queries[0]["fieldSelector"] == "status.phase=Running"
    # The transition to VolumeFull is one Warning event on the server.
    assert [(uid, [(e.type, e.reason) for e in evs]) for uid, evs in posted] == [
        ("u1", [("Warning", Reason.VOLUME_FULL)])
    ]


def test_a_pass_is_spread_over_the_interval_and_stops_when_asked() -> None:
    api = Api([_pod(f"s{i}", f"10.0.0.{i}") for i in range(1, 5)])
    times: list[float] = []

    def read(ip: str) -> storage.Report:
        times.append(time.monotonic())
        return _report(1, 1000)

    settings = OperatorSettings(usage_interval_seconds=1.0)
    poll = usage.UsagePoll(api, settings, plan=lambda _: PLAN_RAW, post=lambda *_: None, read=read)  # type: ignore[arg-type]
    start = time.monotonic()
    assert poll.run() == (4, 0)
    # 4 pods over 80 % of 1 s: 0.2 s apart.
    assert 0.55 < times[-1] - times[0] < 0.8 and time.monotonic() - start < 1.0
    poll.stopping.set()
    assert poll.run() == (0, 0)  # stopping: nothing more is asked
