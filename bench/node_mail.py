"""Phase 1 of ``bench/node.py``: from a PersonalMailServer applied (or its child
objects applied straight, without the operator) to the first mail it accepts."""

from __future__ import annotations

import concurrent.futures as cf
import smtplib
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.settings import OperatorSettings

from bench.direct import apply_children
from bench.node_plan import NS_BASE, NS_OP, PLAN, plan_spec, spec
from bench.stats import pct


def first_mail(host: str, to: str) -> float | str:
    """One SMTP session; the monotonic time of the 250 after DATA, or why not."""
    # From the server's own domain: Postfix rejects senders whose domain does not
    # resolve (reject_unknown_sender_domain), and nothing outside resolves here.
    sender = "carol@" + to.split("@", 1)[1]
    msg = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: first\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.example>\r\n\r\nfirst\r\n"
    )
    try:
        with smtplib.SMTP(host, 25, timeout=5) as smtp:
            smtp.ehlo("sender.example")
            smtp.sendmail(sender, [to], msg)
            return time.monotonic()
    except (OSError, smtplib.SMTPException) as exc:
        return repr(exc)[:200]


class FirstMail:
    """Servers applied in one namespace and the seconds each took to its first mail."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.kube = kube
        self.ns = ns
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()

    def start(self, name: str) -> None:
        with self.lock:
            self.started[name] = time.monotonic()

    def wait(
        self, names: list[str], apply: Callable[[str], None], timeout: float
    ) -> dict[str, Any]:
        """Apply every name at once (a thread each) and probe until each took a mail."""
        done: dict[str, float] = {}
        errors: list[str] = []
        last: dict[str, str] = {}  # the last refusal of each server without a mail
        deadline = time.monotonic() + timeout
        with (
            cf.ThreadPoolExecutor(len(names)) as appliers,
            cf.ThreadPoolExecutor(len(names)) as probes,
        ):
            applying = {appliers.submit(apply, n): n for n in names}
            failed: set[str] = set()
            while len(done) + len(failed) < len(names) and time.monotonic() < deadline:
                for f in [f for f in applying if f.done()]:
                    if f.exception():
                        errors.append(f"{applying[f]}: {f.exception()}")
                        failed.add(applying[f])
                    del applying[f]
                ips = {
                    s["metadata"]["name"]: s["spec"].get("clusterIP")
                    for s in self.kube.list("v1", "Service", self.ns)
                }
                with self.lock:
                    todo = [n for n in names if n not in done and ips.get(n) and n in self.started]
                tries = {n: probes.submit(first_mail, ips[n], f"me@{n}.example") for n in todo}
                for n, probe in tries.items():
                    when = probe.result()
                    if isinstance(when, float):
                        done[n] = when - self.started[n]
                    else:
                        last[n] = when
                time.sleep(0.5)
        times = list(done.values())
        return {
            "servers": len(names),
            "mail_accepted": len(done),
            **timing(times),
            "seconds": {n: round(t, 2) for n, t in sorted(done.items())},
            "errors": errors[:5],
            "last_refusals": {n: e for n, e in last.items() if n not in done},
        }


def apply_server(kube: Kube, ns: str, timer: FirstMail) -> Callable[[str], None]:
    def apply(name: str) -> None:
        timer.start(name)
        kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec(name),
            }
        )

    return apply


def apply_direct(
    kube: Kube, ns: str, timer: FirstMail, settings: OperatorSettings
) -> Callable[[str], None]:
    """The baseline: the operator's own builders, applied straight (no operator).
    An owner ConfigMap stands in for the PersonalMailServer (garbage collection)."""
    plan = plan_spec()

    def apply(name: str) -> None:
        timer.start(name)
        apply_children(kube, name, ns, spec(name), (PLAN, plan), settings)

    return apply


def run_first_mail(
    kube: Kube, settings: OperatorSettings, single: int, burst: int
) -> dict[str, Any]:
    op, base = FirstMail(kube, NS_OP), FirstMail(kube, NS_BASE)
    by_op, by_base = apply_server(kube, NS_OP, op), apply_direct(kube, NS_BASE, base, settings)
    runs: dict[str, list[dict[str, Any]]] = {"operator-1": [], "baseline-1": []}
    for r in range(single):  # interleaved: the machine's speed drifts
        print(f"first mail: 1 server, repetition {r + 1}/{single} ...", flush=True)
        runs["operator-1"].append(op.wait([f"op1-{r}"], by_op, timeout=300))
        runs["baseline-1"].append(base.wait([f"base1-{r}"], by_base, timeout=300))
    print(f"first mail: {burst} servers at once, operator ...", flush=True)
    burst_op = op.wait([f"op{burst}-{i}" for i in range(burst)], by_op, timeout=900)
    print(f"first mail: {burst} servers at once, baseline ...", flush=True)
    burst_base = base.wait([f"base{burst}-{i}" for i in range(burst)], by_base, timeout=900)
    rows = []
    for label, o, b in (
        ("1", merge(runs["operator-1"]), merge(runs["baseline-1"])),
        (str(burst), burst_op, burst_base),
    ):
        ratio = round(o["p50_s"] / b["p50_s"], 2) if o["p50_s"] and b["p50_s"] else None
        rows.append({"servers_at_once": label, "operator": o, "baseline": b, "ratio_p50": ratio})
    return {"single_repetitions": single, "rows": rows}


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Single-server repetitions as one sample."""
    seconds = {n: t for r in runs for n, t in r["seconds"].items()}
    times = list(seconds.values())
    return {
        "servers": len(runs),
        "mail_accepted": len(times),
        **timing(times),
        "seconds": seconds,
        "errors": [e for r in runs for e in r["errors"]],
    }


def timing(times: list[float]) -> dict[str, float | None]:
    """p50, p95 and the longest of ``times`` in seconds (None without any)."""
    return {
        "p50_s": round(statistics.median(times), 2) if times else None,
        "p95_s": round(pct(times, 95), 2) if times else None,
        "max_s": round(max(times), 2) if times else None,
    }
