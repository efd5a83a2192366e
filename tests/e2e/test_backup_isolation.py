"""Backup and restore pods on the real node: S3 only, as the mail user.

A MailBackup of a running server completes through the operator, its Job's pod
under its NetworkPolicy (S3 is reachable with it). Then a pod made from the
very same builders as that Job's (its labels, its security settings, its
policy; only its command is `sleep`) shows, from inside, that every connection
goes through without the policy (the tenant's own policy removed, the operator
stopped so it stays removed) and that with it only S3 answers: not the
tenant's SMTP port (pod and Service), not the API server, not the cluster DNS
(the endpoint here is an address: no look-up needed). Its processes run as the
mail user with no capability, no new privileges, seccomp on, root read-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from vpes_devcluster import Cluster
from vpes_devcluster.node_config import CLUSTER_DNS_IP, NODE_IP, POD_CIDR
from vpes_operator import API_VERSION, naming
from vpes_operator.backup import egress, jobs
from vpes_operator.backup.jobs import JobSpec, Request
from vpes_operator.backup.repository import Repository
from vpes_operator.clients.kube import Kube
from vpes_operator.render import layout
from vpes_operator.settings import OperatorSettings

from tests.backup_support import backup_env, install_credentials, s3_server
from tests.e2e import support
from tests.e2e.test_backup_restore import wait_phase
from tests.integration.operator_support import OperatorProcess, install_platform, wait_for
from tests.s3_support import S3Server

API_CLUSTER_IP = "10.96.0.1"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from s3_server(tmp_path_factory, host=NODE_IP)


@pytest.fixture(scope="module")
def env(s3: S3Server, images: dict[str, str]) -> dict[str, str]:
    return backup_env(
        s3,
        images["backup"],
        VPES_TENANT_IMAGE=images["tenant"],
        VPES_EDGE_NETWORKS=POD_CIDR,
        VPES_DNS_DEFAULT_PROVIDER="manual",
        **support.READINESS_ENV,
    )


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    api: Kube,
    s3: S3Server,
    env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    install_credentials(api, s3)
    op = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator-backup-isolation"), env)
    op.start()
    yield op
    op.stop()


def _probe(api: Kube, spec: JobSpec, settings: OperatorSettings) -> str:
    """A pod that is the Job's pod in all but its command."""
    template = jobs.job(spec, settings)["spec"]["template"]
    pod_spec: dict[str, Any] = template["spec"]
    pod_spec["terminationGracePeriodSeconds"] = 0
    container = pod_spec["containers"][0]
    container.update(command=["sleep", "infinity"], args=[], env=[])
    name = f"backup-probe-{uuid.uuid4().hex[:6]}"
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": spec.request.namespace, **template["metadata"]},
            "spec": pod_spec,
        }
    )

    def running() -> bool:
        pod = api.get("v1", "Pod", spec.request.namespace, name) or {}
        return (pod.get("status") or {}).get("phase") == "Running"

    wait_for(running, f"probe pod {name} Running", timeout=120)
    return name


def test_a_backup_pod_reaches_only_s3_and_runs_as_the_mail_user(
    cluster: Cluster,
    api: Kube,
    operator: OperatorProcess,
    s3: S3Server,
    env: dict[str, str],
    namespace: str,
) -> None:
    ns = namespace
    plan = support.small_plan(api)
    try:
        support.create_server(api, ns, "alice", plan, "isolated.example")
        server = wait_for(
            lambda: api.get(API_VERSION, "PersonalMailServer", ns, "alice"), "alice", timeout=30
        )
        tenant = support.tenant_pod(api, ns, "alice")
        # A real backup, its pod under its NetworkPolicy: S3 answers.
        api.create(
            {
                "apiVersion": API_VERSION,
                "kind": "MailBackup",
                "metadata": {"name": "isolated", "namespace": ns},
                "spec": {"server": "alice"},
            }
        )
        done = wait_phase(api, "MailBackup", ns, "isolated", "Completed", timeout=240)
        # The Job's policy goes with the Job once the result is recorded.
        wait_for(
            lambda: (
                api.get("networking.k8s.io/v1", "NetworkPolicy", ns, done["status"]["job"]) is None
            ),
            "the backup Job's NetworkPolicy removed",
            timeout=30,
        )

        settings = OperatorSettings.from_env(env)
        spec = JobSpec(
            request=Request("v1", "Pod", "probe", ns, uuid.uuid4().hex),
            server="alice",
            repository=Repository.of(ns, "alice", server["metadata"]["uid"]),
            action="backup",
            tenant_running=True,
        )
        # Owned by nothing: the namespace goes at the end of the test.
        policy = egress.network_policy(spec, settings, egress.resolve(settings))
        policy["metadata"].pop("ownerReferences")
        endpoint = urlsplit(s3.endpoint)
        s3_target = (str(endpoint.hostname), int(endpoint.port or 80))
        targets = {
            (tenant["status"]["podIP"], 25),
            (support.service_ip(api, ns, "alice"), 25),
            (API_CLUSTER_IP, 443),
            (CLUSTER_DNS_IP, 53),
            s3_target,
        }

        # Without any policy (the tenant's removed, the operator stopped so that it
        # stays removed) every connection goes through: the test can fail.
        operator.stop()
        api.delete("networking.k8s.io/v1", "NetworkPolicy", ns, naming.network_policy("alice"))
        probe = _probe(api, spec, settings)
        opened = wait_for(
            lambda: (o := support.open_ports(cluster, ns, probe, targets)) == targets and o,
            "every connection open without a policy",
            timeout=60,
        )
        assert opened == targets

        api.apply(policy)
        wait_for(
            lambda: support.open_ports(cluster, ns, probe, targets) == {s3_target},
            "only S3 open under the backup pods' NetworkPolicy",
            timeout=60,
        )

        # Inside: the mail user, no capability, no new privileges, seccomp, read-only root.
        out = cluster.kubectl(
            *["exec", "-n", ns, probe, "--", "sh", "-c"],
            "id -u; id -g; grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status;"
            " touch /probe 2>/dev/null && echo writable || echo read-only",
            timeout=30,
        ).stdout.split()
        assert out[:2] == [str(layout.VMAIL_UID), str(layout.VMAIL_GID)]
        status = dict(zip(out[2:-1:2], out[3:-1:2], strict=True))
        assert status == {
            "CapPrm:": "0000000000000000",
            "CapEff:": "0000000000000000",
            "NoNewPrivs:": "1",
            "Seccomp:": "2",
        }
        assert out[-1] == "read-only"
    finally:
        operator.start()
        api.delete(API_VERSION, "MailPlan", None, plan)
