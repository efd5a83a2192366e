"""The edge's certificate in the chart (edge.tls): every edge role (MX, login proxy,
relay) mounts the one Secret at /etc/vpes/tls, optional so that a pod starts
(self-signed) before the first certificate exists, and is told how often to look
at it; the relay may have its own (edge.relay.tls); a bad Secret name is refused at
install. Rendered with `helm template`; the image's reload is tests/images/test_edge_tls.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helm_template import Doc, one, refusal, render

pytestmark = pytest.mark.integration

ROLES = {
    "templates/edge-mx.yaml": ("vpes-edge-mx", "mx"),
    "templates/edge-proxy.yaml": ("vpes-edge-proxy", "proxy"),
    "templates/edge-relay.yaml": ("vpes-edge-relay", "relay"),
}


def pod_of(helm: str, template: str, *sets: str) -> Doc:
    name, _ = ROLES[template]
    spec: Doc = one(render(helm, template, *sets), "Deployment", name)["spec"]["template"]["spec"]
    return spec


def tls_of(pod: Doc) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """The tls volume, its mount and VPES_TLS_POLL (None for each one absent)."""
    (container,) = pod["containers"]
    volume = next((v for v in pod["volumes"] if v["name"] == "tls"), None)
    mount = next((m for m in container["volumeMounts"] if m["name"] == "tls"), None)
    poll = next((e["value"] for e in container["env"] if e["name"] == "VPES_TLS_POLL"), None)
    return volume, mount, poll


@pytest.mark.parametrize("template", sorted(ROLES))
def test_every_role_mounts_the_edge_certificate_optionally(helm: str, template: str) -> None:
    volume, mount, poll = tls_of(pod_of(helm, template))
    assert volume == {
        "name": "tls",
        "secret": {
            "secretName": "vpes-edge-tls",
            "optional": True,
            "defaultMode": 0o400,
            "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
        },
    }
    assert mount == {"name": "tls", "mountPath": "/etc/vpes/tls", "readOnly": True}
    assert poll == "30"


@pytest.mark.parametrize("template", sorted(ROLES))
def test_the_secret_name_and_the_poll_are_values(helm: str, template: str) -> None:
    volume, _, poll = tls_of(
        pod_of(helm, template, "edge.tls.secretName=mail-cert", "edge.tls.pollSeconds=5")
    )
    assert volume is not None and volume["secret"]["secretName"] == "mail-cert"
    assert poll == "5"


@pytest.mark.parametrize("template", sorted(ROLES))
def test_without_a_secret_name_nothing_is_mounted(helm: str, template: str) -> None:
    volume, mount, _ = tls_of(pod_of(helm, template, "edge.tls.secretName="))
    assert (volume, mount) == (None, None)


def test_the_relay_may_have_a_certificate_of_its_own(helm: str) -> None:
    relay = "templates/edge-relay.yaml"
    volume, mount, _ = tls_of(pod_of(helm, relay, "edge.relay.tls.secretName=relay-cert"))
    assert volume is not None and volume["secret"]["secretName"] == "relay-cert"
    assert volume["secret"]["optional"] is True and mount is not None
    # Its own, even when the edge has none; the other roles keep the edge's.
    volume, _, _ = tls_of(
        pod_of(helm, relay, "edge.relay.tls.secretName=relay-cert", "edge.tls.secretName=")
    )
    assert volume is not None and volume["secret"]["secretName"] == "relay-cert"
    volume, _, _ = tls_of(
        pod_of(helm, "templates/edge-mx.yaml", "edge.relay.tls.secretName=relay-cert")
    )
    assert volume is not None and volume["secret"]["secretName"] == "vpes-edge-tls"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("edge.tls.secretName=Edge_TLS", "/edge/tls/secretName"),
        ("edge.relay.tls.secretName=-bad", "/edge/relay/tls/secretName"),
        ("edge.tls.pollSeconds=0", "/edge/tls/pollSeconds"),
    ],
)
def test_bad_values_are_refused(helm: str, setting: str, words: str) -> None:
    assert words in refusal(helm, setting)
