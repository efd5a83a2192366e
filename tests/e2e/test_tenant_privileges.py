"""What the tenant's root can do on the real node (containerd, runc), read from inside.

The tenant container starts as root: Postfix's master and Dovecot's master
start their own processes as other users (vmail, postfix, dovecot, dovenull)
and so need root's SETUID/SETGID. Everything else about that root is taken
away, and this reads it back from the kernel rather than from the pod spec:
PID 1 and every process of the container have exactly the capabilities
builders.workload.CAPABILITIES lists in their bounding set, no new privileges
(no set-uid binary or file capability can add any), the runtime's seccomp
filter, a read-only root filesystem; the mail user's processes have no
capability at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from vpes_devcluster import Cluster
from vpes_operator import API_VERSION
from vpes_operator.builders.workload import CAPABILITIES
from vpes_operator.clients.kube import Kube
from vpes_operator.render import layout

from tests.e2e import support
from tests.integration.operator_support import OperatorProcess, wait_ready

# capability(7) numbers.
CAP_NUMBERS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
}


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from support.start_operator(
        cluster, images["tenant"], tmp_path_factory.mktemp("operator-privileges")
    )


def _status(cluster: Cluster, ns: str, pod: str) -> dict[str, dict[str, str]]:
    """/proc/<pid>/status fields of every process of the container, by pid."""
    script = (
        "for d in /proc/[0-9]*; do p=${d#/proc/}; "
        "grep -E '^(Uid|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' $d/status 2>/dev/null "
        '| sed "s|^|$p |"; done'
    )
    out = cluster.kubectl("exec", "-n", ns, pod, "--", "sh", "-c", script, timeout=30).stdout
    procs: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        pid, key, *values = line.split()
        procs.setdefault(pid, {})[key.rstrip(":")] = values[0]
    return procs


def test_the_tenants_root_holds_only_the_listed_capabilities_under_seccomp(
    cluster: Cluster, api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    plan = support.small_plan(api)
    try:
        address = support.create_server(api, namespace, "alice", plan, "privileges.example")
        wait_ready(api, namespace, "alice", timeout=240)
        pod = support.tenant_pod(api, namespace, "alice")["metadata"]["name"]
        # Mail in, so that more of both daemons' processes exist.
        host = support.service_ip(api, namespace, "alice")
        subject = f"hello {uuid.uuid4().hex}"
        support.send(host, "carol@privileges.example", address, subject)
        support.wait_subjects(host, address, [subject])
        procs = _status(cluster, namespace, pod)
        allowed = sum(1 << CAP_NUMBERS[c] for c in CAPABILITIES)
        assert procs["1"]["Uid"] == "0"  # vpes-init: root, for the two masters
        for pid, fields in procs.items():
            assert int(fields["CapBnd"], 16) == allowed, (pid, fields)
            assert fields["NoNewPrivs"] == "1", (pid, fields)
            assert fields["Seccomp"] == "2", (pid, fields)
            if fields["Uid"] == str(layout.VMAIL_UID):
                assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 0, (pid, fields)
        assert any(f["Uid"] != "0" for f in procs.values())  # the masters' own users
        touch = cluster.kubectl(
            *["exec", "-n", namespace, pod, "--", "sh", "-c"],
            "touch /etc/probe 2>/dev/null && echo writable || echo read-only",
            timeout=30,
        )
        assert touch.stdout.strip() == "read-only"
    finally:
        api.delete(API_VERSION, "MailPlan", None, plan)
