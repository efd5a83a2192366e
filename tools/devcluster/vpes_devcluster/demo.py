"""`make demo`: a local control plane with a real node, vpes installed, the operator,
two customers whose mail servers really run side by side and take and serve mail.

    python -m vpes_devcluster.demo up   [--state DIR]   everything, then a mail in and out
    python -m vpes_devcluster.demo down [--state DIR]   stop all of it

`up` starts the control plane with a real node (kubelet on containerd, kube-proxy,
CoreDNS, kube-router enforcing NetworkPolicy), an S3 server for backups (moto's)
and stripe-mock for billing (both on the node's address, which pods reach); installs
the platform the way a provider does, `helm install charts/vpes` with the operator
image (the operator, two replicas electing a leader, and billing); applies two
plans and two customers (Alice
on Personal, Carol on Family, each in a namespace of its own); waits until both
servers are Ready; sends each a message through its Service and reads it back
over IMAP; and backs Alice's up. Everything keeps running after `up` returns, so the demo can be
explored with kubectl and any mail client (the command prints how).
"""

from __future__ import annotations

import argparse
import contextlib
import email
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

from . import chart, demo_fleet, proc_records, published_dns
from .binaries import repo_root
from .cluster import Cluster
from .demo_mail import refused, round_trip, send_between
from .demo_panel import dav_check, panel_check, web_check, webmail_check
from .errors import ClusterError
from .node import build_images
from .node_config import NODE_IP, POD_CIDR
from .platform import OPERATOR_NAMESPACE
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
# The chart's dns.edgeWebHost (its default): vpes-web answers /dav there.
EDGE_WEB_HOST = "web.example.net"
SAMPLE_PRICE = "price_personal"  # examples/plan-personal.yaml
S3_SECRET = "vpes-backup-s3"  # noqa: S105 (a Secret's name)


# Every process `up` starts is recorded in the state directory (`proc_records`): a
# second `up` reuses what still runs and replaces what does not; `down` stops them all.
S3_RECORD = "s3.json"
STRIPE_DIR = "stripe"
RELEASE = "vpes"
# What demos started before the platform ran in the cluster left: `down` stops it.
OPERATOR_RECORD = "operator.pid"
BILLING_DIR = "billing"


def start_s3(state: Path, host: str = NODE_IP) -> S3Server:
    """The demo's S3 server (on `host`: the backup Jobs' pods reach it on the node's
    address); its pid, address and keys recorded in state/s3.json."""
    record = state / S3_RECORD
    saved = proc_records.running(record)
    # One started before the operator gave each repository its own IAM user (no "iam"
    # in its record) cannot serve backups now: it is replaced.
    reusable = saved is not None and "secret" in saved.data and saved.data.get("iam")
    if saved is not None and reusable and saved.data.get("host") == host:
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


def start_stripe(state: Path, host: str = NODE_IP) -> str:
    """stripe-mock, Stripe's API for the in-cluster billing (on `host`: pods reach the
    node's address); its pid and port recorded in state/stripe; its URL."""
    from .stripe_mock import StripeMock

    mock = StripeMock(state / STRIPE_DIR, detach=True, host=host)
    saved = proc_records.running(mock.record)
    if saved is not None and saved.data.get("host") == host:
        return f"http://{host}:{saved.data['port']}"
    proc_records.stop(mock.record)  # one that died, or on another address
    mock.start()
    return mock.url


def install(cluster: Cluster, images: dict[str, str], s3: S3Server, stripe_url: str) -> None:
    """`helm upgrade --install` the platform, its S3 credentials in a Secret."""
    values = chart.values(
        images["operator"],
        images["tenant"],
        images["backup"],
        s3_endpoint=s3.endpoint,
        s3_bucket=s3.bucket,
        edge_image=images["edge"],
        antispam_image=images["rspamd"],
        dav_image=images["dav"],
        webmail_image=images["webmail"],
        webmail_db_image=images["webmail-db"],
    )
    values["billing"]["stripeApiBase"] = stripe_url
    # The relay's mail reaches the edge's MX from its pod's address: SPF lists the pods.
    values["dns"]["outboundAddresses"] = [POD_CIDR]
    keys = {"access-key-id": s3.access_key_id, "secret-access-key": s3.secret_access_key}
    # The panel's address (its links, cookies and the Origin its forms must come from)
    # is its Service's, known once the Service exists: a first install makes it.
    panel = service_url(cluster, "panel")
    if panel:
        values.setdefault("panel", {})["publicUrl"] = panel
    chart.install(cluster, RELEASE, OPERATOR_NAMESPACE, values, {S3_SECRET: keys})
    if not panel:
        values.setdefault("panel", {})["publicUrl"] = service_url(cluster, "panel")
        chart.install(cluster, RELEASE, OPERATOR_NAMESPACE, values, {S3_SECRET: keys})


