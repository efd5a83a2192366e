"""The provider's S3 bucket, through boto3: the one interface to object storage.

restic writes and reads the repositories; this side checks that the bucket and
credentials work before a Job is started (so a mistake becomes a condition that
names it, not a failed pod), tells whether a repository exists yet, and
removes one whose retention has run out. With isolation "bucket" it also makes
and removes each repository's bucket and its IAM user (the identity a Job gets:
see scoping), through the IAM API of the same provider.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from ..clients.kube import Kube
from ..errors import ConfigError, ReconcileError, WaitingError
from ..models.conditions import Reason
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
_GONE_CODES = {"NoSuchBucket", "NoSuchEntity", "404", "NotFound"}
# Errors of the IAM API that pass: the request is tried again later.
_PASSING_CODES = {
    "Throttling",
    "ServiceFailure",
    "ServiceUnavailable",
    "InternalError",
    "500",
    "503",
}
_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 2, "mode": "standard"},
    s3={"addressing_style": "path"},
)


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
        self.credentials = credentials  # the provider's: never given to a Job (isolation bucket)
        self.settings = settings
        self.bucket = settings.backup_s3_bucket
        self.where = settings.backup_s3_endpoint or "AWS S3"
        self.iam_where = settings.backup_s3_iam_endpoint or settings.backup_s3_endpoint or "AWS IAM"
        self.client: Any = self._client("s3", credentials)
        self._iam: Any = None

    def _client(self, service: str, credentials: Credentials) -> Any:
        endpoint = self.settings.backup_s3_endpoint
        if service == "iam":
            endpoint = self.settings.backup_s3_iam_endpoint or endpoint
        make: Any = boto3.client  # typed per service name; one signature here
        return make(
            service,
            endpoint_url=endpoint or None,
            region_name=self.settings.backup_s3_region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=_CONFIG,
        )

    @property
    def iam(self) -> Any:
        if self._iam is None:
            self._iam = self._client("iam", self.credentials)
        return self._iam

    def _error(self, e: Exception, doing: str, bucket: str = "") -> ReconcileError:
        if isinstance(e, botocore.exceptions.ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket", "404", "NotFound"):
                return ConfigError(
                    "BucketNotFound",
                    f"the backup bucket {bucket or self.bucket!r} does not exist at {self.where}: "
                    "create it, or fix backup.s3.bucket",
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

    def check(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as e:
            raise self._error(e, "checking the bucket", bucket) from e

    def ensure_bucket(self, bucket: str) -> None:
        """A repository's own bucket (made once; one already ours is fine)."""
        region = self.settings.backup_s3_region
        where = {} if region == "us-east-1" else {"LocationConstraint": region}
        try:
            self.client.create_bucket(
                Bucket=bucket, **({"CreateBucketConfiguration": where} if where else {})
            )
        except botocore.exceptions.ClientError as e:
            if _code(e) != "BucketAlreadyOwnedByYou":
                raise self._error(e, f"creating the bucket {bucket}", bucket) from e
        except Exception as e:
            raise self._error(e, f"creating the bucket {bucket}", bucket) from e

    def delete_bucket(self, bucket: str) -> None:
        try:
            self.client.delete_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as e:
            if _code(e) not in _GONE_CODES:
                raise self._error(e, f"removing the bucket {bucket}", bucket) from e
        except Exception as e:
            raise self._error(e, f"removing the bucket {bucket}", bucket) from e

    def repository_exists(self, bucket: str, prefix: str) -> bool:
        try:
            self.client.head_object(Bucket=bucket, Key=f"{prefix}/config")
            return True
        except botocore.exceptions.ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(e, "looking for the repository", bucket) from e
        except Exception as e:
            raise self._error(e, "looking for the repository", bucket) from e

    def _objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/"
            )
            for page in pages:
                out.extend(page.get("Contents", []))
        except botocore.exceptions.ClientError as e:
            if _code(e) == "NoSuchBucket":
                return []  # its own bucket, already removed
            raise self._error(e, "listing the repository", bucket) from e
        except Exception as e:
            raise self._error(e, "listing the repository", bucket) from e
        return out

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        objects = self._objects(bucket, prefix)
        try:
            for start in range(0, len(objects), 1000):
                chunk = [{"Key": o["Key"]} for o in objects[start : start + 1000]]
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": chunk})
        except Exception as e:
            raise self._error(e, "removing the repository", bucket) from e
        return len(objects)

    # -- the repositories' own identities (IAM) ------------------------------------

    def _iam_error(self, e: Exception, doing: str) -> ReconcileError:
        if isinstance(e, botocore.exceptions.ClientError):
            code = _code(e)
            if code in _PASSING_CODES:
                return WaitingError(
                    Reason.S3_ERROR, f"{self.iam_where} failed while {doing}: {code}"
                )
            return ConfigError(
                Reason.S3_IDENTITY_UNAVAILABLE,
                f"{self.iam_where} refused {doing} ({code}), so the backup Job cannot get "
                "credentials of its own repository only: give the operator's S3 keys (the "
                "backup.s3.credentialsSecret Secret) the IAM rights the chart's values list "
                "under backup.s3.isolation, or set backup.s3.iamEndpoint; if the provider's S3 "
                "has no IAM, set backup.s3.isolation to shared (every backup Job then carries "
                "the provider's keys)",
            )
        if isinstance(e, botocore.exceptions.BotoCoreError):
            return WaitingError(
                Reason.S3_UNREACHABLE, f"cannot reach {self.iam_where} while {doing}: {e}", delay=60
            )
        raise e

    def issue_identity(
        self, user: str, path: str, policy_name: str, policy: dict[str, Any]
    ) -> Credentials:
        """The user (made once), its one inline policy, and a new access key: any
        earlier key of the user is deleted (one whose secret was lost in a crash)."""
        try:
            try:
                self.iam.create_user(UserName=user, Path=path)
            except botocore.exceptions.ClientError as e:
                if _code(e) != "EntityAlreadyExists":
                    raise
            self.iam.put_user_policy(
                UserName=user, PolicyName=policy_name, PolicyDocument=json.dumps(policy)
            )
            self._delete_keys(user)
            key = self.iam.create_access_key(UserName=user)["AccessKey"]
        except Exception as e:
            raise self._iam_error(e, f"making the identity {user}") from e
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def _delete_keys(self, user: str) -> None:
        for key in self.iam.list_access_keys(UserName=user).get("AccessKeyMetadata", []):
            self.iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])

    def revoke_identity(self, user: str) -> None:
        """The user, its keys and its policies, gone (already gone is fine)."""
        try:
            self._delete_keys(user)
            for name in self.iam.list_user_policies(UserName=user).get("PolicyNames", []):
                self.iam.delete_user_policy(UserName=user, PolicyName=name)
            self.iam.delete_user(UserName=user)
        except botocore.exceptions.ClientError as e:
            if _code(e) not in _GONE_CODES:
                raise self._iam_error(e, f"removing the identity {user}") from e
        except Exception as e:
            raise self._iam_error(e, f"removing the identity {user}") from e

    def works_for(self, credentials: Credentials, bucket: str, prefix: str) -> str:
        """ "" when `credentials` can list the repository; else the S3 error code (a new
        key or policy may take seconds to reach every S3 front end)."""
        try:
            self._client("s3", credentials).list_objects_v2(
                Bucket=bucket, Prefix=f"{prefix}/", MaxKeys=1
            )
        except botocore.exceptions.ClientError as e:
            return _code(e) or "error"
        except Exception as e:
            raise self._error(e, "trying the repository's own key", bucket) from e
        return ""


def _code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def connect(kube: Kube, settings: OperatorSettings) -> S3Store:
    if not settings.backup_s3_bucket:
        raise not_configured()
    return S3Store(settings, load_credentials(kube, settings))
