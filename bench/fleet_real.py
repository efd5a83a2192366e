"""bench/fleet.py's real part (`python -m bench.fleet --real`): the chart's operator on
the real node (as tests/e2e/test_platform.py installs it) moves N servers (10) to a new
tag of the tenant image (`ctr images tag`, as the e2e test makes its new image) through
its real health gate (pod on the image and ready, SMTP 220 and IMAP `* OK` through the
Service), canary 1 and each maxUnavailable (3 and 9). A prober (bench/fleet_prober.py)
connects to every server's SMTP port through its Service's ClusterIP every 100 ms
during each upgrade: the longest window each server refused or timed out. Baseline in
the same run: the operator's Deployment scaled to 0 and every StatefulSet patched
straight to another new tag, the same prober running, until every pod runs it ready.

Needs root, the images (`make images`) and the machine's one real node: it waits while
another dev node runs.
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
from pathlib import Path
from typing import Any

from kubernetes import client
from vpes_devcluster import Cluster, chart
from vpes_devcluster.node import Node, build_images
from vpes_operator.clients.kube import Kube

from bench.fleet import adopt, med, run_baseline, run_upgrade, upgrade_medians, upgrade_row
from bench.fleet_prober import Prober
from bench.fleet_watch import Key, summary
from bench.node import start_when_free, stop
from tests.e2e.support import create_server, make_namespace, service_ip, small_plan
from tests.integration.operator_support import wait_for, wait_ready

RELEASE = "benchfleet"
NAMESPACE = "vpes-bench-fleet"
SERVERS_NS = "bench-fleet-real"
OPERATOR = f"{RELEASE}-operator"  # the chart's Deployment
OPERATOR_PODS = "vpes.io/component=operator"


def scale_operator(kube: Kube, replicas: int) -> int:
    """The chart's operator Deployment to `replicas`; waits until none runs (0) or one
    is Ready (the leader); returns the replicas it had."""
    before = kube.get("apps/v1", "Deployment", NAMESPACE, OPERATOR)
    assert before is not None, f"no Deployment {NAMESPACE}/{OPERATOR}"
    kube.merge_patch("apps/v1", "Deployment", NAMESPACE, OPERATOR, {"spec": {"replicas": replicas}})

    def settled() -> bool:
        pods = kube.list("v1", "Pod", NAMESPACE, labels=OPERATOR_PODS)
        if replicas == 0:
            return not pods
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for p in pods
            for c in (p.get("status") or {}).get("conditions") or []
        )

    wait_for(settled, f"the operator at {replicas} replicas", timeout=300, interval=1)
    return int(before["spec"]["replicas"])


def upgrade_run(
    kube: Kube, node: Node, hosts: dict[Key, str], plan: str, tenant: str, run: int, mu: int
) -> dict[str, Any]:
    image = f"{tenant}-bench-r{run}-mu{mu}"
    node.ctr("images", "tag", "--force", tenant, image)
    print(f"run {run}: FleetUpgrade to {image}, canary 1, maxUnavailable {mu} ...", flush=True)
    servers = list(hosts)
    with Prober(hosts) as prober:
        line = run_upgrade(kube, servers, f"bench-r{run}-mu{mu}", image, mu, plan=plan)
        prober.wait_up()
    return {**summary(line), "smtp": prober.report()}


def baseline_run(
    kube: Kube, node: Node, hosts: dict[Key, str], tenant: str, run: int
) -> dict[str, Any]:
    image = f"{tenant}-bench-r{run}-direct"
    node.ctr("images", "tag", "--force", tenant, image)
    print(f"run {run}: baseline, StatefulSets patched straight to {image} ...", flush=True)
    servers = list(hosts)
    replicas = scale_operator(kube, 0)
    try:
        with Prober(hosts) as prober:
            line = run_baseline(kube, servers, image, timeout=900)
            prober.wait_up()
        adopt(kube, servers, image)
    finally:
        scale_operator(kube, replicas)
    return {
        "seconds_total": round(line.ended, 1) if line.ended is not None else None,
        "ready": len(line.ready),
        "smtp": prober.report(),
    }


def run_real(args: argparse.Namespace) -> dict[str, Any]:
    """The real part; the results so far are written to `args.path` after each run."""
    # Stopped by a signal, the finally blocks still stop the cluster and its node.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    mus = [int(x) for x in args.max_unavailable.split(",")]
    refs = build_images("tenant", "backup", "operator")
    results: dict[str, Any] = {"servers": args.servers, "max_unavailable": mus, "runs": []}
    results["images"] = refs
    with tempfile.TemporaryDirectory(prefix="vpes-bench-fleet-real-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster", nodes=0, node=True)
        try:
            start_when_free(cluster, 3600)
            node = cluster.real_node()
            node.import_images(refs.values())
            api = cluster.api_client()
            kube = Kube(api, field_manager="bench")
            values = chart.values(
                refs["operator"],
                refs["tenant"],
                refs["backup"],
                bcrypt_rounds=4,
                dkim_key_bits=1024,
            )
            chart.install(cluster, RELEASE, NAMESPACE, values)
            plan = small_plan(kube)
            ns = make_namespace(client.CoreV1Api(api), SERVERS_NS)
            names = [f"r{i:02d}" for i in range(args.servers)]
            for name in names:
                create_server(kube, ns, name, plan, f"{name}.example")
            for name in names:
                wait_ready(kube, ns, name, timeout=600)
            hosts = {(ns, name): service_ip(kube, ns, name) for name in names}
            for run in range(1, args.runs + 1):
                out: dict[str, Any] = {"run": run, "upgrades": {}}
                for mu in mus:
                    out["upgrades"][str(mu)] = upgrade_run(
                        kube, node, hosts, plan, refs["tenant"], run, mu
                    )
                out["baseline"] = baseline_run(kube, node, hosts, refs["tenant"], run)
                results["runs"].append(out)
                args.path.write_text(json.dumps(results, indent=1))
        finally:
            cluster.stop()
    results["medians"] = real_medians(results["runs"], mus)
    return results


def real_medians(runs: list[dict[str, Any]], mus: list[int]) -> dict[str, Any]:
    def smtp(items: list[dict[str, Any]], key: str) -> float | None:
        return med([x["smtp"][key] for x in items])

    bases = [r["baseline"] for r in runs]
    out: dict[str, Any] = {
        "baseline": {
            "total_s": med([b["seconds_total"] for b in bases]),
            "max_window_s": smtp(bases, "max_window_s"),
            "median_window_s": smtp(bases, "median_window_s"),
        }
    }
    totals = [b["seconds_total"] for b in bases]
    for mu in mus:
        ups = [r["upgrades"][str(mu)] for r in runs]
        out[str(mu)] = {
            **upgrade_medians(ups, totals),
            "max_window_s": smtp(ups, "max_window_s"),
            "median_window_s": smtp(ups, "median_window_s"),
        }
    return out


def table_real(results: dict[str, Any]) -> str:
    m, n = results["medians"], results["servers"]
    rows = [
        f"{n} servers on the real node (the chart's operator, the real gate), medians of "
        f"{len(results['runs'])} runs; SMTP probed through each Service every 100 ms",
        "",
        "| how | waves | all moved (s) | canary wave (s) | later wave, median (s) "
        "| its pods on the image, ready (s) | ratio to baseline "
        "| longest SMTP refusal, max over servers (s) | median over servers (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mu in results["max_unavailable"]:
        x = m[str(mu)]
        rows.append(upgrade_row(mu, x) + f"| {x['max_window_s']} | {x['median_window_s']} |")
    b = m["baseline"]
    rows.append(
        f"| baseline: all {n} StatefulSets patched straight | 1 | {b['total_s']} | - | - | - "
        f"| 1 | {b['max_window_s']} | {b['median_window_s']} |"
    )
    others = sum(
        x["smtp"]["other_replies"]
        for r in results["runs"]
        for x in [*r["upgrades"].values(), r["baseline"]]
    )
    rows += [
        "",
        f"SMTP replies other than a 220 banner (up, but e.g. a 421 rate limit): {others}",
    ]
    return "\n".join(rows)
