"""The one-replica StatefulSet that runs a server's Postfix and Dovecot."""

from __future__ import annotations

from typing import Any

from .. import naming
from ..models.plan import MailPlanSpec
from ..render import layout
from ..settings import OperatorSettings
from .meta import Owner, metadata

# Capabilities Postfix's master and Dovecot need to bind low ports, drop to
# their own users and (Dovecot's login and anvil processes) chroot into an
# empty directory; everything else is dropped.
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
    "SYS_CHROOT",
]


def _resources(plan: MailPlanSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in ("requests", "limits"):
        amounts = getattr(plan.resources, section).wire()
        if amounts:
            out[section] = amounts
    return out


def _container(plan: MailPlanSpec, settings: OperatorSettings) -> dict[str, Any]:
    """Postfix and Dovecot: read-only root, only the capabilities they need."""
    return {
        "name": "mail",
        "image": settings.tenant_image,
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [
            {"name": p.name, "containerPort": p.port, "protocol": "TCP"} for p in layout.PORTS
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
            "periodSeconds": 10,
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
                "defaultMode": 0o440,
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
    owner: Owner, plan: MailPlanSpec, settings: OperatorSettings, *, suspended: bool
) -> dict[str, Any]:
    selector = naming.selector_labels(owner.name)
    pod_labels = naming.labels(owner.name, owner.plan)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "seccompProfile": {"type": "RuntimeDefault"},
            "fsGroup": layout.VMAIL_GID,
            "fsGroupChangePolicy": "OnRootMismatch",
        },
        "containers": [_container(plan, settings)],
        "volumes": _volumes(owner),
    }
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
