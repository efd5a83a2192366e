"""bench/fleet.py's measuring parts: the waves' times from what was seen, and the SMTP
prober of the real part (against a loopback server that stops and comes back)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.fleet_prober import Prober
from bench.fleet_watch import Timeline, summary

pytestmark = pytest.mark.unit


def test_waves_are_timed_start_to_start_and_the_last_to_the_end() -> None:
    a, b, c, d = ("n", "a"), ("n", "b"), ("n", "c"), ("n", "d")
    line = Timeline(
        start=0.0,
        waves={1: 0.5, 2: 10.5, 3: 20.0},
        members={1: [a], 2: [b, c], 3: [d]},
        ready={a: 1.0, b: 12.0, c: 13.5, d: 21.0},
        ended=30.5,
        phase="Succeeded",
    )
    got = summary(line)
    assert [(r["wave"], r["servers"], r["seconds"], r["rollout_s"]) for r in got["per_wave"]] == [
        (1, 1, 10.0, 0.5),
        (2, 2, 9.5, 3.0),
        (3, 1, 10.5, 1.0),
    ]
    assert (got["seconds_total"], got["canary_wave_s"], got["wave_median_s"]) == (30.5, 10.0, 10.0)
    assert got["rollout_median_s"] == 1.0


def test_a_wave_whose_pods_were_not_all_seen_has_no_rollout_time() -> None:
    line = Timeline(start=0.0, waves={1: 0.0}, members={1: [("n", "a"), ("n", "b")]})
    line.ready[("n", "a")] = 2.0
    row = summary(line)["per_wave"][0]
    assert (row["seconds"], row["rollout_s"]) == (None, None)


class Banner:
    """A loopback TCP server that greets with `220` while it runs; stopped, the port
    refuses connections; started again on the same port."""

    def __init__(self, banner: bytes = b"220 test ESMTP\r\n") -> None:
        self.banner = banner
        self.port = 0
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self.port, self.sock = sock.getsockname()[1], sock
        self.thread = threading.Thread(target=self.serve, args=(sock,), daemon=True)
        self.thread.start()

    def serve(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.banner)

    def stop(self) -> None:
        assert self.sock is not None and self.thread is not None
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join()


@pytest.fixture
def banner() -> Iterator[Banner]:
    server = Banner()
    server.start()
    yield server
    server.stop()


def test_the_prober_measures_the_longest_window_a_server_refused(banner: Banner) -> None:
    key = ("n", "a")
    with Prober({key: "127.0.0.1"}, interval=0.05, timeout=0.5, port=banner.port) as prober:
        time.sleep(0.3)
        banner.stop()
        time.sleep(0.6)
        banner.start()
        prober.wait_up(timeout=5)
        time.sleep(0.2)
    window = prober.windows[key]
    assert 0.5 <= window.longest_s <= 1.0, window
    assert window.failures >= 5 and not window.open_at_end
    assert "refused" in window.last_error.lower()
    report = prober.report()
    assert report["max_window_s"] == report["median_window_s"] == round(window.longest_s, 2)
    assert report["still_down_at_end"] == [] and report["other_replies"] == 0


def test_a_server_still_down_when_the_prober_stops_is_reported_open(banner: Banner) -> None:
    banner.stop()
    hosts = {("n", "a"): "127.0.0.1"}
    with Prober(hosts, interval=0.05, timeout=0.2, port=banner.port) as prober:
        time.sleep(0.3)
    banner.start()  # for the fixture's stop
    assert prober.report()["still_down_at_end"] == ["n/a"]
    assert prober.windows[("n", "a")].longest_s >= 0.25


def test_a_reply_other_than_220_is_up_and_counted_apart() -> None:
    """A rate-limited Postfix (421) answers: it did not refuse; the count shows it."""
    server = Banner(b"421 4.7.0 Error: too many connections from 10.244.0.1\r\n")
    server.start()
    try:
        with Prober({("n", "a"): "127.0.0.1"}, interval=0.05, port=server.port) as prober:
            time.sleep(0.3)
    finally:
        server.stop()
    report = prober.report()
    assert report["failures"] == 0 and report["max_window_s"] == 0.0
    assert report["other_replies"] == report["attempts"] > 0
    assert prober.windows[("n", "a")].last_reply.startswith("421 4.7.0")


def _upgrade(total: float, window: float) -> dict[str, object]:
    return {
        "seconds_total": total,
        "waves": 2,
        "canary_wave_s": 10.0,
        "wave_median_s": 12.0,
        "rollout_median_s": 8.0,
        "phase": "Succeeded",
        "smtp": {"max_window_s": window, "median_window_s": window / 2, "other_replies": 0},
    }


def test_the_real_table_gives_each_run_its_own_baseline_and_the_refusal_windows() -> None:
    from bench.fleet_real import real_medians, table_real

    runs = [
        {"baseline": _upgrade(10.0, 16.0), "upgrades": {"3": _upgrade(40.0, 14.0)}},
        {"baseline": _upgrade(20.0, 18.0), "upgrades": {"3": _upgrade(60.0, 12.0)}},
    ]
    results = {"servers": 10, "max_unavailable": [3], "runs": runs}
    results["medians"] = real_medians(runs, [3])
    row = table_real(results).splitlines()[4]
    # totals 50 (median of 40, 60); ratios 4 and 3 → 3.5, not 50/15
    assert (
        row == "| FleetUpgrade, canary 1, maxUnavailable 3 | 2 | 50.0 | 10.0 | 12.0 | 8.0 | 3.5 "
        "| 13.0 | 6.5 |"
    )
