"""Each server's repository key, in a Secret of the operator's namespace.

The same Secret records where the repository lives (its bucket) and, with
isolation "bucket", the access key of the repository's own IAM user: what a Job
of that repository is given, and nothing of any other repository.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from .. import naming
from ..clients.kube import ApiError, Kube
from ..errors import ConfigError
from ..models.kube import Secret
from ..settings import OperatorSettings
from . import repository as repo
from .repository import Repository
from .store import ACCESS_KEY, SECRET_KEY, Credentials

KEY_BUCKET = "bucket"
ANNOTATION_ISSUED = f"{naming.PREFIX}/identity-issued-at"


@dataclass(frozen=True)
class Stored:
    """What the key Secret holds: the restic password, the bucket (empty: made before
    buckets were recorded, so the shared one), the repository's own S3 key if issued."""

    password: str
    bucket: str
    credentials: Credentials | None
    issued_at: dt.datetime | None


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def key_secret(
    repository: Repository, settings: OperatorSettings, password: str, bucket: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": repository.key_secret,
            "namespace": settings.operator_namespace,
            "labels": {
                "app.kubernetes.io/part-of": "vpes",
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
                naming.LABEL_COMPONENT: repo.COMPONENT_KEY,
                repo.LABEL_REPOSITORY: repository.label,
            },
            "annotations": {f"{naming.PREFIX}/repository": repository.path},
        },
        "type": "Opaque",
        "data": {
            repo.KEY_PASSWORD: _b64(password),
            repo.KEY_REPOSITORY: _b64(repository.path),
            KEY_BUCKET: _b64(bucket),
        },
    }


def stored(kube: Kube, settings: OperatorSettings, repository: Repository) -> Stored | None:
    secret = kube.read(Secret, settings.operator_namespace, repository.key_secret)
    if secret is None:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    if not data.get(repo.KEY_PASSWORD):
        return None
    issued = secret.metadata.annotations.get(ANNOTATION_ISSUED)
    has_key = data.get(ACCESS_KEY) and data.get(SECRET_KEY)
    return Stored(
        password=data[repo.KEY_PASSWORD],
        bucket=data.get(KEY_BUCKET, ""),
        credentials=Credentials(data[ACCESS_KEY], data[SECRET_KEY]) if has_key else None,
        issued_at=_parse(issued) if issued else None,
    )


def read(kube: Kube, settings: OperatorSettings, repository: Repository) -> str | None:
    found = stored(kube, settings, repository)
    return found.password if found else None


def record_identity(
    kube: Kube,
    settings: OperatorSettings,
    repository: Repository,
    credentials: Credentials,
    now: dt.datetime,
) -> None:
    """Keep the repository's newly issued S3 key beside its password."""
    kube.request(
        "PATCH",
        kube.resource("v1", "Secret").path(settings.operator_namespace, repository.key_secret),
        body={
            "metadata": {"annotations": {ANNOTATION_ISSUED: _format(now)}},
            "data": {
                ACCESS_KEY: _b64(credentials.access_key_id),
                SECRET_KEY: _b64(credentials.secret_access_key),
            },
        },
        content_type="application/merge-patch+json",
    )


def _format(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def require(kube: Kube, settings: OperatorSettings, repository: Repository) -> str:
    password = read(kube, settings, repository)
    if password is None:
        raise ConfigError(
            "BackupKeyMissing",
            f"the key of repository {repository.path} (Secret {settings.operator_namespace}/"
            f"{repository.key_secret}) is gone, so its backups cannot be read: its retention "
            "may have ended",
        )
    return password


def ensure(kube: Kube, settings: OperatorSettings, repository: Repository, bucket: str) -> str:
    """The repository's key, made once (created, never overwritten), with its bucket."""
    existing = read(kube, settings, repository)
    if existing is not None:
        return existing
    try:
        kube.create(key_secret(repository, settings, secrets.token_urlsafe(32), bucket))
    except ApiError as e:
        if e.status != 409:
            raise
    return require(kube, settings, repository)


def mark_expiry(
    kube: Kube, settings: OperatorSettings, repository: Repository, at: dt.datetime
) -> bool:
    """Record when a deleted server's repository may go; False when there is no key."""
    if read(kube, settings, repository) is None:
        return False
    kube.patch_metadata(
        "v1",
        "Secret",
        settings.operator_namespace,
        repository.key_secret,
        {"annotations": {repo.ANNOTATION_EXPIRES: _format(at)}},
    )
    return True


def expired(kube: Kube, settings: OperatorSettings, now: dt.datetime) -> list[Repository]:
    """Repositories whose retention after their server's deletion has run out."""
    out = []
    for secret in kube.read_list(
        Secret, settings.operator_namespace, labels=f"{naming.LABEL_COMPONENT}={repo.COMPONENT_KEY}"
    ):
        annotations = secret.metadata.annotations
        when = annotations.get(repo.ANNOTATION_EXPIRES)
        path = annotations.get(f"{naming.PREFIX}/repository")
        if not when or not path:
            continue
        try:
            at = _parse(when)
            repository = Repository.parse(path)
        except ValueError:
            continue
        if at <= now:
            out.append(repository)
    return out
