"""Billing's security against the real control plane: its admission policy refuses every
write outside the namespaces it manages, knowing a Checkout Session id does not make one
the customer, and the real server logs no token, signup key or session id.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from vpes_billing import naming as n
from vpes_devcluster.billing_dev import (
    BillingOptions,
    start_billing,
    stop_billing,
)
from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import ApiError, Kube

from . import billing_support
from .billing_support import (
    TOKENS,
    Billing,
    Customer,
    secret_value,
    signed_up,
)
from .operator_support import SECRET_VALUES

# The service and the operator, shared with the other billing module.
operator = billing_support.operator
billing = billing_support.billing

# Starlette's test client warns that it will move to httpx2; the app is unaffected.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:starlette.testclient")


POLICY = "vpes-billing-scope"


def refused(call: Any, message: str) -> ApiError:
    """`call` is refused by the chart's admission policy (not just by RBAC), saying why."""
    with pytest.raises(ApiError) as info:
        call()
    e = info.value
    assert e.status in (403, 422), e
    assert POLICY in e.message and message in e.message, e.message
    return e


def create_binding(kube: Kube, body: dict[str, Any]) -> Any:
    ns = body["metadata"]["namespace"]
    return kube.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", body=body
    )


def tenant_binding(namespace: str, *, role: str = "vpes-billing-tenant") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"escalate-{secrets.token_hex(3)}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": "vpes-billing", "namespace": "vpes-system"}
        ],
    }


@pytest.mark.parametrize("target", ["kube-system", "vpes-system", "default", "test"])
def test_billing_cannot_bind_its_role_outside_its_namespaces(
    billing: Billing, namespace: str, target: str
) -> None:
    ns = namespace if target == "test" else target
    refused(
        lambda: create_binding(billing.sa, tenant_binding(ns)),
        "may write RoleBindings only inside the namespaces it manages",
    )
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
    bindings = billing.admin.request("GET", path)["items"]
    assert not [rb for rb in bindings if rb["metadata"]["name"].startswith("escalate-")]


def test_billing_cannot_bind_its_role_to_others_in_its_namespaces(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    body = tenant_binding(n.namespace_for(c.subscription))
    body["subjects"] = [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]
    refused(lambda: create_binding(b.sa, body), "only to its own ServiceAccount")


def test_billing_cannot_touch_a_namespace_it_does_not_manage(
    billing: Billing, namespace: str
) -> None:
    b = billing
    managed = {n.LABEL_MANAGED_BY: n.MANAGED_BY}
    refused(
        lambda: b.sa.patch_metadata("v1", "Namespace", None, namespace, {"labels": managed}),
        "may create or change only namespaces named",
    )
    refused(
        lambda: b.sa.delete("v1", "Namespace", None, namespace),
        "may change or delete only the namespaces it manages",
    )
    # Billing's own namespace (dry run: admission runs, nothing is deleted if it let it).
    refused(
        lambda: b.sa.request("DELETE", "/api/v1/namespaces/vpes-system", query={"dryRun": "All"}),
        "may change or delete only the namespaces it manages",
    )
    obj = b.admin.get("v1", "Namespace", None, namespace)
    assert obj is not None and obj["metadata"].get("deletionTimestamp") is None
    assert n.LABEL_MANAGED_BY not in (obj["metadata"].get("labels") or {})


def test_billing_cannot_take_over_a_namespace_with_its_prefix(billing: Billing) -> None:
    """Billing's prefix alone is not enough: the namespace must also be labelled as
    billing's, and billing may not add that label to one it did not create."""
    b = billing
    name = f"{n.NAMESPACE_PREFIX}{secrets.token_hex(8)}"
    b.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        refused(
            lambda: b.sa.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY}},
                }
            ),
            "may change or delete only the namespaces it manages",
        )
        refused(
            lambda: b.sa.delete("v1", "Namespace", None, name),
            "may change or delete only the namespaces it manages",
        )
        refused(
            lambda: create_binding(b.sa, tenant_binding(name)),
            "only inside the namespaces it manages",
        )
    finally:
        b.admin.delete("v1", "Namespace", None, name)


