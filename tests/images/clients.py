"""Real protocol clients for the image tests: smtplib, imaplib, poplib, plus what
the standard library lacks (PROXY protocol headers, ManageSieve, IMAP IDLE)."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import ipaddress
import smtplib
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import TypeVar

T = TypeVar("T")


def tls_client(
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context for the tests' self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    ctx.minimum_version = minimum
    ctx.maximum_version = maximum
    return ctx


TLS = tls_client()


def wait_until(fn: Callable[[], T | None], timeout: float = 20, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def message(sender: str, to: str, subject: str, body: str = "hello\n", size: int = 0) -> bytes:
    """A message as bytes (CRLF), with a unique Message-ID; ``size`` pads the body."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@tests.vpes>"
    pad = ("x" * 76 + "\n") * (size // 77)
    msg.set_content(body + pad)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:12]}"


# --- PROXY protocol (haproxy's proxy-protocol.txt) ---------------------------

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A text v1 header (TCP4 or TCP6, from the addresses)."""
    family = "TCP6" if ipaddress.ip_address(src).version == 6 else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A binary v2 header: PROXY command, TCP over IPv4 or IPv6."""
    source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    body = source.packed + destination.packed + struct.pack("!HH", sport, dport)
    family = 0x21 if source.version == 6 else 0x11  # TCP over AF_INET6 / AF_INET
    return PROXY_V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


class ProxySMTP(smtplib.SMTP):
    """smtplib.SMTP that sends ``header`` first, as a load balancer does."""

    def __init__(self, host: str, port: int, header: bytes, timeout: float = 10) -> None:
        self._header = header
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout)
        sock.sendall(self._header)
        return sock


class ProxyIMAP4SSL(imaplib.IMAP4_SSL):
    """IMAP over implicit TLS behind a PROXY header (sent before the TLS handshake)."""

    def __init__(self, host: str, port: int, header: bytes, timeout: float = 10) -> None:
        self._header = header
        super().__init__(host, port, ssl_context=TLS, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return TLS.wrap_socket(sock, server_hostname=self.host)


def raw_greeting(host: str, port: int, first: bytes = b"", timeout: float = 8) -> bytes:
    """Connect, optionally send ``first``, and return what the server says before closing."""
    out = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if first:
            sock.sendall(first)
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                out += chunk
                if first and b"\n" in out:  # a reply to what we sent
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return out


# --- IMAP -------------------------------------------------------------------


def imap_login(host: str, user: str, password: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(host, 993, ssl_context=TLS, timeout=10)
    client.login(user, password)
    return client


def imap_find(host: str, user: str, password: str, subject: str, folder: str = "INBOX") -> bytes:
    """The full bytes of the message with ``subject`` in ``folder`` (b"" if none)."""
    with imap_login(host, user, password) as client:
        typ, _ = client.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return b""
        _, data = client.search(None, "SUBJECT", f'"{subject}"')
        ids = data[0].split()
        if not ids:
            return b""
        _, fetched = client.fetch(ids[-1], "(BODY.PEEK[])")
        for part in fetched:
            if isinstance(part, tuple):
                return bytes(part[1])
        return b""


def inbox_uid(host: str, user: str, password: str, subject: str) -> str | None:
    """The UID of the newest message in INBOX with ``subject`` (None if none)."""
    with imap_login(host, user, password) as client:
        client.select("INBOX", readonly=True)
        _, data = client.uid("SEARCH", "SUBJECT", f'"{subject}"')
        uids = data[0].split() if data and data[0] else []
        return uids[-1].decode() if uids else None


def idle_until_exists(client: imaplib.IMAP4, trigger: Callable[[], None], timeout: float) -> bytes:
    """RFC 2177 IDLE: start idling, call ``trigger``, return the first untagged EXISTS."""
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    line = client.readline()
    if not line.startswith(b"+"):
        raise AssertionError(f"IDLE refused: {line!r}")
    trigger()
    client.sock.settimeout(timeout)
    try:
        while True:
            line = client.readline()
            if not line:
                raise AssertionError("connection closed while idling")
            if line.startswith(b"*") and b"EXISTS" in line:
                return line
    finally:
        client.send(b"DONE\r\n")
        while not client.readline().startswith(tag):
            pass


# --- ManageSieve (RFC 5804) ---------------------------------------------------


class ManageSieve:
    """Just enough of a ManageSieve client: STARTTLS, AUTHENTICATE PLAIN, PUTSCRIPT."""

    def __init__(self, host: str, port: int = 4190) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), 10)
        self.host = host
        self.buf = b""
        self.capabilities = self.response()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed; got {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def response(self) -> list[bytes]:
        """Lines up to and including OK; raises on NO/BYE."""
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            word = line.split(b" ", 1)[0].upper()
            if word == b"OK":
                return lines
            if word in (b"NO", b"BYE"):
                raise RuntimeError(b"\n".join(lines).decode(errors="replace"))

    def command(self, text: str, literal: bytes | None = None) -> list[bytes]:
        data = text.encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        return self.response()

    def starttls(self) -> None:
        self.command("STARTTLS")
        self.sock = TLS.wrap_socket(self.sock, server_hostname=self.host)
        self.capabilities = self.response()  # capabilities are sent again after TLS

    def login(self, user: str, password: str) -> None:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.command(f'AUTHENTICATE "PLAIN" "{token}"')

    def put_active(self, name: str, script: str) -> None:
        self.command(f'PUTSCRIPT "{name}"', script.encode())
        self.command(f'SETACTIVE "{name}"')

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.command("LOGOUT")
        self.sock.close()
