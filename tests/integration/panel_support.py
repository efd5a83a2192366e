"""What the panel's integration tests share: the operator and the panel as the chart
runs them, and customers to log in as.

`panel_env` (module scope) installs the platform (CRDs, the operator's RBAC), runs
the operator as its ServiceAccount (it makes each namespace's `vpes-customer`
ServiceAccount, its bindings and the `vpes-logins` hashes), installs the panel's
chart RBAC, and serves the real panel app on loopback with a client of the
panel's own ServiceAccount: every customer read and write is impersonated, so
the tests exercise the API server's own tenant boundary. `env.customer(...)`
makes a namespace with a server whose mailboxes have the given passwords (set
the way a fleet admin would: plaintext in a Secret the operator hashes), and
waits until they can log in. Everything the panel logged is searched at the end
for every password the tests used.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import install_rbac
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_panel.app import build_app
from vpes_panel.customer import user_key
from vpes_panel.settings import LOGINS_SECRET, Settings

from tests import panel_web

from .operator_support import (
    OperatorProcess,
    harvest_secrets,
    install_platform,
    plan_body,
    server_body,
    wait_for,
)

PANEL_NAMESPACE = "vpes-system"
PANEL_SA = "vpes-panel"
PANEL_RBAC = "templates/panel-rbac.yaml"
# How the chart configures the operator for the panel (charts/vpes operator config).
OPERATOR_PANEL_ENV = {
    "VPES_PANEL_SERVICE_ACCOUNT": PANEL_SA,
    "VPES_PANEL_NAMESPACE": PANEL_NAMESPACE,
    "VPES_CUSTOMER_CLUSTER_ROLE": "vpes-customer",
    "VPES_PANEL_IMPERSONATE_CLUSTER_ROLE": "vpes-panel-impersonate",
}
SERVER = "mail"
PASSWORDS: set[str] = set()  # every password the tests typed: never in a log


def strong_password() -> str:
    words = ["amber", "violet", "canyon", "tractor", "omelette", "quartz", "harbor", "lintel"]
    picked = [secrets.choice(words) for _ in range(3)]
    value = "-".join(picked) + "-" + secrets.token_hex(3)
    PASSWORDS.add(value)
    return value


@dataclass
class Tenant:
    namespace: str
    domain: str
    passwords: dict[str, str]
    server: str = SERVER

    @property
    def owner(self) -> str:
        return next(iter(self.passwords))


@dataclass
class PanelEnv:
    url: str
    admin: Kube
    sa: Kube  # the panel's own ServiceAccount
    plan: str
    settings: Settings
    tenants: list[Tenant] = field(default_factory=list)
    logged_in: bool = False  # whether the log check at the end has something to search

    def server(self, t: Tenant) -> dict[str, Any]:
        obj = self.admin.get(API_VERSION, "PersonalMailServer", t.namespace, t.server)
        assert obj is not None
        return obj

    def login(self, address: str, password: str) -> httpx.Client:
        self.logged_in = True
        return panel_web.login(self.url, address, password)

    def logins(self, t: Tenant) -> dict[str, str]:
        obj = self.admin.get("v1", "Secret", t.namespace, LOGINS_SECRET) or {}
        raw = (obj.get("data") or {}).get(f"{t.server}.json")
        return json.loads(base64.b64decode(raw)) if raw else {}

    def customer(
        self,
        locals_: tuple[str, ...] = ("owner", "user"),
        *,
        admins: tuple[str, ...] = ("owner",),
        extra: dict[str, Any] | None = None,
    ) -> Tenant:
        """A namespace with one server: mailboxes `locals_`@<its domain>, the first ones
        in `admins` managing the server; returns once every mailbox can log in."""
        tag = uuid.uuid4().hex[:8]
        t = Tenant(f"pc-{tag}", f"p{tag}.example", {})
        t.passwords = {f"{m}@{t.domain}": strong_password() for m in locals_}
        self.admin.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.namespace}}
        )
        self.admin.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "passwords", "namespace": t.namespace},
                "stringData": {user_key(a): p for a, p in t.passwords.items()},
            }
        )
        spec: dict[str, Any] = {
            "plan": self.plan,
            "owner": {"email": f"owner-{tag}@example.net"},
            "domains": [t.domain],
            "mailboxes": [
                {"address": a, "passwordSecretRef": {"name": "passwords", "key": user_key(a)}}
                for a in t.passwords
            ],
            "panel": {"admins": [f"{m}@{t.domain}" for m in admins]},
            **(extra or {}),
        }
        self.admin.create(server_body(t.server, t.namespace, spec))
        wait_for(
            lambda: set(self.logins(t)) == set(t.passwords) or None,
            f"the hashes of {t.namespace}'s mailboxes in {LOGINS_SECRET}",
            90,
        )
        wait_for(
            lambda: self.admin.get(
                "rbac.authorization.k8s.io/v1", "RoleBinding", t.namespace, "vpes-panel"
            ),
            f"the panel's binding in {t.namespace}",
            60,
        )
        self.tenants.append(t)
        return t


@pytest.fixture(scope="module")
def panel_env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelEnv]:
    admin = Kube(cluster.api_client(), field_manager="tests")
    op = OperatorProcess(
        install_platform(cluster),
        tmp_path_factory.mktemp("panel-operator"),
        extra_env=OPERATOR_PANEL_ENV,
    )
    op.start()
    kubeconfig = install_rbac(cluster, PANEL_NAMESPACE, PANEL_RBAC, PANEL_SA, "panel")
    sa = Kube(api_client(kubeconfig), field_manager="vpes-panel")
    plan = f"panel-{uuid.uuid4().hex[:6]}"
    admin.apply(plan_body(plan, displayName="Panel test", maxDomains=2, maxMailboxes=4))
    port = panel_web.free_port()
    settings = Settings(
        public_url=f"http://127.0.0.1:{port}",
        session_key=secrets.token_bytes(32).hex().encode(),
        bcrypt_rounds=4,
        directory_seconds=0.0,
        login_burst=20,
    )
    served = panel_web.Served(build_app(settings, sa), port)
    log_path = Path(tmp_path_factory.mktemp("panel-log")) / "panel.log"
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(n) for n in ("vpes", "uvicorn", "uvicorn.access")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    served.start()
    env = PanelEnv(served.url, admin, sa, plan, settings)
    try:
        yield env
    finally:
        served.stop()
        op.stop()
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()
        for t in env.tenants:
            harvest_secrets(admin, t.namespace)
            admin.delete("v1", "Namespace", None, t.namespace)
        admin.delete(API_VERSION, "MailPlan", None, plan)
    text = log_path.read_text()
    if env.logged_in:
        assert "GET /login" in text, "the panel log check would prove nothing"
    for value in PASSWORDS:
        assert value not in text, f"a password ({value[:4]}...) is in the panel's log"
