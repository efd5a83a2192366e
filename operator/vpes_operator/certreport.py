"""What a certificates pass reports, whoever got the certificates (cert-manager's
`webcerts.py` or the operator's own ACME client, `acmecerts.py`): CertificateReady on
each server and the expiry metric.

A condition is written only when it differs from the one last written for that
server (the first pass after a start reads each server once). One `Reporter` serves
both paths, so a switch from one to the other writes what changed, no more.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .builders.meta import server_reference
from .clients.kube import ApiError, Kube
from .clients.status import update_server_status
from .conditions import Cond, Event
from .edge.routing import ServerKey, key_of
from .edgemaps import with_condition
from .models.server import PersonalMailServer, PersonalMailServerStatus

log = logging.getLogger(__name__)

Poster = Callable[[dict[str, Any], list[Event]], None]


@dataclass
class Reporter:
    kube: Kube
    post: Poster
    # The condition last written (or found) per server uid.
    written: dict[str, Cond] = field(default_factory=dict)
    exported: set[ServerKey] = field(default_factory=set)

    def export(self, ends: Mapping[ServerKey, dt.datetime]) -> None:
        """vpes_certificate_expiry_timestamp_seconds of each server with a certificate."""
        for key, end in ends.items():
            metrics.CERTIFICATE_EXPIRY.labels(key.namespace, key.name).set(end.timestamp())
        for key in self.exported - set(ends):
            metrics.CERTIFICATE_EXPIRY.remove(key.namespace, key.name)
        self.exported = set(ends)

    def write_conditions(
        self, servers: list[PersonalMailServer], conds: Mapping[ServerKey, Cond]
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        uids = {s.metadata.uid for s in servers}
        for uid in set(self.written) - uids:
            del self.written[uid]
        for server in servers:
            cond, uid = conds.get(key_of(server)), server.metadata.uid
            if cond is None or self.written.get(uid) == cond:
                continue
            try:
                self.write_condition(key_of(server), uid, cond, now)
                self.written[uid] = cond
            except ApiError as e:
                log.warning("writing CertificateReady of %s failed: %s", key_of(server), e.message)

    def write_condition(self, key: ServerKey, uid: str, cond: Cond, now: dt.datetime) -> None:
        def mutate(current: PersonalMailServer) -> PersonalMailServerStatus | None:
            if current.metadata.uid != uid or current.metadata.deletion_timestamp:
                return None
            return with_condition(current, cond, now)

        written = update_server_status(self.kube, key.namespace, key.name, mutate)
        if written.events:
            self.post(server_reference(key.name, key.namespace, uid), written.events)
