"""Benchmark: vpes-web (the client set-up endpoints) with 1 and 1,000 servers.

Real parts only: the dev control plane (etcd, kube-apiserver with RBAC, kwok), vpes-web
as its own process (``python -m vpes_panel.wellknown``, what the ``vpes-web`` entry
point runs) with the chart's web ServiceAccount and RBAC
(``charts/vpes/templates/web-rbac.yaml``: get, list and watch servers and plans),
reached over HTTP on loopback, each request naming its site in the Host header as the
Ingress passes it on. The servers are ``bench/panel_fleet.py``'s (2 domains, 5
mailboxes and a full status each); the owner's mailbox of every second server (10% of
the mailboxes) publishes an OpenPGP key: one key made with gpg in a throwaway home, its
armored text reused for every address (the CRD checks only the armor's first and last
lines, and the directory only dearmors it).

vpes-web watches the servers and plans (an informer: list once, then watch) and
rebuilds its index `hosted_settle_seconds` after a change it reads. In one run:
  1. one server (the baseline), then
  2. 999 more beside it (1,000 servers), created while vpes-web watches (its peak RSS
     over that time: the events and the rebuilds), once the controller-manager is done
     with their namespaces and the newest server's names are served;
  3. a second vpes-web started at 1,000 servers (a restart: its first list), until it
     serves: the seconds and its memory;
at each size:
  - ``--idle-requests`` requests, each after ``--idle-seconds`` (31) without any: the
    request that met a listing when the index was listed every 30 s;
  - interleaved, ``--requests`` times after ``--warmup``: GET autoconfig, POST
    autodiscover, GET mta-sts.txt, GET a WKD key (advanced method), GET autoconfig of
    a domain nobody hosts (404);
  - a domain added to the first server (a merge patch of spec.domains): the seconds
    until it is served, polled one request at a time, and the slowest of those
    requests;
  - the API server's count of server lists during each (its ``apiserver_request_total``:
    none is expected after the first);
  - in the benchmark's process, through the same ServiceAccount: the raw list of every
    server, the index built from it (what vpes-web does after a change), and the
    memory the servers take as listed and as vpes-web keeps them (``slim_server``).
The process's RSS, PSS and peak RSS after start and after each step.

Usage: python -m bench.web [--servers 1000] [--requests 200] [--warmup 20]
       [--listings 10] [--settle-seconds 1] [--idle-requests 3] [--idle-seconds 31]
Prints markdown tables and writes bench/results/web-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import os
import secrets
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from vpes_devcluster.cluster import Cluster
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import install_crds, install_rbac
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_panel import openpgp
from vpes_panel.wellknown.autodiscover import OUTLOOK_SCHEMA
from vpes_panel.wellknown.hosted import build, collection_path, slim_server

from bench import panel_fleet as fleet
from bench.memory import report
from bench.node_proc import mem_total
from bench.panel import settle, summary, timed
from bench.panel_proc import PanelProcess
from bench.web_table import table
from tests.openpgp_keys import gnupg

WEB_NAMESPACE, WEB_SA, WEB_RBAC = "vpes-system", "vpes-web", "templates/web-rbac.yaml"
KIND = "PersonalMailServer"
KEY_EVERY = 2  # every second server's owner publishes a key: 1 of 10 mailboxes
STRANGER = "nobody-hosts-this.example"


@dataclass(frozen=True)
class Probe:
    method: str
    host: str
    path: str
    status: int
    body: bytes = b""
    expect: bytes | None = None  # the exact answer, when it is known
    needle: str = ""  # else text the answer holds


def probes(domain: str, key: bytes) -> dict[str, Probe]:
    """The five requests, for `domain` (its owner publishes `key`)."""
    autodiscover = (
        "<Autodiscover><Request>"
        f"<EMailAddress>owner@{domain}</EMailAddress>"
        f"<AcceptableResponseSchema>{OUTLOOK_SCHEMA}</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    ).encode()
    wkd = f"/.well-known/openpgpkey/{domain}/hu/{openpgp.wkd_hash('owner')}"
    return {
        "GET autoconfig": Probe(
            "GET", f"autoconfig.{domain}", "/mail/config-v1.1.xml", 200, needle=f'"{domain}"'
        ),
        "POST autodiscover": Probe(
            "POST",
            f"autodiscover.{domain}",
            "/autodiscover/autodiscover.xml",
            200,
            autodiscover,
            needle=f">owner@{domain}<",
        ),
        "GET mta-sts.txt": Probe(
            "GET", f"mta-sts.{domain}", "/.well-known/mta-sts.txt", 200, needle="version: STSv1"
        ),
        "GET WKD key (advanced)": Probe("GET", f"openpgpkey.{domain}", wkd, 200, expect=key),
        "GET unhosted domain (404)": Probe(
            "GET", f"autoconfig.{STRANGER}", "/mail/config-v1.1.xml", 404
        ),
    }


def send(client: httpx.Client, p: Probe) -> httpx.Response:
    r = client.request(p.method, p.path, headers={"host": p.host}, content=p.body or None)
    if (
        r.status_code != p.status
        or (p.expect is not None and r.content != p.expect)
        or p.needle not in r.text
    ):
        raise RuntimeError(f"{p.method} {p.host}{p.path} answered {r.status_code}: {r.text[:300]}")
    return r


def pms_lists(cluster: Cluster) -> int:
    """How many lists of PersonalMailServers the API server has answered (its metrics)."""
    total = 0
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="personalmailservers"' in line
            and 'verb="LIST"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


class Web:
    """One vpes-web process and the benchmark's client of it."""

    def __init__(self, kubeconfig: Path, log: Path, settle_seconds: float) -> None:
        env = {"VPES_WEB_HOSTED_SETTLE_SECONDS": str(settle_seconds)}
        self.proc = PanelProcess(kubeconfig, log, env, module="vpes_panel.wellknown")
        self.client: httpx.Client | None = None

    def __enter__(self) -> Web:
        self.proc.start()
        self.client = httpx.Client(base_url=self.proc.url, timeout=60)
        return self

    def __exit__(self, *_: object) -> None:
        if self.client is not None:
            self.client.close()
        self.proc.stop()

    def send(self, p: Probe) -> httpx.Response:
        assert self.client is not None
        return send(self.client, p)

    def served(self, ps: dict[str, Probe], timeout: float = 120.0) -> float:
        """Wait until every probe answers as expected (the index has caught up); the
        seconds it took."""
        t0 = time.monotonic()
        while True:
            try:
                for p in ps.values():
                    self.send(p)
                return time.monotonic() - t0
            except RuntimeError:
                if time.monotonic() - t0 > timeout:
                    raise
                time.sleep(0.05)


