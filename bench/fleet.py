"""Benchmark: fleet upgrades (issue 18). How long a FleetUpgrade takes to move a fleet
to a new tenant image, wave by wave, next to the same servers' StatefulSets patched
straight to a new image (what a fleet admin would do by hand: no waves, no gate).

kwok part (the default): N servers (100) on the real control plane with kwok nodes,
made by the operator. Each run, for each maxUnavailable (10 and 25 servers): one
FleetUpgrade (canary 1) run by the operator's own timer (its default tick, 10 s, unless
--tick) to a new image, timed per wave and in all; then the baseline: the operator
stopped, every StatefulSet's mail container patched to a new image (16 at a time),
timed until every pod runs it ready; then the servers annotated with that image and
the operator started again (not timed). Medians over --runs runs, and the ratio
upgrade / baseline per run. The gate on kwok: its pod half is the real one (the pod
runs the image, ready: kwok marks a pod Running and Ready once the StatefulSet
controller recreated it), its SMTP/IMAP half answers at once (bench/fleet_gate.py: no
daemon runs on kwok).

Real part (--real; needs root, the images and the real node; bench/fleet_real.py): 10
servers on the real node under the chart's operator, the real gate, and a prober
connecting to each server's SMTP port through its Service every 100 ms: the longest
window in which each server refused or timed out, next to the same baseline.

    python -m bench.fleet [--servers 100] [--runs 3] [--max-unavailable 10,25] [--tick S]
    python -m bench.fleet --real [--servers 10] [--max-unavailable 3,9]

Prints markdown tables; writes bench/results/fleet-<time>.json (fleet-real-... for --real).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vpes_devcluster.cluster import Cluster
from vpes_operator import API_VERSION, naming
from vpes_operator.builders.workload import MAIL_CONTAINER
from vpes_operator.clients.kube import Kube

from bench.fleet_watch import Key, Timeline, summary, watch_rollout, watch_upgrade
from bench.reconcile import free_port, metric, reconciles, wait_metrics, watch_ready
from tests.integration.operator_support import (
    OPERATOR_LOG_DIRS,
    REPO,
    OperatorProcess,
    install_platform,
    plan_body,
)

PLAN = "fleet"
NAMESPACES = 10
REGISTRY = "registry.test/vpes-tenant"
WORKERS = 16
GATE_NOTE = (
    "gate on kwok: the pod half is the operator's own (pod on the image, ready); "
    "the SMTP/IMAP half answers at once (no daemon runs on kwok)"
)


class GatedOperator(OperatorProcess):
    """The operator as `python -m bench.fleet_gate` (the gate's SMTP/IMAP half given)."""

    def start(self) -> None:
        OPERATOR_LOG_DIRS.add(self.log_dir)
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet_gate", "--liveness", "", *self.args],
            env=self.env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def server_spec(i: int) -> dict[str, Any]:
    return {
        "plan": PLAN,
        "owner": {"email": f"owner{i}@example.net"},
        "domains": [f"f{i}.example"],
        "mailboxes": [{"address": f"me@f{i}.example"}],
    }


def make_servers(kube: Kube, n: int) -> list[Key]:
    """N servers over the namespaces, created 16 at a time, until all are Ready."""
    keys = [(f"bench-fleet-{i % NAMESPACES}", f"f{i:03d}") for i in range(n)]
    created: dict[str, float] = {}

    def create(i: int) -> None:
        ns, name = keys[i]
        created[name] = time.monotonic()
        kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {"name": name, "namespace": ns},
                "spec": server_spec(i),
            }
        )

    with cf.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(create, range(n)))
    ready = watch_ready(kube, "f", n, created, timeout=900)
    if len(ready) < n:
        raise SystemExit(f"only {len(ready)} of {n} servers became Ready in 15 minutes")
    return keys


