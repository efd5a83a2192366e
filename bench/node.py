"""Benchmark on the real node (kubelet + containerd + runc + CNI): what a customer
waits for and what the node spends per customer, side by side in one run.

1. First mail: from a PersonalMailServer applied to the first SMTP session through
   its Service's ClusterIP (port 25, from the host) that gets 250 after DATA;
   p50/p95 for 1 server (repeated, interleaved) and for 20 created at once. Baseline:
   the same child objects (``builders.desired_objects`` with ``credentials.gather``,
   as ``bench/reconcile.py``'s baseline makes them) applied straight to the API
   server without the operator, timed the same way from the start of that work.
2. Memory per idle tenant with 20 and 50 tenants: the kubelet's summary API working
   set of each pod, plus the PSS (``/proc/PID/smaps_rollup``) of the pod's
   ``containerd-shim-runc-v2`` and of its pause process (reported on its own: it
   lives in the pod's cgroup, so its memory is already in the working set), plus
   the node's MemAvailable. Next to it, the same tenants under podman measured by
   ``bench/memory.py``'s functions (PSS of the container's processes), plus conmon.
3. The slope 20 → 50 (MemAvailable drop, and the sum above) in MiB per additional
   tenant, and what caps tenants per node once kubelet's maxPods is raised: memory,
   the scheduler's requests (CPU, memory), PIDs (kernel.pid_max), pod IPs.

Caches are dropped and the tenants left idle before each memory reading. Only one
dev node can run on a machine: the benchmark waits while another one answers.

    python -m bench.node [--single 3] [--burst 20] [--tenants 20,50] [--idle 40]

Prints markdown tables and writes bench/results/node-<time>.json (after every phase).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import re
import signal
import smtplib
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from vpes_devcluster import Cluster
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.node import build_images
from vpes_devcluster.node_config import KUBELET_HEALTHZ_PORT, NODE_NAME, POD_CIDR, POD_SUBNET
from vpes_operator import API_VERSION
from vpes_operator.builders import ServerInputs, desired_objects
from vpes_operator.builders.meta import Owner
from vpes_operator.clients.kube import Kube
from vpes_operator.credentials import gather
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_operator.settings import OperatorSettings

from bench.memory import _rollup, container_memory, drop_caches
from tests.e2e.support import make_namespace, start_operator
from tests.images.tenant import Tenant, TenantFiles, podman, podman_gateway
from tests.integration.operator_support import OperatorProcess, plan_body

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
PLAN = "bench-node"
# As the e2e tier's small_plan: what a small customer gets.
RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}
NS_OP, NS_BASE, NS_MEM = "bn-operator", "bn-baseline", "bn-memory"
EVICTION_HARD_MIB = 100  # the dev kubelet's evictionHard memory.available


def spec(name: str) -> dict[str, Any]:
    return {
        "plan": PLAN,
        "owner": {"email": f"owner@{name}.example"},
        "domains": [f"{name}.example"],
        "mailboxes": [{"address": f"me@{name}.example", "aliases": ["info"]}],
    }


def plan_spec() -> MailPlanSpec:
    body = plan_body(PLAN, resources=RESOURCES, backup={"enabled": False})
    return MailPlanSpec.model_validate(body["spec"])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- 1. first mail ------------------------------------------------------------------


def first_mail(host: str, to: str) -> float | str:
    """One SMTP session; the monotonic time of the 250 after DATA, or why not."""
    # From the server's own domain: Postfix rejects senders whose domain does not
    # resolve (reject_unknown_sender_domain), and nothing outside resolves here.
    sender = "carol@" + to.split("@", 1)[1]
    msg = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: first\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.example>\r\n\r\nfirst\r\n"
    )
    try:
        with smtplib.SMTP(host, 25, timeout=5) as smtp:
            smtp.ehlo("sender.example")
            smtp.sendmail(sender, [to], msg)
            return time.monotonic()
    except (OSError, smtplib.SMTPException) as exc:
        return repr(exc)[:200]


class FirstMail:
    """Servers applied in one namespace and the seconds each took to its first mail."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.kube = kube
        self.ns = ns
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()

    def start(self, name: str) -> None:
        with self.lock:
            self.started[name] = time.monotonic()

    def wait(
        self, names: list[str], apply: Callable[[str], None], timeout: float
    ) -> dict[str, Any]:
        """Apply every name at once (a thread each) and probe until each took a mail."""
        done: dict[str, float] = {}
        errors: list[str] = []
        last: dict[str, str] = {}  # the last refusal of each server without a mail
        deadline = time.monotonic() + timeout
        with (
            cf.ThreadPoolExecutor(len(names)) as appliers,
            cf.ThreadPoolExecutor(len(names)) as probes,
        ):
            applying = {appliers.submit(apply, n): n for n in names}
            failed: set[str] = set()
            while len(done) + len(failed) < len(names) and time.monotonic() < deadline:
                for f in [f for f in applying if f.done()]:
                    if f.exception():
                        errors.append(f"{applying[f]}: {f.exception()}")
                        failed.add(applying[f])
                    del applying[f]
                ips = {
                    s["metadata"]["name"]: s["spec"].get("clusterIP")
                    for s in self.kube.list("v1", "Service", self.ns)
                }
                with self.lock:
                    todo = [n for n in names if n not in done and ips.get(n) and n in self.started]
                tries = {n: probes.submit(first_mail, ips[n], f"me@{n}.example") for n in todo}
                for n, probe in tries.items():
                    when = probe.result()
                    if isinstance(when, float):
                        done[n] = when - self.started[n]
                    else:
                        last[n] = when
                time.sleep(0.5)
        times = list(done.values())
        return {
            "servers": len(names),
            "mail_accepted": len(done),
            "p50_s": round(statistics.median(times), 2) if times else None,
            "p95_s": round(pct(times, 95), 2) if times else None,
            "max_s": round(max(times), 2) if times else None,
            "seconds": {n: round(t, 2) for n, t in sorted(done.items())},
            "errors": errors[:5],
            "last_refusals": {n: e for n, e in last.items() if n not in done},
        }


