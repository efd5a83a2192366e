"""What the renderer's unit tests share: a sample server, its plan, parsers of the files."""

from __future__ import annotations

import re
from typing import Any

import bcrypt
import pytest
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import (
    PersonalMailServerSpec,
)
from vpes_operator.render import (
    TenantContext,
    build_context,
    render_config,
)
from vpes_operator.settings import OperatorSettings

PASSWORDS = {
    "alice@example.org": "correct horse battery staple",
    "bob@example.net": "hunter2-but-longer",
    "carol@example.org": "Tr0ub4dor&3",
}


def spec_dict(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "plan": "personal",
        "owner": {"email": "owner@contact.example"},
        "domains": ["example.org", "example.net"],
        "mailboxes": [
            {
                "address": "alice@example.org",
                "quota": "1Gi",
                "aliases": ["info", "a@example.net", "postmaster"],
            },
            {"address": "bob@example.net", "aliases": ["info", "b"]},
            {"address": "carol@example.org", "quota": "300k"},
        ],
        "forwards": [
            {"from": "sales@example.org", "to": ["x@elsewhere.example", "bob@example.net"]},
        ],
    }
    spec.update(overrides)
    return spec


def make_spec(**overrides: Any) -> PersonalMailServerSpec:
    return PersonalMailServerSpec.model_validate(spec_dict(**overrides))


PLAN = MailPlanSpec(default_quota="512Mi", max_message_size="25Mi")
SETTINGS = OperatorSettings(
    relay_host="[relay.vpes-system.svc.cluster.local]:25",
    edge_networks=("10.0.0.0/8", "fd00::/8"),
)
# The same with spam training (the chart's antispam controller).
TRAINING_SETTINGS = SETTINGS.model_copy(
    update={
        "antispam_controller_url": "http://vpes-antispam.vpes-system.svc.cluster.local:11334",
        "antispam_controller_password_file": "/etc/vpes/antispam/controller-password",
    }
)


def ctx_of(
    spec: PersonalMailServerSpec | None = None,
    plan: MailPlanSpec = PLAN,
    settings: OperatorSettings = SETTINGS,
    name: str = "alice",
    namespace: str = "customer-1",
) -> TenantContext:
    return build_context(name, namespace, spec or make_spec(), plan, settings)


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {
        a: "{BLF-CRYPT}" + bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()
        for a, p in PASSWORDS.items()
    }


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_config(ctx_of())


def table(text: str) -> dict[str, str]:
    """A texthash lookup table as key → value (comments skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.split("\t")
        assert key not in out, f"duplicate key {key}"
        assert not re.search(r"\s", key)
        out[key] = value
    return out


def main_cf(text: str) -> dict[str, str]:
    """main.cf as name → value, continuation lines joined like Postfix does."""
    params: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            params[name] = (params[name] + " " + line.strip()).strip()
        else:
            name, _, value = line.partition("=")
            name = name.strip()
            assert name not in params, f"{name} set twice"
            params[name] = value.strip()
    return params
