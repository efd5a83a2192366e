"""A real local Kubernetes control plane for the vpes tests, the demo and `make cluster`.

etcd, kube-apiserver (RBAC on), kube-controller-manager and kube-scheduler built from
source by ``tools/k8s``, kwok for fake nodes, and a small hostPath volume provisioner.
"""

from vpes_devcluster.cluster import Cluster, ClusterError

__all__ = ["Cluster", "ClusterError"]