def apply_server(kube: Kube, ns: str, timer: FirstMail) -> Callable[[str], None]:
    def apply(name: str) -> None:
        timer.start(name)
        kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec(name),
            }
        )

    return apply


def apply_direct(
    kube: Kube, ns: str, timer: FirstMail, settings: OperatorSettings
) -> Callable[[str], None]:
    """The baseline: the operator's own builders, applied straight (no operator).
    An owner ConfigMap stands in for the PersonalMailServer (garbage collection)."""
    plan = plan_spec()

    def apply(name: str) -> None:
        timer.start(name)
        s = PersonalMailServerSpec.model_validate(spec(name))
        material = gather(
            s,
            {},
            lambda _n, _k: None,
            service_host=f"{name}.{ns}.svc",
            bcrypt_rounds=settings.bcrypt_rounds,
            dkim_bits=settings.dkim_key_bits,
        )
        owner_obj = kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-owner", "namespace": ns},
            }
        )
        owner = Owner(name=name, namespace=ns, uid=owner_obj["metadata"]["uid"], plan=PLAN)
        for obj in desired_objects(ServerInputs(owner, s, plan, settings, material)):
            for ref in obj["metadata"]["ownerReferences"]:
                ref.update(apiVersion="v1", kind="ConfigMap", name=f"{name}-owner")
            kube.apply(obj)

    return apply


