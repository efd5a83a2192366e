"""What a container's environment and downward-API files hold, resolved the way the
kubelet resolves them: ``env`` (value with ``$(VAR)`` expansion, secretKeyRef,
configMapKeyRef, fieldRef, resourceFieldRef), ``envFrom`` (with prefix), and the
``KUBERNETES_SERVICE_*`` variables that let in-cluster clients find the API server."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vpes_devcluster.kube import ApiError, Obj, Rest
from vpes_devcluster.quantity import parse_quantity

POD_IP = "127.0.0.1"
HOST_IP = "127.0.0.1"
NODE_CPU = "4"
NODE_MEMORY = "16Gi"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(Exception):
    """A container's configuration cannot be made (the kubelet's
    CreateContainerConfigError): a missing Secret, ConfigMap or key, a bad field."""


@dataclass
class Objects:
    """The Secrets and ConfigMaps of one namespace, each fetched at most once."""

    rest: Rest
    namespace: str
    _cache: dict[tuple[str, str], dict[str, bytes] | None] = field(default_factory=dict)

    def secret(self, name: str) -> dict[str, bytes] | None:
        """The decoded data of Secret ``name``, or None if it does not exist."""
        return self._get("secrets", name)

    def config_map(self, name: str) -> dict[str, bytes] | None:
        return self._get("configmaps", name)

    def _get(self, kind: str, name: str) -> dict[str, bytes] | None:
        if (kind, name) not in self._cache:
            try:
                obj = self.rest.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self._cache[kind, name] = None
            else:
                self._cache[kind, name] = _decode(obj)
        return self._cache[kind, name]


def _decode(obj: Obj) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if obj.get("kind") == "Secret":
        for key, value in (obj.get("data") or {}).items():
            out[key] = base64.b64decode(value)
        return out
    for key, value in (obj.get("data") or {}).items():
        out[key] = str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        out[key] = base64.b64decode(value)
    return out


def lookup(objects: Objects, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
    """The data of the Secret or ConfigMap ``name`` (``kind`` "secret"/"configMap");
    None if it is missing and ``optional``, else :class:`ConfigError`."""
    data = objects.secret(name) if kind == "secret" else objects.config_map(name)
    if data is None and not optional:
        raise ConfigError(f'{kind} "{name}" not found')
    return data


def key_ref(objects: Objects, kind: str, ref: Mapping[str, Any]) -> str | None:
    """The value of a secretKeyRef/configMapKeyRef (None: optional and missing)."""
    name, key, optional = str(ref.get("name", "")), str(ref["key"]), bool(ref.get("optional"))
    data = lookup(objects, kind, name, optional)
    if data is None:
        return None
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {objects.namespace}/{name}")
    return data[key].decode("utf-8", "replace")


def field_value(pod: Obj, path: str, node: str) -> str:
    """A fieldRef's value (env or downwardAPI volume)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or node,
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
        "status.hostIP": HOST_IP,
        "status.hostIPs": HOST_IP,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(values.items()))
    match = _SUBSCRIPT.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(pod: Obj, ref: Mapping[str, Any], default_container: str) -> str:
    """A resourceFieldRef's value: limits/requests of cpu, memory or ephemeral-storage,
    divided by ``divisor`` and rounded up; unset limits are the node's allocatable."""
    name = ref.get("containerName") or default_container
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef: no container {name!r}")
    section, _, resource = str(ref["resource"]).partition(".")
    resources = container.get("resources") or {}
    amount = (resources.get(section) or {}).get(resource)
    if amount is None and section == "requests":
        amount = (resources.get("limits") or {}).get(resource, "0")
    if amount is None:
        amount = {"cpu": NODE_CPU, "memory": NODE_MEMORY}.get(resource, "0")
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(parse_quantity(str(amount)) / divisor))


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is ``$``,
    anything else is kept as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        end = text.find(")", i + 2) if nxt == "(" else -1
        if end > 0 and text[i + 2 : end] in env:
            out.append(env[text[i + 2 : end]])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The variables of the ``kubernetes`` Service, pointing at the API server itself
    (there is no Service network on the host network)."""
    port = str(api_port)
    url = f"tcp://{api_host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": url,
        "KUBERNETES_PORT_443_TCP": url,
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": port,
        "KUBERNETES_PORT_443_TCP_ADDR": api_host,
    }


def _env_from(objects: Objects, sources: list[Obj]) -> dict[str, str]:
    out: dict[str, str] = {}
    for source in sources:
        prefix = str(source.get("prefix") or "")
        for kind, ref_key in (("configMap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            data = lookup(objects, kind, str(ref.get("name", "")), bool(ref.get("optional")))
            for key, value in (data or {}).items():
                if _ENV_NAME.match(prefix + key):
                    out[prefix + key] = value.decode("utf-8", "replace")
    return out


def _one(objects: Objects, pod: Obj, container: Obj, item: Obj, node: str) -> str | None:
    source = item.get("valueFrom") or {}
    if "secretKeyRef" in source:
        return key_ref(objects, "secret", source["secretKeyRef"])
    if "configMapKeyRef" in source:
        return key_ref(objects, "configMap", source["configMapKeyRef"])
    if "fieldRef" in source:
        return field_value(pod, str(source["fieldRef"]["fieldPath"]), node)
    if "resourceFieldRef" in source:
        return resource_value(pod, source["resourceFieldRef"], str(container["name"]))
    raise ConfigError(f"env {item.get('name')}: unsupported valueFrom {sorted(source)}")


def container_env(
    objects: Objects, pod: Obj, container: Obj, node: str, api: tuple[str, int]
) -> dict[str, str]:
    """The full environment of ``container``: the ``KUBERNETES_*`` variables (those of
    other Services are not made), then envFrom, then env (later names win)."""
    env = service_env(*api)
    env.update(_env_from(objects, container.get("envFrom") or []))
    for item in container.get("env") or []:
        name = str(item["name"])
        if "valueFrom" in item:
            value = _one(objects, pod, container, item, node)
            if value is None:
                continue
        else:
            value = expand(str(item.get("value") or ""), env)
        env[name] = value
    return env
