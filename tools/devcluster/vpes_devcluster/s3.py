"""A real S3-protocol server on loopback for the backup tests and the demo: moto's server.

Why moto: it is already a test dependency (a PyPI wheel, nothing to build),
starts in about a second, speaks the S3 REST protocol with SigV4 (restic's
minio-go client and boto3 both talk to it unchanged) and, with
INITIAL_NO_AUTH_ACTION_COUNT, checks access keys and signatures like S3 does:
after the first few calls (which create the IAM user and its key) every
request with a wrong key or signature is refused with 403, and every request is
checked against its user's IAM policies: the action, and the resource ARN
(bucket, or bucket/key). It serves the IAM API on the same port, so the
operator makes each repository's own user there as it would at AWS. What it
does not evaluate: policy Conditions (an `s3:prefix` condition is ignored, so
listing is confined only by the bucket in the resource ARN; hence a bucket per
repository) and Resource ARNs of IAM actions (it checks them against "*"). It
keeps objects in memory, which suits tests and benchmarks of a few GiB on this
machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from vpes_devcluster import proc_records
from vpes_devcluster.procs import free_port, terminate

# The provider's keys, as the operator holds them: S3, and IAM to make each
# repository's own user (at AWS the IAM part would be confined to the users under
# the path /vpes/; moto checks IAM actions against "*" only).
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
    ],
}


@dataclass
class S3Server:
    """moto_server on 127.0.0.1 with one IAM user (the provider's) allowed everything on
    S3 and IAM."""

    log_dir: Path
    bucket: str = "vpes-backups"
    host: str = "127.0.0.1"
    port: int = 0
    access_key_id: str = ""
    secret_access_key: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, detach: bool = False, record: Path | None = None) -> None:
        """`record` (the demo): the process, its port and keys are recorded there
        (`proc_records`), so that a later command reuses or stops it."""
        self.port = self.port or free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / "moto.log").open("wb")
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        moto = Path(sys.executable).with_name("moto_server")
        args = [str(moto), "-H", self.host, "-p", str(self.port)]
        self.proc = subprocess.Popen(
            proc_records.python_argv(record, *args) if record else args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=detach,  # the demo's outlives the command that started it
        )
        if record:  # at once: stopped by `down` even if what follows fails
            proc_records.write(record, self.proc.pid, proc_records.python_marker(record))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1)  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start; see {self.log_dir}") from None
                time.sleep(0.2)
        # The three unauthenticated calls: the user, its key, its policy.
        iam = self.client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName="vpes")
        key = iam.create_access_key(UserName="vpes")["AccessKey"]
        iam.put_user_policy(UserName="vpes", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]
        self.s3().create_bucket(Bucket=self.bucket)
        if record:
            proc_records.write(
                record,
                self.proc.pid,
                proc_records.python_marker(record),
                host=self.host,
                port=self.port,
                key=self.access_key_id,
                secret=self.secret_access_key,
                iam=True,  # the provider's user may manage IAM (older records: S3 only)
            )

    def client(self, service: str, key: str | None = None, secret: str | None = None) -> Any:
        make: Any = boto3.client  # typed per service name; one signature here
        return make(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key or self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
        )

    def s3(self) -> Any:
        return self.client("s3")

    def keys(self, prefix: str, bucket: str = "") -> list[str]:
        """Keys under `prefix` in `bucket` (empty: the provider's bucket)."""
        pages = (
            self.s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket or self.bucket, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None
