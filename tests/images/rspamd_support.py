"""What the antispam image's tests share (tests/images/test_rspamd*.py): a Redis
container and an Rspamd container, as the chart's two Deployments run them
(read-only root, no capabilities, /run/vpes a tmpfs, the antispam map a
ConfigMap-like directory with a ``..data`` link swapped atomically), started
once by the conftest's ``antispam`` fixture.

Rspamd is asked through its HTTP protocol (``/checkv2`` on the scanner, with
the recipient in the ``Rcpt`` header); Redis is read with a minimal RESP client.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from .clients import wait_until
from .conftest import host_address
from .tenant import _atomic_write, container_address, podman

REDIS_PASSWORD = "redis-" + uuid.uuid4().hex
CONTROLLER_PASSWORD = "learn-" + uuid.uuid4().hex
MILTER, SCANNER, CONTROLLER, REDIS = 11332, 11333, 11334, 6379

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# One domain per level, and one the map does not name (so: standard).
MAP = """\
# domain  level (rendered by the operator)
off.example        off
standard.example   standard
strict.example     strict
"""

SECURITY = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


def empty_dir(root: Path, path: str) -> list[str]:
    """A host directory as the kubelet makes an emptyDir: root's, mode 0777.
    (Podman 4.3 ignores a tmpfs's ``mode`` under /run.)"""
    host = root / path.strip("/").replace("/", "-")
    host.mkdir()
    host.chmod(0o777)
    return ["--volume", f"{host}:{path}"]


@dataclass
class Antispam:
    host: str
    rspamd: str
    redis: str
    maps: Path

    def write_map(self, text: str) -> None:
        _atomic_write(self.maps, {"antispam": text})

    def check(self, message: bytes, rcpt: str) -> dict[str, Any]:
        """Scan ``message`` for ``rcpt`` through the scanner's HTTP protocol."""
        r = httpx.post(
            f"http://{self.host}:{SCANNER}/checkv2",
            content=addressed(message, rcpt),
            headers={
                "Rcpt": rcpt,
                "From": "sender@sender.example",
                "IP": "198.51.100.7",
                "Helo": "mail.sender.example",
                "Hostname": "mail.sender.example",
            },
            timeout=30,
        )
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def action(self, message: bytes, rcpt: str) -> str:
        return str(self.check(message, rcpt)["action"])

    def learn(self, kind: str, message: bytes, user: str, password: str) -> httpx.Response:
        return httpx.post(
            f"http://{self.host}:{CONTROLLER}/learn{kind}",
            content=message,
            headers={"Password": password, "Deliver-To": user},
            timeout=30,
        )

    def logs(self) -> str:
        out = podman("logs", self.rspamd, check=False)
        return out.stdout + out.stderr

    def main_pid(self) -> int:
        """Rspamd's main process, as vpes-rspamd logged it; it must be alive and
        be Rspamd's main process, and vpes-rspamd must have started only one."""
        started = re.findall(r"started Rspamd \(pid (\d+)\)", self.logs())
        assert len(started) == 1, started
        pid = int(started[0])
        cmdline = podman("exec", self.rspamd, "cat", f"/proc/{pid}/cmdline").stdout
        assert "main process" in cmdline, cmdline
        return pid

    def redis_keys(self) -> list[str]:
        return [k.decode() for k in redis(self.host, "KEYS", "*")]


def addressed(message: bytes, rcpt: str) -> bytes:
    """``message`` with its To header naming ``rcpt`` (else FORGED_RECIPIENTS)."""
    return message.replace(b"To: someone@standard.example", f"To: {rcpt}".encode(), 1)


def redis(host: str, *command: str, password: str = REDIS_PASSWORD) -> Any:
    """One command after AUTH, with a minimal RESP client."""
    with socket.create_connection((host, REDIS), timeout=10) as s:
        f = s.makefile("rb")

        def send(*args: str) -> Any:
            out = f"*{len(args)}\r\n".encode()
            for a in args:
                out += f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n"
            s.sendall(out)
            return read()

        def read() -> Any:
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                return rest
            if kind == b"-":
                raise RedisError(rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)[:-2]
                return data
            if kind == b"*":
                return [read() for _ in range(int(rest))]
            raise RedisError(f"unexpected reply {line!r}")

        send("AUTH", password)
        return send(*command)


class RedisError(Exception):
    pass


def message(subject: str, body: str, *, html: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@sender.example>"
    msg["To"] = "someone@standard.example"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@sender.example>"
    msg["Date"] = "Sat, 05 Dec 2026 08:00:00 +0000"
    msg["Subject"] = subject
    if html:
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def gtube() -> bytes:
    return message("test", f"This is the GTUBE.\n\n{GTUBE}\n")


HAM = (
    "Hello Bob,\n\nthe minutes of Tuesday's meeting are below. We agreed to move the "
    "garden party to the second Saturday of June and to ask Carol about the tables.\n\n"
    "See you soon,\nAlice\n"
)


def spammy() -> bytes:
    """A moderately spammy message: between Strict's add-header threshold (4) and
    Standard's (6). A shouting subject and an HTML-only body, from a sender
    domain that does not resolve (.example) with no SPF, DKIM or DMARC: symbols
    that fire with no network (the measured score is in images/README.md)."""
    return message(
        "CHEAP MEDS ONLINE NOW",
        "<html><body><p>Dear friend, best prices on all medications. Order today and "
        "save big on your purchase, limited time only.</p></body></html>",
        html=True,
    )


def ping(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).text.strip() == "pong"
    except httpx.HTTPError:
        return False


def start_antispam(
    antispam_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Antispam]:
    """The conftest's ``antispam`` fixture: Redis and Rspamd, the map at ``MAP``."""
    host = host_address(21)
    tag = uuid.uuid4().hex[:8]
    redis_name, rspamd_name = f"vpes-test-redis-{tag}", f"vpes-test-rspamd-{tag}"
    root = tmp_path_factory.mktemp("antispam")
    maps = root / "maps"
    (root / "redis").mkdir()
    (root / "rspamd").mkdir()
    spam = Antispam(host, rspamd_name, redis_name, maps)
    spam.write_map(MAP)
    try:
        podman(
            "run", "--detach", "--name", redis_name, *SECURITY,
            *empty_dir(root / "redis", "/run/vpes"),
            "--env", f"VPES_REDIS_PASSWORD={REDIS_PASSWORD}",
            "--env", "VPES_REDIS_MAXMEMORY=32mb",
            "--publish", f"{host}:{REDIS}:{REDIS}",
            antispam_image, "redis",
        )  # fmt: skip
        redis_at = f"{container_address(redis_name)}:{REDIS}"
        podman(
            "run", "--detach", "--name", rspamd_name, *SECURITY,
            *empty_dir(root / "rspamd", "/run/vpes"), *empty_dir(root / "rspamd", "/tmp"),
            "--volume", f"{maps}:/etc/vpes/maps:ro",
            "--env", f"VPES_REDIS={redis_at}",
            "--env", f"VPES_REDIS_PASSWORD={REDIS_PASSWORD}",
            "--env", f"VPES_RSPAMD_CONTROLLER_PASSWORD={CONTROLLER_PASSWORD}",
            *(a for p in (MILTER, SCANNER, CONTROLLER) for a in ("--publish", f"{host}:{p}:{p}")),
            antispam_image, "rspamd",
        )  # fmt: skip

        def ready() -> bool:
            state = podman("inspect", "--format", "{{.State.Running}}", rspamd_name).stdout
            if state.strip() != "true":
                raise RuntimeError(f"rspamd exited:\n{spam.logs()}")
            return ping(f"http://{host}:{SCANNER}/ping") and ping(
                f"http://{host}:{CONTROLLER}/ping"
            )

        wait_until(ready, 90, "Rspamd's scanner and controller")
        yield spam
    finally:
        podman("rm", "--force", "--time", "5", rspamd_name, check=False)
        podman("rm", "--force", "--time", "5", redis_name, check=False)
