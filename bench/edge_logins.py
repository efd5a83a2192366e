"""IMAP logins per second through the edge's login proxy, next to straight into
the tenant, in one run (issue 15).

For each bcrypt cost in ``--costs`` (default: the operator's own,
``OperatorSettings().bcrypt_rounds``, then 4, where the proxy's own work shows):
one real tenant (the image tests' sample server plus mailboxes up to
``--mailboxes``, its configuration and password hashes rendered by the
operator's code at that cost) and one login proxy (the edge image, role proxy)
in front of it, run under podman as the image tests run them
(``tests/images/tenant.py``, ``edge.py``, ``proxy_support.py``), nothing
published: the proxy on a fixed address the tenant trusts as its edge, the
tenant's Service name in the proxy's /etc/hosts, the operator's ``proxy`` map
routing both of the tenant's domains to it.

A login is what a mail client does to check for mail, in full each time: TCP
connect, a PROXY v1 header as the load balancer sends it (a client address of
its own per client), TLS (implicit, no session resumption), LOGIN, LOGOUT.
Straight: the tenant's IMAPS PROXY port (10993, as a plan's dedicated load
balancer reaches it); through the proxy: the proxy's 993, after which Dovecot
opens its own STARTTLS session to the tenant's 143 and logs in there with the
client's credentials (the tenant checks the password; the proxy knows none).
``--clients`` clients log in at once, each cycling through the mailboxes; each
round runs ``--seconds`` per path, the paths interleaved (the order alternates),
after a short warm-up of each. CPU per login: each container's cgroup
(``cpuacct.usage``, or ``cpu.stat`` on cgroup v2) and the benchmark's own, read
before and after each round. Every login of the run is counted again in the
tenant's log (``imap-login: Info: Login:``): proxied logins did reach it.

    python -m bench.edge_logins [--costs 10,4] [--mailboxes 40] [--clients 8]
                                [--rounds 5] [--seconds 10]

Prints a markdown table and writes bench/results/edge-logins-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.render.layout import PASSWD_KEY, PROXY_OFFSET
from vpes_operator.settings import OperatorSettings

from bench.memory import Box, remove, report, run_tenant
from tests.images.clients import ProxyIMAP4SSL, proxy_v1
from tests.images.edge import EdgeMaps, ProxyEdge
from tests.images.proxy_support import A_HOST, free_address, maps_for
from tests.images.tenant import (
    PASSWORDS,
    Tenant,
    TenantFiles,
    build_images,
    podman,
    sample_spec,
)

IMAPS = 993
PATHS = ("straight", "proxy")
WARM_UP_SECONDS = 2.0
LOGIN_LINE = "imap-login: Info: Login:"
# A login waits this long at most: a shared machine under load stalls some for
# seconds (10 s, the tests' timeout, failed a run at load average 8).
TIMEOUT = 60.0


# --- the containers --------------------------------------------------------------


@dataclass
class Pair:
    """One tenant and the login proxy in front of it, for one bcrypt cost."""

    cost: int
    tenant: Box
    proxy: ProxyEdge
    users: list[tuple[str, str]]  # (login, password), every mailbox of the tenant
    accounts: dict[str, CpuAccount]  # "proxy", "tenant"

    def target(self, path: str) -> tuple[str, int]:
        """Where a client of ``path`` connects (always with a PROXY header)."""
        if path == "straight":
            return self.tenant.host, IMAPS + PROXY_OFFSET
        return self.proxy.host, IMAPS

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the proxy's and the tenant's container."""
        return {k: a.seconds() for k, a in self.accounts.items()}


def mailboxes(count: int) -> dict[str, str]:
    """Login → password: the sample server's three mailboxes, then user<n>@example.org."""
    extra = {f"user{n:03d}@example.org": secrets.token_hex(12) for n in range(count - 3)}
    return {**PASSWORDS, **extra}


def tenant_files(root: Path, edge_ip: str, cost: int, users: dict[str, str]) -> TenantFiles:
    """The sample server with ``users`` as its mailboxes, hashed at ``cost``."""
    extra = tuple(
        {"address": address, "quota": "64Mi"} for address in users if address not in PASSWORDS
    )
    files = TenantFiles(
        root,
        OperatorSettings(edge_networks=(f"{edge_ip}/32",)),
        plan=MailPlanSpec(max_message_size="1Mi", max_mailboxes=max(10, len(users))),
        bcrypt_rounds=cost,
    )
    files.write(sample_spec(extra_mailboxes=extra), users)
    hashes = [x for x in (files.secrets_dir / PASSWD_KEY).read_text().splitlines() if "$2y$" in x]
    assert len(hashes) == len(users), f"{len(hashes)} hashes for {len(users)} mailboxes"
    assert all(f"$2y${cost:02d}$" in x for x in hashes), "hashes not at the cost asked"
    return files


