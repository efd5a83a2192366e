"""Test, benchmark and demo infrastructure: stripe-mock on loopback, signed webhook
payloads, billing's chart RBAC installed into a development cluster, and the billing
service itself started against it (`start_billing`).

stripe-mock is stateless: it answers every GET from its fixtures. Tests say
what Stripe's *current* state of the subscription is by restarting it with a
fixture of their own (`StripeMock.set_subscription`), which is exactly the
input the billing service decides from.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpes_operator.clients.kube import ApiError, Kube

from vpes_devcluster.binaries import repo_root
from vpes_devcluster.cluster import Cluster

SERVICE_ACCOUNT = "vpes-billing"
SCOPE_POLICY = "vpes-billing-scope"  # the chart's ValidatingAdmissionPolicy (release "vpes")
# Test values only: stripe-mock accepts any key, and webhooks are signed locally.
DEV_API_KEY = "sk_test_vpesdev"  # stripe-mock wants exactly sk_test_<one part>
DEV_WEBHOOK_SECRET = "whsec_test_vpes_dev_" + "0" * 16


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
    def __init__(self, workdir: Path, *, detach: bool = False) -> None:
        """`detach`: stripe-mock runs in a session of its own and outlives this process
        (the demo), its pid in `workdir/stripe-mock.pid`."""
        self.dir = stripe_mock_dir()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fixtures: dict[str, Any] = json.loads((self.dir / "fixtures3.json").read_text())
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.detach = detach

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
                # Without this it also listens for HTTPS on *:12112, so a second
                # stripe-mock could not start (and it would listen beyond loopback).
                "-https-addr",
                "127.0.0.1:0",
                "-fixtures",
                str(path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.detach,
        )
        (self.workdir / "stripe-mock.pid").write_text(str(self.proc.pid))
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
        if self.proc is not None:
            _terminate(self.proc)
        self.proc = None
        (self.workdir / "stripe-mock.pid").unlink(missing_ok=True)


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
    """Billing's chart RBAC and admission policy; returns a kubeconfig of its
    ServiceAccount, once the policy is enforced."""
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
    kubeconfig = Path(cluster.write_kubeconfig_for_token(token, path))
    wait_for_scope_policy(kubeconfig, namespace)
    return kubeconfig


def kube_for(kubeconfig: Path, field_manager: str = "vpes-billing") -> Kube:
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return Kube(api, field_manager=field_manager)


def wait_for_scope_policy(kubeconfig: Path, namespace: str, timeout: float = 60.0) -> None:
    """Until the API server enforces the chart's policy on billing: a dry-run
    RoleBinding in billing's own namespace (which RBAC alone allows) is refused."""
    kube = kube_for(kubeconfig)
    probe = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "vpes-billing-policy-probe", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "vpes-billing-tenant",
        },
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}],
    }
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                kube.create(probe, dry_run=True)
            except ApiError as e:
                if SCOPE_POLICY in e.body:
                    return
                if e.status != 403:  # 403 from RBAC while the role binding settles
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"policy {SCOPE_POLICY} not enforced within {timeout:.0f}s")
            time.sleep(0.2)
    finally:
        kube.api.close()  # type: ignore[no-untyped-call]


# -- the billing service, running ------------------------------------------------


@dataclass
class BillingDev:
    """A running billing service (`python -m vpes_billing`, the production entry point)
    and the stripe-mock it talks to."""

    url: str
    webhook_secret: str
    stripe: StripeMock
    proc: subprocess.Popen[bytes]
    log: Path
    workdir: Path
    env: dict[str, str] = field(repr=False)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(  # noqa: S310 (our loopback URL)
            self.url + path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as r:  # noqa: S310
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def deliver(self, evt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Send `evt` to the webhook, signed as Stripe signs it with the test secret."""
        body = json.dumps(evt).encode()
        status, text = self.post(
            "/stripe/webhook",
            body,
            {
                "Content-Type": "application/json",
                "Stripe-Signature": sign(body, self.webhook_secret),
            },
        )
        return status, json.loads(text) if text.startswith("{") else {"text": text}

    def stop(self) -> None:
        _terminate(self.proc)
        (self.workdir / "billing.pid").unlink(missing_ok=True)
        self.stripe.stop()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class BillingOptions:
    """How `start_billing` runs the service.

    stripe-mock answers for one subscription of `customer`, active, on `price` (a
    MailPlan's stripePriceId). The service verifies webhooks with `webhook_secret`, a
    test value: `BillingDev.deliver` signs with it. `settings_env` adds VPES_BILLING_*
    settings. `detach` (the demo): both processes outlive the caller, their pids in the
    work directory; `stop_billing(workdir)` stops them later.
    """

    price: str | None = None
    customer: str = "cus_dev"
    webhook_secret: str = DEV_WEBHOOK_SECRET
    port: int | None = None
    namespace: str = "vpes-system"
    provider_domain: str | None = None
    settings_env: Mapping[str, str] = field(default_factory=dict)
    detach: bool = False
    timeout: float = 30.0


def _service_env(
    kubeconfig: Path, options: BillingOptions, stripe: StripeMock, port: int
) -> dict[str, str]:
    provider = {"VPES_PROVIDER_DOMAIN": options.provider_domain} if options.provider_domain else {}
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "STRIPE_API_KEY": DEV_API_KEY,
        "STRIPE_WEBHOOK_SECRET": options.webhook_secret,
        "STRIPE_API_BASE": stripe.url,
        "VPES_BILLING_NAMESPACE": options.namespace,
        "VPES_BILLING_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **provider,
        **options.settings_env,
    }


def _wait_healthy(dev: BillingDev, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if dev.proc.poll() is not None:
            dev.stripe.stop()
            raise RuntimeError(f"billing exited with {dev.proc.returncode}; see {dev.log}")
        try:
            with urllib.request.urlopen(dev.url + "/healthz", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            dev.stop()
            raise RuntimeError(
                f"billing did not answer /healthz within {timeout:.0f}s; see {dev.log}"
            )
        time.sleep(0.1)


def start_billing(
    kubeconfig: Path, workdir: Path, options: BillingOptions | None = None
) -> BillingDev:
    """stripe-mock, then the billing service against `kubeconfig` (billing's
    ServiceAccount, from `install_billing`), on loopback; returns once /healthz answers.
    Logs: `workdir/billing.log`."""
    options = options or BillingOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    stripe = StripeMock(workdir / "stripe-mock", detach=options.detach)
    stripe.set_subscription(customer=options.customer, status="active", price=options.price)
    port = options.port or _free_port()
    env = _service_env(kubeconfig, options, stripe, port)
    log = workdir / "billing.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpes_billing", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=options.detach,
        cwd=repo_root(),
    )
    (workdir / "billing.pid").write_text(str(proc.pid))
    dev = BillingDev(
        f"http://127.0.0.1:{port}", options.webhook_secret, stripe, proc, log, workdir, env
    )
    _wait_healthy(dev, options.timeout)
    return dev


def stop_billing(workdir: Path) -> None:
    """Stop what `start_billing(..., detach=True)` left running in `workdir`."""
    for pid_file, marker in (
        (workdir / "billing.pid", b"vpes_billing"),
        (workdir / "stripe-mock" / "stripe-mock.pid", b"stripe-mock"),
    ):
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        pid_file.unlink()
