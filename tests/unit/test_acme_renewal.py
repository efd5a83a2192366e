"""When a certificate is renewed: a third of its lifetime before the end, with bounded jitter."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from vpes_operator.certs import renewal
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=90)
THIRD = 1 / 3


def test_no_jitter_renews_at_exactly_the_fraction() -> None:
    at = renewal.renewal_time(START, END, THIRD, "serial", jitter_fraction=0)
    assert at == END - dt.timedelta(days=30)
    assert not renewal.due(at - dt.timedelta(seconds=1), START, END, THIRD, "s", 0)
    assert renewal.due(at, START, END, THIRD, "s", 0)


@pytest.mark.parametrize("seed", [f"{n:x}" for n in range(200)])
def test_jitter_only_ever_brings_renewal_earlier_and_by_at_most_its_bound(seed: str) -> None:
    at = renewal.renewal_time(START, END, THIRD, seed, jitter_fraction=0.05)
    latest = END - dt.timedelta(days=30)
    earliest = latest - dt.timedelta(days=4.5)  # 5 % of 90 days
    assert earliest <= at <= latest


def test_jitter_spreads_a_fleet_and_is_stable_for_one_certificate() -> None:
    times = {renewal.renewal_time(START, END, THIRD, f"{n:x}") for n in range(100)}
    assert len(times) == 100  # certificates issued together renew at different times
    assert renewal.renewal_time(START, END, THIRD, "abc") == renewal.renewal_time(
        START, END, THIRD, "abc"
    )


def test_jitter_never_goes_before_the_start() -> None:
    # Renewing at 99 % of the lifetime left leaves 1 % for jitter, however large it is asked.
    for n in range(50):
        at = renewal.renewal_time(START, END, 0.99, f"{n}", jitter_fraction=0.5)
        assert START <= at <= END - dt.timedelta(days=90 * 0.99)


def test_a_setting_moves_the_renewal() -> None:
    half = renewal.renewal_time(START, END, 0.5, "s", jitter_fraction=0)
    assert half == START + dt.timedelta(days=45)


@pytest.mark.parametrize(
    ("fraction", "jitter", "start", "end", "words"),
    [
        (0, 0.05, START, END, "between 0 and 1"),
        (1, 0.05, START, END, "between 0 and 1"),
        (THIRD, -0.1, START, END, "jitter fraction"),
        (THIRD, 1.0, START, END, "jitter fraction"),
        (THIRD, 0.05, END, START, "ends"),
        (THIRD, 0.05, START, START, "ends"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    fraction: float, jitter: float, start: dt.datetime, end: dt.datetime, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        renewal.renewal_time(start, end, fraction, "s", jitter)


def certificate(not_before: dt.datetime, not_after: dt.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_certificate_is_judged_by_its_own_validity_and_serial() -> None:
    pem = certificate(START, END)
    at = renewal.renewal_time(START, END, THIRD, f"{12345:x}")
    assert not renewal.certificate_due(pem, at - dt.timedelta(seconds=1), THIRD)
    assert renewal.certificate_due(pem, at, THIRD)


def test_the_default_fraction_is_a_third_and_settable_from_the_environment() -> None:
    assert OperatorSettings().acme_renew_before_fraction == pytest.approx(THIRD)
    env = OperatorSettings.from_env({"VPES_ACME_RENEW_BEFORE_FRACTION": "0.5"})
    assert env.acme_renew_before_fraction == 0.5
    with pytest.raises(ValueError, match="acme_renew_before_fraction"):
        OperatorSettings.from_env({"VPES_ACME_RENEW_BEFORE_FRACTION": "1.5"})