@contextmanager
def pair(images: dict[str, str], root: Path, cost: int, count: int) -> Iterator[Pair]:
    """A tenant hashed at ``cost`` and its proxy, both removed on the way out."""
    users = mailboxes(count)
    edge_ip = free_address()
    files = tenant_files(root / f"tenant-{cost}", edge_ip, cost, users)
    with ExitStack() as stack:
        name = f"vpes-bench-tenant-{uuid.uuid4().hex[:8]}"
        tenant = run_tenant(Tenant(images["tenant"], "", files, name=name, publish=False))
        stack.callback(remove, tenant)
        maps = EdgeMaps(root / f"proxy-{cost}")
        maps.write(maps_for({"example.org": A_HOST, "example.net": A_HOST}, f"cost-{cost}"))
        proxy = ProxyEdge(
            images["edge"],
            "",
            maps,
            env={"VPES_HOSTNAME": "proxy.edge.bench"},
            name=f"vpes-bench-proxy-{uuid.uuid4().hex[:8]}",
            ip=edge_ip,
            hosts=((A_HOST, tenant.host),),
            publish=False,
        )
        stack.callback(proxy.remove)
        proxy.start()
        proxy.wait_ready(60)
        proxy.wait_version(f"cost-{cost}", 60)
        accounts = {"proxy": cpu_account(proxy.name), "tenant": cpu_account(tenant.name)}
        yield Pair(cost, tenant, proxy, sorted(users.items()), accounts)


@dataclass(frozen=True)
class CpuAccount:
    """The CPU time a container's cgroup has been charged: every process it has
    run, those that exited included (cgroup v1 ``cpuacct.usage``, v2 ``cpu.stat``)."""

    file: Path

    def seconds(self) -> float:
        text = self.file.read_text()
        if self.file.name == "cpuacct.usage":
            return int(text) / 1e9
        return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6


def cpu_account(container: str) -> CpuAccount:
    pid = podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip()
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    groups = {controllers: path for _, controllers, path in (x.split(":", 2) for x in lines)}
    for controllers, path in groups.items():
        if "cpuacct" in controllers.split(","):
            usage = Path("/sys/fs/cgroup", controllers, path.lstrip("/"), "cpuacct.usage")
            if usage.exists():
                return CpuAccount(usage)
    return CpuAccount(Path("/sys/fs/cgroup", groups.get("", "/").lstrip("/"), "cpu.stat"))


# --- the load ----------------------------------------------------------------------


def client_address(client: int) -> str:
    return f"198.51.100.{10 + client}"


def login_loop(
    host: str, port: int, users: list[tuple[str, str]], client: int, clients: int, until: float
) -> int:
    """Client ``client``: full logins (connect, PROXY header, TLS, LOGIN, LOGOUT)
    until ``until``, each with the next of its share of ``users``; how many."""
    done = 0
    while time.monotonic() < until:
        user, password = users[(client + done * clients) % len(users)]
        header = proxy_v1(client_address(client), "192.0.2.143", 40000 + done % 20000, port)
        session = ProxyIMAP4SSL(host, port, header, timeout=TIMEOUT)
        try:
            typ, _ = session.login(user, password)
            assert typ == "OK", typ
        finally:
            session.logout()
        done += 1
    return done


@dataclass
class Round:
    """One path's round: logins made, in how long, CPU milliseconds per login."""

    path: str
    logins: int
    seconds: float
    rate: float  # logins per second
    cpu_ms: dict[str, float]  # proxy, tenant, client (this benchmark) per login


def one_round(p: Pair, path: str, seconds: float, clients: int) -> Round:
    """``clients`` clients logging in through ``path`` for ``seconds``."""
    host, port = p.target(path)
    before = p.cpu()
    client_before = sum(os.times()[:2])
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        counts = list(
            pool.map(
                lambda i: login_loop(host, port, p.users, i, clients, start + seconds),
                range(clients),
            )
        )
    took = time.monotonic() - start
    logins = sum(counts)
    cpu = {k: v - before[k] for k, v in p.cpu().items()}
    cpu["client"] = sum(os.times()[:2]) - client_before
    return Round(path, logins, took, logins / took, {k: v * 1e3 / logins for k, v in cpu.items()})


