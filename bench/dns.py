"""Benchmark: a new domain in a PersonalMailServer → all its records published and verified.

Against a real Knot DNS server on loopback (RFC 2136 + TSIG) and the real
control plane with the operator subprocess, for 1 and for 100 domains in one
server: the time from applying the server until DNSVerified is True (which
needs every record, DKIM included, published and answering). Side by side, the
floor without the operator and the cluster: the DNS layer alone (publish then
verify the same records, keys already made).

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


def run_operator(kube: Kube, n: int, tag: str, timeout: float = 600) -> dict[str, Any]:
    domains = [f"d{i}.{tag}.{ZONE}" for i in range(n)]
    body = {
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
    start = time.monotonic()
    kube.apply(body)
    published_at = None
    deadline = start + timeout
    while time.monotonic() < deadline:
        obj = kube.get(API_VERSION, "PersonalMailServer", "bench-dns", tag) or {}
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
        if published_at is None and conds.get("DNSPublished", {}).get("status") == "True":
            published_at = time.monotonic() - start
        if conds.get("DNSVerified", {}).get("status") == "True":
            done = time.monotonic() - start
            nrec = len(obj["status"]["dnsRecords"])
            return {
                "domains": n,
                "records": nrec,
                "seconds_published": round(published_at or done, 2),
                "seconds_verified": round(done, 2),
                "records_per_second": round(nrec / done, 1),
            }
        time.sleep(0.1)
    raise TimeoutError(f"{n} domains not verified in {timeout}s")


def run_floor(knot: KnotServer, settings: OperatorSettings, n: int, tag: str) -> dict[str, Any]:
    domains = [f"d{i}.{tag}.{ZONE}" for i in range(n)]
    keys = {d: {"vpes": crypto.dkim_public_record(crypto.generate_dkim_key(2048))} for d in domains}
    recs = records.server_records(domains, settings, keys)
    provider = rfc2136.provider(knot.address, rfc2136.TSIGKey(KEY_NAME, knot.secret))
    resolvers = verify.Resolvers([knot.address], 3.0)
    start = time.monotonic()
    result = provider.publish(recs, Owned())
    published = time.monotonic() - start
    checks = verify.check_all(resolvers, recs)
    done = time.monotonic() - start
    if result.problems or any(c.verdict != verify.PASS for c in checks):
        raise RuntimeError(f"the DNS layer failed: {result.problems}")
    return {
        "domains": n,
        "records": len(recs),
        "seconds_published": round(published, 2),
        "seconds_verified": round(done, 2),
        "records_per_second": round(len(recs) / done, 1),
    }


def table(results: dict[str, Any]) -> str:
    head = f"{'domains':>8} {'records':>8} | {'operator: published':>20} {'verified':>9} | "
    head += f"{'DNS layer: published':>21} {'verified':>9}"
    lines = [head, "-" * len(head)]
    for r in results["runs"]:
        o, f = r["operator"], r["floor"]
        lines.append(
            f"{o['domains']:>8} {o['records']:>8} | {o['seconds_published']:>19}s "
            f"{o['seconds_verified']:>8}s | {f['seconds_published']:>20}s "
            f"{f['seconds_verified']:>8}s"
        )
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
                kube.apply(plan_body(PLAN, maxDomains=max(sizes), maxMailboxes=5))
                kube.apply(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-dns"}}
                )
                op = OperatorProcess(kubeconfig, Path(tmp) / "operator", extra_env=env)
                op.start()
                try:
                    for n in sizes:
                        print(f"{n} domains ...", flush=True)
                        o = run_operator(kube, n, f"op{n}")
                        f = run_floor(knot, settings, n, f"fl{n}")
                        results["runs"].append({"operator": o, "floor": f})
                        print(json.dumps(results["runs"][-1]), flush=True)
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
