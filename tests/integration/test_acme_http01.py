"""HTTP-01 end to end: the operator's ACME client against a real CA (Pebble), the answers
served by vpes-web under uvicorn, both with the chart's ServiceAccounts on the real API
server.

The solver writes the key authorizations into the ConfigMap vpes-system/vpes-acme-http01
as the operator's account (its RBAC and its admission policy, operator-scope); vpes-web
watches that one ConfigMap as its own account (get/list/watch by name only) and serves
/.well-known/acme-challenge/<token>. Pebble resolves each name at the tests' Knot server
(an A record to 127.0.0.1) and fetches the answer from vpes-web's port.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import (
    OPERATOR_NAMESPACE,
    install_crds,
    install_platform,
    install_rbac,
)
from vpes_operator.certs import account
from vpes_operator.certs.errors import ChallengeFailedError
from vpes_operator.certs.http01 import Http01Solver, http_fetch
from vpes_operator.certs.issuer import AcmeIssuer, IssuerConfig
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.models.conditions import Reason
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown.acme import watch_answers
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.hosted import watch_hosted
from vpes_panel.wellknown.settings import WebSettings

from tests.unit.dav_support import closed_port, served

from .acme_support import PebbleServer
from .dns_support import ZONE, KnotServer
from .operator_support import wait_for

pytestmark = pytest.mark.integration

CONFIGMAP = "vpes-acme-http01"  # what the chart names it for the release "vpes"
LOOPBACK = "127.0.0.1"
WEB_SERVICE = "vpes-web"


@dataclass
class Env:
    admin: Kube
    operator: Kube  # the chart's operator ServiceAccount
    web: Kube  # the chart's vpes-web ServiceAccount
    web_port: int
    knot: KnotServer
    pebble: PebbleServer

    def settings(self, check_url: str = "") -> OperatorSettings:
        """As the chart sets them (`check_url` empty: vpes-web's pods are asked)."""
        return OperatorSettings(
            operator_namespace=OPERATOR_NAMESPACE,
            acme_http01_configmap=CONFIGMAP,
            acme_http01_check_url=check_url,
            web_service_name=WEB_SERVICE,
        )

    def issuer(self, solver: Http01Solver, answer_timeout: float = 15) -> AcmeIssuer:
        config = IssuerConfig(
            self.pebble.directory_url,
            ca_bundle=str(self.pebble.ca_bundle),
            order_timeout=60,
            answer_timeout=answer_timeout,
            network_timeout=10,
        )
        return AcmeIssuer(config, account.parse(account.new_key_pem(), "a test key"), [solver])

    def answers(self) -> dict[str, str]:
        found = self.admin.get("v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP) or {}
        return dict(found.get("data") or {})


def kube_for(kubeconfig: Path, manager: str) -> Kube:
    return Kube(api_client(kubeconfig), field_manager=manager)


def operator_confined(operator: Kube, admin: Kube) -> None:
    """Wait until the operator-scope admission policy is loaded: another ConfigMap in the
    operator's namespace is refused."""

    def refused() -> bool:
        name = f"x-{uuid.uuid4().hex[:6]}"
        try:
            operator.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
                }
            )
        except ApiError as e:
            return e.status == 403
        admin.delete("v1", "ConfigMap", OPERATOR_NAMESPACE, name)
        return False

    wait_for(refused, "the operator's admission policy to be active", timeout=30)


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    install_crds(cluster)
    admin = Kube(cluster.api_client(), field_manager="tests")
    operator = kube_for(install_platform(cluster), "vpes-operator")
    web = kube_for(
        install_rbac(cluster, OPERATOR_NAMESPACE, "templates/web-rbac.yaml", "vpes-web", "web"),
        "vpes-web",
    )
    operator_confined(operator, admin)
    admin.delete("v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP)  # the solver makes it
    stop = threading.Event()
    knot = KnotServer(tmp_path_factory.mktemp("knot"))
    knot.start()
    try:
        mail = OperatorSettings(acme_http01_configmap=CONFIGMAP)
        answers = watch_answers(web, OPERATOR_NAMESPACE, CONFIGMAP, stop, backoff=(0.2, 1.0))
        hosted = watch_hosted(web, stop)
        app = build_app(WebSettings(mail=mail), hosted, acme=answers)
        with served(app) as port:
            pebble = PebbleServer(tmp_path_factory.mktemp("pebble"), knot.address, http_port=port)
            pebble.start()
            try:
                yield Env(admin, operator, web, port, knot, pebble)
            finally:
                pebble.stop()
    finally:
        stop.set()
        knot.stop()


def name_at_loopback(env: Env, label: str) -> str:
    """A fresh name in the Knot zone whose A record is 127.0.0.1 (vpes-web's address)."""
    name = f"{label}-{uuid.uuid4().hex[:8]}.{ZONE}"
    env.knot.update(ZONE, "add", name, 60, "A", LOOPBACK)
    return name


def test_http01_issues_a_certificate_served_by_vpes_web_and_removes_the_answers(
    env: Env,
) -> None:
    names = [name_at_loopback(env, "mail"), name_at_loopback(env, "mta-sts")]
    solver = Http01Solver(
        env.operator, env.settings(f"http://{LOOPBACK}:{env.web_port}"), poll_interval=0.2
    )
    got = env.issuer(solver).issue(names)

    chain = x509.load_pem_x509_certificates(got.chain_pem.encode())
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    store = Store([env.pebble.root()])
    for name in names:
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        assert verifier.verify(chain[0], chain[1:])[-1].subject == env.pebble.root().subject
    # The solver made the ConfigMap (none was there), and took its tokens away again.
    made = env.admin.get("v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP)
    assert made is not None
    assert made["metadata"]["labels"]["vpes.io/component"] == "acme-http01"
    assert env.answers() == {}


def test_vpes_web_not_serving_fails_the_challenge_before_the_ca_is_told_and_cleans_up(
    env: Env,
) -> None:
    # Another order's answer is in the ConfigMap meanwhile: it must stay.
    other = {"anotherOrdersToken": "anotherOrdersToken.thumbprint"}
    env.admin.merge_patch("v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP, {"data": other})
    name = name_at_loopback(env, "down")
    published: list[dict[str, str]] = []

    def fetch(url: str, host: str) -> tuple[int, str]:
        published.append(env.answers())  # what the CA would be asked about, as it stands
        return http_fetch(url, host)

    down = f"http://{LOOPBACK}:{closed_port()}"
    solver = Http01Solver(env.operator, env.settings(down), fetch=fetch, poll_interval=0.2)
    with pytest.raises(ChallengeFailedError) as caught:
        env.issuer(solver, answer_timeout=2).issue([name])
    err = caught.value
    assert err.reason == Reason.CHALLENGE_FAILED
    assert err.message.startswith(
        f"http-01: vpes-web at {down} still does not serve the answer for {name} "
        f"(no answer: ConnectionError at {down}) 2 s after it was put in the ConfigMap "
        f"{OPERATOR_NAMESPACE}/{CONFIGMAP}"
    )
    # While it waited, its token was published beside the other order's...
    assert published
    assert len(published[0]) == 2 and other.items() <= published[0].items()
    # ...and afterwards only the other order's is left.
    assert env.answers() == other
    env.admin.merge_patch(
        "v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP, {"data": dict.fromkeys(other)}
    )


def test_a_name_the_ca_cannot_resolve_fails_with_the_cas_detail_though_vpes_web_serves_it(
    env: Env,
) -> None:
    nowhere = f"nowhere-{uuid.uuid4().hex[:8]}.{ZONE}"  # no A record: vpes-web is asked by IP
    solver = Http01Solver(
        env.operator, env.settings(f"http://{LOOPBACK}:{env.web_port}"), poll_interval=0.2
    )
    with pytest.raises(ChallengeFailedError) as caught:
        env.issuer(solver).issue([nowhere])
    message = caught.value.message
    assert message.startswith(
        f"http-01 for {nowhere}: the CA {env.pebble.directory_url} could not validate ("
    )
    assert f"http://{nowhere}:{env.web_port}/.well-known/acme-challenge/" in message  # Pebble's
    assert env.answers() == {}


# The API server refuses loopback addresses in an EndpointSlice: the pods are listed at
# addresses of TEST-NET-1 (RFC 5737), and the solver's requests to them go to loopback,
# at the same port (where vpes-web listens, or nothing does).
POD_ADDRESS = "192.0.2.10"


def to_loopback(url: str, host: str) -> tuple[int, str]:
    return http_fetch(url.replace(f"http://{POD_ADDRESS}:", f"http://{LOOPBACK}:"), host)


def endpoint_slice(name: str, port: int) -> dict[str, Any]:
    """One vpes-web pod, as the endpoint-slice controller would list it for its Service."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": OPERATOR_NAMESPACE,
            "labels": {"kubernetes.io/service-name": WEB_SERVICE},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [POD_ADDRESS], "conditions": {"ready": True}}],
    }


def test_each_ready_vpes_web_pod_must_serve_before_the_ca_is_told(env: Env) -> None:
    tag = uuid.uuid4().hex[:6]
    serving, dead = f"web-{tag}-a", f"web-{tag}-b"
    dead_port = closed_port()
    env.admin.create(endpoint_slice(serving, env.web_port))
    env.admin.create(endpoint_slice(dead, dead_port))
    try:
        solver = Http01Solver(env.operator, env.settings(), fetch=to_loopback, poll_interval=0.2)
        name = name_at_loopback(env, "pods")
        with pytest.raises(ChallengeFailedError) as caught:
            env.issuer(solver, answer_timeout=2).issue([name])
        assert caught.value.message.startswith(
            f"http-01: vpes-web (each ready pod of the Service {OPERATOR_NAMESPACE}/"
            f"{WEB_SERVICE}) still does not serve the answer for {name} (no answer: "
            f"ConnectionError at http://{POD_ADDRESS}:{dead_port}) 2 s after"
        )
        assert env.answers() == {}
        # The pod that did not answer is gone: the one left serves, the CA validates.
        env.admin.delete("discovery.k8s.io/v1", "EndpointSlice", OPERATOR_NAMESPACE, dead)
        got = env.issuer(solver).issue([name])
        assert "BEGIN CERTIFICATE" in got.chain_pem
    finally:
        for slice_name in (serving, dead):
            env.admin.delete("discovery.k8s.io/v1", "EndpointSlice", OPERATOR_NAMESPACE, slice_name)


def test_vpes_webs_account_reads_that_configmap_only(env: Env) -> None:
    other = f"x-{uuid.uuid4().hex[:6]}"
    env.admin.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": other, "namespace": OPERATOR_NAMESPACE},
        }
    )
    try:
        assert env.web.get("v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP) is not None
        one = env.web.list(
            "v1", "ConfigMap", OPERATOR_NAMESPACE, fields=f"metadata.name={CONFIGMAP}"
        )
        assert [c["metadata"]["name"] for c in one] == [CONFIGMAP]
        for call in (
            lambda: env.web.get("v1", "ConfigMap", OPERATOR_NAMESPACE, other),
            lambda: env.web.list("v1", "ConfigMap", OPERATOR_NAMESPACE),
            lambda: env.web.merge_patch(
                "v1", "ConfigMap", OPERATOR_NAMESPACE, CONFIGMAP, {"data": {"t": "t.x"}}
            ),
        ):
            with pytest.raises(ApiError) as caught:
                call()
            assert caught.value.status == 403
    finally:
        env.admin.delete("v1", "ConfigMap", OPERATOR_NAMESPACE, other)
