"""Benchmark: the customer panel's page times and memory with 1 and 1,000 servers.

Real parts only: the dev control plane (etcd, kube-apiserver with RBAC, kwok), the
panel as its own process (``python -m vpes_panel``, uvicorn) with the chart's panel
ServiceAccount and RBAC (``charts/vpes/templates/panel-rbac.yaml``), reached over HTTP
on loopback by one logged-in customer (logged in through POST /login). Every
customer read of the panel is impersonated (the namespace's ``vpes-customer``), so the
API server's authorization is in every figure. The operator does not run: the
benchmark makes what it would have made (``bench/panel_fleet.py``: a realistic server
with its status, the per-namespace RBAC, the ``vpes-logins`` hashes).

In one run, side by side:
  1. one server in the cluster (the customer's own; the baseline), then
  2. 999 more customers created beside it (1,000 servers), once the
     controller-manager is done with their namespaces,
and at each size, interleaved, ``--requests`` times after ``--warmup``:
  - GET /, /domains, /domains/<domain> (its DNS records) and /mailboxes (the
    overview and the administrator's domain and mailbox pages);
  - the floor the pages add to, through the same ServiceAccount from the benchmark's
    process: the raw impersonated GET of the server object, and the four API reads a
    page makes (its session check: the server and ``vpes-logins``; its load: the
    server and the plan);
then ``--logins`` logins of the customer (address known to the panel's directory),
``--logins`` logins of addresses no server has (each lists every server: the
directory is configured to list again on every miss, its worst case; then a cost-10
bcrypt check keeps the answer as slow as a wrong password), and the raw list of every
server through the panel's ServiceAccount (the directory's floor); last, ``--burst``
unknown-address logins at once (each lists every server: the directory does not
share one listing between concurrent misses). The panel process's RSS, PSS and peak
RSS after start and after each step.

Usage: python -m bench.panel [--servers 1000] [--requests 200] [--warmup 20]
       [--logins 20] [--burst 8]
Prints markdown tables and writes bench/results/panel-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from vpes_devcluster.cluster import Cluster
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import install_crds, install_rbac
from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import Kube
from vpes_panel.settings import CUSTOMER_SA, LOGINS_SECRET

from bench import panel_fleet as fleet
from bench.memory import report
from bench.node_proc import mem_total
from bench.panel_proc import PanelProcess
from bench.stats import pct
from tests import panel_web

PAGES = ("/", "/domains", "/domains/{domain}", "/mailboxes")
PANEL_RBAC = "templates/panel-rbac.yaml"
KIND = "PersonalMailServer"


def timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p95_ms": round(pct(samples, 95) * 1000, 2),
    }


def get_page(client: httpx.Client, path: str) -> httpx.Response:
    r = client.get(path)
    if r.status_code != 200:
        raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:300]}")
    return r


def check_pages(client: httpx.Client, c: fleet.Customer) -> dict[str, int]:
    """Each page rendered in full for this customer (its domains, mailboxes, verdicts,
    use); returns each page's size in bytes."""
    wanted = {
        "/": [
            "Is my server healthy",
            "Recipients in the last hour: <strong>14",
            "GiB used of 10.0 GiB",
        ],
        "/domains": [*c.domains, " published<", " missing<"],
        f"/domains/{c.domains[1]}": ["_submissions._tcp", "Missing: not published yet"],
        "/mailboxes": [*c.addresses, "812.0 MiB", "1.4 GiB"],
    }
    sizes = {}
    for path, needles in wanted.items():
        text = get_page(client, path).text
        missing = [n for n in needles if n not in text]
        if missing:
            body = text[text.find("<main") :][:3000]
            raise RuntimeError(f"GET {path} does not show {missing}:\n{body}")
        sizes[path.replace(c.domains[1], "{domain}")] = len(text.encode())
    return sizes


def login_time(url: str, address: str, password: str, expect: int) -> float:
    with panel_web.client(url) as c:
        csrf = panel_web.token(c.get("/login").text)
        t0 = time.perf_counter()
        r = c.post("/login", data={"address": address, "password": password, "csrf": csrf})
        took = time.perf_counter() - t0
    if r.status_code != expect:
        raise RuntimeError(f"login of {address} answered {r.status_code}, not {expect}")
    return took


