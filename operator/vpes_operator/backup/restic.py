"""The little restic the operator runs itself: reading a server's own objects back.

The Jobs move the mail; restoring into a new server also needs the server's
spec and credentials (DKIM keys, password hashes) from the snapshot before any
pod exists, so the operator reads those two small files with `restic dump`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from ..errors import ConfigError, WaitingError
from ..settings import OperatorSettings
from .access import Access
from .repository import Repository


def dump(
    settings: OperatorSettings,
    repository: Repository,
    access: Access,
    snapshot: str,
    path: str,
    *,
    timeout: float = 120,
) -> bytes:
    binary = shutil.which("restic")
    if binary is None:
        raise ConfigError(
            "ResticMissing", "restic is not installed where the operator runs (it reads objects)"
        )
    env = {
        "RESTIC_REPOSITORY": repository.url(settings, access.bucket),
        "RESTIC_PASSWORD": access.password,
        "AWS_ACCESS_KEY_ID": access.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": access.credentials.secret_access_key,
        "AWS_DEFAULT_REGION": settings.backup_s3_region,
        "PATH": "/usr/bin:/bin",
    }
    with tempfile.TemporaryDirectory(prefix="vpes-restic-") as home:
        env["HOME"] = home
        try:
            out = subprocess.run(
                [binary, "--no-cache", "--quiet", "dump", snapshot, path],
                env=env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise WaitingError(
                "S3Unreachable", f"restic dump timed out after {timeout:.0f} s"
            ) from e
    if out.returncode != 0:
        text = out.stderr.decode(errors="replace").strip().splitlines()
        detail = " ".join(text[-3:])[:500]
        if "no matching ID" in detail or "no snapshot" in detail or "not found" in detail:
            raise ConfigError(
                "SnapshotNotFound", f"snapshot {snapshot} (or its {path}) is not in the repository"
            )
        raise WaitingError("ResticFailed", f"restic dump of {path} failed: {detail}", delay=30)
    return out.stdout
