"""What measuring storage costs: in a tenant, and in the operator at 1,000 servers.

1. The tenant (the real image under podman, a 10-mailbox and a 1,000-mailbox
   server, each mailbox counted by Dovecot): wall time of one usage report
   (`clients.usage.read_report`, as the operator asks) and the container's CPU
   for it (its cgroup's cpu.stat), and whether anything stays resident
   (the processes before and after: spawn runs vpes-usage per connection).
2. The operator: one pass of `usage.UsagePoll` over 1,000 servers (pods listed
   in pages of 100, realistic pod and server objects, a 10-mailbox report each;
   the API and the pods stood in for in process, so that only the operator's
   own work is counted): its CPU, its peak of extra memory (tracemalloc), and
   the API requests it makes; then the per-server part (the status read and
   write) again through a real API server (`--api` servers, a local control
   plane), for what HTTP and JSON add.

    python -m bench.usage [--servers 1000] [--reports 50]

Prints a markdown table and writes bench/results/usage-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from vpes_operator import API_VERSION, storage, usage
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.workload import statefulset
from vpes_operator.clients.kube import Kube
from vpes_operator.clients.usage import read_report
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.settings import OperatorSettings

from tests.images.conftest import settings_for
from tests.images.tenant import (
    PASSWORDS,
    Tenant,
    TenantFiles,
    build_images,
    podman,
    podman_gateway,
    sample_spec,
)

RESULTS = Path(__file__).resolve().parent / "results"
PLAN = {"storage": "1Gi", "defaultQuota": "512Mi", "maxMessageSize": "25Mi"}


def _cpu_usec(name: str) -> int:
    """CPU the container has used so far (its cgroup: v2 cpu.stat, v1 cpuacct.usage)."""
    cgroup = podman("inspect", "--format", "{{.State.CgroupPath}}", name).stdout.strip()
    v2 = Path(f"/sys/fs/cgroup{cgroup}/cpu.stat")
    if v2.exists():
        lines = v2.read_text().splitlines()
        return int(next(x.split()[1] for x in lines if x.startswith("usage_usec")))
    return int(Path(f"/sys/fs/cgroup/cpuacct{cgroup}/cpuacct.usage").read_text()) // 1000


def _processes(t: Tenant) -> int:
    return len(t.exec("sh", "-c", "ls -d /proc/[0-9]*").stdout.split())


def tenant_cost(mailboxes: int, reports: int) -> dict[str, float]:
    image = build_images("tenant")[0]
    root = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    files = TenantFiles(root, settings_for(f"{podman_gateway()}/32"), plan=MailPlanSpec())
    files.write(sample_spec(), PASSWORDS)
    t = Tenant(image, "", files, publish=False)
    t.start()
    try:
        t.wait_ready()
        # Each mailbox as Dovecot leaves it once it has counted it: a maildirsize.
        script = (
            f"for i in $(seq 1 {mailboxes}); do d=/var/mail/vpes/bench.example/u$i/Maildir; "
            "mkdir -p $d && printf '1073741824S\\n4096 3\\n' > $d/maildirsize; done"
        )
        assert t.exec("sh", "-c", script, user="vmail").returncode == 0
        assert len(read_report(t.host).mailboxes) >= mailboxes
        before = _processes(t)
        cpu0, walls = _cpu_usec(t.name), []
        for _ in range(reports):
            start = time.perf_counter()
            read_report(t.host)
            walls.append(time.perf_counter() - start)
        cpu = (_cpu_usec(t.name) - cpu0) / reports / 1000
        time.sleep(1)
        return {
            "mailboxes": mailboxes,
            "wall_ms_median": 1000 * statistics.median(walls),
            "cpu_ms_per_report": cpu,
            "resident_processes_added": _processes(t) - before,
        }
    finally:
        t.remove()


class Api:
    """Pods in pages and servers' statuses, kept in memory; counts the requests."""

    def __init__(self, servers: int) -> None:
        pod_spec = statefulset(
            Owner(name="s", namespace="n", uid="u", plan="p"),
            MailPlanSpec(),
            OperatorSettings(),
            suspended=False,
        )["spec"]["template"]
        labels = pod_spec["metadata"]["labels"]
        self.pods = [
            {
                "metadata": {**pod_spec["metadata"], "name": f"s{i}-0", "namespace": f"ns{i}",
                             "labels": {**labels, "vpes.io/server": f"s{i}"}},
                "spec": pod_spec["spec"],
                "status": {"phase": "Running", "podIP": f"10.1.{i // 250}.{i % 250}"},
            }
            for i in range(servers)
        ]  # fmt: skip
        spec = sample_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
        self.spec = spec
        self.statuses: dict[str, dict[str, Any]] = {}
        self.requests = 0

    def request(self, method: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        self.requests += 1
        start, size = int(query.get("continue", "0")), int(query["limit"])
        end = start + size
        more = {"continue": str(end)} if end < len(self.pods) else {}
        return {"items": self.pods[start:end], "metadata": more}

    def update_status(self, _v: str, _k: str, ns: str, name: str, mutate: Any) -> Any:
        self.requests += 2  # a read and a write
        status = self.statuses.get(name) or {
            "conditions": [{"type": "Provisioned", "status": "True", "reason": "Applied",
                            "lastTransitionTime": "2026-12-04T00:00:00Z"}]
        }  # fmt: skip
        obj = {"metadata": {"name": name, "namespace": ns, "uid": name, "generation": 1},
               "spec": self.spec, "status": status}  # fmt: skip
        new = mutate(obj)
        if new is not None:
            self.statuses[name] = new
        return {**obj, "status": new}


def operator_cost(servers: int, report_text: str) -> dict[str, float]:
    api = Api(servers)
    settings = OperatorSettings(usage_interval_seconds=1e-6)  # no pacing: CPU only
    poll = usage.UsagePoll(api, settings, plan=lambda _: PLAN, post=lambda *_: None,  # type: ignore[arg-type]
                           read=lambda _ip: storage.parse_report(report_text))  # fmt: skip
    tracemalloc.start()
    cpu = time.process_time()
    measured, silent = poll.run()
    cpu = time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (measured, silent) == (servers, 0)
    writes_per_second = servers / (0.8 * OperatorSettings().usage_interval_seconds)
    return {
        "servers": servers,
        "cpu_s_per_pass": cpu,
        "cpu_ms_per_server": 1000 * cpu / servers,
        "peak_mib_during_pass": peak / (1 << 20),
        "api_requests_per_pass": api.requests,
        "status_writes_per_second_at_300s": writes_per_second,
        "status_bytes_per_server": len(json.dumps(next(iter(api.statuses.values())))),
    }


def api_cost(servers: int, report_text: str) -> dict[str, float]:
    """The per-server work of a pass against a real API server (a local control
    plane, as the integration tier runs it): the status read and write over HTTP,
    with the operator's own client and RBAC. No pods: the report is canned."""
    from vpes_devcluster import Cluster, kubeconfig
    from vpes_devcluster.platform import install_platform

    from tests.integration.operator_support import plan_body, server_body

    root = Path(tempfile.mkdtemp(prefix="bench-usage-api-"))
    cluster = Cluster(root, nodes=1)
    cluster.start()
    try:
        operator = Kube(kubeconfig.api_client(install_platform(cluster)), "vpes-operator")
        admin = Kube(cluster.api_client(), field_manager="bench")
        admin.apply(plan_body("bench", storage="1Gi"))
        admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        spec = sample_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
        spec["mailboxes"] = [{**m, "quota": "100Mi"} for m in spec["mailboxes"]]
        applied = {"type": "Provisioned", "status": "True", "reason": "Applied"}
        provisioned = {"conditions": [{**applied, "lastTransitionTime": "2026-12-04T00:00:00Z"}]}
        for i in range(servers):
            admin.apply(server_body(f"s{i}", "bench", {**spec, "plan": "bench"}))
            admin.update_status(API_VERSION, "PersonalMailServer", "bench", f"s{i}",
                                lambda _obj: provisioned)  # fmt: skip
        poll = usage.UsagePoll(operator, OperatorSettings(), plan=lambda _: PLAN,
                               post=lambda *_: None,
                               read=lambda _ip: storage.parse_report(report_text))  # fmt: skip
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(servers):
            assert poll.measure(usage.Target("bench", f"s{i}", "10.0.0.1"))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {
            "servers": servers,
            "cpu_ms_per_server": 1000 * cpu / servers,
            "wall_ms_per_server": 1000 * wall / servers,
        }
    finally:
        cluster.stop(remove=True)


def table(results: dict[str, Any]) -> str:
    rows = ["| what | figure |", "|---|---|"]
    for t in results["tenant"]:
        rows.append(f"| report from a {t['mailboxes']}-mailbox tenant: wall (median) "
                    f"| {t['wall_ms_median']:.1f} ms |")  # fmt: skip
        rows.append(f"| ... its CPU in the tenant | {t['cpu_ms_per_report']:.1f} ms |")
        rows.append(f"| ... processes left running | {t['resident_processes_added']} |")
    o = results["operator"]
    rows += [
        f"| operator, one pass over {o['servers']} servers: CPU | {o['cpu_s_per_pass']:.2f} s "
        f"({o['cpu_ms_per_server']:.2f} ms a server) |",
        f"| ... peak extra memory during the pass | {o['peak_mib_during_pass']:.1f} MiB |",
        f"| ... API requests | {o['api_requests_per_pass']} |",
        f"| ... status writes a second (300 s interval) | "
        f"{o['status_writes_per_second_at_300s']:.1f} |",
        f"| ... status size of a 3-mailbox server | {o['status_bytes_per_server']} bytes |",
    ]
    a = results.get("api")
    if a:
        rows.append(
            f"| ... the same per server with a real API server (status read and write over "
            f"HTTP, {a['servers']} servers) | {a['cpu_ms_per_server']:.2f} ms CPU, "
            f"{a['wall_ms_per_server']:.1f} ms wall |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument(
        "--api", type=int, default=200, help="servers written through a real API server; 0: skip"
    )
    args = parser.parse_args()
    tenant = [tenant_cost(n, args.reports) for n in (10, 1000)]
    lines = ["vpes-usage 1", "volume 4096 262144 131072 120000 65536 60000"]
    lines += [f"mailbox u{i}@example.org {i * 4096} 3" for i in range(10)] + ["end"]
    results = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "tenant": tenant,
        "operator": operator_cost(args.servers, "\n".join(lines) + "\n"),
        "api": api_cost(args.api, "\n".join(lines) + "\n") if args.api else None,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"usage-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
