"""The edge's metrics under podman: the MX's /metrics on 9147 counts each refusal
by its reason and each delivery by its outcome, exactly once, shows a deferred
message in the deferred queue, and passes Postfix's log on unchanged; the login
proxy's Dovecot counts logins by result and the sessions it closed.

Metrics are read from the containers' own addresses on the podman network (as
Prometheus reads a pod's), never published on the host.
"""

from __future__ import annotations

import re
import smtplib
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .clients import message, proxy_v1, unique, wait_until
from .conftest import Running, host_address
from .edge import Edge, map_text
from .mx_support import ALICE, SIZE_LIMIT, maps_for, rcpt, read_reply, send, start_edge
from .proxy_support import ALICE as PROXY_ALICE
from .proxy_support import BASE, ProxySetup, imap, login_error
from .tenant import PASSWORDS, container_address, podman

pytestmark = pytest.mark.images

METRICS_PORT = 9147
# A domain whose tenant refuses connections: its mail is deferred at the edge.
DOWN = "down.example"
Series = dict[str, float]
SMALL = {"VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT)}


def scrape(host: str) -> Series:
    """``name{labels}`` → value, from a /metrics (Prometheus or OpenMetrics text)."""
    url = f"http://{host}:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def moved(before: Series, after: Series) -> Series:
    """The series that changed, by how much."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def rejections(reason: str) -> str:
    return f'vpes_edge_postfix_rejections_total{{reason="{reason}",role="mx"}}'


def queue(name: str) -> str:
    return f'vpes_edge_postfix_queue_messages{{queue="{name}",role="mx"}}'


# --- the MX ------------------------------------------------------------------


@dataclass
class MetricsMX:
    edge: Edge
    address: str  # the container's own, where Prometheus would scrape it

    def counters(self) -> Series:
        """The counters only (the queue gauges move on their own)."""
        return {k: v for k, v in scrape(self.address).items() if "_total" in k}

    def settle(self, before: Series, expected: Series, timeout: float = 15) -> Series:
        """Until the counters moved by ``expected``, then a moment more: what moved."""
        wait_until(
            lambda: moved(before, self.counters()) == expected or None,
            timeout,
            f"counters to move by {expected} (moved: {moved(before, self.counters())})",
        )
        time.sleep(1.5)  # nothing else follows (a line counted twice, a late one)
        return moved(before, self.counters())


@pytest.fixture(scope="module")
def mx(
    edge_image: str, tenant: Running, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetricsMX]:
    tenant_ip = container_address(tenant.tenant.name)
    files = maps_for(tenant_ip, "metrics-0")
    # Plus a domain routed to a port nobody listens on: refused at once, deferred.
    files["domains"] += map_text({DOWN: "down/down"})
    files["recipients"] += map_text({f"someone@{DOWN}": "OK"})
    files["transport"] += map_text({DOWN: f"smtp:[{tenant_ip}]:1"})
    root = tmp_path_factory.mktemp("edge-metrics")
    # The queue's tmpfs is small: a small size limit (queue_minfree is 1.5 times it).
    box = start_edge(edge_image, root, host_address(33), files, SMALL)
    try:
        box.start()
        box.wait_ready()
        box.wait_version("metrics-0")
        address = container_address(box.name)
        wait_until(lambda: _listening(address), 15, "the MX's /metrics")
        yield MetricsMX(box, address)
    finally:
        box.remove()


def _listening(host: str) -> bool:
    try:
        with socket.create_connection((host, METRICS_PORT), timeout=1):
            return True
    except OSError:
        return False


def test_every_reason_and_queue_is_there_from_the_start(mx: MetricsMX) -> None:
    series = scrape(mx.address)
    for reason in ("unknown_recipient", "relay_denied", "suspended", "spam", "other"):
        assert series[rejections(reason)] == 0
    for name in ("incoming", "active", "deferred", "hold"):
        assert queue(name) in series
    assert 'vpes_edge_postfix_deliveries_total{role="mx",status="sent"}' in series


def test_an_unknown_recipient_and_a_relay_attempt_count_once_each(mx: MetricsMX) -> None:
    before = mx.counters()
    assert rcpt(mx.edge.host, 25, "nobody-here@example.org")[0] == 550
    assert rcpt(mx.edge.host, 2525, "someone@elsewhere.example")[0] // 100 == 5
    assert mx.settle(before, {rejections("unknown_recipient"): 1, rejections("relay_denied"): 1})


def test_a_suspended_server_counts_as_suspended(mx: MetricsMX) -> None:
    before = mx.counters()
    assert rcpt(mx.edge.host, 2525, "someone@suspended.example")[0] == 450
    assert mx.settle(before, {rejections("suspended"): 1})


def test_a_pregreet_talker_counts_as_postscreen(mx: MetricsMX) -> None:
    # As test_edge_mx.py's: talking before the greeting, refused by postscreen.
    before = mx.counters()
    with socket.create_connection((mx.edge.host, 25), timeout=20) as sock:
        replies = sock.makefile("rb")
        sock.sendall(proxy_v1("203.0.113.98", "192.0.2.25", 42001, 25) + b"EHLO bot.example\r\n")
        assert b"\r\n250 " in read_reply(replies)
        sock.sendall(b"MAIL FROM:<carol@example.org>\r\n")
        assert read_reply(replies).startswith(b"250")
        sock.sendall(f"RCPT TO:<{ALICE}>\r\n".encode())
        assert read_reply(replies).startswith(b"550")
    assert mx.settle(before, {rejections("postscreen"): 1})


def test_a_delivery_counts_as_sent(mx: MetricsMX, tenant: Running) -> None:
    before = mx.counters()
    send(mx.edge.host, 2525, [ALICE], message("carol@example.org", ALICE, unique("metrics")))
    assert mx.settle(before, {'vpes_edge_postfix_deliveries_total{role="mx",status="sent"}': 1})


def test_a_deferred_message_is_in_the_deferred_queue(mx: MetricsMX) -> None:
    before = mx.counters()
    send(mx.edge.host, 2525, [f"someone@{DOWN}"], message("c@example.org", "x", unique("down")))
    deferred = 'vpes_edge_postfix_deliveries_total{role="mx",status="deferred"}'
    assert mx.settle(before, {deferred: 1}) == {deferred: 1}
    wait_until(lambda: scrape(mx.address)[queue("deferred")] == 1 or None, 15, "deferred == 1")
    series = scrape(mx.address)
    assert series[queue("active")] == series[queue("incoming")] == series[queue("hold")] == 0
    # The log still reaches the container's output, unchanged, once.
    logs = mx.edge.logs()
    lines = [x for x in logs.splitlines() if f"to=<someone@{DOWN}>" in x and "status=deferred" in x]
    assert len(lines) == 1, lines
    assert re.search(r"postfix/smtp\[\d+\]: [0-9A-F]+: to=<someone@down\.example>", lines[0])
    assert len([x for x in logs.splitlines() if "User unknown in relay recipient table" in x]) == 1


def test_an_unreachable_milter_counts_then_the_exporter_dying_restarts_the_container(
    edge_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Rspamd not answering: the MX says 451, counted as milter_tempfail (the alert
    VpesEdgeAntispamUnavailable reads it). Then the exporter is killed: Postfix's log
    would have nowhere to go, so vpes-edge exits 1 (the kubelet restarts it)."""
    root = tmp_path_factory.mktemp("edge-kill")
    env = {**SMALL, "VPES_MILTER": "inet:127.0.0.1:11332"}  # nothing listens there
    box = start_edge(edge_image, root, host_address(34), maps_for("192.0.2.1", "k-0"), env)
    try:
        box.start()
        box.wait_ready()
        address = container_address(box.name)
        wait_until(lambda: _listening(address), 15, "the MX's /metrics")
        with smtplib.SMTP(box.host, 2525, timeout=30) as smtp:
            smtp.ehlo("client.example")
            code, text = smtp.mail("carol@example.org")
        assert code == 451, text
        tempfails = rejections("milter_tempfail")
        counted = wait_until(lambda: scrape(address)[tempfails] or None, 15, "a milter_tempfail")
        assert counted >= 1
        assert all(
            v == 0
            for k, v in scrape(address).items()
            if k.startswith("vpes_edge_postfix_rejections_total") and k != tempfails
        )
        kill = (
            "for p in /proc/[0-9]*; do "
            '[ "${p#/proc/}" != $$ ] && grep -q vpes_edge_metrics $p/cmdline 2>/dev/null '
            "&& kill ${p#/proc/}; done; true"
        )
        podman("exec", box.name, "sh", "-c", kill)
        assert box.wait_exit() == 1
        assert "the metrics exporter exited on its own" in box.logs()
    finally:
        box.remove()


def test_stop_is_clean_with_the_exporter(mx: MetricsMX) -> None:
    # Last: stops the module's MX. SIGTERM: Postfix stops, the exporter follows it.
    logs = mx.edge.stop()
    assert "vpes-edge: stopped" in logs


# --- the login proxy -----------------------------------------------------------------


def logins(result: str) -> str:
    return f"dovecot_vpes_proxy_logins_{result}_total"


CLOSED = "dovecot_vpes_proxy_sessions_closed_total"
RESULTS = ("ok", "auth_failed", "no_route", "tenant_error")


def proxy_counters(proxy: ProxySetup) -> Series:
    """The login and session counters (not Dovecot's durations of the same events)."""
    wanted = {logins(r) for r in RESULTS} | {CLOSED}
    return {k: v for k, v in scrape(proxy.edge.ip).items() if k in wanted}


def proxy_settle(proxy: ProxySetup, before: Series, expected: Series) -> Series:
    wait_until(
        lambda: moved(before, proxy_counters(proxy)) == expected or None,
        15,
        f"counters to move by {expected} (moved: {moved(before, proxy_counters(proxy))})",
    )
    time.sleep(1.5)
    return moved(before, proxy_counters(proxy))


def test_proxy_logins_count_by_result(proxy: ProxySetup) -> None:
    before = proxy_counters(proxy)
    assert set(before) == {logins(r) for r in RESULTS} | {CLOSED}, before
    with imap(proxy.host, 20143) as client:
        client.login(PROXY_ALICE, PASSWORDS[PROXY_ALICE])
        client.logout()
    login_error(proxy.host, 20143, PROXY_ALICE, "not-her-password")
    login_error(proxy.host, 20143, "alice@unknown.example", "whatever-123")
    assert proxy_settle(
        proxy,
        before,
        {logins("ok"): 1, logins("auth_failed"): 1, logins("no_route"): 1, CLOSED: 1},
    )


def test_proxy_sessions_open_are_ok_minus_closed(proxy: ProxySetup) -> None:
    before = proxy_counters(proxy)
    with imap(proxy.host, 20143) as client:
        client.login(PROXY_ALICE, PASSWORDS[PROXY_ALICE])
        now = wait_until(
            lambda: (c := proxy_counters(proxy))[logins("ok")] > before[logins("ok")] and c,
            15,
            "the login counted",
        )
        assert now[logins("ok")] - now[CLOSED] == before[logins("ok")] - before[CLOSED] + 1
        client.logout()
    assert proxy_settle(proxy, before, {logins("ok"): 1, CLOSED: 1})


def test_proxy_tenant_unreachable_is_a_tenant_error(proxy: ProxySetup) -> None:
    # Routed to a port nobody listens on (the map's line: host=127.0.0.1 port=1).
    proxy.route({**BASE, DOWN: "127.0.0.1 port=1"}, "metrics-down")
    proxy.edge.wait_version("metrics-down")
    try:
        before = proxy_counters(proxy)
        login_error(proxy.host, 20143, f"someone@{DOWN}", "whatever-123")
        assert proxy_settle(proxy, before, {logins("tenant_error"): 1})
    finally:
        proxy.restore()
