"""The shared edge on the real node, installed by the chart as a provider installs it:
the operator renders the edge's maps from every PersonalMailServer, the inbound MX
(Postfix with postscreen, PROXY protocol on port 25) takes mail for every hosted
domain and hands it to the right tenant, Rspamd judges it as a milter.

Mail comes from "outside": a client on the host through the MX's Service, with the
PROXY header a load balancer would send, claiming a public client address."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import dkim
import pytest
from kubernetes import client
from vpes_devcluster import Cluster, chart, demo_mail, node_config, published_dns
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.node import build_images
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube
from vpes_operator.fleet.antispam import ANNOTATION_RULES, rules_hash

from tests.e2e import support
from tests.e2e.edge_support import (
    CLIENT,
    GTUBE,
    deliver,
    inbox,
    message,
    rcpt,
    rules_config_map,
    rules_upgrade,
    upgrade_ended,
)
from tests.integration.operator_support import wait_for, wait_ready

RELEASE = "mail"  # not "vpes" (the other modules' operators) nor "platform"
NAMESPACE = "vpes-mail"


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster, core: client.CoreV1Api, images: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """The platform with its edge; the chart's values (for a later `helm upgrade`)."""
    built = build_images("operator", "edge", "rspamd")
    cluster.real_node().import_images(built.values())
    values = chart.values(
        built["operator"],
        images["tenant"],
        images["backup"],
        bcrypt_rounds=4,
        dkim_key_bits=1024,
        edge_image=built["edge"],
        antispam_image=built["rspamd"],
    )
    values["operator"]["replicas"] = 1
    values["billing"]["enabled"] = False
    values["plans"] = []  # cluster-wide objects: the test makes its own plan
    values["edge"]["relay"]["pollSeconds"] = 5  # the operator reads the relay's counts
    # What the relay defers (a server it has not loaded yet, a limit released) the
    # tenants try again after 10 s instead of a minute (Postfix's backoff grows).
    values["edge"]["relay"]["tenantRetrySeconds"] = 10
    # The relay's mail reaches the MX from its pod's address: SPF says the pods send.
    values["dns"]["outboundAddresses"] = [node_config.POD_CIDR]
    values["tenant"]["readinessPeriodSeconds"] = support.READINESS_SECONDS
    chart.install(cluster, RELEASE, NAMESPACE, values, timeout="5m")
    try:
        yield values
    finally:
        chart.uninstall(cluster, RELEASE, NAMESPACE)
        core.delete_namespace(NAMESPACE)


@pytest.fixture(scope="module")
def edge(installed: dict[str, Any], core: client.CoreV1Api) -> str:
    """The MX Service's address."""
    svc = core.read_namespaced_service(f"{RELEASE}-edge-mx", NAMESPACE)
    assert svc.spec is not None
    return str(svc.spec.cluster_ip)


def routed(api: Kube, *domains: str) -> dict[str, Any] | None:
    maps = api.get("v1", "ConfigMap", NAMESPACE, f"{RELEASE}-edge-maps")
    text = ((maps or {}).get("data") or {}).get("domains", "")
    present = {line.split()[0] for line in text.splitlines() if line.strip()}
    return maps if set(domains) <= present else None


def routed_servers(api: Kube, edge: str, namespace: str, *names: str) -> list[str]:
    """A server per name (domain ``<name>-edge.example``), each Ready, in the edge's
    maps and taken by the MX at `edge`; their mailboxes' addresses."""
    plan = support.small_plan(api)
    addresses = [
        support.create_server(api, namespace, name, plan, f"{name}-edge.example") for name in names
    ]
    for name in names:
        wait_ready(api, namespace, name, timeout=240)
    domains = [f"{name}-edge.example" for name in names]
    wait_for(lambda: routed(api, *domains), "all routed", 60)
    # The MX itself routes them: the kubelet hands a ConfigMap's change to the pod up
    # to a minute after the API has it.
    for address in addresses:
        wait_for(lambda a=address: rcpt(edge, a)[0] == 250, f"the MX takes {address}", 120, 2)
    return addresses


