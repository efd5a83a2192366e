"""The web service's settings: the operator's own (what DNS publishes, from the same
VPES_* environment: the chart gives both the operator's ConfigMap) and its own few."""

from __future__ import annotations

from dataclasses import dataclass, field

from vpes_billing.settings import _count, _seconds
from vpes_operator.settings import OperatorSettings


@dataclass(frozen=True)
class WebSettings:
    # Hosts, ports, the MTA-STS policy and the edge's web name: the DNS records' source.
    mail: OperatorSettings = field(default_factory=OperatorSettings)
    # A change to the servers or plans is served this long after it (watched; the
    # changes meanwhile are one rebuild of the index of hosted domains).
    hosted_settle_seconds: float = 1.0
    # Request bodies over this are refused (413): an autodiscover request is ~400 bytes.
    max_body_bytes: int = 16 * 1024
    # The calendar proxy (dav.py): bodies over this are refused (413), and the
    # tenant's Radicale must answer (connect, then each read) within this long (503).
    dav_max_body: int = 10 * 1024 * 1024
    dav_timeout_seconds: float = 60.0

    @classmethod
    def from_env(cls) -> WebSettings:
        return cls(
            mail=OperatorSettings.from_env(),
            hosted_settle_seconds=_seconds("VPES_WEB_HOSTED_SETTLE_SECONDS", 1.0),
            max_body_bytes=_count("VPES_WEB_MAX_BODY_BYTES", 16 * 1024, minimum=1024),
            dav_max_body=_count("VPES_WEB_DAV_MAX_BODY", 10 * 1024 * 1024, minimum=1024),
            dav_timeout_seconds=_seconds("VPES_WEB_DAV_TIMEOUT_SECONDS", 60.0, positive=True),
        )
