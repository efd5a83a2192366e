"""The operator's own ACME client against a real CA (Pebble) and a real DNS server (Knot).

Pebble validates DNS-01 by asking the Knot server the DNS tests use, into which
the client publishes `_acme-challenge` TXT records through RFC 2136 + TSIG (the
`knot` and `pebble` fixtures: conftest.py).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store
from vpes_operator.certs import account, renewal
from vpes_operator.certs.errors import CAUnreachableError, ChallengeFailedError
from vpes_operator.certs.issuer import AcmeIssuer, IssuerConfig
from vpes_operator.certs.solvers import rfc2136_solver
from vpes_operator.clients.kube import Kube
from vpes_operator.dns.providers.rfc2136 import TSIGKey
from vpes_operator.models.conditions import Reason

from .acme_support import HOST, PebbleServer, tls_files
from .dns_support import KEY_NAME, ZONE, KnotServer, free_port


def make_issuer(
    directory_url: str, ca_bundle: Path, knot: KnotServer, key: account.AccountKey | None = None
) -> AcmeIssuer:
    config = IssuerConfig(
        directory_url,
        email="hostmaster@vpes-dns.test",
        ca_bundle=str(ca_bundle),
        order_timeout=60,
        answer_timeout=15,
        network_timeout=10,
    )
    solver = rfc2136_solver(knot.address, TSIGKey(KEY_NAME, knot.secret), 5.0, poll_interval=0.2)
    return AcmeIssuer(config, key or account.parse(account.new_key_pem(), "a test key"), [solver])


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}.{ZONE}"


def test_dns01_issues_one_certificate_for_two_names_and_removes_the_records(
    pebble: PebbleServer, knot: KnotServer
) -> None:
    names = [unique("mail"), "mta-sts." + unique("customer")]
    got = make_issuer(pebble.directory_url, pebble.ca_bundle, knot).issue(names)

    chain = x509.load_pem_x509_certificates(got.chain_pem.encode())
    leaf = chain[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    # The chain verifies against the root Pebble made at its start, for each name.
    store = Store([pebble.root()])
    for name in names:
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        verified = verifier.verify(leaf, chain[1:])
        assert verified[-1].subject == pebble.root().subject
    # The key returned is the certificate's.
    key = serialization.load_pem_private_key(got.key_pem.encode(), password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.PEM, spki) == (
        leaf.public_key().public_bytes(serialization.Encoding.PEM, spki)
    )
    assert (got.not_before, got.not_after) == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    # Fresh: not due for renewal; due a day before it ends.
    assert not renewal.certificate_due(got.chain_pem.encode(), got.not_before, 1 / 3)
    assert renewal.certificate_due(got.chain_pem.encode(), got.not_after - timedelta(days=1), 1 / 3)
    # The challenge records are gone again.
    for name in names:
        assert knot.query(f"_acme-challenge.{name}", "TXT") == []


def test_a_name_whose_zone_the_dns_server_does_not_serve_fails_its_challenge(
    pebble: PebbleServer, knot: KnotServer, caplog: pytest.LogCaptureFixture
) -> None:
    served, foreign = unique("ok"), f"mail.{uuid.uuid4().hex[:8]}.not-served.test"
    issuer = make_issuer(pebble.directory_url, pebble.ca_bundle, knot)
    with (
        caplog.at_level(logging.INFO, logger="vpes_operator.certs.issuer"),
        pytest.raises(ChallengeFailedError) as caught,
    ):
        issuer.issue([served, foreign])
    err = caught.value
    assert err.reason == Reason.CHALLENGE_FAILED
    assert err.message.startswith(f"dns-01: the TXT record _acme-challenge.{foreign} could not")
    assert f"serves no zone containing {foreign}" in err.message
    # The record published for the name that could be answered is removed too.
    assert knot.query(f"_acme-challenge.{served}", "TXT") == []
    # Both authorizations are deactivated at the CA, so none stays pending.
    deactivated = {r.args[0]: r.args[1] for r in caplog.records if r.msg.startswith("deactivated")}
    assert set(deactivated) == {served, foreign}
    client = issuer._connect()
    for uri in deactivated.values():
        authz, _ = client.poll(
            messages.AuthorizationResource(uri=uri, body=messages.Authorization())
        )
        assert authz.body.status == messages.STATUS_DEACTIVATED


def test_a_ca_whose_tls_certificate_is_not_trusted_says_which_setting_to_set(
    pebble: PebbleServer, knot: KnotServer, tmp_path: Path
) -> None:
    other_ca, _, _ = tls_files(tmp_path)  # a bundle of some other CA
    with pytest.raises(CAUnreachableError) as caught:
        make_issuer(pebble.directory_url, other_ca, knot).issue([unique("tls")])
    assert "a TLS certificate the operator does not trust" in caught.value.message
    assert "VPES_ACME_CA_BUNDLE" in caught.value.message


def test_a_challenge_the_ca_cannot_validate_fails_with_the_cas_detail(
    knot: KnotServer, tmp_path: Path
) -> None:
    # This CA asks a DNS server that is not there: the record is published, but it
    # cannot see it.
    blind = PebbleServer(tmp_path / "blind-pebble", f"{HOST}:{free_port(HOST)}")
    blind.start()
    try:
        name = unique("blind")
        with pytest.raises(ChallengeFailedError) as caught:
            make_issuer(blind.directory_url, blind.ca_bundle, knot).issue([name])
    finally:
        blind.stop()
    err = caught.value
    assert err.reason == Reason.CHALLENGE_FAILED
    assert err.message.startswith(f"dns-01 for {name}: the CA {blind.directory_url} could not")
    assert "Error retrieving TXT records for DNS challenge" in err.message  # Pebble's words
    assert knot.query(f"_acme-challenge.{name}", "TXT") == []


def test_a_ca_that_does_not_answer_is_unreachable(knot: KnotServer, tmp_path: Path) -> None:
    down = f"https://{HOST}:{free_port(HOST)}/dir"
    bundle, _, _ = tls_files(tmp_path)
    with pytest.raises(CAUnreachableError) as caught:
        make_issuer(down, bundle, knot).issue([unique("down")])
    assert caught.value.reason == Reason.CA_UNREACHABLE
    assert f"the CA {down} cannot be reached" in caught.value.message
    assert "VPES_ACME_DIRECTORY_URL" in caught.value.message


def test_the_account_key_is_made_once_in_a_secret_and_reused(
    api: Kube, namespace: str, pebble: PebbleServer, knot: KnotServer
) -> None:
    first = account.load_or_create(api, namespace)
    again = account.load_or_create(api, namespace)
    assert first.pem == again.pem
    secret = api.get("v1", "Secret", namespace, account.SECRET_NAME)
    assert secret is not None
    assert set(secret["data"]) == {account.KEY_FIELD}
    # The first order registers the account, the second finds it by its key.
    for _ in range(2):
        got = make_issuer(pebble.directory_url, pebble.ca_bundle, knot, again).issue(
            [unique("account")]
        )
        assert "BEGIN CERTIFICATE" in got.chain_pem