def test_the_edge_takes_mail_for_each_tenant_and_refuses_what_it_must(
    api: Kube, edge: str, namespace: str
) -> None:
    alice, bob = routed_servers(api, edge, namespace, "alice", "bob")

    # Mail from outside reaches each tenant through the one MX, with the client's
    # real address (from the PROXY header) recorded by the edge.
    deliver(edge, message(alice, "to alice through the edge"))
    deliver(edge, message(bob, "to bob through the edge"))
    for name, address in (("alice", alice), ("bob", bob)):
        host = support.service_ip(api, namespace, name)
        subject = f"to {name} through the edge"

        def arrived(host: str = host, address: str = address, subject: str = subject) -> bytes:
            try:
                return inbox(host, address).get(subject, b"")
            except (OSError, imaplib.IMAP4.error):
                return b""

        raw = wait_for(arrived, f"{subject} in {address}'s INBOX", timeout=120)
        assert f"[{CLIENT}]".encode() in raw, "the client's real address is lost"

    # An unknown recipient is refused at RCPT, at the edge, never accepted and bounced.
    code, _ = rcpt(edge, "nobody@alice-edge.example")
    assert code == 550
    # A domain nobody hosts: no relaying.
    code, _ = rcpt(edge, "victim@elsewhere.example")
    assert code >= 500

    # GTUBE is rejected for a Standard plan, at the end of DATA, by Rspamd.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        deliver(edge, message(alice, "gtube", GTUBE))
    assert refused.value.smtp_code == 554

    # A suspended server: 4xx at the edge (the sender retries), not a bounce.
    server = api.get(API_VERSION, "PersonalMailServer", namespace, "bob")
    assert server is not None
    api.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "PersonalMailServer",
            "metadata": {"name": "bob", "namespace": namespace},
            "spec": {**server["spec"], "suspended": True},
        }
    )

    def deferred() -> int | None:
        code, _ = rcpt(edge, bob)
        return code if 400 <= code < 500 else None

    assert wait_for(deferred, "bob's mail deferred at the edge", timeout=60) == 450
    # alice is untouched by bob's suspension.
    assert rcpt(edge, alice)[0] == 250


def proxy_login(edge_proxy: str, address: str, password: str) -> imaplib.IMAP4:
    """IMAP through the login proxy's public port: the PROXY header a load balancer
    sends, then STARTTLS, then LOGIN."""

    class Proxied(imaplib.IMAP4):
        def _create_socket(self, timeout: float | None) -> socket.socket:
            sock = socket.create_connection((self.host, self.port), timeout)
            sock.sendall(f"PROXY TCP4 {CLIENT} {self.host} 40001 {self.port}\r\n".encode())
            return sock

    imap = Proxied(edge_proxy, 143, timeout=30)
    imap.starttls(ssl_context=support.tls())
    imap.login(address, password)
    return imap


