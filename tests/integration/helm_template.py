"""The chart rendered with `helm template` (no cluster), for the chart's tests: the
helm binary, what a release renders, one object of it, a value the schema refuses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from vpes_devcluster import binaries
from vpes_devcluster.errors import ClusterError

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vpes"
RELEASE, NAMESPACE = "vpes", "vpes-system"

Doc = dict[str, Any]


def helm_binary() -> str:
    """The helm that tools/k8s builds (as the integration tier uses), else one on PATH."""
    try:
        return str(binaries.bin_dir() / "helm")
    except ClusterError as e:
        found = shutil.which("helm")
        if found is None:
            pytest.skip(f"no helm: {e}")
        return found


def render(helm: str, template: str | None = None, *sets: str) -> list[Doc]:
    """What the chart renders for release vpes in vpes-system (one template, or all)."""
    args = [helm, "template", RELEASE, str(CHART), "-n", NAMESPACE]
    if template:
        args += ["--show-only", template]
    for value in sets:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    if out.returncode != 0 and "could not find template" in out.stderr:
        return []  # helm's way of saying it rendered nothing
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def refusal(helm: str, setting: str) -> str:
    """What helm says when the values schema refuses `setting` (fails if it takes it)."""
    out = subprocess.run(
        [helm, "template", "r", str(CHART), "--set", setting],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode != 0, "the values schema accepted it"
    return out.stderr
