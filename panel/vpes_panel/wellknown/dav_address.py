"""Where calendar and contacts clients are sent: one address on the edge's web name
for every customer (the proxy there finds each login's server: dav.py). Also what the
panel's account page shows, so the page and the redirects cannot differ."""

from __future__ import annotations

PREFIX = "/dav"


def dav_home(edge_web_host: str) -> str:
    """The address calendar and contacts clients are given."""
    return f"https://{edge_web_host.rstrip('.').lower()}{PREFIX}/"