def test_imap_logins_through_the_proxy_reach_their_own_tenant(
    api: Kube, core: client.CoreV1Api, edge: str, namespace: str
) -> None:
    dave, erin = routed_servers(api, edge, namespace, "dave", "erin")
    svc = core.read_namespaced_service(f"{RELEASE}-edge-proxy", NAMESPACE)
    assert svc.spec is not None
    proxy = str(svc.spec.cluster_ip)
    deliver(edge, message(dave, "for dave only"))

    def dave_sees_it() -> bool:
        try:
            imap = proxy_login(proxy, dave, support.PASSWORD)
        except (OSError, imaplib.IMAP4.error):
            return False
        try:
            imap.select("INBOX", readonly=True)
            _, found = imap.search(None, "SUBJECT", '"for dave only"')
            return bool(found[0].split())
        finally:
            imap.logout()

    wait_for(dave_sees_it, "dave reads his mail through the proxy", timeout=120)
    # erin's login lands in erin's server: her INBOX does not have dave's mail.
    imap = proxy_login(proxy, erin, support.PASSWORD)
    imap.select("INBOX", readonly=True)
    assert imap.search(None, "SUBJECT", '"for dave only"')[1][0].split() == []
    imap.logout()
    # A wrong password and an address nobody hosts fail alike (no enumeration).
    errors = []
    for address, password in ((dave, "wrong-password"), ("x@nobody-here.example", "pw")):
        with pytest.raises(imaplib.IMAP4.error) as failed:
            proxy_login(proxy, address, password)
        errors.append(str(failed.value))
    assert errors[0] == errors[1], errors
    # No password before TLS.
    plain = socket.create_connection((proxy, 143), timeout=30)
    plain.sendall(f"PROXY TCP4 {CLIENT} {proxy} 40002 143\r\n".encode())
    reader = plain.makefile("rb")
    reader.readline()  # the greeting
    plain.sendall(f"a LOGIN {dave} {support.PASSWORD}\r\n".encode())
    answer = reader.readline()
    plain.close()
    assert not answer.startswith(b"a OK"), answer
    # The client's real address reached the tenant's Dovecot (its log says rip=).
    pod = support.tenant_pod(api, namespace, "dave")["metadata"]["name"]
    logs = core.read_namespaced_pod_log(pod, namespace)
    assert f"rip={CLIENT}" in logs, "the tenant saw the proxy, not the client"


def _trail(cluster: Cluster, namespace: str, raw: bytes) -> str:
    """The delivered message's header and the logs of each hop, for a failure."""
    out = [raw.split(b"\r\n\r\n", 1)[0].decode(errors="replace")]
    hops = [
        ("-n", namespace, "-l", naming.pod_selector("frank"), "-c", "mail"),
        ("-n", NAMESPACE, "-l", "vpes.io/edge-role=relay"),
        ("-n", NAMESPACE, "-l", "vpes.io/edge-role=mx"),
        ("-n", NAMESPACE, f"deploy/{RELEASE}-antispam"),
        ("-n", "kube-system", "deploy/coredns"),
    ]
    for selector in hops:
        try:
            out.append(cluster.kubectl("logs", "--tail=80", "--prefix", *selector).stdout)
        except ClusterError as e:  # a diagnostic: say why it is missing
            out.append(f"kubectl logs {' '.join(selector)}: {e}")
    look = (
        "cd /run/vpes/relay && ls -la .. . current/ current/keys"
        " && cat current/keytable-* current/signing-*.lua current/senders"
    )
    try:
        out.append(
            cluster.kubectl(
                "exec", "-n", NAMESPACE, f"deploy/{RELEASE}-edge-relay", "--", "sh", "-c", look
            ).stdout
        )
    except ClusterError as e:
        out.append(f"the relay's generation: {e}")
    return "\n\n".join(out)


def condition(api: Kube, namespace: str, name: str, kind: str) -> dict[str, Any]:
    server = api.get(API_VERSION, "PersonalMailServer", namespace, name) or {}
    found = [c for c in (server.get("status") or {}).get("conditions") or [] if c["type"] == kind]
    return found[0] if found else {}


def dkim_record(api: Kube, namespace: str, name: str, domain: str) -> bytes:
    """The DKIM TXT record the operator asks the provider to publish for `domain`."""
    server = api.get(API_VERSION, "PersonalMailServer", namespace, name) or {}
    records = (server.get("status") or {}).get("dnsRecords") or []
    value = next(
        r["value"]
        for r in records
        if r["type"] == "TXT" and r["name"] == f"vpes._domainkey.{domain}"
    )
    if value.startswith('"'):  # split into <=255-byte strings, as published
        value = "".join(part for part in value.split('"')[1::2])
    return str(value).encode()


