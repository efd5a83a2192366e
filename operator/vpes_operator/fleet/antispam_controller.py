"""The antispam FleetUpgrade's controller: observe the edge's antispam, gate the step in
flight with a real scan, ask the planner (antispam_plan.py), write.

The gate's scan is Rspamd's own HTTP protocol (POST /checkv2 on the scanner, 11333):
GTUBE must be rejected and a plain message must not, through the canary pod's
address (step 1) or the antispam Service (step 2), from the operator (the chart's
NetworkPolicy admits it on 11333).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from .. import API_VERSION, naming
from ..clients.kube import JSON, Kube
from ..models.fleet import TERMINAL, FleetUpgrade
from ..models.kube import ConfigMap, Pod
from ..settings import OperatorSettings
from . import antispam
from .antispam_plan import CANARY, ROLLOUT, AntispamPlan, Inputs, Observed, Writes, plan
from .antispam_plan import abandon as abandon_writes
from .controller import write_status
from .planner import Health

KIND = "FleetUpgrade"
SCANNER_PORT = 11333
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
_MESSAGE = (
    "From: gate@vpes.invalid\r\nTo: gate@vpes.invalid\r\nSubject: {subject}\r\n"
    "Date: Mon, 07 Dec 2026 00:00:00 +0000\r\nMessage-ID: <gate-{subject}@vpes.invalid>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
)
HAM = _MESSAGE.format(subject="health", body="The antispam health gate says hello.")
SPAM = _MESSAGE.format(subject="gtube", body=GTUBE)


@dataclass(frozen=True)
class Names:
    """The edge's antispam objects, in the operator's namespace."""

    namespace: str
    deployment: str
    cluster_domain: str

    @property
    def live_rules(self) -> str:
        return f"{self.deployment}-rules"

    @property
    def canary(self) -> str:
        return f"{self.deployment}-canary"

    @property
    def canary_rules(self) -> str:
        return f"{self.deployment}-rules-canary"

    @property
    def service_host(self) -> str:
        return f"{self.deployment}.{self.namespace}.svc.{self.cluster_domain}"

    @classmethod
    def of(cls, settings: OperatorSettings) -> Names:
        return cls(
            settings.operator_namespace, settings.antispam_deployment, settings.cluster_domain
        )


def scan(host: str, message: str, timeout: float) -> str | None:
    """Rspamd's action for `message` (POST /checkv2); raises OSError when it does not answer."""
    request = urllib.request.Request(
        f"http://{host}:{SCANNER_PORT}/checkv2",
        data=message.encode(),
        headers={"IP": "192.0.2.1", "From": "gate@vpes.invalid", "Rcpt": "gate@vpes.invalid"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http only)
        answer = json.loads(response.read())
    action = answer.get("action") if isinstance(answer, dict) else None
    return str(action) if action is not None else None


def scan_health(host: str, timeout: float) -> Health:
    """The gate's scan through `host`: GTUBE rejected, a plain message not."""
    try:
        why = antispam.scan_verdict(scan(host, SPAM, timeout), scan(host, HAM, timeout))
    except (OSError, ValueError, urllib.error.URLError) as e:
        why = f"Rspamd's scanner on {host}:{SCANNER_PORT} did not answer: {e}"
    return Health(ok=why is None, detail=why or "")


def canary_health(kube: Kube, names: Names, live: JSON, timeout: float) -> Health:
    labels = {**live["spec"]["selector"].get("matchLabels", {})}
    labels[antispam.LABEL_TRACK] = antispam.TRACK_CANARY
    query = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = kube.read_list(Pod, names.namespace, labels=query)
    why, address = antispam.pod_verdict(pods)
    if why is not None or address is None:
        return Health(False, why or "no canary pod address", final=antispam.refused(pods))
    return scan_health(address, timeout)


def rollout_health(live: JSON, target: str | None, names: Names, timeout: float) -> Health:
    why = antispam.rollout_verdict(live, target)
    if why is not None:
        return Health(False, why)
    return scan_health(names.service_host, timeout)


def blocked_by(kube: Kube, upgrade: FleetUpgrade) -> str | None:
    """An older antispam FleetUpgrade that still runs: one at a time moves the edge."""
    created = upgrade.metadata.creation_timestamp
    me = (created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else "", upgrade.metadata.name)
    for other in kube.list(API_VERSION, KIND):
        meta, spec = other["metadata"], other.get("spec") or {}
        phase = (other.get("status") or {}).get("phase")
        key = (meta.get("creationTimestamp") or "", meta["name"])
        if "antispam" in spec and phase not in TERMINAL and key < me:
            return str(meta["name"])
    return None


def _data(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    found = kube.read(ConfigMap, namespace, name)
    return None if found is None else dict(found.data)


def observe(
    kube: Kube, upgrade: FleetUpgrade, names: Names, timeout: float
) -> tuple[Observed, JSON | None]:
    """What the planner looks at (the gate's verdict on the step in flight included),
    and the live Deployment as read."""
    assert upgrade.spec.antispam is not None
    ns = names.namespace
    live = kube.get("apps/v1", "Deployment", ns, names.deployment) if names.deployment else None
    canary = kube.get("apps/v1", "Deployment", ns, names.canary) if live else None
    step = upgrade.status.current_wave
    target = upgrade.status.antispam.target_hash if upgrade.status.antispam else None
    health = None
    if live is not None and step == CANARY and canary is not None:
        health = canary_health(kube, names, live, timeout)
    elif live is not None and step == ROLLOUT:
        health = rollout_health(live, target, names, timeout)
    seen = Observed(
        source=_data(kube, ns, upgrade.spec.antispam.rules_config_map),
        tried=_data(kube, ns, names.canary_rules) if live else None,
        live_rules=(_data(kube, ns, names.live_rules) if live else None) or {},
        live_hash=antispam.template_hash(live) if live else None,
        deployment=live is not None,
        canary=canary is not None,
        health=health,
        blocked_by=blocked_by(kube, upgrade) if step == 0 else None,
    )
    return seen, live


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "vpes",
        "app.kubernetes.io/managed-by": naming.MANAGED_BY,
        naming.LABEL_COMPONENT: component,
    }


def _owner(upgrade: FleetUpgrade) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": upgrade.metadata.name,
        "uid": upgrade.metadata.uid,
    }