def tenant_logins(p: Pair) -> int:
    """Logins the tenant has logged (straight ones and proxied ones alike)."""
    out = podman("logs", p.tenant.name, check=False)
    return sum(LOGIN_LINE in line for line in (out.stdout + out.stderr).splitlines())


@dataclass
class Cost:
    """Every round at one bcrypt cost."""

    cost: int
    mailboxes: int
    logins: int  # all of them, warm-up included: each one is in the tenant's log
    rounds: list[Round]

    def of(self, path: str) -> list[Round]:
        return [r for r in self.rounds if r.path == path]


def measure(p: Pair, rounds: int, seconds: float, clients: int) -> Cost:
    """Warm-up, then ``rounds`` interleaved rounds of both paths."""
    total = sum(one_round(p, path, WARM_UP_SECONDS, clients).logins for path in PATHS)
    done: list[Round] = []
    for r in range(rounds):
        for path in PATHS if r % 2 == 0 else PATHS[::-1]:
            done.append(one_round(p, path, seconds, clients))
            total += done[-1].logins
        print(
            f"cost {p.cost}, round {r + 1}: "
            + ", ".join(f"{d.path} {d.rate:.1f}/s" for d in done[-2:]),
            flush=True,
        )
    logged = tenant_logins(p)
    assert logged >= total, f"the tenant logged {logged} logins of {total}"
    return Cost(p.cost, len(p.users), total, done)


# --- the report --------------------------------------------------------------------


def table(costs: list[Cost], clients: int, seconds: float) -> str:
    lines = [
        f"IMAP logins (connect, PROXY header, TLS, LOGIN, LOGOUT), {clients} clients, "
        f"rounds of {seconds:g} s per path, interleaved; medians over rounds",
        "",
        "| bcrypt cost | path | logins/s: median (min-max) | / straight "
        "| proxy CPU ms/login | tenant CPU ms/login | client CPU ms/login |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in costs:
        base = statistics.median(r.rate for r in c.of("straight"))
        for path in PATHS:
            rs = c.of(path)
            rate = statistics.median(r.rate for r in rs)

            def ms(key: str, rs: list[Round] = rs) -> str:
                return f"{statistics.median(r.cpu_ms[key] for r in rs):.2f}"

            lines.append(
                f"| {c.cost} | {path} | {rate:.1f} ({min(r.rate for r in rs):.1f}-"
                f"{max(r.rate for r in rs):.1f}) | {rate / base:.2f} "
                f"| {ms('proxy')} | {ms('tenant')} | {ms('client')} |"
            )
        ratios = [p.rate / s.rate for s, p in zip(c.of("straight"), c.of("proxy"), strict=True)]
        lines.append(
            f"| {c.cost} | proxy / straight, round by round | "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + " | | | | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default_costs = f"{OperatorSettings().bcrypt_rounds},4"
    parser.add_argument("--costs", default=default_costs, help="bcrypt costs, comma-separated")
    parser.add_argument("--mailboxes", type=int, default=40, help="mailboxes in the tenant")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per cost")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per round and path")
    args = parser.parse_args()
    if args.mailboxes < 3:
        parser.error("--mailboxes: at least the sample server's 3")
    images = dict(zip(("tenant", "edge"), build_images("tenant", "edge"), strict=True))
    results: dict[str, object] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "images": images,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "clients": args.clients,
        "seconds": args.seconds,
    }
    costs: list[Cost] = []
    with tempfile.TemporaryDirectory(prefix="vpes-bench-logins-") as tmp:
        for cost in (int(c) for c in args.costs.split(",")):
            with pair(images, Path(tmp), cost, args.mailboxes) as p:
                costs.append(measure(p, args.rounds, args.seconds, args.clients))
    results["costs"] = [asdict(c) for c in costs]
    results["load_after"] = os.getloadavg()
    report("edge-logins", results, table(costs, args.clients, args.seconds))
    print(f"\nload average before {results['load_before']}, after {results['load_after']}")


if __name__ == "__main__":
    main()
