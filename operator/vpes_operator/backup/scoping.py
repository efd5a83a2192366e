"""What one repository's own S3 identity may reach: names and policy, pure.

A backup or restore pod runs in the customer's namespace, next to the
customer's mail; whatever credentials it holds, a compromise of that pod holds
too. So a Job never gets the provider's keys: it gets the access key of an IAM
user made for its repository alone, whose one inline policy allows the object
operations restic needs under the repository's prefix and listing only that
prefix, in the repository's own bucket.

Why a bucket per repository, when a prefix could be enough: the object actions
(get, put, delete) are confined by their resource ARN everywhere, but listing
is an action on the bucket, confined to a prefix only by the `s3:prefix`
condition, which not every S3 with IAM evaluates (moto's does not). A bucket of
its own confines listing by the resource ARN alone, so the guarantee holds on
any S3 that enforces user policies at all, and the test proves it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..models.conditions import Reason
from ..settings import OperatorSettings
from .repository import Repository

# Every identity the operator makes lives under this IAM path, so the
# provider's own policy can confine the operator's IAM rights to it.
IAM_PATH = "/vpes/"
POLICY_NAME = "vpes-repository"
BUCKET_MAX = 63
# What moto 5.2 calls the operations restic and the operator use (its action is
# "s3:<operation>"); on AWS these are s3:ListBucket (the bucket's) and
# s3:GetObject / s3:PutObject (the objects').
MOTO_ACTIONS = {
    "listing": ["s3:ListObjectsV2", "s3:ListObjects"],
    "bucket": ["s3:HeadBucket"],
    "object": [
        "s3:HeadObject",
        "s3:CreateMultipartUpload",
        "s3:UploadPart",
        "s3:CompleteMultipartUpload",
        "s3:ListParts",
    ],
}


def bucket_name(settings: OperatorSettings, repository: Repository) -> str:
    """The repository's own bucket: `<backup.s3.bucket>-<20 hex of its path>`."""
    name = f"{settings.backup_s3_bucket}-{repository.label}"
    if len(name) > BUCKET_MAX:
        raise ConfigError(
            Reason.BUCKET_NAME_TOO_LONG,
            f"backup.s3.bucket {settings.backup_s3_bucket!r} is too long to name each "
            f"server's bucket (<bucket>-<20 hex> must fit in {BUCKET_MAX} characters): "
            f"use at most {BUCKET_MAX - 21} characters",
        )
    return name


def user_name(repository: Repository) -> str:
    """The repository's IAM user (64 characters at most)."""
    return f"vpes-repository-{repository.label}"


def policy(bucket: str, prefix: str, *, own_bucket: bool) -> dict[str, Any]:
    """The inline policy of a repository's user: its objects, and listing its prefix.

    In its own bucket, listing needs no condition (the bucket holds nothing else), and
    must have none: `restic init` asks whether the bucket exists (HeadBucket, which S3
    authorizes as s3:ListBucket with no prefix). A repository made before buckets of
    their own lives in the shared bucket: listing is then confined by `s3:prefix`.
    MOTO_ACTIONS: moto 5.2 (the S3 whose IAM the tests run against) authorizes each
    request by its operation's name; AWS by the actions above, has no actions by
    those names and ignores them (IAM accepts unknown actions in a policy)."""
    listing: dict[str, Any] = {
        "Sid": "ListRepository",
        "Effect": "Allow",
        "Action": ["s3:ListBucket", *MOTO_ACTIONS["listing"]],
        "Resource": [f"arn:aws:s3:::{bucket}"],
    }
    if not own_bucket:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RepositoryObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    *MOTO_ACTIONS["object"],
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
            },
            listing,
            {
                "Sid": "Bucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", *MOTO_ACTIONS["bucket"]],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ],
    }
