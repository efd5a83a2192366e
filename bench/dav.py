"""What calendars and contacts cost per tenant: the dav container (images/dav:
Radicale started on demand by vpes-dav) next to the tenant container it sits
beside (Postfix + Dovecot) and next to Radicale kept running (the same image,
Radicale as its entrypoint: what the container would cost without vpes-dav).

Memory is measured as bench.memory measures the tenant: PSS and anonymous memory
summed over the container's processes, page cache dropped, after ``--idle``
seconds. Rows:

1. one tenant container (what a calendar plan adds to);
2. ``--count`` dav containers side by side: idle after start; right after each
   mailbox used them (a calendar with ``--events`` events written and listed
   back, an address book with a contact: Radicale running); once Radicale has
   stopped for lack of connections (VPES_DAV_IDLE, here ``--stop-after`` s);
3. ``--count`` always-running Radicales side by side, idle after the same use.

Time: ``--requests`` PROPFIND (Depth 0, a warm login) through vpes-dav's
listener next to Radicale's own port, p50/p95 and their ratio; and the first
request to a stopped Radicale (median of 5 cold starts).

The shared part (vpes-web's DAV proxy) is one process for the whole fleet: its
memory is in `make bench-web`. Per tenant, 100 and 1,000 tenants cost 100 and
1,000 times the per-container figures.

    python -m bench.dav [--count 20] [--idle 20] [--events 50] [--requests 200]

Prints markdown tables and writes bench/results/dav-<time>.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from caldav.davclient import DAVClient

from bench.memory import MIB, Box, container_memory, remove, report, settle, start_tenant
from bench.stats import pct
from tests.dav_samples import ADDRESSBOOK_MKCOL, contact, event
from tests.images.dav_support import Dav, bcrypt_hashes
from tests.images.tenant import build_images, container_address, podman, podman_gateway

USER, PASSWORD = "alice@example.org", "alice-bench-1"
DIRECT_PORT = 5233  # Radicale's own port in the image (vpes-dav listens on 5232)


def start(image: str, root: Path, *, always_on: bool, stop_after: int) -> tuple[Dav, str]:
    """A dav container on the podman network; its base URL (vpes-dav's listener, or
    with `always_on` Radicale itself, listening on every address)."""
    dav = Dav(image, "", root)
    dav.write_passwd(bcrypt_hashes({USER: PASSWORD}))
    dav.prepare_data()
    args = [
        "run", "--detach", "--name", dav.name, "--read-only", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "--tmpfs", "/tmp:rw,mode=1777,size=16m",
        "--volume", f"{dav.secrets_dir}:/etc/vpes/secrets:ro",
        "--volume", f"{dav.data_dir}:/var/lib/vpes-dav",
        "--env", f"VPES_DAV_IDLE={stop_after}", "--env", "VPES_DAV_TICK=1",
    ]  # fmt: skip
    if always_on:
        args += ["--entrypoint", "python3", image, "-m", "radicale"]
        args += ["--server-hosts", f"0.0.0.0:{DIRECT_PORT}"]
        args += ["--storage-filesystem-folder", "/var/lib/vpes-dav/collections"]
    else:
        args.append(image)
    podman(*args)
    dav.host = container_address(dav.name)
    url = f"http://{dav.host}:{DIRECT_PORT if always_on else 5232}"
    deadline = time.monotonic() + 60
    while propfind(url) != 207:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dav.name} did not answer:\n{dav.logs()}")
        time.sleep(0.3)
    return dav, url


def propfind(url: str) -> int:
    try:
        r = httpx.request(
            "PROPFIND", f"{url}/{USER}/", auth=(USER, PASSWORD), headers={"Depth": "0"},
            timeout=30,
        )  # fmt: skip
    except httpx.HTTPError:
        return 0
    return r.status_code


def use(url: str, events: int) -> None:
    client = DAVClient(url=f"{url}/", username=USER, password=PASSWORD)
    cal = client.principal().make_calendar(name="Bench")  # type: ignore[no-untyped-call]
    for i in range(events):
        cal.save_event(event(uuid.uuid4(), f"Event {i}", hour=i % 22))
    assert len(cal.events()) == events
    book = f"{url}/{USER}/contacts/"
    with httpx.Client(auth=(USER, PASSWORD), timeout=30) as http:
        http.request("MKCOL", book, content=ADDRESSBOOK_MKCOL).raise_for_status()
        uid = uuid.uuid4()
        http.put(f"{book}{uid}.vcf", content=contact(uid)).raise_for_status()


def per_container(names: list[str]) -> dict[str, float]:
    ms = [container_memory(n) for n in names]
    return {
        "containers": len(ms),
        "pss_mib": sum(m.pss for m in ms) / len(ms) / MIB,
        "anon_mib": sum(m.anon for m in ms) / len(ms) / MIB,
        "processes": sum(m.processes for m in ms) / len(ms),
    }


def latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(auth=(USER, PASSWORD), timeout=30) as http:
        for _ in range(n):
            t = time.perf_counter()
            r = http.request("PROPFIND", f"{url}/{USER}/", headers={"Depth": "0"})
            out.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 207
    return out


def cold_starts(dav: Dav, url: str, stop_after: int, times: int = 5) -> list[float]:
    out = []
    for _ in range(times):
        deadline = time.monotonic() + stop_after + 30
        while "stopped Radicale" not in dav.logs().rsplit("started Radicale", 1)[-1]:
            if time.monotonic() > deadline:
                raise TimeoutError("Radicale did not stop when idle")
            time.sleep(0.5)
        t = time.perf_counter()
        assert propfind(url) == 207
        out.append((time.perf_counter() - t) * 1000)
    return out


def memory_rows(image: str, tmp: Path, args: argparse.Namespace) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    tenant: Box = start_tenant(build_images("tenant")[0], tmp / "tenant", podman_gateway())
    try:
        settle(args.idle)
        rows.append({"image": "tenant", "case": "idle", **per_container([tenant.name])})
    finally:
        remove(tenant)
    for always_on in (False, True):
        kind = "radicale always on" if always_on else "dav (vpes-dav)"
        started = [
            start(image, tmp / f"{always_on}-{i}", always_on=always_on, stop_after=args.stop_after)
            for i in range(args.count)
        ]
        names = [d.name for d, _ in started]
        try:
            if not always_on:
                time.sleep(args.stop_after + 3)  # the start's own request: stopped again
                settle(args.idle)
                rows.append({"image": kind, "case": "idle", **per_container(names)})
            for _, url in started:
                use(url, args.events)
            for _, url in started:  # each Radicale running (used within VPES_DAV_IDLE)
                assert propfind(url) == 207
            case = f"after {args.events} events + 1 contact, Radicale running"
            rows.append({"image": kind, "case": case, **per_container(names)})
            if not always_on:
                time.sleep(args.stop_after + 3)
                settle(args.idle)
                rows.append({"image": kind, "case": "after use, idle", **per_container(names)})
            else:
                settle(args.idle)
                rows.append({"image": kind, "case": "after use, idle", **per_container(names)})
        finally:
            for d, _ in started:
                d.remove()
    return rows


def timing(image: str, tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    (dav, via), (direct, own) = (
        start(image, tmp / "t-dav", always_on=False, stop_after=args.stop_after),
        start(image, tmp / "t-own", always_on=True, stop_after=args.stop_after),
    )
    try:
        latencies(via, 20), latencies(own, 20)  # warm both (logins remembered)
        a, b = latencies(via, args.requests), latencies(own, args.requests)
        cold = cold_starts(dav, via, args.stop_after)
    finally:
        dav.remove()
        direct.remove()
    return {
        "via_vpes_dav_ms": {"p50": pct(a, 50), "p95": pct(a, 95)},
        "radicale_direct_ms": {"p50": pct(b, 50), "p95": pct(b, 95)},
        "p50_ratio": pct(a, 50) / pct(b, 50),
        "cold_start_ms_median": statistics.median(cold),
        "cold_start_ms": cold,
    }


def table(results: dict[str, object]) -> str:
    rows = results["rows"]
    assert isinstance(rows, list)
    lines = [
        "| container | case | side by side | PSS MiB each | anon MiB each | processes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['case']} | {r['containers']} | {r['pss_mib']:.1f} | "
            f"{r['anon_mib']:.1f} | {r['processes']:.1f} |"
        )
    t = results["timing"]
    assert isinstance(t, dict)
    via, own = t["via_vpes_dav_ms"], t["radicale_direct_ms"]
    lines += [
        "",
        "| PROPFIND (warm login) | p50 ms | p95 ms |",
        "|---|---:|---:|",
        f"| through vpes-dav's listener | {via['p50']:.1f} | {via['p95']:.1f} |",
        f"| Radicale's own port | {own['p50']:.1f} | {own['p95']:.1f} |",
        "",
        f"p50 ratio x{t['p50_ratio']:.2f}; first request to a stopped Radicale: "
        f"{t['cold_start_ms_median']:.0f} ms (median of 5)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="containers side by side")
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle before measuring")
    parser.add_argument("--events", type=int, default=50, help="events each calendar gets")
    parser.add_argument("--requests", type=int, default=200, help="timed PROPFINDs")
    parser.add_argument("--stop-after", type=int, default=10, help="VPES_DAV_IDLE for the run")
    args = parser.parse_args()
    image = build_images("dav")[0]
    with tempfile.TemporaryDirectory(prefix="vpes-bench-dav-") as tmp:
        rows = memory_rows(image, Path(tmp), args)
        results: dict[str, object] = {**vars(args), "rows": rows}
        results["timing"] = timing(image, Path(tmp), args)
    report("dav", results, table(results))


if __name__ == "__main__":
    main()