def run_first_mail(
    kube: Kube, settings: OperatorSettings, single: int, burst: int
) -> dict[str, Any]:
    op, base = FirstMail(kube, NS_OP), FirstMail(kube, NS_BASE)
    by_op, by_base = apply_server(kube, NS_OP, op), apply_direct(kube, NS_BASE, base, settings)
    runs: dict[str, list[dict[str, Any]]] = {"operator-1": [], "baseline-1": []}
    for r in range(single):  # interleaved: the machine's speed drifts
        print(f"first mail: 1 server, repetition {r + 1}/{single} ...", flush=True)
        runs["operator-1"].append(op.wait([f"op1-{r}"], by_op, timeout=300))
        runs["baseline-1"].append(base.wait([f"base1-{r}"], by_base, timeout=300))
    print(f"first mail: {burst} servers at once, operator ...", flush=True)
    burst_op = op.wait([f"op{burst}-{i}" for i in range(burst)], by_op, timeout=900)
    print(f"first mail: {burst} servers at once, baseline ...", flush=True)
    burst_base = base.wait([f"base{burst}-{i}" for i in range(burst)], by_base, timeout=900)
    rows = []
    for label, o, b in (
        ("1", merge(runs["operator-1"]), merge(runs["baseline-1"])),
        (str(burst), burst_op, burst_base),
    ):
        ratio = round(o["p50_s"] / b["p50_s"], 2) if o["p50_s"] and b["p50_s"] else None
        rows.append({"servers_at_once": label, "operator": o, "baseline": b, "ratio_p50": ratio})
    return {"single_repetitions": single, "rows": rows}


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Single-server repetitions as one sample."""
    seconds = {n: t for r in runs for n, t in r["seconds"].items()}
    times = list(seconds.values())
    return {
        "servers": len(runs),
        "mail_accepted": len(times),
        "p50_s": round(statistics.median(times), 2) if times else None,
        "p95_s": round(pct(times, 95), 2) if times else None,
        "max_s": round(max(times), 2) if times else None,
        "seconds": seconds,
        "errors": [e for r in runs for e in r["errors"]],
    }


# -- 2. memory on the node ----------------------------------------------------------


POD_IN_CGROUP = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def memory_cgroup(pid: int) -> str:
    fallback = ""
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
        if controllers == "":
            fallback = path
    return fallback


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def ppid(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    return int(stat.rsplit(")", 1)[1].split()[1]) if stat else 0


def comm(pid: int) -> str:
    return _read(f"/proc/{pid}/comm").strip()


def pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


@dataclass
class PodMemory:
    name: str
    working_set: int  # bytes, the kubelet's summary API
    processes: int  # in the pod's cgroup (the pause process included)
    tasks: int  # threads of those processes
    pod_pss: int  # PSS summed over them
    pause_pss: int
    shim_pss: int
    shim_tasks: int
    shim_shared: int  # pods served by the same shim (1 with containerd's CRI)


def pod_processes(uids: set[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {u: [] for u in uids}
    for pid in pids():
        m = POD_IN_CGROUP.search(memory_cgroup(pid))
        if m:
            uid = m.group(1).replace("_", "-")
            if uid in found:
                found[uid].append(pid)
    return found


def summary(kube: Kube) -> dict[str, Any]:
    result: dict[str, Any] = kube.request(
        "GET", f"/api/v1/nodes/{NODE_NAME}/proxy/stats/summary", timeout=60
    )
    return result


def pss(pid: int) -> int:
    m = _rollup(pid)
    return m.pss if m is not None else 0


def node_pods(kube: Kube, ns: str) -> list[PodMemory]:
    """Every running pod of ``ns`` on the node, measured (kubelet summary and /proc)."""
    stats = {p["podRef"]["uid"]: p for p in summary(kube).get("pods", [])}
    pods = [
        p for p in kube.list("v1", "Pod", ns) if (p.get("status") or {}).get("phase") == "Running"
    ]
    procs = pod_processes({p["metadata"]["uid"] for p in pods})
    pauses = {
        uid: [pid for pid in members if comm(pid) == "pause"] for uid, members in procs.items()
    }
    shim_of: dict[str, int] = {}
    for uid, pause in pauses.items():
        parent = ppid(pause[0]) if pause else 0
        shim_of[uid] = parent if parent and comm(parent).startswith("containerd-shim") else 0
    served = {shim: list(shim_of.values()).count(shim) for shim in shim_of.values()}
    out = []
    for p in pods:
        uid = p["metadata"]["uid"]
        members, shim = procs[uid], shim_of[uid]
        ws = ((stats.get(uid) or {}).get("memory") or {}).get("workingSetBytes") or 0
        out.append(
            PodMemory(
                name=p["metadata"]["name"],
                working_set=int(ws),
                processes=len(members),
                tasks=sum(threads(pid) for pid in members),
                pod_pss=sum(pss(pid) for pid in members),
                pause_pss=sum(pss(pid) for pid in pauses[uid]),
                shim_pss=pss(shim) if shim else 0,
                shim_tasks=threads(shim) if shim else 0,
                shim_shared=served[shim] if shim else 0,
            )
        )
    return out


def mem_available() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_tasks() -> int:
    """Threads on the machine (each takes a PID)."""
    return int(_read("/proc/loadavg").split()[3].split("/")[1])


def settle(idle: float) -> None:
    drop_caches()
    time.sleep(idle)


def machine_state() -> dict[str, float]:
    return {"mem_available_mib": mem_available() / MIB, "tasks": machine_tasks()}


def average(values: list[int]) -> float:
    return sum(values) / len(values) / MIB if values else 0.0


def node_reading(kube: Kube, count: int) -> dict[str, Any]:
    pods = node_pods(kube, NS_MEM)
    if len(pods) != count:
        print(f"(note: {len(pods)} running tenant pods, expected {count})", flush=True)
    node = summary(kube).get("node", {})
    per = {
        "working_set_mib": average([p.working_set for p in pods]),
        "shim_pss_mib": average([p.shim_pss for p in pods]),
        "pause_pss_mib": average([p.pause_pss for p in pods]),
        "pod_processes_pss_mib": average([p.pod_pss for p in pods]),
        "processes": sum(p.processes for p in pods) / max(1, len(pods)),
        "tasks_with_shim": sum(p.tasks + p.shim_tasks for p in pods) / max(1, len(pods)),
        "pods_per_shim": max((p.shim_shared for p in pods), default=0),
    }
    # The pause process is in the pod's cgroup (found there), so its memory is
    # already in the working set: the node's spend is working set + shim.
    per["node_spend_mib"] = per["working_set_mib"] + per["shim_pss_mib"]
    total = sum(p.working_set + p.shim_pss for p in pods) / MIB
    return {
        "tenants": len(pods),
        "per_tenant": per,
        "sum_node_spend_mib": total,
        "node_working_set_mib": (node.get("memory") or {}).get("workingSetBytes", 0) / MIB,
        **machine_state(),
        "pods": [asdict(p) for p in pods],
    }


def wait_ready(kube: Kube, ns: str, names: list[str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    want = set(names)
    while time.monotonic() < deadline:
        ready = {
            s["metadata"]["name"]
            for s in kube.list("apps/v1", "StatefulSet", ns)
            if (s.get("status") or {}).get("readyReplicas") == 1
        }
        if want <= ready:
            return
        time.sleep(2)
    raise TimeoutError(f"{len(want - ready)} of {len(want)} tenants in {ns} not ready")


def run_node_memory(kube: Kube, counts: list[int], idle: float) -> dict[str, Any]:
    settle(idle)
    readings: list[dict[str, Any]] = [{"tenants": 0, **machine_state()}]
    apply = apply_server(kube, NS_MEM, FirstMail(kube, NS_MEM))
    made: list[str] = []
    for count in counts:
        new = [f"m-{i}" for i in range(len(made), count)]
        print(f"node memory: {count} tenants ({len(new)} new) ...", flush=True)
        with cf.ThreadPoolExecutor(10) as pool:
            list(pool.map(apply, new))
        made += new
        wait_ready(kube, NS_MEM, made)
        settle(idle)
        readings.append(node_reading(kube, count))
        print(json.dumps({k: v for k, v in readings[-1].items() if k != "pods"}), flush=True)
    return {"idle_seconds": idle, "readings": readings}


# -- the same tenants under podman ------------------------------------------------


def podman_tenant(image: str, root: Path, name: str, edge: str) -> Tenant:
    settings = OperatorSettings(edge_networks=(edge,))
    files = TenantFiles(root, settings, plan=plan_spec())
    files.write(PersonalMailServerSpec.model_validate(spec(name)), {})
    tenant = Tenant(image, "", files, name=f"vpes-bench-node-{name}", publish=False)
    try:
        tenant.start()
        tenant.wait_ready(120)
    except BaseException:
        tenant.remove()
        raise
    return tenant


def podman_reading(tenants: list[Tenant]) -> dict[str, Any]:
    pss_each, conmon_each = [], []
    for t in tenants:
        pss_each.append(container_memory(t.name).pss)
        out = podman("inspect", "--format", "{{.State.ConmonPid}}", t.name, check=False)
        conmon = int(out.stdout.strip() or 0)
        conmon_each.append(pss(conmon) if conmon else 0)
    per = {
        "container_pss_mib": average(pss_each),
        "conmon_pss_mib": average(conmon_each),
    }
    per["with_conmon_mib"] = per["container_pss_mib"] + per["conmon_pss_mib"]
    return {"tenants": len(tenants), "per_tenant": per, **machine_state()}


def run_podman(image: str, counts: list[int], idle: float) -> dict[str, Any]:
    edge = f"{podman_gateway()}/32"
    tenants: list[Tenant] = []
    settle(idle)
    readings: list[dict[str, Any]] = [{"tenants": 0, **machine_state()}]
    with tempfile.TemporaryDirectory(prefix="vpes-bench-node-") as tmp:
        try:
            for count in counts:
                print(f"podman: {count} tenants ...", flush=True)
                names = [f"p{i}" for i in range(len(tenants), count)]
                with cf.ThreadPoolExecutor(4) as pool:
                    futures = [
                        pool.submit(podman_tenant, image, Path(tmp) / n, n, edge) for n in names
                    ]
                    for f in futures:
                        tenants.append(f.result())
                settle(idle)
                readings.append(podman_reading(tenants))
                print(json.dumps(readings[-1]), flush=True)
        finally:
            with cf.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda t: t.remove(), tenants))
    return {"idle_seconds": idle, "readings": readings}


# -- 3. slope and density ----------------------------------------------------------


def slope(readings: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> float:
    a, b = readings[-2], readings[-1]
    return (value(b) - value(a)) / float(b["tenants"] - a["tenants"])


def density(kube: Kube, node: dict[str, Any]) -> dict[str, Any]:
    """What a node could hold: the measured slope and the node's facts, then caps()."""
    readings = [r for r in node["readings"] if r["tenants"]]
    if len(readings) < 2:
        return {}
    status = (kube.get("v1", "Node", None, NODE_NAME) or {})["status"]
    others = [
        p
        for p in kube.list("v1", "Pod")
        if p["spec"].get("nodeName") == NODE_NAME
        and p["metadata"]["namespace"] != NS_MEM
        and (p.get("status") or {}).get("phase") in ("Running", "Pending")
    ]
    inputs = {
        # Per additional tenant, 20 -> 50: the sum of working set + shim (robust),
        # and the drop of MemAvailable (moved by anything else on the machine).
        "mib_per_tenant_sum": slope(readings, lambda r: r["sum_node_spend_mib"]),
        "mib_per_tenant_mem_available": -slope(readings, lambda r: r["mem_available_mib"]),
        "tasks_per_tenant": readings[-1]["per_tenant"]["tasks_with_shim"],
        "mem_available_no_tenants_mib": node["readings"][0]["mem_available_mib"],
        "tasks_no_tenants": node["readings"][0]["tasks"],
        "mem_total_mib": mib(status["capacity"]["memory"]),
        "allocatable_cpu_m": milli(status["allocatable"]["cpu"]),
        "allocatable_memory_mib": mib(status["allocatable"]["memory"]),
        "others_cpu_m": sum(milli(c) for p in others for c in requests(p, "cpu")),
        "others_memory_mib": sum(mib(c) for p in others for c in requests(p, "memory")),
        "other_pods": len(others),
        "max_pods": int(status["capacity"]["pods"]),
        "pid_max": int(_read("/proc/sys/kernel/pid_max").strip()),
        "pod_subnet": POD_SUBNET,
        "tenant_requests": RESOURCES["requests"],
    }
    return {"inputs": inputs, **caps(inputs)}


