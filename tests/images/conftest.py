"""The image tier: the tenant image, built by ``images/build.sh`` (what ``make
images`` runs; reused when it exists), run under podman with the operator's
rendered configuration for a server with two domains.

Containers publish their ports on 127.0.0.x addresses; inside, clients appear
as the podman network's gateway, which the tests' settings make the edge
(trusted to send PROXY protocol headers). Forwards and submissions leave
through ``settings.relay_host``: a sink (``sink.py``) listening on 127.0.0.1
inside the tenant's own network namespace.

The shared containers (tenants, edge, proxy, Rspamd, webmail) are package-scoped:
they stop after this tier's last test instead of idling under the integration and
unit tiers of a full run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from vpes_operator.settings import OperatorSettings

from .clients import wait_until
from .tenant import (
    PASSWORDS,
    Tenant,
    TenantFiles,
    build_images,
    podman,
    podman_gateway,
    sample_spec,
)

if TYPE_CHECKING:
    from .mx_support import RunningEdge
    from .proxy_support import ProxySetup
    from .rspamd_support import Antispam
    from .webmail_support import WebmailSetup

HERE = Path(__file__).resolve().parent
SINK_PORT = 2525
# Containers publish their ports on <VPES_IMAGES_NET>.11-15, a loopback prefix
# drawn per run unless given: runs go side by side, and the port forwards a
# killed run may leave behind (podman keeps them when its teardown never ran)
# cannot catch this run's connections.
IMAGES_NET = os.environ.get("VPES_IMAGES_NET") or (
    f"127.{random.randint(64, 254)}.{random.randint(0, 255)}"
)


def host_address(n: int) -> str:
    return f"{IMAGES_NET}.{n}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.images)


@pytest.fixture(scope="package")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make system-deps`")
    return build_images("tenant")[0]


@pytest.fixture(scope="package")
def gateway(image: str) -> str:
    return podman_gateway()


def settings_for(edge: str) -> OperatorSettings:
    return OperatorSettings(edge_networks=(edge,), relay_host=f"[127.0.0.1]:{SINK_PORT}")


@dataclass
class Sink:
    directory: Path
    process: subprocess.Popen[bytes]

    def messages(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.directory.glob("*.json"), key=lambda p: int(p.stem)):
            out.append(json.loads(path.read_text()))
        return out

    def wait_for(self, needle: str, timeout: float = 20) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((m for m in self.messages() if needle in m["data"]), None)

        return wait_until(find, timeout, f"a relayed message containing {needle!r}")


@dataclass
class Running:
    tenant: Tenant
    files: TenantFiles
    sink: Sink

    @property
    def host(self) -> str:
        return self.tenant.host

    def logs(self) -> str:
        return self.tenant.logs()

    def in_pod(self, code: str, *args: str) -> str:
        """Run Python ``code`` (with ``args``) in the tenant's network namespace."""
        out = subprocess.run(
            [
                "nsenter",
                f"--net=/proc/{self.tenant.pid()}/ns/net",
                sys.executable,
                "-c",
                code,
                *args,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip()

    def mail_root(self) -> Path:
        out = podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.tenant.volume)
        return Path(out.stdout.strip())


def start_tenant(
    image: str, host: str, root: Path, edge: str, *, sink: bool = True
) -> Iterator[Running]:
    files = TenantFiles(root, settings_for(edge))
    files.write(sample_spec(), PASSWORDS)
    tenant = Tenant(image, host, files)
    process: subprocess.Popen[bytes] | None = None
    try:
        tenant.start()
        tenant.wait_ready()
        outdir = root / "relayed"
        outdir.mkdir()
        if sink:
            process = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/proc/{tenant.pid()}/ns/net",
                    sys.executable,
                    str(HERE / "sink.py"),
                    "127.0.0.1",
                    str(SINK_PORT),
                    str(outdir),
                ],
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"listening"
        yield Running(tenant, files, Sink(outdir, process))  # type: ignore[arg-type]
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        tenant.remove()


@pytest.fixture(scope="package")
def tenant(image: str, gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The shared tenant: the edge is the podman gateway (every test client)."""
    yield from start_tenant(
        image, host_address(11), tmp_path_factory.mktemp("tenant"), f"{gateway}/32"
    )


@pytest.fixture(scope="package")
def untrusted_tenant(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A tenant whose edge is elsewhere: the test clients are not trusted for PROXY."""
    root = tmp_path_factory.mktemp("untrusted")
    yield from start_tenant(image, host_address(12), root, "192.0.2.0/24", sink=False)


@pytest.fixture(scope="package")
def edge_image() -> str:
    return build_images("edge")[0]


# The edge MX, the login proxy and the antispam pair each serve several test
# modules: started once, the first time one asks. (Their support modules import
# this one.)


@pytest.fixture(scope="package")
def edge(
    edge_image: str, tenant: Running, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEdge]:
    """The edge MX in front of the shared tenant (mx_support.py)."""
    from .mx_support import start_mx

    yield from start_mx(edge_image, tenant, tmp_path_factory)


@pytest.fixture(scope="package")
def proxy(
    image: str, edge_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxySetup]:
    """Two tenants and the edge's login proxy in front of them (proxy_support.py)."""
    from .proxy_support import start_proxy

    yield from start_proxy(image, edge_image, tmp_path_factory)


@pytest.fixture(scope="package")
def antispam_image() -> str:
    return build_images("rspamd")[0]


@pytest.fixture(scope="package")
def antispam(antispam_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Antispam]:
    """Redis and Rspamd as the chart runs them (rspamd_support.py)."""
    from .rspamd_support import start_antispam

    yield from start_antispam(antispam_image, tmp_path_factory)


@pytest.fixture(scope="package")
def webmail(
    tenant: Running, gateway: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebmailSetup]:
    """The webmail's database and two replicas in front of the shared tenant
    (webmail_support.py)."""
    from .webmail_support import start_webmail

    yield from start_webmail(tenant, gateway, tmp_path_factory)
