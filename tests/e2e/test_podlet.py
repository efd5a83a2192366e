"""The podlet runs real pods: Jobs that complete (with a claim, a Secret and a
ConfigMap), failures with their exit code, a read-only root, Secret updates reaching a
mounted volume, init containers, readiness from a tcpSocket probe on a named port,
restarts, deletion; and, first, the pure parts (arguments, mounts, expansion, the
atomic writer), which need no cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vpes_devcluster import ApiError, Cluster, Rest, procs, wait_for
from vpes_devcluster.podlet import Podlet
from vpes_devcluster.podlet_atomic import File, write_atomic
from vpes_devcluster.podlet_component import STATE_DIR
from vpes_devcluster.podlet_container import Launch, mounts_of, run_argv
from vpes_devcluster.podlet_env import expand
from vpes_devcluster.podlet_podman import INSTANCE_LABEL, POD_UID_LABEL, instance_id
from vpes_devcluster.podlet_volumes import Volume

from .conftest import podman

Obj = dict[str, Any]
FOREVER = "trap 'exit 0' TERM; while :; do sleep 1; done"


def container(image: str, script: str, **extra: Any) -> Obj:
    return {"name": "main", "image": image, "command": ["sh", "-c", script], **extra}


def pod_spec(node: str, *containers: Obj, restart: str = "Never", **extra: Any) -> Obj:
    return {
        "restartPolicy": restart,
        "nodeSelector": {"kubernetes.io/hostname": node},
        "terminationGracePeriodSeconds": 5,
        "containers": list(containers),
        **extra,
    }


def create_pod(rest: Rest, namespace: str, name: str, spec: Obj) -> Obj:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    return rest.create(f"/api/v1/namespaces/{namespace}/pods", body)


def create_job(rest: Rest, namespace: str, name: str, spec: Obj) -> None:
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }
    rest.create(f"/apis/batch/v1/namespaces/{namespace}/jobs", body)


def pod_in(
    rest: Rest, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 60
) -> Obj:
    def get() -> Obj | None:
        pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return pod if (pod.get("status") or {}).get("phase") in phases else None

    return wait_for(get, timeout, f"pod {namespace}/{name} in {phases}", 0.5)


def job_complete(rest: Rest, namespace: str, name: str, timeout: float = 90) -> Obj:
    """The Job's (one) pod, once the Job controller says Complete."""

    def complete() -> bool:
        job = rest.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        conditions = (job.get("status") or {}).get("conditions") or []
        failed = [c for c in conditions if c["type"] == "Failed" and c["status"] == "True"]
        assert not failed, f"job {name} failed: {failed}"
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait_for(complete, timeout, f"job {namespace}/{name} Complete", 0.5)
    pods = rest.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"job-name={name}")
    items: list[Obj] = pods["items"]
    assert len(items) == 1
    return items[0]


def terminated(pod: Obj) -> Obj:
    state: Obj = pod["status"]["containerStatuses"][0]["state"]
    return dict(state["terminated"])


def container_id(pod: Obj) -> str:
    cid = str(pod["status"]["containerStatuses"][0]["containerID"])
    return cid.removeprefix("podman://")


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "0123456789ab"}, "spec": {}}


@pytest.mark.parametrize(
    ("spec", "entrypoint", "after"),
    [
        ({}, None, []),
        ({"command": ["sh", "-c"]}, '["sh", "-c"]', []),
        ({"args": ["serve", "$(WHO)"]}, None, ["serve", "me"]),
        ({"command": ["a"], "args": ["$$(WHO)", "$(NOPE)"]}, '["a"]', ["$(WHO)", "$(NOPE)"]),
    ],
)
def test_command_replaces_entrypoint_and_args_replace_cmd(
    spec: Obj, entrypoint: str | None, after: list[str], tmp_path: Path
) -> None:
    launch = Launch("c", "node", "id", tmp_path / "env", [], [], tmp_path / "term")
    argv = run_argv(POD, {"name": "main", "image": "img", **spec}, {"WHO": "me"}, launch)
    found = [a.removeprefix("--entrypoint=") for a in argv if a.startswith("--entrypoint=")]
    assert found == ([entrypoint] if entrypoint else [])
    assert argv[argv.index("img") + 1 :] == after
    assert "--network=host" in argv and "--pull=never" in argv


def test_mounts_are_made_parents_first_and_keep_read_only(tmp_path: Path) -> None:
    volumes = {
        "mail": Volume("mail", tmp_path / "mail"),
        "data": Volume("data", tmp_path / "data"),
        "conf": Volume("conf", tmp_path / "conf", read_only=True),
    }
    spec = {
        "volumeMounts": [
            {"name": "mail", "mountPath": "/data/mail"},
            {"name": "conf", "mountPath": "/etc/conf"},
            {"name": "data", "mountPath": "/data", "readOnly": True},
        ]
    }
    mounts = mounts_of(spec, volumes, {})
    assert [(m.target, m.read_only) for m in mounts] == [
        ("/data", True),
        ("/data/mail", False),
        ("/etc/conf", True),
    ]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$(A)-$(B)", "1-$(B)"),
        ("$$(A)", "$(A)"),
        ("$A $(A", "$A $(A"),
        ("a$", "a$"),
    ],
)
def test_expand_follows_kubernetes(text: str, want: str) -> None:
    assert expand(text, {"A": "1"}) == want


