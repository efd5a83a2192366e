"""Sessions in a signed cookie: who is logged in to which server, until when.

The cookie holds no secret: the namespace, the server, the login, whether it
manages the whole server, a fingerprint of the password hash it logged in with
(a changed password ends every session made with the old one), the times, and
the session's CSRF token. It is signed with HMAC-SHA256 under the panel's key
(a Secret), so it cannot be forged or edited; it ends after a while without a
request and after a fixed time whatever happens. Written here: the format is
a few lines, and a server-side store would need a database the panel does not
otherwise have.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

COOKIE = "vpes_session"
# A login whose password was right but whose second factor is still to come.
STAGE_TOTP = "totp"
STAGE_IN = "in"
TOTP_STAGE_SECONDS = 300.0


@dataclass(frozen=True)
class Session:
    namespace: str
    server: str
    user: str
    admin: bool
    fingerprint: str
    stage: str
    issued: float
    seen: float
    csrf: str

    @property
    def complete(self) -> bool:
        return self.stage == STAGE_IN


def fingerprint(password_hash: str) -> str:
    """Which password a session was made with, without the hash itself."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


class SessionCodec:
    """Signs, checks and ages session cookies."""

    def __init__(
        self,
        key: bytes,
        idle_seconds: float,
        max_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hashlib.sha256(b"vpes-panel-session\0" + key).digest()
        self.idle = idle_seconds
        self.max = max_seconds
        self.clock = clock

    def start(
        self, namespace: str, server: str, user: str, admin: bool, fp: str, stage: str
    ) -> Session:
        now = self.clock()
        return Session(namespace, server, user, admin, fp, stage, now, now, new_csrf())

    def advance(self, session: Session, stage: str) -> Session:
        """The same login one step further (a new token: the step changed its rights)."""
        return replace(session, stage=stage, seen=self.clock(), csrf=new_csrf())

    def touch(self, session: Session) -> Session:
        return replace(session, seen=self.clock())

    def encode(self, session: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(asdict(session)).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def decode(self, cookie: str | None) -> Session | None:
        """The session in `cookie`, or None when absent, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        body, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(body.encode()))
            session = Session(**doc)
        except (ValueError, TypeError):
            return None
        now = self.clock()
        idle = TOTP_STAGE_SECONDS if session.stage == STAGE_TOTP else self.idle
        if now - session.seen > idle or now - session.issued > self.max or session.seen > now + 60:
            return None
        return session

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