def measure(
    panel: PanelProcess, sa: Kube, c: fleet.Customer, args: argparse.Namespace
) -> dict[str, Any]:
    """One size: the pages and their floors interleaved, then logins and listings."""
    as_customer = sa.impersonate(f"system:serviceaccount:{c.namespace}:{CUSTOMER_SA}")

    def server() -> None:
        assert as_customer.get(API_VERSION, KIND, c.namespace, fleet.SERVER) is not None

    def page_reads() -> None:  # what the session check and `shared.load` read
        server()
        as_customer.get("v1", "Secret", c.namespace, LOGINS_SECRET)
        server()
        sa.get(API_VERSION, "MailPlan", None, fleet.PLAN)

    out: dict[str, Any] = {
        "login_known": summary(
            [login_time(panel.url, c.owner, c.password, 303) for _ in range(args.logins)]
        )
    }
    client = panel_web.login(panel.url, c.owner, c.password)
    try:
        out["page_bytes"] = check_pages(client, c)
        probes: dict[str, Callable[[], object]] = {
            **{
                f"GET {p}": functools.partial(get_page, client, p.format(domain=c.domains[1]))
                for p in PAGES
            },
            "API: the page's 4 reads": page_reads,
            "API: GET of the server": server,
        }
        samples: dict[str, list[float]] = {k: [] for k in probes}
        for i in range(args.warmup + args.requests):
            for name, probe in probes.items():
                took = timed(probe)
                if i >= args.warmup:
                    samples[name].append(took)
    finally:
        client.close()
    out["probes"] = {k: summary(v) for k, v in samples.items()}
    out["memory_after_pages"] = panel.memory()
    out["login_unknown"] = summary([unknown_login(panel.url) for _ in range(args.logins)])
    listed: list[int] = []
    out["list_servers"] = summary(
        [timed(lambda: listed.append(len(sa.list(API_VERSION, KIND)))) for _ in range(args.logins)]
    )
    out["servers_listed"] = listed[-1]
    out["memory_after_logins"] = panel.memory()
    out["burst"] = burst(panel.url, args.burst)
    out["memory_after_burst"] = panel.memory()
    return out


def settle(admin: Kube, namespaces: int, timeout: float = 180.0) -> float:
    """Wait until the controller-manager has given every customer namespace its default
    ServiceAccount and kube-root-ca.crt (its work on new namespaces would otherwise run
    during the measurements); the seconds it took."""
    t0 = time.monotonic()

    def count(kind: str, name: str) -> int:
        found = admin.list("v1", kind, fields=f"metadata.name={name}")
        return sum(1 for o in found if o["metadata"]["namespace"].startswith("bp-"))

    while count("ServiceAccount", "default") < namespaces or (
        count("ConfigMap", "kube-root-ca.crt") < namespaces
    ):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the controller-manager did not finish the new namespaces")
        time.sleep(0.5)
    return time.monotonic() - t0


def unknown_login(url: str) -> float:
    return login_time(url, f"nobody{secrets.token_hex(4)}@nowhere.example", "x" * 12, 401)


def burst(url: str, k: int) -> dict[str, Any]:
    """`k` logins of unknown addresses at once: each lists every server, in parallel."""
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(k) as pool:
        took = list(pool.map(lambda _: unknown_login(url), range(k)))
    return {
        "logins": k,
        "wall_ms": round((time.perf_counter() - t0) * 1000, 1),
        "max_ms": round(max(took) * 1000, 1),
    }


def populate(admin: Kube, first: int, last: int, password: str, dkim: str) -> float:
    """Customers first..last-1 (16 at a time); the seconds it took."""
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: fleet.make(admin, fleet.Customer(i, password), dkim), range(first, last)
            )
        )
    return time.monotonic() - t0


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    password = secrets.token_urlsafe(12)
    dkim = fleet.dkim_value()
    bcrypt10 = crypto.hash_password(secrets.token_urlsafe(12), 10)
    results: dict[str, Any] = {
        "benchmark": "panel pages at 1 and N servers",
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "mem_total_mib": round(mem_total() / 2**20)},
    }
    with Cluster(work / "cluster", nodes=1) as cluster:
        admin = Kube(cluster.api_client(), field_manager="bench")
        install_crds(cluster)
        kubeconfig = install_rbac(
            cluster, fleet.PANEL_NAMESPACE, PANEL_RBAC, fleet.PANEL_SA, "panel"
        )
        sa = Kube(api_client(kubeconfig), field_manager="bench-panel")
        admin.apply(fleet.plan_body())
        me = fleet.Customer(0, password)
        fleet.make(admin, me, dkim)
        results["server_bytes"] = len(
            json.dumps(admin.get(API_VERSION, KIND, me.namespace, fleet.SERVER)).encode()
        )
        panel = PanelProcess(
            kubeconfig,
            work / "panel.log",
            {"VPES_PANEL_LOGIN_BURST": "100000", "VPES_PANEL_DIRECTORY_SECONDS": "0"},
        )
        panel.start()
        try:
            results["memory_start"] = panel.memory()
            print("1 server ...", flush=True)
            results["one"] = measure(panel, sa, me, args)
            print(f"creating {args.servers - 1} more customers ...", flush=True)
            results["populate_s"] = round(populate(admin, 1, args.servers, password, dkim), 1)
            results["settle_s"] = round(settle(admin, args.servers), 1)
            print(f"{args.servers} servers ...", flush=True)
            results["many"] = measure(panel, sa, me, args)
        finally:
            panel.stop()
    results["bcrypt10_ms"] = round(
        statistics.median(timed(lambda: crypto.verify_password("x", bcrypt10)) for _ in range(5))
        * 1000,
        1,
    )
    return results


