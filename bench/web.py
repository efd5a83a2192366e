"""Benchmark: vpes-web (the client set-up endpoints) with 1 and 1,000 servers.

Real parts only: the dev control plane (etcd, kube-apiserver with RBAC, kwok), vpes-web
as its own process (``python -m vpes_panel.wellknown``, what the ``vpes-web`` entry
point runs) with the chart's web ServiceAccount and RBAC
(``charts/vpes/templates/web-rbac.yaml``: list servers, nothing else), reached over HTTP
on loopback, each request naming its site in the Host header as the Ingress passes it
on. The servers are ``bench/panel_fleet.py``'s (2 domains, 5 mailboxes and a full status
each); the owner's mailbox of every second server (10% of the mailboxes) publishes an
OpenPGP key: one key made with gpg in a throwaway home, its armored text reused for
every address (the CRD checks only the armor's first and last lines, and the
directory only dearmors it).

In one run, side by side:
  1. one server (the baseline), then
  2. 999 more beside it (1,000 servers), once the controller-manager is done with
     their namespaces;
at each size, in the service as the chart runs it (``hosted_seconds`` 30):
  - one full listing of the servers, forced (the first request after the index
    expired): that request's time and the process's peak RSS over its RSS before it
    (the peak is reset just before: the listing's transient memory);
  - interleaved, ``--requests`` times after ``--warmup``: GET autoconfig, POST
    autodiscover, GET mta-sts.txt, GET a WKD key (advanced method), GET autoconfig of
    a domain nobody hosts (404); the API server's count of server listings during
    them (its ``apiserver_request_total``);
  - the listing's floor, from the benchmark's process through the same
    ServiceAccount: the raw list of every server, and building the index from it
    (hosted domains and published keys: what vpes-web does after the list);
then the same requests, for at least ``--relist-for`` seconds (15), to a second
vpes-web listing again every ``--relist-seconds`` (1), so that requests meet listings
(one client, one request at a time: a request that finds the index expired lists,
and any request arriving meanwhile waits for that listing). The processes' RSS, PSS and
peak RSS after start and after each step.

Usage: python -m bench.web [--servers 1000] [--requests 200] [--warmup 20]
       [--listings 10] [--hosted-seconds 30] [--relist-seconds 1] [--relist-for 15]
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
from vpes_panel.wellknown.hosted import domains_of, servers_of

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
    """One vpes-web process, the benchmark's client of it, and when it last listed."""

    def __init__(self, kubeconfig: Path, log: Path, hosted_seconds: float) -> None:
        env = {"VPES_WEB_HOSTED_SECONDS": str(hosted_seconds)}
        self.proc = PanelProcess(kubeconfig, log, env, module="vpes_panel.wellknown")
        self.ttl = hosted_seconds
        self.last_request = 0.0
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
        try:
            return send(self.client, p)
        finally:
            self.last_request = time.monotonic()

    def forced_listing(self, cluster: Cluster, p: Probe) -> dict[str, Any]:
        """Once the index has expired (no request for `ttl`: none could have listed),
        `p`'s request, which lists every server: its time and the memory the listing
        took while it ran (peak RSS over the RSS before)."""
        time.sleep(max(0.0, self.last_request + self.ttl + 0.5 - time.monotonic()))
        lists = pms_lists(cluster)
        self.proc.reset_peak()
        before = self.proc.memory()
        took = timed(functools.partial(self.send, p))
        after = self.proc.memory()
        if pms_lists(cluster) - lists != 1:
            raise RuntimeError("the forced request did not list the servers exactly once")
        return {
            "request_ms": round(took * 1000, 1),
            "rss_before_mib": before["rss_mib"],
            "peak_rss_mib": after["peak_rss_mib"],
            "transient_mib": round(after["peak_rss_mib"] - before["rss_mib"], 1),
            "retained_mib": round(after["rss_mib"] - before["rss_mib"], 1),
        }


