"""The panel's settings, from the environment; secrets from files of mounted Secrets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vpes_billing.settings import _count, _seconds
from vpes_operator.settings import OperatorSettings

CUSTOMER_SA = "vpes-customer"
PANEL_SECRET = "vpes-panel"  # noqa: S105 (a Secret's name)
LOGINS_SECRET = "vpes-logins"  # noqa: S105 (a Secret's name)
MIN_SESSION_KEY = 32


def _session_key() -> bytes:
    path = os.environ.get("VPES_PANEL_SESSION_KEY_FILE")
    raw = Path(path).read_text().strip() if path else os.environ.get("VPES_PANEL_SESSION_KEY", "")
    if len(raw) < MIN_SESSION_KEY:
        raise SystemExit(
            "VPES_PANEL_SESSION_KEY_FILE (or VPES_PANEL_SESSION_KEY) must hold a random key "
            f"of at least {MIN_SESSION_KEY} characters, from a Secret"
        )
    return raw.encode()


def _optional_secret(name: str) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path and Path(path).exists():
        return Path(path).read_text().strip() or None
    return os.environ.get(name) or None


@dataclass(frozen=True)
class Settings:
    public_url: str
    session_key: bytes = field(repr=False)
    customer_service_account: str = CUSTOMER_SA
    billing_url: str | None = None
    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None
    # A session ends after this long without a request, and after `session_max_seconds`
    # whatever happens.
    session_idle_seconds: float = 1800.0
    session_max_seconds: float = 12 * 3600.0
    # Login attempts: per address `login_burst` at once then one every
    # `login_every_seconds`; per client address four times as many.
    login_burst: int = 5
    login_every_seconds: float = 60.0
    bcrypt_rounds: int = 10
    max_body_bytes: int = 64 * 1024
    # The login directory (which namespace serves a domain) is listed again after this.
    directory_seconds: float = 10.0
    # What mail apps are told (IMAP and SMTP hosts and ports): the operator's own
    # settings, from the same VPES_* environment (the chart gives the panel the
    # operator's ConfigMap), as the DNS records' SRV entries are made from.
    mail: OperatorSettings = field(default_factory=OperatorSettings)

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_env(cls) -> Settings:
        public_url = os.environ.get("VPES_PANEL_PUBLIC_URL", "").rstrip("/")
        if urlsplit(public_url).scheme not in ("http", "https"):
            raise SystemExit(
                "VPES_PANEL_PUBLIC_URL must be the panel's address, e.g. https://panel.example.net"
            )
        return cls(
            public_url=public_url,
            session_key=_session_key(),
            customer_service_account=os.environ.get("VPES_PANEL_CUSTOMER_SA", CUSTOMER_SA),
            billing_url=os.environ.get("VPES_PANEL_BILLING_URL", "").rstrip("/") or None,
            stripe_api_key=_optional_secret("STRIPE_API_KEY"),
            stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
            session_idle_seconds=_seconds("VPES_PANEL_SESSION_IDLE_SECONDS", 1800.0, positive=True),
            session_max_seconds=_seconds("VPES_PANEL_SESSION_MAX_SECONDS", 43200.0, positive=True),
            login_burst=_count("VPES_PANEL_LOGIN_BURST", 5, minimum=1),
            login_every_seconds=_seconds("VPES_PANEL_LOGIN_EVERY_SECONDS", 60.0, positive=True),
            bcrypt_rounds=_count("VPES_PANEL_BCRYPT_ROUNDS", 10, minimum=4),
            directory_seconds=_seconds("VPES_PANEL_DIRECTORY_SECONDS", 10.0),
            mail=OperatorSettings.from_env(),
        )
