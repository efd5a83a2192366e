"""Benchmark on the real node (kubelet + containerd + runc + CNI): what a customer
waits for and what the node spends per customer, side by side in one run.

1. First mail: from a PersonalMailServer applied to the first SMTP session through
   its Service's ClusterIP (port 25, from the host) that gets 250 after DATA;
   p50/p95 for 1 server (repeated, interleaved) and for 20 created at once. Baseline:
   the same child objects (``builders.desired_objects`` with ``credentials.gather``,
   as ``bench/reconcile.py``'s baseline makes them) applied straight to the API
   server without the operator, timed the same way from the start of that work.
2. Memory per idle tenant with 20 and 50 tenants: the kubelet's summary API working
   set of each pod, plus the PSS (``/proc/PID/smaps_rollup``) of the pod's
   ``containerd-shim-runc-v2`` and of its pause process (reported on its own: it
   lives in the pod's cgroup, so its memory is already in the working set), plus
   the node's MemAvailable. Next to it, the same tenants under podman measured by
   ``bench/memory.py``'s functions (PSS of the container's processes), plus conmon.
3. The slope 20 → 50 (MemAvailable drop, and the sum above) in MiB per additional
   tenant, and what caps tenants per node once kubelet's maxPods is raised: memory,
   the scheduler's requests (CPU, memory), PIDs (kernel.pid_max), pod IPs.

Caches are dropped and the tenants left idle before each memory reading. Only one
dev node can run on a machine: the benchmark waits while another one answers.

    python -m bench.node [--single 3] [--burst 20] [--tenants 20,50] [--idle 40]

Prints markdown tables and writes bench/results/node-<time>.json (after every phase).
The phases: bench/node_mail.py (1), bench/node_memory.py (2), bench/node_density.py
(3); the tables: bench/node_table.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import tempfile
import time
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from vpes_devcluster import Cluster
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.node import build_images
from vpes_devcluster.node_config import KUBELET_HEALTHZ_PORT, POD_CIDR
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.settings import OperatorSettings

from bench.node_density import caps, density
from bench.node_mail import run_first_mail
from bench.node_memory import run_node_memory, run_podman
from bench.node_plan import NS_BASE, NS_MEM, NS_OP, PLAN, RESOURCES
from bench.node_proc import MIB, comm, mem_total, pids
from bench.node_table import table
from tests.e2e.support import make_namespace, start_operator
from tests.integration.operator_support import OperatorProcess, plan_body

RESULTS = Path(__file__).resolve().parent / "results"


def node_running() -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", KUBELET_HEALTHZ_PORT)) == 0


def wait_for_free_node(limit: float) -> None:
    deadline = time.monotonic() + limit
    while node_running():
        if time.monotonic() > deadline:
            raise SystemExit("another dev node still runs on this machine; try later")
        print("another dev node runs here (its kubelet answers); waiting a minute ...", flush=True)
        time.sleep(60)


def settings_env(tenant_image: str) -> dict[str, str]:
    """The operator's environment; the baseline builds with the same settings."""
    return {
        "VPES_TENANT_IMAGE": tenant_image,
        "VPES_EDGE_NETWORKS": POD_CIDR,
        "VPES_DNS_DEFAULT_PROVIDER": "manual",
        # Production cost, as bench/reconcile.py.
        "VPES_BCRYPT_ROUNDS": "10",
        "VPES_DKIM_KEY_BITS": "2048",
    }


