"""The markdown tables of ``bench/web.py``'s results."""

from __future__ import annotations

from typing import Any


def ratio(a: float, b: float) -> str:
    return f"{round(b / a, 2)}" if a else "-"


def requests(r: dict[str, Any], phase: str) -> list[str]:
    """p50/p95 of each request at 1 and N servers, and their ratios."""
    one, many, n = r["one"][phase], r["many"][phase], r["args"]["servers"]
    rows = [
        f"| request | 1 server p50 | p95 | {n:,} servers p50 | p95 | p99 | max "
        f"| {n:,}/1 p50 | {n:,}/1 p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in one["probes"].items():
        b = many["probes"][name]
        rows.append(
            f"| {name} | {a['p50_ms']} ms | {a['p95_ms']} ms | {b['p50_ms']} ms "
            f"| {b['p95_ms']} ms | {b['p99_ms']} ms | {b['max_ms']} ms "
            f"| {ratio(a['p50_ms'], b['p50_ms'])} | {ratio(a['p95_ms'], b['p95_ms'])} |"
        )
    na, nb = (next(iter(x["probes"].values()))["n"] for x in (one, many))
    rows.append(
        f"| (requests of each; listings the API server answered meanwhile) | {na}; "
        f"{one['listings']} in {one['seconds']} s | | {nb}; {many['listings']} in "
        f"{many['seconds']} s | | | | | |"
    )
    return rows


def listing(r: dict[str, Any]) -> list[str]:
    one, many, n = r["one"], r["many"], r["args"]["servers"]
    rows = [
        f"| one full listing | 1 server | {n:,} servers | {n:,}/1 |",
        "|---|---:|---:|---:|",
    ]

    def row(name: str, a: float, b: float, unit: str) -> str:
        return f"| {name} | {a:,} {unit} | {b:,} {unit} | {ratio(a, b)} |"

    fa, fb = one["floor"], many["floor"]
    la, lb = one["listing"], many["listing"]
    rows += [
        row("the request that lists (GET autoconfig)", la["request_ms"], lb["request_ms"], "ms"),
        row(
            "its transient memory (peak RSS over RSS before)",
            la["transient_mib"],
            lb["transient_mib"],
            "MiB",
        ),
        row("RSS kept after it", la["retained_mib"], lb["retained_mib"], "MiB"),
        row(
            "floor: raw list through the web SA, p50",
            fa["raw_list"]["p50_ms"],
            fb["raw_list"]["p50_ms"],
            "ms",
        ),
        row(
            "floor: the index built from it (domains, keys), p50",
            fa["build_index"]["p50_ms"],
            fb["build_index"]["p50_ms"],
            "ms",
        ),
        f"| servers / domains / keys listed | {fa['servers']} / {fa['domains']} / {fa['keys']} "
        f"| {fb['servers']:,} / {fb['domains']:,} / {fb['keys']:,} | |",
        row("the list's JSON", fa["list_bytes"], fb["list_bytes"], "B"),
    ]
    return rows


def memory(r: dict[str, Any]) -> list[str]:
    n = r["args"]["servers"]
    rows = [
        "| vpes-web process (python -m vpes_panel.wellknown) | RSS | PSS | PSS anon | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, m in [
        (f"hosted_seconds {r['args']['hosted_seconds']:g}: after start", r["memory_start"]),
        ("1 server: after the requests", r["one"]["memory_after_pages"]),
        (f"{n:,} servers: after the requests", r["many"]["memory_after_pages"]),
        (f"hosted_seconds {r['args']['relist_seconds']:g}: after start", r["relist_memory_start"]),
        ("1 server: after the requests", r["one"]["relisting_memory"]),
        (f"{n:,} servers: after the requests", r["many"]["relisting_memory"]),
    ]:
        rows.append(
            f"| {label} | {m['rss_mib']} MiB | {m['pss_mib']} MiB | {m['pss_anon_mib']} MiB "
            f"| {m['peak_rss_mib']} MiB |"
        )
    return rows


def table(r: dict[str, Any]) -> str:
    a, n = r["args"], r["args"]["servers"]
    notes = [
        f"{a['requests']} requests of each after {a['warmup']} of warm-up, one client, "
        f"interleaved; {a['listings']} floor listings. The 1-server figures are taken "
        f"first, then {n - 1:,} servers are created beside it ({r['populate_s']} s, and "
        f"{r['settle_s']} s until the controller-manager was done with their namespaces).",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['mem_total_mib']:,} MiB, shared "
        "by the control plane, both vpes-web processes and the benchmark's client.",
        f"One server object {r['server_bytes']:,} B (JSON); the OpenPGP key "
        f"{r['key_bytes']['armored']:,} B armored, {r['key_bytes']['binary']:,} B served.",
    ]
    return "\n".join(
        [
            f"hosted_seconds {a['hosted_seconds']:g} (the chart's default):",
            "",
            *requests(r, "steady"),
            "",
            f"hosted_seconds {a['relist_seconds']:g} (requests meet listings; at least "
            f"{a['relist_for']:g} s of requests):",
            "",
            *requests(r, "relisting"),
            "",
            *listing(r),
            "",
            *memory(r),
            "",
            *notes,
        ]
    )
