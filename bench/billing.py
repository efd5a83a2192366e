"""Benchmark: a signed checkout.session.completed → the customer's server Ready.

Real parts only: the control plane with kwok nodes, the operator (subprocess,
the chart's ServiceAccount), stripe-mock, and the billing service itself as a
subprocess (`python -m vpes_billing`, uvicorn, the chart's billing ServiceAccount
and admission policy, started by `vpes_devcluster.billing_dev.start_billing`) reached
over HTTP on loopback. For each customer it measures the webhook's response
time and the time from sending the event to the PersonalMailServer's Ready
condition (its pod Running on a kwok node); first one customer at a time, then
a burst of concurrent checkouts.

Usage: python -m bench.billing [--sequential 10] [--burst 20] [--out bench/results]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from vpes_billing import naming as n
from vpes_devcluster.billing_dev import (
    BillingDev,
    BillingOptions,
    checkout_session,
    event,
    sign,
    start_billing,
)
from vpes_devcluster.billing_rbac import install_billing
from vpes_devcluster.cluster import Cluster
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from bench.stats import pct
from tests.integration.operator_support import OperatorProcess, install_platform, plan_body

SECRET = "whsec_bench_" + "b" * 20
PRICE = "price_bench"
PLAN = "bench-billing"


def ready(kube: Kube, sub: str) -> bool:
    obj = kube.get(API_VERSION, "PersonalMailServer", n.namespace_for(sub), n.SERVER_NAME)
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c.get("type") == "Ready" and c.get("status") == "True":
            pods = kube.list("v1", "Pod", n.namespace_for(sub), labels="vpes.io/server=mail")
            return any(p.get("status", {}).get("phase") == "Running" for p in pods)
    return False


def one(client: httpx.Client, kube: Kube, timeout: float = 180.0) -> dict[str, float]:
    tag = secrets.token_hex(6)
    sub = f"sub_{tag}"
    body = json.dumps(
        event(
            "checkout.session.completed",
            checkout_session(
                session=f"cs_test_{tag}",
                customer=f"cus_{tag}",
                subscription=sub,
                email=f"o{tag}@example.net",
                domain=f"b{tag}.example",
                mailbox="me",
                plan=PLAN,
            ),
        )
    ).encode()
    start = time.monotonic()
    r = client.post(
        "/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body, SECRET)}
    )
    webhook = time.monotonic() - start
    if r.status_code != 200 or r.json().get("outcome") != "done":
        raise RuntimeError(f"webhook answered {r.status_code}: {r.text}")
    deadline = start + timeout
    while not ready(kube, sub):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sub} not Ready within {timeout}s")
        time.sleep(0.05)
    return {"webhook_s": webhook, "ready_s": time.monotonic() - start}


def summary(samples: list[dict[str, float]], wall: float) -> dict[str, Any]:
    w = [s["webhook_s"] for s in samples]
    r = [s["ready_s"] for s in samples]
    return {
        "n": len(samples),
        "webhook_p50_s": round(pct(w, 50), 3),
        "webhook_p95_s": round(pct(w, 95), 3),
        "ready_p50_s": round(pct(r, 50), 3),
        "ready_p95_s": round(pct(r, 95), 3),
        "ready_max_s": round(max(r), 3),
        "wall_s": round(wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    results: dict[str, Any] = {"benchmark": "billing checkout → Ready"}
    with tempfile.TemporaryDirectory(prefix="vpes-bench-billing-") as tmp:
        work = Path(tmp)
        cluster = Cluster(work / "cluster", nodes=2)
        cluster.start()
        operator: OperatorProcess | None = None
        billing: BillingDev | None = None
        try:
            kube = Kube(cluster.api_client(), field_manager="bench")
            operator = OperatorProcess(install_platform(cluster), work / "operator")
            operator.start()
            kube.apply(plan_body(PLAN, stripePriceId=PRICE))
            billing = start_billing(
                install_billing(cluster),
                work / "billing",
                BillingOptions(
                    price=PRICE,
                    customer="cus_bench",
                    webhook_secret=SECRET,
                    settings_env={"VPES_BILLING_SWEEP_SECONDS": "0"},
                ),
            )
            with httpx.Client(base_url=billing.url, timeout=60) as client:
                one(client, kube)  # warm-up: first plan read, first namespace
                t0 = time.monotonic()
                seq = [one(client, kube) for _ in range(args.sequential)]
                results["sequential"] = summary(seq, time.monotonic() - t0)
                print(json.dumps({"sequential": results["sequential"]}), flush=True)
                t0 = time.monotonic()
                with cf.ThreadPoolExecutor(max_workers=args.burst) as pool:
                    burst = list(pool.map(lambda _: one(client, kube), range(args.burst)))
                results["burst"] = summary(burst, time.monotonic() - t0)
                print(json.dumps({"burst": results["burst"]}), flush=True)
        finally:
            if billing is not None:
                billing.stop()
            if operator is not None:
                operator.stop()
            cluster.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"billing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"results: {path}")


def table(results: dict[str, Any]) -> str:
    head = (
        f"{'run':<11}{'n':>4}{'webhook p50':>13}{'p95':>8}{'Ready p50':>11}{'p95':>8}"
        f"{'max':>8}{'wall':>8}"
    )
    lines = [head, "-" * len(head)]
    for name in ("sequential", "burst"):
        r = results.get(name)
        if r:
            lines.append(
                f"{name:<11}{r['n']:>4}{r['webhook_p50_s']:>12.3f}s{r['webhook_p95_s']:>7.3f}s"
                f"{r['ready_p50_s']:>10.3f}s{r['ready_p95_s']:>7.3f}s{r['ready_max_s']:>7.3f}s"
                f"{r['wall_s']:>7.2f}s"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
