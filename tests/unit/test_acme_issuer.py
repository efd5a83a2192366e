"""The pure parts of the ACME client: names, settings, the account key, which solver answers."""

from __future__ import annotations

import base64

import pytest
from acme import challenges, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vpes_operator.certs import account
from vpes_operator.certs.errors import ACMEConfigError, CertError, ChallengeFailedError
from vpes_operator.certs.issuer import AcmeIssuer, IssuerConfig, issued, normalise_names
from vpes_operator.certs.solvers import DNS01Answers, DNS01Solver, Task
from vpes_operator.dns.errors import UnreachableError
from vpes_operator.dns.ownership import Owned
from vpes_operator.dns.providers.manual import ManualProvider
from vpes_operator.models.conditions import Reason
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("names", "want"),
    [
        (["Mail.Example.org.", "mail.example.org"], ("mail.example.org",)),
        (["b.example.org", "a.example.org"], ("b.example.org", "a.example.org")),
    ],
)
def test_names_are_normalised_once(names: list[str], want: tuple[str, ...]) -> None:
    assert normalise_names(names) == want


@pytest.mark.parametrize("names", [[], [""], ["a.example.org", " . "]])
def test_no_or_blank_names_are_refused(names: list[str]) -> None:
    with pytest.raises(ValueError, match="one or more non-empty names"):
        normalise_names(names)


def test_acme_is_off_until_a_directory_is_set() -> None:
    assert IssuerConfig.from_settings(OperatorSettings()) is None
    settings = OperatorSettings.from_env(
        {
            "VPES_ACME_DIRECTORY_URL": "https://ca.example/dir",
            "VPES_ACME_EMAIL": "hostmaster@example.net",
            "VPES_ACME_CA_BUNDLE": "/etc/vpes/ca.pem",
        }
    )
    config = IssuerConfig.from_settings(settings)
    assert config == IssuerConfig(
        "https://ca.example/dir", "hostmaster@example.net", "/etc/vpes/ca.pem"
    )


def test_the_account_key_round_trips_through_its_secret() -> None:
    pem = account.new_key_pem()
    body = account.secret_body("vpes-system", pem)
    assert body["metadata"] == {
        "name": "vpes-acme-account",
        "namespace": "vpes-system",
        "labels": {
            "app.kubernetes.io/managed-by": "vpes-operator",
            "vpes.io/component": "acme-account",
        },
    }
    data = body["data"]
    assert isinstance(data, dict)
    key = account.parse(base64.b64decode(data["account.key"]), "here")
    assert key.pem == pem
    assert key.jwk.to_partial_json()["crv"] == "P-256"


def test_a_secret_without_a_key_says_what_to_do_and_never_shows_its_bytes() -> None:
    junk = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n"
    with pytest.raises(account.AccountKeyError) as caught:
        account.parse(junk, "the Secret vpes-system/vpes-acme-account")
    assert "delete the Secret" in caught.value.message
    assert caught.value.reason == Reason.ACME_NOT_CONFIGURED
    assert "c2VjcmV0" not in caught.value.message


def test_an_account_key_of_another_kind_is_refused() -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(account.AccountKeyError, match="not P-256"):
        account.parse(rsa_pem, "the Secret")


def order(*authzs: tuple[str, str, str]) -> messages.OrderResource:
    """An order whose authorizations are (name, status, offered challenge type)."""
    kinds = {"dns-01": challenges.DNS01, "http-01": challenges.HTTP01}
    resources = []
    for name, status, offered in authzs:
        challb = messages.ChallengeBody(
            chall=kinds[offered](token=b"t" * 32), uri=f"https://ca.example/c/{name}"
        )
        body = messages.Authorization(
            identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name),
            challenges=[challb],
            status=messages.Status.from_json(status),
        )
        resources.append(
            messages.AuthorizationResource(body=body, uri=f"https://ca.example/{name}")
        )
    return messages.OrderResource(body=messages.Order(), authorizations=resources)


