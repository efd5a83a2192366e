"""The outbound relay's start (images/edge, ``vpes-edge relay``) under podman: what
cannot work is refused with a message naming it, and a relay started before any
server (a fresh install) signs the first servers' mail once their keys arrive."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from .clients import unique, wait_until
from .conftest import host_address
from .relay import NET_SINK, Relay, dkim_key, shard_files
from .relay_fleet import (
    HOSTNAME,
    NEWCOMER,
    OUTSIDE,
    PASSWORDS,
    SHARDS,
    SIZE_LIMIT,
    dns_for,
    maps_for,
    ready,
    send,
    signatures,
)
from .tenant import build_images, podman

pytestmark = pytest.mark.images

START_ERRORS = {
    "no redis": ({"VPES_REDIS": ""}, None, "VPES_REDIS='' is not host:port"),
    "no hostname": ({"VPES_HOSTNAME": ""}, None, "VPES_HOSTNAME is not set"),
    "bad limits": ({}, "limits", "no usable maps"),
}


@pytest.mark.parametrize(("env", "broken", "says"), START_ERRORS.values(), ids=START_ERRORS.keys())
def test_start_refuses_what_cannot_work(
    tmp_path: Path, env: dict[str, str], broken: str | None, says: str
) -> None:
    box = Relay(
        build_images("edge")[0], build_images("rspamd")[0], host_address(52), tmp_path,
        env={"VPES_HOSTNAME": HOSTNAME, "VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT), **env},
    )  # fmt: skip
    files = maps_for("start")
    if broken is not None:
        files[broken] += "key-without-value\n"
    box.maps.write(files)
    box.write_secrets(shard_files(1, {}, {}))
    try:
        box.start(sinks=False)
        assert podman("wait", box.name, timeout=60).stdout.strip() == "2"
        assert says in box.logs()
    finally:
        box.remove()


def test_a_relay_started_before_any_server_signs_their_mail_once_they_arrive(
    tmp_path: Path,
) -> None:
    """A fresh install: the relay starts with empty maps and shards (no KeyTable
    entry, an empty setup script) in a kubelet's emptyDir (mode 1777); the first
    servers' keys arrive later, as the operator publishes them, and their mail goes
    out signed. (Under a directory others may write, OpenDKIM would not use the
    keys: vpes-edge makes it root's alone.)"""
    box = Relay(
        build_images("edge")[0],
        build_images("rspamd")[0],
        host_address(54),
        tmp_path,
        env={"VPES_HOSTNAME": HOSTNAME, "VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT)},
    )
    empty = {name: "" for name in maps_for("x")} | {"version": "empty-0\n"}
    box.maps.write(empty)
    box.write_secrets(shard_files(SHARDS, {}, {}))
    key = dkim_key("new.example", "vpes", bits=1024)  # the e2e chart's key size
    try:
        box.start()
        wait_until(lambda: ready(box), 60, "the relay's 587 and 9146")
        # The kubelet's 1777 lost group and other write before anything ran.
        mode = podman("exec", box.name, "stat", "-c", "%a", "/run/vpes").stdout.strip()
        assert mode == "1755", mode
        box.write_secrets(shard_files(SHARDS, {NEWCOMER: PASSWORDS[NEWCOMER]}, {NEWCOMER: [key]}))
        box.maps.write(
            empty
            | {
                "domains": f"new.example {NEWCOMER}\n",
                "senders": f"@new.example {NEWCOMER}\n",
                "limits": f"{NEWCOMER} 10 -\n",
                "version": "first-1\n",
            }
        )
        wait_until(lambda: box.read("/run/vpes/maps-version") == "first-1", 15, "first-1")
        subject = unique("relay first server")
        send(box, NEWCOMER, "n@new.example", [OUTSIDE], subject)
        got = box.sinks[NET_SINK].wait_for(subject)
        assert "d=new.example" in "".join(signatures(got["data"])), box.logs()
        assert dkim.verify(got["data"].encode(), dnsfunc=dns_for({NEWCOMER: [key]}))
    finally:
        box.remove()
