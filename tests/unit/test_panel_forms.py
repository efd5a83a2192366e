"""The administrator pages' form checks, pure: domains (IDNA, syntax, duplicates, the
plan's limit), mailbox fields (local part, quota, name), aliases, forwards and
catch-alls (foreign domain, duplicate, too long, empty, bad syntax), what removing
a domain takes with it, the DNS verdicts in words, and the API server's refusals
mapped to form fields."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from vpes_operator.models.common import ADDRESS_PATTERN, DOMAIN_PATTERN
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_panel import addresses_forms as af
from vpes_panel import dns_view, forms
from vpes_panel.forms import InputError
from vpes_panel.web import Form

from .conftest import plan_wire, server_wire

pytestmark = pytest.mark.unit

LONG_LABEL = "a" * 63


def spec(**overrides: Any) -> dict[str, Any]:
    return server_wire(**overrides)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("example.org", "example.org"),
        ("  Example.ORG. ", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("mail.sub.example.co.uk", "mail.sub.example.co.uk"),
    ],
)
def test_a_domain_is_stored_lowercase_and_idna_encoded(typed: str, stored: str) -> None:
    assert forms.domain_name(typed) == stored
    assert re.match(DOMAIN_PATTERN, stored), "what the panel stores, the CRD accepts"


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "Enter a domain name"),
        ("   ", "Enter a domain name"),
        ("localhost", "whole domain name"),
        ("a..b.org", "not a valid domain name"),
        ("-a.org", "not a valid domain name"),
        ("ex ample.org", "not a valid domain name"),
        ("alice@example.org", "only the domain"),
        (f"{LONG_LABEL}a.org", "not a valid domain name"),
        (".".join([LONG_LABEL] * 4) + ".org", "at most 253"),
        ("example.123", "whole domain name"),
    ],
)
def test_a_bad_domain_says_what_to_fix(typed: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        forms.domain_name(typed)


def test_unicode_domains_are_shown_as_typed() -> None:
    assert forms.shown_domain("xn--bcher-kva.example") == "bücher.example"
    assert forms.shown_domain("example.org") == "example.org"
    assert forms.shown_domain("xn--zz.example") == "xn--zz.example", "not IDNA: as stored"


@pytest.mark.parametrize(
    ("typed", "domains", "plan", "says"),
    [
        ("example.org", ["example.org"], {}, "already one of this server's domains"),
        ("EXAMPLE.org", ["example.org"], {}, "already one of this server's domains"),
        ("b.example", ["a.example"], {"maxDomains": 1}, r"Your plan \(Personal\) allows 1 domains"),
        ("c.example", ["a.example", "b.example", "x.example"], {}, "allows 3 domains"),
    ],
)
def test_a_new_domain_is_refused_when_taken_or_over_the_plan(
    typed: str, domains: list[str], plan: dict[str, Any], says: str
) -> None:
    with pytest.raises(InputError, match=says):
        forms.new_domain(typed, spec(domains=domains), plan_wire(**plan))


def test_a_new_domain_within_the_plan() -> None:
    assert forms.new_domain("Bücher.example", spec(), plan_wire()) == "xn--bcher-kva.example"


def test_plan_limits_default_to_the_models() -> None:
    assert forms.plan_limit({}, "maxDomains") == 3
    assert forms.plan_limit({}, "maxMailboxes") == 10
    assert forms.plan_limit({"maxMailboxes": 4}, "maxMailboxes") == 4


@pytest.mark.parametrize(
    ("typed", "ok", "says"),
    [
        ("alice", "alice", ""),
        (" Alice.Smith ", "alice.smith", ""),
        ("a-b_c.d", "a-b_c.d", ""),
        ("", None, "Enter the part"),
        ("alice@example.org", None, "only the part before"),
        ("a" * 65, None, "at most 64"),
        ("alice+tag", None, "lowercase letters and digits"),
        ("al..ice", None, "lowercase letters and digits"),
        (".alice", None, "lowercase letters and digits"),
        ("al ice", None, "lowercase letters and digits"),
    ],
)
def test_mailbox_local_part(typed: str, ok: str | None, says: str) -> None:
    if ok is not None:
        assert forms.mailbox_local(typed) == ok
        return
    with pytest.raises(InputError, match=says):
        forms.mailbox_local(typed)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("", None),
        ("2Gi", "2Gi"),
        ("2 GiB", "2Gi"),
        ("500mi", "500Mi"),
        ("2G", "2G"),
        ("2gb", "2G"),
        ("1Mi", "1Mi"),
        ("16Ti", "16Ti"),
        ("1048576", "1048576"),
        ("4k", None),
        ("1M", None),
        ("17Ti", None),
        ("2 apples", None),
        ("-1Gi", None),
        ("1.5Gi", None),
    ],
)
def test_quota(typed: str, stored: str | None) -> None:
    bad = stored is None and typed != ""
    if bad:
        with pytest.raises(InputError):
            forms.quota(typed)
        return
    assert forms.quota(typed) == stored


def test_a_display_name_is_at_most_200_characters() -> None:
    assert forms.display_name("  Alice  ") == "Alice"
    assert forms.display_name("") is None
    with pytest.raises(InputError, match="at most 200"):
        forms.display_name("x" * 201)


@pytest.mark.parametrize(
    ("typed", "ok", "says"),
    [
        ("info", "info", ""),
        ("Info@Example.org", "info@example.org", ""),
        ("", None, "Enter the alias"),
        ("info@foreign.example", None, "not one of this server's domains"),
        ("bob@example.org", None, "already the mailbox bob@example.org"),
        ("bob", None, "already the mailbox bob@example.org"),
        ("postmaster@example.org", None, "already an alias of alice@example.org"),
        ("shop", None, "already a forward"),
        ("in fo", None, "not a name we accept"),
        ("in%fo@example.org", None, "not an address we accept"),
        ("a" * 65, None, "at most 64"),
        ("a" * 65 + "@example.org", None, "at most 64"),
        ("x@" + "a" * 250 + ".org", None, "at most 254"),
    ],
)
def test_an_alias(typed: str, ok: str | None, says: str) -> None:
    s = spec()
    bob = s["mailboxes"][1]
    if ok is not None:
        assert af.alias(typed, s, bob) == ok
        return
    with pytest.raises(InputError, match=says):
        af.alias(typed, s, bob)


def test_a_mailbox_has_at_most_50_aliases() -> None:
    s = spec()
    bob = dict(s["mailboxes"][1], aliases=[f"a{i}" for i in range(50)])
    with pytest.raises(InputError, match="at most 50 aliases"):
        af.alias("one-more", s, bob)


def test_a_mailboxs_whole_alias_list_is_checked_against_everything_else() -> None:
    s = spec()
    assert af.aliases("postmaster\nabuse\ninfo, info", s, "alice@example.org") == [
        "postmaster",
        "abuse",
        "info",
    ], "its own aliases are its own; duplicates are kept once"
    with pytest.raises(InputError, match="alias of alice"):
        af.aliases("postmaster", s, "bob@example.org")
    assert af.aliases("", s, "alice@example.org") == []


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "Enter the address to forward"),
        ("sales", "whole address"),
        ("sales@foreign.example", "not one of this server's domains"),
        ("alice@example.org", "already the mailbox"),
        ("abuse@example.org", "already an alias"),
        ("shop@example.org", "already a forward"),
        ('"sales"@example.org', "not an address we accept"),
        ("sa!les@example.org", "not an address we accept"),
    ],
)
def test_a_bad_forward_source(typed: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        af.forward_from(typed, spec())


@pytest.mark.parametrize(
    ("typed", "ok", "says"),
    [
        ("a@x.example\nB@y.example\n\n", ["a@x.example", "b@y.example"], ""),
        ("a@x.example, a@x.example", ["a@x.example"], ""),
        ("", None, "at least one"),
        (" \n ", None, "at least one"),
        ("not-an-address", None, "whole address"),
        ("sales@example.org", None, "forward to itself"),
        ("\n".join(f"u{i}@x.example" for i in range(11)), None, "at most 10"),
    ],
)
def test_forward_targets(typed: str, ok: list[str] | None, says: str) -> None:
    if ok is not None:
        assert af.forward_to(typed, "sales@example.org") == ok
        assert all(re.match(ADDRESS_PATTERN, a) for a in ok)
        return
    with pytest.raises(InputError, match=says):
        af.forward_to(typed, "sales@example.org")


def test_catch_all_choices() -> None:
    s = spec(
        domains=["example.org", "b.example"],
        catchAll=[{"domain": "b.example", "to": "bob@example.org"}],
    )
    assert af.catch_all_domain("example.org", s) == "example.org"
    with pytest.raises(InputError, match="has a catch-all already"):
        af.catch_all_domain("b.example", s)
    with pytest.raises(InputError, match="Choose one of this server's domains"):
        af.catch_all_domain("foreign.example", s)
    assert af.catch_all_to("bob@example.org", s) == "bob@example.org"
    with pytest.raises(InputError, match="Choose one of this server's mailboxes"):
        af.catch_all_to("shop@example.org", s)


def test_removing_a_domain_takes_what_lives_in_it_and_the_crd_accepts_the_rest() -> None:
    s = spec(
        domains=["example.org", "b.example"],
        mailboxes=[
            {"address": "alice@example.org", "aliases": ["info", "sales@b.example"]},
            {"address": "carol@b.example", "aliases": ["c@example.org"]},
        ],
        forwards=[
            {"from": "shop@b.example", "to": ["x@y.example"]},
            {"from": "shop@example.org", "to": ["x@y.example"]},
        ],
        catchAll=[
            {"domain": "b.example", "to": "alice@example.org"},
            {"domain": "example.org", "to": "carol@b.example"},
        ],
        panel={"admins": ["alice@example.org", "carol@b.example"]},
    )
    loss = af.domain_loss(s, "b.example")
    assert loss.mailboxes == ["carol@b.example"]
    assert loss.aliases == ["sales@b.example"]
    assert loss.forwards == ["shop@b.example"]
    assert loss.catch_alls == ["b.example", "example.org"], "and the one delivering to carol"
    after = copy.deepcopy(s)
    af.drop_domain(after, loss)
    assert after["domains"] == ["example.org"]
    assert [m["address"] for m in after["mailboxes"]] == ["alice@example.org"]
    assert after["mailboxes"][0]["aliases"] == ["info"]
    assert after["forwards"] == [{"from": "shop@example.org", "to": ["x@y.example"]}]
    assert after["catchAll"] == []
    assert after["panel"]["admins"] == ["alice@example.org"]
    after.pop("panel")  # being added to the model by another change
    PersonalMailServerSpec.model_validate(after)


def test_what_becomes_of_mail_to_a_removed_address() -> None:
    s = spec(catchAll=[{"domain": "example.org", "to": "bob@example.org"}])
    assert "will go to bob@example.org" in af.refused_or_caught(s, ["x@example.org"])
    assert (
        af.refused_or_caught(spec(), ["x@example.org"]) == "mail to x@example.org will be refused."
    )
    assert af.alias_addresses(spec(domains=["a.example", "b.example"]), "info") == [
        "info@a.example",
        "info@b.example",
    ]


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        ({"check": "Pass", "found": ["x"]}, "published"),
        ({"check": "Fail", "found": ["10 other.example."]}, "wrong"),
        ({"check": "Fail", "found": []}, "missing"),
        ({"check": "Fail"}, "missing"),
        ({"check": "Unknown"}, "unchecked"),
        ({}, "unchecked"),
    ],
)
def test_dns_verdicts(record: dict[str, Any], verdict: str) -> None:
    assert dns_view.verdict(record) == verdict


def test_a_domains_records_in_words() -> None:
    base = {"type": "MX", "name": "example.org", "value": "10 mx.example.net", "ttl": 300}
    status = {
        "dnsRecords": [
            {
                **base,
                "domain": "example.org",
                "check": "Fail",
                "found": ["10 old."],
                "fix": "Change it",
            },
            {**base, "domain": "example.org", "type": "TXT", "check": "Pass", "fix": "never shown"},
            {**base, "domain": "b.example"},
        ]
    }
    rows = dns_view.records(status, "example.org")
    assert [(r.type, r.verdict, r.found, r.fix) for r in rows] == [
        ("MX", "wrong", ["10 old."], "Change it"),
        ("TXT", "published", [], ""),
    ]
    assert dns_view.summary(rows) == {"published": 1, "wrong": 1, "missing": 0, "unchecked": 0}
    assert dns_view.managed({}) and not dns_view.managed({"dns": {"mode": "Manual"}})
    manual_provider = {"conditions": [{"type": "DNSPublished", "reason": "ManualMode"}]}
    assert not dns_view.managed({}, manual_provider), "the provider publishes nothing"


def test_conditions_in_words() -> None:
    status = {"conditions": [{"type": "DNSPublished", "status": "False", "message": "no zone"}]}
    assert dns_view.condition(status, "DNSPublished") == dns_view.Condition("bad", "No", "no zone")
    assert dns_view.condition(status, "DNSVerified").state == "unknown"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("spec.mailboxes[2].quota", "quota"),
        ("spec.mailboxes[0].address", "local"),
        ("spec.mailboxes", "local"),
        ("spec.mailboxes[1].aliases[3]", "aliases"),
        ("spec.panel.admins", "admin"),
        ("spec.owner.email", "first"),
        ("", "first"),
    ],
)
def test_a_refusals_path_finds_its_field(path: str, field: str) -> None:
    fields = {"mailboxes": "local", "address": "local", "quota": "quota", "aliases": "aliases"}
    fields["admins"] = "admin"
    assert forms.field_for(path, fields, "first") == field


def test_refusals_go_next_to_their_fields() -> None:
    form = Form()
    forms.apply_causes(
        form,
        "refused",
        [("spec.mailboxes[0].quota", "quota must be between 1Mi and 16Ti"), ("spec.x", "")],
        {"quota": "quota"},
        "local",
    )
    assert form.errors == {"quota": "quota must be between 1Mi and 16Ti", "local": "refused"}
    bare = Form()
    forms.apply_causes(bare, "Forbidden", [], {}, "local")
    assert bare.errors == {"local": "Forbidden"}
