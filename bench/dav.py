"""What calendars and contacts cost per tenant: the dav container (Radicale,
images/dav) next to the tenant container it sits beside (Postfix + Dovecot).

Measured as bench.memory measures the tenant: PSS and anonymous memory summed
over the container's processes, page cache dropped, after ``--idle`` seconds.

1. one tenant container (the baseline a calendar plan adds to);
2. 1 and ``--count`` dav containers side by side, idle after start (per
   container: what the N-th tenant with calendars costs);
3. the same containers after each mailbox used them: a calendar with
   ``--events`` events written, listed back, and an address book with a contact,
   then idle again.

The shared part (vpes-web's DAV proxy) is one process for the whole fleet: its
memory is in `make bench-web`. Radicale is one process per calendar tenant, so
100 and 1,000 tenants cost 100 and 1,000 times the per-container figure (the
interpreter's pages are shared through the page cache, which PSS splits).

    python -m bench.dav [--count 20] [--idle 20] [--events 50]

Prints a markdown table and writes bench/results/dav-<time>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import httpx
from caldav.davclient import DAVClient

from bench.memory import MIB, Box, container_memory, remove, report, settle, start_tenant
from tests.images.dav_support import Dav, bcrypt_hashes
from tests.images.tenant import build_images, container_address, podman, podman_gateway

PASSWORDS = {"alice@example.org": "alice-bench-1"}
EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//vpes bench//EN\r\nBEGIN:VEVENT\r\n"
    "UID:{uid}\r\nDTSTAMP:20261206T120000Z\r\nDTSTART:20261224T{h:02d}0000Z\r\n"
    "SUMMARY:Event {i}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
CARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Dana\r\nEND:VCARD\r\n"
BOOK = (
    '<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
    "<D:set><D:prop><D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>"
    "</D:prop></D:set></D:mkcol>"
)


def start_dav(image: str, root: Path) -> Dav:
    dav = Dav(image, "", root)
    dav.write_passwd(bcrypt_hashes(PASSWORDS))
    dav.prepare_data()
    args = [
        "run", "--detach", "--name", dav.name, "--read-only", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "--tmpfs", "/tmp:rw,mode=1777,size=16m",
        "--volume", f"{dav.secrets_dir}:/etc/vpes/secrets:ro",
        "--volume", f"{dav.data_dir}:/var/lib/vpes-dav",
        image,
    ]  # fmt: skip
    podman(*args)
    dav.host = container_address(dav.name)
    dav.wait_ready(60)
    return dav


def use(dav: Dav, events: int) -> None:
    user, password = next(iter(PASSWORDS.items()))
    calendar = DAVClient(url=f"{dav.url}/", username=user, password=password)
    cal = calendar.principal().make_calendar(name="Bench")  # type: ignore[no-untyped-call]
    for i in range(events):
        cal.save_event(EVENT.format(uid=uuid.uuid4(), h=i % 24, i=i))
    assert len(cal.events()) == events
    book = f"{dav.url}/{user}/contacts/"
    with httpx.Client(auth=(user, password), timeout=30) as http:
        http.request("MKCOL", book, content=BOOK).raise_for_status()
        uid = uuid.uuid4()
        http.put(f"{book}{uid}.vcf", content=CARD.format(uid=uid)).raise_for_status()


def per_container(names: list[str]) -> dict[str, float]:
    ms = [container_memory(n) for n in names]
    return {
        "containers": len(ms),
        "pss_mib": sum(m.pss for m in ms) / len(ms) / MIB,
        "anon_mib": sum(m.anon for m in ms) / len(ms) / MIB,
        "processes": sum(m.processes for m in ms) / len(ms),
    }


def run(count: int, idle: float, events: int) -> dict[str, object]:
    tenant_image, dav_image = build_images("tenant", "dav")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="vpes-bench-dav-") as tmp:
        tenant: Box = start_tenant(tenant_image, Path(tmp) / "tenant", podman_gateway())
        try:
            settle(idle)
            rows.append({"image": "tenant", "case": "idle", **per_container([tenant.name])})
        finally:
            remove(tenant)
        for n in sorted({1, count}):
            davs: list[Dav] = []
            try:
                for i in range(n):
                    davs.append(start_dav(dav_image, Path(tmp) / f"dav-{n}-{i}"))
                settle(idle)
                rows.append(
                    {"image": "dav", "case": "idle", **per_container([d.name for d in davs])}
                )
                for d in davs:
                    use(d, events)
                settle(idle)
                rows.append(
                    {"image": "dav", "case": f"after {events} events + 1 contact",
                     **per_container([d.name for d in davs])}
                )  # fmt: skip
            finally:
                for d in davs:
                    d.remove()
    tenant_pss = float(rows[0]["pss_mib"])  # type: ignore[arg-type]
    last = rows[-1]
    per = float(last["pss_mib"])  # type: ignore[arg-type]
    return {
        "count": count,
        "idle_seconds": idle,
        "events": events,
        "rows": rows,
        "dav_over_tenant": per / tenant_pss,
        "fleet_mib": {"100": per * 100, "1000": per * 1000},
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
            f"{r['anon_mib']:.1f} | {r['processes']:.0f} |"
        )
    fleet = results["fleet_mib"]
    assert isinstance(fleet, dict)
    lines.append("")
    lines.append(
        f"dav / tenant PSS: x{results['dav_over_tenant']:.2f}; calendars for 100 tenants "
        f"{fleet['100']:.0f} MiB, for 1,000 tenants {fleet['1000']:.0f} MiB (one Radicale each)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="dav containers side by side")
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle before measuring")
    parser.add_argument("--events", type=int, default=50, help="events each calendar gets")
    args = parser.parse_args()
    results = run(args.count, args.idle, args.events)
    report("dav", results, table(results))


if __name__ == "__main__":
    main()
