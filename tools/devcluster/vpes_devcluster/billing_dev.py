"""The billing service for tests, benchmarks and the demo: started against a
development cluster (`start_billing`, the production entry point) with a stripe-mock
beside it (`vpes_devcluster.stripe_mock`), and the signed webhook payloads
delivered to it. Its RBAC and admission policy: `vpes_devcluster.billing_rbac`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpes_devcluster import proc_records
from vpes_devcluster.binaries import repo_root
from vpes_devcluster.procs import free_port, terminate
from vpes_devcluster.stripe_mock import StripeMock

# Test values only: stripe-mock accepts any key, and webhooks are signed locally.
DEV_API_KEY = "sk_test_vpesdev"  # stripe-mock wants exactly sk_test_<one part>
DEV_WEBHOOK_SECRET = "whsec_test_vpes_dev_" + "0" * 16


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
        terminate(self.proc)
        _record(self.workdir).unlink(missing_ok=True)
        self.stripe.stop()


@dataclass(frozen=True)
class BillingOptions:
    """How `start_billing` runs the service.

    stripe-mock answers for one subscription of `customer`, active, on `price` (a
    MailPlan's stripePriceId). The service verifies webhooks with `webhook_secret`, a
    test value: `BillingDev.deliver` signs with it. `settings_env` adds VPES_BILLING_*
    settings. `detach` (the demo): both processes outlive the caller, recorded in the
    work directory (`proc_records`); `running_billing(workdir)` finds them again and
    `stop_billing(workdir)` stops them.
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


def _record(workdir: Path) -> Path:
    return workdir / "billing.pid"


def _stripe_record(workdir: Path) -> Path:
    return workdir / "stripe-mock" / "stripe-mock.pid"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _recorded_port(workdir: Path) -> int | None:
    record = proc_records.read(_record(workdir))
    port = record.data.get("port") if record is not None else None
    return port if isinstance(port, int) else None


def start_billing(
    kubeconfig: Path, workdir: Path, options: BillingOptions | None = None
) -> BillingDev:
    """stripe-mock, then the billing service against `kubeconfig` (billing's
    ServiceAccount, from `install_billing`), on loopback; returns once /healthz answers.
    Whatever an earlier call recorded in `workdir` is stopped first (its port is
    reused when free). Logs: `workdir/billing.log`."""
    options = options or BillingOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    previous = _recorded_port(workdir)
    stop_billing(workdir)  # the record would be overwritten: nothing could stop it then
    # A replaced service answers on the URL printed before, if that port is free.
    if previous is not None and not _port_free(previous):
        previous = None
    port = options.port or previous or free_port()
    stripe = StripeMock(workdir / "stripe-mock", detach=options.detach)
    stripe.set_subscription(customer=options.customer, status="active", price=options.price)
    env = _service_env(kubeconfig, options, stripe, port)
    log = workdir / "billing.log"
    record = _record(workdir)
    argv = proc_records.python_argv(
        record, "-m", "vpes_billing", "--host", "127.0.0.1", "--port", str(port)
    )
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=options.detach,
            cwd=repo_root(),
        )
    except BaseException:
        stripe.stop()
        raise
    url = f"http://127.0.0.1:{port}"
    proc_records.write(
        record, proc.pid, proc_records.python_marker(record), url=url, port=port, stripe=stripe.url
    )
    dev = BillingDev(url, options.webhook_secret, stripe, proc, log, workdir, env)
    _wait_healthy(dev, options.timeout)
    return dev


def running_billing(workdir: Path) -> str | None:
    """The URL of the billing service a detached `start_billing` left running in
    `workdir`, if it and the stripe-mock it talks to both still run; else None."""
    billing = proc_records.running(_record(workdir))
    stripe = proc_records.running(_stripe_record(workdir))
    if billing is None or stripe is None:
        return None
    if billing.data.get("stripe") != f"http://127.0.0.1:{stripe.data.get('port')}":
        return None
    url = billing.data.get("url")
    return url if isinstance(url, str) else None


def stop_billing(workdir: Path) -> None:
    """Stop what `start_billing(..., detach=True)` left running in `workdir` (the
    service, then its stripe-mock) and remove their records."""
    proc_records.stop(_record(workdir))
    proc_records.stop(_stripe_record(workdir))
