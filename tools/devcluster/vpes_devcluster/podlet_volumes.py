"""A pod's volumes on the podlet's host, made the way the kubelet makes them.

- configMap, secret, projected (ServiceAccount tokens included) and downwardAPI
  volumes are written by :func:`~vpes_devcluster.podlet_atomic.write_atomic`, the
  kubelet's atomic writer (``..data`` swapped by one rename). They are re-resolved
  every :meth:`PodVolumes.refresh`, and swapped only when they changed.
- persistentVolumeClaim: the claim's bound PersistentVolume's hostPath (or local) path.
- emptyDir: a directory of the pod (mode 0777); ``medium: Memory`` mounts a tmpfs on it
  (``sizeLimit`` is its size), as the kubelet does.
- hostPath: the path itself.

With a pod ``fsGroup``, files and directories get that group (``g+r`` on read-only
volumes, ``g+rw`` and setgid directories on the others), as the kubelet's
SetVolumeOwnership does.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpes_devcluster.kube import ApiError, Obj, Rest
from vpes_devcluster.podlet_atomic import File, PathError, Payload, set_ownership, write_atomic
from vpes_devcluster.podlet_env import (
    ConfigError,
    Objects,
    field_value,
    lookup,
    resource_value,
)
from vpes_devcluster.quantity import parse_quantity

log = logging.getLogger("vpes_devcluster.podlet")

DEFAULT_MODE = 0o644
TOKEN_REFRESH = 0.8  # re-request a projected token after this share of its lifetime


class VolumeError(Exception):
    """A volume cannot be made yet (the kubelet's FailedMount): retried later."""


@dataclass(frozen=True)
class Volume:
    """A volume ready to bind-mount: ``path`` on the host."""

    name: str
    path: Path
    read_only: bool = False


Build = Callable[[Obj, Objects], Payload]


def _keyed(
    data: Mapping[str, bytes], items: list[Obj] | None, mode: int, what: str, optional: bool
) -> Payload:
    if not items:
        return {key: File(value, mode) for key, value in data.items()}
    out: Payload = {}
    for item in items:
        key = str(item["key"])
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{what} references non-existent key: {key}")
        out[str(item["path"])] = File(data[key], int(item.get("mode", mode)))
    return out


@dataclass
class _Token:
    data: bytes = b""
    fetched: float = 0.0
    lifetime: float = 0.0


@dataclass
class PodVolumes:
    """The volumes of one pod under ``root`` (``<root>/<volume name>``)."""

    rest: Rest
    pod: Obj
    root: Path
    node: str
    volumes: dict[str, Volume] = field(default_factory=dict)
    _sources: dict[str, tuple[Build, Obj]] = field(default_factory=dict)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _mounts: list[Path] = field(default_factory=list)

    @property
    def _namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def _security(self) -> Obj:
        return (self.pod.get("spec") or {}).get("securityContext") or {}

    @property
    def _gid(self) -> int | None:
        group = self._security.get("fsGroup")
        return int(group) if group is not None else None

    def prepare(self) -> dict[str, Volume]:
        """Make every volume not made yet; :class:`VolumeError` names the first that
        cannot be made now (the others are kept, so a retry does only what is left)."""
        objects = Objects(self.rest, self._namespace)
        for spec in (self.pod.get("spec") or {}).get("volumes") or []:
            name = str(spec["name"])
            if name not in self.volumes:
                try:
                    self.volumes[name] = self._make(spec, objects)
                except (ConfigError, ApiError) as exc:
                    raise VolumeError(f"volume {name}: {exc}") from exc
                except (VolumeError, PathError) as exc:
                    raise VolumeError(f"volume {name}: {exc}") from exc
        return self.volumes

    def refresh(self) -> list[str]:
        """Re-resolve the configMap/secret/projected/downwardAPI volumes; the names of
        those whose ``..data`` was swapped."""
        objects = Objects(self.rest, self._namespace)
        changed = []
        for name, (build, source) in self._sources.items():
            try:
                payload = build(source, objects)
            except (VolumeError, PathError, ConfigError, ApiError) as exc:
                log.warning("refreshing volume %s of %s: %s", name, self._pod_key(), exc)
                continue
            if write_atomic(self.root / name, payload, self._gid):
                changed.append(name)
        return changed

    def cleanup(self) -> None:
        """Unmount the tmpfs volumes and delete the pod's directories."""
        for mount in self._mounts:
            subprocess.run(["umount", "--lazy", str(mount)], capture_output=True, check=False)
        self._mounts.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _pod_key(self) -> str:
        return f"{self._namespace}/{self.pod['metadata']['name']}"

    # -- one volume ---------------------------------------------------------------------

    def _make(self, spec: Obj, objects: Objects) -> Volume:
        name = str(spec["name"])
        projections: dict[str, Build] = {
            "configMap": self._config_map,
            "secret": self._secret,
            "projected": self._projected,
            "downwardAPI": self._downward,
        }
        for kind, build in projections.items():
            if kind in spec:
                write_atomic(self.root / name, build(spec[kind], objects), self._gid)
                self._sources[name] = (build, spec[kind])
                return Volume(name, self.root / name, read_only=True)
        if "emptyDir" in spec:
            return self._empty_dir(name, spec["emptyDir"] or {})
        if "persistentVolumeClaim" in spec:
            return self._claim(name, spec["persistentVolumeClaim"])
        if "hostPath" in spec:
            return _host_path(name, spec["hostPath"])
        kinds = sorted(k for k in spec if k != "name")
        raise VolumeError(f"unsupported volume type {kinds} (the podlet is not a kubelet)")

    def _config_map(self, source: Obj, objects: Objects) -> Payload:
        name, optional = str(source.get("name", "")), bool(source.get("optional"))
        data = lookup(objects, "configMap", name, optional) or {}
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        return _keyed(data, source.get("items"), mode, f"configMap {name}", optional)

    def _secret(self, source: Obj, objects: Objects) -> Payload:
        name, optional = str(source.get("secretName", "")), bool(source.get("optional"))
        data = lookup(objects, "secret", name, optional) or {}
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        return _keyed(data, source.get("items"), mode, f"secret {name}", optional)

    def _downward(self, source: Obj, objects: Objects) -> Payload:
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        return self._downward_items(source.get("items") or [], mode)

    def _downward_items(self, items: list[Obj], mode: int) -> Payload:
        out: Payload = {}
        for item in items:
            if "fieldRef" in item:
                value = field_value(self.pod, str(item["fieldRef"]["fieldPath"]), self.node)
            else:
                first = str(((self.pod.get("spec") or {}).get("containers") or [{}])[0].get("name"))
                value = resource_value(self.pod, item["resourceFieldRef"], first)
            out[str(item["path"])] = File(value.encode(), int(item.get("mode", mode)))
        return out

    def _projected(self, source: Obj, objects: Objects) -> Payload:
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        out: Payload = {}
        for part in source.get("sources") or []:
            if "secret" in part:
                out.update(self._secret({"defaultMode": mode, **_renamed(part["secret"])}, objects))
            elif "configMap" in part:
                out.update(self._config_map({"defaultMode": mode, **part["configMap"]}, objects))
            elif "downwardAPI" in part:
                out.update(self._downward_items(part["downwardAPI"].get("items") or [], mode))
            elif "serviceAccountToken" in part:
                token = part["serviceAccountToken"]
                out[str(token["path"])] = File(self._token(token), mode)
            else:
                raise VolumeError(f"unsupported projected source {sorted(part)}")
        return out

    def _token(self, source: Obj) -> bytes:
        """A bound ServiceAccount token of the pod (TokenRequest), renewed at 80 %."""
        audience = str(source.get("audience") or "")
        seconds = int(source.get("expirationSeconds") or 3600)
        cached = self._tokens.setdefault(f"{audience}/{seconds}", _Token())
        if cached.data and time.monotonic() - cached.fetched < cached.lifetime * TOKEN_REFRESH:
            return cached.data
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        account = spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        path = f"/api/v1/namespaces/{self._namespace}/serviceaccounts/{account}/token"
        answer = self.rest.create(path, body)
        cached.data = str(answer["status"]["token"]).encode()
        cached.fetched, cached.lifetime = time.monotonic(), float(seconds)
        return cached.data

    def _empty_dir(self, name: str, source: Obj) -> Volume:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        if source.get("medium") == "Memory":
            self._mount_tmpfs(path, source.get("sizeLimit"))
        path.chmod(0o777)
        if self._gid is not None:
            set_ownership(path, self._gid, None)
            path.chmod(0o2777)
        return Volume(name, path)

    def _mount_tmpfs(self, path: Path, size: Any) -> None:
        options = "mode=0777" + (f",size={int(parse_quantity(str(size)))}" if size else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            log.warning("tmpfs for %s: %s; using a plain directory", path, proc.stderr.strip())
            return
        self._mounts.append(path)

    def _claim(self, name: str, source: Obj) -> Volume:
        claim_name = str(source["claimName"])
        claim = self.rest.get(
            f"/api/v1/namespaces/{self._namespace}/persistentvolumeclaims/{claim_name}"
        )
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if (claim.get("status") or {}).get("phase") != "Bound" or not volume_name:
            raise VolumeError(f"persistentvolumeclaim {claim_name!r} is not bound")
        volume = self.rest.get(f"/api/v1/persistentvolumes/{volume_name}")
        spec = volume.get("spec") or {}
        where = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not where:
            raise VolumeError(f"persistentvolume {volume_name} has neither hostPath nor local")
        path = Path(str(where))
        path.mkdir(parents=True, exist_ok=True)
        read_only = bool(source.get("readOnly"))
        if self._gid is not None and not read_only:
            set_ownership(path, self._gid, self._security.get("fsGroupChangePolicy"))
        return Volume(name, path, read_only=read_only)


def _renamed(secret: Obj) -> Obj:
    """A projected secret source (``name``) as a secret volume source (``secretName``)."""
    out = {k: v for k, v in secret.items() if k != "name"}
    out["secretName"] = secret.get("name", "")
    return out


def _host_path(name: str, source: Obj) -> Volume:
    path = Path(str(source["path"]))
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind and not path.exists():
        raise VolumeError(f"hostPath {path} does not exist (type {kind})")
    return Volume(name, path)


def leftover_mounts(root: Path) -> list[Path]:
    """Mount points under ``root`` (tmpfs volumes a killed podlet did not unmount)."""
    found = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) > 1:
            point = Path(parts[1].replace("\\040", " "))
            if point.is_relative_to(root):
                found.append(point)
    return found
