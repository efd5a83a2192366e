"""The shared antispam image (images/rspamd) under podman: each level does what it
says (through Rspamd's HTTP protocol and as the milter the edge's Postfix uses:
a minimal milter client below, option negotiation then a whole message), and
the antispam map changes while Rspamd runs. Bayes and the passwords are in
test_rspamd_learn.py; the containers are the conftest's ``antispam``.
"""

from __future__ import annotations

import socket
import struct
import time

import httpx
import pytest

from .clients import wait_until
from .rspamd_support import (
    HAM,
    MAP,
    MILTER,
    SCANNER,
    Antispam,
    addressed,
    gtube,
    message,
    spammy,
)

pytestmark = pytest.mark.images


# --- levels, through the HTTP protocol ----------------------------------------------


@pytest.mark.parametrize(
    ("rcpt", "action"),
    [
        ("alice@strict.example", "reject"),
        ("alice@standard.example", "reject"),
        ("alice@unlisted.example", "reject"),
        # Rspamd 3.4 checks GTUBE while parsing, before settings apply: Off
        # cannot let it through (images/README.md).
        ("alice@off.example", "reject"),
    ],
)
def test_gtube(antispam: Antispam, rcpt: str, action: str) -> None:
    assert antispam.action(gtube(), rcpt) == action


def test_ham_passes_every_level(antispam: Antispam) -> None:
    for domain in ("strict", "standard", "off", "unlisted"):
        assert antispam.action(message("minutes", HAM), f"bob@{domain}.example") == "no action"


def test_spammy_message_score(antispam: Antispam) -> None:
    """Between 4 and 6 on its own (the measured score is in images/README.md)."""
    result = antispam.check(spammy(), "alice@unlisted.example")
    assert 4 <= result["score"] < 6, result


@pytest.mark.parametrize(
    ("rcpt", "action"),
    [
        ("alice@strict.example", "add header"),
        ("alice@standard.example", "no action"),
        ("alice@unlisted.example", "no action"),
        ("alice@off.example", "no action"),
    ],
)
def test_spammy_message(antispam: Antispam, rcpt: str, action: str) -> None:
    assert antispam.action(spammy(), rcpt) == action


def test_off_is_not_scanned(antispam: Antispam) -> None:
    result = antispam.check(spammy(), "alice@off.example")
    assert result["score"] == 0, result


def test_strict_wins_for_mixed_recipients(antispam: Antispam) -> None:
    r = httpx.post(
        f"http://{antispam.host}:{SCANNER}/checkv2",
        content=gtube(),
        headers=[("Rcpt", "a@off.example"), ("Rcpt", "b@strict.example")],
        timeout=30,
    )
    assert r.json()["action"] == "reject"


# --- the map changes while Rspamd runs ------------------------------------------------


def test_map_change_applies_without_restart(antispam: Antispam) -> None:
    pid = antispam.main_pid()
    try:
        antispam.write_map(MAP + "moving.example strict\n")
        start = time.monotonic()
        wait_until(
            lambda: antispam.action(spammy(), "x@moving.example") == "add header",
            20,
            "moving.example to become strict",
        )
        elapsed = time.monotonic() - start
        assert elapsed < 15
        antispam.write_map(MAP + "moving.example off\n")
        wait_until(
            lambda: antispam.check(spammy(), "x@moving.example")["score"] == 0,
            20,
            "moving.example to become off",
        )
        assert antispam.main_pid() == pid
        assert "antispam levels applied (off=2 standard=1 strict=1)" in antispam.logs()
    finally:
        antispam.write_map(MAP)
        wait_until(
            lambda: antispam.check(spammy(), "x@moving.example")["score"] > 4,
            20,
            "moving.example to be standard again",
        )


def test_bad_map_keeps_the_last_levels(antispam: Antispam) -> None:
    bad = MAP.replace("strict.example     strict", "strict.example     paranoid")
    bad += "off-now.example off\n"
    try:
        antispam.write_map(bad)
        line = "error: antispam map not applied, the previous levels stay:"
        wait_until(lambda: line in antispam.logs(), 20, "the bad map's error")
        time.sleep(5)  # a few more polls: still one line, levels unchanged
        logs = antispam.logs()
        assert logs.count(line) == 1, logs
        assert "/etc/vpes/maps/antispam line 4: unknown level paranoid" in logs
        assert antispam.action(spammy(), "a@strict.example") == "add header"
        assert antispam.check(spammy(), "a@off-now.example")["score"] > 4
    finally:
        antispam.write_map(MAP)
    antispam.write_map(MAP + "off-now.example off\n")
    wait_until(
        lambda: antispam.check(spammy(), "a@off-now.example")["score"] == 0,
        20,
        "the next good map",
    )
    antispam.write_map(MAP)


# --- the milter ---------------------------------------------------------------------

