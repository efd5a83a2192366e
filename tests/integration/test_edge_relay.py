"""The edge's outbound relay, operator side, against the real control plane: the shard
Secrets and the maps' senders/limits/held follow the servers; a fake relay's /status
(a local HTTP server) holds a server over its limit (Deliverable=False), the
annotation releases it, and so for spam (OutboundSpamSuspected); and the chart's
admission policy lets the operator write exactly the relay's shard Secrets in its own
namespace."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.edge import relay

from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    harvest_secrets,
    plan_body,
    server_body,
    wait_for,
)

SOON = 30.0
SHARDS = 4


class FakeRelay:
    """GET /status answers `self.state` (JSON), as the relay image does."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"maps_version": "", "window_seconds": 3600, "servers": {}}
        self.down = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(fake.state).encode()
                self.send_response(503 if fake.down else 200 if self.path == "/status" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/status"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_relay() -> Iterator[FakeRelay]:
    fake = FakeRelay()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def maps_namespace(api: Kube) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        harvest_secrets(api, name)
        api.delete("v1", "Namespace", None, name)


def decoded(secret: dict[str, Any] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in ((secret or {}).get("data") or {}).items()}


def test_shards_and_holds_follow_the_fleet_and_the_relay(
    api: Kube,
    cluster: Any,
    namespace: str,
    maps_namespace: str,
    fake_relay: FakeRelay,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:6]
    domain, plan, prefix, maps_name = f"r-{tag}.test", f"rl-{tag}", f"relay-{tag}", f"edge-{tag}"
    kubeconfig = install_platform(cluster)
    api.apply(plan_body(plan, outboundPerHour=5))
    op = OperatorProcess(
        kubeconfig,
        tmp_path,
        extra_env={
            "VPES_OPERATOR_NAMESPACE": maps_namespace,
            "VPES_EDGE_MAPS_NAME": maps_name,
            "VPES_RELAY_HOST": "[relay.example.internal]:587",
            "VPES_RELAY_KEY_SHARDS": str(SHARDS),
            "VPES_RELAY_SECRET_PREFIX": prefix,
            "VPES_RELAY_STATUS_URL": fake_relay.url,
            "VPES_RELAY_POLL_SECONDS": "1",
        },
    )
    key = f"{namespace}/mail"
    mine = relay.shard_of(key, SHARDS)

    def maps() -> dict[str, str]:
        cm = api.get("v1", "ConfigMap", maps_namespace, maps_name)
        return dict((cm or {}).get("data") or {})

    def shard(i: int) -> dict[str, str]:
        return decoded(api.get("v1", "Secret", maps_namespace, f"{prefix}-{i}"))

    op.start()
    try:
        spec = {
            "plan": plan,
            "owner": {"email": "owner@example.net"},
            "domains": [domain],
            "mailboxes": [{"address": f"a@{domain}"}],
            "dns": {"mode": "Manual"},
        }
        api.apply(server_body("mail", namespace, spec))
        data = wait_for(
            lambda: (d := shard(mine)) and key in d.get(f"users-{mine}", "") and d,
            "the server in its shard",
            SOON * 2,
        )
        # Every shard is written, the others empty of this server.
        for i in range(SHARDS):
            assert f"users-{i}" in shard(i) and f"dkim-{i}" in shard(i)
        creds = decoded(api.get("v1", "Secret", namespace, "mail-credentials"))
        password = creds["relay-password"]
        (line,) = [u for u in data[f"users-{mine}"].splitlines() if u.startswith(key + ":")]
        assert crypto.verify_ssha512(password, line.split(":", 1)[1])
        assert f"{domain} vpes vpes.{domain}.key\n" in data[f"dkim-{mine}"]
        assert data[f"vpes.{domain}.key"] == creds[f"dkim-{domain}.key"]
        # The tenant's Postfix logs in with it (its Secret; never a ConfigMap).
        assert creds["relay-sasl"] == f"[relay.example.internal]:587 {key}:{password}\n"
        config = api.get("v1", "ConfigMap", namespace, "mail-config") or {}
        assert password not in json.dumps(config)
        assert "smtp_sasl_auth_enable = yes" in config["data"]["postfix-main.cf"]
        files = wait_for(lambda: (m := maps()) and key in m.get("limits", "") and m, "limits")
        assert f"@{domain} {key}\n" in files["senders"]
        assert f"{key} 5 -\n" in files["limits"]
        assert files["held"] == ""
        wait_for(
            lambda: (
                (c := condition(get_server(api, namespace, "mail"), "Deliverable"))
                and c["reason"] == "Relaying"
            ),
            "Deliverable=True on a new server",
        )

        # The relay says the server went over its limit: held.
        fake_relay.state["servers"] = {
            key: {"recipients": 7, "limit": 5, "token": "-", "over_limit": True, "deferred": 2}
        }
        cond = wait_for(
            lambda: (
                (c := condition(get_server(api, namespace, "mail"), "Deliverable"))
                and c["status"] == "False"
                and c
            ),
            "Deliverable=False",
            SOON,
        )
        assert cond["reason"] == "OutboundLimitReached"
        assert "sent 7 recipients" in cond["message"] and "limit is 5" in cond["message"]
        assert (
            f"kubectl annotate pms mail -n {namespace} vpes.io/release-outbound=$(date +%s) "
            "--overwrite" in cond["message"]
        )
        status = (get_server(api, namespace, "mail") or {})["status"]["outbound"]
        assert status["held"] is True and status["recipients"] == 7 and status["heldSince"]
        wait_for(lambda: key in maps().get("held", ""), "the server in the maps' held", SOON)

        # The relay stops answering: the hold stays, one event says its state is unknown.
        fake_relay.down = True
        fake_relay.state["servers"] = {}
        wait_for(
            lambda: any(
                e.get("reason") == "RelayStatusUnknown"
                for e in api.list("v1", "Event", maps_namespace)
            ),
            "the RelayStatusUnknown event on the maps",
            SOON,
        )
        assert condition(get_server(api, namespace, "mail"), "Deliverable")["status"] == "False"  # type: ignore[index]
        assert key in maps()["held"]
        fake_relay.down = False
        fake_relay.state["servers"] = {
            key: {"recipients": 7, "limit": 5, "token": "-", "over_limit": True, "deferred": 2}
        }

        # The admin releases it.
        api.patch_metadata(
            API_VERSION,
            "PersonalMailServer",
            namespace,
            "mail",
            {"annotations": {"vpes.io/release-outbound": "1700000000"}},
        )
        wait_for(
            lambda: (
                (c := condition(get_server(api, namespace, "mail"), "Deliverable"))
                and c["status"] == "True"
            ),
            "Deliverable=True after the release",
            SOON,
        )
        status = (get_server(api, namespace, "mail") or {})["status"]["outbound"]
        assert status["held"] is False and status["releasedToken"] == "1700000000"
        files = wait_for(
            lambda: (m := maps()) and f"{key} 5 1700000000\n" in m["limits"] and m,
            "the token in the maps' limits",
            SOON,
        )
        wait_for(lambda: maps().get("held") == "", "the hold gone from the maps", SOON)
        # The relay still reports the old count (under the old token): no new hold.
        assert condition(get_server(api, namespace, "mail"), "Deliverable")["status"] == "True"  # type: ignore[index]
        events = api.list("v1", "Event", namespace)
        assert any(e.get("reason") == "OutboundReleased" for e in events)

        # The relay's antispam refused enough of its messages (under the new token):
        # held again, for spam, with what to do.
        fake_relay.state["servers"] = {
            key: {
                "recipients": 1, "limit": 5, "token": "1700000000", "over_limit": False,
                "deferred": 0, "spam": 5, "spam_hold": True,
            }
        }  # fmt: skip
        cond = wait_for(
            lambda: (
                (c := condition(get_server(api, namespace, "mail"), "Deliverable"))
                and c["status"] == "False"
                and c
            ),
            "Deliverable=False for spam",
            SOON,
        )
        assert cond["reason"] == "OutboundSpamSuspected"
        assert "refused 5 of its messages" in cond["message"]
        assert "vpes.io/release-outbound=$(date +%s)" in cond["message"]
        status = (get_server(api, namespace, "mail") or {})["status"]["outbound"]
        assert status["held"] is True and status["heldFor"] == "Spam" and status["spam"] == 5
        held = wait_for(lambda: key in (h := maps().get("held", "")) and h, "spam held", SOON)
        assert "outbound mail is held:" in held and "as spam" in held
        assert any(
            e.get("reason") == "OutboundSpamSuspected" for e in api.list("v1", "Event", namespace)
        )
        # The same annotation, a new token, releases it; the relay forgets the count.
        api.patch_metadata(
            API_VERSION,
            "PersonalMailServer",
            namespace,
            "mail",
            {"annotations": {"vpes.io/release-outbound": "1700000100"}},
        )
        wait_for(
            lambda: (
                (c := condition(get_server(api, namespace, "mail"), "Deliverable"))
                and c["status"] == "True"
            ),
            "Deliverable=True after the spam release",
            SOON,
        )
        status = (get_server(api, namespace, "mail") or {})["status"]["outbound"]
        # (heldFor, heldSince and reason stay as they were: a merge patch of the status
        # drops no field the model leaves out.)
        assert status["held"] is False and status["releasedToken"] == "1700000100"
        wait_for(lambda: f"{key} 5 1700000100\n" in maps()["limits"], "the new token", SOON)
        wait_for(lambda: maps().get("held") == "", "the spam hold gone from the maps", SOON)

        # The server goes: so does its user.
        api.delete(API_VERSION, "PersonalMailServer", namespace, "mail")
        wait_for(lambda: key not in shard(mine).get(f"users-{mine}", key), "the user gone", SOON)
    finally:
        op.stop()
        api.delete(API_VERSION, "MailPlan", None, plan)
    assert password not in op.log_text()


def test_the_chart_lets_the_operator_write_exactly_its_relay_shards(cluster: Any) -> None:
    kubeconfig = install_platform(cluster)
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    as_operator = Kube(client, field_manager="vpes-operator")

    def refused(name: str, namespace: str = OPERATOR_NAMESPACE) -> str | None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {},
        }
        try:
            as_operator.create(body, dry_run=True)
        except ApiError as e:
            return None if e.status == 409 else f"{e.status} {e.message}"
        return None

    wait_for(lambda: refused("x", "kube-system"), "the operator-scope policy in force")
    for i in (0, 15):  # the chart's default: 16 shards
        assert refused(f"vpes-edge-relay-{i}") is None, i
    assert refused("backup-key-shop-alice-12345678") is None
    for name in ("vpes-edge-relay-16", "vpes-edge-relay", "someone-else", "vpes-antispam"):
        why = refused(name)
        assert why is not None and "403" in why, (name, why)
