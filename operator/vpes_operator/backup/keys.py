"""Each server's repository key, in a Secret of the operator's namespace."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

from .. import naming
from ..clients.kube import ApiError, Kube
from ..errors import ConfigError
from ..settings import OperatorSettings
from . import repository as repo
from .repository import Repository


def key_secret(repository: Repository, settings: OperatorSettings, password: str) -> dict[str, Any]:
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
            repo.KEY_PASSWORD: base64.b64encode(password.encode()).decode(),
            repo.KEY_REPOSITORY: base64.b64encode(repository.path.encode()).decode(),
        },
    }


def read(kube: Kube, settings: OperatorSettings, repository: Repository) -> str | None:
    secret = kube.get("v1", "Secret", settings.operator_namespace, repository.key_secret)
    raw = ((secret or {}).get("data") or {}).get(repo.KEY_PASSWORD)
    return base64.b64decode(raw).decode() if raw else None


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


def ensure(kube: Kube, settings: OperatorSettings, repository: Repository) -> str:
    """The repository's key, made once (created, never overwritten)."""
    existing = read(kube, settings, repository)
    if existing is not None:
        return existing
    try:
        kube.create(key_secret(repository, settings, secrets.token_urlsafe(32)))
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
        {"annotations": {repo.ANNOTATION_EXPIRES: at.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )
    return True


def expired(kube: Kube, settings: OperatorSettings, now: dt.datetime) -> list[Repository]:
    """Repositories whose retention after their server's deletion has run out."""
    out = []
    for secret in kube.list(
        "v1",
        "Secret",
        settings.operator_namespace,
        labels=f"{naming.LABEL_COMPONENT}={repo.COMPONENT_KEY}",
    ):
        annotations = secret["metadata"].get("annotations") or {}
        when = annotations.get(repo.ANNOTATION_EXPIRES)
        path = annotations.get(f"{naming.PREFIX}/repository")
        if not when or not path:
            continue
        try:
            at = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            repository = Repository.parse(path)
        except ValueError:
            continue
        if at <= now:
            out.append(repository)
    return out