def delete_tenants(cluster: Cluster, kube: Kube, namespaces: list[str]) -> None:
    """Remove every tenant of ``namespaces`` and wait until the node ran their pods down."""
    for ns in namespaces:
        for s in kube.list(API_VERSION, "PersonalMailServer", ns):
            kube.delete(API_VERSION, "PersonalMailServer", ns, s["metadata"]["name"])
        for cm in kube.list("v1", "ConfigMap", ns):
            if cm["metadata"]["name"].endswith("-owner"):
                kube.delete("v1", "ConfigMap", ns, cm["metadata"]["name"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        left = sum(len(kube.list("apps/v1", "StatefulSet", ns)) for ns in namespaces)
        for ns in namespaces:
            cluster.kubectl(
                "delete", "pods", "--all", "-n", ns, "--force", "--grace-period=0",
                "--wait=false", check=False, timeout=60,
            )  # fmt: skip
        on_node = len([p for p in kube.list("v1", "Pod") if p["spec"].get("nodeName")])
        sandboxes = len([pid for pid in pids() if comm(pid) == "pause"])
        if left == 0 and sandboxes <= on_node:
            return
        time.sleep(3)
    print("(note: tenants of the first-mail phase still being removed)", flush=True)


def operator(
    cluster: Cluster, env: dict[str, str], log_dir: Path
) -> AbstractContextManager[OperatorProcess]:
    """The operator as the e2e tier runs it (a host process, the chart's RBAC)."""
    image = env["VPES_TENANT_IMAGE"]
    extra = {k: v for k, v in env.items() if k != "VPES_TENANT_IMAGE"}
    return contextmanager(start_operator)(cluster, image, log_dir, **extra)


class Results:
    def __init__(self, args: argparse.Namespace) -> None:
        stamp = dt.datetime.now(dt.UTC)
        self.path = RESULTS / f"node-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
        self.data: dict[str, Any] = {
            "when": stamp.isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "mem_total_mib": round(mem_total() / MIB)},
            "args": {k: v for k, v in vars(args).items() if k != "out"},
        }

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        RESULTS.mkdir(exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def run(args: argparse.Namespace) -> Results:
    counts = [int(c) for c in args.tenants.split(",")]
    results = Results(args)
    image = build_images("tenant")["tenant"]
    results.put("tenant_image", image)
    env = settings_env(image)
    settings = OperatorSettings.from_env(env)
    logs = RESULTS / f"{results.path.stem}-operator"
    with tempfile.TemporaryDirectory(prefix="vpes-bench-node-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster", nodes=0, node=True)
        try:
            start_when_free(cluster, args.wait_minutes * 60)
            cluster.real_node().import_images([image])
            api = cluster.api_client()
            kube = Kube(api, field_manager="bench")
            core = client.CoreV1Api(api)
            with operator(cluster, env, logs):  # installs the CRDs first
                kube.apply(plan_body(PLAN, resources=RESOURCES, backup={"enabled": False}))
                for ns in (NS_OP, NS_BASE, NS_MEM):
                    make_namespace(core, ns)
                results.put("first_mail", run_first_mail(kube, settings, args.single, args.burst))
                print("removing the first-mail tenants ...", flush=True)
                delete_tenants(cluster, kube, [NS_OP, NS_BASE])
                node = run_node_memory(kube, counts, args.idle)
                results.put("node_memory", node)
                results.put("density", density(kube, node))
        finally:
            cluster.stop()
    if not args.skip_podman:  # after the node: nothing of its own then runs beside
        results.put("podman", run_podman(image, counts, args.idle))
    return results


def start_when_free(cluster: Cluster, limit: float) -> None:
    """Start the cluster once no other dev node runs (another session may start one
    at any time: wait again if it won the race)."""
    deadline = time.monotonic() + limit
    while True:
        wait_for_free_node(max(60.0, deadline - time.monotonic()))
        try:
            cluster.start()
            return
        except ClusterError as exc:
            if "another dev node" not in str(exc) or time.monotonic() > deadline:
                raise


def stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3, help="repetitions of 1 server")
    parser.add_argument("--burst", type=int, default=20, help="servers created at once")
    parser.add_argument("--tenants", default="20,50", help="idle tenants measured")
    parser.add_argument("--idle", type=float, default=40, help="seconds idle before a reading")
    parser.add_argument("--skip-podman", action="store_true")
    parser.add_argument("--wait-minutes", type=float, default=60, help="for another node")
    parser.add_argument("--table", type=Path, help="print the tables of a results file, only")
    args = parser.parse_args()
    if args.table:
        data = json.loads(args.table.read_text())
        if "inputs" in data.get("density", {}):
            data["density"].update(caps(data["density"]["inputs"]))
        print(table(data))
        return
    # Stopped by a signal (even when started in the background, where SIGINT is
    # ignored), the finally blocks still stop the operator, the tenants and the cluster.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    results = run(args)
    text = table(results.data)
    results.put("table", text)
    print(text)
    print(f"\nwritten to {results.path}")


if __name__ == "__main__":
    main()
