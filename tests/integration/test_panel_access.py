"""What the operator makes in a customer's namespace for the panel, against the real
API server: the ServiceAccount the panel acts as, its two bindings, the login hashes
(each server its own key, withdrawn with the server), the panel's empty Secret; and
the CRD's refusal of a panel administrator who has no mailbox."""

from __future__ import annotations

import pytest
from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import ApiError

from . import panel_support
from .operator_support import server_body, wait_for
from .panel_support import PanelEnv

panel_env = panel_support.panel_env
RBAC = "rbac.authorization.k8s.io/v1"


def test_the_operator_gives_the_panel_its_way_into_the_namespace(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    admin = panel_env.admin
    sa = admin.get("v1", "ServiceAccount", t.namespace, "vpes-customer")
    assert sa is not None and sa.get("automountServiceAccountToken") is False
    customer = admin.get(RBAC, "RoleBinding", t.namespace, "vpes-customer")
    assert customer is not None
    assert customer["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "vpes-customer",
    }
    assert customer["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-customer", "namespace": t.namespace}
    ]
    panel = admin.get(RBAC, "RoleBinding", t.namespace, "vpes-panel")
    assert panel is not None and panel["roleRef"]["name"] == "vpes-panel-impersonate"
    assert panel["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-panel", "namespace": "vpes-system"}
    ]
    assert admin.get("v1", "Secret", t.namespace, "vpes-panel") is not None
    # The hashes the tenant checks, one per mailbox, each of its password.
    logins = panel_env.logins(t)
    assert set(logins) == set(t.passwords)
    for address, password in t.passwords.items():
        assert crypto.verify_password(password, logins[address])
        assert password not in logins[address]


def test_each_server_has_its_own_logins_key_withdrawn_with_it(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner",))
    spec = {
        "plan": panel_env.plan,
        "owner": {"email": "second@example.net"},
        "domains": [f"second.{t.domain}"],
        "mailboxes": [{"address": f"info@second.{t.domain}"}],
    }
    panel_env.admin.create(server_body("second", t.namespace, spec))
    second = panel_support.Tenant(t.namespace, f"second.{t.domain}", {}, server="second")
    wait_for(lambda: panel_env.logins(second) or None, "the second server's logins", 90)
    panel_env.admin.delete(API_VERSION, "PersonalMailServer", t.namespace, "second")
    wait_for(
        lambda: not panel_env.logins(second) or None, "the second server's logins withdrawn", 60
    )
    # The first server's key stayed.
    assert set(panel_env.logins(t)) == set(t.passwords)


def test_a_panel_administrator_must_be_a_mailbox(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner",))
    with pytest.raises(ApiError) as refused:
        panel_env.admin.request(
            "PATCH",
            panel_env.admin.resource(API_VERSION, "PersonalMailServer").path(t.namespace, t.server),
            body={"spec": {"panel": {"admins": [f"nobody@{t.domain}"]}}},
            content_type="application/merge-patch+json",
        )
    assert refused.value.status == 422
    assert "every panel administrator must be a mailbox of this server" in refused.value.body
    assert panel_env.server(t)["spec"]["panel"]["admins"] == [t.owner]
