"""The shared edge (issue 15): SMTP throughput through the inbound MX, its memory
with the operator's maps, and the time from a maps change to mail routed.

1. The operator's side: CPU time of the pure maps builder
   (``vpes_operator.edge.build``) for 100, 1,000 and 10,000 synthetic servers
   (one domain, three mailboxes, two aliases each), next to the floor of
   resolving each server's own addresses once.
2. For maps of 0 (the baseline), 100 and 1,000 tenants, one fresh edge MX each:
   PSS summed over the container's processes after the maps are loaded, the
   page cache dropped and ``--idle`` seconds idle, and again right after one
   RCPT (smtpd and its helpers alive); then the time from new maps written the
   way the kubelet writes a ConfigMap (the ``..data`` swap) to an RCPT for the
   new domain answered 250 (``--reloads`` times, each write at a random moment
   of vpes-edge's 2 s look at the maps).
3. SMTP throughput into one real tenant container, interleaved rounds of
   ``--messages`` small messages from ``--clients`` concurrent clients (one
   connection per message, as mail from the Internet comes): straight into the
   tenant's port 25 (the baseline), through the edge MX (port 25, PROXY v1
   header, postscreen; maps of 1,000 tenants plus the real one) with no milter,
   and through the edge with the Rspamd milter and its Redis; and, as an
   experiment, through an edge told not to use TLS toward the tenant. Each round
   is timed until every message is in the tenant's maildir. These containers
   use ``edge_dns``'s resolver (every name unknown, answered at once).

    python -m bench.edge [--messages 200] [--rounds 5] [--clients 4] [--idle 20]

Prints markdown tables and writes bench/results/edge-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import ipaddress
import json
import os
import random
import smtplib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from vpes_operator.settings import OperatorSettings

from bench import edge_fleet
from bench.edge_boxes import (
    CONTROLLER,
    QuietEdge,
    rcpt_code,
    start_antispam,
    start_edge,
    start_tenant,
)
from bench.edge_dns import NxResolver
from bench.memory import MIB, Box, container_memory, remove, report, settle
from tests.images.clients import ProxySMTP, message, proxy_v1
from tests.images.tenant import build_images, podman, podman_gateway, sample_spec

RESULTS = Path(__file__).resolve().parent / "results"
STAMP = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
LOGS = RESULTS / f"edge-{STAMP}-logs"  # the throughput run's containers
RCPT = "alice@example.org"
MAILDIR = "example.org/alice/Maildir"
# A domain of the tenant itself: it refuses senders whose domain does not resolve, and
# this machine resolves no Internet names (Rspamd finds no SPF or DMARC record).
SENDER = "carol@example.org"
SIZES = (0, 100, 1000)
BUILD_SIZES = ((100, 5), (1000, 5), (10000, 1))  # servers, repetitions
THROUGHPUT_FLEET = 1000
NO_TLS = "edge, no TLS to the tenant"
TARGETS = ("direct", "edge", "edge+rspamd", NO_TLS)


def client_address(i: int) -> str:
    return f"198.51.100.{10 + i}"


# --- 1. the builder -----------------------------------------------------------


def builder() -> list[dict[str, object]]:
    rows = []
    for count, reps in BUILD_SIZES:
        row = edge_fleet.build_cpu(count, reps)
        print(f"builder: {count} servers: {row['build_cpu_s']:.3f} s CPU", flush=True)
        rows.append(row)
    return rows


# --- 2. memory and maps changes ---------------------------------------------------


def compiled_kib(edge: QuietEdge) -> int:
    out = podman("exec", edge.name, "du", "-sk", "/var/lib/vpes/maps/current/", check=False)
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def pss(edge: QuietEdge) -> dict[str, float]:
    m = container_memory(edge.name)
    return {"pss_mib": m.pss / MIB, "anon_mib": m.anon / MIB, "processes": m.processes}


def reload_seconds(edge: QuietEdge, count: int, round_: int) -> float:
    """From new maps (``count`` tenants and one new domain) written to the new
    domain's RCPT answered 250."""
    files, address = edge_fleet.new_domain_maps(count, round_)
    assert rcpt_code(edge.host, address) != 250, "the new domain was known before"
    time.sleep(random.uniform(0, 2))  # anywhere in vpes-edge's 2 s loop
    start = time.monotonic()
    edge.maps.write(files)
    deadline = start + 60
    while rcpt_code(edge.host, address) != 250:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{address} not routed after 60 s:\n{edge.logs()[-2000:]}")
        time.sleep(0.05)
    took = time.monotonic() - start
    edge.wait_version(files["version"].strip(), 60)
    return took


