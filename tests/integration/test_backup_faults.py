"""Backups and restores that cannot be done say why, against the real control plane and S3.

The operator runs as the chart's ServiceAccount; S3 is moto's server with real
access-key checks. Nothing here needs a backup pod to run: every fault is found
before a Job starts (the mail itself moves in tests/e2e/test_backup_restore.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from vpes_operator import API_VERSION
from vpes_operator.backup.repository import LABEL_REPOSITORY, Repository
from vpes_operator.clients.kube import Kube

from tests.backup_support import backup_env, install_credentials, s3_server
from tests.s3_support import S3Server

from .operator_support import (
    OperatorProcess,
    condition,
    install_platform,
    plan_body,
    server_body,
    wait_for,
    wait_ready,
)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from s3_server(tmp_path_factory)


@pytest.fixture(scope="module")
def operator(
    cluster: Any, api: Kube, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    install_credentials(api, s3)
    op = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("operator-backup"),
        backup_env(
            s3,
            "localhost/vpes-backup:none",
            VPES_BACKUP_GRACE_SECONDS="5",
            # A deleted server's backups are kept ~10 s here (the default is 30 days).
            VPES_BACKUP_RETENTION_AFTER_DELETE_DAYS=str(10 / 86400),
            VPES_BACKUP_SWEEP_SECONDS="2",
        ),
    )
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def plan(api: Kube) -> Iterator[str]:
    name = f"bk-{uuid.uuid4().hex[:6]}"
    # Backups every minute: a missed one shows within the test's patience.
    api.apply(plan_body(name, backup={"schedule": "* * * * *"}))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def spec(plan: str) -> dict[str, Any]:
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": ["backup.example"],
        "mailboxes": [{"address": "a@backup.example"}],
    }


def backup_body(name: str, namespace: str, server: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailBackup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"server": server},
    }


def restore_body(name: str, namespace: str, backup: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailRestore",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backup": backup, "target": target},
    }


def wait_phase(api: Kube, kind: str, namespace: str, name: str, phase: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = api.get(API_VERSION, kind, namespace, name)
        return obj if ((obj or {}).get("status") or {}).get("phase") == phase else None

    return wait_for(check, f"{kind} {name} {phase}", timeout=60)


def event_reasons(api: Kube, namespace: str, name: str) -> set[str]:
    return {
        str(e.get("reason"))
        for e in api.request("GET", f"/api/v1/namespaces/{namespace}/events").get("items", [])
        if (e.get("involvedObject") or {}).get("name") == name
    }


def test_wrong_s3_credentials_fail_the_backup_and_say_which(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str
) -> None:
    api.apply(server_body("alice", namespace, spec(plan)))
    wait_ready(api, namespace, "alice")
    install_credentials(api, s3, secret_key="not-the-key")
    try:
        api.create(backup_body("wrong-key", namespace, "alice"))
        failed = wait_phase(api, "MailBackup", namespace, "wrong-key", "Failed")
    finally:
        install_credentials(api, s3)
    c = condition(failed, "Failed")
    assert c is not None and c["reason"] == "S3CredentialsRejected"
    assert "backup.s3.credentialsSecret" in c["message"]
    assert wait_for(
        lambda: "S3CredentialsRejected" in event_reasons(api, namespace, "wrong-key"),
        "a Warning event on the backup",
    )
    assert operator.alive()
    # Nothing was started for it, and no repository was made with the wrong key. (The
    # plan's every-minute schedule may meanwhile run a backup of its own, with the
    # right key restored: its Job is not this backup's.)
    mine = [
        j
        for j in api.list("batch/v1", "Job", namespace)
        if any(
            r.get("uid") == failed["metadata"]["uid"]
            for r in j["metadata"].get("ownerReferences") or []
        )
    ]
    assert mine == []


def test_a_missing_bucket_is_named(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str
) -> None:
    """A repository made before buckets of their own (its key records no bucket) lives in
    the provider's bucket: when that is gone, the backup says which bucket to create."""
    server = api.apply(server_body("alice", namespace, spec(plan)))
    wait_ready(api, namespace, "alice")
    repository = Repository.of(namespace, "alice", server["metadata"]["uid"])
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": repository.key_secret, "namespace": "vpes-system"},
            "data": {"restic-password": base64.b64encode(b"an older repository").decode()},
        }
    )
    s3.s3().delete_bucket(Bucket=s3.bucket)
    try:
        api.create(backup_body("no-bucket", namespace, "alice"))
        failed = wait_phase(api, "MailBackup", namespace, "no-bucket", "Failed")
    finally:
        s3.s3().create_bucket(Bucket=s3.bucket)
        api.delete("v1", "Secret", "vpes-system", repository.key_secret)
    c = condition(failed, "Failed")
    assert c is not None and c["reason"] == "BucketNotFound"
    assert s3.bucket in c["message"]


