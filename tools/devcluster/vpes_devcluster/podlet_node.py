"""The Node a podlet registers, its status heartbeat and its Lease in kube-node-lease
(the node lifecycle controller reads the Lease: renewed, the node stays untainted)."""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Mapping, Sequence

from vpes_devcluster.kube import ApiError, Obj, Rest
from vpes_devcluster.podlet_env import HOST_IP, NODE_CPU, NODE_MEMORY
from vpes_devcluster.podlet_podman import now

NODE_TYPE = {"type": "podlet"}
CAPACITY = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": "20", "ephemeral-storage": "100Gi"}
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.34.3"  # the control plane's; the podlet is not a kubelet
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")

_CONDITIONS = (
    ("Ready", "True", "KubeletReady", "podlet is posting ready status"),
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "podlet has sufficient memory"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "podlet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "podlet has sufficient PID available"),
)


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{name}"


def lease_path(name: str = "") -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    return f"{base}/{name}" if name else base


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def node_status(name: str, since: str, runtime: str) -> Obj:
    beat = now()
    return {
        "capacity": dict(CAPACITY),
        "allocatable": dict(CAPACITY),
        "conditions": [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": beat,
                "lastTransitionTime": since,
            }
            for kind, status, reason, message in _CONDITIONS
        ],
        "addresses": [
            {"type": "InternalIP", "address": HOST_IP},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "vpes podlet",
            "containerRuntimeVersion": runtime,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }


def node_object(
    name: str, labels: Mapping[str, str], taints: Sequence[Obj], since: str, runtime: str
) -> Obj:
    """The Node: ``type: podlet``, no kwok annotation (kwok leaves it alone)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                **NODE_TYPE,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(),
                **labels,
            },
        },
        "spec": {"taints": list(taints)} if taints else {},
        "status": node_status(name, since, runtime),
    }


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def register(rest: Rest, node: Obj) -> str:
    """Create the Node (or take over an existing one of that name); its uid."""
    name = node["metadata"]["name"]
    try:
        created = rest.create("/api/v1/nodes", node)
    except ApiError as exc:
        if exc.status != 409:
            raise
        created = rest.patch(node_path(name), {"metadata": {"labels": node["metadata"]["labels"]}})
    rest.request(
        "PATCH",
        f"{node_path(name)}/status",
        {"status": node["status"]},
        content_type="application/strategic-merge-patch+json",
    )
    return str(created["metadata"]["uid"])


def heartbeat(rest: Rest, name: str, since: str, runtime: str) -> None:
    rest.request(
        "PATCH",
        f"{node_path(name)}/status",
        {"status": node_status(name, since, runtime)},
        content_type="application/strategic-merge-patch+json",
    )


def renew_lease(rest: Rest, name: str, node_uid: str) -> None:
    spec = {
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": _micro_now(),
    }
    try:
        rest.patch(lease_path(name), {"spec": spec})
        return
    except ApiError as exc:
        if exc.status != 404:
            raise
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
            ],
        },
        "spec": spec,
    }
    rest.create(lease_path(), lease)


def schedulable(node: Obj) -> bool:
    """Ready, and without the taints the node lifecycle controller puts on nodes
    that are not (yet) ready."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = (node.get("spec") or {}).get("taints") or []
    return ready and not any(t.get("key") in NOT_READY_TAINTS for t in taints)


def is_schedulable(rest: Rest, name: str) -> bool:
    try:
        return schedulable(rest.get(node_path(name)))
    except ApiError:
        return False
