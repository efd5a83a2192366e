"""What a customer publishes, served by the dev cluster's DNS.

The dev node has no DNS server the operator could publish to (the chart's
``dns.defaultProvider`` is manual there), so the demo and the real-node tests
play the customer: they take
the TXT records a server's ``status.dnsRecords`` asks for (SPF, DKIM, DMARC, as
the operator computed them) and has CoreDNS answer them, as ``template`` blocks
put before the catch-all for the example domains in its Corefile, then restarts
CoreDNS (the dev build has no ``reload`` plugin). Receivers, Rspamd at the edge's
MX above all, then check SPF, DKIM and DMARC against exactly what the operator
asked the customer to publish.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from typing import Any

from vpes_devcluster.cluster import Cluster
from vpes_devcluster.errors import ClusterError

NAMESPACE, NAME = "kube-system", "coredns"
# The first of the example domains' templates (tools/devcluster/.../coredns.yaml):
# what is inserted before it answers first.
ANCHOR = "template IN MX example "


def txt_records(cluster: Cluster, namespace: str, server: str) -> dict[str, list[str]]:
    """Name → TXT values the server's status asks to publish: SPF, DMARC and, once
    the operator has read the server's keys, DKIM (waits up to two minutes for
    a DKIM record of each domain)."""
    deadline = time.monotonic() + 120
    while True:
        out = cluster.kubectl("get", "pms", server, "-n", namespace, "-o", "json").stdout
        found: list[dict[str, Any]] = (json.loads(out).get("status") or {}).get("dnsRecords") or []
        txt: dict[str, list[str]] = defaultdict(list)
        for record in found:
            if record.get("type") == "TXT":
                txt[str(record["name"]).rstrip(".")].append(str(record["value"]))
        domains = {str(r.get("domain")) for r in found}
        signed = {str(r.get("domain")) for r in found if "v=DKIM1" in str(r.get("value"))}
        if found and domains <= signed:
            return dict(txt)
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{namespace}/{server}'s status has no DKIM record for {sorted(domains - signed)}"
            )
        time.sleep(1)


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


def publish(cluster: Cluster, records: dict[str, list[str]]) -> None:
    """Serve `records` (name → TXT values) from the cluster DNS in place of what was
    published for those names before, and wait until the restarted CoreDNS is ready."""
    out = cluster.kubectl("get", "configmap", NAME, "-n", NAMESPACE, "-o", "json").stdout
    corefile = str((json.loads(out).get("data") or {}).get("Corefile") or "")
    if ANCHOR not in corefile:
        raise ClusterError(f"the dev Corefile changed shape: no {ANCHOR.strip()!r} in it")
    for name in records:  # what was published for these names before goes
        corefile = re.sub(
            r"template IN TXT " + re.escape(name) + r" \{\n.*?\n[ \t]*\}\n[ \t]*",
            "",
            corefile,
            flags=re.DOTALL,
        )
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


def publish_servers(cluster: Cluster, servers: list[tuple[str, str]]) -> None:
    """Publish the TXT records of each (namespace, name) server."""
    records: dict[str, list[str]] = {}
    for namespace, name in servers:
        records |= txt_records(cluster, namespace, name)
    publish(cluster, records)