def _through_the_edge(cluster: Cluster) -> None:
    """Each customer's mail in through the shared MX and read through the login proxy."""
    mx, proxy = edge_address(cluster, "edge-mx"), edge_address(cluster, "edge-proxy")
    for _, name, address, password, *_ in CUSTOMERS:
        subject = round_trip(mx, address, password, 120, imap_host=proxy, proxied=True)
        print(
            f"{name}: {subject!r} went in through the edge's MX ({mx}:25) and was read"
            f" through its login proxy ({proxy}:143), both behind a PROXY header"
        )
    (_, sender, from_address, from_password, *_), (_, receiver, to_address, to_password, *_) = (
        CUSTOMERS[:2]
    )
    # The customers publish the TXT records their servers' status asks for (SPF,
    # DKIM, DMARC): the edge's MX checks them.
    published_dns.publish_servers(cluster, [(c[0], c[1]) for c in CUSTOMERS])
    raw = send_between(proxy, (from_address, from_password), (to_address, to_password))
    print(
        f"{sender} -> {receiver}: sent through the proxy's submission port (587), out"
        f" through the relay, in through the MX; {_signatures(raw)}; the MX's Rspamd"
        f" found {_verdicts(raw)}"
    )


def _verdicts(raw: bytes) -> str:
    """SPF, DKIM and DMARC as the Authentication-Results header the MX added says."""
    header = str(email.message_from_bytes(raw).get("Authentication-Results") or "")
    found = [w.strip() for w in header.replace("\n", " ").split(";")[1:]]
    names = [v.split(" ", 1)[0] for v in found if v.split("=", 1)[0] in ("spf", "dkim", "dmarc")]
    return ", ".join(names) or "no verdicts (no Authentication-Results header)"


def _signatures(raw: bytes) -> str:
    """Which keys signed a delivered message (the DKIM-Signature headers' d= and a=)."""
    signed = [
        str(value) for name, value in email.message_from_bytes(raw).items()
        if name.lower() == "dkim-signature"
    ]  # fmt: skip
    if not signed:
        return "NOT signed (no DKIM-Signature header)"
    tags = [dict(t.strip().split("=", 1) for t in s.split(";") if "=" in t) for s in signed]
    keys = ", ".join(f"{t.get('d', '?').strip()} {t.get('a', '?').strip()}" for t in tags)
    return f"signed by the relay with {keys}"


def edge_address(cluster: Cluster, component: str) -> str:
    """The ClusterIP of the edge's MX or login proxy Service (kube-proxy routes the
    host's own connections to it, as a load balancer would)."""
    out = cluster.kubectl(
        "get", "service", f"{RELEASE}-{component}", "-n", OPERATOR_NAMESPACE,
        "-o", "jsonpath={.spec.clusterIP}",
    )  # fmt: skip
    return out.stdout.strip()


def service_url(cluster: Cluster, component: str) -> str:
    """http://<ClusterIP> of the chart's `<release>-<component>` Service ("": none yet)."""
    out = cluster.kubectl(
        "get", "service", f"{RELEASE}-{component}", "-n", OPERATOR_NAMESPACE,
        "-o", "jsonpath={.spec.clusterIP}", check=False,
    )  # fmt: skip
    ip = out.stdout.strip() if out.returncode == 0 else ""
    return f"http://{ip}" if ip else ""


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


def stop_processes(state: Path) -> None:
    """Stop every process `up` recorded in `state` (SIGTERM, SIGKILL after a bound)
    and remove the records: stripe-mock and S3 (and the host operator and billing
    of demos started before the platform ran in the cluster)."""
    from vpes_devcluster import billing_dev as devtools

    proc_records.stop(state / STRIPE_DIR / "stripe-mock.pid")
    proc_records.stop(state / S3_RECORD)
    proc_records.stop(state / OPERATOR_RECORD)
    devtools.stop_billing(state / BILLING_DIR)


