"""Radicale's logins for one vpes server: the mailboxes' own passwords.

Radicale loads this module as its auth plugin (``[auth] type = vpes_dav_auth``).
It reads Dovecot's passwd-file, the ``passwd`` key of the server's Secret that
the pod mounts (``user:{SCHEME}hash:...``; the operator writes only BLF-CRYPT
and ARGON2ID hashes), and checks a login the way the tenant's Dovecot does, so
the address and password that open the mailbox open its calendars too.

The file is read again whenever it changes (the kubelet swaps a Secret's files
in one rename), so a new mailbox or a changed password counts within the
kubelet's sync period and a removed mailbox stops logging in.

DAV clients send the password with every request and both hashes are slow on
purpose, so a login that succeeded is remembered for CACHE_SECONDS: by a salted
digest of the password, and only while the stored hash is the same one (a
password change forgets it at once). A failed login is never remembered.
Radicale itself delays every failed login (``[auth] delay``).

Written for vpes (no Radicale plugin in Debian checks Dovecot's hashes).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time

import argon2
import bcrypt
from radicale.auth import BaseAuth

PASSWD_PATH = os.environ.get("VPES_DAV_PASSWD", "/etc/vpes/secrets/passwd")
CACHE_SECONDS = float(os.environ.get("VPES_DAV_CACHE_SECONDS", "300"))
BCRYPT_MAX_BYTES = 72  # bcrypt reads no more; the operator hashed the first 72
CACHE_MAX = 4096

log = logging.getLogger("radicale")


def verify(stored: str, password: str) -> bool:
    """Whether `password` matches a Dovecot hash ``{SCHEME}...``."""
    if stored.startswith("{BLF-CRYPT}$2"):
        raw = stored[len("{BLF-CRYPT}") :]
        # libxcrypt treats $2y$ and $2b$ alike; Python's bcrypt wants $2b$.
        raw = "$2b$" + raw[4:] if raw[:4] in ("$2y$", "$2a$") else raw
        try:
            return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], raw.encode())
        except ValueError:
            return False
    if stored.startswith("{ARGON2ID}$argon2id$"):
        try:
            return argon2.PasswordHasher().verify(stored[len("{ARGON2ID}") :], password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
    return False


def parse_passwd(text: str) -> dict[str, str]:
    """address (lower case) → stored hash, from Dovecot's passwd-file."""
    users: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        user, _, rest = line.partition(":")
        stored = rest.split(":", 1)[0]
        if user and stored:
            users[user.lower()] = stored
    return users


class PasswdFile:
    """The passwd-file, read again when its identity or modification time changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def users(self) -> dict[str, str]:
        try:
            st = os.stat(self.path)
        except OSError as e:
            log.error("vpes_dav_auth: cannot read %s (%s): nobody can log in", self.path, e)
            return {}
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if seen != self._seen:
                with open(self.path, encoding="utf-8") as f:
                    self._users = parse_passwd(f.read())
                self._seen = seen
                log.info("vpes_dav_auth: %d mailboxes can log in", len(self._users))
            return self._users


class Auth(BaseAuth):
    def __init__(self, configuration: object) -> None:
        super().__init__(configuration)  # type: ignore[arg-type]
        self._passwd = PasswdFile(PASSWD_PATH)
        self._salt = secrets.token_bytes(16)
        self._cache: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def _digest(self, password: str) -> bytes:
        return hashlib.blake2b(password.encode(), key=self._salt).digest()

    def login(self, login: str, password: str) -> str:
        user = login.strip().lower()
        stored = self._passwd.users().get(user)
        if stored is None or not password:
            return ""
        digest, now = self._digest(password), time.monotonic()
        with self._lock:
            hit = self._cache.get((user, stored))
        if hit is not None and hit[1] > now and hmac.compare_digest(hit[0], digest):
            return user
        if not verify(stored, password):
            return ""
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[(user, stored)] = (digest, now + CACHE_SECONDS)
        return user
