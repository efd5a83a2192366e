"""The operator's own ACME path, its decisions without a CA: what a Secret's certificate
covers, when to order (none, other names, renewal due) and when not (valid, under way,
backing off), which path certifies, which solver is made, and the condition."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from vpes_operator import certstatus
from vpes_operator.acmecerts import BY, edge_names, use_acme
from vpes_operator.certs import stored as st
from vpes_operator.certs.choose import solver_for
from vpes_operator.certs.errors import (
    ACMEConfigError,
    CAUnreachableError,
    CertError,
    ChallengeFailedError,
    RateLimitedError,
)
from vpes_operator.certs.issuer import Issued
from vpes_operator.certs.orders import Orders
from vpes_operator.certs.solvers import DNS01
from vpes_operator.crypto import self_signed_certificate
from vpes_operator.models.conditions import Reason
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = dt.datetime.now(dt.UTC)
NAMES = ("autoconfig.example.org", "mta-sts.example.org")


def issued(names: Sequence[str], start: dt.datetime = NOW, days: int = 90) -> Issued:
    pem, _ = self_signed_certificate(list(names), days, start)
    leaf = x509.load_pem_x509_certificate(pem.encode())
    return Issued(tuple(names), pem, "KEY", leaf.not_valid_before_utc, leaf.not_valid_after_utc)


def secret(names: Sequence[str], start: dt.datetime = NOW, days: int = 90) -> dict[str, Any]:
    return st.secret_body("web-x", "vpes-system", {"a": "b"}, issued(names, start, days))


# -- what a Secret holds, and what to do ------------------------------------------------


def test_a_secret_reads_back_as_the_certificate_it_holds() -> None:
    body = secret(NAMES)
    assert body["type"] == "kubernetes.io/tls"
    assert set(body["data"]) == {"tls.crt", "tls.key"}
    assert base64.b64decode(body["data"]["tls.key"]) == b"KEY"
    got = st.read(body)
    assert got is not None
    assert got.names == frozenset(NAMES)
    assert got.covers(list(reversed(NAMES))) and not got.covers(NAMES[:1])
    assert got.not_after - got.not_before == dt.timedelta(days=90)


@pytest.mark.parametrize(
    "body",
    [None, {}, {"data": {}}, {"data": {"tls.crt": "not base64!"}}, {"data": {"tls.crt": "AAAA"}}],
)
def test_no_readable_certificate_is_none(body: dict[str, Any] | None) -> None:
    assert st.read(body) is None


@pytest.mark.parametrize(
    ("held", "start", "days", "want"),
    [
        (None, NOW, 90, st.Action.ISSUE),
        (NAMES, NOW - dt.timedelta(days=1), 90, st.Action.KEEP),
        (NAMES[:1], NOW - dt.timedelta(days=1), 90, st.Action.REISSUE),
        ((*NAMES, "openpgpkey.example.org"), NOW, 90, st.Action.REISSUE),
        (NAMES, NOW - dt.timedelta(days=70), 90, st.Action.RENEW),  # 20 of 90 days left
        (NAMES, NOW - dt.timedelta(days=100), 90, st.Action.RENEW),  # expired
    ],
)
def test_decide(held: tuple[str, ...] | None, start: dt.datetime, days: int, want: str) -> None:
    stored = st.read(secret(held, start, days)) if held else None
    assert st.decide(NAMES, stored, NOW, 1 / 3) == want


def test_backoff_grows_to_a_day_and_a_rate_limit_waits_what_the_ca_said() -> None:
    err = CAUnreachableError("down")  # 300 s
    assert [st.backoff(err, n) for n in (1, 2, 3)] == [300.0, 600.0, 1200.0]
    assert st.backoff(err, 30) == st.MAX_BACKOFF
    assert st.backoff(RateLimitedError("slow down", 7200.0), 5) == 7200.0
    assert st.backoff(RateLimitedError("slow down", 0.0), 1) == st.MIN_BACKOFF


# -- orders: at most one, never for a valid certificate, backing off ---------------------


class FakeKube:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj)
        return obj


class Issuer:
    """Answers with a certificate, or the error it is given; `gate` holds it back."""

    def __init__(self, error: CertError | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, ...]] = []
        self.gate = threading.Event()
        self.gate.set()

    def issue(self, names: tuple[str, ...]) -> Issued:
        self.gate.wait(10)
        self.calls.append(names)
        if self.error is not None:
            raise self.error
        return issued(names)


def orders_with(issuer: Issuer) -> tuple[Orders, FakeKube]:
    kube = FakeKube()
    return Orders(kube, "vpes-system", lambda: issuer, 2, 1 / 3), kube  # type: ignore[arg-type]


def settle(orders: Orders) -> None:
    orders.pool.shutdown(wait=True)


def test_a_valid_certificate_is_kept_without_an_order() -> None:
    issuer = Issuer()
    orders, _ = orders_with(issuer)
    state = orders.state("web-x", NAMES, {}, st.read(secret(NAMES, NOW - dt.timedelta(days=1))))
    settle(orders)
    assert state.ready is True and issuer.calls == []


def test_one_order_writes_the_secret_and_is_not_ordered_again() -> None:
    issuer = Issuer()
    issuer.gate.clear()
    orders, kube = orders_with(issuer)
    first = orders.state("web-x", NAMES, {"vpes.io/component": "web-certificate"}, None)
    again = orders.state("web-x", NAMES, {}, None)  # under way: not a second order
    assert first.ready is None and again.ready is None
    assert first.reason == Reason.CERTIFICATE_ISSUING
    issuer.gate.set()
    while orders.version == 0:
        threading.Event().wait(0.01)
    # A pass that listed the Secret before it was written does not order it again.
    done = orders.state("web-x", NAMES, {}, None)
    settle(orders)
    assert done.ready is True and done.not_after is not None
    assert issuer.calls == [NAMES]
    [body] = kube.applied
    assert body["metadata"]["labels"] == {"vpes.io/component": "web-certificate"}
    assert st.read(body) is not None


def test_a_failed_order_says_why_and_backs_off_until_the_names_change() -> None:
    issuer = Issuer(ChallengeFailedError("dns-01 for x: the CA could not validate"))
    orders, kube = orders_with(issuer)
    orders.state("web-x", NAMES, {}, None)
    while orders.version == 0:
        threading.Event().wait(0.01)
    failed = orders.state("web-x", NAMES, {}, None)
    assert (failed.ready, failed.reason) == (False, Reason.CHALLENGE_FAILED)
    assert "could not validate" in failed.message
    assert issuer.calls == [NAMES]  # backing off: not asked again
    orders.state("web-x", NAMES[:1], {}, None)  # other names: a fresh order
    settle(orders)
    assert issuer.calls == [NAMES, NAMES[:1]] and kube.applied == []


def test_a_renewal_that_fails_keeps_the_valid_certificate_ready() -> None:
    issuer = Issuer(CAUnreachableError("the CA cannot be reached"))
    orders, _ = orders_with(issuer)
    held = st.read(secret(NAMES, NOW - dt.timedelta(days=70)))
    orders.state("web-x", NAMES, {}, held)
    settle(orders)
    state = orders.state("web-x", NAMES, {}, held)
    assert state.ready is True and issuer.calls == [NAMES]


def test_the_condition_names_the_acme_client() -> None:
    err = CAUnreachableError("the CA https://ca.test/dir cannot be reached")
    bad = certstatus.CertState(False, err.reason, err.message, 4, None)
    cond = certstatus.condition([("web-x", bad)], by=BY, kind="Secret")
    assert (cond.status, cond.reason) == (False, Reason.CA_UNREACHABLE)
    assert cond.message == f"{BY} could not issue the certificate: {err.message}"
    end = dt.datetime(2027, 1, 2, 3, 4, tzinfo=dt.UTC)
    good = certstatus.CertState(True, Reason.CERTIFICATE_ISSUED, "", 4, end)
    ok = certstatus.condition([("web-x", good)], by=BY, kind="Secret")
    assert ok.message == "certificate for 4 names valid until 2027-01-02 03:04 UTC"


# -- which path, which names, which solver ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "issuer", "installed", "want"),
    [
        ("", "", False, False),
        ("https://ca/dir", "", True, True),
        ("https://ca/dir", "letsencrypt", False, True),
        ("https://ca/dir", "letsencrypt", True, False),
    ],
)
def test_acme_is_used_where_cert_manager_is_not(
    url: str, issuer: str, installed: bool, want: bool
) -> None:
    s = OperatorSettings(acme_directory_url=url, cert_manager_issuer_name=issuer)
    assert use_acme(s, lambda: installed) is want


def test_the_edge_names_are_its_mail_hosts_unless_listed() -> None:
    s = OperatorSettings(mx_host="MX.example.net.", imap_host="imap.example.net")
    assert edge_names(s) == ("mx.example.net", "imap.example.net", "smtp.vpes.test")
    listed = OperatorSettings(edge_tls_names=("mail.example.net",))
    assert edge_names(listed) == ("mail.example.net",)
    assert edge_names(OperatorSettings(mx_host="", imap_host="", smtp_host="")) == ()


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (OperatorSettings(dns_default_provider="route53"), "default provider is 'route53'"),
        (OperatorSettings(), "set dns.rfc2136.server"),
        (
            OperatorSettings(dns_rfc2136_server="127.0.0.1:53", dns_rfc2136_tsig_name="k"),
            "dns-01 cannot sign its updates",
        ),
    ],
)
def test_a_solver_that_cannot_work_says_what_to_set(settings: OperatorSettings, said: str) -> None:
    with pytest.raises(ACMEConfigError, match=said) as caught:
        solver_for(settings, None)  # type: ignore[arg-type]
    assert caught.value.reason == Reason.ACME_NOT_CONFIGURED


def test_http01_is_answered_by_vpes_web() -> None:
    solver = solver_for(OperatorSettings(acme_challenge="http-01"), None)  # type: ignore[arg-type]
    assert solver.challenge_type == "http-01"


def test_dns01_goes_through_rfc2136() -> None:
    s = OperatorSettings(dns_rfc2136_server="127.0.0.1:53")
    assert solver_for(s, None).challenge_type == DNS01  # type: ignore[arg-type]
