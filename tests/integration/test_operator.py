"""The operator against a real control plane: create, change, suspend, delete, crash."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    install_platform,
    plan_body,
    server_body,
    wait_for,
    wait_ready,
)

CHILD_KINDS = [
    ("v1", "ConfigMap", "{}-config"),
    ("v1", "Secret", "{}-credentials"),
    ("v1", "PersistentVolumeClaim", "{}-mail"),
    ("v1", "Service", "{}"),
    ("networking.k8s.io/v1", "NetworkPolicy", "{}-isolation"),
    ("apps/v1", "StatefulSet", "{}"),
]


@pytest.fixture(scope="module")
def operator(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    op = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()
    assert op.runs >= 1


@pytest.fixture
def plan(api: Kube) -> Iterator[str]:
    name = f"plan-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def spec(plan: str, *domains: str, mailboxes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doms = list(domains) or ["example.org"]
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": doms,
        "mailboxes": mailboxes if mailboxes is not None else [{"address": f"alice@{doms[0]}"}],
    }


def secret_text(api: Kube, namespace: str, name: str) -> dict[str, str]:
    obj = api.get("v1", "Secret", namespace, name)
    assert obj is not None, f"Secret {name} missing"
    return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}


def test_create_becomes_ready_with_owned_children(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bob-pw", "namespace": namespace},
            "stringData": {"password": "s3cret-Bob-password"},
        }
    )
    api.apply(
        server_body(
            "acme",
            namespace,
            spec(
                plan,
                "acme.test",
                mailboxes=[
                    {"address": "alice@acme.test", "aliases": ["info"]},
                    {"address": "bob@acme.test", "passwordSecretRef": {"name": "bob-pw"}},
                ],
            ),
        )
    )
    obj = wait_ready(api, namespace, "acme")
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Provisioned")["status"] == "True"  # type: ignore[index]
    uid = obj["metadata"]["uid"]
    for api_version, kind, pattern in CHILD_KINDS:
        child = api.get(api_version, kind, namespace, pattern.format("acme"))
        assert child is not None, kind
        refs = child["metadata"]["ownerReferences"]
        assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [
            ("PersonalMailServer", uid, True)
        ], kind
    pods = api.list("v1", "Pod", namespace, labels="vpes.io/server=acme")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    node = api.request("GET", f"/api/v1/nodes/{pods[0]['spec']['nodeName']}")
    assert node["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"

    creds = secret_text(api, namespace, "acme-credentials")
    assert "s3cret-Bob-password" not in json.dumps(creds)
    passwd = creds["passwd"]
    assert "alice@acme.test:{BLF-CRYPT}$2y$" in passwd and "bob@acme.test:{BLF-CRYPT}$2y$" in passwd
    assert "BEGIN PRIVATE KEY" in creds["dkim-acme.test.key"]
    shown = json.loads(secret_text(api, namespace, "acme-initial-passwords")["passwords.json"])
    assert set(shown) == {"alice@acme.test"}, "only the mailbox without a Secret gets one"
    sts = api.get("apps/v1", "StatefulSet", namespace, "acme")
    assert sts is not None
    pod = sts["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False


def test_second_reconcile_changes_nothing(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("steady", namespace, spec(plan, "steady.test")))
    wait_ready(api, namespace, "steady")
    before = {
        kind: api.get(v, kind, namespace, p.format("steady"))["metadata"]["resourceVersion"]  # type: ignore[index]
        for v, kind, p in CHILD_KINDS
    }
    # A metadata change makes kopf run the update handler: a full reconcile.
    api.patch_metadata(
        API_VERSION, "PersonalMailServer", namespace, "steady", {"annotations": {"test/poke": "1"}}
    )
    wait_for(
        lambda: (
            (get_server(api, namespace, "steady") or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("kopf.vpes.io/last-handled-configuration", "")
            .count("poke")
        ),
        "the poke to be handled",
    )
    after = {
        kind: api.get(v, kind, namespace, p.format("steady"))["metadata"]["resourceVersion"]  # type: ignore[index]
        for v, kind, p in CHILD_KINDS
    }
    assert before == after


def test_plan_change_resizes(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("grow", namespace, spec(plan, "grow.test")))
    wait_ready(api, namespace, "grow")
    api.apply(
        plan_body(
            plan,
            storage="3Gi",
            resources={"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "192Mi"}},
        )
    )

    def resized() -> bool:
        sts = api.get("apps/v1", "StatefulSet", namespace, "grow") or {}
        res = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
        pvc = api.get("v1", "PersistentVolumeClaim", namespace, "grow-mail") or {}
        return (
            res["limits"]["memory"] == "192Mi"
            and res["requests"]["memory"] == "48Mi"
            and pvc["spec"]["resources"]["requests"]["storage"] == "3Gi"
        )

    wait_for(resized, "the StatefulSet and volume to follow the plan")
    wait_ready(api, namespace, "grow")


def test_suspend_and_resume(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("nap", namespace, spec(plan, "nap.test")))
    wait_ready(api, namespace, "nap")
    api.apply(server_body("nap", namespace, {**spec(plan, "nap.test"), "suspended": True}))

    def suspended() -> dict[str, Any] | None:
        obj = get_server(api, namespace, "nap")
        ready = condition(obj, "Ready") or {}
        if (obj or {}).get("status", {}).get("phase") == "Suspended" and ready.get(
            "reason"
        ) == "Suspended":
            return obj
        return None

    obj = wait_for(suspended, "phase Suspended")
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    assert api.list("v1", "Pod", namespace, labels="vpes.io/server=nap") == [] or wait_for(
        lambda: api.list("v1", "Pod", namespace, labels="vpes.io/server=nap") == [], "pod gone"
    )
    assert api.get("v1", "PersistentVolumeClaim", namespace, "nap-mail") is not None, "mail kept"
    api.apply(server_body("nap", namespace, {**spec(plan, "nap.test"), "suspended": False}))
    wait_ready(api, namespace, "nap")


def test_missing_plan_is_a_condition_then_heals(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    plan = f"later-{uuid.uuid4().hex[:6]}"
    api.apply(server_body("early", namespace, spec(plan, "early.test")))

    def failed() -> dict[str, Any] | None:
        c = condition(get_server(api, namespace, "early"), "Provisioned")
        return c if c and c["reason"] == "PlanNotFound" else None

    c = wait_for(failed, "Provisioned=False PlanNotFound")
    assert c["status"] == "False" and plan in c["message"] and "create it" in c["message"]
    assert get_server(api, namespace, "early")["status"]["phase"] == "Failed"  # type: ignore[index]
    assert api.get("apps/v1", "StatefulSet", namespace, "early") is None
    api.apply(plan_body(plan))
    try:
        wait_ready(api, namespace, "early")
    finally:
        api.delete(API_VERSION, "MailPlan", None, plan)


def events_of(api: Kube, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The core/v1 Events posted about `obj` (by its uid: a namesake's do not count)."""
    meta = obj["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/events"
    query = {"fieldSelector": f"involvedObject.uid={meta['uid']}"}
    items: list[dict[str, Any]] = api.request("GET", path, query=query)["items"]
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e["metadata"]["creationTimestamp"])


