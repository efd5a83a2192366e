"""``vpes-cluster``: run the local control plane in the background for the demo and
for ``make cluster``.

    vpes-cluster up [--state DIR] [--nodes N] [--no-node]
                                                start it (processes outlive the command):
                                                the real node and N kwok nodes
    vpes-cluster status [--state DIR]           what runs, and whether the API answers
    vpes-cluster env [--state DIR]              export lines for KUBECONFIG and PATH
    vpes-cluster down [--state DIR]             stop what `up` started, delete DIR
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from vpes_devcluster import binaries
from vpes_devcluster.cluster import Cluster
from vpes_devcluster.errors import ClusterError


def default_state() -> Path:
    return binaries.repo_root() / ".state" / "cluster"


def _env_lines(cluster: Cluster) -> list[str]:
    return [
        f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}",
        f'export PATH={shlex.quote(str(cluster.bin_dir))}:"$PATH"',
    ]


def _up(cluster: Cluster) -> int:
    began = time.monotonic()
    cluster.start()
    took = time.monotonic() - began
    real = "a real node and " if cluster.node else ""
    print(f"cluster up in {took:.1f} s: {cluster.server} ({real}{cluster.nodes} kwok nodes)")
    print(f"kubeconfig: {cluster.kubeconfig}")
    print(f"logs:       {cluster.logs_dir}")
    print("use it with:")
    for line in _env_lines(cluster):
        print(f"  {line}")
    print("  kubectl get nodes")
    print(f"stop it with: vpes-cluster down --state {shlex.quote(str(cluster.state_dir))}")
    return 0


def _down(cluster: Cluster) -> int:
    if not cluster.state_dir.exists():
        print(f"no cluster state in {cluster.state_dir}")
        return 0
    running = cluster.running()
    cluster.stop(remove=True)
    names = ", ".join(f"{p.name} ({p.pid})" for p in running) or "nothing was running"
    print(f"stopped: {names}; removed {cluster.state_dir}")
    return 0


def _status(cluster: Cluster) -> int:
    recorded = cluster.processes()
    if not recorded:
        print(f"no cluster in {cluster.state_dir}")
        return 1
    running = {p.pid for p in cluster.running()}
    for proc in recorded:
        state = "running" if proc.pid in running else "stopped"
        print(f"{proc.name:<24} pid {proc.pid:<8} {state}")
    print(f"server:     {cluster.server}")
    print(f"kubeconfig: {cluster.kubeconfig}")
    if len(running) != len(recorded):
        return 1
    answer = cluster.kubectl("get", "--raw=/readyz", check=False, timeout=10)
    print(f"readyz:     {answer.stdout.strip() or answer.stderr.strip()}")
    return 0 if answer.returncode == 0 else 1


def _env(cluster: Cluster) -> int:
    if not cluster.kubeconfig.exists():
        print(f"no cluster in {cluster.state_dir}; run `vpes-cluster up`", file=sys.stderr)
        return 1
    for line in _env_lines(cluster):
        print(line)
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", type=Path, default=None, help="state directory (default: .state/cluster)"
    )
    top = argparse.ArgumentParser(
        prog="vpes-cluster", description="Run the local vpes control plane in the background."
    )
    sub = top.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="start the cluster in the background")
    up.add_argument(
        "--nodes", type=int, default=None, help="kwok nodes (default 0 with the real node, else 2)"
    )
    up.add_argument(
        "--no-node",
        dest="node",
        action="store_false",
        help="no real node (kubelet, containerd, CoreDNS, kube-router): kwok nodes only",
    )
    sub.add_parser("down", parents=[common], help="stop the cluster and delete its state")
    sub.add_parser("status", parents=[common], help="show the cluster's processes")
    sub.add_parser("env", parents=[common], help="print export lines for the shell")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        state = args.state if args.state is not None else default_state()
        node = bool(getattr(args, "node", False))
        kwok = getattr(args, "nodes", None)
        cluster = Cluster(state, nodes=(0 if node else 2) if kwok is None else kwok, node=node)
        commands = {"up": _up, "down": _down, "status": _status, "env": _env}
        return commands[args.command](cluster)
    except (ClusterError, ValueError) as exc:
        print(f"vpes-cluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
