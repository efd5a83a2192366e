"""An antispam FleetUpgrade against the real API server, as the chart's operator
ServiceAccount (its Role and the operator-scope admission policy): the schema refuses an
upgrade of both or neither; the controller makes the canary (a copy of the chart's own
antispam Deployment) and, when its gate never passes, removes it and leaves the live
rules alone; the policy admits only that canary and only the rules annotation on the
antispam Deployment.

No pod runs in this tier (kwok's nodes only pretend to): the canary's gate cannot pass, which is the
rollback path. The passing path runs on the real node (tests/e2e/test_edge.py).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.fleet import antispam, antispam_controller
from vpes_operator.models.fleet import FleetUpgrade
from vpes_operator.settings import OperatorSettings

from .helm_template import NAMESPACE, one, render
from .operator_support import install_platform, wait_for
from .test_fleet import get_row

pytestmark = pytest.mark.integration
LIVE = "vpes-antispam"
CANARY = f"{LIVE}-canary"
T0 = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
RULES = {"multimap.conf": "WORD { type = header; }\n"}
SETTINGS = OperatorSettings(operator_namespace=NAMESPACE, antispam_deployment=LIVE)


@pytest.fixture(scope="module")
def operator_kube(cluster: Any) -> Kube:
    kubeconfig: Path = install_platform(cluster)
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return Kube(client, field_manager="vpes-operator")


@pytest.fixture(scope="module")
def live(api: Kube, operator_kube: Kube, helm: str) -> dict[str, Any]:
    """The chart's antispam Deployment, as helm renders it (its pods never run here)."""
    rendered = one(render(helm, "templates/edge-antispam.yaml"), "Deployment", LIVE)
    api.apply(rendered)

    def in_force() -> bool:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
        try:
            operator_kube.create(
                {**body, "metadata": {"name": "x", "namespace": "kube-system"}}, dry_run=True
            )
        except ApiError as e:
            return e.status == 403 and "customer namespaces only" in e.message
        return False

    wait_for(in_force, "the operator-scope policy in force")
    got = api.get("apps/v1", "Deployment", NAMESPACE, LIVE)
    assert got is not None
    return got


def as_operator_dry_run(
    kube: Kube, method: str, namespace: str, name: str | None, body: dict[str, Any]
) -> None:
    """A Deployment request of the operator's, admitted or refused, stored never."""
    path = kube.resource("apps/v1", "Deployment").path(namespace, name)
    patch = "application/merge-patch+json"
    kind = patch if method == "PATCH" else "application/json"
    kube.request(method, path, body=body or None, query={"dryRun": "All"}, content_type=kind)


def refusal(call: Any) -> str:
    with pytest.raises(ApiError) as refused:
        call()
    assert refused.value.status == 403, refused.value.body
    return refused.value.message


@pytest.fixture
def upgrades(api: Kube) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        api.delete(API_VERSION, "FleetUpgrade", None, name)


@pytest.mark.parametrize(
    "spec",
    [{}, {"image": "registry.test/t:2", "antispam": {"rulesConfigMap": "rules"}}],
    ids=["neither", "both"],
)
def test_the_api_server_refuses_both_or_neither_with_a_clear_message(
    api: Kube, operator_kube: Kube, spec: dict[str, Any]
) -> None:
    body = {"apiVersion": API_VERSION, "kind": "FleetUpgrade", "metadata": {"name": "x"}}
    with pytest.raises(ApiError) as refused:
        api.create({**body, "spec": spec}, dry_run=True)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert "a FleetUpgrade moves exactly one thing: set either image" in message


def test_the_rules_are_fixed(api: Kube, operator_kube: Kube, upgrades: list[str]) -> None:
    name = f"rules-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": API_VERSION, "kind": "FleetUpgrade", "metadata": {"name": name}}
    api.create({**body, "spec": {"antispam": {"rulesConfigMap": "rules-1"}, "paused": True}})
    upgrades.append(name)
    with pytest.raises(ApiError) as refused:
        api.apply({**body, "spec": {"antispam": {"rulesConfigMap": "rules-2"}}})
    assert "antispam cannot change once the upgrade exists" in refused.value.body
    with pytest.raises(ApiError) as refused:
        api.apply({**body, "spec": {"image": "registry.test/t:2"}})
    assert "image cannot change once the upgrade exists" in refused.value.body


