"""Settings from the environment; secrets from env variables filled from Secrets."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

DAY = 24 * 3600


def _secret(name: str) -> str:
    """`NAME`, or the content of the file `NAME_FILE` (a mounted Secret)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"{name} (or {name}_FILE) must be set, from a Secret")
    return value


def _seconds(name: str, default: float, *, positive: bool = False) -> float:
    """`name` as a number of seconds (zero or more; more than zero if `positive`), or
    `default` if unset; a clear error naming the variable otherwise."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    wanted = "more than zero" if positive else "zero or more"
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be {wanted} seconds, not {raw!r}") from None
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise SystemExit(f"{name} must be {wanted} seconds, not {raw!r}")
    return value


def _count(name: str, default: int, *, minimum: int = 0) -> int:
    """`name` as a whole number of at least `minimum`, or `default` if unset; a clear
    error naming the variable otherwise."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be {minimum} or more, not {raw!r}")
    return value


# Hosts a provider runs under its own domain, and names that would pass for its staff.
RESERVED_SUBDOMAINS = frozenset(
    [
        "abuse",
        "admin",
        "administrator",
        "api",
        "app",
        "autoconfig",
        "autodiscover",
        "billing",
        "blog",
        "cdn",
        "dav",
        "dns",
        "docs",
        "ftp",
        "help",
        "hostmaster",
        "imap",
        "info",
        "mail",
        "mta-sts",
        "mx",
        "ns",
        "ns1",
        "ns2",
        "openpgpkey",
        "panel",
        "pop",
        "pop3",
        "portal",
        "postmaster",
        "root",
        "security",
        "smtp",
        "status",
        "support",
        "webmail",
        "webmaster",
        "www",
    ]
)


@dataclass(frozen=True)
class Settings:
    stripe_api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    public_url: str = "http://127.0.0.1:8080"
    stripe_api_base: str | None = None  # stripe-mock in tests; Stripe itself when unset
    namespace: str = "vpes-system"  # where the service runs and keeps its event records
    service_account: str = "vpes-billing"
    tenant_cluster_role: str = "vpes-billing-tenant"
    provider_domain: str | None = None  # customers may take <name>.<provider_domain>
    # Names under provider_domain no customer may take: the provider's own hosts and
    # the role addresses' look-alikes (RESERVED_SUBDOMAINS, plus any the provider adds).
    reserved_subdomains: frozenset[str] = RESERVED_SUBDOMAINS
    grace_seconds: float = 7 * DAY  # from a failed payment to suspension
    retention_seconds: float = 30 * DAY  # from cancellation to deletion
    # After the retention period, how long a namespace is kept while its final backup
    # has not Completed (Pending, Running, Failed or missing) before it is removed anyway.
    final_backup_wait_seconds: float = 7 * DAY
    sweep_seconds: float = 300.0
    link_ttl_seconds: float = 2 * DAY
    # Signups one client address may start at once, then one per signup_every_seconds.
    signup_burst: int = 5
    signup_every_seconds: float = 120.0
    max_body_bytes: int = 256 * 1024
    event_record_days: int = 30  # Stripe retries for 3 days; records outlive that

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            stripe_api_key=_secret("STRIPE_API_KEY"),
            webhook_secret=_secret("STRIPE_WEBHOOK_SECRET"),
            public_url=env("VPES_BILLING_PUBLIC_URL", cls.public_url).rstrip("/"),
            stripe_api_base=env("STRIPE_API_BASE") or None,
            namespace=env("VPES_BILLING_NAMESPACE") or env("POD_NAMESPACE") or cls.namespace,
            service_account=env("VPES_BILLING_SERVICE_ACCOUNT", cls.service_account),
            tenant_cluster_role=env("VPES_BILLING_TENANT_ROLE", cls.tenant_cluster_role),
            provider_domain=env("VPES_PROVIDER_DOMAIN") or None,
            reserved_subdomains=RESERVED_SUBDOMAINS
            | {
                name.strip().lower()
                for name in env("VPES_RESERVED_SUBDOMAINS", "").split(",")
                if name.strip()
            },
            grace_seconds=_seconds("VPES_BILLING_GRACE_SECONDS", cls.grace_seconds),
            retention_seconds=_seconds("VPES_BILLING_RETENTION_SECONDS", cls.retention_seconds),
            final_backup_wait_seconds=_seconds(
                "VPES_BILLING_FINAL_BACKUP_WAIT_SECONDS", cls.final_backup_wait_seconds
            ),
            sweep_seconds=_seconds("VPES_BILLING_SWEEP_SECONDS", cls.sweep_seconds),
            link_ttl_seconds=_seconds("VPES_BILLING_LINK_TTL_SECONDS", cls.link_ttl_seconds),
            signup_burst=_count("VPES_BILLING_SIGNUP_BURST", cls.signup_burst, minimum=1),
            signup_every_seconds=_seconds(
                "VPES_BILLING_SIGNUP_EVERY_SECONDS", cls.signup_every_seconds, positive=True
            ),
        )
