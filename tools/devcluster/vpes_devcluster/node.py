"""The dev cluster's real node: containerd + runc + CNI, kubelet, kube-proxy,
kube-router (NetworkPolicy only) and CoreDNS, all built or installed by the project.

Only one node runs on a machine at a time (it owns the bridge ``vpes0``, the
kubelet's port and the host's iptables rules); starting a second fails with a
message naming the first. Needs root.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from vpes_devcluster import binaries, node_config, node_host
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.node_config import BRIDGE, NODE_IP, NODE_NAME, POD_SUBNET, NodeLayout

Spawn = Callable[[str, list[str]], None]
Wait = Callable[[str, Callable[[], bool]], None]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
SYSTEM_IMAGES = ("pause", "coredns")
DRAIN_SECONDS = 90.0


def _run(*argv: str, check: bool = True, timeout: float = 120.0) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def build_images(*names: str) -> dict[str, str]:
    """``images/build.sh NAMES``: each image's reference (built once, then cached)."""
    script = binaries.repo_root() / "images" / "build.sh"
    out = _run("bash", str(script), *names, timeout=1800).split()
    if len(out) != len(names):
        raise ClusterError(f"{script} {' '.join(names)} printed {out}")
    return dict(zip(names, out, strict=True))


def archive_of(ref: str) -> Path:
    """The docker-archive that ``images/build.sh`` saved for ``ref``."""
    cache = Path(os.environ.get("VPES_CACHE", Path.home() / ".cache" / "vpes"))
    name, tag = ref.removeprefix("localhost/").split(":", 1)
    return cache / "images" / f"{name}-{tag}.tar"


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class Node:
    """The node's processes are started through ``spawn`` (so the cluster records
    and stops them); :meth:`cleanup` removes what they leave on the host."""

    def __init__(self, root: Path, bin_dir: Path, ca_cert: Path, kubeconfigs: Path) -> None:
        self.lay = NodeLayout(root=root, ca_cert=ca_cert)
        self.bin_dir = bin_dir
        self.kubeconfigs = kubeconfigs

    # -- before the control plane ---------------------------------------------------

    @staticmethod
    def prepare_host() -> None:
        """Check that no other node runs; forwarding and bridge netfilter on (so that
        Services and NetworkPolicies apply to pods on one bridge); the bridge with the
        node's address, which the API server advertises."""
        if os.geteuid() != 0:
            raise ClusterError("the dev node needs root (containerd, kubelet, iptables)")
        if _port_taken("127.0.0.1", node_config.KUBELET_HEALTHZ_PORT):
            raise ClusterError(
                "another dev node already runs on this machine (its kubelet answers on "
                f"127.0.0.1:{node_config.KUBELET_HEALTHZ_PORT}); stop it first "
                "(make cluster-down / make demo-down)"
            )
        if not Path("/proc/sys/net/bridge").exists():
            _run("modprobe", "br_netfilter")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1\n")
        links = _run("ip", "-o", "link", "show")
        if f": {BRIDGE}:" not in links and f": {BRIDGE}@" not in links:
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
        prefix = POD_SUBNET.split("/")[1]
        if f"{NODE_IP}/{prefix}" not in _run("ip", "-o", "addr", "show", "dev", BRIDGE):
            _run("ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")

    # -- after the control plane ----------------------------------------------------

    def start(self, spawn: Spawn, wait: Wait, kubectl: Kubectl) -> None:
        """containerd (with the pause and CoreDNS images), kubelet, kube-proxy,
        kube-router, then CoreDNS; returns once the node is Ready and DNS answers."""
        lay = self.lay
        refs = build_images(*SYSTEM_IMAGES)
        _write(lay.containerd_config, node_config.containerd_toml(lay, refs["pause"]))
        _write(lay.cni_conf_dir / "10-vpes.conflist", node_config.cni_conflist(lay))
        _write(lay.kubelet_config, node_config.kubelet_yaml(lay))
        _write(lay.proxy_config, node_config.kube_proxy_yaml(self._kubeconfig("kube-proxy")))
        _write(lay.resolv_conf, "# the dev node: nothing outside this machine resolves\n")
        spawn("containerd", ["containerd", f"--config={lay.containerd_config}"])
        wait("containerd", self._containerd_ready)
        self.import_images(refs.values())
        spawn("kubelet", self._kubelet_argv())
        wait(f"node {NODE_NAME} Ready", lambda: _node_ready(kubectl))
        kubectl(
            "patch", "node", NODE_NAME, "--type=merge",
            "-p", f'{{"spec":{{"podCIDR":"{POD_SUBNET}","podCIDRs":["{POD_SUBNET}"]}}}}',
        )  # fmt: skip
        spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={lay.proxy_config}"])
        router = self._kubeconfig("kube-router")
        argv = [str(self.bin_dir / "kube-router"), *node_config.kube_router_args(router)]
        spawn("kube-router", argv)
        wait("kube-router", lambda: _healthy(node_config.ROUTER_HEALTH_PORT, "/healthz"))
        docs = node_config.coredns_objects(refs["coredns"])
        kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
        wait("CoreDNS Ready", lambda: _deployment_ready(kubectl, "kube-system", "coredns"))

    def _kubeconfig(self, who: str) -> Path:
        return self.kubeconfigs / f"{who}.yaml"

    def _kubelet_argv(self) -> list[str]:
        lay = self.lay
        return [
            str(self.bin_dir / "kubelet"),
            f"--config={lay.kubelet_config}",
            f"--kubeconfig={self._kubeconfig('kubelet')}",
            f"--root-dir={lay.kubelet_root}",
            f"--cert-dir={lay.root / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--node-labels=type=node",
        ]

    def ctr(self, *args: str, check: bool = True, timeout: float = 600.0) -> str:
        return _run(
            "ctr", f"--address={self.lay.socket}", "--namespace=k8s.io", *args,
            check=check, timeout=timeout,
        )  # fmt: skip

    def _containerd_ready(self) -> bool:
        if not self.lay.socket.exists():
            return False
        return bool(self.ctr("version", check=False, timeout=10).strip())

    def import_images(self, refs: Iterable[str]) -> None:
        """Import images built by ``images/build.sh`` into containerd's ``k8s.io``
        namespace (where the kubelet finds them), unless they are there already."""
        present = set(self.ctr("images", "ls", "-q").split())
        for ref in refs:
            if ref in present:
                continue
            archive = archive_of(ref)
            if not archive.is_file():
                raise ClusterError(f"no archive {archive} for {ref}: run images/build.sh")
            self.ctr("images", "import", str(archive))

    # -- stopping -------------------------------------------------------------------

    def drain(self, kubectl: Kubectl) -> None:
        """Delete every pod and wait (bounded) until containerd runs no task, so that
        the kubelet tears each sandbox's network down through CNI. Call with the
        controllers stopped, so that nothing recreates the pods."""
        if not self.lay.socket.exists():
            return
        kubectl(
            "delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0",
            "--wait=false", check=False, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=10).split()
            if not tasks:
                return
            time.sleep(0.5)

    def cleanup(self) -> None:
        """After the processes are gone: kill containers a killed containerd left,
        remove the ``KUBE-*`` iptables chains (kubelet's, kube-proxy's, kube-router's)
        and kube-router's ipsets, unmount what the kubelet and containerd mounted under
        the state directory, delete the bridge."""
        node_host.kill_leftovers(str(self.lay.socket))
        proxy = self.bin_dir / "kube-proxy"
        if proxy.exists():
            _run(str(proxy), "--cleanup", check=False)
        node_host.remove_chains()
        node_host.remove_ipsets()
        node_host.unmount_under(self.lay.root)
        _run("ip", "link", "del", BRIDGE, check=False)


def _healthy(port: int, path: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _node_ready(kubectl: Kubectl) -> bool:
    out = kubectl(
        "get", "node", NODE_NAME, "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        check=False, timeout=10,
    )  # fmt: skip
    return out.returncode == 0 and out.stdout.strip() == "True"


def _deployment_ready(kubectl: Kubectl, namespace: str, name: str) -> bool:
    out = kubectl(
        "get", "deployment", name, "-n", namespace, "-o", "jsonpath={.status.readyReplicas}",
        check=False, timeout=10,
    )  # fmt: skip
    return out.returncode == 0 and out.stdout.strip() not in ("", "0")
