"""A real ACME CA for the tests: Pebble (Debian's pebble package) on loopback.

`PebbleServer` writes Pebble's configuration (free ports, a TLS certificate for
its HTTPS made by a throw-away CA whose certificate is the client's CA bundle),
starts it with its DNS resolver pointed at the tests' Knot server (`-dnsserver`)
and its HTTP-01 validations at `http_port` of the address each name resolves to,
and without its random validation sleeps, and fetches its issuing root from the
management port (Pebble makes a new one at every start).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from vpes_devcluster.procs import terminate

from .dns_support import free_port

HOST = "127.0.0.1"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def tls_files(workdir: Path) -> tuple[Path, Path, Path]:
    """(CA bundle, certificate, key) for Pebble's HTTPS on 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("vpes test CA for Pebble's HTTPS"))
        .issuer_name(_name("vpes test CA for Pebble's HTTPS"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    bundle, cert_file, key_file = (workdir / n for n in ("ca.pem", "cert.pem", "key.pem"))
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return bundle, cert_file, key_file


@dataclass
class PebbleServer:
    workdir: Path
    dns_server: str  # host:port Pebble resolves challenge names at
    port: int = 0
    management_port: int = 0
    # Where Pebble connects for HTTP-01 (at the name's address); 0: a free port where
    # nothing listens.
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def directory_url(self) -> str:
        return f"https://{HOST}:{self.port}/dir"

    @property
    def ca_bundle(self) -> Path:
        return self.workdir / "ca.pem"

    def config(self, cert: Path, key: Path) -> dict[str, object]:
        return {
            "pebble": {
                "listenAddress": f"{HOST}:{self.port}",
                "managementListenAddress": f"{HOST}:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                # HTTP-01 at the name's address on this port; TLS-ALPN-01: nothing listens.
                "httpPort": self.http_port,
                "tlsPort": free_port(HOST),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }

    def start(self) -> None:
        if shutil.which("pebble") is None:
            raise RuntimeError("pebble is missing: run `make system-deps` (Debian package pebble)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        _, cert, key = tls_files(self.workdir)
        self.port = self.port or free_port(HOST)
        self.management_port = self.management_port or free_port(HOST)
        self.http_port = self.http_port or free_port(HOST)
        conf = self.workdir / "pebble.json"
        conf.write_text(json.dumps(self.config(cert, key)))
        env = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_NOSLEEP": "1",
            # Every order validates afresh, and no good nonce is refused: deterministic.
            "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        log = (self.workdir / "pebble.log").open("wb")
        self.proc = subprocess.Popen(
            ["pebble", "-config", str(conf), "-dnsserver", self.dns_server],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pebble exited: " + self.log())
            try:
                self._get(f"https://{HOST}:{self.port}/dir")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pebble did not answer in 20s: " + self.log())

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        return (self.workdir / "pebble.log").read_text(errors="replace")

    def _get(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(url, timeout=5, context=context) as r:
            data: bytes = r.read()
            return data

    def root(self) -> x509.Certificate:
        """The root Pebble issues under (made at this start), from its management port."""
        pem = self._get(f"https://{HOST}:{self.management_port}/roots/0")
        return x509.load_pem_x509_certificate(pem)
