"""Deterministic names and labels of everything the operator creates."""

from __future__ import annotations

PREFIX = "vpes.io"
# kopf's own bookkeeping (progress, diff base) lives under a prefix of its own:
# kopf ignores every annotation under the prefix it manages, and ours
# (e.g. the plan revision) must trigger reconciles.
KOPF_PREFIX = f"kopf.{PREFIX}"
FINALIZER = f"{PREFIX}/cleanup"
MANAGED_BY = "vpes-operator"

LABEL_SERVER = f"{PREFIX}/server"
LABEL_PLAN = f"{PREFIX}/plan"
LABEL_COMPONENT = f"{PREFIX}/component"
ANNOTATION_PLAN_REVISION = f"{PREFIX}/plan-revision"
# On a server: the MailRestore that holds it stopped while its volume is restored.
ANNOTATION_RESTORE = f"{PREFIX}/restoring"
# Written (any new value) after a password Secret a mailbox names changed: the
# operator reads Secrets only by name and watches none, so this change of the
# server is what makes it reconcile and hash (or take) the new password. The
# panel writes it with every password it sets; kubectl users write it too.
ANNOTATION_PASSWORDS_CHANGED = f"{PREFIX}/passwords-changed"

# On a server: the tenant image it runs, set by a FleetUpgrade (unset: the fleet's
# default, settings.tenant_image); the workload builder reads it.
ANNOTATION_TENANT_IMAGE = f"{PREFIX}/tenant-image"
# On a server: the FleetUpgrade moving it; another upgrade leaves it alone.
ANNOTATION_UPGRADE = f"{PREFIX}/upgrade"

TENANT_APP = "vpes-tenant"


def statefulset(server: str) -> str:
    return server


def service(server: str) -> str:
    return server


def public_service(server: str) -> str:
    return f"{server}-public"


def config_map(server: str) -> str:
    return f"{server}-config"


def credentials_secret(server: str) -> str:
    return f"{server}-credentials"


def initial_passwords_secret(server: str) -> str:
    return f"{server}-initial-passwords"


def volume_claim(server: str) -> str:
    return f"{server}-mail"


def network_policy(server: str) -> str:
    return f"{server}-isolation"


def selector_labels(server: str) -> dict[str, str]:
    """Labels that pick out one server's pod; immutable once a StatefulSet exists."""
    return {"app.kubernetes.io/name": TENANT_APP, LABEL_SERVER: server}


def pod_selector(server: str) -> str:
    """The server's pod as a label selector query (`k=v,k=v`)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(server).items())


def labels(server: str, plan: str) -> dict[str, str]:
    """Labels on every child object of a server."""
    return {
        **selector_labels(server),
        "app.kubernetes.io/instance": server,
        "app.kubernetes.io/part-of": "vpes",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_PLAN: plan,
    }
