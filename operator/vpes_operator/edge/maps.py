"""The shared edge's lookup tables, from every PersonalMailServer and its plan.

``build`` is pure: the same servers, plans and settings give the same bytes
(every table sorted, one entry a line, each file ending in a newline or
empty). Who has which domain is decided in ``routing``; which addresses a
server receives in ``render.addresses`` (the rules its own Postfix follows).

- ``domains``: ``example.com ns/server`` (Postfix relay_domains: the edge
  accepts mail for it at all).
- ``recipients``: ``alice@example.com OK``, and ``@example.com OK`` for a
  catch-all domain (relay_recipient_maps: unknown recipients are refused at
  RCPT time, at the edge). Every mailbox, alias, forward source and the
  postmaster of each domain. ``+detail`` forms are found by the edge's own
  recipient_delimiter, as in the tenant.
- ``transport``: ``example.com smtp:[server.ns.svc.cluster.local]:25``: the
  tenant's in-cluster Service.
- ``access``: a suspended server's domains, ``example.com 450 4.7.1 ...``
  (check_recipient_access): the sender's server keeps the mail and retries.
- ``antispam``: ``example.com standard``: the plan's features.antispam
  (off, standard, strict; the model's default when the plan is missing or
  invalid).
- ``proxy``: ``example.com:::::::proxy=y host=<service> nopassword=y``, a
  Dovecot passwd-file keyed by domain (passdb username_format=%d) for the
  login proxy.
- ``senders``, ``limits``, ``held``: the outbound relay's (see ``relay``).
- ``version``: the sha256 of the other files (name, NUL, content, NUL, in
  name order): which maps an edge pod has loaded.
- ``webmail-domains``: the domains that may log in to the webmail (``webmail``);
  not an edge map, so not in ``version``.

A server that is not Running or ready is routed all the same: its mail waits
in the edge's queue until the server answers. A server being deleted is left
out. A server whose spec cannot make a configuration (the tenant refuses it
too, Provisioned says why, and keeps running its previous one) keeps the
recipients the previous maps had for its domains (when they went to it then
too); with none to keep, its
domains answer 4xx (the mail waits) rather than refuse mail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import naming
from ..builders.network import service_host
from ..conditions import Cond
from ..models.plan import AntispamLevel, MailPlanSpec, PlanJSON
from ..models.server import PersonalMailServer, PersonalMailServerSpec
from ..render import addresses
from ..render.checks import RenderError
from ..settings import OperatorSettings
from . import relay, routing, webmail
from .routing import Routing, ServerKey

FILES = (
    "domains",
    "recipients",
    "transport",
    "access",
    "antispam",
    "proxy",
    "senders",
    "limits",
    "held",
)
# What a ConfigMap may hold (1 MiB), less room for its metadata.
MAX_BYTES = 1_000_000
ANTISPAM: dict[str, str] = {
    AntispamLevel.OFF: "off",
    AntispamLevel.STANDARD: "standard",
    AntispamLevel.STRICT: "strict",
}
SUSPENDED = "450 4.7.1 {domain}: this mail server is suspended, try again later"
UNCONFIGURED = "450 4.3.0 {domain}: this mail server is being configured, try again later"


class EdgeMapsError(ValueError):
    """The maps cannot be published (the last ones stay in place)."""


@dataclass(frozen=True)
class EdgeMaps:
    """The text of each file of the edge's maps."""

    files: dict[str, str]
    domain_count: int

    @property
    def version(self) -> str:
        return self.files["version"].strip()


@dataclass(frozen=True)
class Edge:
    maps: EdgeMaps
    routing: Routing
    # DomainsRouted of every live server.
    conditions: dict[ServerKey, Cond]
    # Servers whose addresses could not be decided, and why.
    invalid: dict[ServerKey, str] = field(default_factory=dict)
    # Every live server, oldest first.
    fleet: tuple[ServerKey, ...] = ()


@dataclass
class _Tables:
    lines: dict[str, list[str]] = field(default_factory=lambda: {f: [] for f in FILES})

    def add(self, name: str, line: str) -> None:
        self.lines[name].append(line)

    def text(self, name: str) -> str:
        rows = sorted(set(self.lines[name]))
        return "".join(f"{r}\n" for r in rows)


