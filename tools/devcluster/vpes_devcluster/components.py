"""Command lines (and the small config files they read) of each cluster component."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from vpes_devcluster.binaries import repo_root
from vpes_devcluster.node_config import NODE_IP
from vpes_devcluster.pki import Pki

SERVICE_CIDR = "10.96.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True)
class Layout:
    """Where everything of one cluster lives inside its state directory."""

    state: Path
    bin_dir: Path
    pki: Pki
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    node: bool = False

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def kubeconfig(self, who: str) -> Path:
        return self.state / "kubeconfig" / f"{who}.yaml"

    @property
    def config_dir(self) -> Path:
        return self.state / "config"

    @property
    def volumes_dir(self) -> Path:
        return self.state / "volumes"


def etcd(lay: Layout) -> list[str]:
    peer = f"http://127.0.0.1:{lay.etcd_peer_port}"
    return [
        str(lay.bin_dir / "etcd"),
        "--name=vpes-dev",
        f"--data-dir={lay.state / 'etcd'}",
        f"--listen-client-urls={lay.etcd_url}",
        f"--advertise-client-urls={lay.etcd_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=vpes-dev={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def kube_apiserver(lay: Layout) -> list[str]:
    return [*_apiserver_common(lay), *(_apiserver_node(lay) if lay.node else _apiserver_local())]


def _apiserver_local() -> list[str]:
    return [
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--authorization-mode=RBAC",
    ]


def _apiserver_node(lay: Layout) -> list[str]:
    """Pods reach the API server through the `kubernetes` Service at the node's
    address; it reaches the kubelet (logs, exec, port-forward) at the node's InternalIP;
    the kubelet is authorised as its Node."""
    kubelet_client = lay.pki.client("kube-apiserver-kubelet-client")
    return [
        "--bind-address=0.0.0.0",
        f"--advertise-address={NODE_IP}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={kubelet_client.cert}",
        f"--kubelet-client-key={kubelet_client.key}",
    ]


def _apiserver_common(lay: Layout) -> list[str]:
    pki = lay.pki
    return [
        str(lay.bin_dir / "kube-apiserver"),
        f"--etcd-servers={lay.etcd_url}",
        f"--secure-port={lay.apiserver_port}",
        f"--cert-dir={lay.state / 'apiserver-certs'}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--anonymous-auth=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--api-audiences={ISSUER}",
        "--allow-privileged=true",
        "--max-requests-inflight=1000",
        "--max-mutating-requests-inflight=500",
        "--profiling=false",
        "--v=1",
    ]


def kube_controller_manager(lay: Layout) -> list[str]:
    pki = lay.pki
    return [
        str(lay.bin_dir / "kube-controller-manager"),
        f"--kubeconfig={lay.kubeconfig('kube-controller-manager')}",
        "--secure-port=0",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--flex-volume-plugin-dir={lay.state / 'flexvolume'}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--kube-api-qps=300",
        "--kube-api-burst=600",
        "--concurrent-statefulset-syncs=20",
        "--concurrent-gc-syncs=40",
        "--concurrent-namespace-syncs=20",
        "--concurrent-serviceaccount-token-syncs=10",
        "--concurrent-service-endpoint-syncs=20",
        "--concurrent-endpoint-syncs=20",
        "--profiling=false",
        "--v=1",
    ]


def _config_file(lay: Layout, name: str, doc: dict[str, object]) -> Path:
    """``doc`` written as ``name``.yaml into the config directory."""
    path = lay.config_dir / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def kube_scheduler(lay: Layout) -> list[str]:
    doc: dict[str, object] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(lay.kubeconfig("kube-scheduler")),
            "qps": 300,
            "burst": 600,
        },
        "leaderElection": {"leaderElect": False},
    }
    config = _config_file(lay, "kube-scheduler", doc)
    return [
        str(lay.bin_dir / "kube-scheduler"),
        f"--config={config}",
        "--secure-port=0",
        "--profiling=false",
        "--v=1",
    ]


def kwok(lay: Layout) -> list[str]:
    doc: dict[str, object] = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "podPlayStageParallelism": 16,
            "nodePlayStageParallelism": 4,
            "nodeLeaseParallelism": 4,
        },
    }
    config = _config_file(lay, "kwok", doc)
    return [
        str(lay.bin_dir / "kwok"),
        f"--config={config}",
        f"--kubeconfig={lay.kubeconfig('kwok')}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40",
    ]


def provisioner(lay: Layout) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vpes_devcluster.provisioner",
        f"--kubeconfig={lay.kubeconfig('provisioner')}",
        f"--root={lay.volumes_dir}",
    ]


def python_env() -> dict[str, str]:
    """Lets ``python -m vpes_devcluster...`` import this package and the operator's
    (whose Kubernetes client it uses) even when they are not installed."""
    here = [str(Path(__file__).resolve().parent.parent), str(repo_root() / "operator")]
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join([*here, path] if path else here)}