def test_atomic_writer_swaps_data_only_when_content_changes(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": File(b"1", 0o644), "dir/b": File(b"2", 0o400)})
    first = os.readlink(target / "..data")
    assert (target / "a").read_text() == "1"
    assert os.readlink(target / "dir") == "..data/dir"
    assert not write_atomic(target, {"a": File(b"1", 0o644), "dir/b": File(b"2", 0o400)})
    assert os.readlink(target / "..data") == first
    assert write_atomic(target, {"a": File(b"3", 0o644)})
    assert os.readlink(target / "..data") != first
    assert not (target / first).exists(), "the old version was kept"
    assert not (target / "dir").exists(), "a key that went away kept its link"
    assert (target / "a").read_text() == "3"


def test_jobs_share_a_claim_and_report_secret_and_config(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    api = f"/api/v1/namespaces/{namespace}"
    rest.create(f"{api}/secrets", {"metadata": {"name": "creds"}, "stringData": {"token": "t0ken"}})
    config = {"color": "blue", "greeting": "hello from a configmap"}
    rest.create(f"{api}/configmaps", {"metadata": {"name": "settings"}, "data": config})
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}
    rest.create(f"{api}/persistentvolumeclaims", {"metadata": {"name": "data"}, "spec": claim})
    writer = container(
        base_image,
        "echo written-by-writer > /data/out.txt"
        ' && echo "token=$TOKEN color=$COLOR expanded=$(COLOR)'
        ' file=`cat /config/hello.txt` sa=`cat $SA/namespace`"'
        " > /dev/termination-log",
        env=[
            {"name": "SA", "value": "/var/run/secrets/kubernetes.io/serviceaccount"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {
                "name": "COLOR",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}},
            },
        ],
        volumeMounts=[
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": "/config"},
        ],
    )
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {
            "name": "config",
            "configMap": {"name": "settings", "items": [{"key": "greeting", "path": "hello.txt"}]},
        },
    ]
    create_job(rest, namespace, "writer", pod_spec(podlet.node_name, writer, volumes=volumes))
    pod = job_complete(rest, namespace, "writer")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["podIP"] == "127.0.0.1"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (0, "Completed")
    assert state["message"].strip() == (
        f"token=t0ken color=blue expanded=blue file=hello from a configmap sa={namespace}"
    )

    reader = container(
        base_image,
        "cat /data/out.txt > /dev/termination-log; if touch /data/x 2>/dev/null; then exit 9; fi",
        volumeMounts=[{"name": "data", "mountPath": "/data", "readOnly": True}],
    )
    create_job(rest, namespace, "reader", pod_spec(podlet.node_name, reader, volumes=volumes[:1]))
    pod = job_complete(rest, namespace, "reader")
    assert terminated(pod)["message"].strip() == "written-by-writer"


