"""The markdown table bench/backup.py prints."""

from __future__ import annotations

from typing import Any

MB = 1_000_000


def human(n: float | None) -> str:
    if n is None:
        return ""
    if n >= 10 * MB:
        return f"{n / MB:,.1f} MB"
    if n >= 10_000:
        return f"{n / 1000:,.1f} kB"
    return f"{n:,.0f} B"


def table(results: dict[str, Any]) -> str:
    box = results["mailbox"]
    lines = [
        f"mailbox: {box['messages']:,} messages of {results['message_kib']} KiB, "
        f"{box['files']:,} files, {box['bytes'] / MB:,.1f} MB; "
        f"page cache {'dropped before each run' if results['cold'] else 'warm'}; "
        f"{results['repeats']} runs each, interleaved; "
        f"load average {results['load_before']:.1f} before, {results['load_after']:.1f} after",
        f"{results['restic']}; repository version {results.get('repository_version', '?')}; "
        f"a Job's container alone (same flags, /bin/true): {results['container_start_s']:.2f} s; "
        f"moto peak RSS {results['moto_peak_rss_mib']:,.0f} MiB",
        "",
        "| tool | case | s median (min..max) | MB/s median (min..max) | bytes out | "
        "bucket growth | CPU s: tool / moto / machine | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def median(r: dict[str, Any], key: str) -> Any:
        return r[key]["median"] if r[key] else None

    for r in results["rows"]:
        s, rate = r["seconds"], r["mb_per_s"]
        tool_cpu, peak = median(r, "tool_cpu"), median(r, "peak_mib")
        cpu = f"{tool_cpu:.1f}" if tool_cpu is not None else "?"
        cpu += f" / {median(r, 'moto_cpu'):.1f} / {median(r, 'machine_cpu'):.1f}"
        lines.append(
            f"| {r['tool'].replace('|', chr(92) + '|')} | {r['case']} | "
            f"{s['median']:.1f} ({s['min']:.1f}..{s['max']:.1f}) | "
            f"{rate['median']:.1f} ({rate['max']:.1f}..{rate['min']:.1f}) | "
            f"{human(median(r, 'written'))} | {human(median(r, 'bucket'))} | {cpu} | "
            f"{f'{peak:.0f}' if peak is not None else ''} |"
        )
    lines += [
        "",
        "bytes out: the archive; restic's addedBytes (before compression); the bytes restored.",
        "bucket growth: the repository's prefix in the bucket, before and after (boto3).",
        "CPU s: tool = the Job container's cgroup (restic, sh, jq) or tar + gzip; moto_server;",
        "the whole machine's busy CPU (2 cores, shared with other work). peak MiB: the Job",
        "container's anonymous memory + tmpfs (restic's cache), sampled every 0.1 s; its limit",
        f"is the Job's ({results.get('job_memory_limit', '?')}). MB = 10^6 bytes.",
    ]
    return "\n".join(lines)
