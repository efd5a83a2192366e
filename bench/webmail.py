"""What the shared webmail costs (issue 17): Roundcube (images/webmail) on its
PostgreSQL (images/webmail-db) in front of a real tenant container (Postfix +
Dovecot, the sample server's three mailboxes), all under podman as the charts
run them; driven over HTTP as a browser does (tests/images/webmail_support.py).

1. Time of the inbox page: ``--requests`` AJAX requests of the message list
   (``_action=list``, page 1, as Roundcube's own JavaScript sends it) for a
   mailbox of ``--messages`` messages, side by side (interleaved, one of each in
   turn) with the same list for a mailbox of ``--small`` messages and with the
   raw IMAP cost of what the page shows (SELECT + FETCH of the first page's 50
   envelopes through imaplib): on a kept connection, and on a new connection each
   time (TLS + LOGIN + SELECT + FETCH + LOGOUT, what Roundcube does per request:
   it keeps no IMAP connection between requests). p50/p95 ms and ratios.
2. Memory and disk of the shared deployment: PSS summed over the webmail's and
   the database's processes (bench.memory's way, page cache dropped, ``--idle``
   seconds of idle: longer than php-fpm's 30 s ondemand idle timeout) idle after
   start, then after ``--sessions`` logins (cumulative: 100, then 1,000), each a
   new browser and a new session row; the database's size on disk
   (pg_database_size) and its session rows. The tenant has three mailboxes, so
   the logins use them in turn (a real fleet has one users row per mailbox too:
   not measured here). Per tenant (one session each): the growth over idle
   divided by the sessions.

    python -m bench.webmail [--messages 1000] [--small 10] [--requests 200]
        [--sessions 100,1000] [--idle 35] [--workers 4]

Prints markdown tables and writes bench/results/webmail-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import imaplib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.memory import MIB, Box, container_memory, remove, report, settle, start_tenant
from bench.stats import pct
from tests.images.clients import TLS, message
from tests.images.conftest import host_address
from tests.images.tenant import PASSWORDS, build_images, container_address, podman_gateway
from tests.images.webmail_support import (
    DB_PASSWORD,
    Browser,
    Webmail,
    WebmailDb,
    webmail_env,
)

BIG, SMALL = "alice@example.org", "bob@example.net"
PAGE = 50  # Roundcube's default mail_pagesize
FETCH = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"


def start(root: Path) -> tuple[Box, WebmailDb, Webmail]:
    """The tenant, the database and one webmail replica (on its podman address)."""
    tenant_image, db_image, image = build_images("tenant", "webmail-db", "webmail")
    tenant = start_tenant(tenant_image, root / "tenant", f"{podman_gateway()}/32")
    (root / "db").mkdir()
    db = WebmailDb(db_image, root / "db")
    w: Webmail | None = None
    try:
        db.start()
        db.wait_ready()
        # Published on a loopback address of its own (the helper's way), but asked
        # at its podman address, like the tenant.
        w = Webmail(image, host_address(41), root / "webmail", webmail_env(db.dsn, tenant.host))
        w.write_domains(["example.org", "example.net"])
        w.start()
        w.host = container_address(w.name)
        w.wait_ready()
    except BaseException:
        if w is not None:
            w.remove()
        db.remove()
        remove(tenant)
        raise
    return tenant, db, w


def imap(tenant: Box, user: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(tenant.host, 993, ssl_context=TLS, timeout=30)
    client.login(user, PASSWORDS[user])
    return client


def fill(tenant: Box, user: str, count: int) -> None:
    """``count`` small messages APPENDed to ``user``'s INBOX on one connection."""
    client = imap(tenant, user)
    try:
        for i in range(count):
            body = message("carol@example.org", user, f"Message {i}", f"body {i}\n", size=1024)
            status, _ = client.append("INBOX", None, None, body)
            assert status == "OK", status
        _, data = client.select("INBOX", readonly=True)
        assert int(data[0] or b"0") == count, data
    finally:
        client.logout()


