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


def changes(r: dict[str, Any]) -> list[str]:
    """What used to wait for a listing, and what a change costs, at 1 and N servers."""
    one, many, n = r["one"], r["many"], r["args"]["servers"]
    rows = [
        f"| watched (informer) | 1 server | {n:,} servers | {n:,}/1 |",
        "|---|---:|---:|---:|",
    ]

    def row(name: str, a: float, b: float, unit: str) -> str:
        return f"| {name} | {a:,} {unit} | {b:,} {unit} | {ratio(a, b)} |"

    ia, ib = one["idle"], many["idle"]
    da, db = one["domain_added"], many["domain_added"]
    fa, fb = one["floor"], many["floor"]
    idle_s = r["args"]["idle_seconds"]
    rows += [
        f"| a request after {idle_s:g} s without any (each; lists meanwhile) "
        f"| {' / '.join(map(str, ia['request_ms']))} ms; {ia['listings']} "
        f"| {' / '.join(map(str, ib['request_ms']))} ms; {ib['listings']} | |",
        row("a domain added: served after", da["served_after_s"], db["served_after_s"], "s"),
        row("its slowest request meanwhile", da["slowest_ms"], db["slowest_ms"], "ms"),
        f"| lists the API server answered meanwhile | {da['listings']} | {db['listings']} | |",
        row(
            "floor: raw list through the web SA, p50",
            fa["raw_list"]["p50_ms"],
            fb["raw_list"]["p50_ms"],
            "ms",
        ),
        row(
            "the index built from the kept servers (a rebuild), p50",
            fa["build_index"]["p50_ms"],
            fb["build_index"]["p50_ms"],
            "ms",
        ),
        row(
            "servers as listed, in memory", fa["held"]["whole_kib"], fb["held"]["whole_kib"], "KiB"
        ),
        row("servers as kept (slim_server)", fa["held"]["slim_kib"], fb["held"]["slim_kib"], "KiB"),
        f"| servers / domains / keys | {fa['servers']} / {fa['domains']} / {fa['keys']} "
        f"| {fb['servers']:,} / {fb['domains']:,} / {fb['keys']:,} | |",
        row("the list's JSON", fa["list_bytes"], fb["list_bytes"], "B"),
    ]
    return rows


def memory(r: dict[str, Any]) -> list[str]:
    n, pop = r["args"]["servers"], r["populating"]
    rows = [
        "| vpes-web process (python -m vpes_panel.wellknown) | RSS | PSS | PSS anon | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, m in [
        ("after start", r["memory_start"]),
        ("1 server: watched, first index built", r["memory_synced"]),
        ("1 server: after the requests", r["one"]["memory_after_pages"]),
        (f"{n:,} servers: after the requests", r["many"]["memory_after_pages"]),
    ]:
        rows.append(
            f"| {label} | {m['rss_mib']} MiB | {m['pss_mib']} MiB | {m['pss_anon_mib']} MiB "
            f"| {m['peak_rss_mib']} MiB |"
        )
    rows.append(
        f"| while {n - 1:,} servers were created (peak over RSS before; kept; lists) "
        f"| +{pop['transient_mib']} MiB | | +{pop['retained_mib']} MiB kept | "
        f"{pop['peak_rss_mib']} MiB; {pop['listings']} lists |"
    )
    restart = r["restart"]
    for label, m in [
        (f"restarted at {n:,} servers: after start", restart["memory_start"]),
        (
            f"restarted: first list, index built, served after {restart['served_after_s']} s "
            f"({restart['listings']} lists)",
            restart["memory_synced"],
        ),
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
        f"{r['settle_s']} s until the controller-manager was done with their namespaces; "
        f"the newest served {r['caught_up_s']} s after that).",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['mem_total_mib']:,} MiB, shared "
        "by the control plane, vpes-web and the benchmark's client.",
        f"One server object {r['server_bytes']:,} B (JSON); the OpenPGP key "
        f"{r['key_bytes']['armored']:,} B armored, {r['key_bytes']['binary']:,} B served.",
    ]
    return "\n".join(
        [
            f"hosted_settle_seconds {a['settle_seconds']:g} (the chart's default):",
            "",
            *requests(r, "steady"),
            "",
            *changes(r),
            "",
            *memory(r),
            "",
            *notes,
        ]
    )