def test_a_canary_that_never_passes_is_removed_and_the_live_rules_stay(
    api: Kube, operator_kube: Kube, live: dict[str, Any], upgrades: list[str]
) -> None:
    source = f"rules-{uuid.uuid4().hex[:6]}"
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": source, "namespace": NAMESPACE},
            "data": RULES,
        }
    )
    name = f"fup-{uuid.uuid4().hex[:6]}"
    spec = {"antispam": {"rulesConfigMap": source}, "healthTimeoutSeconds": 30}
    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    upgrades.append(name)

    def read() -> FleetUpgrade:
        got = api.get(API_VERSION, "FleetUpgrade", None, name)
        assert got is not None
        return FleetUpgrade.model_validate(got)

    first = antispam_controller.step(operator_kube, read(), SETTINGS, now=T0)
    assert first.status.phase == "Canary", first.status.message
    canary = api.get("apps/v1", "Deployment", NAMESPACE, CANARY)
    assert canary is not None
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels[antispam.LABEL_TRACK] == "canary"
    assert canary["metadata"]["ownerReferences"][0]["name"] == name
    tried = api.get("v1", "ConfigMap", NAMESPACE, f"{LIVE}-rules-canary")
    assert tried is not None and tried["data"] == RULES
    assert tried["metadata"]["ownerReferences"][0]["name"] == name  # gone with the upgrade
    assert read().status.phase == "Canary"

    waiting = antispam_controller.step(
        operator_kube, read(), SETTINGS, now=T0 + dt.timedelta(seconds=10)
    )
    # No pod runs Rspamd here (kwok's nodes only pretend to run pods): never passes.
    assert waiting.status.phase == "Canary"
    assert "canary: waiting for the health gate: " in (waiting.status.message or "")

    last = antispam_controller.step(
        operator_kube, read(), SETTINGS, now=T0 + dt.timedelta(seconds=31)
    )
    assert last.status.phase == "RolledBack"
    assert read().status.phase == "RolledBack"
    assert "the canary with the new rules failed the health gate within 30s" in (
        read().status.message or ""
    )
    row = get_row(api, name)
    assert (row["Image"], row["Rules"], row["Phase"], row["Wave"]) == (
        None,
        source,
        "RolledBack",
        1,
    )
    assert row["Message"].startswith("the canary with the new rules failed the health gate")
    assert api.get("apps/v1", "Deployment", NAMESPACE, CANARY) is None
    assert api.get("v1", "ConfigMap", NAMESPACE, f"{LIVE}-rules-canary") is None
    assert api.get("v1", "ConfigMap", NAMESPACE, f"{LIVE}-rules") is None
    after = api.get("apps/v1", "Deployment", NAMESPACE, LIVE)
    assert after is not None and antispam.template_hash(after) is None


def test_the_policy_admits_only_the_canary_and_the_rules_annotation(
    operator_kube: Kube, live: dict[str, Any]
) -> None:
    def made(**changes: Any) -> dict[str, Any]:
        body = antispam.canary_deployment(
            live,
            name=CANARY,
            config_map=f"{LIVE}-rules-canary",
            digest="d1",
            labels={"vpes.io/component": "antispam-canary"},
            owner={"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"},
        )
        body["metadata"].pop("ownerReferences")
        container = body["spec"]["template"]["spec"]["containers"][0]
        container.update(changes)
        return body

    def create(body: dict[str, Any]) -> None:
        as_operator_dry_run(operator_kube, "POST", NAMESPACE, None, body)

    create(made())  # admitted
    other_image = made(image="registry.test/anything:1")
    assert "writes only the antispam canary" in refusal(lambda: create(other_image))
    shell = made(command=["sh", "-c", "cat /var/run/secrets/*"])
    assert "writes only the antispam canary" in refusal(lambda: create(shell))
    renamed = made()
    renamed["metadata"]["name"] = "something-else"
    assert "not deployments something-else" in refusal(lambda: create(renamed))

    def patch(body: dict[str, Any]) -> None:
        as_operator_dry_run(operator_kube, "PATCH", NAMESPACE, LIVE, body)

    patch(antispam.annotation_patch("d1"))  # admitted
    patch(antispam.annotation_patch(None))
    image = copy.deepcopy(live["spec"]["template"]["spec"]["containers"])
    image[0]["image"] = "registry.test/anything:1"
    swapped = {"spec": {"template": {"spec": {"containers": image}}}}
    assert "writes only the antispam canary" in refusal(lambda: patch(swapped))
    other = {"spec": {"template": {"metadata": {"annotations": {"checksum/secret": "x"}}}}}
    assert "writes only the antispam canary" in refusal(lambda: patch(other))
    assert "writes only the antispam canary" in refusal(lambda: patch({"spec": {"replicas": 9}}))
    # Never deleted (RBAC: delete is granted on the canary only).
    deleted = refusal(lambda: as_operator_dry_run(operator_kube, "DELETE", NAMESPACE, LIVE, {}))
    assert "cannot delete" in deleted