def edge_sizes(image: str, root: Path, idle: float, reloads: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for count in SIZES:
        files = edge_fleet.maps(edge_fleet.fleet(count))
        edge = start_edge(image, root / f"maps-{count}", files)
        try:
            settle(idle)
            row: dict[str, object] = {"tenants": count, "idle": pss(edge)}
            if count:
                assert rcpt_code(edge.host, "bob@t00000.example") == 250
            else:
                assert rcpt_code(edge.host, "bob@t00000.example") // 100 == 5
            row["after_rcpt"] = pss(edge)
            row["compiled_kib"] = compiled_kib(edge)
            row["configmap_bytes"] = sum(len(t.encode()) for t in files.values())
            row["reload_s"] = [reload_seconds(edge, count, r) for r in range(reloads)]
            print(f"edge, {count} tenants: {json.dumps(row)}", flush=True)
            rows.append(row)
        finally:
            edge.remove()
    return rows


# --- 3. throughput ----------------------------------------------------------------


def sender(target: str, host: str) -> Callable[[int, list[bytes]], None]:
    """Sends each message in its own session, as client ``i``."""

    def send(i: int, batch: list[bytes]) -> None:
        for body in batch:
            smtp: smtplib.SMTP
            if target == "direct":
                smtp = smtplib.SMTP(host, 25, timeout=60)
            else:
                header = proxy_v1(client_address(i), "192.0.2.25", 40000 + i, 25)
                smtp = ProxySMTP(host, 25, header, timeout=60)
            with smtp:
                smtp.ehlo("client.example")
                refused = smtp.sendmail(SENDER, [RCPT], body)
                assert not refused, refused

    return send


def one_round(
    box: Box, send: Callable[[int, list[bytes]], None], count: int, clients: int
) -> float:
    bodies = [message(SENDER, RCPT, f"edge bench {n}", size=2048) for n in range(count)]
    batches = [bodies[i::clients] for i in range(clients)]
    before = box.mail_count(MAILDIR)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, range(clients), batches))
    deadline = time.monotonic() + 300
    while box.mail_count(MAILDIR) - before < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {count} messages delivered")
        time.sleep(0.02)
    return count / (time.monotonic() - start)


def throughput(
    images: dict[str, str], root: Path, messages: int, rounds: int, clients: int
) -> dict[str, object]:
    subnet = podman(
        "network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}"
    ).stdout.strip()
    ipaddress.ip_network(subnet)
    gateway = podman_gateway()
    dns = NxResolver()
    stopping: list[Callable[[], None]] = [dns.close]
    names: list[str] = []
    try:
        # The edge pods' network is the tenants' edge_networks (production:
        # 10.0.0.0/8): the host (the podman gateway) and the edge containers are in it.
        tenant = start_tenant(images["tenant"], root / "tenant", subnet, gateway)
        stopping.append(lambda: remove(tenant))
        real = edge_fleet.real(sample_spec())
        files = edge_fleet.maps([real, *edge_fleet.fleet(THROUGHPUT_FLEET)], tenant.host)
        spam = start_antispam(images["rspamd"], root / "antispam", files["antispam"], gateway)
        stopping.append(spam.remove)
        plain = start_edge(images["edge"], root / "edge-plain", files, dns=gateway)
        stopping.append(plain.remove)
        milter = start_edge(
            images["edge"], root / "edge-milter", files, milter=spam.host, dns=gateway
        )
        stopping.append(milter.remove)
        # An experiment, not the image: what the edge costs without its TLS to the tenant.
        clear = start_edge(images["edge"], root / "edge-clear", files, dns=gateway)
        stopping.append(clear.remove)
        podman(
            "exec", clear.name, "sh", "-c",
            "postconf -c /run/vpes/postfix -e smtp_tls_security_level=none && postfix reload",
        )  # fmt: skip
        names += [tenant.name, plain.name, milter.name, clear.name, spam.rspamd]
        hosts = dict(zip(TARGETS, (tenant.host, plain.host, milter.host, clear.host), strict=True))
        senders = {t: sender(t, hosts[t]) for t in TARGETS}
        expected = tenant.mail_count(MAILDIR)
        scanned_before = scanned(spam.host)
        # Warm-up: postscreen's pregreet test holds each new client address 6 s once.
        for t in TARGETS:
            one_round(tenant, senders[t], clients, clients)
            expected += clients
        rates: dict[str, list[float]] = {t: [] for t in TARGETS}
        for r in range(rounds):
            k = r % len(TARGETS)
            order = TARGETS[k:] + TARGETS[:k]
            for t in order:
                rates[t].append(one_round(tenant, senders[t], messages, clients))
                expected += messages
            print(f"round {r + 1}: " + ", ".join(f"{t} {rates[t][-1]:.1f}/s" for t in TARGETS))
        time.sleep(2)
        landed = tenant.mail_count(MAILDIR)
        assert landed == expected, f"{landed} messages in the maildir, {expected} sent"
        milter_scanned = scanned(spam.host) - scanned_before
        return {
            "messages": messages,
            "rounds": rounds,
            "clients": clients,
            "rates": rates,
            "delivered": landed,
            "rspamd_scanned": milter_scanned,
            "dns_queries": dns.queries,
        }
    finally:
        LOGS.mkdir(parents=True, exist_ok=True)
        for name in names:
            out = podman("logs", name, check=False)
            (LOGS / f"{name}.log").write_text(out.stdout + out.stderr)
        for stop in reversed(stopping):
            stop()


