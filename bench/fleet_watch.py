"""What bench/fleet.py observes while servers move to a new image: when each wave of a
FleetUpgrade started, when each server's pod first ran the new image ready (the health
gate's pod half, `fleet.probe.pod_verdict`), when the upgrade ended; and the same
readiness for StatefulSets patched straight (the baseline). Polls the API."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube
from vpes_operator.fleet.probe import pod_verdict
from vpes_operator.models.fleet import TERMINAL
from vpes_operator.models.kube import Pod

Key = tuple[str, str]  # (namespace, server)
POLL = 0.5


@dataclass
class Timeline:
    """Seconds from the start of one upgrade (or one baseline) to what was seen."""

    start: float = field(default_factory=time.monotonic)
    waves: dict[int, float] = field(default_factory=dict)  # wave → when it started
    members: dict[int, list[Key]] = field(default_factory=dict)
    ready: dict[Key, float] = field(default_factory=dict)  # pod on the image, ready
    ended: float | None = None
    phase: str | None = None
    message: str = ""

    def now(self) -> float:
        return time.monotonic() - self.start


def tenant_pods(kube: Kube) -> dict[Key, list[Pod]]:
    """Every tenant pod of the cluster, by its server."""
    found: dict[Key, list[Pod]] = defaultdict(list)
    for pod in kube.read_list(Pod, None, labels=f"app.kubernetes.io/name={naming.TENANT_APP}"):
        server = pod.metadata.labels.get(naming.LABEL_SERVER)
        if server:
            found[(pod.metadata.namespace, server)].append(pod)
    return found


def note_ready(kube: Kube, line: Timeline, servers: list[Key], image: str) -> None:
    pods = tenant_pods(kube)
    t = line.now()
    for key in servers:
        if key not in line.ready and pod_verdict(pods.get(key, []), image) is None:
            line.ready[key] = t


def watch_upgrade(
    kube: Kube, name: str, image: str, servers: list[Key], timeout: float
) -> Timeline:
    """Follow FleetUpgrade `name` (just created) until it ends or `timeout` passes."""
    line = Timeline()
    while line.now() < timeout:
        obj = kube.get(API_VERSION, "FleetUpgrade", None, name) or {}
        status = obj.get("status") or {}
        wave = int(status.get("currentWave") or 0)
        if wave and wave not in line.waves:
            line.waves[wave] = line.now()
            line.members[wave] = [(m["namespace"], m["name"]) for m in status.get("wave") or []]
        note_ready(kube, line, servers, image)
        if status.get("phase") in TERMINAL:
            line.ended, line.phase = line.now(), str(status["phase"])
            line.message = str(status.get("message") or "")
            break
        time.sleep(POLL)
    return line


def watch_rollout(
    kube: Kube, line: Timeline, servers: list[Key], image: str, timeout: float
) -> None:
    """Until every server's pod runs `image` ready (the baseline: no gate, no waves)."""
    while len(line.ready) < len(servers) and line.now() < timeout:
        note_ready(kube, line, servers, image)
        time.sleep(POLL)
    if len(line.ready) == len(servers):
        line.ended = max(line.ready.values())


def wave_rows(line: Timeline) -> list[dict[str, Any]]:
    """Per wave: its servers, its time (to the next wave's start, or the end) and its
    rollout (to the last of its pods on the image, ready); the rest is the gate's wait
    for its next tick and its checks."""
    rows = []
    ordered = sorted(line.waves)
    for i, wave in enumerate(ordered):
        start = line.waves[wave]
        nxt = line.waves[ordered[i + 1]] if i + 1 < len(ordered) else line.ended
        members = line.members.get(wave, [])
        seen = [line.ready[m] for m in members if m in line.ready]
        rows.append(
            {
                "wave": wave,
                "servers": len(members),
                "seconds": round(nxt - start, 1) if nxt is not None else None,
                "rollout_s": round(max(seen) - start, 1) if len(seen) == len(members) else None,
            }
        )
    return rows


def summary(line: Timeline) -> dict[str, Any]:
    """One upgrade in numbers: total, canary wave, the later waves' median."""
    rows = wave_rows(line)
    later = [r for r in rows[1:] if r["seconds"] is not None]
    rollouts = [r["rollout_s"] for r in rows if r["rollout_s"] is not None]
    return {
        "phase": line.phase,
        "message": line.message,
        "seconds_total": round(line.ended, 1) if line.ended is not None else None,
        "waves": len(rows),
        "canary_wave_s": rows[0]["seconds"] if rows else None,
        "wave_median_s": round(statistics.median(r["seconds"] for r in later), 1)
        if later
        else None,
        "rollout_median_s": round(statistics.median(rollouts), 1) if rollouts else None,
        "per_wave": rows,
    }
