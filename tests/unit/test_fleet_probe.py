"""The health gate's two halves: the pod runs the image (from the Pod as the API returns
it), and the daemons greet (over real TCP, here servers on loopback)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_operator import naming
from vpes_operator.fleet import controller
from vpes_operator.fleet.planner import Health
from vpes_operator.fleet.probe import greeting_verdict, pod_verdict
from vpes_operator.models.fleet import FleetUpgrade
from vpes_operator.models.kube import Pod
from vpes_operator.models.server import PersonalMailServer

pytestmark = pytest.mark.unit

NEW = "registry.test/vpes-tenant:2"


def pod(image: str, *, running: bool = True, ready: bool = True, **meta: Any) -> Pod:
    state = {"running": {"startedAt": "2026-12-07T03:00:00Z"}} if running else {"waiting": {}}
    return Pod.model_validate(
        {
            "metadata": {"name": "alice-0", **meta},
            "spec": {"containers": [{"name": "mail", "image": image}, {"name": "dav"}]},
            "status": {
                "containerStatuses": [
                    {"name": "dav", "ready": True, "state": {"running": {}}},
                    {"name": "mail", "image": image, "ready": ready, "state": state},
                ]
            },
        }
    )


@pytest.mark.parametrize(
    ("pods", "verdict"),
    [
        ([pod(NEW)], None),
        ([], "no pod"),
        ([pod("registry.test/vpes-tenant:1")], f"no pod runs {NEW} yet"),
        ([pod(NEW, running=False)], "has not started the image's container yet"),
        ([pod(NEW, ready=False)], "runs the image but is not ready"),
        ([pod(NEW, deletionTimestamp="2026-12-07T03:00:00Z")], f"no pod runs {NEW} yet"),
    ],
)
def test_pod_verdict(pods: list[Pod], verdict: str | None) -> None:
    got = pod_verdict(pods, NEW)
    if verdict is None:
        assert got is None
    else:
        assert got is not None and verdict in got


class Greeter:
    """A TCP server on loopback that sends one line to each client, then closes."""

    def __init__(self, line: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.line = line
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.line)


@pytest.fixture
def greeters() -> Iterator[dict[str, Greeter]]:
    made = {
        "smtp": Greeter(b"220 alice.vpes.test ESMTP Postfix\r\n"),
        "imap": Greeter(b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n"),
        "http": Greeter(b"HTTP/1.1 400 Bad Request\r\n"),
    }
    yield made
    for g in made.values():
        g.sock.close()


def test_both_greetings_pass(greeters: dict[str, Greeter]) -> None:
    gates = (("SMTP", greeters["smtp"].port, "220"), ("IMAP", greeters["imap"].port, "* OK"))
    assert greeting_verdict("127.0.0.1", 2.0, gates) is None


def test_a_wrong_greeting_is_named(greeters: dict[str, Greeter]) -> None:
    gates = (("SMTP", greeters["smtp"].port, "220"), ("IMAP", greeters["http"].port, "* OK"))
    verdict = greeting_verdict("127.0.0.1", 2.0, gates)
    assert verdict is not None
    assert verdict.startswith(f"IMAP on 127.0.0.1:{greeters['http'].port} answered 'HTTP/1.1")


def test_a_closed_port_is_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    verdict = greeting_verdict("127.0.0.1", 2.0, (("SMTP", port, "220"),))
    assert verdict is not None and verdict.startswith(f"SMTP on 127.0.0.1:{port} did not answer")


@pytest.mark.parametrize(
    ("annotations", "spec", "held"),
    [
        ({}, {}, None),
        ({naming.ANNOTATION_RESTORE: "restore-1"}, {}, "restore restore-1"),
        ({}, {"suspended": True}, None),  # the planner's: Server.suspended
    ],
)
def test_a_restoring_server_waits(
    annotations: dict[str, str], spec: dict[str, Any], held: str | None
) -> None:
    server = PersonalMailServer.model_validate(
        {"metadata": {"name": "alice", "annotations": annotations}, "spec": spec}
    )
    assert controller.held_reason(server) == held


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def check(self, namespace: str, server: str, image: str) -> Health:
        self.seen.append((namespace, server, image))
        return Health(server != "b", f"{server} checked")


def test_the_gate_probes_each_server_of_the_wave_in_flight() -> None:
    upgrade = FleetUpgrade.model_validate(
        {
            "metadata": {"name": "up"},
            "spec": {"image": NEW},
            "status": {"wave": [{"namespace": "n", "name": "a"}, {"namespace": "n", "name": "b"}]},
        }
    )
    probe = Recorder()
    health = controller.gate(probe, upgrade)
    assert {k: h.ok for k, h in health.items()} == {("n", "a"): True, ("n", "b"): False}
    assert sorted(probe.seen) == [("n", "a", NEW), ("n", "b", NEW)]
    assert (
        controller.gate(
            probe,
            upgrade.model_copy(update={"status": upgrade.status.model_copy(update={"wave": []})}),
        )
        == {}
    )
