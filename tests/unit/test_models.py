"""The pydantic models of the custom resources: what they accept, refuse, and put on the wire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError
from vpes_operator.models.backup import MailBackupSpec
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.restore import MailRestoreSpec
from vpes_operator.models.server import SERVER_SPEC_VALIDATIONS, PersonalMailServerSpec

pytestmark = pytest.mark.unit

Data = Callable[..., dict[str, Any]]


def refused(model: type[Any], data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    """`data` is refused, and the error points at `loc`."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    locs = [e["loc"] for e in info.value.errors()]
    assert loc in locs, f"expected an error at {loc}, got {locs}"


def test_sample_spec_is_accepted(spec_data: Data, plan_data: Data) -> None:
    spec = PersonalMailServerSpec.model_validate(spec_data())
    assert spec.mailboxes[0].password_secret_ref is not None
    assert spec.mailboxes[0].password_secret_ref.name == "alice-password"
    assert spec.mailboxes[1].password_secret_ref is None
    assert spec.forwards[0].from_ == "shop@example.org"
    plan = MailPlanSpec.model_validate(plan_data())
    assert plan.max_domains == 3


def test_defaults(spec_data: Data) -> None:
    spec = PersonalMailServerSpec.model_validate(
        {"plan": "p", "owner": {"email": "a@example.net"}, "domains": ["example.org"]}
    )
    assert spec.mailboxes == []
    assert spec.forwards == []
    assert spec.catch_all == []  # no catch-all unless asked for
    assert spec.suspended is False
    assert spec.dns.mode == "Managed"
    plan = MailPlanSpec.model_validate({})
    assert (plan.storage, plan.default_quota, plan.max_message_size) == ("1Gi", "512Mi", "25Mi")
    assert plan.resources.requests.memory == "32Mi"
    assert plan.backup.retention.daily == 7


@pytest.mark.parametrize(
    "domain",
    [
        "example.org",
        "mail.example.co.uk",
        "xn--bcher-kva.example",
        "example.xn--p1ai",
        "a1-b2.example",
        "1.example",
        "a" * 63 + ".example",
    ],
)
def test_valid_domains(spec_data: Data, domain: str) -> None:
    spec = PersonalMailServerSpec.model_validate(
        spec_data(domains=[domain], mailboxes=[], forwards=[])
    )
    assert spec.domains == [domain]


