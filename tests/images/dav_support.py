"""Run the dav image (Radicale, images/dav) under podman as the tenant pod runs
its `dav` container: a read-only root, no capabilities, the mail user, the server's
passwd-file mounted as a Secret volume, and a directory of the mail volume as
its collections."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vpes_operator import crypto

from .tenant import Container, _atomic_write, confined_run_args, podman

DAV_PORT = 5232
DAV_UID = 5000  # the mail user (layout.VMAIL_UID): backups read what it writes
SECRETS_DIR = "/etc/vpes/secrets"
DATA_DIR = "/var/lib/vpes-dav"


def passwd_text(hashes: Mapping[str, str]) -> str:
    """Dovecot's passwd-file as the operator writes it (render.format_passwd's shape)."""
    return "".join(
        f"{a}:{h}::::::userdb_quota_rule=*:bytes=1073741824\n" for a, h in hashes.items()
    )


def bcrypt_hashes(passwords: Mapping[str, str]) -> dict[str, str]:
    return {a: crypto.hash_password(p, 4) for a, p in passwords.items()}


def argon2_hash(image: str, password: str) -> str:
    """An ARGON2ID hash in Dovecot's form, made by the image's own argon2 library."""
    out = podman(
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        image,
        "-c",
        "import argon2, sys; print(argon2.PasswordHasher().hash(sys.argv[1]))",
        password,
    )
    return "{ARGON2ID}" + out.stdout.strip()


@dataclass
class Dav(Container):
    """One dav container: Radicale on ``host``:5232 (plain HTTP, as in the pod)."""

    image: str
    host: str
    root: Path
    name: str = field(default_factory=lambda: f"vpes-dav-{uuid.uuid4().hex[:8]}")
    env: dict[str, str] = field(default_factory=dict)

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{DAV_PORT}"

    def write_passwd(self, hashes: Mapping[str, str]) -> None:
        """The Secret volume's passwd, swapped in as the kubelet does (mode 0444:
        only this container mounts it)."""
        _atomic_write(self.secrets_dir, {"passwd": (passwd_text(hashes), 0o444)})

    def prepare_data(self, owner: int = DAV_UID, mode: int = 0o700) -> None:
        """The mail volume's .dav directory, as the tenant's vpes-init leaves it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, owner, owner)
        self.data_dir.chmod(mode)

    def start(self) -> None:
        args = [
            *confined_run_args(self.name, "dav", ()),
            "--tmpfs",
            "/tmp:rw,mode=1777,size=16m",
            "--volume",
            f"{self.secrets_dir}:{SECRETS_DIR}:ro",
            "--volume",
            f"{self.data_dir}:{DATA_DIR}",
            "--publish",
            f"{self.host}:{DAV_PORT}:{DAV_PORT}",
        ]
        for k, v in self.env.items():
            args += ["--env", f"{k}={v}"]
        podman(*args, self.image)

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_serving(self._answers, "radicale", timeout)

    def accepts(self) -> bool:
        """Whether the port takes a connection (closed at once, nothing sent: what the
        kubelet's TCP probe does)."""
        try:
            socket.create_connection((self.host, DAV_PORT), timeout=1).close()
        except OSError:
            return False
        return True

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, DAV_PORT), timeout=1) as s:
                s.sendall(b"OPTIONS / HTTP/1.0\r\n\r\n")
                return s.recv(16).startswith(b"HTTP/")
        except OSError:
            return False

    def restart(self) -> None:
        podman("restart", "--time", "5", self.name)

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *cmd, check=False)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)