def interleaved(
    web: Web,
    cluster: Cluster,
    ps: dict[str, Probe],
    args: argparse.Namespace,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """Every probe in turn, `--warmup` + `--requests` rounds, and more until `seconds`
    have passed; p50/p95 (and p99, max) of each, and how many listings the API server
    answered meanwhile."""
    samples: dict[str, list[float]] = {k: [] for k in ps}
    lists0, t0 = pms_lists(cluster), time.monotonic()
    i = 0
    while i < args.warmup + args.requests or time.monotonic() - t0 < seconds:
        for name, p in ps.items():
            took = timed(functools.partial(web.send, p))
            if i >= args.warmup:
                samples[name].append(took)
        i += 1
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


def floor(sa: Kube, n: int) -> dict[str, Any]:
    """The listing's parts in the benchmark's process: the raw list through the web
    ServiceAccount, then the index built from it (domains and published keys)."""
    listed: list[list[dict[str, Any]]] = []
    raw = [timed(lambda: listed.append(list(servers_of(sa)()))) for _ in range(n)]
    servers = listed[-1]
    index = [
        timed(lambda: (domains_of(servers), openpgp.published_keys(servers))) for _ in range(n)
    ]
    return {
        "servers": len(servers),
        "domains": len(domains_of(servers)),
        "keys": len(openpgp.published_keys(servers)),
        "list_bytes": len(json.dumps(servers).encode()),
        "raw_list": summary(raw),
        "build_index": summary(index),
    }


def measure(
    web: Web,
    relist: Web,
    cluster: Cluster,
    sa: Kube,
    ps: dict[str, Probe],
    last: dict[str, Probe],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One size: a forced listing, the requests, the floor; then the requests again to
    the process that lists every `--relist-seconds`."""
    out: dict[str, Any] = {"listing": web.forced_listing(cluster, ps["GET autoconfig"])}
    for p in last.values():  # the newest server's names, key included: all were listed
        web.send(p)
    out["steady"] = interleaved(web, cluster, ps, args)
    out["memory_after_pages"] = web.proc.memory()
    out["floor"] = floor(sa, args.listings)
    out["relisting"] = interleaved(relist, cluster, ps, args, args.relist_for)
    out["relisting_memory"] = relist.proc.memory()
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
        with (
            Web(kubeconfig, work / "web.log", args.hosted_seconds) as web,
            Web(kubeconfig, work / "relist.log", args.relist_seconds) as relist,
        ):
            results["memory_start"] = web.proc.memory()
            results["relist_memory_start"] = relist.proc.memory()
            web.send(ps["GET autoconfig"])  # its first listing, and the imports it makes
            print("1 server ...", flush=True)
            results["one"] = measure(web, relist, cluster, sa, ps, ps, args)
            print(f"creating {args.servers - 1} more servers ...", flush=True)
            results["populate_s"] = round(populate(admin, 1, args.servers, password, dkim, key), 1)
            results["settle_s"] = round(settle(admin, args.servers), 1)
            newest = fleet.Customer((args.servers - 1) // KEY_EVERY * KEY_EVERY, password)
            print(f"{args.servers} servers ...", flush=True)
            results["many"] = measure(
                web, relist, cluster, sa, ps, probes(newest.domains[0], binary), args
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--listings", type=int, default=10)
    parser.add_argument("--hosted-seconds", type=float, default=30.0)
    parser.add_argument("--relist-seconds", type=float, default=1.0)
    parser.add_argument("--relist-for", type=float, default=15.0)
    args = parser.parse_args()
    if args.servers < 2 or args.requests < 1 or args.listings < 1:
        parser.error("--servers needs at least 2, --requests and --listings at least 1")
    with tempfile.TemporaryDirectory(prefix="vpes-bench-web-") as tmp:
        results = run(args, Path(tmp))
    report("web", results, table(results))


if __name__ == "__main__":
    main()
