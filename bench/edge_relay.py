"""The outbound relay (issue 15): messages a second through ``vpes-edge relay`` with
the shared Rspamd judging every message (``VPES_SPAM_MILTER``, as the chart runs it
by default) next to the same relay without the scan, in one run.

Both relays run as their Deployment would (``tests/images/relay.py``: read-only
root, emptyDirs as the kubelet makes them, the shard Secrets with an RSA and an
Ed25519 key for each of ``--servers`` servers, their own Redis for the hourly
counts). Interleaved rounds of ``--messages`` small messages from ``--clients``
concurrent tenants, one session a message as a tenant's Postfix sends (STARTTLS,
AUTH PLAIN), each signed with both keys; a round is timed until every message is
in the relay's "internet" sink. Then each relay's memory (PSS summed over its
processes, after the rounds), and Rspamd's.

    python -m bench.edge_relay [--messages 200] [--rounds 5] [--clients 4] [--servers 20]

Prints markdown tables and writes bench/results/edge-relay-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import smtplib
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.edge_boxes import Antispam, start_antispam
from bench.memory import MIB, container_memory, report
from tests.images.clients import TLS, message, wait_until
from tests.images.conftest import host_address
from tests.images.edge import map_text
from tests.images.relay import NET_SINK, SMTP, Relay, dkim_key, shard_files
from tests.images.rspamd_support import MILTER
from tests.images.tenant import build_images, container_address

OUTSIDE = "someone@elsewhere.test"
HOSTNAME = "relay.bench.test"


def fleet(servers: int) -> tuple[dict[str, str], dict[str, str], dict[str, list[Any]]]:
    """Domains (domain → server), passwords and keys of `servers` servers."""
    names = [f"bench-{i}/mail" for i in range(servers)]
    domains = {f"s{i}.bench.example": name for i, name in enumerate(names)}
    passwords = {name: "pw-" + uuid.uuid4().hex for name in names}
    keys = {
        name: [dkim_key(d, "vpes"), dkim_key(d, "vpes-ed25519", "ed25519")]
        for d, name in domains.items()
    }
    return domains, passwords, keys


def maps(domains: dict[str, str]) -> dict[str, str]:
    servers = sorted(set(domains.values()))
    return {
        "domains": map_text(domains),
        "recipients": "",
        "transport": "",
        "access": "",
        "antispam": "",
        "proxy": "",
        "senders": map_text({f"@{d}": s for d, s in domains.items()}),
        "limits": "".join(f"{s} 1000000 -\n" for s in servers),
        "held": "",
        "version": "bench-1\n",
    }


def start_relay(root: Path, n: int, fleet_: tuple[Any, Any, Any], milter: str) -> Relay:
    domains, passwords, keys = fleet_
    env = {"VPES_HOSTNAME": HOSTNAME}
    if milter:
        env["VPES_SPAM_MILTER"] = milter
    box = Relay(build_images("edge")[0], build_images("rspamd")[0], host_address(n), root, env)
    box.maps.write(maps(domains))
    box.write_secrets(shard_files(4, passwords, keys))
    box.start()
    wait_until(lambda: box.read("/run/vpes/maps-version") == "bench-1", 90, "the relay's maps")
    return box


def send_all(box: Relay, batch: list[tuple[str, str, str, bytes]]) -> None:
    for server, password, sender, body in batch:
        with smtplib.SMTP(box.host, SMTP, timeout=60) as smtp:
            smtp.ehlo("tenant.bench.example")
            smtp.starttls(context=TLS)
            smtp.ehlo("tenant.bench.example")
            smtp.login(server, password)
            refused = smtp.sendmail(sender, [OUTSIDE], body)
            assert not refused, refused


def one_round(box: Relay, fleet_: tuple[Any, Any, Any], count: int, clients: int) -> float:
    domains, passwords, _ = fleet_
    tag = uuid.uuid4().hex[:8]
    items = []
    for n, (domain, server) in enumerate(sorted(domains.items()) * (count // len(domains) + 1)):
        if n == count:
            break
        sender = f"user@{domain}"
        body = message(sender, OUTSIDE, f"relay bench {tag} {n}", "minutes of the meeting\n")
        items.append((server, passwords[server], sender, body))
    batches = [items[i::clients] for i in range(clients)]
    sink = box.sinks[NET_SINK]
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda b: send_all(box, b), batches))
    deadline = time.monotonic() + 300
    while sum(1 for m in sink.messages() if f"relay bench {tag}" in m["data"]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {count} messages reached the sink")
        time.sleep(0.05)
    return count / (time.monotonic() - start)


def run(messages: int, rounds: int, clients: int, servers: int) -> dict[str, Any]:
    fleet_ = fleet(servers)
    antispam: Antispam | None = None
    boxes: dict[str, Relay] = {}
    with tempfile.TemporaryDirectory(prefix="vpes-bench-relay-") as tmp:
        root = Path(tmp)
        try:
            antispam = start_antispam(build_images("rspamd")[0], root / "antispam", "")
            milter = f"inet:{container_address(antispam.rspamd)}:{MILTER}"
            boxes["scanned"] = start_relay(root / "scanned", 61, fleet_, milter)
            boxes["unscanned"] = start_relay(root / "unscanned", 62, fleet_, "")
            for box in boxes.values():  # warm: TLS session caches, Rspamd's maps
                one_round(box, fleet_, min(20, messages), clients)
            rates: dict[str, list[float]] = {k: [] for k in boxes}
            for _ in range(rounds):
                for kind, box in boxes.items():
                    rates[kind].append(one_round(box, fleet_, messages, clients))
            memory = {k: container_memory(b.name).pss / MIB for k, b in boxes.items()}
            memory["rspamd"] = container_memory(antispam.rspamd).pss / MIB
        finally:
            for box in boxes.values():
                box.remove()
            if antispam is not None:
                antispam.remove()
    return {
        "messages": messages,
        "rounds": rounds,
        "clients": clients,
        "servers": servers,
        "rates": rates,
        "memory_mib": memory,
    }


def tables(results: dict[str, Any]) -> str:
    rates = results["rates"]
    base = statistics.median(rates["unscanned"])
    lines = [
        f"Relay throughput ({results['messages']} messages a round, {results['rounds']} rounds"
        f" interleaved, {results['clients']} concurrent tenants, {results['servers']} servers,"
        " each message signed rsa-sha256 and ed25519-sha256)",
        "",
        "| relay | median msgs/s (min-max) | / without the scan |",
        "|---|---|---|",
    ]
    for kind in ("unscanned", "scanned"):
        med = statistics.median(rates[kind])
        lines.append(
            f"| {kind} | {med:.1f} ({min(rates[kind]):.1f}-{max(rates[kind]):.1f})"
            f" | {med / base:.2f} |"
        )
    lines += ["", "| container | PSS after the rounds (MiB) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results["memory_mib"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--servers", type=int, default=20)
    args = parser.parse_args()
    results = run(args.messages, args.rounds, args.clients, args.servers)
    report("edge-relay", results, tables(results))


if __name__ == "__main__":
    main()
