"""What a Job needs to reach one repository, and only that one; and its removal.

With isolation "bucket" (the default) a repository gets, on its first backup,
a bucket of its own and an IAM user whose policy reaches that bucket alone
(scoping); the user's access key is kept in the repository's key Secret in the
operator's namespace and handed to that repository's Jobs only, for as long as
each runs. The provider's keys never leave the operator. Removing the
repository (its server deleted and its retention over) removes the objects,
the bucket, the user and its keys, then the key Secret.

With isolation "shared" there is no IAM: every repository is a prefix of the
one bucket, and the Jobs get the provider's keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..clients.kube import Kube
from ..errors import WaitingError
from ..models.conditions import Reason
from ..settings import OperatorSettings
from . import keys, scoping
from .repository import Repository
from .store import Credentials, S3Store

# A repository's key that S3 still refuses this long after it was issued was
# lost (its user deleted by hand, say): a new one is issued.
REISSUE_AFTER = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Access:
    """One repository's restic password, bucket, and the S3 key its Jobs get."""

    password: str
    bucket: str
    credentials: Credentials

    def __repr__(self) -> str:  # never in a log
        return f"Access(bucket={self.bucket!r}, ***)"


def new_bucket(settings: OperatorSettings, repository: Repository) -> str:
    """Where a repository made now lives."""
    if settings.backup_s3_isolation == "bucket":
        return scoping.bucket_name(settings, repository)
    return settings.backup_s3_bucket


def grant(
    kube: Kube,
    settings: OperatorSettings,
    s3: S3Store,
    repository: Repository,
    now: dt.datetime,
    *,
    create: bool,
) -> Access:
    """The repository's access for a Job: made on its first backup (`create`), else
    the existing repository's (BackupKeyMissing when its key is gone)."""
    if create:
        keys.ensure(kube, settings, repository, new_bucket(settings, repository))
    else:
        keys.require(kube, settings, repository)
    stored = keys.stored(kube, settings, repository)
    assert stored is not None  # ensured or required just above
    bucket = stored.bucket or settings.backup_s3_bucket
    if create and bucket != settings.backup_s3_bucket:
        s3.ensure_bucket(bucket)  # its own, made by its first backup
    else:
        s3.check(bucket)
    if settings.backup_s3_isolation == "shared":
        return Access(stored.password, bucket, s3.credentials)
    prefix = repository.prefix(settings)
    credentials = stored.credentials
    refused = s3.works_for(credentials, bucket, prefix) if credentials else "none issued"
    stale = stored.issued_at is None or now - stored.issued_at > REISSUE_AFTER
    if credentials is None or (refused and stale):
        credentials = s3.issue_identity(
            scoping.user_name(repository),
            scoping.IAM_PATH,
            scoping.POLICY_NAME,
            scoping.policy(bucket, prefix, own_bucket=bucket != settings.backup_s3_bucket),
        )
        keys.record_identity(kube, settings, repository, credentials, now)
        refused = s3.works_for(credentials, bucket, prefix)
    if refused:
        raise WaitingError(
            Reason.S3_IDENTITY_PENDING,
            f"the S3 key of repository {repository.path} is not accepted yet ({refused}); "
            "a new key can take seconds to be valid everywhere",
            delay=5,
        )
    return Access(stored.password, bucket, credentials)


def revoke(kube: Kube, settings: OperatorSettings, s3: S3Store, repository: Repository) -> int:
    """Remove the repository's objects, its own bucket and identity (not its key Secret:
    the caller deletes that last, so nothing is ever half removed and forgotten)."""
    stored = keys.stored(kube, settings, repository)
    bucket = (stored.bucket if stored else "") or settings.backup_s3_bucket
    removed = s3.delete_prefix(bucket, repository.prefix(settings))
    if bucket != settings.backup_s3_bucket:
        s3.delete_bucket(bucket)
    if stored is not None and stored.credentials is not None:
        s3.revoke_identity(scoping.user_name(repository))
    return removed
