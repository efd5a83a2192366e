"""Locate (building on first use) the control-plane and node binaries made by ``tools/k8s``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vpes_devcluster.errors import ClusterError

REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kubelet",
    "kube-proxy",
    "kube-router",
    "coredns",
)


def repo_root() -> Path:
    """The vpes checkout: ``$VPES_REPO``, else found upwards from this file."""
    env = os.environ.get("VPES_REPO")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tools" / "k8s" / "build.sh").is_file():
            return parent
    raise ClusterError(
        f"cannot find the vpes repository above {here}; set VPES_REPO to the checkout"
    )


def bin_dir() -> Path:
    """Directory holding the binaries: ``$VPES_K8S_BIN``, else what ``build.sh`` prints."""
    env = os.environ.get("VPES_K8S_BIN")
    if env:
        path = Path(env).resolve()
    else:
        script = repo_root() / "tools" / "k8s" / "build.sh"
        proc = subprocess.run(
            ["bash", str(script)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise ClusterError(f"{script} failed with exit code {proc.returncode}")
        path = Path(lines[-1].strip())
    missing = [name for name in REQUIRED if not os.access(path / name, os.X_OK)]
    if missing:
        raise ClusterError(f"{path} lacks the executables {', '.join(missing)}")
    return path
