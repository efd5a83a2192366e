"""The chart's billing Deployment: what reaches the billing process's environment, and
that the process (uvicorn) acts on it. Rendered with `helm template` (no cluster)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from .helm_template import CHART

pytestmark = pytest.mark.integration


def billing_env(helm: str, *sets: str) -> dict[str, str]:
    """The billing container's environment as the chart renders it with `sets`."""
    args = [helm, "template", "r", str(CHART), "-n", "ns1"]
    args += ["--show-only", "templates/billing-deployment.yaml"]
    for value in sets:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    [deployment] = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "billing"
    return {e["name"]: e.get("value", "") for e in container["env"]}


def refused(helm: str, *sets: str) -> str:
    args = [helm, "template", "r", str(CHART)]
    for value in sets:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode != 0, "the values schema accepted it"
    return out.stderr


def test_by_default_no_proxy_is_trusted_and_stripe_is_stripe(helm: str) -> None:
    env = billing_env(helm)
    assert "FORWARDED_ALLOW_IPS" not in env  # uvicorn's default: loopback only
    assert "STRIPE_API_BASE" not in env  # the stripe library's default: api.stripe.com


def test_the_ingress_addresses_reach_uvicorn(helm: str) -> None:
    env = billing_env(helm, "billing.forwardedAllowIps=10.244.0.0/16")
    assert env["FORWARDED_ALLOW_IPS"] == "10.244.0.0/16"
    several = billing_env(helm, r"billing.forwardedAllowIps=10.0.0.7\,fd00::/8")
    assert several["FORWARDED_ALLOW_IPS"] == "10.0.0.7,fd00::/8"


def test_the_stripe_api_base_reaches_billing(helm: str) -> None:
    env = billing_env(helm, "billing.stripeApiBase=http://stripe-mock.test:12111")
    assert env["STRIPE_API_BASE"] == "http://stripe-mock.test:12111"


@pytest.mark.parametrize(
    "setting",
    [
        "billing.forwardedAllowIps=*",  # anyone who reaches the pod could claim any address
        "billing.forwardedAllowIps=ingress.example",
        "billing.stripeApiBase=stripe-mock:12111",
    ],
)
def test_the_schema_refuses(helm: str, setting: str) -> None:
    assert "does not match pattern" in refused(helm, setting)


def test_billing_runs_uvicorn_with_proxy_headers_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`billing` (the chart's command) runs uvicorn with proxy_headers and leaves the
    trusted proxies to FORWARDED_ALLOW_IPS, which uvicorn then uses."""
    from vpes_billing import __main__ as billing_main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(billing_main.uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr(billing_main.Kube, "connect", classmethod(lambda cls, **kw: object()))
    monkeypatch.setattr(billing_main.logsafe, "configure", lambda level: None)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    billing_main.main(["--port", "8081"])
    [kw] = calls
    assert kw["proxy_headers"] is True and kw["port"] == 8081
    assert "forwarded_allow_ips" not in kw  # else the environment would be ignored
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.244.0.0/16")
    config = uvicorn.Config(lambda *a: None, **{k: v for k, v in kw.items() if k != "port"})
    assert config.forwarded_allow_ips == "10.244.0.0/16"


def test_values_document_what_to_set() -> None:
    values = yaml.safe_load(Path(CHART / "values.yaml").read_text())["billing"]
    assert values["forwardedAllowIps"] == "" and values["stripeApiBase"] == ""
    text = (CHART / "values.yaml").read_text()
    assert "pod CIDR" in text and "FORWARDED_ALLOW_IPS" in text
