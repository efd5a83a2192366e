"""Cluster effects of billing: the customer's namespace, quota, server, backup, removal.

Every write is idempotent. Objects whose content must never be regenerated
(the server, its first password, the final backup request) are created once
and left alone; objects billing owns (namespace labels, quota, role binding,
plan and suspension) are written by server-side apply.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.models.plan import MailPlanSpec

from . import naming as n
from .settings import Settings

JSON = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    name: str
    spec: MailPlanSpec


@dataclass(frozen=True)
class Signup:
    """What the customer asked for at checkout."""

    checkout_session: str
    customer: str
    subscription: str
    email: str
    domain: str
    mailbox: str  # local part of the first mailbox


class DomainTakenError(Exception):
    def __init__(self, domain: str) -> None:
        self.domain = domain
        super().__init__(
            f"The domain {domain} is already served by another customer. Choose another "
            "domain, or contact support if it is yours."
        )


def plans_by_price(kube: Kube) -> dict[str, Plan]:
    out: dict[str, Plan] = {}
    for obj in kube.list(API_VERSION, "MailPlan"):
        spec = MailPlanSpec.model_validate(obj.get("spec") or {})
        if spec.stripe_price_id:
            out[spec.stripe_price_id] = Plan(obj["metadata"]["name"], spec)
    return out


def get_plan(kube: Kube, name: str) -> Plan | None:
    obj = kube.get(API_VERSION, "MailPlan", None, name)
    if obj is None:
        return None
    return Plan(name, MailPlanSpec.model_validate(obj.get("spec") or {}))


def server_of(kube: Kube, subscription_id: str) -> JSON | None:
    return kube.get(
        API_VERSION, "PersonalMailServer", n.namespace_for(subscription_id), n.SERVER_NAME
    )


def servers_by_label(kube: Kube, selector: str) -> list[JSON]:
    return kube.list(API_VERSION, "PersonalMailServer", labels=selector)


def domain_user(kube: Kube, domain: str) -> str | None:
    """The namespace of a server that already serves `domain`, if any."""
    for obj in kube.list(API_VERSION, "PersonalMailServer"):
        if domain in ((obj.get("spec") or {}).get("domains") or []):
            return str(obj["metadata"]["namespace"])
    return None


def _retry_forbidden(call: Callable[[], T], seconds: float = 10.0) -> T:
    """Calls made through the role binding just created: RBAC caches need a moment."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ApiError as e:
            if e.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _apply_raw(kube: Kube, path: str, obj: JSON) -> JSON:
    return kube.request(
        "PATCH",
        path,
        body=obj,
        query={"fieldManager": kube.field_manager, "fieldValidation": "Strict", "force": "true"},
        content_type="application/apply-patch+yaml",
    )


def _create_once(kube: Kube, obj: JSON) -> bool:
    """Create `obj` unless it exists; True if this call created it."""
    try:
        kube.create(obj)
        return True
    except ApiError as e:
        if e.status == 409:
            return False
        raise


def link_labels(signup: Signup) -> dict[str, str]:
    return {
        n.LABEL_MANAGED_BY: n.MANAGED_BY,
        n.LABEL_CUSTOMER: n.label_value(signup.customer),
        n.LABEL_SUBSCRIPTION: n.label_value(signup.subscription),
        n.LABEL_CHECKOUT: n.label_value(n.digest(signup.checkout_session)),
    }


def link_annotations(signup: Signup) -> dict[str, str]:
    return {
        n.ANNOTATION_CUSTOMER: signup.customer,
        n.ANNOTATION_SUBSCRIPTION: signup.subscription,
        n.ANNOTATION_CHECKOUT: signup.checkout_session,
    }


def quota(plan: MailPlanSpec) -> dict[str, str]:
    """The namespace's ResourceQuota: the plan's server, with room for one backup or
    restore pod beside it."""
    hard: dict[str, str] = {
        "pods": "3",
        "persistentvolumeclaims": "2",
        "requests.storage": plan.storage,
        "services": "3",
        "services.loadbalancers": "1" if plan.features.dedicated_address else "0",
        "secrets": "50",
        "configmaps": "50",
    }
    for section in ("requests", "limits"):
        amounts = getattr(plan.resources, section).wire()
        for resource_name in ("cpu", "memory"):
            if resource_name in amounts:
                hard[f"{section}.{resource_name}"] = _double(str(amounts[resource_name]))
    return hard


def _double(quantity: str) -> str:
    digits = "".join(ch for ch in quantity if ch.isdigit() or ch == ".")
    unit = quantity[len(digits) :]
    value = float(digits) * 2
    return f"{value:g}{unit}"


def apply_quota(kube: Kube, namespace: str, plan: Plan) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": n.QUOTA_NAME,
            "namespace": namespace,
            "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY, "vpes.io/plan": plan.name},
        },
        "spec": {"hard": quota(plan.spec)},
    }
    path = f"/api/v1/namespaces/{namespace}/resourcequotas/{n.QUOTA_NAME}"
    _retry_forbidden(lambda: _apply_raw(kube, path, body))


