"""What a customer publishes, served by the dev cluster's DNS.

The dev node has no DNS server the operator could publish to (the chart's
``dns.defaultProvider`` is manual there), so a test plays the customer: it takes
the TXT records a server's ``status.dnsRecords`` asks for (SPF, DKIM, DMARC, as
the operator computed them) and has CoreDNS answer them, as ``template`` blocks
put before the catch-all for the example domains in its Corefile, then restarts
CoreDNS (the dev build has no ``reload`` plugin). Receivers, Rspamd at the edge's
MX above all, then check SPF, DKIM and DMARC against exactly what the operator
asked the customer to publish.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from vpes_devcluster import Cluster
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from tests.integration.operator_support import wait_for

NAMESPACE, NAME = "kube-system", "coredns"
# The first of the example domains' templates (tools/devcluster/.../coredns.yaml):
# what is inserted before it answers first.
ANCHOR = "template IN MX example "


def txt_records(api: Kube, namespace: str, server: str) -> dict[str, list[str]]:
    """Name → TXT values the server's status asks to publish (waits for them)."""

    def records() -> list[dict[str, Any]] | None:
        obj = api.get(API_VERSION, "PersonalMailServer", namespace, server) or {}
        found = (obj.get("status") or {}).get("dnsRecords") or []
        return found if any(r.get("type") == "TXT" for r in found) else None

    out: dict[str, list[str]] = defaultdict(list)
    for record in wait_for(records, f"{server}'s DNS records", timeout=60):
        if record["type"] == "TXT":
            out[record["name"].rstrip(".")].append(record["value"])
    return dict(out)


def _strings(value: str) -> str:
    """A TXT value in zone-file form: quoted strings of at most 255 characters."""
    if value.startswith('"'):
        return value
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace('"', '\\"') + '"' for c in chunks)


def template(name: str, values: list[str], indent: str) -> str:
    """A Corefile template answering TXT for exactly `name` (the text that goes
    where a line indented by `indent` starts)."""
    regex = "^" + name.replace(".", r"\.") + r"\.$"
    inner = indent + "    "
    answers = "".join(
        inner + 'answer "{{ .Name }} 60 IN TXT ' + _strings(v).replace('"', '\\"') + '"\n'
        for v in values
    )
    # fallthrough: a name below `name` (a DKIM selector below the domain's SPF)
    # goes on to the next template instead of failing here.
    return (
        f"template IN TXT {name} {{\n{inner}match {regex}\n{answers}"
        f"{inner}fallthrough\n{indent}}}\n{indent}"
    )


def publish(cluster: Cluster, api: Kube, records: dict[str, list[str]]) -> None:
    """Serve `records` (name → TXT values) from the cluster DNS, and wait until the
    restarted CoreDNS is ready."""
    config = api.get("v1", "ConfigMap", NAMESPACE, NAME) or {}
    corefile = str((config.get("data") or {}).get("Corefile") or "")
    if ANCHOR not in corefile:
        raise AssertionError(f"the dev Corefile changed shape: no {ANCHOR.strip()!r} in it")
    at = corefile.index(ANCHOR)
    indent = corefile[corefile.rindex("\n", 0, at) + 1 : at]
    blocks = "".join(template(n, v, indent) for n, v in sorted(records.items()))
    patch = {"data": {"Corefile": corefile.replace(ANCHOR, blocks + ANCHOR, 1)}}
    cluster.kubectl(
        "patch", "configmap", NAME, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch)
    )
    cluster.kubectl("rollout", "restart", f"deployment/{NAME}", "-n", NAMESPACE)
    cluster.kubectl(
        "rollout", "status", f"deployment/{NAME}", "-n", NAMESPACE, "--timeout=120s", timeout=150
    )
