"""Where one server's backups live and what they are called: pure names.

Each server has its own restic repository, `<prefix>/<namespace>/<server>-<uid8>`
in a bucket of its own (or, with isolation "shared", in the provider's one
bucket), encrypted with its own key. The key is
kept in a Secret in the operator's namespace, not the customer's: deleting a
customer's namespace (billing does on cancellation) must not make the backups
kept for the retention period unreadable. The uid part keeps a new server of
an old name out of the old server's repository.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import naming
from ..settings import OperatorSettings

LABEL_REPOSITORY = f"{naming.PREFIX}/repository"
COMPONENT_KEY = "backup-key"
COMPONENT_BACKUP = "backup"
COMPONENT_RESTORE = "restore"
# On a key Secret: when the repository (its server deleted) may be removed.
ANNOTATION_EXPIRES = f"{naming.PREFIX}/expires-at"
ANNOTATION_RESTORE = naming.ANNOTATION_RESTORE
# Keys of the key Secret.
KEY_PASSWORD = "restic-password"  # noqa: S105 (a key name)
KEY_REPOSITORY = "repository"
# Snapshot paths: the mail volume and the server's own objects.
MAIL_PATH = "/data/mail"
OBJECTS_PATH = "/data/objects"
OBJECT_SERVER = "server.json"
OBJECT_CREDENTIALS = "credentials.json"


@dataclass(frozen=True)
class Repository:
    """One server's restic repository: `<namespace>/<server>-<uid8>` under the prefix."""

    namespace: str
    server: str
    uid8: str

    @classmethod
    def of(cls, namespace: str, server: str, uid: str) -> Repository:
        return cls(namespace, server, uid.replace("-", "")[:8])

    @classmethod
    def parse(cls, path: str) -> Repository:
        namespace, _, rest = path.partition("/")
        server, _, uid8 = rest.rpartition("-")
        if not namespace or not server or len(uid8) != 8:
            raise ValueError(f"not a repository path: {path!r}")
        return cls(namespace, server, uid8)

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.server}-{self.uid8}"

    def prefix(self, settings: OperatorSettings) -> str:
        """The S3 key prefix of the repository (no leading or trailing slash)."""
        base = settings.backup_s3_prefix.strip("/")
        return f"{base}/{self.path}" if base else self.path

    def url(self, settings: OperatorSettings, bucket: str, *, for_job: bool = False) -> str:
        """restic's repository URL: s3:<endpoint>/<bucket>/<prefix>."""
        endpoint = s3_endpoint(settings, for_job=for_job)
        return f"s3:{endpoint}/{bucket}/{self.prefix(settings)}"

    @property
    def key_secret(self) -> str:
        """The key Secret's name (in the operator's namespace): at most 253 characters."""
        name = f"backup-key-{self.namespace}-{self.server}-{self.uid8}"
        if len(name) > 253:
            digest = hashlib.sha256(self.path.encode()).hexdigest()[:16]
            name = f"backup-key-{digest}"
        return name

    @property
    def restic_host(self) -> str:
        """restic's --host of every snapshot of the server (pods' host names vary)."""
        return f"{self.namespace}.{self.server}"

    @property
    def label(self) -> str:
        """A label value naming the repository (63 characters at most)."""
        return hashlib.sha256(self.path.encode()).hexdigest()[:20]


def job_name(kind: str, uid: str) -> str:
    """`backup-<uid12>` / `restore-<uid12>`: unique per request, stable across restarts."""
    return f"{kind}-{uid.replace('-', '')[:12]}"


def s3_endpoint(settings: OperatorSettings, *, for_job: bool = False) -> str:
    """The S3 endpoint (URL, or host[:port] for https) the operator or a Job uses."""
    endpoint = (settings.backup_job_s3_endpoint if for_job else "") or (
        settings.backup_s3_endpoint or f"s3.{settings.backup_s3_region}.amazonaws.com"
    )
    return endpoint.rstrip("/")


def job_secret_name(job: str) -> str:
    return f"{job}-env"


def scheduled_backup_name(server: str, fire: str) -> str:
    """The MailBackup of one scheduled firing, e.g. alice-202612010317 (idempotent)."""
    return f"{server[:48]}-{fire}"
