"""The shared edge's login proxy (images/edge, ``vpes-edge proxy``) under podman:
IMAP, POP3, ManageSieve and submission logins go to the tenant their domain is
routed to, the tenant checks the password and sees the client's real address,
and the operator's map changes (or fails to) without a restart.

Two tenants of their own (the sample server on each, both trusting the edge's
address) and the edge on a fixed address of the podman network
(``--ip``), the tenants' Services as names in its /etc/hosts (``--add-host``),
as the operator routes a domain to ``<server>.<ns>.svc.cluster.local``. Tenant
B's Postfix also trusts XCLIENT from the edge on 587 (what the tenant must add
for submission to see the client's address; tenant A is rendered as today).
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import poplib
import random
import smtplib
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .clients import (
    TLS,
    ManageSieve,
    ProxyIMAP4SSL,
    ProxySMTP,
    imap_find,
    message,
    proxy_v1,
    unique,
    wait_until,
)
from .conftest import Running, host_address, start_tenant
from .edge import MAPS_DIR, MAPS_VERSION_FILE, RUN_DIR, TLS_DIR, Edge, EdgeMaps
from .tenant import PASSWORDS, build_images, container_address, podman
from .test_delivery import send

pytestmark = pytest.mark.images

HOSTNAME = "proxy.edge.test"
INTERVAL = 2  # VPES_MAPS_INTERVAL's default
ALICE, BOB = "alice@example.org", "bob@example.net"
A_HOST, B_HOST = "tenant-a.customer.svc.cluster.local", "tenant-b.customer.svc.cluster.local"
MASTER_PID_FILE = f"{RUN_DIR}/dovecot/master.pid"
# What Dovecot's master needs of root: bind the ports below 1024, run the login
# processes as dovenull chrooted into their own empty directory (CHOWN makes
# it theirs), the auth process as dovecot, and signal them all.
CAPABILITIES = ("CHOWN", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID", "SYS_CHROOT")
# The standard ports expect a PROXY header; the plain twins (+20000) do not.
PROXY_PORTS = (143, 993, 110, 995, 4190, 587, 465)
PLAIN_PORTS = (20143, 20110, 24190, 20587)
AUTH_FAILED = b"[AUTHENTICATIONFAILED] Authentication failed."


def proxy_map(routes: dict[str, str]) -> str:
    """The operator's line for each domain (``maps.build``'s ``proxy`` file)."""
    return "".join(f"{d}:::::::proxy=y host={h} nopassword=y\n" for d, h in sorted(routes.items()))


def maps_for(routes: dict[str, str], version: str) -> dict[str, str]:
    return {
        "domains": "",
        "recipients": "",
        "transport": "",
        "access": "",
        "antispam": "",
        "proxy": proxy_map(routes),
        "version": f"{version}\n",
    }


BASE = {"example.org": A_HOST, "example.net": B_HOST}


def free_address() -> str:
    """An address for the edge on the podman network, far from the ones podman hands out."""
    subnet = podman(
        "network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}"
    )
    network = ipaddress.ip_network(subnet.stdout.strip())
    hosts = network.num_addresses
    return str(network[random.randint(hosts // 2, hosts - 2)])


@dataclass
class ProxyEdge(Edge):
    """``vpes-edge proxy``: only /run/vpes writable, a fixed address, tenant names."""

    role: str = "proxy"
    ip: str = ""
    hosts: tuple[tuple[str, str], ...] = ()

    def run_args(self) -> list[str]:
        args = [
            "run",
            "--detach",
            "--name",
            self.name,
            "--hostname",
            "edge",
            *(["--ip", self.ip] if self.ip else []),
            *(arg for name, ip in self.hosts for arg in ("--add-host", f"{name}:{ip}")),
            "--read-only",
            "--cap-drop=ALL",
            *(f"--cap-add={c}" for c in CAPABILITIES),
            "--security-opt=no-new-privileges",
            "--tmpfs",
            f"{RUN_DIR}:rw,mode=0755,size=16m",
            "--volume",
            f"{self.maps.directory}:{MAPS_DIR}:ro",
            *(["--volume", f"{self.tls_dir}:{TLS_DIR}:ro"] if self.tls_dir else []),
            *(arg for k, v in self.env.items() for arg in ("--env", f"{k}={v}")),
        ]
        for port in (*PROXY_PORTS, *PLAIN_PORTS):
            args += ["--publish", f"{self.host}:{port}:{port}"]
        return [*args, self.image, self.role]

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"edge exited:\n{self.logs()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, 20143), timeout=1) as s,
            ):
                s.settimeout(2)
                if s.recv(64).startswith(b"* OK"):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"edge not ready after {timeout} s:\n{self.logs()}")


@dataclass
class Setup:
    edge: ProxyEdge
    a: Running
    b: Running
    version: str = "base-0"

    @property
    def host(self) -> str:
        return self.edge.host

    def write_maps(self, routes: dict[str, str], version: str) -> None:
        self.edge.maps.write(maps_for(routes, version))

    def wait_version(self, version: str, timeout: float = 15) -> None:
        wait_until(
            lambda: self.edge.read(MAPS_VERSION_FILE) == version,
            timeout,
            f"maps version {version} loaded (logs:\n{self.edge.logs()})",
        )

    def restore(self) -> None:
        self.version = f"base-{uuid.uuid4().hex[:8]}"
        self.write_maps(BASE, self.version)
        self.wait_version(self.version)

    def master_pid(self) -> str:
        pid = self.edge.read(MASTER_PID_FILE)
        assert pid, "no master.pid"
        return pid


@pytest.fixture(scope="module")
def edge_image() -> str:
    return build_images("edge")[0]


@pytest.fixture(scope="module")
def setup(image: str, edge_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    edge_ip = free_address()
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(
            contextlib.contextmanager(start_tenant)(
                image, host_address(42), tmp_path_factory.mktemp("a"), f"{edge_ip}/32"
            )
        )
        b = stack.enter_context(
            contextlib.contextmanager(start_tenant)(
                image, host_address(43), tmp_path_factory.mktemp("b"), f"{edge_ip}/32"
            )
        )
        # Every tenant takes XCLIENT from its edge on the plain submission port (the
        # operator renders it so), and from nobody else.
        for tenant in (a, b):
            xclient = podman(
                "exec", tenant.tenant.name, "postconf", "-h", "smtpd_client_event_limit_exceptions"
            ).stdout
            assert edge_ip in xclient, xclient
            master = podman("exec", tenant.tenant.name, "postconf", "-P").stdout
            assert "587/inet/smtpd_authorized_xclient_hosts = " in master, master
        maps = EdgeMaps(tmp_path_factory.mktemp("edge") / "maps")
        maps.write(maps_for(BASE, "base-0"))
        edge = ProxyEdge(
            edge_image,
            host_address(41),
            maps,
            env={"VPES_HOSTNAME": HOSTNAME},
            ip=edge_ip,
            hosts=(
                (A_HOST, container_address(a.tenant.name)),
                (B_HOST, container_address(b.tenant.name)),
            ),
        )
        stack.callback(edge.remove)
        edge.start()
        edge.wait_ready()
        s = Setup(edge, a, b)
        s.wait_version("base-0")
        yield s


# --- clients ------------------------------------------------------------------------


class ProxyIMAP4(imaplib.IMAP4):
    """IMAP behind a PROXY header (port 143: STARTTLS after it)."""

    def __init__(self, host: str, port: int, header: bytes) -> None:
        self._header = header
        super().__init__(host, port, timeout=15)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return sock


class ProxyPOP3(poplib.POP3):
    """POP3 behind a PROXY header (none when ``header`` is empty)."""

    def __init__(self, host: str, port: int, header: bytes) -> None:
        self._header = header
        super().__init__(host, port, timeout=15)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return sock


class ProxyPOP3SSL(poplib.POP3_SSL):
    def __init__(self, host: str, port: int, header: bytes) -> None:
        self._header = header
        super().__init__(host, port, timeout=15, context=TLS)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return TLS.wrap_socket(sock, server_hostname=self.host)


def client_address() -> tuple[str, int]:
    return f"198.51.100.{random.randint(2, 254)}", random.randint(20000, 60000)


def imap(host: str, port: int) -> imaplib.IMAP4:
    """A TLS IMAP session with the proxy, as the load balancer or a pod would open it."""
    src, sport = client_address()
    header = proxy_v1(src, "192.0.2.143", sport, port)
    if port == 993:
        return ProxyIMAP4SSL(host, port, header)
    client = (
        ProxyIMAP4(host, port, header)
        if port in PROXY_PORTS
        else imaplib.IMAP4(host, port, timeout=15)
    )
    client.starttls(TLS)
    return client


def subjects(client: imaplib.IMAP4) -> bytes:
    typ, _ = client.select("INBOX", readonly=True)
    assert typ == "OK"
    _, found = client.search(None, "ALL")
    if not found[0]:
        return b""
    _, data = client.fetch(
        b",".join(found[0].split()).decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
    )
    return b"".join(bytes(p[1]) for p in data if isinstance(p, tuple))


def login_error(host: str, port: int, user: str, password: str) -> bytes:
    with imap(host, port) as client:
        with pytest.raises(imaplib.IMAP4.error) as failed:
            client.login(user, password)
        return (
            failed.value.args[0]
            if isinstance(failed.value.args[0], bytes)
            else str(failed.value.args[0]).encode()
        )


def deliver(t: Running, to: str, subject: str) -> None:
    send(t.host, [to], message("carol@example.org", to, subject))
    wait_until(lambda: b"Subject: " + subject.encode() in _direct(t, to), what=f"{subject} at {to}")


def _direct(t: Running, user: str) -> bytes:
    client = imaplib.IMAP4_SSL(t.host, 993, ssl_context=TLS, timeout=10)
    try:
        client.login(user, PASSWORDS[user])
        return subjects(client)
    finally:
        client.logout()


# --- routing and logins ------------------------------------------------------------


@pytest.mark.parametrize("port", [143, 993, 20143])
def test_imap_login_reads_the_inbox_of_the_tenant_its_domain_is_routed_to(
    setup: Setup, port: int
) -> None:
    # bob@example.net has a mailbox in both tenants; example.net goes to B.
    in_a, in_b = unique("only in A"), unique("only in B")
    deliver(setup.a, BOB, in_a)
    deliver(setup.b, BOB, in_b)
    alice = unique("alice in A")
    deliver(setup.a, ALICE, alice)
    with imap(setup.host, port) as client:
        client.login(BOB, PASSWORDS[BOB])
        seen = subjects(client)
        client.logout()
    assert in_b.encode() in seen
    assert in_a.encode() not in seen
    with imap(setup.host, port) as client:
        client.login(ALICE, PASSWORDS[ALICE])
        assert alice.encode() in subjects(client)
        client.logout()


@pytest.mark.parametrize("port", [110, 995, 20110])
def test_pop3_login(setup: Setup, port: int) -> None:
    subject = unique("pop3")
    deliver(setup.b, BOB, subject)
    src, sport = client_address()
    header = proxy_v1(src, "192.0.2.110", sport, port) if port in PROXY_PORTS else b""
    client: poplib.POP3
    if port == 995:
        client = ProxyPOP3SSL(setup.host, port, header)
    else:
        client = ProxyPOP3(setup.host, port, header)
        client.stls(TLS)
    client.user(BOB)
    client.pass_(PASSWORDS[BOB])
    count, _ = client.stat()
    tops = b"".join(b"".join(client.top(i, 0)[1]) for i in range(1, count + 1))
    client.quit()
    assert subject.encode() in tops


@pytest.mark.parametrize("port", [4190, 24190])
def test_managesieve_login(setup: Setup, port: int) -> None:
    src, sport = client_address()
    if port in PROXY_PORTS:
        sock = socket.create_connection((setup.host, port), 10)
        sock.sendall(proxy_v1(src, "192.0.2.41", sport, port))
        sieve = ManageSieve.__new__(ManageSieve)
        sieve.sock, sieve.host, sieve.buf = sock, setup.host, b""
        sieve.capabilities = sieve.response()
    else:
        sieve = ManageSieve(setup.host, port)
    try:
        sieve.starttls()
        name = f"proxy{uuid.uuid4().hex[:6]}"
        sieve.login(ALICE, PASSWORDS[ALICE])
        sieve.put_active(name, 'require "fileinto";\n')
        listed = b"\n".join(sieve.command("LISTSCRIPTS"))
    finally:
        sieve.close()
    assert f'"{name}" ACTIVE'.encode() in listed
    # It is in tenant A's mail volume (example.org is routed there).
    assert (
        f"{name}.sieve"
        in podman(
            "exec", setup.a.tenant.name, "ls", "/var/mail/vpes/example.org/alice/sieve"
        ).stdout
    )


def submission(host: str, port: int, src: str, sport: int) -> smtplib.SMTP:
    if port == 465:
        header = proxy_v1(src, "192.0.2.41", sport, port)

        class Wrapped(smtplib.SMTP_SSL):
            def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
                sock = socket.create_connection((host, port), timeout)
                sock.sendall(header)
                return TLS.wrap_socket(sock, server_hostname=host)

        return Wrapped(host, port, context=TLS, timeout=20)
    if port in PROXY_PORTS:
        smtp: smtplib.SMTP = ProxySMTP(host, port, proxy_v1(src, "192.0.2.41", sport, port), 20)
    else:
        smtp = smtplib.SMTP(host, port, timeout=20)
    smtp.starttls(context=TLS)
    return smtp


@pytest.mark.parametrize(
    ("port", "user", "tenant"), [(587, ALICE, "a"), (465, BOB, "b"), (20587, BOB, "b")]
)
def test_submission_relays_through_the_tenant(
    setup: Setup, port: int, user: str, tenant: str
) -> None:
    t = setup.a if tenant == "a" else setup.b
    subject = unique(f"submission {port}")
    src, sport = client_address()
    with submission(setup.host, port, src, sport) as smtp:
        smtp.login(user, PASSWORDS[user])
        refused = smtp.sendmail(user, [BOB], message(user, BOB, subject))
    assert refused == {}
    # Delivered by the tenant the login's domain is routed to.
    data = wait_until(
        lambda: imap_find(t.host, BOB, PASSWORDS[BOB], subject), what=f"{subject!r} at {tenant}"
    ).decode()
    received = data.split("\r\n\r\n", 1)[0]
    assert f"(Authenticated sender: {user})" in received or "ESMTPSA" in received, received
    if tenant == "b" and port in PROXY_PORTS:
        # Tenant B trusts XCLIENT from the edge: its Postfix saw the client.
        assert f"[{src}]" in received, received


# --- what is refused -----------------------------------------------------------------


@pytest.mark.parametrize("port", [143, 20143])
def test_wrong_password_unknown_user_and_unknown_domain_look_the_same(
    setup: Setup, port: int
) -> None:
    wrong = login_error(setup.host, port, ALICE, "not-her-password")
    nobody = login_error(setup.host, port, "nobody@example.org", "whatever-123")
    unknown = login_error(setup.host, port, "alice@unknown.example", "whatever-123")
    bare = login_error(setup.host, port, "alice", "whatever-123")
    assert wrong == nobody == unknown == bare == AUTH_FAILED, (wrong, nobody, unknown, bare)


@pytest.mark.xfail(
    strict=True,
    reason="Dovecot's submission proxy passes the tenant Postfix's 535 text on as it is",
)
def test_submission_wrong_password_and_unknown_domain_look_the_same(setup: Setup) -> None:
    replies = []
    for user in (ALICE, "alice@unknown.example"):
        with smtplib.SMTP(setup.host, 20587, timeout=20) as smtp:
            smtp.starttls(context=TLS)
            with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                smtp.login(user, "not-the-password")
            replies.append((failed.value.smtp_code, failed.value.smtp_error))
    assert replies[0] == replies[1], replies


def test_no_login_before_starttls(setup: Setup) -> None:
    client = imaplib.IMAP4(setup.host, 20143, timeout=10)
    assert "LOGINDISABLED" in client.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        client.login(ALICE, PASSWORDS[ALICE])
    client.shutdown()
    pop = poplib.POP3(setup.host, 20110, timeout=10)
    with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
        pop.user(ALICE)
    pop.close()
    with smtplib.SMTP(setup.host, 20587, timeout=10) as smtp:
        smtp.ehlo("client.example")
        assert not smtp.has_extn("auth")
        code, _ = smtp.docmd("AUTH", "PLAIN")
        assert code // 100 == 5
    sieve = ManageSieve(setup.host, 24190)
    try:
        with pytest.raises(RuntimeError):
            sieve.login(ALICE, PASSWORDS[ALICE])
    finally:
        sieve.close()


@pytest.mark.parametrize("port", [143, 993, 110, 4190, 587])
def test_public_port_without_proxy_header_is_refused(setup: Setup, port: int) -> None:
    with socket.create_connection((setup.host, port), timeout=10) as sock:
        sock.sendall(b"A1 CAPABILITY\r\n")
        got = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                got += chunk
    assert b"OK" not in got and b"220" not in got, got


# --- the client's address reaches the tenant ------------------------------------------


def test_tenant_logs_the_client_address_from_the_proxy_header(setup: Setup) -> None:
    src, sport = client_address()
    client = ProxyIMAP4(setup.host, 143, proxy_v1(src, "192.0.2.143", sport, 143))
    client.starttls(TLS)
    client.login(ALICE, PASSWORDS[ALICE])
    client.logout()
    line = wait_until(
        lambda: next(
            (
                x
                for x in setup.a.logs().splitlines()
                if "imap-login: Info: Login:" in x and f"rip={src}," in x
            ),
            None,
        ),
        timeout=10,
        what=f"tenant A's login line with rip={src}",
    )
    assert "user=<alice@example.org>" in line
    assert f"rip={setup.edge.ip}" not in line
    # The edge logs it too.
    assert f"rip={src}" in setup.edge.logs()


# --- maps -------------------------------------------------------------------------------


def test_map_change_is_live_within_seconds_and_keeps_sessions(setup: Setup) -> None:
    master = setup.master_pid()
    in_a, in_b = unique("map A"), unique("map B")
    deliver(setup.a, BOB, in_a)
    deliver(setup.b, BOB, in_b)
    held = imap(setup.host, 20143)
    held.login(BOB, PASSWORDS[BOB])
    assert in_b.encode() in subjects(held)
    version = f"moved-{uuid.uuid4().hex[:8]}"
    try:
        start = time.monotonic()
        setup.write_maps({"example.org": A_HOST, "example.net": A_HOST}, version)

        def routed_to_a() -> bool:
            with imap(setup.host, 20143) as client:
                client.login(BOB, PASSWORDS[BOB])
                seen = subjects(client)
                client.logout()
            return in_a.encode() in seen

        wait_until(routed_to_a, timeout=15, what="example.net routed to tenant A")
        took = time.monotonic() - start
        assert took < 3 * INTERVAL + 6, took  # a login itself waits for the tenant
        assert setup.edge.read(MAPS_VERSION_FILE) == version
        assert f"maps version {version} loaded (changed): 2 proxied domains" in setup.edge.logs()
        assert setup.master_pid() == master  # not restarted
        # The session opened before the change is still with tenant B.
        assert held.noop()[0] == "OK"
        assert in_b.encode() in subjects(held)
        held.logout()
    finally:
        setup.restore()


BAD_MAPS = {
    "six colons": "example.org::::::proxy=y host=tenant-a nopassword=y\n",
    "no host": "example.org:::::::proxy=y nopassword=y\n",
    "a password": "example.org:::::::proxy=y host=x nopassword=y pass=secret\n",
    "upper case": "Example.ORG:::::::proxy=y host=x nopassword=y\n",
    "twice": "example.org:::::::proxy=y host=x nopassword=y\n" * 2,
    "missing": None,
}


@pytest.mark.parametrize("bad", BAD_MAPS.values(), ids=BAD_MAPS.keys())
def test_bad_map_keeps_the_last_good_one(setup: Setup, bad: str | None) -> None:
    good = setup.version
    master = setup.master_pid()
    version = f"bad-{uuid.uuid4().hex[:8]}"
    files = maps_for({"example.net": A_HOST}, version)
    if bad is None:
        del files["proxy"]
    else:
        files["proxy"] = bad
    line = f"maps version {version} not loaded"
    try:
        setup.edge.maps.write(files)
        wait_until(lambda: line in setup.edge.logs(), timeout=10, what="the error line")
        error = next(x for x in setup.edge.logs().splitlines() if line in x)
        assert f"the last good map, version {good}, stays live): proxy: " in error, error
        # Still routed by the good map: example.net to B, example.org to A.
        in_b = unique("still B")
        deliver(setup.b, BOB, in_b)
        with imap(setup.host, 20143) as client:
            client.login(BOB, PASSWORDS[BOB])
            assert in_b.encode() in subjects(client)
            client.logout()
        assert setup.edge.read(MAPS_VERSION_FILE) == good
        assert setup.master_pid() == master
        time.sleep(2 * INTERVAL)
        assert setup.edge.logs().count(line) == 1
    finally:
        setup.restore()


# --- start and stop -----------------------------------------------------------------------


def test_starts_quietly_and_stops_on_sigterm(edge_image: str, tmp_path: Path) -> None:
    maps = EdgeMaps(tmp_path / "maps")
    maps.write(maps_for(BASE, "stop"))
    box = ProxyEdge(edge_image, host_address(44), maps, env={"VPES_HOSTNAME": HOSTNAME})
    try:
        box.start()
        box.wait_ready()
        logs = box.logs()
        assert "Warning" not in logs and "doveconf:" not in logs, logs
        podman("stop", "--time", "20", box.name)
        assert box.wait_exit() == 0
        logs = box.logs()
        assert "SIGTERM received: stopping Dovecot" in logs
        assert "vpes-edge: stopped" in logs
    finally:
        box.remove()


START_ERRORS = {
    "no hostname": ({"VPES_HOSTNAME": ""}, BASE, "VPES_HOSTNAME is not set"),
    "bad trusted networks": ({"VPES_PROXY_TRUSTED": "lb;rm"}, BASE, "VPES_PROXY_TRUSTED=lb;rm"),
    "bad map": ({}, {"example.org": "bad host!"}, "no usable proxy map"),
}


@pytest.mark.parametrize(("env", "routes", "says"), START_ERRORS.values(), ids=START_ERRORS.keys())
def test_start_refuses_what_cannot_work(
    edge_image: str, tmp_path: Path, env: dict[str, str], routes: dict[str, str], says: str
) -> None:
    maps = EdgeMaps(tmp_path / "maps")
    maps.write(maps_for(routes, "start"))
    box = ProxyEdge(edge_image, host_address(44), maps, env={"VPES_HOSTNAME": HOSTNAME, **env})
    try:
        box.start()
        assert box.wait_exit() == 2
        assert says in box.logs()
    finally:
        box.remove()