def run_upgrade(
    kube: Kube,
    servers: list[Key],
    name: str,
    image: str,
    max_unavailable: int,
    plan: str = PLAN,
) -> Timeline:
    kube.create(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": {
                "image": image,
                "plans": [plan],
                "canary": 1,
                "maxUnavailable": max_unavailable,
                "healthTimeoutSeconds": 600,
            },
        }
    )
    line = watch_upgrade(kube, name, image, servers, timeout=1800)
    kube.delete(API_VERSION, "FleetUpgrade", None, name)
    return line


def patch_image(kube: Kube, key: Key, image: str) -> None:
    """The StatefulSet's mail container on `image` (a strategic merge patch: by name)."""
    ns, server = key
    kube.request(
        "PATCH",
        kube.resource("apps/v1", "StatefulSet").path(ns, naming.statefulset(server)),
        body={
            "spec": {
                "template": {"spec": {"containers": [{"name": MAIL_CONTAINER, "image": image}]}}
            }
        },
        content_type="application/strategic-merge-patch+json",
    )


def run_baseline(kube: Kube, servers: list[Key], image: str, timeout: float) -> Timeline:
    """Every StatefulSet patched straight (the operator stopped), until every pod runs it."""
    line = Timeline()
    with cf.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda key: patch_image(kube, key, image), servers))
    watch_rollout(kube, line, servers, image, timeout)
    return line


def adopt(kube: Kube, servers: list[Key], image: str) -> None:
    """The servers' own image set to what the baseline rolled out, so the operator,
    started again, keeps their StatefulSets as they are."""
    with cf.ThreadPoolExecutor(WORKERS) as pool:
        list(
            pool.map(
                lambda key: kube.patch_metadata(
                    API_VERSION,
                    "PersonalMailServer",
                    key[0],
                    key[1],
                    {"annotations": {naming.ANNOTATION_TENANT_IMAGE: image}},
                ),
                servers,
            )
        )


