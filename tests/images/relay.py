"""Run the edge image's outbound relay (``vpes-edge relay``) under podman.

``Relay`` runs it the way its Deployment would (``edge.Edge``'s security
options and emptyDirs, plus the shard Secrets mounted at /etc/vpes/relay), next
to a Redis (the vpes-rspamd image's ``redis`` role). Two sinks (``sink.py``)
listen inside the relay's network namespace and stand for the rest of the
world: one for the inbound MX (``VPES_MX_INTERNAL``), one for the internet
(``VPES_RELAYHOST``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .clients import wait_until
from .edge import CAPABILITIES, MAPS_DIR, MAPS_WORK_DIR, QUEUE_DIR, RUN_DIR, EdgeMaps, emptydir
from .tenant import _atomic_write, container_address, podman

HERE = Path(__file__).resolve().parent
RELAY_DIR = "/etc/vpes/relay"
SMTP, HTTP, REDIS = 587, 9146, 6379
MX_SINK, NET_SINK = 2526, 2527
REDIS_PASSWORD = "redis-" + uuid.uuid4().hex


def ssha512(password: str) -> str:
    """A Dovecot passwd-file password, as the operator makes it."""
    salt = os.urandom(8)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    pem: str  # PKCS#8
    dns: bytes  # the TXT record's value

    @property
    def keyfile(self) -> str:
        return f"{self.selector}.{self.domain}.key"


def dkim_key(domain: str, selector: str, kind: str = "rsa", bits: int = 2048) -> DkimKey:
    if kind == "rsa":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        dns = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        dns = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return DkimKey(domain, selector, pem, dns)


def shard_files(
    shards: int, users: Mapping[str, str], keys: Mapping[str, list[DkimKey]]
) -> dict[str, str | tuple[str, int]]:
    """The shard Secrets' keys, all in one projected volume (every shard written).
    ``users``: server → password; ``keys``: server → its DKIM keys."""
    files: dict[str, str | tuple[str, int]] = {}
    lines: dict[str, list[str]] = {f"users-{i}": [] for i in range(shards)}
    lines.update({f"dkim-{i}": [] for i in range(shards)})
    for server in sorted(set(users) | set(keys)):
        i = int(hashlib.sha256(server.encode()).hexdigest(), 16) % shards
        if server in users:
            lines[f"users-{i}"].append(f"{server}:{ssha512(users[server])}")
        for key in keys.get(server, []):
            lines[f"dkim-{i}"].append(f"{key.domain} {key.selector} {key.keyfile}")
            files[key.keyfile] = (key.pem, 0o400)
    for name, entries in lines.items():
        files[name] = ("".join(f"{e}\n" for e in entries), 0o400)
    return files


@dataclass
class Sink:
    """A sink inside the relay's network namespace; messages as sink.py writes them."""

    directory: Path
    process: subprocess.Popen[bytes]

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.directory.glob("*.json"))]

    def wait_for(self, needle: str, timeout: float = 30) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((m for m in self.messages() if needle in m["data"]), None)

        return wait_until(find, timeout, f"a message containing {needle!r}")


def start_sink(container: str, port: int, out: Path) -> Sink:
    """A sink on 127.0.0.1:``port`` inside ``container``'s network namespace."""
    out.mkdir()
    pid = podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip()
    if pid in ("", "0"):
        logs = podman("logs", container, check=False)
        raise RuntimeError(f"{container} exited:\n{logs.stdout}{logs.stderr}")
    process = subprocess.Popen(
        ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, str(HERE / "sink.py"),
         "127.0.0.1", str(port), str(out)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"listening"
    return Sink(out, process)


@dataclass
class Relay:
    image: str
    redis_image: str
    host: str
    root: Path
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"vpes-test-relay-{uuid.uuid4().hex[:8]}")
    # More read-only mounts: host directory → path in the container (a Secret).
    volumes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.redis = f"{self.name}-redis"
        self.maps = EdgeMaps(self.root / "maps")
        self.secrets = self.root / "relay"
        self.sinks: dict[int, Sink] = {}

    def write_secrets(self, files: Mapping[str, str | tuple[str, int]]) -> None:
        _atomic_write(self.secrets, dict(files))

    def start_redis(self) -> str:
        # An emptyDir as the kubelet makes it: root's, mode 0777 (podman
        # ignores a tmpfs's mode under /run).
        run = self.root / "redis-run"
        run.mkdir()
        run.chmod(0o777)
        podman(
            "run", "--detach", "--name", self.redis, "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--volume", f"{run}:{RUN_DIR}",
            "--env", f"VPES_REDIS_PASSWORD={REDIS_PASSWORD}",
            "--env", "VPES_REDIS_MAXMEMORY=32mb",
            self.redis_image, "redis",
        )  # fmt: skip
        return f"{container_address(self.redis)}:{REDIS}"

    def start(self, sinks: bool = True) -> None:
        redis_at = self.start_redis()
        env = {
            "VPES_REDIS": redis_at,
            "VPES_REDIS_PASSWORD": REDIS_PASSWORD,
            "VPES_MX_INTERNAL": f"[127.0.0.1]:{MX_SINK}",
            "VPES_RELAYHOST": f"[127.0.0.1]:{NET_SINK}",
            **self.env,
        }
        podman(
            "run", "--detach", "--name", self.name, "--hostname", "relay", "--read-only",
            "--cap-drop=ALL", *(f"--cap-add={c}" for c in CAPABILITIES),
            "--security-opt=no-new-privileges",
            *(a for path in (RUN_DIR, QUEUE_DIR, MAPS_WORK_DIR) for a in self.emptydir(path)),
            "--volume", f"{self.maps.directory}:{MAPS_DIR}:ro",
            "--volume", f"{self.secrets}:{RELAY_DIR}:ro",
            *(a for src, dst in self.volumes.items() for a in ("--volume", f"{src}:{dst}:ro")),
            *(a for k, v in env.items() for a in ("--env", f"{k}={v}")),
            "--publish", f"{self.host}:{SMTP}:{SMTP}",
            "--publish", f"{self.host}:{HTTP}:{HTTP}",
            self.image, "relay",
        )  # fmt: skip
        for port in (MX_SINK, NET_SINK) if sinks else ():
            self.sinks[port] = self.start_sink(port)

    def emptydir(self, path: str) -> list[str]:
        return ["--volume", f"{emptydir(self.root / path.replace('/', '-'), path)}:{path}"]

    def start_sink(self, port: int) -> Sink:
        return start_sink(self.name, port, self.root / f"sink-{port}")

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def read(self, path: str) -> str:
        out = podman("exec", self.name, "cat", path, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def remove(self) -> None:
        for sink in self.sinks.values():
            sink.process.terminate()
            sink.process.wait(10)
        podman("rm", "--force", "--time", "5", self.name, check=False)
        podman("rm", "--force", "--time", "5", self.redis, check=False)