def caps(i: dict[str, Any]) -> dict[str, Any]:
    """Tenants per node by each limit (what is free with no tenant over what each
    more one takes), and the first limit once kubelet's maxPods is raised."""
    free_mib = i["mem_available_no_tenants_mib"] - EVICTION_HARD_MIB
    by_avail = i["mib_per_tenant_mem_available"]
    prefix = int(i["pod_subnet"].split("/")[1])
    limits: dict[str, int | None] = {
        "memory (working set + shim slope)": int(free_mib / i["mib_per_tenant_sum"]),
        # Meaningless when other work on the machine moved MemAvailable meanwhile.
        "memory (MemAvailable slope)": int(free_mib / by_avail) if by_avail > 0 else None,
        "scheduler: CPU requests": int(
            (i["allocatable_cpu_m"] - i["others_cpu_m"]) // milli(i["tenant_requests"]["cpu"])
        ),
        "scheduler: memory requests": int(
            (i["allocatable_memory_mib"] - i["others_memory_mib"])
            // mib(i["tenant_requests"]["memory"])
        ),
        "PIDs (kernel.pid_max)": int(
            (i["pid_max"] - i["tasks_no_tenants"]) / i["tasks_per_tenant"]
        ),
        f"pod IPs ({i['pod_subnet']}, host-local)": 2 ** (32 - prefix) - 3 - i["other_pods"],
        "kubelet maxPods (as configured)": i["max_pods"] - i["other_pods"],
    }
    raised = {
        k: v
        for k, v in limits.items()
        if v is not None and "maxPods" not in k and "MemAvailable" not in k
    }
    return {
        "tenants_per_node": limits,
        "first_limit_with_max_pods_raised": min(raised, key=lambda k: raised[k]),
    }


