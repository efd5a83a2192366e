"""Helm against the test cluster's chart: running it, and what one template renders."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from .operator_support import REPO

CHART = REPO / "charts" / "vpes"


def helm(cluster: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [str(Path(cluster.bin_dir) / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HELM_CACHE_HOME": str(Path(cluster.kubeconfig).parent / "helm")},
    )
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {out.stderr}")
    return out


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(json.dumps(values))  # every string quoted (see vpes_devcluster.chart)
    return path


def render(cluster: Any, template: str, *args: str) -> list[dict[str, Any]]:
    """The objects one template renders for release "r" in namespace "ns1" (maybe none)."""
    out = helm(
        cluster,
        "template",
        "r",
        str(CHART),
        "-n",
        "ns1",
        "--show-only",
        template,
        *args,
        check=False,
    )
    if out.returncode != 0 and "could not find template" in out.stderr:
        return []  # helm's way of saying it rendered nothing
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]
