"""Calendar and contacts: the `dav` container (Radicale, images/dav) of a tenant pod whose
plan has features.calendar, and the volumes only it mounts.

Radicale runs as the server's mail user (DAV_UID, never root) with a read-only root and
no capability. Its data is the `.dav` directory of the server's own mail volume
(vpes-init makes it the mail user's, 0700), so the server's backups and restores (which
run as the mail user) carry it and it goes with the server; it checks logins against
the server's Dovecot passwd-file. (A Radicale of its own user could not be backed up by
the mail user's Jobs without opening the mail to it or the calendars to everyone.)
vpes-web, the only peer its NetworkPolicy admits (network.py), proxies
https://<edge_web_host>/dav/ to the Service port DAV_PORT_NAME.
"""

from __future__ import annotations

from typing import Any

from .. import naming
from ..render import layout
from ..settings import OperatorSettings
from .meta import Owner

CONTAINER_NAME = "dav"
DAV_PORT = 5232
DAV_PORT_NAME = "dav"
# The mail user (the image's vmail), who owns everything on the volume.
DAV_UID = layout.VMAIL_UID
# Radicale's storage: the mail volume's `.dav` (a leading dot: never a domain's directory).
DATA_SUBPATH = ".dav"
DATA_DIR = "/var/lib/vpes-dav"
SECRETS_VOLUME = "dav-secrets"
TMP_VOLUME = "dav-tmp"
# The Secret's files are root's (the pod sets no fsGroup, workload.py), so the passwd
# file is world-readable for DAV_UID to read it; it is the only file of a volume that only
# this container mounts, where DAV_UID is the only user (it holds hashes only). The mail
# container's own "secrets" volume keeps every file root-only (0400), no copy for it.
PASSWD_MODE = 0o444


def container(settings: OperatorSettings) -> dict[str, Any]:
    """Radicale on DAV_PORT: unprivileged, no capabilities, read-only root."""
    return {
        "name": CONTAINER_NAME,
        "image": settings.dav_image,
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [{"name": DAV_PORT_NAME, "containerPort": DAV_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": settings.dav_cpu_request, "memory": settings.dav_memory_request},
            "limits": {"memory": settings.dav_memory_limit},
        },
        "securityContext": {
            "runAsUser": DAV_UID,
            "runAsGroup": DAV_UID,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": SECRETS_VOLUME, "mountPath": layout.SECRETS_DIR, "readOnly": True},
            {"name": "mail", "mountPath": DATA_DIR, "subPath": DATA_SUBPATH},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        ],
        "readinessProbe": {
            "tcpSocket": {"port": DAV_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
    }


def volumes(owner: Owner) -> list[dict[str, Any]]:
    """The passwd-file alone (not the TLS key, relay password or DKIM keys), and scratch."""
    return [
        {
            "name": SECRETS_VOLUME,
            "secret": {
                "secretName": naming.credentials_secret(owner.name),
                "defaultMode": PASSWD_MODE,
                "items": [
                    {"key": layout.PASSWD_KEY, "path": layout.PASSWD_KEY, "mode": PASSWD_MODE}
                ],
            },
        },
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}},
    ]
