"""The markdown tables of ``bench/node.py`` from its results."""

from __future__ import annotations

from typing import Any


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
