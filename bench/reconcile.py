"""Benchmark: PersonalMailServers → Ready against the real control plane with kwok.

For N = 100 and 1,000 servers it reports, side by side in one run:
  - restart: the operator stopped and started again with every server made
    above existing (1,100 by default): time until /readyz says ok, time until
    every server has been reconciled once again (the new process's
    vpes_reconciles_total reaches the number of servers and none waits for a
    handler), the new process's peak RSS, and the most handlers that ran at once;
  - operator: create N PersonalMailServers; per-server time to Ready (p50/p95),
    time until all are Ready, servers Ready per second, reconciles per second (the
    operator's own vpes_reconciles_total before and after the run: every reconcile,
    whatever its result, including the repeats while a pod starts), the
    operator's peak RSS;
  - baseline: the floor of the same work without the operator: the same child
    objects (as the builders make them) applied straight to the API server by
    the benchmark with the same parallelism, until every StatefulSet is ready.
The ratio operator/baseline is the operator's own cost.

Usage: python -m bench.reconcile [--sizes 100,1000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from vpes_devcluster.cluster import Cluster
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.handlers.drift import Sweeper
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.settings import OperatorSettings

from bench.direct import apply_children
from bench.stats import pct
from tests.integration.operator_support import OperatorProcess, install_platform, plan_body

PLAN = "bench"
NAMESPACES = 10


def spec(i: int) -> dict[str, Any]:
    return {
        "plan": PLAN,
        "owner": {"email": f"owner{i}@example.net"},
        "domains": [f"c{i}.example"],
        "mailboxes": [{"address": f"me@c{i}.example", "aliases": ["info"]}],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reconciles(metrics_port: int, kind: str = "PersonalMailServer") -> float:
    """The operator's vpes_reconciles_total for `kind`, summed over results."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vpes_reconciles_total{") and f'kind="{kind}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def watch_ready(
    kube: Kube, prefix: str, n: int, created: dict[str, float], timeout: float
) -> dict[str, float]:
    """Poll the list of servers until `n` with `prefix` are Ready; name → seconds to Ready."""
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ready) < n and time.monotonic() < deadline:
        for obj in kube.list(API_VERSION, "PersonalMailServer"):
            name = obj["metadata"]["name"]
            if not name.startswith(prefix) or name in ready:
                continue
            for c in (obj.get("status") or {}).get("conditions", []):
                if c["type"] == "Ready" and c["status"] == "True":
                    ready[name] = time.monotonic() - created[name]
        time.sleep(0.5)
    return ready


def run_operator(
    kube: Kube, op: OperatorProcess, metrics_port: int, n: int, workers: int
) -> dict[str, Any]:
    prefix = f"op{n}-"
    created: dict[str, float] = {}
    lock = threading.Lock()

    def create(i: int) -> None:
        name = f"{prefix}{i}"
        ns = f"bench-{i % NAMESPACES}"
        with lock:
            created[name] = time.monotonic()
        kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec(i),
            }
        )

    before = reconciles(metrics_port)
    start = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(n)))
    ready = watch_ready(kube, prefix, n, created, timeout=900)
    total = time.monotonic() - start
    done = reconciles(metrics_port) - before
    times = list(ready.values())
    return {
        "servers": n,
        "ready": len(ready),
        "seconds_all_ready": round(total, 1),
        "p50_s": round(statistics.median(times), 2) if times else None,
        "p95_s": round(pct(times, 95), 2) if times else None,
        "servers_per_s": round(len(ready) / total, 2),
        "reconciles": int(done),
        "reconciles_per_s": round(done / total, 2),
        "operator_peak_rss_mib": round(op.peak_rss_kib() / 1024, 1),
        "handlers_in_flight_peak": metric(metrics_port, "vpes_server_handlers_in_flight_peak"),
    }