def write(
    kube: Kube, upgrade: FleetUpgrade, names: Names, live: JSON | None, out: AntispamPlan
) -> None:
    """The plan's writes: the canary, the live rules and annotation, the canary's removal."""
    w, ns = out.writes, names.namespace
    digest = out.status.antispam.target_hash if out.status.antispam else None
    if w.canary_rules is not None and live is not None and digest:
        labels = _labels("antispam-rules")
        owner = _owner(upgrade)
        kube.apply(antispam.rules_config_map(names.canary_rules, ns, w.canary_rules, labels, owner))
        kube.apply(
            antispam.canary_deployment(
                live,
                name=names.canary,
                config_map=names.canary_rules,
                digest=digest,
                labels=_labels("antispam-canary"),
                owner=owner,
            )
        )
    if w.live_rules is not None:
        kube.apply(
            antispam.rules_config_map(names.live_rules, ns, w.live_rules, _labels("antispam-rules"))
        )
    if w.set_annotation:
        kube.merge_patch(
            "apps/v1", "Deployment", ns, names.deployment, antispam.annotation_patch(w.annotation)
        )
    if w.remove_canary:
        kube.delete("apps/v1", "Deployment", ns, names.canary, propagation="Background")
        kube.delete("v1", "ConfigMap", ns, names.canary_rules)


def step(
    kube: Kube, upgrade: FleetUpgrade, settings: OperatorSettings, *, now: dt.datetime
) -> AntispamPlan:
    """One step of an antispam upgrade: observe and gate, plan, write. The status goes
    first (the rollback's copy of the previous rules before they are replaced); a
    terminal status last (it stops the timer)."""
    names = Names.of(settings)
    seen, live = observe(kube, upgrade, names, settings.fleet_probe_timeout)
    assert upgrade.spec.antispam is not None
    out = plan(
        Inputs(
            spec=upgrade.spec,
            status=upgrade.status,
            observed=seen,
            now=now,
            source_name=f"{names.namespace}/{upgrade.spec.antispam.rules_config_map}",
            live_config_map=f"{names.namespace}/{names.live_rules}",
        )
    )
    if not out.terminal:
        write_status(kube, upgrade.metadata.name, out.status)
    write(kube, upgrade, names, live, out)
    if out.terminal:
        write_status(kube, upgrade.metadata.name, out.status)
    return out


def abandon(kube: Kube, upgrade: FleetUpgrade, settings: OperatorSettings) -> Writes:
    """A deleted antispam upgrade's canary removed and, once promoted but not passed, the
    previous rules back (`antispam_plan.abandon`); the writes made."""
    names = Names.of(settings)
    writes = abandon_writes(upgrade.status)
    live = kube.get("apps/v1", "Deployment", names.namespace, names.deployment)
    out = AntispamPlan(status=upgrade.status, writes=writes)
    write(kube, upgrade, names, live, out)
    return writes
