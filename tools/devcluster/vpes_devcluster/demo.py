"""`make demo`: a local control plane with a real node, vpes installed, the operator,
two customers whose mail servers really run side by side and take and serve mail.

    python -m vpes_devcluster.demo up   [--state DIR]   everything, then a mail in and out
    python -m vpes_devcluster.demo down [--state DIR]   stop all of it

`up` starts the control plane with a real node (kubelet on containerd, kube-proxy,
CoreDNS, kube-router enforcing NetworkPolicy), an S3 server for backups (moto's,
on the node's address), the operator as the chart's ServiceAccount, and the
billing service against stripe-mock; applies two plans and two customers (Alice
on Personal, Carol on Family, each in a namespace of its own); waits until both
servers are Ready; sends each a message through its Service and reads it back
over IMAP; and backs Alice's up. Everything keeps running after `up` returns, so the demo can be
explored with kubectl and any mail client (the command prints how).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import proc_records
from .binaries import repo_root
from .cluster import Cluster
from .demo_mail import round_trip
from .errors import ClusterError
from .node import build_images
from .node_config import NODE_IP, POD_CIDR
from .platform import OPERATOR_NAMESPACE, install_platform
from .s3 import S3Server

SAMPLE_NAMESPACE = "customer-alice"
SAMPLE = "alice"
SAMPLE_ADDRESS = "alice@example.org"
SAMPLE_PASSWORD = "correct-horse-battery-staple"  # noqa: S105 (examples/server-alice.yaml)
# (namespace, server, login, password, plan file, server file)
CUSTOMERS = (
    (SAMPLE_NAMESPACE, SAMPLE, SAMPLE_ADDRESS, SAMPLE_PASSWORD, "plan-personal", "server-alice"),
    (
        "customer-carol",
        "carol",
        "carol@example.com",
        "staple-battery-horse-correct",  # examples/server-carol.yaml
        "plan-family",
        "server-carol",
    ),
)
SAMPLE_PRICE = "price_personal"  # examples/plan-personal.yaml
S3_SECRET = "vpes-backup-s3"  # noqa: S105 (a Secret's name)


# Every process `up` starts is recorded in the state directory (`proc_records`): a
# second `up` reuses what still runs and replaces what does not; `down` stops them all.
OPERATOR_RECORD = "operator.pid"
S3_RECORD = "s3.json"
BILLING_DIR = "billing"


def start_s3(state: Path, host: str = NODE_IP) -> S3Server:
    """The demo's S3 server (on `host`: the backup Jobs' pods reach it on the node's
    address); its pid, address and keys recorded in state/s3.json."""
    record = state / S3_RECORD
    saved = proc_records.running(record)
    if saved is not None and "secret" in saved.data and saved.data.get("host") == host:
        return S3Server(
            state / "s3",
            host=host,
            port=int(saved.data["port"]),
            access_key_id=str(saved.data["key"]),
            secret_access_key=str(saved.data["secret"]),
        )
    proc_records.stop(record)  # one that never finished starting, or on another address
    s3 = S3Server(state / "s3", host=host)
    s3.start(detach=True, record=record)
    return s3


def operator_env(images: dict[str, str], s3: S3Server) -> dict[str, str]:
    return {
        "VPES_TENANT_IMAGE": images["tenant"],
        "VPES_EDGE_NETWORKS": POD_CIDR,
        "VPES_DNS_DEFAULT_PROVIDER": "manual",
        "VPES_BACKUP_IMAGE": images["backup"],
        "VPES_BACKUP_S3_BUCKET": s3.bucket,
        "VPES_BACKUP_S3_ENDPOINT": s3.endpoint,
        "VPES_BACKUP_S3_CREDENTIALS_SECRET": f"{OPERATOR_NAMESPACE}/{S3_SECRET}",
    }


def start_operator(state: Path, kubeconfig: Path, env: dict[str, str]) -> int:
    record = state / OPERATOR_RECORD
    running = proc_records.running(record)
    if running is not None:
        return running.pid
    proc_records.stop(record)  # recorded but gone: only the record is left to remove
    log = (state / "operator.log").open("ab")
    proc = subprocess.Popen(
        proc_records.python_argv(
            record, "-m", "vpes_operator", "--liveness", "", "--metrics-port", "0"
        ),
        env={**os.environ, "KUBECONFIG": str(kubeconfig), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=repo_root(),
    )
    proc_records.write(record, proc.pid, proc_records.python_marker(record))
    return proc.pid


def wait_ready(cluster: Cluster, namespace: str, name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl(
            "get",
            "pms",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        if out.stdout.strip() == "True":
            return
        time.sleep(1)
    raise ClusterError(f"server {namespace}/{name} did not become Ready within {timeout:.0f}s")


def service_ip(cluster: Cluster, namespace: str, name: str) -> str:
    out = cluster.kubectl(
        "get", "service", name, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    )
    return out.stdout.strip()


def s3_secret(s3: S3Server) -> str:
    def b64(v: str) -> str:
        return base64.b64encode(v.encode()).decode()

    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": S3_SECRET, "namespace": OPERATOR_NAMESPACE},
            "data": {
                "access-key-id": b64(s3.access_key_id),
                "secret-access-key": b64(s3.secret_access_key),
            },
        }
    )


def backup_sample(cluster: Cluster, timeout: float = 180) -> str:
    name = f"{SAMPLE}-demo-{int(time.time())}"
    body = {
        "apiVersion": "vpes.io/v1alpha1",
        "kind": "MailBackup",
        "metadata": {"name": name, "namespace": SAMPLE_NAMESPACE},
        "spec": {"server": SAMPLE},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl(
            "get", "mailbackup", name, "-n", SAMPLE_NAMESPACE, "-o", "json", check=False
        )
        status = (json.loads(out.stdout or "{}").get("status") or {}) if out.stdout else {}
        if status.get("phase") == "Completed":
            return f"{name}: snapshot {status.get('snapshotId')}, {status.get('files')} files"
        if status.get("phase") == "Failed":
            raise ClusterError(f"the sample backup failed: {status.get('message')}")
        time.sleep(1)
    raise ClusterError(f"the sample backup did not complete within {timeout:.0f}s")


def start_billing(cluster: Cluster, state: Path) -> str:
    """The billing service and its stripe-mock, recorded in state/billing; the URL of
    those already running there if both still run (else both are replaced)."""
    from vpes_devcluster import billing_dev as devtools
    from vpes_devcluster.billing_rbac import install_billing

    workdir = state / BILLING_DIR
    url = devtools.running_billing(workdir)
    if url is not None:
        return url
    kubeconfig = install_billing(cluster)
    options = devtools.BillingOptions(price=SAMPLE_PRICE, detach=True)
    billing = devtools.start_billing(kubeconfig, workdir, options)
    return str(billing.url)


def stop_processes(state: Path) -> None:
    """Stop every process `up` recorded in `state` (SIGTERM, SIGKILL after a bound)
    and remove the records: the operator, billing and its stripe-mock, S3."""
    from vpes_devcluster import billing_dev as devtools

    proc_records.stop(state / OPERATOR_RECORD)
    devtools.stop_billing(state / BILLING_DIR)
    proc_records.stop(state / S3_RECORD)


def up(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    print("building the tenant and backup images (once; then cached) ...", flush=True)
    images = build_images("tenant", "backup")
    cluster = Cluster(state / "cluster", nodes=0, node=True)
    if not cluster.running():
        print("starting the control plane and a real node ...", flush=True)
        cluster.start()
    cluster.real_node().import_images(images.values())
    print("installing vpes (CRDs, RBAC) ...", flush=True)
    kubeconfig = install_platform(cluster)
    s3 = start_s3(state)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=s3_secret(s3))
    pid = start_operator(state, kubeconfig, operator_env(images, s3))
    print(f"operator running (pid {pid}, log {state / 'operator.log'})", flush=True)
    examples = repo_root() / "examples"
    for *_, plan, server in CUSTOMERS:
        for doc in (plan, server):
            cluster.kubectl("apply", "--server-side", "-f", str(examples / f"{doc}.yaml"))
    print("waiting for both customers' mail servers to be Ready ...", flush=True)
    for namespace, name, *_ in CUSTOMERS:
        wait_ready(cluster, namespace, name)
    print(cluster.kubectl("get", "vpes", "-A").stdout)
    print(cluster.kubectl("get", "pods", "-A", "-o", "wide").stdout)
    for namespace, name, address, password, *_ in CUSTOMERS:
        host = service_ip(cluster, namespace, name)
        subject = round_trip(host, address, password)
        print(f"{name}: {subject!r} went in over SMTP ({host}:25) and was read over IMAP")
    print(f"backed up to S3: {backup_sample(cluster)}", flush=True)
    url = start_billing(cluster, state)
    print(f"billing (Stripe test mode, stripe-mock): sign up at {url}/signup")
    _print_access(cluster)
    return 0


def _print_access(cluster: Cluster) -> None:
    print("explore it with:")
    print(f"  export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
    print(f'  export PATH={shlex.quote(str(cluster.bin_dir))}:"$PATH"')
    print("  kubectl get vpes -A; kubectl describe pms alice -n customer-alice")
    for namespace, name, address, password, *_ in CUSTOMERS:
        host = service_ip(cluster, namespace, name)
        print(f"{name} ({address} / {password}):")
        print(f"  kubectl logs -n {namespace} statefulset/{name}")
        print(f"  kubectl exec -it -n {namespace} {name}-0 -- bash")
        print(f"  mail client on this machine: IMAP {host}:993, SMTP {host}:25 (its Service's")
        print(
            "  ClusterIP, which kube-proxy routes here), or from elsewhere through a port-forward:"
        )
        print(f"  kubectl port-forward -n {namespace} service/{name} 10993:993 10025:25")
    print("stop it with: make demo-down")


def down(state: Path) -> int:
    stop_processes(state)
    cluster = Cluster(state / "cluster")
    if (state / "cluster").exists():
        cluster.stop(remove=True)
    if state.exists():
        for f in (OPERATOR_RECORD, "operator.log"):
            (state / f).unlink(missing_ok=True)
        for d in ("s3", BILLING_DIR):
            shutil.rmtree(state / d, ignore_errors=True)
        with contextlib.suppress(OSError):
            state.rmdir()
    print("demo stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state", type=Path, default=repo_root() / ".state" / "demo")
    args = parser.parse_args(argv)
    try:
        return up(args.state) if args.command == "up" else down(args.state)
    except ClusterError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