def scanned(host: str) -> int:
    """Messages Rspamd has scanned (its controller's /stat): proof the milter saw them."""
    return int(httpx.get(f"http://{host}:{CONTROLLER}/stat", timeout=10).json()["scanned"])


# --- the report -------------------------------------------------------------------


def tables(results: dict[str, object]) -> str:
    out = []
    tp = results["throughput"]
    assert isinstance(tp, dict)
    rates: dict[str, list[float]] = tp["rates"]
    base = statistics.median(rates["direct"])
    out += [
        f"SMTP into one tenant: {tp['rounds']} interleaved rounds of {tp['messages']} "
        f"x 2 KiB, {tp['clients']} clients, one session per message; "
        f"{tp['delivered']} delivered in all, {tp['rspamd_scanned']} scanned by Rspamd",
        "",
        "| path | median msgs/s | min | max | / direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in TARGETS:
        med = statistics.median(rates[t])
        out.append(
            f"| {t} | {med:.1f} | {min(rates[t]):.1f} | {max(rates[t]):.1f} | {med / base:.2f} |"
        )
    rows = results["edge"]
    assert isinstance(rows, list)
    out += [
        "",
        "| edge MX, maps of | ConfigMap | compiled | PSS idle | anon idle | processes "
        "| PSS after one RCPT | maps change to RCPT 250: median (min-max) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        idle, after, rl = r["idle"], r["after_rcpt"], r["reload_s"]
        out.append(
            f"| {r['tenants']} tenants | {r['configmap_bytes'] / 1024:.0f} KiB "
            f"| {r['compiled_kib']} KiB | {idle['pss_mib']:.1f} MiB | {idle['anon_mib']:.1f} MiB "
            f"| {idle['processes']} | {after['pss_mib']:.1f} MiB "
            f"| {statistics.median(rl):.2f} s ({min(rl):.2f}-{max(rl):.2f}) |"
        )
    built = results["builder"]
    assert isinstance(built, list)
    out += [
        "",
        "| servers | build CPU | per server | floor (addresses only) | build / floor | maps |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for b in built:
        n, s, f = b["servers"], b["build_cpu_s"], b["floor_cpu_s"]
        fits = "refused: over 1 MB" if b["refused"] else "fits"
        out.append(
            f"| {n:,} | {s:.3f} s | {s / n * 1e6:.0f} µs | {f:.3f} s | {s / f:.1f} "
            f"| {b['bytes'] / 1e6:.2f} MB, {fits} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per round and path")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--clients", type=int, default=4, help="concurrent SMTP clients")
    parser.add_argument("--idle", type=float, default=20, help="seconds idle before PSS")
    parser.add_argument("--reloads", type=int, default=7, help="maps changes timed per size")
    args = parser.parse_args()
    names = ("tenant", "edge", "rspamd")
    images = dict(zip(names, build_images(*names), strict=True))
    results: dict[str, object] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "images": images,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "edge_networks_default": OperatorSettings().edge_networks,
    }
    results["builder"] = builder()
    with tempfile.TemporaryDirectory(prefix="vpes-bench-edge-") as tmp:
        results["edge"] = edge_sizes(images["edge"], Path(tmp), args.idle, args.reloads)
        results["throughput"] = throughput(
            images, Path(tmp), args.messages, args.rounds, args.clients
        )
    results["load_after"] = os.getloadavg()
    report("edge", results, tables(results), STAMP)
    print(f"\nload average before {results['load_before']}, after {results['load_after']}")


if __name__ == "__main__":
    main()