def wait_reconciled(port: int, n: int, timeout: float = 600) -> None:
    """After a start: every server reconciled once and none waiting for a handler."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if reconciles(port) >= n and metric(port, "vpes_servers_waiting") == 0:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise SystemExit(f"the operator did not reconcile the {n} servers within {timeout:.0f}s")


def one_run(
    kube: Kube, op: OperatorProcess, port: int, servers: list[Key], run: int, mus: list[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {"run": run, "upgrades": {}}
    for mu in mus:
        image = f"{REGISTRY}:r{run}-mu{mu}"
        print(f"run {run}: FleetUpgrade to {image}, canary 1, maxUnavailable {mu} ...", flush=True)
        line = run_upgrade(kube, servers, f"bench-r{run}-mu{mu}", image, mu)
        out["upgrades"][str(mu)] = summary(line)
        print(json.dumps({k: v for k, v in summary(line).items() if k != "per_wave"}), flush=True)
    image = f"{REGISTRY}:r{run}-direct"
    print(f"run {run}: baseline, StatefulSets patched straight to {image} ...", flush=True)
    op.stop()
    line = run_baseline(kube, servers, image, timeout=1800)
    out["baseline"] = {
        "seconds_total": round(line.ended, 1) if line.ended is not None else None,
        "ready": len(line.ready),
        "p50_s": round(statistics.median(line.ready.values()), 1) if line.ready else None,
    }
    print(json.dumps(out["baseline"]), flush=True)
    adopt(kube, servers, image)
    op.start()
    wait_reconciled(port, len(servers))
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def med(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def upgrade_medians(ups: list[dict[str, Any]], base: list[float | None]) -> dict[str, Any]:
    """One way of upgrading over the runs: medians, and each run's ratio to its own
    baseline (`base`, the runs' baseline totals in order)."""
    return {
        "total_s": med([u["seconds_total"] for u in ups]),
        "waves": ups[0]["waves"],
        "canary_wave_s": med([u["canary_wave_s"] for u in ups]),
        "wave_median_s": med([u["wave_median_s"] for u in ups]),
        "rollout_median_s": med([u["rollout_median_s"] for u in ups]),
        "ratio_to_baseline": med(
            [ratio(u["seconds_total"], b) for u, b in zip(ups, base, strict=True)]
        ),
        "phases": sorted({str(u["phase"]) for u in ups}),
    }


def upgrade_row(mu: int, x: dict[str, Any]) -> str:
    """The table row of one way of upgrading, up to its ratio (the closing `|` is the
    caller's, which may add columns)."""
    return (
        f"| FleetUpgrade, canary 1, maxUnavailable {mu} | {x['waves']} | {x['total_s']} "
        f"| {x['canary_wave_s']} | {x['wave_median_s']} | {x['rollout_median_s']} "
        f"| {x['ratio_to_baseline']} "
    )


def medians(runs: list[dict[str, Any]], mus: list[int]) -> dict[str, Any]:
    base = [r["baseline"]["seconds_total"] for r in runs]
    out: dict[str, Any] = {"baseline_total_s": med(base)}
    for mu in mus:
        out[str(mu)] = upgrade_medians([r["upgrades"][str(mu)] for r in runs], base)
    return out


def table(results: dict[str, Any]) -> str:
    m, n = results["medians"], results["servers"]
    rows = [
        f"{n} servers (kwok), medians of {len(results['runs'])} runs; "
        f"operator fleet tick {results['tick']}; {GATE_NOTE}",
        "",
        "| how | waves | all moved (s) | canary wave (s) | later wave, median (s) "
        "| its pods on the image, ready (s) | ratio to baseline (median of runs) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows += [upgrade_row(mu, m[str(mu)]) + "|" for mu in results["max_unavailable"]]
    rows.append(
        f"| baseline: all {n} StatefulSets patched straight | 1 | {m['baseline_total_s']} "
        "| - | - | - | 1 |"
    )
    return "\n".join(rows)


def run_kwok(args: argparse.Namespace) -> dict[str, Any]:
    mus = [int(x) for x in args.max_unavailable.split(",")]
    env = {"VPES_TENANT_IMAGE": f"{REGISTRY}:0"}
    if args.tick:
        env["VPES_FLEET_TICK"] = str(args.tick)
    results: dict[str, Any] = {
        "servers": args.servers,
        "max_unavailable": mus,
        "tick": f"{args.tick} s" if args.tick else "10 s (default)",
        "gate": GATE_NOTE,
        "runs": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="vpes-bench-fleet-") as tmp,
        Cluster(Path(tmp) / "cluster", nodes=2) as cluster,
    ):
        kube = Kube(cluster.api_client(), field_manager="bench")
        kubeconfig = install_platform(cluster)
        kube.apply(plan_body(PLAN))
        for i in range(NAMESPACES):
            kube.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-fleet-{i}"}}
            )
        port = free_port()
        op = GatedOperator(
            kubeconfig, Path(tmp) / "operator", extra_env=env, args=["--metrics-port", str(port)]
        )
        op.start()
        try:
            wait_metrics(port)
            print(f"creating {args.servers} servers ...", flush=True)
            servers = make_servers(kube, args.servers)
            for run in range(1, args.runs + 1):
                results["runs"].append(one_run(kube, op, port, servers, run, mus))
        finally:
            op.stop()
    results["medians"] = medians(results["runs"], mus)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", action="store_true", help="the real-node part (the lead's)")
    parser.add_argument("--servers", type=int, help="100 on kwok, 10 on the real node")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-unavailable", help="servers per later wave (10,25; real: 3,9)")
    parser.add_argument("--tick", type=float, help="the operator's fleet tick, kwok part only")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "fleet-real" if args.real else "fleet"
    args.path = path = args.out / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    if args.real:
        from bench.fleet_real import run_real, table_real

        args.servers = args.servers or 10
        args.max_unavailable = args.max_unavailable or "3,9"
        results, text = run_real(args), table_real
    else:
        args.servers = args.servers or 100
        args.max_unavailable = args.max_unavailable or "10,25"
        results, text = run_kwok(args), table
    path.write_text(json.dumps(results, indent=1))
    print(text(results))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
