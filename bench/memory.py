"""Memory and SMTP throughput of the tenant image, next to bare Debian Postfix + Dovecot.

Measured the way a node pays for it: PSS and anonymous memory summed over every
process of a container (``/proc/PID/smaps_rollup``), after the page cache is
dropped and the containers have been idle for ``--idle`` seconds.

1. one tenant alone; 10 side by side (per-tenant average); the same for the
   bare image (images/bare: Debian's default configuration plus an LMTP hop);
2. the first tenant right after one mail in and one IMAP session, and again
   once idle (idle daemons exit: Postfix max_idle, Dovecot idle_kill);
3. SMTP throughput into one tenant (10 KiB messages, from the host, until all
   are in the maildir) next to bare Postfix → Dovecot LMTP.

    python -m bench.memory [--count 10] [--idle 30] [--messages 400]

Prints a markdown table and writes bench/results/memory-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import imaplib
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vpes_operator.settings import OperatorSettings

from tests.images.clients import TLS, message
from tests.images.tenant import (
    PASSWORDS,
    Tenant,
    TenantFiles,
    build_images,
    container_address,
    podman,
    podman_gateway,
    sample_spec,
)

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


@dataclass
class Memory:
    processes: int
    pss: int  # bytes
    anon: int  # bytes: Pss_Anon (the private, unshareable part)

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.processes + other.processes, self.pss + other.pss, self.anon + other.anon
        )


def _rollup(pid: int) -> Memory | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0]) * 1024
    return Memory(1, fields.get("Pss", 0), fields.get("Pss_Anon", fields.get("Anonymous", 0)))


def container_memory(name: str) -> Memory:
    """Sum over every process in the container's pid namespace."""
    init = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
    ns = os.readlink(f"/proc/{init}/ns/pid")
    total = Memory(0, 0, 0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != ns:
                continue
        except OSError:
            continue
        m = _rollup(int(entry.name))
        if m is not None:
            total = total + m
    return total


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        print(f"(could not drop caches: {e})", file=sys.stderr)


def settle(seconds: float) -> None:
    drop_caches()
    time.sleep(seconds)


@dataclass
class Box:
    """One running container of either kind."""

    name: str
    host: str
    kind: str  # "tenant" or "bare"
    volume: str
    mount: Path | None = None

    def mail_count(self, maildir: str) -> int:
        new = self.mountpoint() / maildir / "new"
        return len(list(new.iterdir())) if new.is_dir() else 0

    def mountpoint(self) -> Path:
        # Asked once: a podman call per poll would compete with the daemons measured.
        if self.mount is None:
            out = podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume)
            self.mount = Path(out.stdout.strip())
        return self.mount


# Containers publish no ports: the load generator talks to each container's own
# address on the podman network, so nothing else on the machine that holds a
# host port (another tenant on the host network, say) can get in the way.


def start_tenant(image: str, root: Path, edge: str) -> Box:
    files = TenantFiles(root, OperatorSettings(edge_networks=(edge,)))
    files.write(sample_spec(), PASSWORDS)
    return run_tenant(Tenant(image, "", files, publish=False))


def run_tenant(tenant: Tenant) -> Box:
    """Start ``tenant`` (one that publishes nothing) and wait until it serves;
    removed again if it does not."""
    try:
        tenant.start()
        tenant.wait_ready(60)
    except BaseException:
        tenant.remove()
        raise
    return Box(tenant.name, tenant.host, "tenant", tenant.volume)


def start_bare(image: str, index: int) -> Box:
    name = f"vpes-bench-bare-{index}"
    volume = f"{name}-mail"
    podman("rm", "--force", name, check=False)
    podman("volume", "rm", "--force", volume, check=False)
    podman(
        "run", "--detach", "--name", name, "--hostname", "bare",
        "--volume", f"{volume}:/var/mail/vmail",
        image,
    )  # fmt: skip
    host = container_address(name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP(host, 25, timeout=2) as s:
                s.noop()
            imaplib.IMAP4(host, 143, timeout=2).logout()
            return Box(name, host, "bare", volume)
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"bare container {name} did not start")


def remove(box: Box) -> None:
    podman("rm", "--force", "--time", "5", box.name, check=False)
    podman("volume", "rm", "--force", box.volume, check=False)


def measure(boxes: list[Box]) -> dict[str, float]:
    ms = [container_memory(b.name) for b in boxes]
    n = len(ms)
    return {
        "containers": n,
        "pss_mib": sum(m.pss for m in ms) / n / MIB,
        "anon_mib": sum(m.anon for m in ms) / n / MIB,
        "processes": sum(m.processes for m in ms) / n,
    }


