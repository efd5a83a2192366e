"""The ``podman run`` arguments of one container of a pod, from its spec.

Kubernetes semantics where podman's differ: ``command`` replaces the image's
ENTRYPOINT (and so drops its CMD), ``args`` replace CMD; ``readOnlyRootFilesystem``
gives a read-only root with no tmpfs added (podman adds /tmp, /run... by default);
mounts are made parents first, so ``/data`` is mounted before ``/data/mail``.
Everything runs on the host network (``--network host``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vpes_devcluster.kube import Obj
from vpes_devcluster.podlet_env import ConfigError, expand
from vpes_devcluster.podlet_podman import (
    CONTAINER_LABEL,
    INSTANCE_LABEL,
    NODE_LABEL,
    POD_UID_LABEL,
)
from vpes_devcluster.podlet_volumes import Volume
from vpes_devcluster.quantity import parse_quantity

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
_HOSTNAME_JUNK = re.compile(r"[-.]+$")


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool

    @property
    def depth(self) -> int:
        return len(PurePosixPath(self.target).parts)


@dataclass(frozen=True)
class Launch:
    """Everything one ``podman run`` needs besides the spec."""

    name: str  # the podman container name
    node: str
    instance: str  # the podlet's instance label
    env_file: Path  # NAME=VALUE lines (0600), for single-line values
    multiline: Sequence[str]  # names passed as ``--env NAME`` from podman's environment
    mounts: Sequence[Mount]
    termination_file: Path


def container_name(pod: Obj, container: str, attempt: int) -> str:
    meta = pod["metadata"]
    return f"k8s_{container}_{meta['name']}_{meta['namespace']}_{meta['uid'][:8]}_{attempt}"


def hostname(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    name = str(spec.get("hostname") or pod["metadata"]["name"])[:63]
    return _HOSTNAME_JUNK.sub("", name) or "pod"


def mounts_of(container: Obj, volumes: Mapping[str, Volume], env: Mapping[str, str]) -> list[Mount]:
    """The bind mounts of ``container``'s volumeMounts, parents before children."""
    out: list[Mount] = []
    for item in container.get("volumeMounts") or []:
        volume = volumes.get(str(item["name"]))
        if volume is None:
            raise ConfigError(f"volumeMount {item['name']!r} names no volume of the pod")
        target = str(item["mountPath"])
        if ":" in target:
            raise ConfigError(f"mountPath {target!r}: the podlet cannot mount paths with ':'")
        source = volume.path
        sub = item.get("subPath") or expand(str(item.get("subPathExpr") or ""), env)
        if sub:
            rel = PurePosixPath(sub)
            if rel.is_absolute() or ".." in rel.parts:
                raise ConfigError(f"subPath {sub!r} must be relative and stay inside the volume")
            source = volume.path / rel
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        read_only = bool(item.get("readOnly")) or volume.read_only
        out.append(Mount(source, target, read_only))
    return sorted(out, key=lambda m: m.depth)


def _security(pod: Obj, container: Obj) -> list[str]:
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    ctx = container.get("securityContext") or {}
    args: list[str] = []
    user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    group = ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    if user is not None:
        args.append(f"--user={user}" + (f":{group}" if group is not None else ""))
    groups = [*(pod_ctx.get("supplementalGroups") or [])]
    if pod_ctx.get("fsGroup") is not None:
        groups.append(pod_ctx["fsGroup"])
    args += [f"--group-add={g}" for g in groups]
    if ctx.get("privileged"):
        args.append("--privileged")
    if ctx.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = ctx.get("capabilities") or {}
    args += [f"--cap-drop={c}" for c in capabilities.get("drop") or []]
    args += [f"--cap-add={c}" for c in capabilities.get("add") or []]
    if ctx.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}
    if seccomp.get("type") == "Unconfined":
        args.append("--security-opt=seccomp=unconfined")
    return args


def _resources(container: Obj) -> list[str]:
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    args: list[str] = []
    if "memory" in limits:
        args.append(f"--memory={int(parse_quantity(str(limits['memory'])))}")
    if "cpu" in limits:
        args.append(f"--cpus={parse_quantity(str(limits['cpu'])).normalize()}")
    if "cpu" in requests:
        shares = math.ceil(parse_quantity(str(requests["cpu"])) * 1024)
        args.append(f"--cpu-shares={max(shares, 2)}")
    return args


def _labels(pod: Obj, container: Obj, launch: Launch) -> list[str]:
    meta = pod["metadata"]
    labels = {
        NODE_LABEL: launch.node,
        INSTANCE_LABEL: launch.instance,
        POD_UID_LABEL: meta["uid"],
        CONTAINER_LABEL: container["name"],
        "io.kubernetes.pod.name": meta["name"],
        "io.kubernetes.pod.namespace": meta["namespace"],
    }
    return [f"--label={k}={v}" for k, v in labels.items()]


def _process(container: Obj, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(options before the image, arguments after it) for command and args."""
    before: list[str] = []
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    if command:
        before.append(f"--entrypoint={json.dumps(command)}")
    if container.get("workingDir"):
        before.append(f"--workdir={container['workingDir']}")
    return before, args


def termination_path(container: Obj) -> str:
    return str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)


def run_argv(pod: Obj, container: Obj, env: Mapping[str, str], launch: Launch) -> list[str]:
    """The arguments after ``podman run --detach``."""
    spec = pod.get("spec") or {}
    argv = [
        f"--name={launch.name}",
        "--pull=never",
        "--network=host",
        f"--hostname={hostname(pod)}",
        "--systemd=false",
        *_labels(pod, container, launch),
        f"--env-file={launch.env_file}",
        *(f"--env={name}" for name in launch.multiline),
    ]
    if spec.get("hostPID"):
        argv.append("--pid=host")
    if spec.get("hostIPC"):
        argv.append("--ipc=host")
    argv += _security(pod, container)
    argv += _resources(container)
    for mount in launch.mounts:
        argv.append(f"--volume={mount.source}:{mount.target}:{'ro' if mount.read_only else 'rw'}")
    argv.append(f"--volume={launch.termination_file}:{termination_path(container)}:rw")
    before, after = _process(container, env)
    return [*argv, *before, str(container["image"]), *after]


def split_env(env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(env-file text for single-line values, the multi-line ones) — values never go on
    a command line, where any process could read them."""
    lines, multiline = [], {}
    for name, value in env.items():
        if "\n" in value or "\r" in value:
            multiline[name] = value
        else:
            lines.append(f"{name}={value}\n")
    return "".join(lines), multiline