def test_mail_between_tenants_goes_out_signed_and_the_hourly_limit_holds(
    api: Kube, cluster: Cluster, core: client.CoreV1Api, edge: str, namespace: str
) -> None:
    plan = support.small_plan(api, outboundPerHour=3)  # recipients an hour
    frank = support.create_server(api, namespace, "frank", plan, "frank-edge.example")
    gina = support.create_server(api, namespace, "gina", plan, "gina-edge.example")
    for name in ("frank", "gina"):
        wait_ready(api, namespace, name, timeout=240)
    wait_for(lambda: routed(api, "frank-edge.example", "gina-edge.example"), "both routed", 60)
    svc = core.read_namespaced_service(f"{RELEASE}-edge-proxy", NAMESPACE)
    assert svc.spec is not None
    proxy = str(svc.spec.cluster_ip)
    sender, reader = (frank, support.PASSWORD), (gina, support.PASSWORD)

    # Both customers publish what their servers' status asks (SPF, DKIM, DMARC).
    published_dns.publish_servers(cluster, [(namespace, "frank"), (namespace, "gina")])

    # Submission through the login proxy, out through the relay (signed with frank's
    # key), in through the MX, whose Rspamd finds SPF, DKIM and DMARC passing; the
    # signature verifies on its own against the record the operator asked for.
    raw = demo_mail.send_between(proxy, sender, reader, timeout=240)
    if b"d=frank-edge.example" not in raw:
        pytest.fail(f"not signed for frank-edge.example:\n{_trail(cluster, namespace, raw)}")
    results = message_from_bytes(raw).get_all("Authentication-Results") or []
    verdicts = ("dkim=pass", "spf=pass", "dmarc=pass")
    if len(results) != 1 or not all(v in str(results[0]) for v in verdicts):
        pytest.fail(f"Rspamd's verdicts are not all pass:\n{_trail(cluster, namespace, raw)}")
    record = dkim_record(api, namespace, "frank", "frank-edge.example")
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record), "DKIM does not verify"
    assert condition(api, namespace, "frank", "Deliverable").get("status") == "True"

    # Three recipients an hour: the first went, two more go, the fourth is held.
    subjects = [f"hourly {i} {uuid.uuid4().hex[:6]}" for i in range(3)]
    for subject in subjects:
        demo_mail.submit(proxy, sender, gina, subject)

    def held() -> dict[str, Any] | None:
        c = condition(api, namespace, "frank", "Deliverable")
        return c if c.get("reason") == "OutboundLimitReached" else None

    held_condition = wait_for(held, "frank held for his plan's limit", timeout=180)
    assert held_condition["status"] == "False"
    assert "vpes.io/release-outbound" in held_condition["message"]

    def arrived() -> list[str]:
        try:
            return [s for s in subjects if demo_mail.fetch(proxy, gina, support.PASSWORD, s)]
        except (OSError, imaplib.IMAP4.error):
            return []

    wait_for(lambda: len(arrived()) == 2, "two of the three delivered", timeout=120)
    # gina's own server is not held by frank's limit.
    assert condition(api, namespace, "gina", "Deliverable").get("status") == "True"

    # The fleet admin releases frank: the held message goes at the next attempt.
    cluster.kubectl(
        "annotate", "pms", "frank", "-n", namespace,
        "vpes.io/release-outbound=e2e-release-1", "--overwrite",
    )  # fmt: skip
    wait_for(
        lambda: condition(api, namespace, "frank", "Deliverable").get("status") == "True",
        "frank released",
        timeout=120,
    )
    # The held message waits in frank's own queue; the tenant tries the relay again
    # (10 s, then backing off to at most five minutes apart; no pickup or public qmgr
    # to flush it by hand), and the release reaches the relay with the next maps.
    wait_for(
        lambda: len(arrived()) == 3,
        "the held message delivered after the release",
        timeout=420,
        interval=3,
    )


