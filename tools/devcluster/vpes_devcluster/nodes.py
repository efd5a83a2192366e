"""Fake nodes that kwok animates."""

from __future__ import annotations

from vpes_operator.clients.kube import JSON

from vpes_devcluster.components import KWOK_NODE_ANNOTATION

NODE_LABEL = {"type": "kwok"}
CAPACITY = {"cpu": "64", "memory": "512Gi", "pods": "2000", "ephemeral-storage": "1Ti"}


def node_name(index: int) -> str:
    return f"kwok-node-{index}"


def fake_node(index: int) -> JSON:
    """Node number ``index``; each gets its own /16 of pod IPs (kwok reads spec.podCIDR)."""
    name = node_name(index)
    cidr = f"10.{128 + index}.0.0/16"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                **NODE_LABEL,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"capacity": dict(CAPACITY), "allocatable": dict(CAPACITY)},
    }


def is_ready(node: JSON) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