def idle(web: Web, cluster: Cluster, p: Probe, args: argparse.Namespace) -> dict[str, Any]:
    """`p` after `--idle-seconds` without a request, `--idle-requests` times."""
    lists, took = pms_lists(cluster), []
    for _ in range(args.idle_requests):
        time.sleep(args.idle_seconds)
        took.append(timed(functools.partial(web.send, p)))
    return {
        "request_ms": [round(t * 1000, 1) for t in took],
        "listings": pms_lists(cluster) - lists,
    }


def interleaved(
    web: Web, cluster: Cluster, ps: dict[str, Probe], args: argparse.Namespace
) -> dict[str, Any]:
    """Every probe in turn, `--warmup` + `--requests` rounds; p50/p95 (and p99, max) of
    each, and how many listings the API server answered meanwhile."""
    samples: dict[str, list[float]] = {k: [] for k in ps}
    lists0, t0 = pms_lists(cluster), time.monotonic()
    for i in range(args.warmup + args.requests):
        for name, p in ps.items():
            took = timed(functools.partial(web.send, p))
            if i >= args.warmup:
                samples[name].append(took)
    out: dict[str, Any] = {}
    for name, v in samples.items():
        ordered = sorted(v)
        out[name] = {
            **summary(v),
            "p99_ms": round(ordered[min(len(v) - 1, round(0.99 * (len(v) - 1)))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2),
        }
    return {
        "probes": out,
        "seconds": round(time.monotonic() - t0, 1),
        "listings": pms_lists(cluster) - lists0,
    }


def domain_added(web: Web, cluster: Cluster, admin: Kube, me: fleet.Customer) -> dict[str, Any]:
    """A domain added to `me`'s server: how long until it is served, the slowest request
    meanwhile (one at a time), the lists the API server answered meanwhile."""
    added = f"added-{secrets.token_hex(4)}.example"
    p = Probe("GET", f"autoconfig.{added}", "/mail/config-v1.1.xml", 200, needle=f'"{added}"')
    lists = pms_lists(cluster)
    admin.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{me.namespace}/personalmailservers/{fleet.SERVER}",
        body={"spec": {"domains": [*me.domains, added]}},
        content_type="application/merge-patch+json",
    )
    t0, slowest, requests = time.monotonic(), 0.0, 0
    while True:
        began = time.perf_counter()
        try:
            web.send(p)
            done = True
        except RuntimeError:
            done = False
        slowest, requests = max(slowest, time.perf_counter() - began), requests + 1
        if done:
            break
        if time.monotonic() - t0 > 60:
            raise RuntimeError(f"{added} was not served within 60 s")
    return {
        "served_after_s": round(time.monotonic() - t0, 2),
        "requests": requests,
        "slowest_ms": round(slowest * 1000, 1),
        "listings": pms_lists(cluster) - lists,
    }


