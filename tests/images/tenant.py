"""Run the tenant image under podman the way the StatefulSet runs it.

``TenantFiles`` renders a PersonalMailServer with the operator's own renderer
and credentials code and writes the configuration and secrets directories the
way the kubelet's atomic writer does (a ``..data`` link swapped in one
rename). ``Tenant`` runs the image with the StatefulSet's security settings
(read-only root, capabilities, no-new-privileges, tmpfs /run/vpes and /tmp, a
volume for the mail) and publishes its ports on one 127.0.0.x address.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpes_operator import credentials
from vpes_operator.builders.config import relay_sasl_map
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.workload import CAPABILITIES, POD_SECURITY_CONTEXT, SECRET_ITEMS
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_operator.render import (
    CONFIG_DIR,
    CONFIG_FILES,
    MAIL_DIR,
    PORTS,
    RUN_DIR,
    SECRETS_DIR,
    build_context,
    render_config,
    render_passwd,
)
from vpes_operator.render.layout import (
    ANTISPAM_PASSWORD_KEY,
    PASSWD_KEY,
    RELAY_SASL_KEY,
    USAGE_PORT,
)
from vpes_operator.settings import OperatorSettings

# The server these files are rendered for (its relay login is customer/tenant).
OWNER = Owner("tenant", "customer", "uid-tenant", "plan")

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "containers.conf"

# Passwords of the sample server's mailboxes (each in its own "Secret").
PASSWORDS = {
    "alice@example.org": "alice-secret-1",
    "bob@example.net": "bob-secret-2",
    "full@example.net": "full-secret-3",
}


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=podman_env(),
    )


def build_images(*names: str) -> list[str]:
    """``images/build.sh`` (what ``make images`` runs): the references it prints."""
    out = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), *names],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env=podman_env(),
        timeout=1800,
    )
    return out.stdout.split()


def sample_spec(
    extra_mailboxes: tuple[dict[str, Any], ...] = (),
    extra_forwards: tuple[dict[str, Any], ...] = (),
) -> PersonalMailServerSpec:
    """A server with two domains, aliases, a forward, a tiny-quota mailbox, and a
    catch-all on example.net (to alice@example.org) but none on example.org."""
    mailboxes: list[dict[str, Any]] = [
        {"address": "alice@example.org", "quota": "1Gi", "aliases": ["info", "a@example.net"]},
        {"address": "bob@example.net", "quota": "100Mi", "aliases": ["info"]},
        {"address": "full@example.net", "quota": "40Ki"},
        *extra_mailboxes,
    ]
    for m in mailboxes:
        m["passwordSecretRef"] = {"name": secret_name(m["address"]), "key": "password"}
    return PersonalMailServerSpec.model_validate(
        {
            "plan": "personal",
            "owner": {"email": "owner@owner.example"},
            "domains": ["example.org", "example.net"],
            "mailboxes": mailboxes,
            "forwards": [
                {"from": "sales@example.org", "to": ["carol@elsewhere.example"]},
                *extra_forwards,
            ],
            "catchAll": [{"domain": "example.net", "to": "alice@example.org"}],
        }
    )


def secret_name(address: str) -> str:
    """The Secret holding a mailbox's password in these tests."""
    return address.replace("@", ".")


PLAN = MailPlanSpec(max_message_size="1Mi")


