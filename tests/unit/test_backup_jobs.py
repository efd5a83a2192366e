"""Backup and restore Jobs, repository names, job results and BackupHealthy: pure parts."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from vpes_operator.backup import health, results, schedule, scoping
from vpes_operator.backup.access import Access
from vpes_operator.backup.jobs import JobSpec, Request, job, job_secret, objects_of
from vpes_operator.backup.repository import Repository, job_name
from vpes_operator.backup.store import Credentials
from vpes_operator.errors import ConfigError
from vpes_operator.models.backup import MailBackup
from vpes_operator.models.common import ObjectMeta
from vpes_operator.models.kube import Job, Pod, Secret
from vpes_operator.models.plan import MailPlanSpec, Retention
from vpes_operator.models.server import PersonalMailServer
from vpes_operator.naming import selector_labels
from vpes_operator.render import layout
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(
    backup_s3_bucket="backups",
    backup_s3_endpoint="https://s3.example.net",
    backup_job_s3_endpoint="http://s3.internal:9000",
    backup_image="localhost/vpes-backup:test",
    tenant_node_selector={"vpes.io/mail": "true"},
)
REPO = Repository.of("customer-a", "alice", "0f3c2b1a-9d8e-4c7b-a6f5-e4d3c2b1a098")
REQUEST = Request("vpes.io/v1alpha1", "MailBackup", "alice-manual", "customer-a", "abc-123-def-456")
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def backup_spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "request": REQUEST,
        "server": "alice",
        "repository": REPO,
        "action": "backup",
        "tags": ("vpes", "trigger=manual"),
        "objects": {"server.json": "{}"},
    }
    base.update(kw)
    return JobSpec(**base)


def env_of(obj: dict[str, Any]) -> dict[str, Any]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_repository_names() -> None:
    assert REPO.path == "customer-a/alice-0f3c2b1a"
    assert Repository.parse(REPO.path) == REPO
    assert REPO.prefix(SETTINGS) == "vpes/customer-a/alice-0f3c2b1a"
    url = REPO.url(SETTINGS, "backups-x")
    assert url == "s3:https://s3.example.net/backups-x/vpes/customer-a/alice-0f3c2b1a"
    assert REPO.url(SETTINGS, "b", for_job=True).startswith("s3:http://s3.internal:9000/b/")
    assert REPO.key_secret == "backup-key-customer-a-alice-0f3c2b1a"
    assert job_name("backup", "abc-123-def-456") == "backup-abc123def456"
    with pytest.raises(ValueError, match="not a repository path"):
        Repository.parse("nonsense")


def test_backup_job_mounts_the_volume_read_only_beside_the_running_server() -> None:
    obj = job(backup_spec(tenant_running=True), SETTINGS)
    pod = obj["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mail = next(m for m in container["volumeMounts"] if m["name"] == "mail")
    assert mail == {"name": "mail", "mountPath": "/data/mail", "readOnly": True}
    claim = next(v for v in pod["volumes"] if v["name"] == "mail")["persistentVolumeClaim"]
    assert claim == {"claimName": "alice-mail", "readOnly": True}
    term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"] == selector_labels("alice")
    assert pod["nodeSelector"] == {"vpes.io/mail": "true"}
    # The mail user, nothing more: every mailbox file is its own.
    assert container["securityContext"] == {
        "runAsUser": layout.VMAIL_UID,
        "runAsGroup": layout.VMAIL_GID,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "initContainers" not in pod
    # The objects are readable by that user (a Secret volume's files are root's).
    objects = next(v for v in pod["volumes"] if v["name"] == "objects")["secret"]
    assert objects["defaultMode"] == 0o444
    assert pod["restartPolicy"] == "Never" and obj["spec"]["backoffLimit"] == 0
    assert pod["automountServiceAccountToken"] is False
    # The pod must not look like the tenant to its Service and NetworkPolicy.
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] != selector_labels("alice")["app.kubernetes.io/name"]
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "MailBackup"


def test_secrets_reach_the_pod_only_through_the_job_secret() -> None:
    obj = job(backup_spec(), SETTINGS)
    env = env_of(obj)
    for key in ("RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        assert env[key] == {"secretKeyRef": {"name": "backup-abc123def456-env", "key": key}}
    secret = job_secret(backup_spec(), SETTINGS, Access("pw", "bk", Credentials("AKID", "SK")))
    assert secret["metadata"]["name"] == "backup-abc123def456-env"
    assert "RESTIC_PASSWORD" in secret["data"] and "object-server.json" in secret["data"]
    assert "pw" not in json.dumps(obj)


def test_a_suspended_server_is_backed_up_without_affinity() -> None:
    pod = job(backup_spec(tenant_running=False), SETTINGS)["spec"]["template"]["spec"]
    assert "affinity" not in pod


def test_scheduled_backups_carry_retention() -> None:
    spec = backup_spec(
        retention=Retention(daily=3, weekly=2, monthly=1), forget_tag="trigger=schedule"
    )
    env = env_of(job(spec, SETTINGS))
    assert (env["VPES_KEEP_DAILY"], env["VPES_KEEP_WEEKLY"], env["VPES_KEEP_MONTHLY"]) == (
        "3",
        "2",
        "1",
    )
    assert env["VPES_FORGET_TAG"] == "trigger=schedule"
    assert "VPES_KEEP_DAILY" not in env_of(job(backup_spec(), SETTINGS))


def test_restore_job_writes_the_volume() -> None:
    spec = backup_spec(action="restore", snapshot="7a28598e", overwrite=False, objects={})
    obj = job(spec, SETTINGS)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    mail = next(m for m in container["volumeMounts"] if m["name"] == "mail")
    assert mail["readOnly"] is False
    assert env_of(obj)["VPES_SNAPSHOT"] == "7a28598e"
    assert env_of(obj)["VPES_OVERWRITE"] == "0"
    assert container["securityContext"]["runAsUser"] == layout.VMAIL_UID
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert obj["metadata"]["name"] == "restore-abc123def456"
    # The one root step: the new volume's top directory for the mail group, with
    # CAP_CHOWN alone, before the restore runs.
    (prepare,) = obj["spec"]["template"]["spec"]["initContainers"]
    assert prepare["args"] == ["prepare"] and prepare["image"] == container["image"]
    assert prepare["securityContext"]["runAsUser"] == 0
    assert prepare["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert prepare["securityContext"]["allowPrivilegeEscalation"] is False
    assert prepare["securityContext"]["readOnlyRootFilesystem"] is True
    assert prepare["volumeMounts"] == [{"name": "mail", "mountPath": "/data/mail"}]


def test_objects_of_a_server() -> None:
    server = {
        "apiVersion": "vpes.io/v1alpha1",
        "kind": "PersonalMailServer",
        "metadata": {"name": "alice", "namespace": "a", "uid": "u", "resourceVersion": "9"},
        "spec": {"plan": "personal"},
        "status": {"phase": "Ready"},
    }
    out = objects_of(
        PersonalMailServer.model_validate(server),
        Secret.model_validate({"data": {"passwd": "aGFzaA=="}}),
    )
    doc = json.loads(out["server.json"])
    assert doc["spec"] == {"plan": "personal"} and "status" not in doc
    assert "resourceVersion" not in doc["metadata"]
    assert json.loads(out["credentials.json"]) == {"data": {"passwd": "aGFzaA=="}}


def pod(code: int, message: str, finished: str = "2026-12-01T12:00:00Z") -> Pod:
    term = {"exitCode": code, "message": message, "finishedAt": finished}
    return Pod.model_validate({"status": {"containerStatuses": [{"state": {"terminated": term}}]}})


def test_results_from_termination_messages() -> None:
    ok = json.dumps(
        {
            "ok": True,
            "snapshot": "7a28598e",
            "files": 21,
            "totalBytes": 142,
            "addedBytes": 8946,
            "snapshots": ["7a28598e"],
        }
    )
    code, message = results.termination([pod(1, "old", "2026-12-01T11:00:00Z"), pod(0, ok)])
    r = results.parse(code, message)
    assert r.ok and r.snapshot == "7a28598e" and r.files == 21 and r.total_bytes == 142
    assert r.snapshots == ("7a28598e",)
    bad = results.parse(1, '{"ok":false,"reason":"BucketNotFound","message":"no bucket"}')
    assert (bad.ok, bad.reason, bad.message) == (False, "BucketNotFound", "no bucket")
    none = results.parse(137, "", fallback="DeadlineExceeded: too slow")
    assert (
        none.reason == "NoResult" and "137" in none.message and "DeadlineExceeded" in none.message
    )
    lying = results.parse(1, '{"ok":true}')
    assert not lying.ok


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({}, "Running"),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, "Complete"),
        ({"conditions": [{"type": "Failed", "status": "True"}]}, "Failed"),
        ({"failed": 1}, "Failed"),
    ],
)
def test_job_state(status: dict[str, Any], state: str) -> None:
    assert results.job_state(Job.model_validate({"status": status})) == state
    assert results.job_state(None) == "Missing"


def plan(**backup: Any) -> MailPlanSpec:
    return MailPlanSpec.model_validate({"backup": backup})


@pytest.mark.parametrize(
    ("the_plan", "last", "created", "status", "reason"),
    [
        (plan(schedule="0 3 * * *"), None, T0 - dt.timedelta(hours=2), True, "NoBackupDueYet"),
        (plan(schedule="0 3 * * *"), None, T0 - dt.timedelta(days=2), False, "BackupMissed"),
        (
            plan(schedule="0 3 * * *"),
            T0.replace(hour=3, minute=20),
            T0 - dt.timedelta(days=9),
            True,
            "BackupCurrent",
        ),
        (
            plan(schedule="0 3 * * *"),
            T0 - dt.timedelta(days=1, hours=6),
            T0 - dt.timedelta(days=9),
            False,
            "BackupMissed",
        ),
        (plan(enabled=False), None, T0 - dt.timedelta(days=9), True, "BackupsOff"),
        (plan(schedule="99 * * * *"), None, T0, False, "InvalidSchedule"),
        (None, None, T0, False, "PlanNotFound"),
    ],
)
def test_backup_healthy(
    the_plan: MailPlanSpec | None,
    last: dt.datetime | None,
    created: dt.datetime,
    status: bool,
    reason: str,
) -> None:
    cond = health.check(
        the_plan, last_completed=last, created=created, now=T0, grace=dt.timedelta(hours=1)
    )
    assert (cond.status, cond.reason) == (status, reason)


def test_due_backup_is_the_latest_recent_firing_after_creation() -> None:
    p = plan(schedule="*/30 * * * *")
    grace = dt.timedelta(hours=1)
    assert schedule.due_backup(p, T0 - dt.timedelta(days=1), T0, grace) == T0
    assert schedule.due_backup(p, T0 + dt.timedelta(minutes=1), T0, grace) is None
    daily = plan(schedule="0 3 * * *")  # due at 03:00, 9 hours ago: beyond the grace
    assert schedule.due_backup(daily, T0 - dt.timedelta(days=1), T0, grace) is None
    assert schedule.due_backup(plan(enabled=False), T0 - dt.timedelta(days=1), T0, grace) is None
    request = schedule.backup_request(ObjectMeta(name="alice", namespace="a"), T0)
    assert request["metadata"]["name"] == "alice-202612011200"
    assert request["spec"] == {"server": "alice", "trigger": "Schedule"}


def mbk(name: str, server: str, trigger: str, snapshot: str, phase: str = "Completed") -> Any:
    return MailBackup.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"server": server, "trigger": trigger},
            "status": {"phase": phase, "snapshotId": snapshot},
        }
    )


def test_only_scheduled_backups_whose_snapshot_retention_forgot_are_dropped() -> None:
    backups = [
        mbk("kept", "alice", "Schedule", "aaaa1111"),
        mbk("forgotten", "alice", "Schedule", "bbbb2222"),
        mbk("manual", "alice", "Manual", "cccc3333"),
        mbk("other-server", "bob", "Schedule", "dddd4444"),
        mbk("failed", "alice", "Schedule", "eeee5555", phase="Failed"),
    ]
    assert health.forgotten(backups, "alice", ("aaaa1111",)) == ["forgotten"]
    assert health.forgotten(backups, "alice", ()) == []  # no list from the job: keep all


def test_a_job_gets_the_key_of_its_repository_and_names_its_bucket() -> None:
    own = Access("pw", "backups-0123456789abcdef0123", Credentials("AKIDOWN", "SKOWN"))
    data = job_secret(backup_spec(), SETTINGS, own)["data"]

    def value(key: str) -> str:
        return base64.b64decode(data[key]).decode()

    assert value("AWS_ACCESS_KEY_ID") == "AKIDOWN" and value("AWS_SECRET_ACCESS_KEY") == "SKOWN"
    assert value("RESTIC_REPOSITORY") == (
        "s3:http://s3.internal:9000/backups-0123456789abcdef0123/vpes/customer-a/alice-0f3c2b1a"
    )
    assert "Credentials(***)" in repr(own.credentials) and "SKOWN" not in repr(own)


def test_a_repositorys_own_bucket_user_and_policy() -> None:
    bucket = scoping.bucket_name(SETTINGS, REPO)
    assert bucket == f"backups-{REPO.label}" and len(bucket) <= 63
    assert scoping.user_name(REPO) == f"vpes-repository-{REPO.label}"
    assert len(scoping.user_name(REPO)) <= 64
    prefix = REPO.prefix(SETTINGS)
    statements = scoping.policy(bucket, prefix, own_bucket=True)["Statement"]
    resources = {r for s in statements for r in s["Resource"]}
    # Its own bucket and, within it, its own prefix: nothing else, no wildcard bucket.
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{prefix}/*"}
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:AbortMultipartUpload",
    } | {a for names in scoping.MOTO_ACTIONS.values() for a in names}
    assert not any("Condition" in s for s in statements)
    # In the shared bucket (a repository made before buckets of their own): its prefix.
    shared = scoping.policy("backups", prefix, own_bucket=False)["Statement"]
    listing = next(s for s in shared if "s3:ListBucket" in s["Action"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}
    with pytest.raises(ConfigError, match="at most 42 characters"):
        scoping.bucket_name(SETTINGS.model_copy(update={"backup_s3_bucket": "b" * 43}), REPO)
