"""The demo's fleet upgrades: every customer's server moved to a new tenant image by one
FleetUpgrade (a canary first, then the rest), each wave passing the health gate (its
pod on the image, SMTP and IMAP answering), as a fleet admin would move the fleet to
a Debian security update; then the edge's Rspamd moved to new antispam rules (a
canary pod scanned for real, then the rollout).

The "new image" is the demo's tenant image under a second tag in the node's
containerd (there is no registry here): the servers really restart on it.
"""

from __future__ import annotations

import json
import time
import uuid

from .cluster import Cluster
from .errors import ClusterError

API_VERSION = "vpes.io/v1alpha1"
DONE = ("Succeeded", "RolledBack", "Failed")


def upgrade(cluster: Cluster, tenant_image: str, plans: list[str], timeout: float = 600) -> str:
    """Move the servers of `plans` to a new tag of `tenant_image`; what `kubectl get
    fup` shows once it is done. Raises ClusterError unless it succeeds."""
    tag = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    image = f"{tenant_image.rsplit(':', 1)[0]}:fleet-{tag}"
    cluster.real_node().ctr("images", "tag", "--force", tenant_image, image)
    name = f"tenant-{tag}-{uuid.uuid4().hex[:4]}"
    body = {
        "apiVersion": API_VERSION,
        "kind": "FleetUpgrade",
        "metadata": {"name": name},
        "spec": {"image": image, "plans": plans, "canary": 1, "maxUnavailable": "50%"},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    status = _wait(cluster, name, timeout)
    if status.get("phase") != "Succeeded":
        raise ClusterError(f"the demo's fleet upgrade {name} ended {status}")
    return str(cluster.kubectl("get", "fup", name).stdout)


def _wait(cluster: Cluster, name: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "fup", name, "-o", "json", check=False)
        if out.returncode == 0 and out.stdout:
            status = json.loads(out.stdout).get("status") or {}
            if status.get("phase") in DONE:
                return status
        time.sleep(2)
    raise ClusterError(
        f"the demo's fleet upgrade {name} did not end within {timeout:.0f}s: {status}"
    )


# The demo's antispam rule: a Subject with this word scores 20 (refused at 15).
SPAM_WORD = "vpesdemospamword"
RULES = {
    "multimap.conf": (
        'VPES_DEMO_WORD {\n  type = "header";\n  header = "Subject";\n  regexp = true;\n'
        '  map = "${LOCAL_CONFDIR}/local.d/vpes-demo-words.map";\n  score = 20.0;\n}\n'
    ),
    "vpes-demo-words.map": f"/{SPAM_WORD}/i\n",
}


def antispam_rules(cluster: Cluster, namespace: str, timeout: float = 600) -> str:
    """The edge's antispam moved to the demo's rules (a ConfigMap in the operator's
    `namespace`); what `kubectl get fup` shows once done. ClusterError unless it
    succeeds."""
    tag = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"demo-rules-{tag}", "namespace": namespace},
        "data": RULES,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(config_map))
    name = f"antispam-{tag}-{uuid.uuid4().hex[:4]}"
    body = {
        "apiVersion": API_VERSION,
        "kind": "FleetUpgrade",
        "metadata": {"name": name},
        "spec": {"antispam": {"rulesConfigMap": f"demo-rules-{tag}"}},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    status = _wait(cluster, name, timeout)
    if status.get("phase") != "Succeeded":
        raise ClusterError(f"the demo's antispam upgrade {name} ended {status}")
    return str(cluster.kubectl("get", "fup", name).stdout)
