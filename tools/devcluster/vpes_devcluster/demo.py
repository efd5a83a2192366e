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
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _operator_pid(state: Path) -> int | None:
    pid_file = state / "operator.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if b"vpes_operator" in cmdline else None


def start_s3(state: Path) -> S3Server:
    """The demo's S3 server; its address and keys in state/s3.json while it runs."""
    record = state / "s3.json"
    if record.exists():
        saved = json.loads(record.read_text())
        if _alive(int(saved["pid"]), b"moto_server"):
            return S3Server(
                state / "s3",
                host=NODE_IP,
                port=int(saved["port"]),
                access_key_id=saved["key"],
                secret_access_key=saved["secret"],
            )
    s3 = S3Server(state / "s3", host=NODE_IP)  # the backup Jobs' pods reach it there
    s3.start(detach=True)
    assert s3.proc is not None
    record.write_text(
        json.dumps(
            {
                "pid": s3.proc.pid,
                "port": s3.port,
                "key": s3.access_key_id,
                "secret": s3.secret_access_key,
            }
        )
    )
    record.chmod(0o600)
    return s3


def _alive(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


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
    running = _operator_pid(state)
    if running:
        return running
    log = (state / "operator.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpes_operator", "--liveness", "", "--metrics-port", "0"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=repo_root(),
    )
    (state / "operator.pid").write_text(str(proc.pid))
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
    from vpes_devcluster import billing_dev as devtools
    from vpes_devcluster.billing_rbac import install_billing

    kubeconfig = install_billing(cluster)
    options = devtools.BillingOptions(price=SAMPLE_PRICE, detach=True)
    billing = devtools.start_billing(kubeconfig, state / "billing", options)
    return str(billing.url)


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
    pid = _operator_pid(state)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _operator_pid(state) is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        from vpes_devcluster import billing_dev as devtools

        devtools.stop_billing(state / "billing")
    record = state / "s3.json"
    if record.exists():
        saved = json.loads(record.read_text())
        if _alive(int(saved["pid"]), b"moto_server"):
            os.kill(int(saved["pid"]), signal.SIGTERM)
        record.unlink()
    cluster = Cluster(state / "cluster")
    if (state / "cluster").exists():
        cluster.stop(remove=True)
    if state.exists():
        for f in ("operator.pid", "operator.log"):
            (state / f).unlink(missing_ok=True)
        for d in ("s3", "billing"):
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
