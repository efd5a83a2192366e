"""Phase 2 of ``bench/node.py``: the memory of idle tenants on the node (the
kubelet's working set of each pod, the PSS of its shim and pause process, the
node's MemAvailable), and of the same tenants under podman."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vpes_devcluster.node_config import NODE_NAME
from vpes_operator.clients.kube import Kube
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_operator.settings import OperatorSettings

from bench.memory import container_memory, settle
from bench.node_mail import FirstMail, apply_server
from bench.node_plan import NS_MEM, plan_spec, spec
from bench.node_proc import MIB, comm, machine_state, memory_cgroup, pids, ppid, pss, threads
from tests.images.tenant import Tenant, TenantFiles, podman, podman_gateway

POD_IN_CGROUP = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


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
