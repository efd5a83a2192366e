"""Calendar and contacts in a tenant (builders/dav.py): the `dav` container, its volumes,
the Service port and the NetworkPolicy rule, only on plans with features.calendar;
the settings they are made from; what a missing DAV image is reported as."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from vpes_operator.builders import ServerInputs, dav, desired_objects
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.network import EDGE_ROLE_LABEL, network_policy, service
from vpes_operator.builders.workload import statefulset
from vpes_operator.credentials import Material
from vpes_operator.models.kube import Pod
from vpes_operator.models.plan import Features, MailPlanSpec
from vpes_operator.podstate import blocker
from vpes_operator.render.layout import PASSWD_KEY, PORTS, SECRETS_DIR, USAGE_PORT_NAME
from vpes_operator.settings import OperatorSettings

from .render_support import PASSWORDS, PLAN, SETTINGS, make_spec

pytestmark = pytest.mark.unit

OWNER = Owner(name="alice", namespace="customer-1", uid="0f3c2b1a", plan="personal")
CALENDAR = PLAN.model_copy(update={"features": Features(calendar=True)})
WEB = {"app.kubernetes.io/instance": "vpes", "vpes.io/component": "web"}
DAV_SETTINGS = SETTINGS.model_copy(
    update={
        "dav_image": "registry.example/vpes-dav:1.2",
        "dav_memory_request": "48Mi",
        "dav_memory_limit": "96Mi",
        "dav_cpu_request": "20m",
        "web_pod_labels": WEB,
    }
)


def pod_spec(plan: MailPlanSpec, settings: OperatorSettings = DAV_SETTINGS) -> dict[str, Any]:
    sts = statefulset(OWNER, plan, settings, suspended=False)
    return sts["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def dav_container(plan: MailPlanSpec = CALENDAR) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(plan)["containers"] if c["name"] == "dav"]
    return found  # type: ignore[no-any-return]


# -- the StatefulSet -----------------------------------------------------------------


def test_no_dav_container_nor_its_volumes_without_calendar() -> None:
    spec = pod_spec(PLAN)
    assert [c["name"] for c in spec["containers"]] == ["mail"]
    assert {v["name"] for v in spec["volumes"]} == {"config", "secrets", "mail", "run", "tmp"}


def test_calendar_adds_the_dav_container_and_leaves_the_mail_container_alone() -> None:
    without, with_ = pod_spec(PLAN), pod_spec(CALENDAR)
    assert [c["name"] for c in with_["containers"]] == ["mail", "dav"]
    assert with_["containers"][0] == without["containers"][0]
    assert with_["volumes"][: len(without["volumes"])] == without["volumes"]
    container = dav_container()
    assert container["image"] == "registry.example/vpes-dav:1.2"
    assert container["imagePullPolicy"] == DAV_SETTINGS.image_pull_policy
    assert container["ports"] == [{"name": "dav", "containerPort": 5232, "protocol": "TCP"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "dav"}
    assert container["resources"] == {
        "requests": {"cpu": "20m", "memory": "48Mi"},
        "limits": {"memory": "96Mi"},
    }


def test_the_dav_container_runs_unprivileged_on_a_read_only_root() -> None:
    assert dav_container()["securityContext"] == {
        "runAsUser": 5000,
        "runAsGroup": 5000,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_dav_container_mounts_the_passwd_file_alone_its_data_and_scratch() -> None:
    mounts = {m["mountPath"]: m for m in dav_container()["volumeMounts"]}
    assert set(mounts) == {SECRETS_DIR, "/var/lib/vpes-dav", "/tmp"}
    assert mounts[SECRETS_DIR] == {
        "name": "dav-secrets",
        "mountPath": SECRETS_DIR,
        "readOnly": True,
    }
    # The server's own mail volume: backups and restores carry the calendars.
    assert mounts["/var/lib/vpes-dav"] == {
        "name": "mail",
        "mountPath": "/var/lib/vpes-dav",
        "subPath": ".dav",
    }
    volumes = {v["name"]: v for v in pod_spec(CALENDAR)["volumes"]}
    secret = volumes["dav-secrets"]["secret"]
    assert secret["secretName"] == "alice-credentials"
    # Only the passwd-file: no TLS key, relay password, DKIM keys or hash store. Its
    # reader is the mail user (5000) and the kubelet makes the file root's (no fsGroup).
    assert secret["items"] == [{"key": PASSWD_KEY, "path": PASSWD_KEY, "mode": 0o444}]
    assert volumes["dav-tmp"] == {"name": "dav-tmp", "emptyDir": {"sizeLimit": "16Mi"}}
    # The mail container's secrets stay root-only, and it does not mount the DAV ones.
    mail = pod_spec(CALENDAR)["containers"][0]
    assert "dav-secrets" not in {m["name"] for m in mail["volumeMounts"]}
    assert volumes["secrets"]["secret"]["defaultMode"] == 0o400


# -- the Service and the NetworkPolicy -----------------------------------------------


def test_the_service_has_the_dav_port_only_with_calendar() -> None:
    mail = [p.name for p in PORTS]
    assert [p["name"] for p in service(OWNER)["spec"]["ports"]] == mail
    assert [p["name"] for p in service(OWNER, calendar=False)["spec"]["ports"]] == mail
    ports = service(OWNER, calendar=True)["spec"]["ports"]
    assert [p["name"] for p in ports] == [*mail, "dav"]
    assert ports[-1] == {"name": "dav", "port": 5232, "targetPort": "dav", "protocol": "TCP"}


def _admitting(rules: list[dict[str, Any]], ns: str, labels: dict[str, str]) -> set[str]:
    """The ports the ingress rules open to a pod with `labels` in namespace `ns`
    (matchLabels and matchExpressions ANDed, as the API server reads them)."""
    out: set[str] = set()
    for rule in rules:
        for peer in rule["from"]:
            if "podSelector" not in peer:
                continue
            want_ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            selector = peer["podSelector"]
            if want_ns != ns or not selector["matchLabels"].items() <= labels.items():
                continue
            if any(
                labels.get(e["key"]) not in e["values"]
                for e in selector.get("matchExpressions", [])
            ):
                continue
            out |= {str(p["port"]) for p in rule["ports"]}
    return out


@pytest.mark.parametrize("dedicated", [False, True])
def test_only_vpes_web_reaches_the_dav_port_and_only_that(dedicated: bool) -> None:
    def ingress(calendar: bool) -> list[dict[str, Any]]:
        policy = network_policy(OWNER, DAV_SETTINGS, dedicated_address=dedicated, calendar=calendar)
        return policy["spec"]["ingress"]  # type: ignore[no-any-return]

    ns = DAV_SETTINGS.operator_namespace
    mx = {**DAV_SETTINGS.edge_pod_labels, EDGE_ROLE_LABEL: "mx"}
    mail = {p.name for p in PORTS}
    # No calendar: nobody is let in on a DAV port, web pods reach nothing.
    assert _admitting(ingress(False), ns, WEB) == set()
    # Every other rule is as it was.
    others = [r for r in ingress(True) if all(p["port"] != "dav" for p in r["ports"])]
    assert others == ingress(False)
    # Calendar: the web pods, in the operator's namespace, on the DAV port alone.
    assert _admitting(ingress(True), ns, WEB) == {"dav"}
    assert _admitting(ingress(True), "customer-1", WEB) == set()
    assert _admitting(ingress(True), ns, {"vpes.io/component": "web"}) == set()
    # The mail ports stay the edge's, and the edge gets no DAV port.
    assert _admitting(ingress(True), ns, mx) == mail
    # The operator: the usage report, and the fleet upgrades' gate (SMTP and IMAP greetings).
    assert _admitting(ingress(True), ns, dict(DAV_SETTINGS.operator_pod_labels)) == {
        USAGE_PORT_NAME,
        "smtp",
        "imap",
    }
    (rule,) = [r for r in ingress(True) if any(p["port"] == "dav" for p in r["ports"])]
    assert rule["ports"] == [{"port": "dav", "protocol": "TCP"}]


# -- all of it, from the plan --------------------------------------------------------


def _objects(plan: MailPlanSpec) -> dict[str, dict[str, Any]]:
    hashes = {a: "{BLF-CRYPT}$2b$04$" + "x" * 53 for a in PASSWORDS}
    sources = dict.fromkeys(hashes, "secret")
    material = Material(password_hashes=hashes, password_sources=sources, tls_cert="c", tls_key="k")
    inputs = ServerInputs(OWNER, make_spec(), plan, DAV_SETTINGS, material)
    return {o["kind"]: o for o in desired_objects(inputs)}


def test_the_plan_turns_every_dav_object_on_and_off() -> None:
    def dav_parts(objects: dict[str, dict[str, Any]]) -> tuple[bool, bool, bool]:
        pod = objects["StatefulSet"]["spec"]["template"]["spec"]
        rules = objects["NetworkPolicy"]["spec"]["ingress"]
        return (
            any(c["name"] == "dav" for c in pod["containers"]),
            any(p["name"] == "dav" for p in objects["Service"]["spec"]["ports"]),
            any(p["port"] == "dav" for r in rules for p in r["ports"]),
        )

    assert dav_parts(_objects(PLAN)) == (False, False, False)
    assert dav_parts(_objects(CALENDAR)) == (True, True, True)


# -- settings ------------------------------------------------------------------------


def test_the_dav_settings_and_their_environment() -> None:
    default = OperatorSettings()
    assert default.dav_image == "localhost/vpes-dav:dev"
    assert (default.dav_memory_request, default.dav_memory_limit) == ("32Mi", "128Mi")
    assert default.dav_cpu_request == "10m"
    assert default.web_pod_labels == {"vpes.io/component": "web"}
    env = OperatorSettings.from_env(
        {
            "VPES_DAV_IMAGE": "r.example/vpes-dav@sha256:" + "0" * 64,
            "VPES_DAV_MEMORY_REQUEST": "64Mi",
            "VPES_DAV_MEMORY_LIMIT": "1Gi",
            "VPES_DAV_CPU_REQUEST": "0.5",
            "VPES_WEB_POD_LABELS": "app.kubernetes.io/instance=vpes,vpes.io/component=web",
        }
    )
    assert env.dav_image == "r.example/vpes-dav@sha256:" + "0" * 64
    assert (env.dav_memory_request, env.dav_memory_limit, env.dav_cpu_request) == (
        "64Mi",
        "1Gi",
        "0.5",
    )
    assert env.web_pod_labels == WEB


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VPES_DAV_MEMORY_LIMIT": "1.5Gi"}, "dav_memory_limit: '1.5Gi' is not a byte quantity"),
        ({"VPES_DAV_MEMORY_REQUEST": "lots"}, "dav_memory_request: 'lots' is not a byte"),
        ({"VPES_DAV_CPU_REQUEST": "fast"}, "dav_cpu_request: 'fast' is not a CPU amount"),
        ({"VPES_DAV_CPU_REQUEST": "0"}, "dav_cpu_request: '0' is not a CPU amount"),
        ({"VPES_DAV_MEMORY_REQUEST": "256Mi"}, "dav_memory_request (256Mi) is more than"),
        ({"VPES_WEB_POD_LABELS": ""}, "web_pod_labels"),
    ],
)
def test_bad_dav_settings_are_refused_with_what_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OperatorSettings.from_env(env)


# -- a DAV image the node does not have ----------------------------------------------


def test_a_missing_dav_image_names_the_dav_setting_not_the_tenant_one() -> None:
    statuses = [
        {"name": "mail", "image": "localhost/vpes-tenant:1", "state": {"running": {}}},
        {
            "name": dav.CONTAINER_NAME,
            "image": "localhost/vpes-dav:nope",
            "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}},
        },
    ]
    pod = Pod.model_validate(
        {
            "metadata": {"name": "alice-mail-0"},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Pending", "containerStatuses": statuses},
        }
    )
    found = blocker(pod, None)
    assert found is not None
    assert "calendar (CalDAV/CardDAV) image localhost/vpes-dav:nope" in found.message
    assert "VPES_DAV_IMAGE" in found.message and "tenant image" not in found.message
