"""The Postfix metrics of the edge's MX and relay (``vpes-edge mx|relay``).

vpes-edge starts Postfix's master with its standard output on a FIFO
(``maillog_file = /dev/stdout``: postlogd writes every daemon's log line
there) and this program, as the postfix user, on the FIFO's other end. It

- copies every line, unchanged and at once, to its own standard output (the
  container's log), and counts what ``vpes_edge_log.classify`` says the line
  is: a refusal by reason, a delivery by status;
- serves ``GET /metrics`` (Prometheus text, Debian's python3-prometheus-client)
  on ``--listen`` (0.0.0.0:9147);
- exits when the log ends, which is when master has exited (vpes-edge then
  exits too). vpes-edge exits when this program dies: Postfix's log would
  have nowhere to go;
- role relay: tells the policy service (``VPES_POLICY_LISTEN``, 127.0.0.1:10046)
  the login of every message Rspamd's milter refused with a 5xx
  (``SpamForwarder``), which counts it toward the server's spam hold. From a
  thread, through a bounded queue: the log never waits for it.

The queue's sizes are counted when Prometheus asks, from the queue's
directories: one ``scandir`` per directory (deferred and hold are hashed one
level deep), no queue file opened. ``postqueue -j`` would make showq open and
parse every queue file, needs the showq service (the edge's master.cf has
none) and prints each message as JSON; the directory count costs a few
directory reads, and nothing between scrapes.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from vpes_edge_log import REASONS, STATUSES, SpamLogins, classify

QUEUES = ("incoming", "active", "deferred", "hold")


def queue_sizes(spool: Path) -> dict[str, int] | None:
    """Messages in each of ``QUEUES`` under ``spool`` (None: cannot be read).

    Counts the files in each queue directory and in its subdirectories, one
    level down (Postfix hashes deferred and hold into them), without opening
    or stat()ing a queue file.
    """
    sizes = {}
    try:
        for queue in QUEUES:
            sizes[queue] = _count_files(spool / queue, depth=2)
    except OSError:
        return None
    return sizes


def _count_files(directory: Path, depth: int) -> int:
    count = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if depth > 1:
                    count += _count_files(Path(entry.path), depth - 1)
            elif entry.is_file(follow_symlinks=False):
                count += 1
    return count


def say(line: str) -> None:
    print(f"vpes-edge-metrics: {line}", file=sys.stderr, flush=True)


class SpamForwarder:
    """Role relay: sends each login whose message Rspamd refused to the policy
    service (``request=vpes_spam_event``, the policy protocol's form), one
    connection kept open. Three tries a login, then it is dropped with a line:
    a missed count delays a spam hold, it never lets a message through."""

    def __init__(self, address: tuple[str, int], size: int = 1000, pause: float = 1.0) -> None:
        self.address = address
        self.pause = pause
        self.logins = SpamLogins()
        self.queue: queue.Queue[str] = queue.Queue(size)
        self.conn: socket.socket | None = None

    def start(self) -> SpamForwarder:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def observe(self, line: str) -> None:
        login = self.logins.observe(line)
        if login is None:
            return
        try:
            self.queue.put_nowait(login)
        except queue.Full:
            say(f"a refused message of {login} not counted: too many waiting")

    def run(self) -> None:
        while True:
            self.send(self.queue.get())

    def send(self, login: str) -> str:
        """The policy service's action for one refused message of ``login``."""
        request = f"request=vpes_spam_event\nsasl_username={login}\n\n".encode()
        problem = ""
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = socket.create_connection(self.address, timeout=5)
                self.conn.sendall(request)
                reply = b""
                while not reply.endswith(b"\n\n"):
                    chunk = self.conn.recv(4096)
                    if not chunk:
                        raise OSError("the policy service hung up")
                    reply += chunk
                return reply.decode("utf-8", "replace").strip().removeprefix("action=")
            except OSError as e:
                problem = str(e)
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                time.sleep(attempt * self.pause)
        say(f"a refused message of {login} not counted: the policy service: {problem}")
        return ""


class Counts:
    """The counters the log moves (thread-safe: read by the HTTP thread)."""

    def __init__(self, spam: SpamForwarder | None = None) -> None:
        self._lock = threading.Lock()
        self.rejections = dict.fromkeys(REASONS, 0)
        self.deliveries = dict.fromkeys(STATUSES, 0)
        self.spam = spam

    def count(self, line: str) -> None:
        if self.spam is not None:
            self.spam.observe(line)
        event = classify(line)
        if event is None:
            return
        with self._lock:
            if event.reason:
                self.rejections[event.reason] += 1
            else:
                self.deliveries[event.status] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self.rejections), dict(self.deliveries)


class EdgeCollector(Collector):
    """The exposition: queue sizes (read now), refusals and deliveries."""

    def __init__(self, role: str, counts: Counts, spool: Path) -> None:
        self.role = role
        self.counts = counts
        self.spool = spool

    def collect(self) -> Iterable[Metric]:
        sizes = queue_sizes(self.spool)
        if sizes is not None:
            queue = GaugeMetricFamily(
                "vpes_edge_postfix_queue_messages",
                "Messages in the Postfix queue, by queue (incoming, active, deferred, hold).",
                labels=["role", "queue"],
            )
            for name, size in sizes.items():
                queue.add_metric([self.role, name], size)
            yield queue
        rejections, deliveries = self.counts.snapshot()
        rejected = CounterMetricFamily(
            "vpes_edge_postfix_rejections",
            "Mail refused by Postfix (smtpd, postscreen, the Rspamd milter) and failed "
            "SASL logins, by reason, since the container started.",
            labels=["role", "reason"],
        )
        for reason, n in rejections.items():
            rejected.add_metric([self.role, reason], n)
        yield rejected
        delivered = CounterMetricFamily(
            "vpes_edge_postfix_deliveries",
            "Delivery attempts by outcome (one per recipient), since the container started.",
            labels=["role", "status"],
        )
        for status, n in deliveries.items():
            delivered.add_metric([self.role, status], n)
        yield delivered


# A longer line than this (Postfix writes none) is passed on and counted in pieces.
MAX_LINE = 1 << 20


def tee(fd: int, out: BinaryIO, counts: Counts) -> None:
    """Copy what is read from ``fd`` to ``out`` until its end, counting each line.

    Each read's complete lines are written at once (the log is never held
    back waiting for more); a line split between reads is counted whole.
    """
    pending = b""
    while chunk := os.read(fd, 65536):
        out.write(chunk)
        out.flush()
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE:
            complete.append(pending)
            pending = b""
        for line in complete:
            counts.count(line.decode("utf-8", "replace"))
    if pending:
        counts.count(pending.decode("utf-8", "replace"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--role", required=True, choices=["mx", "relay"])
    parser.add_argument("--log", required=True, type=Path, help="the FIFO Postfix logs into")
    parser.add_argument("--listen", default="0.0.0.0:9147")
    parser.add_argument("--spool", default="/var/spool/postfix", type=Path)
    args = parser.parse_args(argv)
    spam = None
    if args.role == "relay":
        host, _, port = os.environ.get("VPES_POLICY_LISTEN", "127.0.0.1:10046").rpartition(":")
        spam = SpamForwarder((host.strip("[]"), int(port))).start()
    counts = Counts(spam)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(args.role, counts, args.spool))
    host, _, port = args.listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    say(f"/metrics on {args.listen}")
    # Opening blocks until master opens its end; the end of the log is
    # master's (and so postlogd's) exit: this one follows it.
    fd = os.open(args.log, os.O_RDONLY)
    tee(fd, sys.stdout.buffer, counts)


if __name__ == "__main__":
    main()
