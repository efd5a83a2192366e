"""The Knot DNS server, the operator publishing into it by RFC 2136 + TSIG, and the helpers
the DNS modules share (`test_dns_rfc2136`, `test_dns_faults`, `test_dns_cleanup`,
`test_calendar_plan`): module-scoped fixtures, so each module gets its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .dns_support import KEY_NAME, ZONE, KnotServer, free_port
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    install_platform,
    plan_body,
    wait_for,
)

TLSA = "3 1 1 " + "ab" * 32
MX_HOST = f"mx.{ZONE}"
PMS = "PersonalMailServer"


def dns_env(knot: KnotServer, secret_file: Path) -> dict[str, str]:
    return {
        "VPES_DNS_DEFAULT_PROVIDER": "rfc2136",
        "VPES_DNS_RFC2136_SERVER": knot.address,
        "VPES_DNS_RFC2136_TSIG_NAME": KEY_NAME,
        "VPES_DNS_RFC2136_TSIG_SECRET_FILE": str(secret_file),
        "VPES_DNS_RESOLVERS": knot.address,
        "VPES_DNS_TTL": "300",
        "VPES_MX_HOST": MX_HOST,
        "VPES_OUTBOUND_ADDRESSES": "192.0.2.25,2001:db8::25",
        "VPES_DMARC_RUA": "dmarc@vpes-dns.test",
        "VPES_TLS_RPT_RUA": "tls@vpes-dns.test",
        "VPES_DANE_TLSA": TLSA,
        "VPES_DNS_VERIFY_TICK": "1",
        "VPES_DKIM_ED25519": "true",
        "VPES_DNS_VERIFY_MIN_INTERVAL": "1",
        "VPES_DNS_VERIFY_MAX_INTERVAL": "4",
    }


@pytest.fixture(scope="module")
def secret_file(knot: KnotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tsig") / "secret"
    path.write_text(knot.secret)
    return path


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture(scope="module")
def operator(
    cluster: Any,
    knot: KnotServer,
    secret_file: Path,
    metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    op = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("operator-dns"),
        dns_env(knot, secret_file),
        args=["--metrics-port", str(metrics_port)],
    )
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def plan(api: Kube) -> Iterator[str]:
    name = f"dns-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def spec(plan: str, *domains: str, **dns: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": list(domains),
        "mailboxes": [{"address": f"alice@{domains[0]}"}],
    }
    if dns:
        out["dns"] = dns
    return out


def wait_condition(
    api: Kube, namespace: str, name: str, type_: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_server(api, namespace, name)
        c = condition(obj, type_)
        if c and c["status"] == status and (reason is None or c["reason"] == reason):
            return obj
        return None

    return wait_for(check, f"{type_}={status} {reason or ''} on {name}", timeout=90)


def events_of(api: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Kubernetes events about the PersonalMailServer `name`."""
    found = api.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query={"fieldSelector": f"involvedObject.name={name}"},
    )
    return [e for e in found.get("items", []) if e["involvedObject"]["kind"] == PMS]


def wait_event(api: Kube, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        return next((e for e in events_of(api, namespace, name) if e["reason"] == reason), None)

    return wait_for(check, f"an event {reason} on {name}", timeout=30)


def restarted(operator: OperatorProcess, **env: str) -> dict[str, str | None]:
    """Restart the operator with `env` changed; the old values, to restore with `restarted`."""
    operator.stop()
    old = {k: operator.env.get(k) for k in env}
    operator.env.update(env)
    operator.start()
    return old


def restore(operator: OperatorProcess, old: dict[str, str | None]) -> None:
    operator.stop()
    for k, v in old.items():
        if v is None:
            operator.env.pop(k, None)
        else:
            operator.env[k] = v
    operator.start()