def table(r: dict[str, Any]) -> str:
    one, many, n = r["one"], r["many"], r["args"]["servers"]
    rows = [
        f"| request | 1 server p50 | p95 | {n:,} servers p50 | p95 | {n:,}/1 p50 | {n:,}/1 p95 "
        f"| over the server's GET, p50 ({n:,}) | over the page's 4 reads, p50 ({n:,}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    get = many["probes"]["API: GET of the server"]["p50_ms"]
    reads = many["probes"]["API: the page's 4 reads"]["p50_ms"]

    def row(name: str, a: dict[str, Any], b: dict[str, Any], floors: bool = True) -> str:
        over = (
            f"{round(b['p50_ms'] / get, 1)}x | {round(b['p50_ms'] / reads, 2)}x" if floors else " |"
        )
        return (
            f"| {name} | {a['p50_ms']} ms | {a['p95_ms']} ms | {b['p50_ms']} ms "
            f"| {b['p95_ms']} ms | {round(b['p50_ms'] / a['p50_ms'], 2)} "
            f"| {round(b['p95_ms'] / a['p95_ms'], 2)} | {over} |"
        )

    for name in one["probes"]:
        rows.append(row(name, one["probes"][name], many["probes"][name]))
    b1, bn = one["burst"], many["burst"]
    burst_row = (
        f"| {b1['logins']} unknown-address logins at once: all answered | {b1['wall_ms']} ms "
        f"| | {bn['wall_ms']} ms | | {round(bn['wall_ms'] / b1['wall_ms'], 2)} | | | |"
    )
    for name, key in [
        ("POST /login (address in the directory)", "login_known"),
        ("POST /login (unknown address: lists every server)", "login_unknown"),
        (
            f"API: list every server ({one['servers_listed']:,} / {many['servers_listed']:,})",
            "list_servers",
        ),
    ]:
        rows.append(row(name, one[key], many[key], floors=False))
    rows.append(burst_row)
    mem = [
        "| panel process (python -m vpes_panel) | RSS | PSS | PSS anon | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, m in [
        ("after start", r["memory_start"]),
        ("1 server: after the page requests", one["memory_after_pages"]),
        ("1 server: after the logins and listings", one["memory_after_logins"]),
        (f"{n:,} servers: after the page requests", many["memory_after_pages"]),
        (f"{n:,} servers: after the logins and listings", many["memory_after_logins"]),
        (
            f"{n:,} servers: after {many['burst']['logins']} unknown-address logins at once",
            many["memory_after_burst"],
        ),
    ]:
        mem.append(
            f"| {label} | {m['rss_mib']} MiB | {m['pss_mib']} MiB | {m['pss_anon_mib']} MiB "
            f"| {m['peak_rss_mib']} MiB |"
        )
    pages = ", ".join(f"{p} {b:,} B" for p, b in many["page_bytes"].items())
    args = r["args"]
    notes = [
        f"{args['requests']} requests of each after {args['warmup']} of warm-up, one client, "
        f"interleaved; {args['logins']} logins and listings of each kind. The 1-server "
        f"figures are taken first, then {n - 1:,} customers are created beside it "
        f"({r['populate_s']} s, and {r['settle_s']} s until the controller-manager was "
        "done with their namespaces).",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['mem_total_mib']:,} MiB, shared by "
        "the control plane, the panel and the benchmark's client.",
        f"Pages: {pages}; one server object {r['server_bytes']:,} B (JSON); a cost-10 "
        f"bcrypt check (an unknown address's) {r['bcrypt10_ms']} ms.",
    ]
    return "\n".join([*rows, "", *mem, "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--burst", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpes-bench-panel-") as tmp:
        results = run(args, Path(tmp))
    report("panel", results, table(results))


if __name__ == "__main__":
    main()