def issuer() -> AcmeIssuer:
    solver = DNS01Solver(ManualProvider(lambda _: False), lambda _: frozenset())
    key = account.parse(account.new_key_pem(), "a test key")
    return AcmeIssuer(IssuerConfig("https://ca.example/dir"), key, [solver])


def test_each_pending_authorization_goes_to_the_solver_of_its_challenge() -> None:
    plan = issuer()._plan(
        order(("a.example.org", "pending", "dns-01"), ("b.example.org", "valid", "dns-01"))
    )
    assert {k: [t.name for t in v] for k, v in plan.items()} == {"dns-01": ["a.example.org"]}


def test_a_challenge_no_solver_answers_is_a_failed_challenge_saying_so() -> None:
    with pytest.raises(ChallengeFailedError) as caught:
        issuer()._plan(order(("a.example.org", "pending", "http-01")))
    assert caught.value.message == (
        "the CA https://ca.example/dir offers http-01 for a.example.org, and the operator "
        "answers only dns-01"
    )


def test_an_issuer_needs_a_solver() -> None:
    key = account.parse(account.new_key_pem(), "a test key")
    with pytest.raises(ValueError, match="at least one challenge solver"):
        AcmeIssuer(IssuerConfig("https://ca.example/dir"), key, [])


def test_an_unreadable_certificate_from_the_ca() -> None:
    with pytest.raises(CertError, match="cannot be read"):
        issued(("a.example.org",), "not a certificate", b"key")


def test_dns01_waits_for_every_value_and_reads_a_failing_server_as_missing() -> None:
    zone: dict[str, frozenset[str]] = {"_acme-challenge.a.example.org": frozenset({"v1"})}

    def lookup(name: str) -> frozenset[str]:
        if name.startswith("_acme-challenge.down"):
            raise UnreachableError("the DNS server cannot be reached")
        return zone.get(name, frozenset())

    expected = {
        "_acme-challenge.a.example.org": {"v1"},
        "_acme-challenge.b.example.org": {"v2"},
        "_acme-challenge.down.example.org": {"v3"},
    }
    answers = DNS01Answers(ManualProvider(lambda _: False), lookup, Owned(), expected, 0.01)
    assert answers.missing() == [
        "_acme-challenge.b.example.org",
        "_acme-challenge.down.example.org",
    ]
    with pytest.raises(ChallengeFailedError) as caught:
        answers.wait_ready(0.05)
    assert "_acme-challenge.b.example.org, _acme-challenge.down.example.org" in caught.value.message
    zone["_acme-challenge.b.example.org"] = frozenset({"v2", "other"})
    del answers.expected["_acme-challenge.down.example.org"]
    answers.wait_ready(0.05)  # every value is there now: returns


@pytest.mark.parametrize(
    ("url", "bundle", "words"),
    [
        ("http://ca.example/dir", "", "is not an https:// URL"),
        ("ca.example/dir", "", "is not an https:// URL"),
        (
            "https://ca.example/dir",
            "/nonexistent/ca.pem",
            "names /nonexistent/ca.pem, which cannot",
        ),
    ],
)
def test_settings_that_cannot_work_are_said_before_the_ca_is_asked(
    url: str, bundle: str, words: str
) -> None:
    key = account.parse(account.new_key_pem(), "a test key")
    solver = DNS01Solver(ManualProvider(lambda _: False), lambda _: frozenset())
    with pytest.raises(ACMEConfigError) as caught:
        AcmeIssuer(IssuerConfig(url, ca_bundle=bundle), key, [solver]).issue(["a.example.org"])
    assert caught.value.reason == Reason.ACME_NOT_CONFIGURED
    assert words in caught.value.message


def test_dns01_answers_only_dns01() -> None:
    solver = DNS01Solver(ManualProvider(lambda _: False), lambda _: frozenset())
    challb = messages.ChallengeBody(chall=challenges.HTTP01(token=b"t" * 32), uri="https://c")
    key = account.parse(account.new_key_pem(), "a test key")
    with pytest.raises(TypeError, match="dns-01 cannot answer http-01"):
        solver.present([Task("a.example.org", challb)], key.jwk)