def secret_volume_files(secret: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """The files the kubelet writes for the pod's Secret volume: path → (content, mode).

    Only the StatefulSet's ``items``, each with its mode; with a pod fsGroup the
    kubelet would add group read to each (``SetVolumeOwnership``), so this does too.
    """
    fs_group = POD_SECURITY_CONTEXT.get("fsGroup")
    extra = 0o440 if fs_group is not None else 0
    return {
        item["path"]: (secret[item["key"]], item["mode"] | extra)
        for item in SECRET_ITEMS
        if item["key"] in secret
    }


def _atomic_write(directory: Path, files: Mapping[str, str | tuple[str, int]]) -> None:
    """Write ``files`` (relative path → content, or (content, mode) for a Secret's
    files) as the kubelet's atomic writer does. Secret files get the pod's fsGroup
    as their group if it has one (the kubelet's ``SetVolumeOwnership``), else root."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = f"..{dt.datetime.now(dt.UTC):%Y_%m_%d_%H_%M_%S}.{uuid.uuid4().hex[:8]}"
    version = directory / stamp
    fs_group = POD_SECURITY_CONTEXT.get("fsGroup")
    for rel, entry in files.items():
        path = version / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(entry, tuple):  # a Secret volume's file
            content, mode = entry
            path.write_text(content)
            os.chown(path, 0, fs_group if fs_group is not None else 0)
            path.chmod(mode)
        else:
            path.write_text(entry)
            path.chmod(0o644)
    for sub in [version, *[p for p in version.rglob("*") if p.is_dir()]]:
        sub.chmod(0o755)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = directory / "..data_tmp"
    os.symlink(stamp, tmp)
    os.rename(tmp, data)
    tops = {rel.split("/")[0] for rel in files}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    for entry in directory.iterdir():  # keys that went away
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old:
        shutil.rmtree(directory / old)


@dataclass
class TenantFiles:
    """The ConfigMap and Secret of one server, on disk as the kubelet mounts them."""

    root: Path
    settings: OperatorSettings
    plan: MailPlanSpec = field(default_factory=lambda: PLAN)
    stored: dict[str, str] = field(default_factory=dict)
    # The cost of the mailboxes' password hashes (cheap: the operator's default is 10).
    bcrypt_rounds: int = 4
    # The shared Rspamd controller's password, for a server that trains it.
    antispam_password: str = ""

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    def write(
        self,
        spec: PersonalMailServerSpec,
        passwords: Mapping[str, str],
        edit: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        """Render ``spec`` and swap the new files in; ``edit`` may change the config."""
        by_secret = {secret_name(a): p for a, p in passwords.items()}
        versions = {a: str(hash(p) & 0xFFFF) for a, p in by_secret.items()}
        material = credentials.gather(
            spec,
            self.stored,
            lambda name, _key: (by_secret[name], versions[name]) if name in by_secret else None,
            service_host="tenant.customer.svc",
            bcrypt_rounds=self.bcrypt_rounds,
            dkim_bits=1024,
        )
        self.stored = {
            credentials.HASHES_KEY: material.hashes_document(),
            "tls.crt": material.tls_cert,
            "tls.key": material.tls_key,
            **{credentials.dkim_key_name(d): k for d, k in material.dkim_keys.items()},
            credentials.RELAY_PASSWORD_KEY: material.relay_password,
            credentials.RELAY_HASH_KEY: material.relay_password_hash,
        }
        ctx = build_context("tenant", "customer", spec, self.plan, self.settings)
        config = {CONFIG_FILES[k]: v for k, v in render_config(ctx).items()}
        if edit is not None:
            edit(config)
        secret = {
            **self.stored,
            PASSWD_KEY: render_passwd(ctx, material.password_hashes),
            RELAY_SASL_KEY: relay_sasl_map(ctx.relay_host, OWNER, material.relay_password),
            ANTISPAM_PASSWORD_KEY: self.antispam_password if ctx.antispam.training else "",
        }
        _atomic_write(self.config_dir, config)
        _atomic_write(self.secrets_dir, secret_volume_files(secret))


def confined_run_args(name: str, hostname: str, capabilities: Iterable[str]) -> list[str]:
    """``podman run`` as the charts run a pod: detached, a read-only root, every
    capability dropped but ``capabilities``, no new privileges."""
    return [
        "run",
        "--detach",
        "--name",
        name,
        "--hostname",
        hostname,
        "--read-only",
        "--cap-drop=ALL",
        *(f"--cap-add={c}" for c in capabilities),
        "--security-opt=no-new-privileges",
    ]


def published_ports() -> list[int]:
    return [*(p.port for p in PORTS), USAGE_PORT]


class Container:
    """What every test container can be asked, by its ``name``."""

    name: str

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def wait_serving(self, serving: Callable[[], bool], what: str, timeout: float) -> None:
        """Until ``serving()`` (raises once the container has exited, or at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{what} exited:\n{self.logs()}")
            if serving():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout} s:\n{self.logs()}")

    def wait_exit(self, timeout: float = 30) -> int:
        out = podman("wait", self.name, timeout=timeout)
        return int(out.stdout.strip())


@dataclass
class Tenant(Container):
    """One tenant container, its ports published on ``host`` (127.0.0.x).

    With ``publish=False`` nothing is published and ``start`` sets ``host`` to
    the container's own address on the podman network (the benchmark does this:
    it then shares no host port with anything else on the machine).
    """

    image: str
    host: str
    files: TenantFiles
    name: str = field(default_factory=lambda: f"vpes-test-{uuid.uuid4().hex[:8]}")
    volume: str = ""
    publish: bool = True
    # A size-limited tmpfs as the mail volume ("32m"), instead of a podman volume.
    mail_size: str = ""

    def run_args(self) -> list[str]:
        args = [
            *confined_run_args(self.name, "tenant", CAPABILITIES),
            "--tmpfs",
            f"{RUN_DIR}:rw,mode=0755,size=32m",
            "--tmpfs",
            "/tmp:rw,mode=1777,size=64m",
            "--volume",
            f"{self.files.config_dir}:{CONFIG_DIR}:ro",
            "--volume",
            f"{self.files.secrets_dir}:{SECRETS_DIR}:ro",
            *(
                ["--tmpfs", f"{MAIL_DIR}:rw,mode=2775,size={self.mail_size}"]
                if self.mail_size
                else ["--volume", f"{self.volume}:{MAIL_DIR}"]
            ),
            "--env",
            "VPES_WATCH_INTERVAL=1",
        ]
        if self.publish:
            for port in published_ports():
                args += ["--publish", f"{self.host}:{port}:{port}"]
        return [*args, self.image]

    def start(self) -> None:
        self.volume = self.volume or ("" if self.mail_size else f"{self.name}-mail")
        podman(*self.run_args())
        if not self.publish:
            self.host = container_address(self.name)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until SMTP and IMAP greet on the published ports (or the container died)."""
        self.wait_serving(
            lambda: all(_greets(self.host, p) for p in (25, 143, 4190)), "tenant", timeout
        )

    def pid(self) -> int:
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout)

    def exec(self, *cmd: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the container (as ``user``, a name or uid[:gid], if given)."""
        as_user = ["--user", user] if user is not None else []
        return podman("exec", *as_user, self.name, *cmd, check=False)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)
        if self.volume:
            podman("volume", "rm", "--force", self.volume, check=False)


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.settimeout(2)
            return bool(s.recv(64))
    except OSError:
        return False


def container_address(name: str) -> str:
    """A running container's address on the default podman network."""
    out = podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name)
    return out.stdout.strip()


def podman_gateway() -> str:
    """The address the default podman network's containers see host clients as."""
    out = podman(
        "network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}"
    )
    return out.stdout.strip()