@pytest.mark.parametrize(
    "metadata",
    [
        {"name": f"other-{uuid.uuid4().hex[:8]}", "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY}},
        {"name": f"{n.NAMESPACE_PREFIX}{uuid.uuid4().hex[:16]}"},
    ],
)
def test_billing_creates_only_labelled_namespaces_with_its_prefix(
    billing: Billing, metadata: dict[str, Any]
) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
    refused(lambda: billing.sa.create(body), "may create or change only namespaces named")
    assert billing.admin.get("v1", "Namespace", None, metadata["name"]) is None


def test_billing_reads_no_secret_in_a_customer_namespace_but_its_own(billing: Billing) -> None:
    """A backup Job's Secret (its repository's S3 key and restic key) and the server's
    credentials live in the customer's namespace; billing may read, change or delete only
    the two Secrets it writes there."""
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    job_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "backup-0123456789ab-env", "namespace": ns},
        "stringData": {"AWS_SECRET_ACCESS_KEY": "a repository's own key"},
    }
    b.admin.apply(job_secret)
    own = {n.FIRST_PASSWORD_SECRET, n.PASSWORD_LINK_SECRET}
    others = {s["metadata"]["name"] for s in b.admin.list("v1", "Secret", ns)} - own
    assert "backup-0123456789ab-env" in others
    for name in sorted(others):
        with pytest.raises(ApiError) as info:
            b.sa.get("v1", "Secret", ns, name)
        assert info.value.status == 403, name
    for call in (
        lambda: b.sa.apply({**job_secret, "stringData": {"AWS_SECRET_ACCESS_KEY": "mine"}}),
        lambda: b.sa.delete("v1", "Secret", ns, "backup-0123456789ab-env"),
    ):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.status == 403
    assert secret_value(b.admin, ns, "backup-0123456789ab-env", "AWS_SECRET_ACCESS_KEY") == (
        "a repository's own key"
    )
    assert b.sa.get("v1", "Secret", ns, n.FIRST_PASSWORD_SECRET) is not None


