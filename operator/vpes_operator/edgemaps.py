"""The shared edge's maps kept current in one ConfigMap, and DomainsRouted on each server.

One pass (`Publisher.publish`) builds the maps from every server and plan the
watches delivered (`watched.EDGE`, `watched.PLANS`), reads the ConfigMap, and
applies it only when its data differs (so a by-hand edit is put back on the
next pass); then it writes DomainsRouted on each server whose condition
changed (read-modify-write of its status; its transitions become events).

With the outbound relay (`relay_key_shards` > 0) the same pass writes the relay's
shard Secrets (`edge.relay`), each only when its data differs, before the maps
(a server the maps' ``limits`` name can then log in). Their input is
`watched.RELAY`: each server's reconcile puts what it read of its credentials
Secret; the first pass also takes what the published shards hold (a restarted
operator loses nobody before each server has been reconciled again).

A pass that cannot build the maps (a builder raised) leaves the ConfigMap as
it was: the edge goes on with the last good maps. The failure is logged, and
posted once as a Warning event on the ConfigMap (again only when the failure
changes); `vpes_edge_maps_last_success_timestamp_seconds` stops advancing.

The maps must never be published from a partial view of the fleet (a domain
missing from them is refused by the edge): `undelivered` says how many servers
and plans the API has that the watches have not delivered yet, and the first
pass waits until there are none.

Only the leader runs this: with leader election the operator starts kopf
(and with it every background loop) only once it holds the Lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import GROUP, VERSION, metrics, naming
from .builders.meta import server_reference
from .clients import inventory
from .clients.kube import ApiError, Kube
from .clients.status import update_server_status
from .conditions import Cond, Event, find, set_condition
from .edge import Edge, EdgeMapsError, ServerKey, build, config_map, relay
from .edge.relay import RelayEntry
from .models.conditions import Reason
from .models.plan import PlanJSON
from .models.server import PersonalMailServer, PersonalMailServerStatus
from .settings import OperatorSettings
from .watched import Watched

log = logging.getLogger(__name__)

Poster = Callable[[dict[str, Any], list[Event]], None]
PLANS_PATH = f"/apis/{GROUP}/{VERSION}/mailplans"


def undelivered(
    kube: Kube, servers: set[str], plans: set[str], namespaces: Iterable[str] = ()
) -> int:
    """How many servers (by uid) and plans (by name) exist that are not in `servers`
    and `plans` (what the watches delivered); metadata-only pages."""
    paths = inventory.server_paths(namespaces)
    uids = {m.uid for path in paths for m in inventory.list_metadata(kube, path)}
    names = {m.name for m in inventory.list_metadata(kube, PLANS_PATH)}
    return len(uids - servers) + len(names - plans)


def unchanged(current: PersonalMailServer, cond: Cond) -> bool:
    """Whether the server already says `cond` (status, reason and message)."""
    old = find(current.status.conditions, cond.type)
    return (
        old is not None
        and old.status == cond.status_text
        and old.reason == cond.reason
        and old.message == cond.message
    )


def with_condition(
    current: PersonalMailServer, cond: Cond, now: dt.datetime
) -> PersonalMailServerStatus | None:
    """The status with `cond` set (None: it says so already)."""
    if unchanged(current, cond):
        return None
    status = current.status
    conditions = set_condition(status.conditions, cond, generation=current.generation, now=now)
    return status.model_copy(update={"conditions": conditions})


@dataclass
class Publisher:
    kube: Kube
    settings: OperatorSettings
    post: Poster
    # The failure last posted as an event (posted again only when it changes).
    failure: str | None = None
    published: str = ""  # the version of the maps last found or made current
    invalid: dict[ServerKey, str] = field(default_factory=dict)
    # Each server's relay material (see the module docstring); None: no relay.
    relay: Watched[RelayEntry] | None = None
    seeded: bool = False
    # Each shard Secret as last read or written: read again only when the metadata
    # list shows another resourceVersion (one request a pass, not N full reads).
    shards_seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reference(self, uid: str = "") -> dict[str, Any]:
        s = self.settings
        meta = {"name": s.edge_maps_name, "namespace": s.operator_namespace, "uid": uid}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    def publish(self, servers: list[PersonalMailServer], plans: Mapping[str, PlanJSON]) -> bool:
        """One pass; False when the maps could not be built (the next change may mend
        that). An API error is raised: the caller tries again soon."""
        s = self.settings
        live = self.kube.get("v1", "ConfigMap", s.operator_namespace, s.edge_maps_name)
        data = dict((live or {}).get("data") or {})
        try:
            edge = build(servers, plans, s, previous=data or None)
            body = config_map(edge.maps, s)
            shards = self.shards(edge, data)
        except Exception as e:
            self.build_failed(e, live)
            return False
        self.apply_shards(shards)
        if body["data"] != data or not _labelled(live, body):
            self.kube.apply(body)
            log.info("edge maps %s applied: %d domains", edge.maps.version, edge.maps.domain_count)
        self.failure = None
        self.published = edge.maps.version
        metrics.EDGE_MAPS_LAST_SUCCESS.set(time.time())
        metrics.EDGE_MAPS_DOMAINS.set(edge.maps.domain_count)
        self.report_invalid(edge)
        self.write_conditions(servers, edge)
        return True

    def shards(self, edge: Edge, maps: Mapping[str, str]) -> list[tuple[dict[str, Any], bool]]:
        """The shard Secrets that differ from the live ones, in the order to write them,
        each with whether it adds a key."""
        s, store = self.settings, self.relay
        if s.relay_key_shards <= 0 or store is None:
            return []
        names = [relay.secret_name(s, i) for i in range(s.relay_key_shards)]
        live = self.live_shards(names)
        if not self.seeded:
            old = relay.entries_from_shards(map(relay.decoded, live), maps.get("senders", ""))
            for who, found in old.items():
                store.put_absent(who, who, found)
            self.seeded = True
        entries = {group: values[0] for group, values in store.items() if values}
        data = relay.shards(edge.fleet, entries, edge.routing, s.dkim_selector, len(names))
        if too_big := relay.oversized(data):
            said = ", ".join(f"shard {i}: {n} bytes" for i, n in too_big)
            raise EdgeMapsError(
                f"the relay's key shards would not fit in a Secret ({said}); raise "
                "edge.relay.keyShards"
            )
        out = []
        for i, (wanted, current) in enumerate(zip(data, live, strict=True)):
            body = relay.shard_secret(s, i, wanted)
            now = relay.decoded(current)
            if now != wanted or not _labelled(current, body):
                out.append((body, bool(set(wanted) - set(now))))
        # Shards that only lose or change keys first: a DKIM key moving to a server of
        # another shard is never in two shards of the relay's one projected volume.
        return sorted(out, key=lambda shard: shard[1])

    def live_shards(self, names: list[str]) -> list[dict[str, Any] | None]:
        """The shard Secrets as they are (None: missing)."""
        ns = self.settings.operator_namespace
        try:
            listed = inventory.list_metadata(
                self.kube,
                f"/api/v1/namespaces/{ns}/secrets",
                labels=f"{naming.LABEL_COMPONENT}={relay.COMPONENT}",
            )
            versions: dict[str, str] | None = {m.name: m.resource_version for m in listed}
        except ApiError as e:
            if e.status != 403:  # no list there (not the chart's namespace): read each
                raise
            versions = None
        out: list[dict[str, Any] | None] = []
        for name in names:
            seen = self.shards_seen.get(name)
            if versions is not None and seen is not None and versions.get(name) == _version(seen):
                out.append(seen)
                continue
            found = self.kube.get("v1", "Secret", ns, name)
            self.remember(name, found)
            out.append(found)
        return out

    def remember(self, name: str, secret: dict[str, Any] | None) -> None:
        if secret is None:
            self.shards_seen.pop(name, None)
        else:
            self.shards_seen[name] = secret

    def apply_shards(self, shards: list[tuple[dict[str, Any], bool]]) -> None:
        for body, _adds in shards:
            name = body["metadata"]["name"]
            self.remember(name, self.kube.apply(body))
            log.info("edge relay shard %s applied", name)

    def build_failed(self, error: Exception, live: dict[str, Any] | None) -> None:
        text = f"{type(error).__name__}: {error}"
        if text == self.failure:
            log.debug("building the edge's maps still fails: %s", text)
            return
        log.error("building the edge's maps failed; the last maps stay: %s", text, exc_info=error)
        self.failure = text
        uid = str(((live or {}).get("metadata") or {}).get("uid") or "")
        message = f"the edge's maps could not be built, the last ones stay in place: {text}"
        self.post(self.reference(uid), [Event("Warning", Reason.EDGE_MAPS_FAILED, message)])

    def report_invalid(self, edge: Edge) -> None:
        for key, why in edge.invalid.items():
            if self.invalid.get(key) != why:
                log.warning("edge maps: %s keeps its previous recipients: %s", key, why)
        self.invalid = dict(edge.invalid)

    def write_conditions(self, servers: list[PersonalMailServer], edge: Edge) -> None:
        """DomainsRouted on every live server whose condition changed."""
        now = dt.datetime.now(dt.UTC)
        for server in servers:
            key = ServerKey(server.metadata.namespace, server.metadata.name)
            cond = edge.conditions.get(key)
            if cond is None or unchanged(server, cond):
                continue
            try:
                self.write_condition(key, server.metadata.uid, cond, now)
            except ApiError as e:
                log.warning("writing DomainsRouted of %s failed: %s", key, e.message)

    def write_condition(self, key: ServerKey, uid: str, cond: Cond, now: dt.datetime) -> None:
        def mutate(current: PersonalMailServer) -> PersonalMailServerStatus | None:
            if current.metadata.uid != uid or current.metadata.deletion_timestamp:
                return None  # a namesake, or on its way out
            return with_condition(current, cond, now)

        written = update_server_status(self.kube, key.namespace, key.name, mutate)
        if written.events:
            self.post(server_reference(key.name, key.namespace, uid), written.events)


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _labelled(live: dict[str, Any] | None, body: dict[str, Any]) -> bool:
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in body["metadata"]["labels"].items())
