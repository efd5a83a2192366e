"""A mailbox like a tenant's volume, for benchmarks: maildirs of random-word text.

<root>/example.org/alice/Maildir with cur/new/tmp, a few folders and Dovecot's
index files, everything owned by vmail (5000:5000); the text compresses about
as much as mail does.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

VMAIL = 5000
MIB = 1024 * 1024
FOLDERS = {"": 0.50, ".Archive": 0.25, ".Sent": 0.15, ".Trash": 0.05, ".Drafts": 0.02}
NEW_SHARE = 0.03  # unread INBOX mail, in new/


# --- the mailbox ---------------------------------------------------------------------------


def _words(rng: random.Random, count: int) -> tuple[list[str], list[float]]:
    """A made-up vocabulary and Zipf cumulative weights: text that gzip takes to ~1/2."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    freq = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4]
    freq += [2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
    vocab = sorted(
        {"".join(rng.choices(letters, freq, k=rng.randint(2, 12))) for _ in range(count)}
    )
    rng.shuffle(vocab)
    cum, total = [], 0.0
    for rank in range(len(vocab)):
        total += 1.0 / (rank + 1)
        cum.append(total)
    return vocab, cum


def text_pool(rng: random.Random, size: int) -> bytes:
    """`size` bytes of lines of random words, to cut message bodies from."""
    vocab, cum = _words(rng, 20_000)
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(6, 14)))
        if rng.random() < 0.08:
            line += ".\r\n"
        out.append(line + "\r\n")
        length += len(line) + 2
    return "".join(out).encode()[:size]


def headers(rng: random.Random, i: int, words: list[str]) -> bytes:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i * 97)
    subject = " ".join(rng.choices(words, k=rng.randint(3, 9)))
    qid = "".join(rng.choices("0123456789ABCDEF", k=10))
    text = (
        "Return-Path: <sender@example.net>\r\n"
        "Delivered-To: alice@example.org\r\n"
        f"Received: from mx.example.net (mx.example.net [192.0.2.{i % 250 + 1}])\r\n"
        f"\tby tenant-a.alice (Postfix) with ESMTPS id {qid}\r\n"
        f"\tfor <alice@example.org>; {when:%a, %d %b %Y %H:%M:%S +0000}\r\n"
        f"Message-ID: <{i}.{rng.getrandbits(64):016x}@example.net>\r\n"
        f"Date: {when:%a, %d %b %Y %H:%M:%S +0000}\r\n"
        "From: Sender <sender@example.net>\r\n"
        "To: Alice <alice@example.org>\r\n"
        f"Subject: {subject}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return text.encode()


@dataclass
class Mailbox:
    root: Path
    messages: int
    files: int
    bytes: int


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fchown(fd, VMAIL, VMAIL)
    finally:
        os.close(fd)


def _mkdir(path: Path, mode: int = 0o700) -> None:
    path.mkdir(mode=mode)
    os.chown(path, VMAIL, VMAIL)


def make_mailbox(root: Path, size_mib: int, message_kib: int, seed: int = 1) -> Mailbox:
    """A tenant's volume at `root`: `size_mib` MiB of `message_kib` KiB messages."""
    rng = random.Random(seed)
    size = message_kib * 1024
    count = size_mib * 1024 // message_kib
    pool = text_pool(rng, max(min(64 * MIB, count * size), 4 * size))
    words = pool[:65536].decode().split()
    _mkdir(root, 0o2775)
    _mkdir(root / "example.org", 0o2775)
    _mkdir(root / "example.org" / "alice")
    box = root / "example.org" / "alice" / "Maildir"
    _mkdir(box)
    names = list(FOLDERS)
    cum = list(FOLDERS.values())
    uidlists: dict[str, list[str]] = {f: [] for f in names}
    for folder in names:
        if folder:
            _mkdir(box / folder)
            _write(box / folder / "maildirfolder", b"")
        for sub in ("cur", "new", "tmp"):
            _mkdir(box / folder / sub)
    for i in range(count):
        folder = rng.choices(names, weights=cum)[0]
        head = headers(rng, i, words)
        start = rng.randrange(len(pool) - size)
        body = head + pool[start : start + size - len(head)]
        base = f"{1704067200 + i * 97}.M{rng.randrange(10**6)}P{1000 + i % 30000}.tenant-a"
        newlines = body.count(b"\n")
        base += f",S={size},W={size + newlines}"
        unread = folder == "" and rng.random() < NEW_SHARE / FOLDERS[""]
        name = base if unread else base + ":2," + rng.choice(("S", "S", "RS", "FS", "S"))
        _write(box / folder / ("new" if unread else "cur") / name, body)
        uidlists[folder].append(f"{len(uidlists[folder]) + 1} :{base}")
    for folder, uids in uidlists.items():
        first = f"3 V{1704067200 + len(folder)} N{len(uids) + 1} G{rng.getrandbits(64):016x}"
        _write(box / folder / "dovecot-uidlist", "\n".join([first, *uids, ""]).encode())
        _write(box / folder / "dovecot.index", rng.randbytes(256 + 64 * len(uids)))
        _write(box / folder / "dovecot.index.log", rng.randbytes(32768))
        _write(box / folder / "dovecot.index.cache", rng.randbytes(128 * len(uids)))
    _write(box / "subscriptions", "".join(f"{f[1:]}\n" for f in names if f).encode())
    _write(box / "dovecot-uidvalidity", b"65a1b2c3\n", 0o644)
    files, total = 0, 0
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    subprocess.run(["sync"], check=False)
    return Mailbox(root, count, files, total)


# --- measuring -----------------------------------------------------------------------------
