"""A real local Kubernetes control plane for the vpes tests, the demo and `make cluster`.

etcd, kube-apiserver (RBAC on), kube-controller-manager and kube-scheduler built from
source by ``tools/k8s``, kwok for fake nodes, and a small hostPath volume provisioner.
The API is spoken through the product's own client (``vpes_operator.clients.kube``).
"""

from vpes_devcluster.cluster import Cluster, ClusterError
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.wait import WaitTimeoutError, wait_for

__all__ = [
    "Cluster",
    "ClusterError",
    "WaitTimeoutError",
    "api_client",
    "wait_for",
]