def logged_in(url: str, user: str) -> Browser:
    b = Browser(url)
    r = b.login(user, PASSWORDS[user])
    if r.status_code != 200 or "_task=mail" not in str(r.url):
        b.close()
        raise RuntimeError(f"{user} could not log in: {r.status_code}\n{r.text[:2000]}")
    return b


def page_lister(b: Browser, count: int) -> Callable[[], None]:
    def list_page() -> None:
        r = b.ajax({"_task": "mail", "_action": "list", "_mbox": "INBOX", "_page": "1"})
        r.raise_for_status()
        shown = r.json()["exec"]
        if f"of {count}" not in shown:  # "Messages 1 to 50 of 1000"
            raise RuntimeError(f"not the list of {count} messages: {shown[:500]}")

    return list_page


def raw_fetch(client: imaplib.IMAP4_SSL) -> None:
    _, data = client.select("INBOX", readonly=True)
    total = int(data[0] or b"0")
    status, got = client.fetch(f"{max(1, total - PAGE + 1)}:{total}", FETCH)
    if status != "OK" or len(got) != min(PAGE, total):
        raise RuntimeError(f"FETCH answered {status} with {len(got)} items")


def raw_fetch_new_connection(tenant: Box) -> Callable[[], None]:
    def run() -> None:
        client = imap(tenant, BIG)
        raw_fetch(client)
        client.logout()

    return run


