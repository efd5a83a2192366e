"""The one-replica StatefulSet that runs a server's Postfix and Dovecot (and, on plans
with calendar and contacts, Radicale beside them: dav.py)."""

from __future__ import annotations

import copy
from typing import Any

from .. import naming
from ..models.plan import MailPlanSpec
from ..render import layout
from ..settings import OperatorSettings
from . import dav
from .meta import Owner, metadata

# The container that runs Postfix and Dovecot (a FleetUpgrade checks its image).
MAIL_CONTAINER = "mail"

# What root (vpes-init, Postfix's master, Dovecot's master and config) needs;
# every other capability is dropped, and the mail user's processes have none.
# Each was removed in turn: the images tier (tests/images) fails without it.
CAPABILITIES = [
    # vpes-init: the mail volume's group, the auth copy of passwd; Postfix's
    # post-install (run by `postfix check` at each start) hands the queue and
    # data directories to user postfix.
    "CHOWN",
    # post-install then searches those postfix-owned 0700 directories. Read
    # and search only: DAC_OVERRIDE (write anywhere) is not needed.
    "DAC_READ_SEARCH",
    # ... and chmods them after the chown (root no longer owns them).
    "FOWNER",
    # Dovecot's master stops idle processes running as other users
    # (default_idle_kill) with a signal; without it they pile up.
    "KILL",
    # Ports 25, 110, 143, 465, 587, 993, 995.
    "NET_BIND_SERVICE",
    # Both masters start their processes as vmail, postfix, dovecot, dovenull.
    "SETGID",
    "SETUID",
    # Dovecot's login and anvil processes chroot into empty directories.
    "SYS_CHROOT",
]


# The keys of the credentials Secret the tenant reads, each root-only (0400):
# the password hashes' store and the DKIM keys (the outbound relay signs) stay
# out of the pod.
SECRET_ITEMS: list[dict[str, Any]] = [
    {"key": key, "path": key, "mode": layout.SECRET_MODE} for key in layout.SECRET_FILES
]

# No fsGroup: with one, the kubelet gives every file of the Secret volume that
# group and adds group read to its mode (0400 becomes 0440), so the mail
# user's sessions could read the keys and hashes. vpes-init gives the mail
# volume's top directory to the vmail group instead.
POD_SECURITY_CONTEXT: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}


def _resources(plan: MailPlanSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in ("requests", "limits"):
        amounts = getattr(plan.resources, section).wire()
        if amounts:
            out[section] = amounts
    return out


def _container(plan: MailPlanSpec, settings: OperatorSettings, image: str) -> dict[str, Any]:
    """Postfix and Dovecot: read-only root, only the capabilities they need."""
    return {
        "name": MAIL_CONTAINER,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [
            *({"name": p.name, "containerPort": p.port, "protocol": "TCP"} for p in layout.PORTS),
            # The usage report: only the operator reaches it (network.py).
            {"name": layout.USAGE_PORT_NAME, "containerPort": layout.USAGE_PORT, "protocol": "TCP"},
        ],
        "resources": _resources(plan),
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"], "add": CAPABILITIES},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": layout.CONFIG_DIR, "readOnly": True},
            {"name": "secrets", "mountPath": layout.SECRETS_DIR, "readOnly": True},
            {"name": "mail", "mountPath": layout.MAIL_DIR},
            {"name": "run", "mountPath": layout.RUN_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir),
        ],
        "readinessProbe": {
            "tcpSocket": {"port": "smtp"},
            "periodSeconds": settings.tenant_readiness_period_seconds,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "imap"},
            "initialDelaySeconds": 30,
            "periodSeconds": 30,
            "failureThreshold": 4,
        },
    }


def _volumes(owner: Owner) -> list[dict[str, Any]]:
    """Configuration, secrets, the mail volume, and two small scratch directories."""
    return [
        {
            "name": "config",
            "configMap": {
                "name": naming.config_map(owner.name),
                "items": [
                    {"key": key, "path": path} for key, path in sorted(layout.CONFIG_FILES.items())
                ],
            },
        },
        {
            "name": "secrets",
            "secret": {
                "secretName": naming.credentials_secret(owner.name),
                "defaultMode": layout.SECRET_MODE,
                "items": copy.deepcopy(SECRET_ITEMS),
            },
        },
        {
            "name": "mail",
            "persistentVolumeClaim": {"claimName": naming.volume_claim(owner.name)},
        },
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]


def statefulset(
    owner: Owner,
    plan: MailPlanSpec,
    settings: OperatorSettings,
    *,
    suspended: bool,
    image: str | None = None,
) -> dict[str, Any]:
    """`image`: the server's own tenant image (a FleetUpgrade's); unset, the fleet's."""
    selector = naming.selector_labels(owner.name)
    pod_labels = naming.labels(owner.name, owner.plan)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [_container(plan, settings, image or settings.tenant_image)],
        "volumes": _volumes(owner),
    }
    if plan.features.calendar:
        pod_spec["containers"].append(dav.container(settings))
        pod_spec["volumes"] += dav.volumes(owner)
    if settings.tenant_node_selector:
        pod_spec["nodeSelector"] = dict(settings.tenant_node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(owner, naming.statefulset(owner.name)),
        "spec": {
            "replicas": 0 if suspended else 1,
            "serviceName": naming.service(owner.name),
            "podManagementPolicy": "OrderedReady",
            # Dovecot must never run twice on one volume: replace, never surge.
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
