"""The provider's S3 bucket, through boto3: the one interface to object storage.

restic writes and reads the repositories; this side checks that the bucket and
credentials work before a Job is started (so a mistake becomes a condition that
names it, not a failed pod), tells whether a repository exists yet, and
removes one whose retention has run out.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from ..clients.kube import Kube
from ..errors import ConfigError, ReconcileError, WaitingError
from ..settings import OperatorSettings

ACCESS_KEY = "access-key-id"
SECRET_KEY = "secret-access-key"  # noqa: S105 (a key name)
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "403",
}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never in a log
        return "Credentials(***)"


def not_configured() -> ConfigError:
    return ConfigError(
        "BackupsNotConfigured",
        "backups are not configured: the provider sets the S3 bucket (chart value "
        "backup.s3.bucket, VPES_BACKUP_S3_BUCKET) and its credentials Secret",
    )


def load_credentials(kube: Kube, settings: OperatorSettings) -> Credentials:
    ref = settings.backup_s3_credentials_secret
    if not ref:
        raise ConfigError(
            "S3CredentialsMissing",
            "no S3 credentials are configured: set backup.s3.credentialsSecret to a Secret "
            f"with the keys {ACCESS_KEY} and {SECRET_KEY}",
        )
    namespace, _, name = ref.partition("/")
    secret = kube.get("v1", "Secret", namespace, name) if name else None
    data = (secret or {}).get("data") or {}
    if ACCESS_KEY not in data or SECRET_KEY not in data:
        raise ConfigError(
            "S3CredentialsMissing",
            f"the S3 credentials Secret {ref} is missing or lacks the keys {ACCESS_KEY} and "
            f"{SECRET_KEY}",
        )
    return Credentials(
        base64.b64decode(data[ACCESS_KEY]).decode().strip(),
        base64.b64decode(data[SECRET_KEY]).decode().strip(),
    )


class S3Store:
    """A bucket of an S3-compatible service (AWS or any endpoint)."""

    def __init__(self, settings: OperatorSettings, credentials: Credentials) -> None:
        self.credentials = credentials  # the Jobs get the same ones
        self.bucket = settings.backup_s3_bucket
        self.where = settings.backup_s3_endpoint or "AWS S3"
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=settings.backup_s3_endpoint or None,
            region_name=settings.backup_s3_region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def _error(self, e: Exception, doing: str) -> ReconcileError:
        if isinstance(e, botocore.exceptions.ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket", "404", "NotFound"):
                return ConfigError(
                    "BucketNotFound",
                    f"the backup bucket {self.bucket!r} does not exist at {self.where}: create "
                    "it, or fix backup.s3.bucket",
                )
            if code in _CREDENTIAL_CODES:
                return ConfigError(
                    "S3CredentialsRejected",
                    f"{self.where} refused the backup credentials ({code}) while {doing}: fix "
                    "the access key in the backup.s3.credentialsSecret Secret",
                )
            return WaitingError("S3Error", f"{self.where} failed while {doing}: {code} {e}")
        if isinstance(e, botocore.exceptions.BotoCoreError):
            return WaitingError(
                "S3Unreachable", f"cannot reach {self.where} while {doing}: {e}", delay=60
            )
        raise e

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise self._error(e, "checking the bucket") from e

    def repository_exists(self, prefix: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=f"{prefix}/config")
            return True
        except botocore.exceptions.ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(e, "looking for the repository") from e
        except Exception as e:
            raise self._error(e, "looking for the repository") from e

    def _objects(self, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{prefix}/"
            )
            for page in pages:
                out.extend(page.get("Contents", []))
        except Exception as e:
            raise self._error(e, "listing the repository") from e
        return out

    def delete_prefix(self, prefix: str) -> int:
        objects = self._objects(prefix)
        try:
            for start in range(0, len(objects), 1000):
                chunk = [{"Key": o["Key"]} for o in objects[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})
        except Exception as e:
            raise self._error(e, "removing the repository") from e
        return len(objects)


def connect(kube: Kube, settings: OperatorSettings) -> S3Store:
    if not settings.backup_s3_bucket:
        raise not_configured()
    return S3Store(settings, load_credentials(kube, settings))
