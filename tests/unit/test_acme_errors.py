"""What the ACME CA or the network says, turned into CertificateReady reasons and messages."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from acme import challenges, messages
from acme import errors as acme_errors
from vpes_operator.certs import errors
from vpes_operator.certs.errors import (
    CAAForbidsError,
    CARefusedError,
    CAUnreachableError,
    CertError,
    ChallengeFailedError,
    RateLimitedError,
)
from vpes_operator.models.conditions import Permanence, Reason, permanence

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
CA = "https://ca.example/dir"


def problem(code: str, detail: str = "", name: str | None = None, **kw: object) -> messages.Error:
    if name is not None:
        kw["identifier"] = messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)
    return messages.Error.with_code(code, detail=detail, **kw)


def mapped(exc: BaseException) -> CertError:
    out = errors.from_exception(exc, CA, NOW)
    assert out is not None
    return out


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        ("rateLimited", RateLimitedError, Reason.RATE_LIMITED),
        ("caa", CAAForbidsError, Reason.CAA_FORBIDS),
        ("dns", ChallengeFailedError, Reason.CHALLENGE_FAILED),
        ("connection", ChallengeFailedError, Reason.CHALLENGE_FAILED),
        ("incorrectResponse", ChallengeFailedError, Reason.CHALLENGE_FAILED),
        ("unauthorized", ChallengeFailedError, Reason.CHALLENGE_FAILED),
        ("rejectedIdentifier", CARefusedError, Reason.CA_REFUSED),
        ("badCSR", CARefusedError, Reason.CA_REFUSED),
        (None, CARefusedError, Reason.CA_REFUSED),
    ],
)
def test_each_problem_type_has_its_reason(code: str | None, kind: type, reason: str) -> None:
    err = errors.from_problem(code, "the CA's words", "mail.example.org", CA, NOW)
    assert type(err) is kind
    assert err.reason == reason
    assert "the CA's words" in err.message
    assert CA in err.message


def test_caa_says_what_to_change() -> None:
    err = errors.from_problem(
        "caa", "CAA record for example.org prevents issuance", "example.org", CA, NOW
    )
    assert err.message.startswith("the CAA records of example.org do not allow the CA")
    assert "prevents issuance" in err.message
    assert "add a CAA record naming this CA" in err.message


@pytest.mark.parametrize(
    ("detail", "seconds"),
    [
        (
            "too many certificates (5) already issued for this exact set of identifiers in "
            "the last 168h0m0s, retry after 2026-03-01 13:30:00 UTC: see https://letsencrypt.org/docs/",
            5400.0,
        ),
        ("too many new orders, retry after 2026-03-01T12:00:10Z", 10.0),
        ("retry after 2026-02-01 00:00:00 UTC", 0.0),  # already past: at once
        ("too many failed authorizations recently", None),
    ],
)
def test_rate_limit_retry_time_from_the_detail(detail: str, seconds: float | None) -> None:
    assert errors.retry_after(detail, NOW) == seconds
    err = errors.from_problem("rateLimited", detail, None, CA, NOW)
    assert err.retry_seconds == (seconds if seconds is not None else RateLimitedError.retry_seconds)


def test_the_waiting_reasons_are_retried_and_the_others_need_a_person() -> None:
    assert permanence(Reason.RATE_LIMITED) is Permanence.WAITING
    assert permanence(Reason.CA_UNREACHABLE) is Permanence.WAITING
    assert permanence(Reason.CAA_FORBIDS) is Permanence.PERMANENT
    assert permanence(Reason.CHALLENGE_FAILED) is Permanence.PERMANENT


def test_a_problem_document_from_the_ca() -> None:
    err = mapped(problem("rateLimited", "slow down", "mail.example.org"))
    assert isinstance(err, RateLimitedError)
    assert "for mail.example.org" in err.message


def test_a_compound_problem_reports_the_one_to_act_on_first() -> None:
    compound = problem(
        "compound",
        "several",
        subproblems=(
            problem("rateLimited", "slow down", "a.example.org"),
            problem("caa", "CAA forbids", "b.example.org"),
            problem("caa", "CAA forbids", "c.example.org"),
        ),
    )
    err = mapped(compound)
    assert isinstance(err, CAAForbidsError)
    assert "b.example.org" in err.message and "c.example.org" in err.message
    assert "slow down" not in err.message


def authz(name: str, error: messages.Error | None) -> messages.AuthorizationResource:
    challb = messages.ChallengeBody(
        chall=challenges.DNS01(token=b"t" * 32),
        uri="https://ca.example/chall/1",
        status=messages.STATUS_INVALID,
        error=error,
    )
    body = messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name),
        challenges=[challb],
        status=messages.STATUS_INVALID,
    )
    return messages.AuthorizationResource(body=body, uri="https://ca.example/authz/1")


def test_a_failed_validation_names_the_challenge_and_keeps_the_cas_detail() -> None:
    failed = acme_errors.ValidationError(
        [authz("mail.example.org", problem("dns", "NXDOMAIN looking up TXT"))]
    )
    err = mapped(failed)
    assert isinstance(err, ChallengeFailedError)
    assert err.message.startswith("dns-01 for mail.example.org: the CA")
    assert "NXDOMAIN looking up TXT" in err.message


def test_a_challenge_refused_for_an_unlisted_type_is_still_a_failed_challenge() -> None:
    err = mapped(acme_errors.ValidationError([authz("a.example.org", problem("malformed", "x"))]))
    assert isinstance(err, ChallengeFailedError)
    assert "dns-01 for a.example.org" in err.message


def test_caa_found_while_validating_is_caa() -> None:
    err = mapped(acme_errors.ValidationError([authz("a.example.org", problem("caa", "no"))]))
    assert isinstance(err, CAAForbidsError)


def test_a_validation_without_any_detail() -> None:
    err = mapped(acme_errors.ValidationError([authz("a.example.org", None)]))
    assert isinstance(err, ChallengeFailedError)
    assert "said no more" in err.message


def test_an_order_the_ca_gave_up_on() -> None:
    err = mapped(acme_errors.IssuanceError(problem("badCSR", "key too small")))
    assert isinstance(err, CARefusedError)
    assert "badCSR: key too small" in err.message


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (requests.exceptions.ConnectionError("refused"), "cannot be reached (ConnectionError)"),
        (requests.exceptions.ReadTimeout("slow"), "cannot be reached (ReadTimeout)"),
        (requests.exceptions.SSLError("bad cert"), "set VPES_ACME_CA_BUNDLE"),
        (acme_errors.TimeoutError(), "did not finish the order in time"),
        (acme_errors.ClientError("garbage"), "an answer that is not ACME (garbage)"),
    ],
)
def test_network_faults_are_an_unreachable_ca(exc: BaseException, words: str) -> None:
    err = mapped(exc)
    assert isinstance(err, CAUnreachableError)
    assert err.reason == Reason.CA_UNREACHABLE
    assert words in err.message


def test_a_non_acme_http_answer_says_its_status() -> None:
    response = requests.Response()
    response.status_code = 502
    err = mapped(acme_errors.ClientError(response))
    assert "HTTP 502" in err.message


def test_errors_of_other_kinds_are_not_mapped() -> None:
    assert errors.from_exception(KeyError("x"), CA, NOW) is None
    same = ChallengeFailedError("already one")
    assert errors.from_exception(same, CA, NOW) is same


def test_worst_keeps_the_longest_wait_of_its_kind() -> None:
    err = errors.worst([RateLimitedError("a", 10), RateLimitedError("b", 99), CARefusedError("c")])
    assert isinstance(err, RateLimitedError)
    assert (err.message, err.retry_seconds) == ("a; b", 99)
