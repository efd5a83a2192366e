"""A backup Job's S3 key reaches its own server's repository and nothing else.

Backup and restore pods run in the customer's namespace; whatever key their
Secret holds, a compromise of one such pod holds too. S3 here is moto's server
with IAM enforced (every request is checked against its user's policies), the
operator runs as the chart's ServiceAccount and holds the provider's keys. No
backup pod needs to run: the Job's Secret (what its pod reads) is applied before
the Job, and the test uses exactly those values, with a real restic.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from tests.backup_support import backup_env, install_credentials, s3_server
from tests.s3_support import S3Server

from .operator_support import (
    SECRET_VALUES,
    OperatorProcess,
    condition,
    install_platform,
    plan_body,
    server_body,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


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
        tmp_path_factory.mktemp("operator-isolation"),
        backup_env(s3, "localhost/vpes-backup:none"),
    )
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def plan(api: Kube) -> Iterator[str]:
    name = f"iso-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name, backup={"enabled": False}))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def spec(plan: str, domain: str) -> dict[str, Any]:
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": [domain],
        "mailboxes": [{"address": f"a@{domain}"}],
    }


def backup_of(api: Kube, namespace: str, server: str, plan: str) -> dict[str, str]:
    """Back up a new server; what its backup Job's pod is given (its Secret, decoded)."""
    api.apply(server_body(server, namespace, spec(plan, f"{server}.example")))
    wait_ready(api, namespace, server)
    name = f"{server}-now"
    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "MailBackup",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"server": server},
        }
    )

    def job() -> str | None:
        status = (api.get(API_VERSION, "MailBackup", namespace, name) or {}).get("status") or {}
        return status.get("job") if status.get("phase") == "Running" else None

    secret = api.get("v1", "Secret", namespace, f"{wait_for(job, f'{name} Running')}-env")
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def where(env: dict[str, str]) -> tuple[str, str]:
    """(bucket, key prefix) of the Job's RESTIC_REPOSITORY, s3:<endpoint>/<bucket>/<prefix>."""
    path = env["RESTIC_REPOSITORY"].removeprefix("s3:").split("://", 1)[1]
    _, bucket, prefix = path.split("/", 2)
    return bucket, prefix


def restic(env: dict[str, str], home: Path, *args: str) -> str:
    job_env = {k: v for k, v in env.items() if k.startswith(("RESTIC_", "AWS_"))}
    out = subprocess.run(
        ["restic", "--no-cache", *args],
        env={**job_env, "AWS_DEFAULT_REGION": "us-east-1", "HOME": str(home), "PATH": os.defpath},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def s3_as(s3: S3Server, env: dict[str, str]) -> Any:
    make: Any = boto3.client
    return make(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def denied(call: Any, **kwargs: Any) -> str:
    """The S3 error code of a call that must be refused."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kwargs)
    return str(e.value.response["Error"]["Code"])


def test_a_jobs_key_reaches_its_own_repository_and_no_other(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str, tmp_path: Path
) -> None:
    alice = backup_of(api, namespace, "alice", plan)
    bob = backup_of(api, namespace, "bob", plan)

    # The provider's keys are in no Secret of the customer's namespace.
    for secret in api.list("v1", "Secret", namespace):
        for raw in (secret.get("data") or {}).values():
            assert s3.secret_access_key not in base64.b64decode(raw).decode(errors="replace")
    assert alice["AWS_ACCESS_KEY_ID"] != bob["AWS_ACCESS_KEY_ID"]

    # Each Job's own key does a real restic backup of its own repository.
    data = tmp_path / "mail"
    data.mkdir()
    (data / "message").write_text("Subject: kept\n\nhello\n")
    for env in (alice, bob):
        restic(env, tmp_path, "init")
        restic(env, tmp_path, "backup", "--host", "test", str(data))
        assert '"short_id"' in restic(env, tmp_path, "snapshots", "--json")

    # Alice's key against Bob's repository: nothing.
    bucket, prefix = where(bob)
    before = sorted(
        o["Key"]
        for o in s3.s3().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])
    )
    assert f"{prefix}/config" in before
    thief = s3_as(s3, alice)
    refused = {
        "list": denied(thief.list_objects_v2, Bucket=bucket, Prefix=f"{prefix}/"),
        "list bucket": denied(thief.list_objects_v2, Bucket=bucket),
        "list buckets": denied(thief.list_buckets),
        "read": denied(thief.get_object, Bucket=bucket, Key=f"{prefix}/config"),
        "overwrite": denied(thief.put_object, Bucket=bucket, Key=f"{prefix}/config", Body=b"x"),
        "delete": denied(thief.delete_object, Bucket=bucket, Key=f"{prefix}/config"),
        "delete bucket": denied(thief.delete_bucket, Bucket=bucket),
    }
    assert set(refused.values()) == {"AccessDenied"}, refused
    # A multi-object delete answers 200, with each key's refusal.
    many = thief.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in before]})
    assert not many.get("Deleted")
    assert sorted(e["Key"] for e in many["Errors"]) == before
    assert {e["Code"] for e in many["Errors"]} == {"AccessDenied"}
    after = sorted(
        o["Key"]
        for o in s3.s3().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])
    )
    assert after == before
    assert s3.s3().get_object(Bucket=bucket, Key=f"{prefix}/config")["Body"].read() != b"x"
    restic(bob, tmp_path, "check")  # Bob's repository is whole


def test_an_s3_without_iam_says_what_to_do(
    api: Kube, operator: OperatorProcess, s3: S3Server, plan: str, namespace: str
) -> None:
    """The provider's keys may not manage IAM users: the backup fails, saying so, and no
    Job is started with the provider's keys instead."""
    iam = s3.client("iam")
    iam.create_user(UserName="s3-only")
    iam.put_user_policy(
        UserName="s3-only",
        PolicyName="s3",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName="s3-only")["AccessKey"]
    SECRET_VALUES.add(key["SecretAccessKey"])
    api.apply(server_body("carol", namespace, spec(plan, "carol.example")))
    wait_ready(api, namespace, "carol")
    s3_only = S3Server(s3.log_dir, access_key_id=key["AccessKeyId"])
    install_credentials(api, s3_only, secret_key=key["SecretAccessKey"])
    try:
        api.create(
            {
                "apiVersion": API_VERSION,
                "kind": "MailBackup",
                "metadata": {"name": "no-iam", "namespace": namespace},
                "spec": {"server": "carol"},
            }
        )

        def failed() -> dict[str, Any] | None:
            obj = api.get(API_VERSION, "MailBackup", namespace, "no-iam")
            return obj if ((obj or {}).get("status") or {}).get("phase") == "Failed" else None

        c = condition(wait_for(failed, "the backup Failed"), "Failed")
    finally:
        install_credentials(api, s3)
    assert c is not None and c["reason"] == "S3IdentityUnavailable"
    assert "backup.s3.isolation" in c["message"] and "shared" in c["message"]
    assert not api.list("batch/v1", "Job", namespace, labels="vpes.io/server=carol")
