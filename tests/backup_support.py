"""What the backup tests share: the operator's backup settings and the S3 credentials Secret."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_devcluster.platform import OPERATOR_NAMESPACE
from vpes_operator.clients.kube import Kube

from tests.integration.operator_support import SECRET_VALUES
from tests.s3_support import S3Server

CREDENTIALS_SECRET = "vpes-backup-s3"


def credentials_secret(access_key: str, secret_key: str) -> dict[str, Any]:
    def b64(v: str) -> str:
        return base64.b64encode(v.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIALS_SECRET, "namespace": OPERATOR_NAMESPACE},
        "type": "Opaque",
        "data": {"access-key-id": b64(access_key), "secret-access-key": b64(secret_key)},
    }


def install_credentials(api: Kube, s3: S3Server, *, secret_key: str | None = None) -> None:
    api.apply(credentials_secret(s3.access_key_id, secret_key or s3.secret_access_key))


def backup_env(s3: S3Server, image: str, **extra: str) -> dict[str, str]:
    return {
        "VPES_BACKUP_S3_BUCKET": s3.bucket,
        "VPES_BACKUP_S3_ENDPOINT": s3.endpoint,
        "VPES_BACKUP_S3_CREDENTIALS_SECRET": f"{OPERATOR_NAMESPACE}/{CREDENTIALS_SECRET}",
        "VPES_BACKUP_IMAGE": image,
        "VPES_BACKUP_TICK": "1",
        "VPES_BACKUP_SCHEDULE_TICK": "2",
        **extra,
    }


def s3_server(
    tmp_path_factory: pytest.TempPathFactory, host: str = "127.0.0.1"
) -> Iterator[S3Server]:
    """A module's S3 server (a fixture's body): its secret key joins those no log may hold."""
    server = S3Server(tmp_path_factory.mktemp("s3"), host=host)
    server.start()
    SECRET_VALUES.add(server.secret_access_key)
    try:
        yield server
    finally:
        server.stop()