def requests(pod: dict[str, Any], resource: str) -> list[str]:
    return [
        ((c.get("resources") or {}).get("requests") or {}).get(resource, "0")
        for c in pod["spec"]["containers"]
    ]


def milli(q: str) -> float:
    return float(q[:-1]) if q.endswith("m") else float(q) * 1000


def mib(q: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / MIB, "M": 1e6 / MIB, "G": 1e9 / MIB}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q) / MIB


# -- the run -----------------------------------------------------------------------


def node_running() -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", KUBELET_HEALTHZ_PORT)) == 0


def wait_for_free_node(limit: float) -> None:
    deadline = time.monotonic() + limit
    while node_running():
        if time.monotonic() > deadline:
            raise SystemExit("another dev node still runs on this machine; try later")
        print("another dev node runs here (its kubelet answers); waiting a minute ...", flush=True)
        time.sleep(60)


def settings_env(tenant_image: str) -> dict[str, str]:
    """The operator's environment; the baseline builds with the same settings."""
    return {
        "VPES_TENANT_IMAGE": tenant_image,
        "VPES_EDGE_NETWORKS": POD_CIDR,
        "VPES_DNS_DEFAULT_PROVIDER": "manual",
        # Production cost, as bench/reconcile.py.
        "VPES_BCRYPT_ROUNDS": "10",
        "VPES_DKIM_KEY_BITS": "2048",
    }


