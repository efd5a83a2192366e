"""Backup and restore Jobs, and the Secret each one reads: pure builders.

Why a Job that mounts the server's volume: the volume is ReadWriteOnce, which
Kubernetes enforces per node, so a backup pod placed on the tenant pod's node
(required pod affinity) can mount it beside the running server; maildir is
written by rename, so a snapshot of a live volume holds only whole messages
(Dovecot rebuilds any index caught mid-write). A restore needs the volume to
itself: the server is held stopped (replicas 0) while it runs, and then its pod
can be anywhere.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from .. import naming
from ..builders.meta import owner_reference
from ..models.kube import Secret
from ..models.plan import Retention
from ..models.server import PersonalMailServer
from ..render import layout
from ..settings import OperatorSettings
from . import repository as repo
from .access import Access
from .repository import Repository

OBJECTS_MOUNT = "/run/vpes/objects"

# Backups and restores run as the mail user, who owns every mailbox file, with
# no capability: what is not the mail user's (lost+found, the Postfix queue)
# is never backed up nor restored (images/backup/vpes-backup says why).
RUN_AS = {
    "runAsUser": layout.VMAIL_UID,
    "runAsGroup": layout.VMAIL_GID,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}
# The one root step, before a restore: a new volume's top directory is root's
# (0755 on most provisioners), closed to the mail user. `vpes-backup prepare`
# makes it root:vmail 2775, as the tenant's vpes-init does at each start; it
# needs CAP_CHOWN (to give the group) and nothing else: root owns the
# directory once it chowned it, so chmod needs no CAP_FOWNER.
PREPARE_AS = {
    "runAsUser": 0,
    "runAsGroup": 0,
    "runAsNonRoot": False,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
}


@dataclass(frozen=True)
class Request:
    """The MailBackup or MailRestore a Job serves (its owner)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return owner_reference(self.api_version, self.kind, self.name, self.uid)


@dataclass(frozen=True)
class JobSpec:
    """What one Job does: back up or restore `server`'s volume, to or from `repository`."""

    request: Request
    server: str
    repository: Repository
    action: str  # "backup" or "restore"
    tags: tuple[str, ...] = ()
    init: bool = False
    retention: Retention | None = None
    forget_tag: str = ""
    snapshot: str = ""
    overwrite: bool = False
    # Where the tenant pod runs, if it does: the backup pod must share its node.
    tenant_running: bool = False
    objects: dict[str, str] = field(default_factory=dict)

    @property
    def job_name(self) -> str:
        return repo.job_name(self.action, self.request.uid)


def labels(spec: JobSpec) -> dict[str, str]:
    # Never the tenant's selector labels: the server's Service and NetworkPolicy
    # must not pick up a backup pod.
    return {
        "app.kubernetes.io/name": f"vpes-{spec.action}",
        "app.kubernetes.io/part-of": "vpes",
        "app.kubernetes.io/managed-by": naming.MANAGED_BY,
        naming.LABEL_SERVER: spec.server,
        naming.LABEL_COMPONENT: spec.action,
        repo.LABEL_REPOSITORY: spec.repository.label,
    }


def _meta(spec: JobSpec, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": spec.request.namespace,
        "labels": labels(spec),
        "ownerReferences": [spec.request.owner_reference()],
    }


