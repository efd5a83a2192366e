"""MailPlan handlers: a plan change re-reconciles every server on that plan."""

from __future__ import annotations

from typing import Any

import kopf

from .. import API_VERSION, GROUP, VERSION, naming
from ..models.server import PersonalMailServer


@kopf.on.create(GROUP, VERSION, "mailplans")
@kopf.on.update(GROUP, VERSION, "mailplans", field="spec")
def plan_changed(name: str, meta: kopf.Meta, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    revision = f"{meta.get('generation', 0)}-{meta.get('uid', '')[:8]}"
    touched = 0
    for server in memo.kube.read_list(PersonalMailServer):
        if server.spec.get("plan") != name:
            continue
        m = server.metadata
        if m.annotations.get(naming.ANNOTATION_PLAN_REVISION) == revision:
            continue
        memo.kube.patch_metadata(
            API_VERSION,
            "PersonalMailServer",
            m.namespace,
            m.name,
            {"annotations": {naming.ANNOTATION_PLAN_REVISION: revision}},
        )
        touched += 1
    if touched:
        logger.info("plan %s changed: %d servers to reconcile", name, touched)
