"""What the e2e tests share: the operator as the chart's ServiceAccount (a host
process: the chart-installed one is in test_platform), tenants' addresses, mail in
and out through a Service, and TCP probes made from inside a pod."""

from __future__ import annotations

import base64
import imaplib
import smtplib
import socket
import ssl
import uuid
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from vpes_devcluster import Cluster
from vpes_devcluster.node_config import POD_CIDR
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube

from tests.integration.operator_support import (
    OperatorProcess,
    install_platform,
    plan_body,
    server_body,
    wait_for,
)

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
# The kubelet asks a tenant pod's SMTP port every 2 s instead of the chart's 10: a
# started pod (so its server) turns Ready within 2 s of answering, not up to 10.
READINESS_SECONDS = 2
READINESS_ENV = {"VPES_TENANT_READINESS_PERIOD_SECONDS": str(READINESS_SECONDS)}


def make_namespace(core: client.CoreV1Api, name: str) -> str:
    """Create namespace ``name``; return once its ``default`` ServiceAccount exists."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def has_default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_for(has_default_sa, f"the default ServiceAccount of {name}", timeout=30)
    return name


def start_operator(
    cluster: Cluster, tenant_image: str, log_dir: Path, **extra: str
) -> Iterator[OperatorProcess]:
    """A fixture's body: the operator, restartable, as the chart's ServiceAccount."""
    kubeconfig = install_platform(cluster)
    env = {
        "VPES_TENANT_IMAGE": tenant_image,
        "VPES_EDGE_NETWORKS": POD_CIDR,
        "VPES_DNS_DEFAULT_PROVIDER": "manual",
        **READINESS_ENV,
        **extra,
    }
    op = OperatorProcess(kubeconfig, log_dir, env)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def small_plan(api: Kube, memory: str = "256Mi", **spec: Any) -> str:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    api.apply(
        plan_body(
            name,
            resources={"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": memory}},
            backup={"enabled": False},
            **spec,
        )
    )
    return name


def create_server(api: Kube, ns: str, name: str, plan: str, domain: str) -> str:
    """A server with one mailbox ``<name>@<domain>`` (password PASSWORD); its address."""
    address = f"{name}@{domain}"
    secret = f"{name}-password"
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": ns},
            "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
        }
    )
    spec = {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": [domain],
        "mailboxes": [
            {
                "address": address,
                "quota": "256Mi",
                "passwordSecretRef": {"name": secret, "key": "password"},
            }
        ],
    }
    api.apply(server_body(name, ns, spec))
    return address


def service_ip(api: Kube, ns: str, server: str, port: int = 25) -> str:
    """The server's Service address, once it takes connections on ``port``: the
    pod turns Ready a moment before kube-proxy has programmed its endpoint, and a
    Service without endpoints refuses connections."""
    svc = api.get("v1", "Service", ns, naming.service(server))
    assert svc is not None, f"no Service {ns}/{server}"
    ip = str(svc["spec"]["clusterIP"])

    def accepting() -> bool:
        try:
            socket.create_connection((ip, port), timeout=3).close()
        except OSError:
            return False
        return True

    wait_for(accepting, f"Service {ns}/{server} ({ip}:{port}) taking connections", timeout=60)
    return ip


def tenant_pod(api: Kube, ns: str, server: str) -> dict[str, Any]:
    """The server's running pod (waits for one with an IP)."""

    def running() -> dict[str, Any] | None:
        pods = api.list("v1", "Pod", ns, labels=naming.pod_selector(server))
        live = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running"
            and (p.get("status") or {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ]
        return live[0] if live else None

    return wait_for(running, f"a running pod of {ns}/{server}", timeout=120)


def tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the operator's bootstrap certificate is self-signed
    return ctx


def send(host: str, sender: str, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@e2e.example>"
    msg.set_content(f"{subject}\n")
    with smtplib.SMTP(host, 25, timeout=30) as smtp:
        smtp.ehlo("sender.example")
        smtp.send_message(msg)


def subjects(host: str, address: str) -> list[str]:
    """The subjects in ``address``'s INBOX, over IMAPS on ``host``."""
    client = imaplib.IMAP4_SSL(host, 993, ssl_context=tls(), timeout=30)
    try:
        client.login(address, PASSWORD)
        client.select("INBOX", readonly=True)
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    finally:
        client.logout()
    found = []
    for item in data:
        if isinstance(item, tuple):
            found.append(item[1].decode().split(":", 1)[1].strip())
    return sorted(found)


def wait_subjects(host: str, address: str, expected: list[str], timeout: float = 90) -> None:
    def arrived() -> bool:
        try:
            return subjects(host, address) == sorted(expected)
        except (OSError, imaplib.IMAP4.error):
            return False

    wait_for(arrived, f"{expected} in {address}'s INBOX at {host}", timeout=timeout)


def open_ports(
    cluster: Cluster, ns: str, pod: str, targets: Iterable[tuple[str, int]], container: str = ""
) -> set[tuple[str, int]]:
    """Which of ``targets`` (host, port) accept a TCP connection made from inside
    ``pod`` (bash's /dev/tcp, 3 s each, all at once)."""
    targets = list(targets)
    probes = " ".join(
        f"(timeout 3 bash -c 'exec 3<>/dev/tcp/{h}/{p}' 2>/dev/null && echo open {h} {p}) &"
        for h, p in targets
    )
    args = ["exec", "-n", ns, pod]
    if container:
        args += ["-c", container]
    out = cluster.kubectl(*args, "--", "bash", "-c", f"{probes} wait", timeout=60)
    found = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "open":
            found.add((parts[1], int(parts[2])))
    return found


def delete_server(api: Kube, ns: str, name: str) -> None:
    api.delete(API_VERSION, "PersonalMailServer", ns, name)