def job_secret(spec: JobSpec, settings: OperatorSettings, access: Access) -> dict[str, Any]:
    """What the Job's pod reads: the repository, its key, the S3 key of that repository
    alone (access), the objects."""
    data = {
        "RESTIC_REPOSITORY": spec.repository.url(settings, access.bucket, for_job=True),
        "RESTIC_PASSWORD": access.password,
        "AWS_ACCESS_KEY_ID": access.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": access.credentials.secret_access_key,
        **{f"object-{k}": v for k, v in spec.objects.items()},
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, repo.job_secret_name(spec.job_name)),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def _env(spec: JobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    secret = repo.job_secret_name(spec.job_name)
    env: list[dict[str, Any]] = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
        for k in (
            "RESTIC_REPOSITORY",
            "RESTIC_PASSWORD",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        )
    ]
    plain = {
        "AWS_DEFAULT_REGION": settings.backup_s3_region,
        "RESTIC_CACHE_DIR": "/tmp/restic-cache",  # noqa: S108 (the pod's own emptyDir)
        "VPES_HOST": spec.repository.restic_host,
    }
    if spec.action == "backup":
        plain["VPES_TAGS"] = ",".join(spec.tags)
        plain["VPES_INIT"] = "1" if spec.init else "0"
        if spec.retention is not None and spec.forget_tag:
            plain["VPES_FORGET_TAG"] = spec.forget_tag
            plain["VPES_KEEP_DAILY"] = str(spec.retention.daily)
            plain["VPES_KEEP_WEEKLY"] = str(spec.retention.weekly)
            plain["VPES_KEEP_MONTHLY"] = str(spec.retention.monthly)
    else:
        plain["VPES_SNAPSHOT"] = spec.snapshot
        plain["VPES_OVERWRITE"] = "1" if spec.overwrite else "0"
    env.extend({"name": k, "value": v} for k, v in sorted(plain.items()))
    return env


def _placement(spec: JobSpec, settings: OperatorSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if settings.tenant_node_selector:
        out["nodeSelector"] = dict(settings.tenant_node_selector)
    if spec.action == "backup" and spec.tenant_running:
        out["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": naming.selector_labels(spec.server)},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return out


def _storage(spec: JobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volume mounts, volumes): scratch space, the mail volume (read-only for a
    backup), and for a backup the server's objects that go into the snapshot."""
    backup = spec.action == "backup"
    mounts: list[dict[str, Any]] = [
        {"name": "work", "mountPath": "/data"},
        {"name": "mail", "mountPath": repo.MAIL_PATH, "readOnly": backup},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "work", "emptyDir": {"sizeLimit": "16Mi"}},
        {
            "name": "mail",
            "persistentVolumeClaim": {
                "claimName": naming.volume_claim(spec.server),
                "readOnly": backup,
            },
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if backup and spec.objects:
        mounts.append({"name": "objects", "mountPath": OBJECTS_MOUNT, "readOnly": True})
        volumes.append(
            {
                "name": "objects",
                "secret": {
                    "secretName": repo.job_secret_name(spec.job_name),
                    # Readable by the pod's one user: a Secret volume's files are
                    # root's (no fsGroup here: it would chgrp the mail volume).
                    "defaultMode": 0o444,
                    "items": [{"key": f"object-{k}", "path": k} for k in sorted(spec.objects)],
                },
            }
        )
    return mounts, volumes


def _prepare(spec: JobSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The restore's init container: the volume's top directory for the mail group."""
    return {
        "name": "prepare",
        "image": settings.backup_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["prepare"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": copy.deepcopy(PREPARE_AS),
        "volumeMounts": [{"name": "mail", "mountPath": repo.MAIL_PATH}],
    }


def job(spec: JobSpec, settings: OperatorSettings) -> dict[str, Any]:
    mounts, volumes = _storage(spec)
    container = {
        "name": spec.action,
        "image": settings.backup_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [spec.action],
        "env": _env(spec, settings),
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": settings.backup_job_memory_limit},
        },
        "securityContext": copy.deepcopy(RUN_AS),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
        **({"initContainers": [_prepare(spec, settings)]} if spec.action == "restore" else {}),
        **_placement(spec, settings),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, spec.job_name),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.backup_job_deadline_seconds,
            "ttlSecondsAfterFinished": 7 * 86400,
            "template": {"metadata": {"labels": labels(spec)}, "spec": pod_spec},
        },
    }


def objects_of(server: PersonalMailServer, credentials: Secret | None) -> dict[str, str]:
    """The server's own objects as they go into a snapshot: its spec, its credentials."""
    meta = server.metadata
    doc = {
        "apiVersion": server.API_VERSION,
        "kind": server.KIND,
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "labels": meta.labels,
        },
        "spec": server.spec,
    }
    out = {repo.OBJECT_SERVER: json.dumps(doc, sort_keys=True)}
    if credentials is not None:
        out[repo.OBJECT_CREDENTIALS] = json.dumps({"data": credentials.data}, sort_keys=True)
    return out