def one_mail_and_imap(box: Box) -> None:
    if box.kind == "tenant":
        user, password, port = "alice@example.org", PASSWORDS["alice@example.org"], 993
    else:
        user, password, port = "user@bench.example", "bench", 143
    with smtplib.SMTP(box.host, 25, timeout=10) as s:
        s.sendmail("carol@example.org", [user], message("carol@example.org", user, "one"))
    client = (
        imaplib.IMAP4_SSL(box.host, port, ssl_context=TLS, timeout=10)
        if port == 993
        else imaplib.IMAP4(box.host, port, timeout=10)
    )
    client.login(user, password)
    time.sleep(1)
    client.select("INBOX")
    client.search(None, "ALL")
    client.logout()


def throughput(box: Box, count: int, connections: int = 4) -> float:
    user = "alice@example.org" if box.kind == "tenant" else "user@bench.example"
    maildir = "example.org/alice/Maildir" if box.kind == "tenant" else "bench.example/user/Maildir"
    before = box.mail_count(maildir)
    body = message("carol@example.org", user, "throughput", size=10 * 1024)

    def sender(n: int) -> None:
        with smtplib.SMTP(box.host, 25, timeout=30) as s:
            s.ehlo("loadgen.example")
            for _ in range(n):
                s.sendmail("carol@example.org", [user], body)

    start = time.monotonic()
    share = [
        count // connections + (1 if i < count % connections else 0) for i in range(connections)
    ]
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        list(pool.map(sender, share))
    deadline = time.monotonic() + 300
    while box.mail_count(maildir) - before < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{box.name}: not all {count} messages delivered")
        time.sleep(0.05)
    return count / (time.monotonic() - start)


def run(count: int, idle: float, messages: int) -> dict[str, object]:
    tenant_image, bare_image = build_images("tenant", "bare")
    edge = f"{podman_gateway()}/32"
    results: dict[str, object] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tenant_image": tenant_image,
        "bare_image": bare_image,
        "idle_seconds": idle,
        "count": count,
    }
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="vpes-bench-") as tmp:
        for kind in ("tenant", "bare"):
            boxes: list[Box] = []
            try:

                def add(i: int, kind: str = kind) -> Box:
                    if kind == "tenant":
                        return start_tenant(tenant_image, Path(tmp) / f"t{i}", edge)
                    return start_bare(bare_image, i)

                boxes.append(add(0))
                settle(idle)
                rows.append({"image": kind, "case": "1 alone, idle", **measure(boxes[:1])})
                for i in range(1, count):
                    boxes.append(add(i))
                settle(idle)
                rows.append(
                    {"image": kind, "case": f"{count} side by side, idle", **measure(boxes)}
                )
                one_mail_and_imap(boxes[0])
                rows.append({"image": kind, "case": "1 after a mail + IMAP", **measure(boxes[:1])})
                settle(max(idle, 40))
                rows.append({"image": kind, "case": "1 idle again", **measure(boxes[:1])})
                for b in boxes[1:]:
                    remove(b)
                del boxes[1:]
                rate = throughput(boxes[0], messages)
                rows.append(
                    {"image": kind, "case": f"SMTP {messages} x 10 KiB", "msgs_per_s": rate}
                )
            finally:
                for b in boxes:
                    remove(b)
    results["rows"] = rows
    return results


def table(results: dict[str, object]) -> str:
    rows = results["rows"]
    assert isinstance(rows, list)
    lines = [
        "| image | case | PSS MiB / container | anon MiB / container | processes | msgs/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:

        def f(key: str, r: dict[str, object] = r) -> str:
            v = r.get(key)
            return f"{v:.1f}" if isinstance(v, float) else ""

        lines.append(
            f"| {r['image']} | {r['case']} | {f('pss_mib')} | {f('anon_mib')} | "
            f"{f('processes')} | {f('msgs_per_s')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="containers side by side")
    parser.add_argument("--idle", type=float, default=30, help="seconds of idle before measuring")
    parser.add_argument("--messages", type=int, default=400, help="messages for throughput")
    args = parser.parse_args()
    results = run(args.count, args.idle, args.messages)
    report("memory", results, table(results))


def report(kind: str, results: dict[str, object], text: str, stamp: str = "") -> Path:
    """Print ``text`` (the markdown tables) and write ``results`` with it to
    bench/results/<kind>-<stamp>.json (now, unless ``stamp`` is given)."""
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = stamp or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{kind}-{stamp}.json"
    out.write_text(json.dumps({**results, "table": text}, indent=1, default=str) + "\n")
    print(f"\nwritten to {out}")
    return out


if __name__ == "__main__":
    main()
