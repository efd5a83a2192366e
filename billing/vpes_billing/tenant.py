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
from typing import Any, TypeVar

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.models.plan import MailPlanSpec

from . import builders as build
from . import naming as n
from .builders import Plan, Signup
from .settings import Settings

JSON = dict[str, Any]
T = TypeVar("T")


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


def _create_once(kube: Kube, obj: JSON) -> bool:
    """Create `obj` unless it exists; True if this call created it."""
    try:
        kube.create(obj)
        return True
    except ApiError as e:
        if e.status == 409:
            return False
        raise


def apply_quota(kube: Kube, namespace: str, plan: Plan) -> None:
    quota = build.resource_quota(namespace, plan)
    _retry_forbidden(lambda: kube.apply(quota))


def claim_domain(kube: Kube, settings: Settings, domain: str, subscription: str) -> None:
    """Atomically reserve `domain` for `subscription`; DomainTakenError if another has it."""
    owner = domain_user(kube, domain)
    if owner is not None and owner != n.namespace_for(subscription):
        raise DomainTakenError(domain)
    claim = build.domain_claim(settings, domain, subscription)
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
    namespace = signup.namespace
    kube.apply(build.namespace(signup))
    kube.apply(build.role_binding(namespace, settings))
    apply_quota(kube, namespace, plan)
    secret = build.first_password(namespace, secrets.token_urlsafe(32))
    _retry_forbidden(lambda: _create_once(kube, secret))
    server = build.server(signup, plan, suspended=suspended)
    _retry_forbidden(lambda: _create_once(kube, server))
    found = server_of(kube, signup.subscription)
    if found is None:
        raise RuntimeError(f"server {namespace}/{n.SERVER_NAME} vanished after creation")
    return found


def apply_billing_state(
    kube: Kube, server: JSON, plan: str | None, suspended: bool, annotations: dict[str, str]
) -> None:
    """Plan, suspension and billing annotations, owned by billing's lifecycle manager."""
    state = build.billing_state(server["metadata"], plan, suspended, annotations)
    _retry_forbidden(lambda: kube.apply(state))


def forget_checkout_session(kube: Kube, server: JSON) -> bool:
    """Remove the Checkout Session id (and its hash) that earlier versions wrote on the
    server and its namespace, where other readers saw it; True if there was one."""
    meta = server["metadata"]
    if n.LEGACY_ANNOTATION_CHECKOUT not in (
        meta.get("annotations") or {}
    ) and n.LEGACY_LABEL_CHECKOUT not in (meta.get("labels") or {}):
        return False
    patch: JSON = {
        "labels": {n.LEGACY_LABEL_CHECKOUT: None},
        "annotations": {n.LEGACY_ANNOTATION_CHECKOUT: None},
    }
    namespace, name = meta["namespace"], meta["name"]
    _retry_forbidden(
        lambda: kube.patch_metadata(API_VERSION, "PersonalMailServer", namespace, name, patch)
    )
    kube.patch_metadata("v1", "Namespace", None, namespace, patch)
    return True


def request_final_backup(kube: Kube, server: JSON) -> bool:
    backup = build.final_backup(server["metadata"])
    return _retry_forbidden(lambda: _create_once(kube, backup))


def final_backup_phase(kube: Kube, server: JSON) -> str | None:
    """The final MailBackup's `status.phase` (None: not set yet, or no such backup)."""
    meta = server["metadata"]
    name = build.final_backup_name(meta)
    backup = _retry_forbidden(lambda: kube.get(API_VERSION, "MailBackup", meta["namespace"], name))
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
