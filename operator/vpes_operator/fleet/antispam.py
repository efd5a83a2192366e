"""The edge's antispam rules: pure checks and builders for an antispam FleetUpgrade.

The rules reach Rspamd as files of its local.d: the fleet admin's ConfigMap is copied
into an operator-owned ConfigMap that the antispam pods mount at
/etc/vpes/antispam-rules (optional: none, no rules). images/rspamd/vpes-rspamd
copies those files into the local.d it builds at each start, beside the image's own
drop-ins, and runs `rspamadm configtest` before Rspamd starts: a pod whose rules
Rspamd cannot load exits with Rspamd's complaint and never becomes ready.

A canary is a second Deployment (one replica) with the live Deployment's pod
template, an extra label and the canary's ConfigMap: the antispam Service's
selector takes its pod too, so it judges a share of the real mail while the gate
scans it. Promotion writes the live ConfigMap and bumps an annotation of the live
pod template, so the Deployment rolls its pods with their readiness.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

from ..models.kube import Pod

JSON = dict[str, Any]

# The pod template annotation that names the rules' hash (a new value rolls the pods).
ANNOTATION_RULES = "vpes.io/antispam-rules"
# The canary's pods carry this label (the live Deployment's pods never do).
LABEL_TRACK = "vpes.io/antispam-track"
TRACK_CANARY = "canary"
# The pod volume that holds the rules (the chart's name for it).
RULES_VOLUME = "antispam-rules"
# The files the image ships in its local.d and override.d: a rule file of one of these
# names would replace ours (local.d) or be masked by ours (override.d).
IMAGE_DROP_INS = frozenset(
    {
        "classifier-bayes.conf",
        "milter_headers.conf",
        "options.inc",
        "phishing.conf",
        "settings.conf",
        "actions.conf",
        "arc.conf",
        "asn.conf",
        "dkim_signing.conf",
        "fuzzy_check.conf",
        "greylist.conf",
        "neural.conf",
        "ratelimit.conf",
        "rbl.conf",
        "rspamd_update.conf",
    }
)
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,251}\.(conf|inc|map)$")
# vpes-rspamd's exit status when it refuses its configuration (images/rspamd).
REFUSED = 2
# Kept in the FleetUpgrade's status (the rollback's copy of the previous rules): small.
MAX_RULES_BYTES = 256 * 1024


def check_rules(data: dict[str, str]) -> str | None:
    """Why these rule files cannot be used (None: they can), naming the bad key."""
    if not data:
        return "it has no rule files (no keys)"
    for key in sorted(data):
        if not RULE_NAME.match(key):
            return (
                f"key {key!r} is not a rule file name: letters, digits, . _ - only, "
                "ending in .conf, .inc or .map"
            )
        if key in IMAGE_DROP_INS:
            return (
                f"key {key!r} is a file the Rspamd image ships itself (local.d or "
                "override.d); name the rules' file otherwise"
            )
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > MAX_RULES_BYTES:
        return f"the rules are {size} bytes; at most {MAX_RULES_BYTES} are supported"
    return None


def rules_hash(data: dict[str, str]) -> str:
    """A short stable hash of the rule files (names and content)."""
    h = hashlib.sha256()
    for key in sorted(data):
        h.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return h.hexdigest()[:16]


def rules_config_map(
    name: str,
    namespace: str,
    data: dict[str, str],
    labels: dict[str, str],
    owner: JSON | None = None,
) -> JSON:
    """The ConfigMap the antispam pods (live or canary) read their rules from; the
    canary's is owned by its FleetUpgrade (the live one by nobody: it outlives it)."""
    meta: JSON = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