@pytest.mark.parametrize(
    "domain",
    [
        pytest.param("Example.org", id="uppercase"),
        pytest.param("example", id="one-label"),
        pytest.param("example.org.", id="trailing-dot"),
        pytest.param("-bad.example", id="leading-hyphen"),
        pytest.param("bad-.example", id="trailing-hyphen"),
        pytest.param("a..example", id="empty-label"),
        pytest.param("bücher.example", id="unicode"),
        pytest.param("a" * 64 + ".example", id="label-too-long"),
        pytest.param("under_score.example", id="underscore"),
        pytest.param("example.o", id="one-letter-tld"),
        pytest.param("example.123", id="numeric-tld"),
        pytest.param("example.org\n", id="trailing-newline"),
        pytest.param(" example.org", id="leading-space"),
        pytest.param(".".join(["abcdefghi"] * 26) + ".org", id="longer-than-253"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_domains(spec_data: Data, domain: str) -> None:
    refused(
        PersonalMailServerSpec,
        spec_data(domains=[domain], mailboxes=[], forwards=[]),
        ("domains", 0),
    )


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org",
        "first.last@example.org",
        "x_y-z1@sub.example.org",
        "info@xn--bcher-kva.example",
    ],
)
def test_valid_addresses(spec_data: Data, address: str) -> None:
    domain = address.split("@")[1]
    spec = PersonalMailServerSpec.model_validate(
        spec_data(domains=[domain], mailboxes=[{"address": address}], forwards=[])
    )
    assert spec.mailboxes[0].address == address


@pytest.mark.parametrize(
    "address",
    ["first.last+tag@example.org", "o'brien@example.org", "x_y-z=1@sub.example.org"],
)
def test_addresses_valid_for_forwards_but_not_mailboxes(spec_data: Data, address: str) -> None:
    """A mailbox is a login and a directory: its local part is plain; a forward's may not be."""
    domain = address.split("@")[1]
    spec = PersonalMailServerSpec.model_validate(
        spec_data(
            domains=[domain], mailboxes=[], forwards=[{"from": address, "to": ["x@example.net"]}]
        )
    )
    assert spec.forwards[0].from_ == address
    refused(
        PersonalMailServerSpec,
        spec_data(domains=[domain], mailboxes=[{"address": address}], forwards=[]),
        ("mailboxes", 0, "address"),
    )


INVALID_ADDRESSES = [
    pytest.param("Alice@example.org", id="uppercase"),
    pytest.param('"quoted"@example.org', id="quoted"),
    pytest.param("a%b@example.org", id="percent-hack"),
    pytest.param("a!b@example.org", id="bang-path"),
    pytest.param("alice@[127.0.0.1]", id="ip-literal"),
    pytest.param("alice", id="no-domain"),
    pytest.param("@example.org", id="no-local-part"),
    pytest.param(".alice@example.org", id="leading-dot"),
    pytest.param("alice.@example.org", id="trailing-dot"),
    pytest.param("a..b@example.org", id="double-dot"),
    pytest.param("a@b@example.org", id="two-ats"),
    pytest.param("al ice@example.org", id="space"),
    pytest.param("alice@example.org\n", id="trailing-newline"),
    pytest.param("alice@example", id="one-label-domain"),
    pytest.param("ünï@example.org", id="unicode-local-part"),
]


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
def test_invalid_mailbox_addresses(spec_data: Data, address: str) -> None:
    refused(
        PersonalMailServerSpec,
        spec_data(mailboxes=[{"address": address}], forwards=[]),
        ("mailboxes", 0, "address"),
    )


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
def test_invalid_owner_and_forward_addresses(spec_data: Data, address: str) -> None:
    refused(PersonalMailServerSpec, spec_data(owner={"email": address}), ("owner", "email"))
    forward = {"from": "shop@example.org", "to": [address]}
    refused(PersonalMailServerSpec, spec_data(forwards=[forward]), ("forwards", 0, "to", 0))
    forward = {"from": address, "to": ["x@example.net"]}
    refused(PersonalMailServerSpec, spec_data(forwards=[forward]), ("forwards", 0, "from"))


@pytest.mark.parametrize("alias", ["info", "info@example.org", "first.last", "sales+eu"])
def test_valid_aliases(spec_data: Data, alias: str) -> None:
    spec = PersonalMailServerSpec.model_validate(
        spec_data(mailboxes=[{"address": "a@example.org", "aliases": [alias]}], forwards=[])
    )
    assert spec.mailboxes[0].aliases == [alias]


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param("Info", id="uppercase"),
        pytest.param("info@", id="empty-domain"),
        pytest.param("@example.org", id="empty-local-part"),
        pytest.param("in fo", id="space"),
        pytest.param("a%b", id="percent"),
        pytest.param("a!b", id="bang"),
        pytest.param("info@example", id="one-label-domain"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_aliases(spec_data: Data, alias: str) -> None:
    refused(
        PersonalMailServerSpec,
        spec_data(mailboxes=[{"address": "a@example.org", "aliases": [alias]}], forwards=[]),
        ("mailboxes", 0, "aliases", 0),
    )


@pytest.mark.parametrize("quota", ["1Mi", "512Mi", "2Gi", "1G", "1500M", "16Ti", "1048576"])
def test_valid_quotas(spec_data: Data, quota: str) -> None:
    spec = PersonalMailServerSpec.model_validate(
        spec_data(mailboxes=[{"address": "a@example.org", "quota": quota}], forwards=[])
    )
    assert spec.mailboxes[0].quota == quota


@pytest.mark.parametrize(
    "quota",
    [
        pytest.param("1.5Gi", id="fraction"),
        pytest.param("500m", id="milli"),
        pytest.param("2GB", id="not-a-suffix"),
        pytest.param("2gi", id="lowercase-suffix"),
        pytest.param("-1Gi", id="negative"),
        pytest.param("1e9", id="exponent"),
        pytest.param("2 Gi", id="space"),
        pytest.param("Gi", id="no-number"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_quotas(spec_data: Data, quota: str) -> None:
    refused(
        PersonalMailServerSpec,
        spec_data(mailboxes=[{"address": "a@example.org", "quota": quota}], forwards=[]),
        ("mailboxes", 0, "quota"),
    )


@pytest.mark.parametrize("plan", ["personal", "pro-2", "p", "a" * 63])
def test_valid_plan_names(spec_data: Data, plan: str) -> None:
    assert PersonalMailServerSpec.model_validate(spec_data(plan=plan)).plan == plan


@pytest.mark.parametrize(
    "plan",
    [
        pytest.param("Personal", id="uppercase"),
        pytest.param("-pro", id="leading-hyphen"),
        pytest.param("pro-", id="trailing-hyphen"),
        pytest.param("pro_2", id="underscore"),
        pytest.param("pro.2", id="dot"),
        pytest.param("a" * 64, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_plan_names(spec_data: Data, plan: str) -> None:
    refused(PersonalMailServerSpec, spec_data(plan=plan), ("plan",))


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        pytest.param({"domains": []}, ("domains",), id="no-domain"),
        pytest.param({"domains": ["example.org"] * 101}, ("domains",), id="too-many-domains"),
        pytest.param(
            {"forwards": [{"from": "shop@example.org", "to": []}]},
            ("forwards", 0, "to"),
            id="forward-to-nobody",
        ),
        pytest.param(
            {
                "mailboxes": [
                    {"address": "a@example.org", "passwordSecretRef": {"name": "Bad_Name"}}
                ]
            },
            ("mailboxes", 0, "passwordSecretRef", "name"),
            id="secret-name",
        ),
        pytest.param({"dns": {"mode": "Automatic"}}, ("dns", "mode"), id="dns-mode"),
        pytest.param({"suspended": "maybe"}, ("suspended",), id="suspended-not-bool"),
    ],
)
def test_invalid_server_fields(
    spec_data: Data, overrides: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    refused(PersonalMailServerSpec, spec_data(**overrides), loc)


def test_catch_all_is_accepted(spec_data: Data) -> None:
    spec = PersonalMailServerSpec.model_validate(
        spec_data(catchAll=[{"domain": "example.org", "to": "bob@example.org"}])
    )
    assert [(c.domain, c.to) for c in spec.catch_all] == [("example.org", "bob@example.org")]
    assert spec.wire()["catchAll"] == [{"domain": "example.org", "to": "bob@example.org"}]


@pytest.mark.parametrize(
    ("catch_all", "loc"),
    [
        pytest.param(
            [{"domain": "Example.ORG", "to": "bob@example.org"}], (0, "domain"), id="domain"
        ),
        pytest.param(
            [{"domain": "*.example.org", "to": "bob@example.org"}], (0, "domain"), id="wild"
        ),
        pytest.param([{"domain": "@example.org", "to": "bob@example.org"}], (0, "domain"), id="at"),
        pytest.param(
            [{"domain": "example.org", "to": "bob+x@example.org"}], (0, "to"), id="detail"
        ),
        pytest.param([{"domain": "example.org", "to": "example.org"}], (0, "to"), id="no-local"),
        pytest.param([{"domain": "example.org", "to": "a%b@example.org"}], (0, "to"), id="percent"),
        pytest.param([{"domain": "example.org"}], (0, "to"), id="no-target"),
        pytest.param([{"to": "bob@example.org"}], (0, "domain"), id="no-domain"),
        pytest.param(
            [{"domain": "example.org", "to": "bob@example.org", "from": "x"}],
            (0, "from"),
            id="unknown-field",
        ),
        pytest.param([{"domain": "example.org", "to": "bob@example.org"}] * 51, (), id="too-many"),
        pytest.param({"domain": "example.org", "to": "bob@example.org"}, (), id="not-a-list"),
    ],
)
def test_invalid_catch_all(spec_data: Data, catch_all: Any, loc: tuple[Any, ...]) -> None:
    refused(PersonalMailServerSpec, spec_data(catchAll=catch_all), ("catchAll", *loc))


def test_catch_all_rules_for_the_api_server() -> None:
    """What pydantic cannot see, CEL checks: the domain is the server's, the target a mailbox."""
    schema = PersonalMailServerSpec.model_json_schema(by_alias=True)
    field = schema["properties"]["catchAll"]
    assert field["x-kubernetes-list-type"] == "map"  # one catch-all per domain
    assert field["x-kubernetes-list-map-keys"] == ["domain"]
    rules = {r["rule"]: r for r in SERVER_SPEC_VALIDATIONS if "catchAll" in r["rule"]}
    assert set(rules) == {
        "!has(self.catchAll) || self.catchAll.all(c, c.domain in self.domains)",
        "!has(self.catchAll) || self.catchAll.all(c, has(self.mailboxes) && "
        "self.mailboxes.exists(m, m.address == c.to))",
    }
    for rule in rules.values():
        assert rule["fieldPath"] == ".catchAll"
        assert "catch-all" in rule["message"]


@pytest.mark.parametrize("missing", ["plan", "owner", "domains"])
def test_required_server_fields(spec_data: Data, missing: str) -> None:
    data = spec_data()
    del data[missing]
    refused(PersonalMailServerSpec, data, (missing,))


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        pytest.param({"storage": "1.5Gi"}, ("storage",), id="storage-fraction"),
        pytest.param({"storage": "5GB"}, ("storage",), id="storage-unit"),
        pytest.param({"defaultQuota": "lots"}, ("defaultQuota",), id="default-quota"),
        pytest.param({"maxDomains": 0}, ("maxDomains",), id="zero-domains"),
        pytest.param({"maxMailboxes": 1001}, ("maxMailboxes",), id="too-many-mailboxes"),
        pytest.param({"outboundPerHour": -1}, ("outboundPerHour",), id="negative-rate"),
        pytest.param({"stripePriceId": "prod_123"}, ("stripePriceId",), id="not-a-price"),
        pytest.param(
            {"resources": {"limits": {"memory": "lots"}}},
            ("resources", "limits", "memory"),
            id="memory-not-a-size",
        ),
        pytest.param(
            {"backup": {"schedule": "every day"}}, ("backup", "schedule"), id="cron-fields"
        ),
        pytest.param(
            {"backup": {"retention": {"daily": -1}}},
            ("backup", "retention", "daily"),
            id="negative-retention",
        ),
        pytest.param({"features": {"antispam": "Paranoid"}}, ("features", "antispam"), id="enum"),
    ],
)
def test_invalid_plan_fields(
    plan_data: Data, overrides: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    refused(MailPlanSpec, plan_data(**overrides), loc)


@pytest.mark.parametrize(
    ("model", "data", "loc"),
    [
        pytest.param(MailBackupSpec, {"server": "Alice"}, ("server",), id="backup-server"),
        pytest.param(
            MailBackupSpec, {"server": "a", "trigger": "Cron"}, ("trigger",), id="trigger"
        ),
        pytest.param(MailRestoreSpec, {"backup": "b", "target": "-x"}, ("target",), id="target"),
        pytest.param(MailRestoreSpec, {"target": "alice"}, ("backup",), id="restore-backup"),
    ],
)
def test_invalid_request_fields(
    model: type[Any], data: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    refused(model, data, loc)


@pytest.mark.parametrize(
    ("model", "data", "where"),
    [
        pytest.param(PersonalMailServerSpec, {"colour": "blue"}, (), id="server-top"),
        pytest.param(
            PersonalMailServerSpec,
            {"owner": {"email": "a@example.net", "phone": "123"}},
            ("owner",),
            id="server-owner",
        ),
        pytest.param(
            PersonalMailServerSpec,
            {"mailboxes": [{"address": "a@example.org", "password": "plaintext!"}]},
            ("mailboxes", 0),
            id="plaintext-password-field",
        ),
        pytest.param(MailPlanSpec, {"maxdomains": 5}, (), id="plan-wrong-case"),
        pytest.param(MailPlanSpec, {"features": {"imap": True}}, ("features",), id="plan-features"),
    ],
)
def test_unknown_fields_are_refused(
    spec_data: Data, plan_data: Data, model: type[Any], data: dict[str, Any], where: tuple[Any, ...]
) -> None:
    base = spec_data() if model is PersonalMailServerSpec else plan_data()
    merged = {**base, **data}
    with pytest.raises(ValidationError) as info:
        model.model_validate(merged)
    errors = info.value.errors()
    assert any(e["type"] == "extra_forbidden" and e["loc"][:-1] == where for e in errors), errors


@pytest.mark.parametrize("host", ["mail.example.org", "example.org", "imap.eu.example.org"])
def test_mail_host_in_a_domain_is_accepted(spec_data: Data, host: str) -> None:
    spec = PersonalMailServerSpec.model_validate(spec_data(mailHost=host))
    assert spec.mail_host == host
    assert spec.wire()["mailHost"] == host


@pytest.mark.parametrize(
    "host",
    [
        "mail.other.org",  # no domain of the server
        "mailexample.org",  # ends like one, but is not under it
        "example.org.uk",  # the domain inside another name
    ],
)
def test_mail_host_outside_the_domains_is_refused(spec_data: Data, host: str) -> None:
    with pytest.raises(ValidationError) as info:
        PersonalMailServerSpec.model_validate(spec_data(mailHost=host))
    assert "mailHost must be one of spec.domains or a name under one" in str(info.value)


@pytest.mark.parametrize("host", ["Mail.Example.org", "*.example.org", "mail.example.org."])
def test_mail_host_that_is_no_domain_name_is_refused(spec_data: Data, host: str) -> None:
    refused(PersonalMailServerSpec, spec_data(mailHost=host), ("mailHost",))


def test_mail_host_rule_for_the_api_server() -> None:
    rule = next(r for r in SERVER_SPEC_VALIDATIONS if "mailHost" in r["rule"])
    assert rule["fieldPath"] == ".mailHost"
    assert "endsWith('.' + d)" in rule["rule"]
    assert "add its domain to spec.domains" in rule["message"]