def antispam(plan: PlanJSON | None) -> str:
    try:
        spec = MailPlanSpec.model_validate(plan or {})
    except ValidationError:
        spec = MailPlanSpec()
    return ANTISPAM[spec.features.antispam]


def accepted(server: PersonalMailServer, domains: tuple[str, ...]) -> tuple[str, ...]:
    """Every address the server receives (``@domain`` for a catch-all), of `domains`
    only. Raises ``RenderError`` or pydantic's ``ValidationError`` for a spec the
    tenant cannot be configured from."""
    spec = PersonalMailServerSpec.model_validate(server.spec)
    own = routing.listed_domains(server)
    # Quotas do not matter here; 1 byte is a valid default.
    found = addresses.resolve(spec, own, default_quota=1).accepted
    wanted = set(domains)
    return tuple(a for a in found if a.rpartition("@")[2] in wanted)


def previous_recipients(data: Mapping[str, str] | None) -> dict[tuple[str, str], list[str]]:
    """The recipient lines of the previous maps, by (domain, the server it went to)."""
    data = data or {}
    owners = dict(
        line.split(" ", 1) for line in data.get("domains", "").splitlines() if " " in line
    )
    out: dict[tuple[str, str], list[str]] = {}
    for line in data.get("recipients", "").splitlines():
        domain = line.split(" ", 1)[0].rpartition("@")[2]
        if domain in owners:
            out.setdefault((domain, owners[domain]), []).append(line)
    return out


def build(
    servers: Iterable[PersonalMailServer],
    plans: Mapping[str, PlanJSON],
    settings: OperatorSettings,
    previous: Mapping[str, str] | None = None,
) -> Edge:
    """The edge's maps and every live server's DomainsRouted; `previous` is the data of
    the maps last published (see the module docstring for what it is used for)."""
    fleet = routing.live(servers)
    routed = routing.route(fleet)
    kept = previous_recipients(previous)
    tables = _Tables()
    invalid: dict[ServerKey, str] = {}
    for server in fleet:
        key = routing.key_of(server)
        domains = routed.domains_of(key)
        if not domains:
            continue
        host = service_host(key.name, key.namespace, settings.cluster_domain)
        level = antispam(plans.get(server.plan))
        for d in domains:
            tables.add("domains", f"{d} {key}")
            tables.add("transport", f"{d} smtp:[{host}]:25")
            tables.add("antispam", f"{d} {level}")
            tables.add("proxy", f"{d}:::::::proxy=y host={host} nopassword=y")
            if server.suspended:
                tables.add("access", f"{d} {SUSPENDED.format(domain=d)}")
        try:
            for address in accepted(server, domains):
                tables.add("recipients", f"{address} OK")
        except (RenderError, ValidationError) as e:
            invalid[key] = str(e)
            for d in domains:
                lines = kept.get((d, str(key)), [])
                for line in lines:
                    tables.add("recipients", line)
                if not lines and not server.suspended:
                    tables.add("access", f"{d} {UNCONFIGURED.format(domain=d)}")
    for name, lines in relay.outbound_lines(fleet, routed, plans).items():
        for line in lines:
            tables.add(name, line)
    files = {name: tables.text(name) for name in FILES}
    files["version"] = version(files) + "\n"
    files[webmail.KEY] = webmail.domains(fleet, routed, plans)
    size = sum(len(t.encode()) for t in files.values())
    if size > MAX_BYTES:
        raise EdgeMapsError(
            f"the edge's maps would take {size} bytes, more than a ConfigMap holds "
            f"({MAX_BYTES}); the last maps stay in place"
        )
    return Edge(
        maps=EdgeMaps(files=files, domain_count=len(routed.owners)),
        routing=routed,
        conditions={
            routing.key_of(s): routing.domains_routed(routing.key_of(s), routed) for s in fleet
        },
        invalid=invalid,
        fleet=tuple(routing.key_of(s) for s in fleet),
    )


def version(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


COMPONENT = "edge-maps"


def config_map(maps: EdgeMaps, settings: OperatorSettings) -> dict[str, Any]:
    """The one ConfigMap the edge's pods mount: every file of the maps."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": settings.edge_maps_name,
            "namespace": settings.operator_namespace,
            "labels": {
                "app.kubernetes.io/part-of": "vpes",
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
                naming.LABEL_COMPONENT: COMPONENT,
            },
        },
        "data": dict(sorted(maps.files.items())),
    }
