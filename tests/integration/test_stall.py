"""The operator recovers when the API server's streams to it go silent.

Every connection the operator has open to the API server is black-holed (kept
open, nothing moves): its watch streams stop delivering and its pooled
connections hang. A spec change made meanwhile must still be reconciled
within a bound, through new connections, and the process must stay up.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from vpes_devcluster.platform import install_platform
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .dns_support import free_port
from .operator_support import (
    OperatorProcess,
    plan_body,
    release_deleted_servers,
    server_body,
    wait_for,
    wait_ready,
)
from .proxy_support import StallingProxy

# kopf reconnects a watch that has delivered nothing (not even a bookmark,
# which the API server sends about every minute) for 70 s; handlers' requests
# time out after 30 s and are retried on new connections.
RECOVERY_BOUND = 180.0


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_operator_recovers_from_silent_streams(
    api: Kube, cluster: Any, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = install_platform(cluster)
    # Servers earlier tests left Terminating (their namespaces deleted while no operator
    # ran) would hold this operator's handler threads in DNS clean-ups with back-offs.
    release_deleted_servers(api)
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    target = urlparse(server)
    plan = f"st-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan))
    spec = {
        "plan": plan,
        "owner": {"email": "o@example.net"},
        "domains": ["stall.test"],
        "mailboxes": [{"address": "a@stall.test"}],
        "dns": {"mode": "Manual"},
    }
    port = free_port("127.0.0.1")
    with StallingProxy(target.hostname or "127.0.0.1", int(target.port or 443)) as proxy:
        op = OperatorProcess(
            proxy.kubeconfig_through(kubeconfig, tmp_path / "proxied.kubeconfig"),
            tmp_path,
            args=["--metrics-port", str(port)],
        )
        op.start()
        try:
            api.apply(server_body("s", namespace, spec))
            wait_ready(api, namespace, "s")
            assert proxy.stall() >= 1, "the operator had no connection open"
            stalled_at = time.monotonic()
            boxes = [{"address": "a@stall.test"}, {"address": "b@stall.test"}]
            changed = {**spec, "mailboxes": boxes}
            generation = api.apply(server_body("s", namespace, changed))["metadata"]["generation"]

            def reconciled() -> bool:
                obj = api.get(API_VERSION, "PersonalMailServer", namespace, "s") or {}
                return (obj.get("status") or {}).get("observedGeneration") == generation

            wait_for(reconciled, "the change reconciled through new streams", RECOVERY_BOUND)
            took = time.monotonic() - stalled_at
            assert op.alive(), "the operator died instead of recovering"
            assert healthz(port) == 200
            print(f"recovered {took:.0f}s after the streams went silent")
        finally:
            op.stop()
            api.delete(API_VERSION, "MailPlan", None, plan)