def metric(metrics_port: int, name: str) -> float | None:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def ready_now(metrics_port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
        return True
    except OSError:
        return False


def run_restart(kube: Kube, op: OperatorProcess, metrics_port: int) -> dict[str, Any]:
    """Restart the operator over every existing server; time until all are handled again."""
    existing = len(kube.list(API_VERSION, "PersonalMailServer"))
    op.stop()
    op.start()
    start = time.monotonic()
    ready_s = None
    deadline = start + 900
    while time.monotonic() < deadline:
        try:
            if ready_s is None and ready_now(metrics_port):
                ready_s = time.monotonic() - start
            done = reconciles(metrics_port)
            if done >= existing and metric(metrics_port, "vpes_servers_waiting") == 0:
                break
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    total = time.monotonic() - start
    sweeps = []
    for _ in range(3):  # the drift sweep over every server: its cost per interval
        t0 = time.monotonic()
        kicked = Sweeper(kube, OperatorSettings()).sweep()
        sweeps.append(time.monotonic() - t0)
    return {
        "servers": existing,
        "drift_sweep_s": round(statistics.median(sweeps), 2),
        "drift_kicked": len(kicked),
        "seconds_ready": round(ready_s, 1) if ready_s is not None else None,
        "seconds_all_reconciled": round(total, 1),
        "reconciles": int(reconciles(metrics_port)),
        "operator_peak_rss_mib": round(op.peak_rss_kib() / 1024, 1),
        "handlers_in_flight_peak": metric(metrics_port, "vpes_server_handlers_in_flight_peak"),
    }


def run_baseline(kube: Kube, n: int, workers: int, settings: OperatorSettings) -> dict[str, Any]:
    """Apply what the builders produce for each server, straight, with the same parallelism."""
    plan = MailPlanSpec.model_validate(plan_body(PLAN)["spec"])
    done: dict[str, float] = {}

    def build_and_apply(i: int) -> None:
        name, ns = f"base{n}-{i}", f"bench-{i % NAMESPACES}"
        t0 = time.monotonic()
        apply_children(kube, name, ns, spec(i), (PLAN, plan), settings)
        done[name] = t0

    start = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(build_and_apply, range(n)))
    ready: dict[str, float] = {}
    deadline = time.monotonic() + 900
    while len(ready) < n and time.monotonic() < deadline:
        for sts in kube.list("apps/v1", "StatefulSet"):
            name = sts["metadata"]["name"]
            if (
                name.startswith(f"base{n}-")
                and name not in ready
                and (sts.get("status") or {}).get("readyReplicas") == 1
            ):
                ready[name] = time.monotonic() - done[name]
        time.sleep(0.5)
    total = time.monotonic() - start
    times = list(ready.values())
    return {
        "servers": n,
        "ready": len(ready),
        "seconds_all_ready": round(total, 1),
        "p50_s": round(statistics.median(times), 2) if times else None,
        "p95_s": round(pct(times, 95), 2) if times else None,
        "servers_per_s": round(len(ready) / total, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = OperatorSettings()
    results: dict[str, Any] = {"sizes": sizes, "runs": []}
    with (
        tempfile.TemporaryDirectory(prefix="vpes-bench-") as tmp,
        Cluster(Path(tmp) / "cluster", nodes=2) as cluster,
    ):
        kube = Kube(cluster.api_client(), field_manager="bench")
        kubeconfig = install_platform(cluster)
        kube.apply(plan_body(PLAN))
        for i in range(NAMESPACES):
            kube.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{i}"}}
            )
        metrics_port = free_port()
        op = OperatorProcess(
            kubeconfig,
            Path(tmp) / "operator",
            extra_env={
                "VPES_BCRYPT_ROUNDS": str(settings.bcrypt_rounds),
                "VPES_DKIM_KEY_BITS": str(settings.dkim_key_bits),
            },
            args=["--metrics-port", str(metrics_port)],
        )
        op.start()
        wait_metrics(metrics_port)
        for n in sizes:
            print(f"operator: {n} servers ...", flush=True)
            o = run_operator(kube, op, metrics_port, n, workers=16)
            print(f"baseline: {n} servers ...", flush=True)
            b = run_baseline(kube, n, workers=16, settings=settings)
            ratio = round(o["seconds_all_ready"] / b["seconds_all_ready"], 2)
            results["runs"].append({"operator": o, "baseline": b, "ratio_all_ready": ratio})
            print(json.dumps(results["runs"][-1]), flush=True)
        print("restart: the operator over every server made above ...", flush=True)
        results["restart"] = run_restart(kube, op, metrics_port)
        print(json.dumps(results["restart"]), flush=True)
        op.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"reconcile-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"written to {path}")


def wait_metrics(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reconciles(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def table(results: dict[str, Any]) -> str:
    rows = [
        "| servers | run | all Ready (s) | p50 (s) | p95 (s) | servers/s | reconciles/s "
        "| operator peak RSS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        for label in ("operator", "baseline"):
            x = r[label]
            rss = f"{x['operator_peak_rss_mib']} MiB" if "operator_peak_rss_mib" in x else "-"
            rate = x.get("reconciles_per_s", "-")
            rows.append(
                f"| {x['servers']} | {label} | {x['seconds_all_ready']} | {x['p50_s']} | "
                f"{x['p95_s']} | {x['servers_per_s']} | {rate} | {rss} |"
            )
        rows.append(
            f"| {r['operator']['servers']} | ratio operator/baseline "
            f"| {r['ratio_all_ready']} | | | | | |"
        )
    r = results.get("restart")
    if r:
        rows += [
            "",
            "| restart over | /readyz ok (s) | all reconciled again (s) | reconciles "
            "| operator peak RSS | handlers at once (peak) | one drift sweep (s) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {r['servers']} servers | {r['seconds_ready']} | {r['seconds_all_reconciled']} "
            f"| {r['reconciles']} | {r['operator_peak_rss_mib']} MiB "
            f"| {r['handlers_in_flight_peak']} | {r['drift_sweep_s']} |",
        ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
