"""What a signup and a subscription's life create: pure functions from (signup, plan,
settings) to Kubernetes objects, like the operator's `builders`. `tenant` applies them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.quantity import parse_quantity

from . import naming as n
from .settings import Settings

JSON = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    name: str
    spec: MailPlanSpec


@dataclass(frozen=True)
class Signup:
    """What the customer asked for at checkout."""

    customer: str
    subscription: str
    email: str
    domain: str
    mailbox: str  # local part of the first mailbox
    # n.signup_key_digest of the key the signup's browser holds (None: a Checkout
    # Session not made by this service's signup form). Never the Checkout Session id.
    signup_key: str | None = None

    @property
    def namespace(self) -> str:
        return n.namespace_for(self.subscription)


def link_labels(signup: Signup) -> dict[str, str]:
    return {
        n.LABEL_MANAGED_BY: n.MANAGED_BY,
        n.LABEL_CUSTOMER: n.label_value(signup.customer),
        n.LABEL_SUBSCRIPTION: n.label_value(signup.subscription),
    }


def link_annotations(signup: Signup) -> dict[str, str]:
    return {
        n.ANNOTATION_CUSTOMER: signup.customer,
        n.ANNOTATION_SUBSCRIPTION: signup.subscription,
    }


def _managed() -> dict[str, str]:
    return {n.LABEL_MANAGED_BY: n.MANAGED_BY}


def _meta(
    name: str,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> JSON:
    given = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}
    return {k: v for k, v in given.items() if v is not None}


def namespace(signup: Signup) -> JSON:
    """The customer's namespace, labelled and annotated with what links it to Stripe."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(
            signup.namespace,
            labels={**link_labels(signup), n.LABEL_TENANT: "true"},
            annotations=link_annotations(signup),
        ),
    }


def role_binding(namespace_name: str, settings: Settings) -> JSON:
    """Billing works inside the namespace only through this binding (chart: billing-rbac)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(n.TENANT_ROLE_BINDING, namespace_name, _managed()),
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


_SUFFIX = re.compile(r"(?:Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])$")


def _double(quantity: str) -> str:
    """Twice a quantity, computed exactly (Kubernetes' own parser) and written in the
    quantity's own suffix: "50m" → "100m", "1.5" → "3", "256Mi" → "512Mi",
    "0.75Gi" → "1.5Gi". Exponent forms ("1e3") come back as plain numbers ("2000").
    ValueError if `quantity` is not one (the API server validated it)."""
    doubled = parse_quantity(quantity) * 2
    suffix = _SUFFIX.search(quantity)
    unit = suffix.group(0) if suffix else ""
    amount = doubled / parse_quantity("1" + unit) if unit else doubled
    text = format(amount.normalize(), "f")
    return text + unit


def resource_quota(namespace_name: str, plan: Plan) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(n.QUOTA_NAME, namespace_name, {**_managed(), "vpes.io/plan": plan.name}),
        "spec": {"hard": quota(plan.spec)},
    }


def first_password(namespace_name: str, password: str) -> JSON:
    """The first mailbox's password, which nobody knows until the customer sets one."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(n.FIRST_PASSWORD_SECRET, namespace_name, _managed()),
        "type": "Opaque",
        "stringData": {"password": password},
    }


def server(signup: Signup, plan: Plan, *, suspended: bool) -> JSON:
    """The customer's PersonalMailServer: one domain, one mailbox; labelled with the
    signup key's hash, by which the return page finds it."""
    labels = link_labels(signup)
    if signup.signup_key:
        labels[n.LABEL_SIGNUP_KEY] = signup.signup_key
    return {
        "apiVersion": API_VERSION,
        "kind": "PersonalMailServer",
        "metadata": _meta(n.SERVER_NAME, signup.namespace, labels, link_annotations(signup)),
        "spec": {
            "plan": plan.name,
            "suspended": suspended,
            "owner": {"email": signup.email},
            "domains": [signup.domain],
            "mailboxes": [
                {
                    "address": f"{signup.mailbox}@{signup.domain}",
                    "passwordSecretRef": {"name": n.FIRST_PASSWORD_SECRET, "key": "password"},
                }
            ],
            # The one who signed up manages the server in the panel.
            "panel": {"admins": [f"{signup.mailbox}@{signup.domain}"]},
        },
    }


def domain_claim(settings: Settings, domain: str, subscription: str) -> JSON:
    """The ConfigMap whose creation reserves `domain` for `subscription` (atomically)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(
            n.domain_claim_name(domain),
            settings.namespace,
            {**_managed(), n.LABEL_KIND: "domain-claim"},
        ),
        "data": {"domain": domain, "subscription": subscription},
    }


def billing_state(
    server_meta: JSON, plan: str | None, suspended: bool, annotations: dict[str, str]
) -> JSON:
    """Plan, suspension and billing annotations: what billing owns of a server."""
    spec: JSON = {"suspended": suspended}
    if plan:
        spec["plan"] = plan
    return {
        "apiVersion": API_VERSION,
        "kind": "PersonalMailServer",
        "metadata": _meta(server_meta["name"], server_meta["namespace"], annotations=annotations),
        "spec": spec,
    }


def final_backup_name(server_meta: JSON) -> str:
    return f"{server_meta['name']}-{n.FINAL_BACKUP_NAME}"


def final_backup(server_meta: JSON) -> JSON:
    """The MailBackup taken before a cancelled customer's namespace is removed."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MailBackup",
        "metadata": _meta(final_backup_name(server_meta), server_meta["namespace"], _managed()),
        "spec": {"server": server_meta["name"], "trigger": "Final"},
    }
