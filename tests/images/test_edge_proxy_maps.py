"""The edge's login proxy and its maps: a change is live within seconds without a
restart and keeps open sessions, a bad map keeps the last good one; the proxy
starts quietly, stops on SIGTERM, and refuses to start on what cannot work.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from .clients import unique, wait_until
from .conftest import host_address
from .edge import MAPS_VERSION_FILE, EdgeMaps, ProxyEdge
from .proxy_support import (
    A_HOST,
    BASE,
    BOB,
    HOSTNAME,
    INTERVAL,
    ProxySetup,
    deliver,
    imap,
    maps_for,
    subjects,
)
from .tenant import PASSWORDS

pytestmark = pytest.mark.images


# --- maps -------------------------------------------------------------------------------


def test_map_change_is_live_within_seconds_and_keeps_sessions(proxy: ProxySetup) -> None:
    master = proxy.edge.master_pid()
    in_a, in_b = unique("map A"), unique("map B")
    deliver(proxy.a, BOB, in_a)
    deliver(proxy.b, BOB, in_b)
    held = imap(proxy.host, 20143)
    held.login(BOB, PASSWORDS[BOB])
    assert in_b.encode() in subjects(held)
    version = f"moved-{uuid.uuid4().hex[:8]}"
    try:
        start = time.monotonic()
        proxy.route({"example.org": A_HOST, "example.net": A_HOST}, version)

        def routed_to_a() -> bool:
            with imap(proxy.host, 20143) as client:
                client.login(BOB, PASSWORDS[BOB])
                seen = subjects(client)
                client.logout()
            return in_a.encode() in seen

        wait_until(routed_to_a, timeout=15, what="example.net routed to tenant A")
        took = time.monotonic() - start
        assert took < 3 * INTERVAL + 6, took  # a login itself waits for the tenant
        assert proxy.edge.read(MAPS_VERSION_FILE) == version
        assert f"maps version {version} loaded (changed): 2 proxied domains" in proxy.edge.logs()
        assert proxy.edge.master_pid() == master  # not restarted
        # The session opened before the change is still with tenant B.
        assert held.noop()[0] == "OK"
        assert in_b.encode() in subjects(held)
        held.logout()
    finally:
        proxy.restore()


BAD_MAPS = {
    "six colons": "example.org::::::proxy=y host=tenant-a nopassword=y\n",
    "no host": "example.org:::::::proxy=y nopassword=y\n",
    "a password": "example.org:::::::proxy=y host=x nopassword=y pass=secret\n",
    "upper case": "Example.ORG:::::::proxy=y host=x nopassword=y\n",
    "twice": "example.org:::::::proxy=y host=x nopassword=y\n" * 2,
    "missing": None,
}


@pytest.mark.parametrize("bad", BAD_MAPS.values(), ids=BAD_MAPS.keys())
def test_bad_map_keeps_the_last_good_one(proxy: ProxySetup, bad: str | None) -> None:
    good = proxy.version
    master = proxy.edge.master_pid()
    version = f"bad-{uuid.uuid4().hex[:8]}"
    files = maps_for({"example.net": A_HOST}, version)
    if bad is None:
        del files["proxy"]
    else:
        files["proxy"] = bad
    line = f"maps version {version} not loaded"
    try:
        proxy.edge.maps.write(files)
        wait_until(lambda: line in proxy.edge.logs(), timeout=10, what="the error line")
        error = next(x for x in proxy.edge.logs().splitlines() if line in x)
        assert f"the last good map, version {good}, stays live): proxy: " in error, error
        # Still routed by the good map: example.net to B, example.org to A.
        in_b = unique("still B")
        deliver(proxy.b, BOB, in_b)
        with imap(proxy.host, 20143) as client:
            client.login(BOB, PASSWORDS[BOB])
            assert in_b.encode() in subjects(client)
            client.logout()
        assert proxy.edge.read(MAPS_VERSION_FILE) == good
        assert proxy.edge.master_pid() == master
        time.sleep(2 * INTERVAL)
        assert proxy.edge.logs().count(line) == 1
    finally:
        proxy.restore()


# --- start and stop -----------------------------------------------------------------------


def test_starts_quietly_and_stops_on_sigterm(edge_image: str, tmp_path: Path) -> None:
    maps = EdgeMaps(tmp_path / "maps")
    maps.write(maps_for(BASE, "stop"))
    box = ProxyEdge(edge_image, host_address(44), maps, env={"VPES_HOSTNAME": HOSTNAME})
    try:
        box.start()
        box.wait_ready()
        logs = box.logs()
        assert "Warning" not in logs and "doveconf:" not in logs, logs
        logs = box.stop()
        assert "SIGTERM received: stopping Dovecot" in logs
        assert "vpes-edge: stopped" in logs
    finally:
        box.remove()


START_ERRORS = {
    "no hostname": ({"VPES_HOSTNAME": ""}, BASE, "VPES_HOSTNAME is not set"),
    "bad trusted networks": ({"VPES_PROXY_TRUSTED": "lb;rm"}, BASE, "VPES_PROXY_TRUSTED=lb;rm"),
    "bad map": ({}, {"example.org": "bad host!"}, "no usable proxy map"),
}


@pytest.mark.parametrize(("env", "routes", "says"), START_ERRORS.values(), ids=START_ERRORS.keys())
def test_start_refuses_what_cannot_work(
    edge_image: str, tmp_path: Path, env: dict[str, str], routes: dict[str, str], says: str
) -> None:
    maps = EdgeMaps(tmp_path / "maps")
    maps.write(maps_for(routes, "start"))
    box = ProxyEdge(edge_image, host_address(44), maps, env={"VPES_HOSTNAME": HOSTNAME, **env})
    assert says in box.start_refused()
