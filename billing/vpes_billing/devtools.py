"""Test and benchmark infrastructure: stripe-mock on loopback, signed webhook payloads,
billing's chart RBAC installed into a development cluster.

stripe-mock is stateless: it answers every GET from its fixtures. Tests say
what Stripe's *current* state of the subscription is by restarting it with a
fixture of their own (`StripeMock.set_subscription`), which is exactly the
input the billing service decides from.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from vpes_devcluster.binaries import repo_root
from vpes_devcluster.cluster import Cluster

SERVICE_ACCOUNT = "vpes-billing"


def stripe_mock_dir() -> Path:
    out = subprocess.run(
        ["bash", str(repo_root() / "tools" / "stripe-mock" / "build.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StripeMock:
    def __init__(self, workdir: Path) -> None:
        self.dir = stripe_mock_dir()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fixtures: dict[str, Any] = json.loads((self.dir / "fixtures3.json").read_text())
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_subscription(
        self, *, customer: str, status: str = "active", price: str | None = None
    ) -> None:
        """Restart stripe-mock answering with this subscription state."""
        fixtures = copy.deepcopy(self.fixtures)
        if price is not None:
            # Nested objects (items, their price and plan) are filled from fixtures
            # of their own: replace the bundled price id everywhere.
            bundled = fixtures["resources"]["price"]["id"]
            fixtures = json.loads(json.dumps(fixtures).replace(f'"{bundled}"', f'"{price}"'))
        sub = fixtures["resources"]["subscription"]
        sub["customer"] = customer
        sub["status"] = status
        self._start(fixtures)

    def _start(self, fixtures: dict[str, Any]) -> None:
        self.stop()
        self.starts += 1
        path = self.workdir / f"fixtures-{self.starts}.json"
        path.write_text(json.dumps(fixtures))
        log = (self.workdir / f"stripe-mock-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(self.dir / "stripe-mock"),
                "-http-addr",
                f"127.0.0.1:{self.port}",
                "-fixtures",
                str(path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"stripe-mock exited with {self.proc.returncode}; see {log.name}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("stripe-mock did not start listening within 30s")

    def start(self) -> None:
        self._start(self.fixtures)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(etype: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": etype,
        "data": {"object": obj},
    }


def checkout_session(
    *,
    session: str,
    customer: str,
    subscription: str,
    email: str,
    domain: str,
    mailbox: str,
    plan: str,
) -> dict[str, Any]:
    return {
        "id": session,
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "customer": customer,
        "subscription": subscription,
        "customer_email": email,
        "customer_details": {"email": email},
        "metadata": {"plan": plan, "domain": domain, "mailbox": mailbox},
    }


def chart_rbac(cluster: Cluster, namespace: str) -> str:
    return subprocess.run(
        [
            str(Path(cluster.bin_dir) / "helm"),
            "template",
            "vpes",
            str(repo_root() / "charts" / "vpes"),
            "-n",
            namespace,
            "--show-only",
            "templates/billing-rbac.yaml",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def install_billing(cluster: Cluster, namespace: str = "vpes-system") -> Path:
    """Billing's chart RBAC; returns a kubeconfig of its ServiceAccount."""
    cluster.kubectl("create", "namespace", namespace, check=False)
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=chart_rbac(cluster, namespace),
    )
    token = cluster.token_for(namespace, SERVICE_ACCOUNT, 24 * 3600)
    path = Path(cluster.kubeconfig).parent / "billing.kubeconfig"
    return Path(cluster.write_kubeconfig_for_token(token, path))
