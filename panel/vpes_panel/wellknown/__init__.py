"""`vpes-web`: the client set-up endpoints behind the names every hosted domain's DNS
records point at the edge's web name (autoconfig., autodiscover., mta-sts.).

One small shared service for every customer, routed by the HTTP Host header
(`routes.py`): Thunderbird's autoconfig, Outlook's autodiscover and the MTA-STS
policy, each generated from the operator's own settings (the same VPES_*
environment, `vpes_operator.dns.records`), so that what clients are told and
what DNS says cannot differ. A domain no server hosts gets 404 (`hosted.py`).

At the edge's web name, `/dav/` is the calendar and contacts proxy to each server's
own Radicale, found by the login's domain (`dav.py`; `/.well-known/caldav` and
`/.well-known/carddav` at any host redirect there: `dav_routing.py`).

At any host, `/.well-known/acme-challenge/<token>` answers the operator's ACME
HTTP-01 challenges from the one ConfigMap it writes them to (`acme.py`).
"""