def delete_tenants(cluster: Cluster, kube: Kube, namespaces: list[str]) -> None:
    """Remove every tenant of ``namespaces`` and wait until the node ran their pods down."""
    for ns in namespaces:
        for s in kube.list(API_VERSION, "PersonalMailServer", ns):
            kube.delete(API_VERSION, "PersonalMailServer", ns, s["metadata"]["name"])
        for cm in kube.list("v1", "ConfigMap", ns):
            if cm["metadata"]["name"].endswith("-owner"):
                kube.delete("v1", "ConfigMap", ns, cm["metadata"]["name"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        left = sum(len(kube.list("apps/v1", "StatefulSet", ns)) for ns in namespaces)
        for ns in namespaces:
            cluster.kubectl(
                "delete", "pods", "--all", "-n", ns, "--force", "--grace-period=0",
                "--wait=false", check=False, timeout=60,
            )  # fmt: skip
        on_node = len([p for p in kube.list("v1", "Pod") if p["spec"].get("nodeName")])
        sandboxes = len([pid for pid in pids() if comm(pid) == "pause"])
        if left == 0 and sandboxes <= on_node:
            return
        time.sleep(3)
    print("(note: tenants of the first-mail phase still being removed)", flush=True)


def operator(
    cluster: Cluster, env: dict[str, str], log_dir: Path
) -> AbstractContextManager[OperatorProcess]:
    """The operator as the e2e tier runs it (a host process, the chart's RBAC)."""
    image = env["VPES_TENANT_IMAGE"]
    extra = {k: v for k, v in env.items() if k != "VPES_TENANT_IMAGE"}
    return contextmanager(start_operator)(cluster, image, log_dir, **extra)


class Results:
    def __init__(self, args: argparse.Namespace) -> None:
        stamp = dt.datetime.now(dt.UTC)
        self.path = RESULTS / f"node-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
        self.data: dict[str, Any] = {
            "when": stamp.isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "mem_total_mib": round(mem_total() / MIB)},
            "args": {k: v for k, v in vars(args).items() if k != "out"},
        }

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        RESULTS.mkdir(exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def run(args: argparse.Namespace) -> Results:
    counts = [int(c) for c in args.tenants.split(",")]
    results = Results(args)
    image = build_images("tenant")["tenant"]
    results.put("tenant_image", image)
    env = settings_env(image)
    settings = OperatorSettings.from_env(env)
    logs = RESULTS / f"{results.path.stem}-operator"
    with tempfile.TemporaryDirectory(prefix="vpes-bench-node-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster", nodes=0, node=True)
        try:
            start_when_free(cluster, args.wait_minutes * 60)
            cluster.real_node().import_images([image])
            api = cluster.api_client()
            kube = Kube(api, field_manager="bench")
            core = client.CoreV1Api(api)
            with operator(cluster, env, logs):  # installs the CRDs first
                kube.apply(plan_body(PLAN, resources=RESOURCES, backup={"enabled": False}))
                for ns in (NS_OP, NS_BASE, NS_MEM):
                    make_namespace(core, ns)
                results.put("first_mail", run_first_mail(kube, settings, args.single, args.burst))
                print("removing the first-mail tenants ...", flush=True)
                delete_tenants(cluster, kube, [NS_OP, NS_BASE])
                node = run_node_memory(kube, counts, args.idle)
                results.put("node_memory", node)
                results.put("density", density(kube, node))
        finally:
            cluster.stop()
    if not args.skip_podman:  # after the node: nothing of its own then runs beside
        results.put("podman", run_podman(image, counts, args.idle))
    return results


def start_when_free(cluster: Cluster, limit: float) -> None:
    """Start the cluster once no other dev node runs (another session may start one
    at any time: wait again if it won the race)."""
    deadline = time.monotonic() + limit
    while True:
        wait_for_free_node(max(60.0, deadline - time.monotonic()))
        try:
            cluster.start()
            return
        except ClusterError as exc:
            if "another dev node" not in str(exc) or time.monotonic() > deadline:
                raise


# -- tables ------------------------------------------------------------------------


def f1(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float | int) else "-"


def table(data: dict[str, Any]) -> str:
    lines: list[str] = []
    fm = data.get("first_mail")
    if fm:
        lines += [
            "| servers at once | operator p50 (s) | operator p95 (s) | baseline p50 (s) "
            "| baseline p95 (s) | operator/baseline (p50) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fm["rows"]:
            o, b = r["operator"], r["baseline"]
            lines.append(
                f"| {r['servers_at_once']} | {f1(o['p50_s'])} | {f1(o['p95_s'])} "
                f"| {f1(b['p50_s'])} | {f1(b['p95_s'])} | {r['ratio_p50']} |"
            )
        lines.append("")
    node, pod = data.get("node_memory"), data.get("podman")
    if node:
        lines += [
            "| tenants | kubelet working set | + shim PSS | = node spend | pause PSS (in the "
            "working set) | pod processes PSS | podman container PSS | + conmon "
            "| MemAvailable drop, node / podman |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        pods = {r["tenants"]: r for r in (pod or {}).get("readings", [])}
        n0 = node["readings"][0]["mem_available_mib"]
        p0 = pods[0]["mem_available_mib"] if 0 in pods else None
        for r in node["readings"][1:]:
            x, p = r["per_tenant"], pods.get(r["tenants"])
            pp = (p or {}).get("per_tenant", {})
            drop_p = (p0 - p["mem_available_mib"]) / r["tenants"] if p and p0 else None
            lines.append(
                f"| {r['tenants']} | {f1(x['working_set_mib'])} | {f1(x['shim_pss_mib'])} "
                f"| **{f1(x['node_spend_mib'])}** | {f1(x['pause_pss_mib'])} "
                f"| {f1(x['pod_processes_pss_mib'])} | {f1(pp.get('container_pss_mib'))} "
                f"| {f1(pp.get('with_conmon_mib'))} "
                f"| {f1((n0 - r['mem_available_mib']) / r['tenants'])} / {f1(drop_p)} |"
            )
        lines.append("(MiB per tenant)")
        lines.append("")
    d = data.get("density")
    if d:
        i = d["inputs"]
        lines += [
            f"Slope 20 -> 50: {i['mib_per_tenant_sum']:.1f} MiB per tenant (working set + "
            f"shim), {i['mib_per_tenant_mem_available']:.1f} MiB (MemAvailable drop); "
            f"{i['tasks_per_tenant']:.1f} PIDs per tenant (threads, shim included).",
            "",
            "| what caps tenants per node | tenants |",
            "|---|---:|",
        ]
        for k, v in d["tenants_per_node"].items():
            lines.append(f"| {k} | {v} |")
        lines.append(f"First limit once maxPods is raised: {d['first_limit_with_max_pods_raised']}")
    return "\n".join(lines)


def stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3, help="repetitions of 1 server")
    parser.add_argument("--burst", type=int, default=20, help="servers created at once")
    parser.add_argument("--tenants", default="20,50", help="idle tenants measured")
    parser.add_argument("--idle", type=float, default=40, help="seconds idle before a reading")
    parser.add_argument("--skip-podman", action="store_true")
    parser.add_argument("--wait-minutes", type=float, default=60, help="for another node")
    parser.add_argument("--table", type=Path, help="print the tables of a results file, only")
    args = parser.parse_args()
    if args.table:
        data = json.loads(args.table.read_text())
        if "inputs" in data.get("density", {}):
            data["density"].update(caps(data["density"]["inputs"]))
        print(table(data))
        return
    # Stopped by a signal (even when started in the background, where SIGINT is
    # ignored), the finally blocks still stop the operator, the tenants and the cluster.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    results = run(args)
    text = table(results.data)
    results.put("table", text)
    print(text)
    print(f"\nwritten to {results.path}")


if __name__ == "__main__":
    main()
