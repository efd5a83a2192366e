"""Self-contained kubeconfig files (certificates embedded, so a copy works anywhere),
and API clients configured from one."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

CLUSTER_NAME = "vpes-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _document(server: str, ca: Path, user: dict[str, str], user_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [
            {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user_name}}
        ],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


def write_for_cert(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    """A kubeconfig that authenticates with a client certificate."""
    creds = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    return _write(path, _document(server, ca, creds, user))


def write_for_token(path: Path, server: str, ca: Path, token: str, user: str) -> Path:
    """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
    return _write(path, _document(server, ca, {"token": token}, user))


def api_client(kubeconfig: Path, pool_size: int = 16) -> client.ApiClient:
    """An ApiClient for ``kubeconfig`` with room for ``pool_size`` parallel requests."""
    conf = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=conf, persist_config=False
    )
    conf.connection_pool_maxsize = pool_size
    return client.ApiClient(conf)
