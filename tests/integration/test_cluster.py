"""The dev control plane itself: version, scheduling onto kwok nodes, volumes through
the provisioner, garbage collection, namespaces, RBAC and ServiceAccount tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from vpes_devcluster import Cluster, api_client, wait_for
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.quantity import parse_quantity

Obj = dict[str, Any]
TIMEOUT = 60.0
MERGE_PATCH = "application/merge-patch+json"


def _get_or_none(api: Kube, path: str) -> Obj | None:
    try:
        return api.request("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _gone(api: Kube, path: str) -> bool:
    return _get_or_none(api, path) is None


def _condition(obj: Obj, kind: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def _pod(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"type": "kwok"},
            "containers": [{"name": "main", "image": "registry.invalid/never-pulled:1"}],
        },
    }


def _pvc(name: str, size: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def test_version_is_the_built_one(kube: client.ApiClient) -> None:
    info = client.VersionApi(kube).get_code()
    assert info.git_version == "v1.34.3"


def test_fake_nodes_are_ready_with_capacity(api: Kube) -> None:
    nodes = api.request("GET", "/api/v1/nodes", query={"labelSelector": "type=kwok"})["items"]
    assert len(nodes) >= 2
    for node in nodes:
        assert _condition(node, "Ready") == "True"
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert parse_quantity(node["status"]["allocatable"]["pods"]) == 2000


def test_pod_runs_and_is_ready_on_a_kwok_node(api: Kube, namespace: str) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    api.request("POST", pods, body=_pod("hello"))

    def running_and_ready() -> Obj | None:
        pod = api.request("GET", f"{pods}/hello")
        phase = (pod.get("status") or {}).get("phase")
        return pod if phase == "Running" and _condition(pod, "Ready") == "True" else None

    pod = wait_for(running_and_ready, TIMEOUT, "pod hello Running and Ready")
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["status"]["podIP"]


def test_statefulset_counts_ready_replicas_with_volumes(api: Kube, namespace: str) -> None:
    sets = f"/apis/apps/v1/namespaces/{namespace}/statefulsets"
    template = _pod("db")
    api.request(
        "POST",
        sets,
        body={
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": template["metadata"], "spec": template["spec"]},
                "volumeClaimTemplates": [_pvc("data", "1Gi")],
            },
        },
    )
    wait_for(
        lambda: (api.request("GET", f"{sets}/db").get("status") or {}).get("readyReplicas") == 1,
        TIMEOUT,
        "statefulset db readyReplicas == 1",
    )
    claim = api.request("GET", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-db-0")
    assert claim["status"]["phase"] == "Bound"


def test_claim_binds_grows_and_its_volume_goes_when_deleted(api: Kube, namespace: str) -> None:
    claims = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    api.request("POST", claims, body=_pvc("mail", "1Gi"))
    claim = wait_for(
        lambda: (c := api.request("GET", f"{claims}/mail"))["status"].get("phase") == "Bound" and c,
        TIMEOUT,
        "claim mail Bound",
    )
    assert claim["spec"]["storageClassName"] == "vpes-local"  # the default class
    assert claim["status"]["capacity"]["storage"] == "1Gi"
    volume_path = f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}"
    volume = api.request("GET", volume_path)
    assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert volume["spec"]["capacity"]["storage"] == "1Gi"

    grow = {"spec": {"resources": {"requests": {"storage": "3Gi"}}}}
    api.request("PATCH", f"{claims}/mail", body=grow, content_type=MERGE_PATCH)
    wait_for(
        lambda: api.request("GET", f"{claims}/mail")["status"]["capacity"]["storage"] == "3Gi",
        TIMEOUT,
        "claim mail grown to 3Gi",
    )
    assert api.request("GET", volume_path)["spec"]["capacity"]["storage"] == "3Gi"

    api.request("DELETE", f"{claims}/mail")
    wait_for(lambda: _gone(api, volume_path), TIMEOUT, f"{volume_path} deleted")


def test_owned_configmap_is_garbage_collected(api: Kube, namespace: str) -> None:
    maps = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"metadata": {"name": "owner"}, "data": {"k": "v"}}
    owner = api.request("POST", maps, body=body)
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    api.request("POST", maps, body={"metadata": {"name": "child", "ownerReferences": [ref]}})
    api.request("DELETE", f"{maps}/owner")
    wait_for(lambda: _gone(api, f"{maps}/child"), TIMEOUT, "child ConfigMap collected")


def test_namespace_deletion_completes(api: Kube) -> None:
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    api.request("POST", f"/api/v1/namespaces/{name}/configmaps", body={"metadata": {"name": "x"}})
    api.request("DELETE", f"/api/v1/namespaces/{name}")
    wait_for(lambda: _gone(api, f"/api/v1/namespaces/{name}"), TIMEOUT, f"{name} gone")


def _service_account(api: Kube, namespace: str, name: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    api.request("POST", path, body={"metadata": {"name": name}})


def _as_token(cluster: Cluster, token: str, tmp_path: Path) -> Kube:
    path = cluster.write_kubeconfig_for_token(token, tmp_path / "token.kubeconfig")
    return Kube(api_client(path), field_manager="tests")


def test_rbac_forbids_an_unbound_service_account(
    cluster: Cluster, api: Kube, namespace: str, tmp_path: Path
) -> None:
    _service_account(api, namespace, "nobody")
    as_nobody = _as_token(cluster, cluster.token_for(namespace, "nobody"), tmp_path)
    with pytest.raises(ApiError) as caught:
        as_nobody.request("GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert caught.value.status == 403


def test_token_for_authenticates_and_gets_its_bindings(
    cluster: Cluster, api: Kube, namespace: str, tmp_path: Path
) -> None:
    _service_account(api, namespace, "reader")
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    api.request(
        "POST",
        f"{rbac}/roles",
        body={
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    api.request(
        "POST",
        f"{rbac}/rolebindings",
        body={
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-configmaps",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = cluster.token_for(namespace, "reader", timedelta(minutes=10))
    as_reader = _as_token(cluster, token, tmp_path)

    review = as_reader.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert review["status"]["userInfo"]["username"] == (f"system:serviceaccount:{namespace}:reader")
    # The binding may take a moment to reach the authorizer's cache.
    wait_for(
        lambda: _lists(as_reader, f"/api/v1/namespaces/{namespace}/configmaps"),
        TIMEOUT,
        "reader allowed to list configmaps",
    )
    with pytest.raises(ApiError) as caught:
        as_reader.request("GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert caught.value.status == 403


def _lists(api: Kube, path: str) -> bool:
    try:
        api.request("GET", path)
    except ApiError as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_kubectl_talks_to_the_cluster(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "name").stdout.split()
    assert "node/kwok-node-0" in out