def test_transitions_are_posted_as_events(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    plan = f"ev-{uuid.uuid4().hex[:6]}"
    api.apply(server_body("told", namespace, spec(plan, "told.test")))
    server = wait_for(lambda: get_server(api, namespace, "told"), "the server")

    def reasons() -> list[str]:
        return [e["reason"] for e in events_of(api, server)]

    wait_for(lambda: "PlanNotFound" in reasons(), "a PlanNotFound event")
    api.apply(plan_body(plan))
    try:
        wait_ready(api, namespace, "told")
        ready = wait_for(
            lambda: [e for e in events_of(api, server) if e["message"].startswith("Ready=True")],
            "an event for Ready=True",
        )
    finally:
        api.delete(API_VERSION, "MailPlan", None, plan)
    events = events_of(api, server)
    for e in events:
        involved = e["involvedObject"]
        assert involved["kind"] == "PersonalMailServer" and involved["apiVersion"] == API_VERSION
        assert (involved["namespace"], involved["name"]) == (namespace, "told")
        assert involved["uid"] == server["metadata"]["uid"]
        assert e["reason"] and e["message"] and e["type"] in ("Normal", "Warning")
    # One event per condition that changed, each posted once (not on every retry).
    missing = [e for e in events if e["reason"] == "PlanNotFound"]
    assert sorted(e["message"].split(":")[0] for e in missing) == [
        "Provisioned=False",
        "Ready=False",
    ]
    for e in missing:
        assert e["type"] == "Warning"
        assert plan in e["message"] and "create it" in e["message"]
    told = [(e["reason"], e["message"]) for e in events]
    assert len(told) == len(set(told)), f"an event posted twice: {told}"
    assert all(e.get("count") in (None, 1) for e in events), "repeated, not a transition"
    assert ready[0]["type"] == "Normal"
    provisioned = [e for e in events if e["message"].startswith("Provisioned=True")]
    assert [e["type"] for e in provisioned] == ["Normal"]


def test_over_plan_limits_keeps_running(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("full", namespace, spec(plan, "full.test")))
    wait_ready(api, namespace, "full")
    boxes = [{"address": f"u{i}@full.test"} for i in range(6)]  # the plan allows 5
    api.apply(server_body("full", namespace, spec(plan, "full.test", mailboxes=boxes)))

    def refused() -> dict[str, Any] | None:
        obj = get_server(api, namespace, "full")
        c = condition(obj, "Provisioned")
        return obj if c and c["reason"] == "PlanLimitExceeded" else None

    obj = wait_for(refused, "Provisioned=False PlanLimitExceeded")
    assert "6 mailboxes" in obj["status"]["message"] and "allows 5" in obj["status"]["message"]
    assert condition(obj, "Ready")["status"] == "True", "the running server is untouched"  # type: ignore[index]
    creds = secret_text(api, namespace, "full-credentials")
    assert "u5@full.test" not in creds["passwd"]


def test_delete_removes_children(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("gone", namespace, spec(plan, "gone.test")))
    wait_ready(api, namespace, "gone")
    api.delete(API_VERSION, "PersonalMailServer", namespace, "gone")
    wait_for(lambda: get_server(api, namespace, "gone") is None, "the server to be deleted")

    def children_gone() -> bool:
        return all(api.get(v, k, namespace, p.format("gone")) is None for v, k, p in CHILD_KINDS)

    wait_for(children_gone, "garbage collection of every child", timeout=90)


def test_two_servers_in_one_namespace_are_isolated(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("one", namespace, spec(plan, "one.test")))
    api.apply(server_body("two", namespace, spec(plan, "two.test")))
    wait_ready(api, namespace, "one")
    wait_ready(api, namespace, "two")
    for me, other in (("one", "two"), ("two", "one")):
        cm = api.get("v1", "ConfigMap", namespace, f"{me}-config") or {}
        text = json.dumps(cm.get("data"))
        assert f"{me}.test" in text and f"{other}.test" not in text
        creds = secret_text(api, namespace, f"{me}-credentials")
        assert f"{other}.test" not in json.dumps(creds)
        sts = api.get("apps/v1", "StatefulSet", namespace, me) or {}
        mounted = {
            v.get("secret", {}).get("secretName")
            for v in sts["spec"]["template"]["spec"]["volumes"]
        } - {None}
        assert mounted == {f"{me}-credentials"}
        policy = (
            api.get("networking.k8s.io/v1", "NetworkPolicy", namespace, f"{me}-isolation") or {}
        )
        assert policy["spec"]["podSelector"]["matchLabels"]["vpes.io/server"] == me
        peers = json.dumps(policy["spec"]["ingress"])
        assert "vpes.io/server" not in peers, "no tenant pod is an allowed peer"


def test_killed_operator_converges_without_duplicates(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    names = [f"crash{i}" for i in range(8)]
    for n in names:
        api.apply(server_body(n, namespace, spec(plan, f"{n}.test")))
    # Kill it while it is working through them: some reconciles are mid-flight.
    wait_for(
        lambda: api.get("apps/v1", "StatefulSet", namespace, names[1]),
        "a first StatefulSet",
        interval=0.05,
    )
    operator.stop(kill=True)
    operator.start()
    for n in names:
        wait_ready(api, namespace, n, timeout=120)
    # Exactly the expected children, each once, none orphaned or left over.
    for api_version, kind, pattern in CHILD_KINDS:
        got = sorted(
            i["metadata"]["name"]
            for i in api.list(
                api_version, kind, namespace, labels="app.kubernetes.io/managed-by=vpes-operator"
            )
        )
        want = [pattern.format(n) for n in names]
        if kind == "Secret":
            want += [f"{n}-initial-passwords" for n in names]
        assert got == sorted(want), kind
    initial = [
        s
        for s in api.list("v1", "Secret", namespace)
        if s["metadata"]["name"].endswith("-initial-passwords")
    ]
    assert len(initial) == len(names)


def test_operator_rbac_is_least_privilege(cluster: Any, operator: OperatorProcess) -> None:
    kubectl = str(Path(cluster.bin_dir) / "kubectl")

    def can(*args: str) -> bool:
        out = subprocess.run(
            [kubectl, "--kubeconfig", str(operator.kubeconfig), "auth", "can-i", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() == "yes"

    assert can("patch", "statefulsets.apps", "-n", "anywhere")
    assert can("patch", "personalmailservers.vpes.io/status", "-n", "anywhere")
    # Children go by garbage collection; the operator deletes only what must not wait
    # for it: a backup Job (its pod holds the volume) and its Secret of S3 credentials,
    # and a tenant pod stuck on an image it should no longer run.
    assert not can("delete", "statefulsets.apps", "-n", "anywhere")
    assert not can("delete", "persistentvolumeclaims", "-n", "anywhere")
    assert not can("delete", "configmaps", "-n", "anywhere")
    assert can("delete", "jobs.batch", "-n", "anywhere")
    # Pods: a stuck rollout's tenant pod only (rollout.py), which the scope policy
    # enforces (tests/integration/test_operator_scope.py).
    assert can("delete", "pods", "-n", "anywhere")
    assert not can("create", "pods", "-n", "anywhere")
    assert not can("create", "clusterrolebindings")
    assert not can("delete", "namespaces")
    assert not can("get", "nodes")


def test_no_secret_in_operator_log(operator: OperatorProcess, api: Kube) -> None:
    text = operator.log_text()
    assert "s3cret-Bob-password" not in text
    assert "BEGIN PRIVATE KEY" not in text