def canary_deployment(
    live: JSON, *, name: str, config_map: str, digest: str, labels: dict[str, str], owner: JSON
) -> JSON:
    """One replica of the live antispam Deployment's pod template, told apart by the
    canary label, reading its rules from `config_map`."""
    template = copy.deepcopy(live["spec"]["template"])
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), LABEL_TRACK: TRACK_CANARY}
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_RULES: digest}
    volumes = template["spec"].get("volumes") or []
    rules = next((v for v in volumes if v.get("name") == RULES_VOLUME), None)
    if rules is None:
        raise ValueError(
            f"the antispam Deployment {live['metadata']['name']} has no volume {RULES_VOLUME} "
            "(a chart older than antispam rules): upgrade the chart first"
        )
    rules.clear()
    rules.update({"name": RULES_VOLUME, "configMap": {"name": config_map, "optional": False}})
    selector = {**live["spec"]["selector"].get("matchLabels", {}), LABEL_TRACK: TRACK_CANARY}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": live["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }


def template_hash(deployment: JSON) -> str | None:
    """The rules' hash the Deployment's pod template names (None: none)."""
    meta = deployment["spec"]["template"].get("metadata") or {}
    value = (meta.get("annotations") or {}).get(ANNOTATION_RULES)
    return str(value) if value else None


def annotation_patch(digest: str | None) -> JSON:
    """The merge patch that names `digest` on the pod template (None removes it)."""
    return {"spec": {"template": {"metadata": {"annotations": {ANNOTATION_RULES: digest}}}}}


def pod_verdict(pods: list[Pod]) -> tuple[str | None, str | None]:
    """(why no pod is ready, the ready pod's IP): the canary's pod must run and be ready."""
    live = [p for p in pods if not p.metadata.deletion_timestamp]
    if not live:
        return "no canary pod yet", None
    for pod in live:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
        if ready and pod.status.pod_ip:
            return None, pod.status.pod_ip
    pod = live[0]
    why = f"the canary pod {pod.metadata.name} is not ready"
    for c in pod.status.container_statuses:
        if c.state.waiting and c.state.waiting.reason:
            why += f" ({c.name}: {c.state.waiting.reason}, {c.restart_count} restarts)"
        failed = c.last_state.terminated or c.state.terminated
        if failed and failed.message.strip():
            why += f"; it exited {failed.exit_code}: {failed.message.strip()[:600]}"
    return why, None


def refused(pods: list[Pod]) -> bool:
    """Whether a pod's vpes-rspamd refused its configuration (it exits REFUSED: bad
    rules, which no retry mends)."""
    for pod in pods:
        for c in pod.status.container_statuses:
            for state in (c.last_state.terminated, c.state.terminated):
                if state is not None and state.exit_code == REFUSED:
                    return True
    return False


def rollout_verdict(deployment: JSON, digest: str | None) -> str | None:
    """Why the antispam Deployment has not rolled out pods with the rules `digest`
    (None: every replica is updated, ready and available)."""
    name = deployment["metadata"]["name"]
    if template_hash(deployment) != digest:
        return f"{name}'s pod template does not name the rules {digest} yet"
    spec, status = deployment["spec"], deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration", 0)) < int(deployment["metadata"]["generation"]):
        return f"{name}: the rollout has not started yet"
    counts = {k: int(status.get(k, 0)) for k in ("updatedReplicas", "readyReplicas", "replicas")}
    counts["availableReplicas"] = int(status.get("availableReplicas", 0))
    if counts["updatedReplicas"] != want or counts["replicas"] != want:
        return f"{name}: {counts['updatedReplicas']} of {want} pods run the new rules"
    if counts["readyReplicas"] != want or counts["availableReplicas"] != want:
        return f"{name}: {counts['readyReplicas']} of {want} pods with the new rules are ready"
    return None


def scan_verdict(gtube: str | None, ham: str | None) -> str | None:
    """Why a scan of GTUBE and of a plain message shows a broken Rspamd (None: GTUBE is
    rejected and the plain message is not). The arguments are Rspamd's actions."""
    if gtube != "reject":
        return f"Rspamd did not reject GTUBE (its action: {gtube})"
    if ham == "reject":
        return "Rspamd rejected a plain message (the rules reject everything?)"
    return None
