"""A real authoritative DNS server for the tests and the DNS benchmark: Knot DNS.

`KnotServer` starts `knotd` (Debian's knot package) on a loopback address and
a free port, with a TSIG key allowed to update its zones, an unsigned test
zone, a DNSSEC-signed one and a zone standing in for a DNS blocklist.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.update
from vpes_devcluster.procs import terminate

HOST = "127.0.77.1"
ZONE = "vpes-dns.test"
SIGNED_ZONE = "signed-dns.test"
BLOCKLIST = "bl.vpes-dns.test"
KEY_NAME = "vpes-operator"
LISTED = "127.0.0.2"  # RFC 5782's test entry: every blocklist lists it


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def zone_text(origin: str, extra: str = "") -> str:
    return (
        f"$ORIGIN {origin}.\n$TTL 300\n"
        f"@ SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n"
        f"@ NS ns1.{origin}.\nns1 A {HOST}\n{extra}"
    )


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """The operator's /metrics as series (name with labels) → value."""
    url = f"http://{host}:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@dataclass
class KnotServer:
    workdir: Path
    host: str = HOST
    port: int = 0
    secret: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def config(self) -> str:
        zones = "\n".join(
            f'  - domain: {z}\n    file: "{z}.zone"\n    acl: update{signing}'
            for z, signing in (
                (ZONE, ""),
                (SIGNED_ZONE, "\n    dnssec-signing: on"),
                (BLOCKLIST, ""),
            )
        )
        return f"""server:
    rundir: "{self.workdir}"
    listen: {self.host}@{self.port}
    background-workers: 1
    tcp-workers: 2
    udp-workers: 2
database:
    storage: "{self.workdir}/db"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {self.secret}
acl:
  - id: update
    key: {KEY_NAME}
    action: update
template:
  - id: default
    storage: "{self.workdir}/zones"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
zone:
{zones}
log:
  - target: stderr
    any: info
"""

    def start(self) -> None:
        if shutil.which("knotd") is None:
            raise RuntimeError("knotd is missing: run `make system-deps` (Debian package knot)")
        (self.workdir / "zones").mkdir(parents=True, exist_ok=True)
        (self.workdir / "db").mkdir(exist_ok=True)
        self.port = self.port or free_port(self.host)
        (self.workdir / "zones" / f"{ZONE}.zone").write_text(zone_text(ZONE))
        (self.workdir / "zones" / f"{SIGNED_ZONE}.zone").write_text(zone_text(SIGNED_ZONE))
        (self.workdir / "zones" / f"{BLOCKLIST}.zone").write_text(
            zone_text(
                BLOCKLIST,
                '2.0.0.127 A 127.0.0.2\n2.0.0.127 TXT "listed for testing"\n',
            )
        )
        conf = self.workdir / "knot.conf"
        conf.write_text(self.config())
        log = (self.workdir / "knotd.log").open("wb")
        self.proc = subprocess.Popen(
            ["knotd", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("knotd exited: " + self.log())
            try:
                if self.query(SIGNED_ZONE, "DNSKEY") and self.query(ZONE, "SOA"):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("knotd did not answer in 20s: " + self.log())

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        return (self.workdir / "knotd.log").read_text(errors="replace")

    def query(self, name: str, rtype: str) -> list[str]:
        """The RRset's values as the server gives them (TXT strings joined)."""
        r = dns.query.tcp(dns.message.make_query(name, rtype), self.host, port=self.port, timeout=5)
        out = []
        for rrset in r.answer:
            if rrset.rdtype != dns.rdatatype.from_text(rtype):
                continue
            for rd in rrset:
                if rrset.rdtype == dns.rdatatype.TXT:
                    out.append(b"".join(rd.strings).decode())
                else:
                    out.append(rd.to_text())
        return out

    def update(self, zone: str, build: str, name: str, ttl: int, rtype: str, value: str) -> None:
        """An update as someone else (with the same key): build is add|delete|replace."""
        keyring = dns.tsigkeyring.from_text({KEY_NAME: self.secret})
        upd = dns.update.UpdateMessage(zone, keyring=keyring, keyname=dns.name.from_text(KEY_NAME))
        getattr(upd, build)(dns.name.from_text(name), ttl, rtype, value)
        r = dns.query.tcp(upd, self.host, port=self.port, timeout=5)
        assert r.rcode() == 0, r
