"""Phase 3 of ``bench/node.py``: the slope from the memory readings and what caps
tenants per node (memory, the scheduler's requests, PIDs, pod IPs, maxPods)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vpes_devcluster.node_config import NODE_NAME, POD_SUBNET
from vpes_operator.clients.kube import Kube

from bench.node_plan import NS_MEM, RESOURCES
from bench.node_proc import MIB, read

EVICTION_HARD_MIB = 100  # the dev kubelet's evictionHard memory.available


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
        "pid_max": int(read("/proc/sys/kernel/pid_max").strip()),
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