def test_a_failing_container_fails_the_pod_with_its_exit_code(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    script = "echo about to fail > /dev/termination-log; exit 3"
    create_pod(rest, namespace, "fails", pod_spec(podlet.node_name, container(base_image, script)))
    pod = pod_in(rest, namespace, "fails", ("Failed", "Succeeded"))
    assert pod["status"]["phase"] == "Failed"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (3, "Error")
    assert state["message"].strip() == "about to fail"


def test_a_read_only_root_cannot_be_written(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    script = (
        "if touch /probe 2>/dev/null; then echo root-writable > /dev/termination-log; exit 1; fi;"
        ' touch /scratch/ok && echo "read-only uid=`id -u`" > /dev/termination-log'
    )
    secured = container(
        base_image,
        script,
        securityContext={
            "readOnlyRootFilesystem": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        resources={"limits": {"memory": "64Mi", "cpu": "500m"}},
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    volumes = [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    create_pod(rest, namespace, "ro", pod_spec(podlet.node_name, secured, volumes=volumes))
    pod = pod_in(rest, namespace, "ro", ("Failed", "Succeeded"))
    assert terminated(pod).get("message", "").strip() == "read-only uid=1000"
    assert pod["status"]["phase"] == "Succeeded"


def test_a_secret_update_reaches_the_mounted_file(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    api = f"/api/v1/namespaces/{namespace}"
    rest.create(f"{api}/secrets", {"metadata": {"name": "s"}, "stringData": {"key": "one"}})
    sleeper = container(
        base_image, FOREVER, volumeMounts=[{"name": "s", "mountPath": "/secrets", "readOnly": True}]
    )
    volumes = [{"name": "s", "secret": {"secretName": "s", "defaultMode": 0o440}}]
    create_pod(rest, namespace, "watcher", pod_spec(podlet.node_name, sleeper, volumes=volumes))
    cid = container_id(pod_in(rest, namespace, "watcher", ("Running",)))

    def read() -> str:
        return podman(
            "exec", cid, "sh", "-c", "cat /secrets/key; echo; readlink /secrets/..data"
        ).stdout

    first = read().split()
    assert first[0] == "one"
    rest.patch(f"{api}/secrets/s", {"stringData": {"key": "two"}})

    def updated() -> list[str] | None:
        seen = read().split()
        return seen if seen[0] == "two" else None

    second = wait_for(updated, 10, "the mounted key to read 'two'", 0.2)
    assert second[1] != first[1], "..data was not swapped"
    mode = podman("exec", cid, "stat", "-L", "-c", "%a", "/secrets/key").stdout.strip()
    assert mode == "440"


def test_init_containers_run_first_and_pods_get_a_service_account_token(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    shared = [{"name": "work", "mountPath": "/work"}]
    init = {**container(base_image, "echo prepared > /work/ready"), "name": "init"}
    init["volumeMounts"] = shared
    main = container(
        base_image,
        "cd /var/run/secrets/kubernetes.io/serviceaccount && test -s token && test -s ca.crt"
        ' && echo "`cat /work/ready` $KUBERNETES_SERVICE_HOST" > /dev/termination-log',
        volumeMounts=shared,
    )
    spec = pod_spec(
        podlet.node_name, main, initContainers=[init], volumes=[{"name": "work", "emptyDir": {}}]
    )
    create_pod(rest, namespace, "inits", spec)
    pod = pod_in(rest, namespace, "inits", ("Succeeded", "Failed"))
    assert terminated(pod)["message"].strip() == "prepared 127.0.0.1"
    first = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert (first["exitCode"], first["reason"]) == (0, "Completed")
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Initialized"] == "True"


def test_readiness_follows_a_tcp_probe_on_a_named_port(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    port = procs.free_port()
    listen = (
        "sleep 2; exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new("
        f'LocalAddr => "127.0.0.1:{port}", Listen => 5, ReuseAddr => 1) or die;'
        " $SIG{TERM} = sub { exit 0 }; while (1) { $c = $s->accept; close $c if $c }'"
    )
    server = container(
        base_image,
        listen,
        ports=[{"name": "web", "containerPort": port}],
        readinessProbe={"tcpSocket": {"port": "web"}, "periodSeconds": 10},
    )
    create_pod(rest, namespace, "server", pod_spec(podlet.node_name, server))
    pod = pod_in(rest, namespace, "server", ("Running",))
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "False", "Ready before the port listens"

    def is_ready() -> bool:
        pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/server")
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"]
        )

    wait_for(is_ready, 20, "the pod Ready", 0.5)


def test_restart_policy_always_restarts_a_container(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    crasher = container(base_image, "echo crashed > /dev/termination-log; exit 1")
    create_pod(rest, namespace, "crasher", pod_spec(podlet.node_name, crasher, restart="Always"))

    def restarted() -> Obj | None:
        pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/crasher")
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 2 else None

    status = wait_for(restarted, 30, "two restarts", 0.5)
    last = status["lastState"]["terminated"]
    assert (last["exitCode"], last["message"].strip()) == (1, "crashed")
    pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/crasher")
    assert pod["status"]["phase"] == "Running"


def test_deleting_a_pod_stops_and_removes_its_container(
    rest: Rest, namespace: str, podlet: Podlet, base_image: str
) -> None:
    create_pod(
        rest, namespace, "doomed", pod_spec(podlet.node_name, container(base_image, FOREVER))
    )
    pod = pod_in(rest, namespace, "doomed", ("Running",))
    uid = pod["metadata"]["uid"]
    assert podman("ps", "-q", "--filter", f"label={POD_UID_LABEL}={uid}").stdout.strip()
    rest.delete(f"/api/v1/namespaces/{namespace}/pods/doomed")

    def gone() -> bool:
        try:
            rest.get(f"/api/v1/namespaces/{namespace}/pods/doomed")
        except ApiError as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(gone, 20, "the pod deleted", 0.5)
    left = podman("ps", "-a", "-q", "--filter", f"label={POD_UID_LABEL}={uid}").stdout.strip()
    assert left == ""


def test_a_podlet_runs_as_a_cluster_component(
    cluster: Cluster, rest: Rest, namespace: str, base_image: str
) -> None:
    name = cluster.start_podlet(index=1)
    proc = next(p for p in cluster.processes() if p.name == name)
    try:
        job = container(base_image, "echo from-the-component > /dev/termination-log")
        create_pod(rest, namespace, "component", pod_spec(name, job))
        pod = pod_in(rest, namespace, "component", ("Succeeded", "Failed"))
        assert terminated(pod)["message"].strip() == "from-the-component"
        create_pod(rest, namespace, "left", pod_spec(name, container(base_image, FOREVER)))
        pod_in(rest, namespace, "left", ("Running",))
    finally:
        procs.stop([proc], grace=10)
        rest.delete(f"/api/v1/nodes/{name}")
    instance = instance_id(name, cluster.state_dir / STATE_DIR / name)
    left = podman("ps", "-a", "-q", "--filter", f"label={INSTANCE_LABEL}={instance}").stdout
    assert left.strip() == "", "the stopped podlet left containers behind"