SMFIC_OPTNEG = b"O"
SMFI_VERSION = 6
FINAL = {b"a": "accept", b"c": "continue", b"r": "reject", b"t": "tempfail", b"d": "discard"}


class Milter:
    """A minimal milter client (Sendmail's libmilter protocol, version 6)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_connection((host, MILTER), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, cmd: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def read(self) -> tuple[bytes, bytes]:
        (length,) = struct.unpack(">I", self.file.read(4))
        packet = self.file.read(length)
        return packet[:1], packet[1:]

    def negotiate(self) -> tuple[int, int, int]:
        """Offers every action; Rspamd answers with the steps it wants no reply
        to (SMFIP_NR_*: all of them, so ``deliver`` reads only after EOM)."""
        self.send(SMFIC_OPTNEG, struct.pack(">III", SMFI_VERSION, 0x1FF, 0))
        cmd, data = self.read()
        assert cmd == SMFIC_OPTNEG, (cmd, data)
        version, actions, protocol = struct.unpack(">III", data[:12])
        return version, actions, protocol

    def deliver(
        self, rcpt: str, body: bytes, client: str = "198.51.100.7"
    ) -> tuple[str, list[tuple[bytes, bytes]]]:
        """One message through the milter from `client`: its final verdict and any
        changes."""
        z = b"\0"
        address = client.encode()
        steps = [
            (b"C", b"mail.sender.example" + z + b"4" + struct.pack(">H", 25) + address + z),
            (b"H", b"mail.sender.example" + z),
            (b"M", b"<sender@sender.example>" + z),
            (b"R", f"<{rcpt}>".encode() + z),
        ]
        for cmd, data in steps:
            self.send(cmd, data)
        head, _, text = addressed(body, rcpt).partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            self.send(b"L", name + z + value.strip() + z)
        self.send(b"N")
        self.send(b"B", text)
        self.send(b"E")
        changes: list[tuple[bytes, bytes]] = []
        while True:
            cmd, data = self.read()
            if cmd == b"y":
                return data.rstrip(z).decode(), changes
            if cmd in FINAL:
                return FINAL[cmd], changes
            changes.append((cmd, data))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_milter_negotiates(antispam: Antispam) -> None:
    milter = Milter(antispam.host)
    try:
        version, actions, protocol = milter.negotiate()
    finally:
        milter.close()
    assert version >= 2
    assert protocol & 0xFF000 == 0xFF000  # SMFIP_NR_*: replies only at end of message
    assert actions & 0x01  # SMFIF_ADDHDRS: it may add X-Spam


@pytest.mark.parametrize(
    ("rcpt", "verdict"),
    [("a@strict.example", "554 5.7.1"), ("a@standard.example", "554 5.7.1")],
)
def test_milter_rejects_gtube(antispam: Antispam, rcpt: str, verdict: str) -> None:
    milter = Milter(antispam.host)
    try:
        milter.negotiate()
        final, _ = milter.deliver(rcpt, gtube())
    finally:
        milter.close()
    assert final.startswith(verdict), final


@pytest.mark.parametrize(("rcpt", "marked"), [("a@strict.example", True), ("a@off.example", False)])
def test_milter_marks_by_level(antispam: Antispam, rcpt: str, marked: bool) -> None:
    milter = Milter(antispam.host)
    try:
        milter.negotiate()
        final, changes = milter.deliver(rcpt, spammy())
    finally:
        milter.close()
    assert final in ("accept", "continue"), final
    # SMFIR_ADDHEADER, SMFIR_INSHEADER or SMFIR_CHGHEADER (what Rspamd sends)
    added = [d for c, d in changes if c in (b"h", b"i", b"m")]
    assert any(b"X-Spam\0Yes" in d for d in added) == marked, changes


@pytest.mark.parametrize("client", ["198.51.100.7", "10.244.0.7"], ids=["public", "pod"])
def test_milter_adds_its_authentication_results(antispam: Antispam, client: str) -> None:
    """The receiving user's verdicts: one Authentication-Results header with SPF,
    DKIM and DMARC as Rspamd judged them (here nothing resolves: none of them pass),
    for a client in a private range too (the relay's pod: nothing is "local")."""
    milter = Milter(antispam.host)
    try:
        milter.negotiate()
        final, changes = milter.deliver("a@standard.example", message("minutes", HAM), client)
    finally:
        milter.close()
    assert final in ("accept", "continue"), final
    # SMFIR_INSHEADER and SMFIR_CHGHEADER carry a 4-byte index before the name.
    added = [d[4:] if c in (b"i", b"m") else d for c, d in changes if c in (b"h", b"i", b"m")]
    results = [d for d in added if d.lower().startswith(b"authentication-results\0")]
    assert len(results) == 1, changes
    assert b"spf=" in results[0] and b"dmarc=" in results[0], results
    assert b"=pass" not in results[0], results
