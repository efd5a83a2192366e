"""The real node's configuration files: containerd, the CNI network, kubelet,
kube-proxy; and the cluster DNS objects. Pure functions of a :class:`NodeLayout`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NODE_NAME = "vpes-node"
BRIDGE = "vpes0"
# The node's pods get addresses from POD_SUBNET; the bridge holds NODE_IP, which is
# also the node's InternalIP (the kubelet refuses a loopback one) and the address
# the API server advertises to pods behind the `kubernetes` Service.
POD_CIDR = "10.244.0.0/16"
POD_SUBNET = "10.244.0.0/22"
NODE_IP = "10.244.0.1"
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
ROUTER_HEALTH_PORT = 20244
CRI = "io.containerd.grpc.v1.cri"


@dataclass(frozen=True)
class NodeLayout:
    """Where the node's state lives (inside the cluster's state directory)."""

    root: Path
    ca_cert: Path
    max_pods: int = 110

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"


def containerd_toml(lay: NodeLayout, sandbox_image: str) -> str:
    """containerd 1.6's config (version 2). ``restrict_oom_score_adj`` clamps the
    kubelet's negative oom_score_adj (-998 on every sandbox), which this VM refuses
    even to root (runc then fails with "can't get final child's PID from pipe")."""
    cri = f'[plugins."{CRI}"]'
    runc = f'[plugins."{CRI}".containerd.runtimes.runc]'
    lines = [
        "version = 2",
        f'root = "{lay.containerd_root}"',
        f'state = "{lay.containerd_state}"',
        "oom_score = 0",
        "disabled_plugins = ["
        + ", ".join(
            f'"io.containerd.snapshotter.v1.{s}"' for s in ("aufs", "btrfs", "zfs", "devmapper")
        )
        + ', "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
        "[grpc]",
        f'  address = "{lay.socket}"',
        "[debug]",
        '  level = "warn"',
        cri,
        f'  sandbox_image = "{sandbox_image}"',
        "  restrict_oom_score_adj = true",
        "  enable_selinux = false",
        f'[plugins."{CRI}".containerd]',
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        runc,
        '  runtime_type = "io.containerd.runc.v2"',
        f'[plugins."{CRI}".containerd.runtimes.runc.options]',
        f'  BinaryName = "{RUNC}"',
        "  SystemdCgroup = false",
        f'[plugins."{CRI}".cni]',
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{lay.cni_conf_dir}"',
        "  max_conf_num = 1",
    ]
    return "\n".join(lines) + "\n"


def cni_conflist(lay: NodeLayout) -> str:
    """A bridge network on BRIDGE (the node's address is its gateway), addresses
    from host-local, hostPorts through portmap. No masquerading: nothing leaves
    this machine, and pods see each other's and the node's real addresses."""
    doc = {
        "cniVersion": "0.4.0",
        "name": "vpes",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(lay.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def kubelet_yaml(lay: NodeLayout) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(lay.ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{lay.socket}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(lay.resolv_conf),
        # Nothing here may lower an oom score (this VM refuses negative ones).
        "oomScoreAdj": 0,
        "maxPods": lay.max_pods,
        "serializeImagePulls": False,
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "syncFrequency": "10s",
        "fileCheckFrequency": "60s",
        "volumePluginDir": str(lay.root / "volume-plugins"),
        "logging": {"verbosity": 1},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kube_proxy_yaml(kubeconfig: Path) -> str:
    doc = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "0.0.0.0",  # noqa: S104 - NodePorts from the host, for the demo
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        "oomScoreAdj": 0,
        # Leave the machine's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kube_router_args(kubeconfig: Path) -> list[str]:
    """kube-router as a NetworkPolicy enforcer only: no routing, no service proxy
    (the advisories against v2.1.0 concern its service proxy)."""
    return [
        f"--kubeconfig={kubeconfig}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--hostname-override={NODE_NAME}",
        f"--health-port={ROUTER_HEALTH_PORT}",
        "--metrics-port=0",
        "--v=1",
    ]


def coredns_objects(image: str) -> list[dict[str, Any]]:
    """CoreDNS as a Deployment in kube-system behind the `kube-dns` Service, so that
    the tenants' NetworkPolicy (DNS to the kube-system namespace) admits it."""
    path = Path(__file__).with_name("coredns.yaml")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
        if doc["kind"] == "Service":
            doc["spec"]["clusterIP"] = CLUSTER_DNS_IP
    return docs