def held(servers: list[dict[str, Any]]) -> dict[str, float]:
    """The memory Python takes for the servers as listed and as vpes-web keeps them
    (parsed from JSON; tracemalloc, KiB)."""

    def size(objects: list[dict[str, Any]]) -> float:
        text = json.dumps(objects)
        tracemalloc.start()
        kept = json.loads(text)
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        return round(used / 1024, 1)

    return {"whole_kib": size(servers), "slim_kib": size([slim_server(s) for s in servers])}


def floor(sa: Kube, n: int) -> dict[str, Any]:
    """In the benchmark's process: the raw list through the web ServiceAccount, the index
    built from the servers as vpes-web keeps them, their memory either way."""
    path = collection_path(KIND)
    listed: list[list[dict[str, Any]]] = []
    raw = [timed(lambda: listed.append(sa.request("GET", path)["items"])) for _ in range(n)]
    servers = listed[-1]
    slim = [slim_server(s) for s in servers]
    index = [timed(lambda: build(slim, [])) for _ in range(n)]
    built = build(slim, [])
    return {
        "servers": len(servers),
        "domains": len(built.domains),
        "keys": len(built.keys),
        "list_bytes": len(json.dumps(servers).encode()),
        "raw_list": summary(raw),
        "build_index": summary(index),
        "held": held(servers),
    }


