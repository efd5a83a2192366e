"""Start-up with many existing servers: the operator converges, and says ready only then.

Before the fix, kopf's worker cap (64) deadlocked the start-up whenever more
servers than that existed: every handler waits for the whole index, and the
objects past the cap never got a worker to be indexed by. Here 200 servers
exist before the operator starts; it is killed (SIGKILL) half-way and started
again; every server must end Ready, /readyz must not say ok before a handler
ran, and /healthz must stay ok throughout.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_devcluster.platform import install_platform
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .dns_support import free_port, scrape
from .operator_support import (
    OperatorProcess,
    harvest_secrets,
    plan_body,
    release_deleted_servers,
    server_body,
    wait_for,
)

N = 200
NAMESPACES = 4
RECONCILED = 'vpes_reconciles_total{kind="PersonalMailServer",result="ok"}'


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()
    except urllib.error.URLError:
        return 0, "not listening"


def metrics(port: int) -> dict[str, float]:
    """The operator's metrics; empty while its port is not listening yet."""
    try:
        return scrape(port)
    except OSError:
        return {}


def ready_count(api: Kube, prefix: str) -> int:
    n = 0
    for obj in api.list(API_VERSION, "PersonalMailServer"):
        if not obj["metadata"]["namespace"].startswith(prefix):
            continue
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                n += 1
    return n


@pytest.fixture(scope="module")
def kubeconfig(cluster: Any) -> Path:
    return install_platform(cluster)


@pytest.fixture
def many(api: Kube, kubeconfig: Path) -> Iterator[tuple[str, str]]:
    """A plan and N servers over a few namespaces, made before any operator runs."""
    release_deleted_servers(api)
    prefix = f"s-{uuid.uuid4().hex[:6]}-"
    plan = f"{prefix}plan"
    api.apply(plan_body(plan))
    names = [f"{prefix}{i}" for i in range(NAMESPACES)]
    for ns in names:
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def create(i: int) -> None:
        domain = f"d{i}.{prefix.strip('-')}.test"
        spec = {
            "plan": plan,
            "owner": {"email": "o@example.net"},
            "domains": [domain],
            "mailboxes": [{"address": f"a@{domain}"}],
            "dns": {"mode": "Manual"},
        }
        api.apply(server_body(f"m{i}", names[i % NAMESPACES], spec))

    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(N)))
    yield prefix, plan
    for ns in names:
        harvest_secrets(api, ns)
        api.delete("v1", "Namespace", None, ns)
    api.delete(API_VERSION, "MailPlan", None, plan)


def test_start_up_with_200_servers_converges_after_a_kill(
    kubeconfig: Path, api: Kube, many: tuple[str, str], tmp_path: Path
) -> None:
    prefix, _plan = many
    port = free_port("127.0.0.1")
    op = OperatorProcess(kubeconfig, tmp_path, args=["--metrics-port", str(port)])
    op.start()
    try:
        # Half-way through the first pass: killed without a chance to clean up.
        wait_for(
            lambda: metrics(port).get(RECONCILED, 0) >= N // 2,
            f"{N // 2} reconciles before the kill",
            timeout=300,
        )
        op.stop(kill=True)
        op.start()
        first_ready = wait_for(lambda: probe(port, "/readyz")[0] == 200, "readiness", 120)
        assert first_ready
        # Ready only once a handler ran: the counter is bumped before readiness flips.
        assert _reconciles(port) >= 1
        # Ready conditions written before the kill persist, so Ready alone does not
        # prove the new process got through: it must also have taken every server
        # (its resume pass, 8 at a time, is slow on a loaded machine).
        deadline = time.monotonic() + 600
        while True:
            m = metrics(port)
            if m.get("vpes_servers_waiting", -1) == 0 and ready_count(api, prefix) == N:
                break
            assert time.monotonic() < deadline, (
                f"{ready_count(api, prefix)} of {N} Ready, "
                f"{m.get('vpes_servers_waiting')} waiting for a handler"
            )
            status, why = probe(port, "/healthz")
            assert status == 200, why
            time.sleep(2)
        assert m["vpes_operator_ready"] == 1 and m["vpes_operator_stalled"] == 0
    finally:
        op.stop()
        _release_all(api, prefix)
    log = op.log_text()
    assert "stalled" not in log, "the health check reported a stall"


def _reconciles(port: int) -> float:
    """Every reconcile since this process started, whatever its result."""
    m = scrape(port)
    return sum(v for k, v in m.items() if k.startswith("vpes_reconciles_total{"))


def _release_all(api: Kube, prefix: str) -> None:
    """Delete the servers once the operator is stopped and take our finalizer off them:
    200 deletions through the operator (Manual DNS: nothing outside to clean) would add
    half a minute that proves nothing here. As before, their Secrets go with them
    (garbage collection) before the `many` fixture records what is left."""
    servers = [
        (s["metadata"]["namespace"], s["metadata"]["name"])
        for s in api.list(API_VERSION, "PersonalMailServer")
        if s["metadata"]["namespace"].startswith(prefix)
    ]

    def release(where: tuple[str, str]) -> None:
        api.delete(API_VERSION, "PersonalMailServer", *where)
        api.patch_metadata(API_VERSION, "PersonalMailServer", *where, {"finalizers": []})

    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(release, servers))

    def gone() -> bool:
        owned = [
            s
            for ns in {n for n, _ in servers}
            for s in api.list("v1", "Secret", ns)
            if s["metadata"].get("ownerReferences")
        ]
        return not owned and not any(
            s["metadata"]["namespace"].startswith(prefix)
            for s in api.list(API_VERSION, "PersonalMailServer")
        )

    wait_for(gone, "every server and its Secrets deleted", timeout=300)


def test_a_server_held_only_by_another_finalizer_is_not_waiting_work(
    kubeconfig: Path, api: Kube, namespace: str, tmp_path: Path
) -> None:
    """A server being deleted whose cleanup is done (our finalizer gone) but which another
    finalizer holds gets no handler: it must not count as waiting, or the operator would
    never say ready and, after five minutes, call itself stalled."""
    plan = f"h-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan))
    body = server_body(
        "held",
        namespace,
        {
            "plan": plan,
            "owner": {"email": "o@example.net"},
            "domains": ["held.test"],
            "mailboxes": [{"address": "a@held.test"}],
            "dns": {"mode": "Manual"},
        },
    )
    body["metadata"]["finalizers"] = ["example.net/hold"]
    api.apply(body)
    api.delete(API_VERSION, "PersonalMailServer", namespace, "held")
    port = free_port("127.0.0.1")
    op = OperatorProcess(kubeconfig, tmp_path, args=["--metrics-port", str(port)])
    op.start()
    try:
        wait_for(lambda: probe(port, "/readyz")[0] == 200, "readiness", 120)
        wait_for(
            lambda: metrics(port).get("vpes_servers_waiting", -1) == 0,
            "no server waiting for a handler",
            60,
        )
        held = api.get(API_VERSION, "PersonalMailServer", namespace, "held")
        assert held is not None and held["metadata"].get("deletionTimestamp")
    finally:
        op.stop()
        api.patch_metadata(API_VERSION, "PersonalMailServer", namespace, "held", {"finalizers": []})
        api.delete(API_VERSION, "MailPlan", None, plan)
