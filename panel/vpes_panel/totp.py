"""Second factor: time-based one-time passwords (RFC 6238, through pyotp).

A user's secret and the last time step used are kept in the panel's Secret
in their namespace (customer.totp_key), never in the page after enrolment. A
code is good for its 30-second step and the one before or after (clock skew),
and once only: a code whose step is not after the last one used is refused,
so a code seen over someone's shoulder cannot be replayed.
"""

from __future__ import annotations

import hmac
import io
import json
import time
from dataclasses import dataclass

import pyotp
import segno

ISSUER = "vpes"


@dataclass(frozen=True)
class Enrolment:
    secret: str
    last_step: int

    def dump(self) -> str:
        return json.dumps({"secret": self.secret, "last": self.last_step})

    @classmethod
    def load(cls, raw: str | None) -> Enrolment | None:
        if not raw:
            return None
        try:
            doc = json.loads(raw)
            return cls(str(doc["secret"]), int(doc.get("last", 0)))
        except (ValueError, KeyError, TypeError):
            return None


def new_secret() -> str:
    return pyotp.random_base32()


def uri(secret: str, address: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=issuer)


def qr_svg(text: str) -> str:
    """The QR code of `text` as inline SVG (no external resource, no script)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=5, xmldecl=False, svgns=True)
    return out.getvalue().decode()


def verify(secret: str, code: str, last_step: int, now: float | None = None) -> int | None:
    """The time step `code` belongs to, if it is right and newer than `last_step`."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    at = time.time() if now is None else now
    step = int(at // totp.interval)
    for candidate in (step - 1, step, step + 1):
        if candidate > last_step and hmac.compare_digest(totp.at(candidate * totp.interval), code):
            return candidate
    return None