def measure(
    web: Web,
    cluster: Cluster,
    admin: Kube,
    sa: Kube,
    me: fleet.Customer,
    ps: dict[str, Probe],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One size: requests after idle time, the requests, a domain added, the floor."""
    out: dict[str, Any] = {"idle": idle(web, cluster, ps["GET autoconfig"], args)}
    out["steady"] = interleaved(web, cluster, ps, args)
    out["domain_added"] = domain_added(web, cluster, admin, me)
    out["memory_after_pages"] = web.proc.memory()
    out["floor"] = floor(sa, args.listings)
    return out


def populate(admin: Kube, first: int, last: int, password: str, dkim: str, key: str) -> float:
    """Servers first..last-1 (16 at a time), every `KEY_EVERY`th publishing `key`."""

    def one(i: int) -> None:
        fleet.make(admin, fleet.Customer(i, password), dkim, key if i % KEY_EVERY == 0 else None)

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(first, last)))
    return time.monotonic() - t0


def make_key() -> str:
    """One OpenPGP public key (gpg's default algorithms), armored as the spec stores it."""
    with gnupg() as g:
        g.make("Bench Owner <owner@bench.example>")
        return openpgp.inspect(g.export("owner@bench.example")).armored


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    password, dkim, key = secrets.token_urlsafe(12), fleet.dkim_value(), make_key()
    results: dict[str, Any] = {
        "benchmark": "vpes-web at 1 and N servers",
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "mem_total_mib": round(mem_total() / 2**20)},
        "key_bytes": {"armored": len(key), "binary": len(openpgp.dearmor(key))},
    }
    with Cluster(work / "cluster", nodes=1) as cluster:
        admin = Kube(cluster.api_client(), field_manager="bench")
        install_crds(cluster)
        kubeconfig = install_rbac(cluster, WEB_NAMESPACE, WEB_RBAC, WEB_SA, "web")
        sa = Kube(api_client(kubeconfig), field_manager="bench-web")
        admin.apply(fleet.plan_body())
        me = fleet.Customer(0, password)
        fleet.make(admin, me, dkim, key)
        results["server_bytes"] = len(
            json.dumps(admin.get(API_VERSION, KIND, me.namespace, fleet.SERVER)).encode()
        )
        binary = openpgp.dearmor(key)
        ps = probes(me.domains[0], binary)
        with Web(kubeconfig, work / "web.log", args.settle_seconds) as web:
            results["memory_start"] = web.proc.memory()
            results["first_served_s"] = round(web.served(ps), 2)
            results["memory_synced"] = web.proc.memory()
            print("1 server ...", flush=True)
            results["one"] = measure(web, cluster, admin, sa, me, ps, args)
            print(f"creating {args.servers - 1} more servers ...", flush=True)
            web.proc.reset_peak()
            before = web.proc.memory()
            lists = pms_lists(cluster)
            results["populate_s"] = round(populate(admin, 1, args.servers, password, dkim, key), 1)
            results["settle_s"] = round(settle(admin, args.servers), 1)
            newest = fleet.Customer((args.servers - 1) // KEY_EVERY * KEY_EVERY, password)
            results["caught_up_s"] = round(web.served(probes(newest.domains[0], binary)), 2)
            after = web.proc.memory()
            results["populating"] = {
                "rss_before_mib": before["rss_mib"],
                "peak_rss_mib": after["peak_rss_mib"],
                "transient_mib": round(after["peak_rss_mib"] - before["rss_mib"], 1),
                "retained_mib": round(after["rss_mib"] - before["rss_mib"], 1),
                "listings": pms_lists(cluster) - lists,
            }
            print(f"{args.servers} servers ...", flush=True)
            results["many"] = measure(web, cluster, admin, sa, me, ps, args)
        with Web(kubeconfig, work / "restart.log", args.settle_seconds) as again:
            lists = pms_lists(cluster)
            results["restart"] = {
                "memory_start": again.proc.memory(),
                "served_after_s": round(again.served(ps), 2),
                "memory_synced": again.proc.memory(),
                "listings": pms_lists(cluster) - lists,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--listings", type=int, default=10)
    parser.add_argument("--settle-seconds", type=float, default=1.0)
    parser.add_argument("--idle-requests", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=31.0)
    args = parser.parse_args()
    if args.servers < 2 or args.requests < 1 or args.listings < 1:
        parser.error("--servers needs at least 2, --requests and --listings at least 1")
    with tempfile.TemporaryDirectory(prefix="vpes-bench-web-") as tmp:
        results = run(args, Path(tmp))
    report("web", results, table(results))


if __name__ == "__main__":
    main()