def test_billing_cannot_unlabel_its_own_namespace(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    refused(
        lambda: b.sa.patch_metadata(
            "v1", "Namespace", None, ns, {"labels": {n.LABEL_MANAGED_BY: "someone-else"}}
        ),
        "may create or change only namespaces named",
    )


# -- the signup key, not the Checkout Session id, proves the customer -------------------


def readable_objects(b: Billing, c: Customer) -> list[dict[str, Any]]:
    """What billing writes of a signup, which other roles may read: the namespace, the
    server and the event records."""
    ns = n.namespace_for(c.subscription)
    objects = [
        b.admin.get("v1", "Namespace", None, ns),
        b.server(c.subscription),
        *b.admin.list("v1", "ConfigMap", b.service.settings.namespace),
    ]
    return [obj for obj in objects if obj is not None]


def test_the_checkout_session_id_alone_cannot_act_as_the_customer(billing: Billing) -> None:
    """Stripe's events and dashboard show the Checkout Session id (and earlier versions
    kept it in the server's annotations): knowing it must neither show the server's state
    nor get the link that sets the first mailbox's password."""
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    server = b.server(c.subscription)
    assert server is not None
    text = json.dumps(readable_objects(b, c))
    assert c.session not in text and c.key not in text
    stored = server["metadata"]["labels"][n.LABEL_SIGNUP_KEY]

    # Whoever knows the session id, or the stored hash, is not the customer.
    for guess in (c.session, stored):
        for name in ("session_id", "key"):
            assert b.client.get(f"/signup/status?{name}={guess}").status_code == 404
            assert b.client.get(f"/signup/return?{name}={guess}").status_code == 404
            r = b.client.post("/signup/password-link", data={name: guess})
            assert r.status_code == 404, r.text
    # A well-formed key that is not this signup's finds nothing either.
    for other in (n.new_signup_key(), stored[:43]):
        assert b.client.get(f"/signup/status?key={other}").json()["state"] == "waiting"
        assert b.client.post("/signup/password-link", data={"key": other}).status_code == 409
    assert b.admin.get("v1", "Secret", ns, n.PASSWORD_LINK_SECRET) is None

    # The customer's key does both, and the link sets the password.
    state = b.client.get(f"/signup/status?key={c.key}").json()
    assert state["state"] == "server" and state["namespace"] == ns
    r = b.client.post("/signup/password-link", data={"key": c.key})
    assert r.status_code == 303, r.text
    token = r.headers["location"].removeprefix("/password/")
    TOKENS.add(token)
    pw = "a password only the customer knows"
    SECRET_VALUES.add(pw)
    r = b.client.post(f"/password/{token}", data={"password": pw, "confirm": pw})
    assert r.status_code == 200, r.text
    assert crypto.verify_password(
        pw, secret_value(b.admin, ns, n.FIRST_PASSWORD_SECRET, "password")
    )


def test_the_session_id_earlier_versions_wrote_is_removed(billing: Billing) -> None:
    """A server made by an earlier version carries the session id in plain (annotation)
    and hashed (label), on it and on its namespace: billing's next look at the
    subscription removes both."""
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    legacy = {
        "labels": {n.LEGACY_LABEL_CHECKOUT: n.digest(c.session)},
        "annotations": {n.LEGACY_ANNOTATION_CHECKOUT: c.session},
    }
    b.admin.patch_metadata(API_VERSION, "PersonalMailServer", ns, n.SERVER_NAME, legacy)
    b.admin.patch_metadata("v1", "Namespace", None, ns, legacy)
    assert c.session in json.dumps(b.server(c.subscription))
    r = b.deliver(c.invoice_event("invoice.paid"))
    assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
    for obj in (b.server(c.subscription), b.admin.get("v1", "Namespace", None, ns)):
        assert obj is not None
        meta = obj["metadata"]
        assert n.LEGACY_ANNOTATION_CHECKOUT not in (meta.get("annotations") or {})
        assert n.LEGACY_LABEL_CHECKOUT not in (meta.get("labels") or {})
        assert c.session not in json.dumps(obj)
    assert n.LABEL_SIGNUP_KEY in b.server(c.subscription)["metadata"]["labels"]  # type: ignore[index]


# -- the real server --------------------------------------------------------------


def test_real_server_provisions_and_logs_no_token_or_session_id(
    billing: Billing, tmp_path: Path
) -> None:
    """`billing_dev.start_billing` (what `make demo` needs): stripe-mock and
    `python -m vpes_billing` (uvicorn with its access log) against billing's
    kubeconfig. A signed checkout makes a server; the pages that carry the one-time
    token and the signup key are visited; neither appears in the server's output."""
    b, c = billing, Customer.new()
    workdir = tmp_path / "billing"
    dev = start_billing(
        b.kubeconfig,
        workdir,
        BillingOptions(
            price=b.price_a,
            customer=c.customer,
            settings_env={"VPES_BILLING_SWEEP_SECONDS": "0"},
            detach=True,  # as the demo runs it: stopped later from its pid files
        ),
    )
    try:
        assert dev.webhook_secret.startswith("whsec_test_")
        status, body = dev.deliver(c.checkout(b.plan_a))
        assert status == 200 and body["outcome"] == "done", body
        assert b.server(c.subscription) is not None
        with httpx.Client(base_url=dev.url, follow_redirects=False, timeout=60) as client:
            r = client.post("/signup/password-link", data={"key": c.key})
            assert r.status_code == 303, r.text
            token = r.headers["location"].removeprefix("/password/")
            TOKENS.add(token)
            assert client.get(f"/password/{token}").status_code == 200
            assert client.get(f"/signup/return?key={c.key}").status_code == 200
            assert client.get(f"/signup/status?key={c.key}").status_code == 200
    finally:
        stop_billing(workdir)
        assert dev.stripe.proc is not None
        assert dev.proc.wait(timeout=15) is not None
        assert dev.stripe.proc.wait(timeout=15) is not None
        dev.stop()  # nothing left to stop: a no-op
    assert not (workdir / "billing.pid").exists()
    text = dev.log.read_text()
    assert '"POST /stripe/webhook HTTP/1.1" 200' in text, "no access log: proves nothing"
    assert "/password/[redacted]" in text and "key=[redacted]" in text
    assert c.key not in text
    assert token.split(".")[1] not in text
    assert c.session not in text and c.session.removeprefix("cs_test_") not in text
    assert dev.webhook_secret not in text and "sk_test" not in text