def claim_domain(kube: Kube, settings: Settings, domain: str, subscription: str) -> None:
    """Atomically reserve `domain` for `subscription`; DomainTakenError if another has it."""
    owner = domain_user(kube, domain)
    if owner is not None and owner != n.namespace_for(subscription):
        raise DomainTakenError(domain)
    claim = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": n.domain_claim_name(domain),
            "namespace": settings.namespace,
            "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY, n.LABEL_KIND: "domain-claim"},
        },
        "data": {"domain": domain, "subscription": subscription},
    }
    if _create_once(kube, claim):
        return
    held = kube.get("v1", "ConfigMap", settings.namespace, n.domain_claim_name(domain))
    if held is not None and (held.get("data") or {}).get("subscription") != subscription:
        raise DomainTakenError(domain)


def release_domains(kube: Kube, settings: Settings, server: JSON) -> None:
    sub = (server["metadata"].get("annotations") or {}).get(n.ANNOTATION_SUBSCRIPTION)
    for domain in (server.get("spec") or {}).get("domains") or []:
        name = n.domain_claim_name(domain)
        held = kube.get("v1", "ConfigMap", settings.namespace, name)
        if held is not None and (held.get("data") or {}).get("subscription") == sub:
            kube.delete("v1", "ConfigMap", settings.namespace, name)


def provision(
    kube: Kube, settings: Settings, signup: Signup, plan: Plan, *, suspended: bool = False
) -> JSON:
    """The customer's namespace (labelled, with the plan's quota), the server, and its
    first mailbox with a password nobody knows until the customer sets one. A server
    whose subscription is not paid yet is created `suspended`, so it never runs before."""
    namespace = n.namespace_for(signup.subscription)
    labels = link_labels(signup)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {**labels, n.LABEL_TENANT: "true"},
                "annotations": link_annotations(signup),
            },
        }
    )
    # Billing works inside the namespace only through this binding (chart: billing-rbac).
    _apply_raw(
        kube,
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/"
        f"{n.TENANT_ROLE_BINDING}",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": n.TENANT_ROLE_BINDING,
                "namespace": namespace,
                "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": settings.tenant_cluster_role,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": settings.service_account,
                    "namespace": settings.namespace,
                }
            ],
        },
    )
    apply_quota(kube, namespace, plan)
    address = f"{signup.mailbox}@{signup.domain}"
    _retry_forbidden(
        lambda: _create_once(
            kube,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": n.FIRST_PASSWORD_SECRET,
                    "namespace": namespace,
                    "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY},
                },
                "type": "Opaque",
                "stringData": {"password": secrets.token_urlsafe(32)},
            },
        )
    )
    server = {
        "apiVersion": API_VERSION,
        "kind": "PersonalMailServer",
        "metadata": {
            "name": n.SERVER_NAME,
            "namespace": namespace,
            "labels": labels,
            "annotations": link_annotations(signup),
        },
        "spec": {
            "plan": plan.name,
            "suspended": suspended,
            "owner": {"email": signup.email},
            "domains": [signup.domain],
            "mailboxes": [
                {
                    "address": address,
                    "passwordSecretRef": {"name": n.FIRST_PASSWORD_SECRET, "key": "password"},
                }
            ],
        },
    }
    _retry_forbidden(lambda: _create_once(kube, server))
    found = server_of(kube, signup.subscription)
    if found is None:
        raise RuntimeError(f"server {namespace}/{n.SERVER_NAME} vanished after creation")
    return found


def apply_billing_state(
    kube: Kube, server: JSON, plan: str | None, suspended: bool, annotations: dict[str, str]
) -> None:
    """Plan, suspension and billing annotations, owned by billing's lifecycle manager."""
    meta = server["metadata"]
    spec: JSON = {"suspended": suspended}
    if plan:
        spec["plan"] = plan
    _retry_forbidden(
        lambda: kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "annotations": annotations,
                },
                "spec": spec,
            }
        )
    )


def request_final_backup(kube: Kube, server: JSON) -> bool:
    meta = server["metadata"]
    return _retry_forbidden(
        lambda: _create_once(
            kube,
            {
                "apiVersion": API_VERSION,
                "kind": "MailBackup",
                "metadata": {
                    "name": f"{meta['name']}-{n.FINAL_BACKUP_NAME}",
                    "namespace": meta["namespace"],
                    "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY},
                },
                "spec": {"server": meta["name"], "trigger": "Final"},
            },
        )
    )


def final_backup_phase(kube: Kube, server: JSON) -> str | None:
    """The final MailBackup's `status.phase` (None: not set yet, or no such backup)."""
    meta = server["metadata"]
    backup = _retry_forbidden(
        lambda: kube.get(
            API_VERSION, "MailBackup", meta["namespace"], f"{meta['name']}-{n.FINAL_BACKUP_NAME}"
        )
    )
    phase = ((backup or {}).get("status") or {}).get("phase")
    return str(phase) if phase else None


def namespace_terminating(kube: Kube, namespace: str) -> bool:
    obj = kube.get("v1", "Namespace", None, namespace)
    return obj is None or obj["metadata"].get("deletionTimestamp") is not None


def remove(kube: Kube, settings: Settings, server: JSON) -> None:
    """After the retention period and the final backup: the customer's namespace and
    everything in it (the backup's key and repository record live outside it)."""
    release_domains(kube, settings, server)
    kube.delete("v1", "Namespace", None, server["metadata"]["namespace"])
