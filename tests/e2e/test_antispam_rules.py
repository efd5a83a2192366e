"""The edge's antispam rules moved by a FleetUpgrade on the real node, with the chart's
operator (its RBAC, admission policy and NetworkPolicies): good rules pass the canary
pod's real scan, roll the antispam Deployment and are then what Rspamd judges by (a
message with the rules' word is rejected), and survive a `helm upgrade`; rules Rspamd
cannot parse stop at the canary (its pod never turns ready) and are rolled back, the
live antispam unchanged and still scanning."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from vpes_devcluster import Cluster, chart
from vpes_devcluster.node import build_images
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.fleet.antispam import ANNOTATION_RULES, LABEL_TRACK, rules_hash
from vpes_operator.models.fleet import TERMINAL

from tests.integration.operator_support import wait_for

RELEASE = "asrules"  # not "vpes", "platform" nor "mail" (the other modules' releases)
NAMESPACE = "vpes-asrules"
DEPLOYMENT = f"{RELEASE}-antispam"
WORD = "zorblaxquux"
GOOD = {
    "multimap.conf": (
        'VPES_E2E_WORD {\n  type = "header";\n  header = "Subject";\n  regexp = true;\n'
        '  map = "${LOCAL_CONFDIR}/local.d/vpes-e2e-words.map";\n  score = 20.0;\n}\n'
    ),
    "vpes-e2e-words.map": f"/{WORD}/i\n",
}
BAD = {"multimap.conf": 'VPES_E2E_BAD { type = "header"\n score = ;; }}\n'}


@pytest.fixture(scope="module")
def antispam(cluster: Cluster, core: client.CoreV1Api) -> Iterator[dict[str, Any]]:
    """The chart with its antispam (no MX: the rules are judged by scanning in the pod);
    the chart values, for a later `helm upgrade`."""
    built = build_images("operator", "rspamd")
    cluster.real_node().import_images(built.values())
    values = chart.values(
        built["operator"],
        "localhost/vpes-tenant:unused",  # no server runs here
        "localhost/vpes-backup:unused",
        antispam_image=built["rspamd"],
    )
    values["operator"]["replicas"] = 1
    values["billing"]["enabled"] = False
    values["plans"] = []
    values["edge"]["antispam"]["training"] = {"enabled": False}
    chart.install(cluster, RELEASE, NAMESPACE, values, timeout="5m")
    try:
        yield values
    finally:
        chart.uninstall(cluster, RELEASE, NAMESPACE)
        core.delete_namespace(NAMESPACE)


def _config_map(api: Kube, name: str, data: dict[str, str]) -> None:
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": data,
        }
    )


def _upgrade(api: Kube, config_map: str, timeout: int) -> str:
    name = f"fup-rules-{uuid.uuid4().hex[:6]}"
    api.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": {"antispam": {"rulesConfigMap": config_map}, "healthTimeoutSeconds": timeout},
        }
    )
    return name


def _ended(api: Kube, name: str, timeout: float) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        obj = api.get(API_VERSION, "FleetUpgrade", None, name)
        status = (obj or {}).get("status") or {}
        return status if status.get("phase") in TERMINAL else None

    return wait_for(final, f"FleetUpgrade {name} to end", timeout=timeout, interval=3)


def _live_pods(api: Kube) -> list[dict[str, Any]]:
    pods = api.list("v1", "Pod", NAMESPACE, labels=f"vpes.io/component=antispam,!{LABEL_TRACK}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _scan(cluster: Cluster, subject: str) -> str:
    """rspamc's report on a message with `subject`, from inside a live antispam pod."""
    pod = _live_pods_name(cluster)
    message = (
        f"From: carol@sender.example\r\nTo: dave@example.org\r\nSubject: {subject}\r\n"
        "Date: Mon, 07 Dec 2026 06:00:00 +0000\r\nMessage-ID: <e2e@sender.example>\r\n\r\n"
        "Hello there.\r\n"
    )
    out = cluster.kubectl(
        "exec", "-i", "-n", NAMESPACE, pod, "-c", "rspamd", "--",
        "rspamc", "-h", "127.0.0.1:11333",
        input=message,
    )  # fmt: skip
    return str(out.stdout)


def _live_pods_name(cluster: Cluster) -> str:
    out = cluster.kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", f"vpes.io/component=antispam,!{LABEL_TRACK}",
        "--field-selector", "status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}",
    )  # fmt: skip
    return str(out.stdout).strip()


def _template_hash(api: Kube) -> str | None:
    live = api.get("apps/v1", "Deployment", NAMESPACE, DEPLOYMENT)
    assert live is not None
    annotations = live["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(ANNOTATION_RULES)


def test_new_antispam_rules_pass_a_canary_and_bad_ones_are_rolled_back(
    cluster: Cluster, api: Kube, antispam: dict[str, Any]
) -> None:
    assert "Action: reject" not in _scan(cluster, f"buy {WORD} now")

    _config_map(api, "rules-good", GOOD)
    start = time.monotonic()
    good = _upgrade(api, "rules-good", timeout=240)
    done = _ended(api, good, timeout=420)
    print(f"good rules: Succeeded in {time.monotonic() - start:.0f} s")
    assert done["phase"] == "Succeeded", done
    digest = rules_hash(GOOD)
    assert done["antispam"]["liveHash"] == digest, done
    assert _template_hash(api) == digest
    assert api.get("apps/v1", "Deployment", NAMESPACE, f"{DEPLOYMENT}-canary") is None
    wait_for(lambda: len(_live_pods(api)) == 1, "the old antispam pod gone", timeout=120)
    report = _scan(cluster, f"buy {WORD} now")
    assert "Action: reject" in report and "VPES_E2E_WORD" in report, report
    assert "Action: reject" not in _scan(cluster, "lunch on friday")
    header, row = cluster.kubectl("get", "fup", good).stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "IMAGE", "RULES", "PHASE"], header
    assert row.split()[:3] == [good, "rules-good", "Succeeded"], row  # no image: empty

    # The chart never renders the rules nor the annotation: an upgrade keeps both.
    chart.install(cluster, RELEASE, NAMESPACE, antispam, timeout="5m")
    assert _template_hash(api) == digest
    rules = api.get("v1", "ConfigMap", NAMESPACE, f"{DEPLOYMENT}-rules")
    assert rules is not None and rules["data"] == GOOD

    _config_map(api, "rules-bad", BAD)
    start = time.monotonic()
    bad = _upgrade(api, "rules-bad", timeout=60)
    done = _ended(api, bad, timeout=240)
    print(
        f"bad rules: {done.get('phase')} in {time.monotonic() - start:.0f} s: {done.get('message')}"
    )
    assert done["phase"] == "RolledBack", done
    assert "canary" in done["message"] and "ucl parser error" in done["message"], done
    assert done["currentWave"] == 1, done
    assert _template_hash(api) == digest
    wait_for(
        lambda: api.get("apps/v1", "Deployment", NAMESPACE, f"{DEPLOYMENT}-canary") is None,
        "the canary Deployment deleted",
        timeout=60,
    )
    report = _scan(cluster, f"buy {WORD} now")
    assert "Action: reject" in report and "VPES_E2E_WORD" in report, report
    events = cluster.kubectl(
        "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={bad}",
        "-o", "jsonpath={.items[*].reason}", check=False,
    )  # fmt: skip
    assert "CanaryStarted" in events.stdout and "RolledBack" in events.stdout, events.stdout