WORD = "zorblaxquux"
GOOD_RULES = {
    "multimap.conf": (
        'VPES_E2E_WORD {\n  type = "header";\n  header = "Subject";\n  regexp = true;\n'
        '  map = "${LOCAL_CONFDIR}/local.d/vpes-e2e-words.map";\n  score = 20.0;\n}\n'
    ),
    "vpes-e2e-words.map": f"/{WORD}/i\n",
}
BAD_RULES = {"multimap.conf": 'VPES_E2E_BAD { type = "header"\n score = ;; }}\n'}
ANTISPAM = f"{RELEASE}-antispam"


def _rules_hash_live(api: Kube) -> str | None:
    live = api.get("apps/v1", "Deployment", NAMESPACE, ANTISPAM)
    assert live is not None
    annotations = live["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(ANNOTATION_RULES)


def _refused(mx: str, to: str, subject: str) -> int | None:
    """The MX's refusal code of a message (None: taken)."""
    try:
        deliver(mx, message(to, subject))
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    return None


def test_the_edge_s_antispam_moves_to_new_rules_through_a_canary_and_bad_ones_roll_back(
    api: Kube, cluster: Cluster, edge: str, namespace: str, installed: dict[str, Any]
) -> None:
    """Last in the module: its rules stay on this edge. Good rules pass the canary
    pod's real scan, roll the antispam Deployment, and then the MX refuses mail by
    them; they survive a `helm upgrade`; rules Rspamd cannot parse stop at the canary
    and are rolled back, the live rules unchanged."""
    (hank,) = routed_servers(api, edge, namespace, "hank")
    assert _refused(edge, hank, f"buy {WORD} now") is None  # not a rule yet

    rules_config_map(api, NAMESPACE, "rules-good", GOOD_RULES)
    good = rules_upgrade(api, "rules-good", timeout=240)
    done = upgrade_ended(api, good, timeout=420)
    assert done["phase"] == "Succeeded", done
    digest = rules_hash(GOOD_RULES)
    assert done["antispam"]["liveHash"] == digest and _rules_hash_live(api) == digest, done
    assert api.get("apps/v1", "Deployment", NAMESPACE, f"{ANTISPAM}-canary") is None
    wait_for(
        lambda: _refused(edge, hank, f"buy {WORD} now") == 554,
        "the MX refusing mail by the new rule",
        timeout=120,
        interval=3,
    )
    assert _refused(edge, hank, "lunch on friday") is None
    header, row = cluster.kubectl("get", "fup", good).stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "IMAGE", "RULES", "PHASE"], header
    assert row.split()[:3] == [good, "rules-good", "Succeeded"], row  # no image: empty

    # The chart never renders the rules nor the annotation: an upgrade keeps both.
    chart.install(cluster, RELEASE, NAMESPACE, installed, timeout="5m")
    assert _rules_hash_live(api) == digest
    rules = api.get("v1", "ConfigMap", NAMESPACE, f"{ANTISPAM}-rules")
    assert rules is not None and rules["data"] == GOOD_RULES

    rules_config_map(api, NAMESPACE, "rules-bad", BAD_RULES)
    bad = rules_upgrade(api, "rules-bad", timeout=60)
    done = upgrade_ended(api, bad, timeout=240)
    assert done["phase"] == "RolledBack", done
    assert "canary" in done["message"] and "ucl parser error" in done["message"], done
    assert done["currentWave"] == 1 and _rules_hash_live(api) == digest, done
    wait_for(
        lambda: api.get("apps/v1", "Deployment", NAMESPACE, f"{ANTISPAM}-canary") is None,
        "the canary Deployment deleted",
        timeout=60,
    )
    assert _refused(edge, hank, f"buy {WORD} again") == 554  # the good rules still judge
    events = cluster.kubectl(
        "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={bad}",
        "-o", "jsonpath={.items[*].reason}", check=False,
    )  # fmt: skip
    assert "CanaryStarted" in events.stdout and "RolledBack" in events.stdout, events.stdout