def test_a_backup_of_a_server_that_does_not_exist(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    api.create(backup_body("nobody", namespace, "nobody-here"))
    failed = wait_phase(api, "MailBackup", namespace, "nobody", "Failed")
    c = condition(failed, "Failed")
    assert c is not None and c["reason"] == "ServerNotFound"
    assert "nobody-here" in c["message"] and "spec.server" in c["message"]


def test_a_scheduled_backup_is_requested_and_a_missed_one_turns_backup_healthy_false(
    api: Kube, operator: OperatorProcess, plan: str, namespace: str
) -> None:
    """The backup image does not exist here, so the scheduled backup cannot complete."""
    api.apply(server_body("alice", namespace, spec(plan)))
    wait_ready(api, namespace, "alice")

    def scheduled() -> list[dict[str, Any]]:
        return [
            b
            for b in api.list(API_VERSION, "MailBackup", namespace)
            if b["spec"].get("trigger") == "Schedule" and b["spec"]["server"] == "alice"
        ]

    found = wait_for(scheduled, "a scheduled MailBackup", timeout=90)
    name = found[0]["metadata"]["name"]
    assert name.startswith("alice-") and len(name) == len("alice-202612011200")

    def missed() -> dict[str, Any] | None:
        c = condition(
            api.get(API_VERSION, "PersonalMailServer", namespace, "alice"), "BackupHealthy"
        )
        return c if c and c["status"] == "False" else None

    c = wait_for(missed, "BackupHealthy False", timeout=150)
    assert c["reason"] == "BackupMissed"
    assert "has not completed" in c["message"]
    assert wait_for(
        lambda: "BackupMissed" in event_reasons(api, namespace, "alice"), "a BackupMissed event"
    )


def test_restores_that_cannot_be_done(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str
) -> None:
    # A backup that does not exist.
    api.create(restore_body("from-nothing", namespace, "no-such-backup", "alice"))
    c = condition(wait_phase(api, "MailRestore", namespace, "from-nothing", "Failed"), "Failed")
    assert c is not None and c["reason"] == "BackupNotFound"

    # A backup holding more mail than the target's plan can store (1Gi).
    api.apply(server_body("alice", namespace, spec(plan)))
    wait_ready(api, namespace, "alice")
    api.create(backup_body("big", namespace, "alice-gone"))
    wait_phase(api, "MailBackup", namespace, "big", "Failed")  # its server is not there
    api.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{namespace}/mailbackups/big/status",
        body={
            "status": {
                "phase": "Completed",
                "snapshotId": "0123abcd",
                "repository": f"{namespace}/alice-gone-0123abcd",
                "totalBytes": 5 * 2**30,
                "completedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        },
        content_type="application/merge-patch+json",
    )
    api.create(restore_body("too-big", namespace, "big", "alice"))
    c = condition(wait_phase(api, "MailRestore", namespace, "too-big", "Failed"), "Failed")
    assert c is not None and c["reason"] == "TargetTooSmall"
    assert "bigger plan" in c["message"]
    # The server was never stopped for it.
    server = wait_ready(api, namespace, "alice")
    assert "vpes.io/restoring" not in (server["metadata"].get("annotations") or {})


def test_a_deleted_servers_backups_are_kept_for_the_retention_then_removed(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str
) -> None:
    api.apply(server_body("alice", namespace, spec(plan)))
    server = wait_ready(api, namespace, "alice")
    api.create(backup_body("kept", namespace, "alice"))
    repository = wait_for(
        lambda: (
            (api.get(API_VERSION, "MailBackup", namespace, "kept") or {}).get("status") or {}
        ).get("repository"),
        "the backup's repository",
    )
    key = f"backup-key-{namespace}-alice-{server['metadata']['uid'].replace('-', '')[:8]}"
    secret = api.get("v1", "Secret", "vpes-system", key)  # the key: not in the namespace
    assert secret is not None
    bucket = base64.b64decode(secret["data"]["bucket"]).decode()
    user = f"vpes-repository-{Repository.parse(repository).label}"
    assert bucket == f"{s3.bucket}-{Repository.parse(repository).label}"
    assert s3.client("iam").get_user(UserName=user)["User"]["Path"] == "/vpes/"
    prefix = f"vpes/{repository}"
    s3.s3().put_object(Bucket=bucket, Key=f"{prefix}/config", Body=b"a repository")

    api.delete(API_VERSION, "PersonalMailServer", namespace, "alice")
    kept = wait_for(
        lambda: (
            ((api.get("v1", "Secret", "vpes-system", key) or {}).get("metadata") or {})
            .get("annotations", {})
            .get("vpes.io/expires-at")
        ),
        "the key marked with its expiry",
    )
    assert kept.endswith("Z")
    assert s3.s3().list_objects_v2(Bucket=bucket)["KeyCount"] == 1  # kept for the retention
    wait_for(
        lambda: api.get("v1", "Secret", "vpes-system", key) is None,
        "the repository and its key removed after the retention",
        timeout=60,
    )
    assert api.get(API_VERSION, "MailBackup", namespace, "kept") is None
    # Its bucket and its identity went with it.
    assert bucket not in {b["Name"] for b in s3.s3().list_buckets()["Buckets"]}
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchEntity"):
        s3.client("iam").get_user(UserName=user)


def test_a_restore_waits_while_its_repository_is_in_use(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str
) -> None:
    """A backup's `unlock --remove-all` or `forget --prune` must never run under a
    restore of the same repository, whichever server or namespace each is for."""
    api.apply(server_body("bob", namespace, spec(plan)))
    wait_ready(api, namespace, "bob")
    repository = Repository.parse(f"{namespace}/src-0123abcd")
    api.create(backup_body("done", namespace, "src-gone"))
    wait_phase(api, "MailBackup", namespace, "done", "Failed")
    api.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{namespace}/mailbackups/done/status",
        body={
            "status": {
                "phase": "Completed",
                "snapshotId": "0123abcd",
                "repository": repository.path,
                "totalBytes": 1024,
                "completedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        },
        content_type="application/merge-patch+json",
    )
    # A backup Job of that repository, still running (of another server, elsewhere).
    running = api.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "backup-running",
                "namespace": namespace,
                "labels": {
                    "vpes.io/server": "src",
                    "vpes.io/component": "backup",
                    LABEL_REPOSITORY: repository.label,
                },
            },
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "localhost/none"}],
                    }
                },
            },
        }
    )
    api.create(restore_body("meanwhile", namespace, "done", "bob"))

    def waiting() -> dict[str, Any] | None:
        obj = api.get(API_VERSION, "MailRestore", namespace, "meanwhile") or {}
        message = (obj.get("status") or {}).get("message") or ""
        return obj if "waiting for" in message and "backup-running" in message else None

    obj = wait_for(waiting, "the restore to wait for the running backup", timeout=60)
    assert obj["status"]["phase"] == "Pending"
    assert not api.list("batch/v1", "Job", namespace, labels="vpes.io/component=restore")
    api.delete("batch/v1", "Job", namespace, running["metadata"]["name"], propagation="Background")
    wait_for(lambda: waiting() is None, "the restore to go on once the backup ended", timeout=60)
