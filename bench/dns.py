"""Benchmark: a new domain in a PersonalMailServer → all its records published and verified.

Against a real Knot DNS server on loopback (RFC 2136 + TSIG) and the real
control plane with the operator subprocess, for 1 and for 100 domains:

- a new server with N domains: the time from applying the server until
  DNSVerified is True (which needs every record, DKIM included, published and
  answering);
- one domain added to that server (now N + 1 domains; N where N is the
  most a server may have: one is taken away first, untimed): the time from the
  spec change until DNSPublished and DNSVerified are True for the new
  generation (its DKIM key made, its records published, every record of the
  server checked again).

Side by side, the floor without the operator and the cluster: the DNS layer
alone (publish then verify the same records, keys already made).

Usage: python -m bench.dns [--sizes 1,100] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from vpes_devcluster.cluster import Cluster
from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import Kube
from vpes_operator.dns import records, verify
from vpes_operator.dns.ownership import Owned
from vpes_operator.dns.providers import rfc2136
from vpes_operator.models.server import MAX_DOMAINS
from vpes_operator.settings import OperatorSettings

from tests.integration.dns_support import KEY_NAME, ZONE, KnotServer
from tests.integration.operator_support import OperatorProcess, install_platform, plan_body

PLAN = "bench-dns"


def settings_env(knot: KnotServer, secret_file: Path) -> dict[str, str]:
    return {
        "VPES_DNS_RFC2136_SERVER": knot.address,
        "VPES_DNS_RFC2136_TSIG_NAME": KEY_NAME,
        "VPES_DNS_RFC2136_TSIG_SECRET_FILE": str(secret_file),
        "VPES_DNS_RESOLVERS": knot.address,
        "VPES_MX_HOST": f"mx.{ZONE}",
        "VPES_OUTBOUND_ADDRESSES": "192.0.2.25",
        "VPES_TLS_RPT_RUA": f"tls@{ZONE}",
        "VPES_DKIM_KEY_BITS": "2048",
        "VPES_BCRYPT_ROUNDS": "4",
        "VPES_DNS_VERIFY_TICK": "1",
        "VPES_DNS_VERIFY_MIN_INTERVAL": "1",
        "VPES_DNS_VERIFY_MAX_INTERVAL": "2",
    }


def server(tag: str, domains: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PersonalMailServer",
        "metadata": {"name": tag, "namespace": "bench-dns"},
        "spec": {
            "plan": PLAN,
            "owner": {"email": "o@example.net"},
            "domains": domains,
            "mailboxes": [{"address": f"me@{domains[0]}"}],
        },
    }


def domains_of(n: int, tag: str) -> list[str]:
    return [f"d{i}.{tag}.{ZONE}" for i in range(n)]


def run_operator(kube: Kube, n: int, tag: str) -> dict[str, Any]:
    published, done, obj = watch(kube, tag, domains_of(n, tag))
    nrec = len(obj["status"]["dnsRecords"])
    return {
        "domains": n,
        "records": nrec,
        "seconds_published": round(published or done, 2),
        "seconds_verified": round(done, 2),
        "records_per_second": round(nrec / done, 1),
    }


def _current(cond: dict[str, Any] | None, generation: int) -> bool:
    """True, and about the spec of `generation` (or a later one)."""
    return bool(
        cond
        and cond.get("status") == "True"
        and int(cond.get("observedGeneration", 0)) >= generation
    )


def watch(
    kube: Kube, tag: str, domains: list[str], timeout: float = 600
) -> tuple[float | None, float, dict[str, Any]]:
    """Apply the server `tag` with `domains`; the seconds until DNSPublished and DNSVerified
    are True for that spec, and the server then."""
    start = time.monotonic()
    applied = kube.apply(server(tag, domains))
    generation = int(applied["metadata"]["generation"])
    published_at = None
    deadline = start + timeout
    while time.monotonic() < deadline:
        obj = kube.get(API_VERSION, "PersonalMailServer", "bench-dns", tag) or {}
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
        if published_at is None and _current(conds.get("DNSPublished"), generation):
            published_at = time.monotonic() - start
        if _current(conds.get("DNSVerified"), generation):
            return published_at, time.monotonic() - start, obj
        time.sleep(0.1)
    raise TimeoutError(f"{tag} with {len(domains)} domains not verified in {timeout}s")


def run_added(kube: Kube, tag: str, before: list[str], new: str) -> dict[str, Any]:
    """Add `new` to the server `tag` (verified with `before`): until it is verified too."""
    published, done, obj = watch(kube, tag, [*before, new])
    mine = [r for r in obj["status"]["dnsRecords"] if r["domain"] == new]
    if not mine or any(r.get("check") != verify.PASS for r in mine):
        raise RuntimeError(f"verified without the new domain's records: {mine}")
    return {
        "domains": len(before) + 1,
        "records": len(mine),
        "records_checked": len(obj["status"]["dnsRecords"]),
        "seconds_published": round(published or done, 2),
        "seconds_verified": round(done, 2),
    }


class Floor:
    """The DNS layer alone for one server: publish then verify, keys made beforehand."""

    def __init__(self, knot: KnotServer, settings: OperatorSettings) -> None:
        self.settings = settings
        self.provider = rfc2136.provider(knot.address, rfc2136.TSIGKey(KEY_NAME, knot.secret))
        self.resolvers = verify.Resolvers([knot.address], 3.0)
        self.keys: dict[str, dict[str, str]] = {}
        self.owned = Owned()

    def run(self, domains: list[str]) -> dict[str, Any]:
        for d in domains:
            if d not in self.keys:
                key = crypto.dkim_public_record(crypto.generate_dkim_key(2048))
                self.keys[d] = {"vpes": key}
        recs = records.server_records(domains, self.settings, self.keys)
        start = time.monotonic()
        result = self.provider.publish(recs, self.owned)
        published = time.monotonic() - start
        checks = verify.check_all(self.resolvers, recs)
        done = time.monotonic() - start
        if result.problems or any(c.verdict != verify.PASS for c in checks):
            raise RuntimeError(f"the DNS layer failed: {result.problems}")
        self.owned = result.owned
        return {
            "domains": len(domains),
            "records": len(recs),
            "changed": result.changed,
            "seconds_published": round(published, 2),
            "seconds_verified": round(done, 2),
            "records_per_second": round(len(recs) / done, 1),
        }


def table(results: dict[str, Any]) -> str:
    head = f"{'case':<22} {'domains':>8} {'records':>8} | {'operator: published':>20} "
    head += f"{'verified':>9} | {'DNS layer: published':>21} {'verified':>9}"
    lines = [head, "-" * len(head)]
    for r in results["runs"]:
        for case, key in (("new server", "new"), ("domain added", "added")):
            o, f = r[key]["operator"], r[key]["floor"]
            lines.append(
                f"{case:<22} {o['domains']:>8} {o['records']:>8} | "
                f"{o['seconds_published']:>19}s {o['seconds_verified']:>8}s | "
                f"{f['seconds_published']:>20}s {f['seconds_verified']:>8}s"
            )
    lines.append("(domain added: records of the new domain; every record is checked again)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,100")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {"sizes": sizes, "runs": []}
    with tempfile.TemporaryDirectory(prefix="vpes-bench-dns-") as tmp:
        knot = KnotServer(Path(tmp) / "knot")
        knot.start()
        secret_file = Path(tmp) / "tsig"
        secret_file.write_text(knot.secret)
        env = settings_env(knot, secret_file)
        settings = OperatorSettings.from_env(env)
        try:
            with Cluster(Path(tmp) / "cluster", nodes=1) as cluster:
                kube = Kube(cluster.api_client(), field_manager="bench")
                kubeconfig = install_platform(cluster)
                most = min(max(sizes) + 1, MAX_DOMAINS)
                kube.apply(plan_body(PLAN, maxDomains=most, maxMailboxes=5))
                kube.apply(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-dns"}}
                )
                op = OperatorProcess(kubeconfig, Path(tmp) / "operator", extra_env=env)
                op.start()
                try:
                    for n in sizes:
                        print(f"{n} domains ...", flush=True)
                        tag = f"fl{n}"
                        floor = Floor(knot, settings)
                        run = {
                            "new": {
                                "operator": run_operator(kube, n, f"op{n}"),
                                "floor": floor.run(domains_of(n, tag)),
                            }
                        }
                        # The domain added makes N + 1, or N where N is the most a
                        # server may have (one domain is taken away first, untimed).
                        base = min(n, MAX_DOMAINS - 1)
                        if base < n:
                            watch(kube, f"op{n}", domains_of(base, f"op{n}"))
                            floor.run(domains_of(base, tag))
                        print(f"a domain added to {base} ...", flush=True)
                        before = domains_of(base, f"op{n}")
                        run["added"] = {
                            "operator": run_added(kube, f"op{n}", before, f"new.op{n}.{ZONE}"),
                            "floor": floor.run([*domains_of(base, tag), f"new.{tag}.{ZONE}"]),
                        }
                        results["runs"].append(run)
                        print(json.dumps(run), flush=True)
                finally:
                    op.stop()
        finally:
            knot.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"dns-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