def ms(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def timing(tenant: Box, w: Webmail, args: argparse.Namespace) -> dict[str, object]:
    big, small = logged_in(w.url, BIG), logged_in(w.url, SMALL)
    kept = imap(tenant, BIG)
    cases: dict[str, Callable[[], None]] = {
        f"webmail list, {args.messages} messages": page_lister(big, args.messages),
        f"webmail list, {args.small} messages": page_lister(small, args.small),
        f"IMAP SELECT + FETCH {PAGE} envelopes, kept connection": lambda: raw_fetch(kept),
        f"IMAP connect + LOGIN + SELECT + FETCH {PAGE}": raw_fetch_new_connection(tenant),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for _ in range(10):  # warm: PHP's opcache, Dovecot's index
            for fn in cases.values():
                fn()
        for _ in range(args.requests):  # interleaved: drift hits every case alike
            for k, fn in cases.items():
                times[k].append(ms(fn))
    finally:
        kept.logout()
        big.close()
        small.close()
    rows = {k: {"p50": pct(v, 50), "p95": pct(v, 95)} for k, v in times.items()}
    base = rows[f"webmail list, {args.messages} messages"]["p50"]
    return {
        "rows": rows,
        "p50_ratio_of_big_list_to": {k: base / r["p50"] for k, r in rows.items()},
        "times_ms": times,
    }


def login_many(url: str, count: int, workers: int) -> float:
    """``count`` logins, each a new browser (a new session), the mailboxes in turn;
    returns the logins' wall time in seconds."""
    users = sorted(PASSWORDS)

    def one(i: int) -> None:
        logged_in(url, users[i % len(users)]).close()

    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - t


def query(db: WebmailDb, sql: str) -> int:
    status, out = db.psql(DB_PASSWORD, sql)
    if status != 0:
        raise RuntimeError(f"psql failed: {out}")
    return int(out.strip())


def state(db: WebmailDb, w: Webmail, case: str, sessions: int) -> dict[str, object]:
    web, pg = container_memory(w.name), container_memory(db.name)
    return {
        "case": case,
        "sessions_made": sessions,
        "webmail_pss_mib": web.pss / MIB,
        "webmail_processes": web.processes,
        "db_pss_mib": pg.pss / MIB,
        "db_processes": pg.processes,
        "total_pss_mib": (web.pss + pg.pss) / MIB,
        "db_size_mib": query(db, "SELECT pg_database_size('roundcube')") / MIB,
        "session_rows": query(db, "SELECT count(*) FROM session"),
    }


def memory(
    db: WebmailDb, w: Webmail, first: dict[str, object], args: argparse.Namespace
) -> dict[str, object]:
    """``first``: idle after start, before any request. The base for the growth per
    session is the idle state after the list timing (its 2 sessions, warm caches)."""
    settle(args.idle)
    rows = [first, state(db, w, "idle after the list timing (2 logins)", 0)]
    made, login_s = 0, {}
    for target in args.sessions:
        login_s[target] = login_many(w.url, target - made, args.workers)
        made = target
        rows.append(state(db, w, f"right after {made} logins", made))
        settle(args.idle)
        rows.append(state(db, w, f"{made} sessions, idle", made))
    per = [growth(rows[1], r) for r in rows[3::2]]
    return {"rows": rows, "per_session": per, "login_seconds": login_s}


def growth(base: dict[str, object], row: dict[str, object]) -> dict[str, float]:
    """What ``row`` holds more than ``base``, per session made, in KiB."""
    n = int(str(row["sessions_made"]))

    def kib(key: str) -> float:
        return (float(str(row[key])) - float(str(base[key]))) / n * 1024

    return {
        "sessions": n,
        "total_pss_kib_per_session": kib("total_pss_mib"),
        "db_pss_kib_per_session": kib("db_pss_mib"),
        "db_size_kib_per_session": kib("db_size_mib"),
    }


def table(results: dict[str, object]) -> str:
    t, m = results["timing"], results["memory"]
    assert isinstance(t, dict)
    assert isinstance(m, dict)
    lines = ["| request | p50 ms | p95 ms | big list's p50 ÷ this |", "|---|---:|---:|---:|"]
    for k, r in t["rows"].items():
        lines.append(
            f"| {k} | {r['p50']:.1f} | {r['p95']:.1f} | {t['p50_ratio_of_big_list_to'][k]:.2f} |"
        )
    lines += [
        "",
        "| case | webmail PSS MiB (procs) | db PSS MiB (procs) | total PSS MiB "
        "| db on disk MiB | session rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in m["rows"]:
        lines.append(
            f"| {r['case']} | {r['webmail_pss_mib']:.1f} ({r['webmail_processes']}) | "
            f"{r['db_pss_mib']:.1f} ({r['db_processes']}) | {r['total_pss_mib']:.1f} | "
            f"{r['db_size_mib']:.2f} | {r['session_rows']} |"
        )
    lines += ["", "| sessions | PSS KiB / session (idle) | db PSS KiB | disk KiB |"]
    lines.append("|---:|---:|---:|---:|")
    for p in m["per_session"]:
        lines.append(
            f"| {p['sessions']} | {p['total_pss_kib_per_session']:.1f} | "
            f"{p['db_pss_kib_per_session']:.1f} | {p['db_size_kib_per_session']:.1f} |"
        )
    logins = ", ".join(f"{n}: {s:.0f} s" for n, s in m["login_seconds"].items())
    lines += ["", f"logins' wall time (cumulative steps): {logins}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages in the big inbox")
    parser.add_argument("--small", type=int, default=10, help="messages in the small inbox")
    parser.add_argument("--requests", type=int, default=200, help="timed requests of each kind")
    parser.add_argument(
        "--sessions",
        type=lambda s: sorted(int(x) for x in s.split(",")),
        default=[100, 1000],
        help="cumulative session counts to measure at",
    )
    parser.add_argument("--idle", type=float, default=35, help="seconds of idle before measuring")
    parser.add_argument("--workers", type=int, default=4, help="concurrent logins")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpes-bench-webmail-") as tmp:
        tenant, db, w = start(Path(tmp))
        try:
            settle(args.idle)
            first = state(db, w, "idle after start, no request yet", 0)
            fill(tenant, BIG, args.messages)
            fill(tenant, SMALL, args.small)
            results: dict[str, object] = {**vars(args), "timing": timing(tenant, w, args)}
            results["memory"] = memory(db, w, first, args)
        finally:
            w.remove()
            db.remove()
            remove(tenant)
    report("webmail", results, table(results))


if __name__ == "__main__":
    main()