def up(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    print("building the platform's images (once) ...", flush=True)
    names = ("operator", "tenant", "dav", "backup", "edge", "rspamd", "webmail", "webmail-db")
    images = build_images(*names)
    cluster = Cluster(state / "cluster", nodes=0, node=True)
    if not cluster.running():
        print("starting the control plane and a real node ...", flush=True)
        cluster.start()
    cluster.real_node().import_images(images.values())
    s3 = start_s3(state)
    stripe_url = start_stripe(state)
    print("helm install charts/vpes (CRDs, RBAC, the operator and billing) ...", flush=True)
    install(cluster, images, s3, stripe_url)
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
    _through_the_edge(cluster)
    print(f"backed up to S3: {backup_sample(cluster)}", flush=True)
    billing = service_url(cluster, "billing")
    print(f"billing (Stripe test mode, stripe-mock): sign up at {billing}/signup")
    panel = service_url(cluster, "panel")
    shown = panel_check(panel, SAMPLE_ADDRESS, SAMPLE_PASSWORD)
    print(f"customer panel: {panel}/login as {SAMPLE_ADDRESS}: {shown}", flush=True)
    web, domain = service_url(cluster, "web"), SAMPLE_ADDRESS.rpartition("@")[2]
    print(f"vpes-web ({web}, Host autoconfig.{domain}): {web_check(web, domain)}", flush=True)
    calendar = dav_check(web, EDGE_WEB_HOST, SAMPLE_ADDRESS, SAMPLE_PASSWORD)
    print(f"calendar and contacts ({web}/dav/, Host {EDGE_WEB_HOST}): {calendar}", flush=True)
    webmail = service_url(cluster, "webmail")
    shown = webmail_check(webmail, SAMPLE_ADDRESS, SAMPLE_PASSWORD)
    print(f"webmail (Roundcube): {webmail}/ as {SAMPLE_ADDRESS}: {shown}", flush=True)
    _fleet_upgrade(cluster, images["tenant"])
    _antispam_rules(cluster)
    _print_access(cluster)
    return 0


def _fleet_upgrade(cluster: Cluster, tenant_image: str) -> None:
    """Every customer's server to a new tenant image, then mail through each again."""
    print("fleet upgrade: every server to a new tenant image, canary first ...", flush=True)
    print(demo_fleet.upgrade(cluster, tenant_image, ["personal", "family"]), flush=True)
    for namespace, name, address, password, *_ in CUSTOMERS:
        wait_ready(cluster, namespace, name)
        subject = round_trip(service_ip(cluster, namespace, name), address, password, 180)
        print(f"{name}: on the new image, {subject!r} went in over SMTP and was read over IMAP")


def _antispam_rules(cluster: Cluster) -> None:
    """The edge's Rspamd to new rules; the MX then refuses mail by them."""
    print("antispam rules: the edge's Rspamd to new rules, canary first ...", flush=True)
    print(demo_fleet.antispam_rules(cluster, OPERATOR_NAMESPACE), flush=True)
    mx = edge_address(cluster, "edge-mx")
    _, name, address, *_ = CUSTOMERS[0]
    subject = f"cheap {demo_fleet.SPAM_WORD} offer"
    deadline = time.monotonic() + 120
    answer = refused(mx, address, subject)
    while answer is None and time.monotonic() < deadline:  # the old pods drain
        time.sleep(3)
        answer = refused(mx, address, subject)
    if answer is None:
        raise ClusterError(f"the MX took {subject!r} to {address} despite the new rules")
    print(f"{name}: {subject!r} through the edge's MX is refused by the new rules: {answer}")


def _print_access(cluster: Cluster) -> None:
    print("explore it with:")
    print(f"  export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
    print(f'  export PATH={shlex.quote(str(cluster.bin_dir))}:"$PATH"')
    print("  kubectl get vpes -A; kubectl describe pms alice -n customer-alice")
    for namespace, name, address, password, *_ in CUSTOMERS:
        host = service_ip(cluster, namespace, name)
        print(f"{name} ({address} / {password}):")
        print(f"  kubectl logs -n {namespace} statefulset/{name} -c mail   # -c dav: its calendars")
        print(f"  kubectl exec -it -n {namespace} {name}-0 -c mail -- bash")
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
        for d in ("s3", STRIPE_DIR, BILLING_DIR):
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
