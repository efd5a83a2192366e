"""What can go wrong getting a certificate from an ACME CA, as reasons a person can act on.

Each error carries the `CertificateReady` reason it becomes, a message that
says what happened and what to do, and how long to wait before trying again.
`from_exception` turns whatever the `acme` library or `requests` raised into
one of them; `from_problem` does it for one RFC 8555 problem document. Both
are pure: they read the exception, never the network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import requests
from acme import errors as acme_errors
from acme import messages

from ..models.conditions import Reason

# Problem types (RFC 8555 section 6.7) that say the CA could not validate a challenge.
CHALLENGE_CODES = frozenset(
    {"connection", "dns", "dnssec", "incorrectResponse", "tls", "unauthorized", "unknownHost"}
)
# "retry after 2026-01-02 03:04:05 UTC" in Let's Encrypt's rate-limit details.
_RETRY_AFTER = re.compile(r"retry after (\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:\s*UTC)?", re.I)


class CertError(Exception):
    """A certificate could not be had: a reason, a message, and when to try again."""

    reason: str = Reason.CA_REFUSED
    retry_seconds: float = 3600.0

    def __init__(self, message: str, retry_seconds: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_seconds is not None:
            self.retry_seconds = retry_seconds


class RateLimitedError(CertError):
    reason: str = Reason.RATE_LIMITED


class ChallengeFailedError(CertError):
    reason: str = Reason.CHALLENGE_FAILED
    retry_seconds: float = 900.0


class CAAForbidsError(CertError):
    reason: str = Reason.CAA_FORBIDS


class CAUnreachableError(CertError):
    reason: str = Reason.CA_UNREACHABLE
    retry_seconds: float = 300.0


class CARefusedError(CertError):
    reason: str = Reason.CA_REFUSED


class ACMEConfigError(CertError):
    """The operator's ACME settings cannot work: a person fixes them."""

    reason: str = Reason.ACME_NOT_CONFIGURED


# When several problems come at once, the one a person must act on first.
_PRIORITY: tuple[type[CertError], ...] = (
    CAAForbidsError,
    ChallengeFailedError,
    RateLimitedError,
    CARefusedError,
    CAUnreachableError,
)


def retry_after(detail: str, now: datetime) -> float | None:
    """Seconds until the time a rate-limit detail names ("retry after <UTC time>")."""
    found = _RETRY_AFTER.search(detail)
    if found is None:
        return None
    when = datetime.fromisoformat(found.group(1).replace(" ", "T")).replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def from_problem(
    code: str | None, detail: str, name: str | None, ca: str, now: datetime
) -> CertError:
    """The error for one problem document (its type's last part as `code`)."""
    about = f" for {name}" if name else ""
    said = detail or code or "no detail"
    if code == "rateLimited":
        wait = retry_after(detail, now)
        return RateLimitedError(
            f"the CA {ca} limits how many certificates it issues and refused one{about} for "
            f"now ({said}); the operator asks again when the limit allows",
            wait,
        )
    if code == "caa":
        return CAAForbidsError(
            f"the CAA records of {name or 'the domain'} do not allow the CA {ca} to issue "
            f'({said}): add a CAA record naming this CA (e.g. 0 issue "letsencrypt.org"), '
            "or remove the CAA records that name only other CAs"
        )
    if code in CHALLENGE_CODES:
        return ChallengeFailedError(
            f"the CA {ca} could not validate{about} ({said}): check that the CA can see the "
            "answer (dns-01: the TXT record at the zone's public nameservers; http-01: the "
            "page at the edge), then the operator tries again"
        )
    return CARefusedError(f"the CA {ca} refused the request{about} ({code or 'error'}: {said})")


def _from_acme_error(err: messages.Error, ca: str, now: datetime) -> CertError:
    name = err.identifier.value if err.identifier is not None else None
    subs = err.subproblems or ()
    if err.code == "compound" or subs:
        mapped = [_from_acme_error(s, ca, now) for s in subs]
        if mapped:
            return worst(mapped)
    return from_problem(err.code, err.detail or "", name, ca, now)


def worst(errors: Sequence[CertError]) -> CertError:
    """One error for several: the kind to act on first, with all of that kind's messages."""
    kind = min((type(e) for e in errors), key=_rank)
    same = [e for e in errors if type(e) is kind]
    message = "; ".join(dict.fromkeys(e.message for e in same))
    return kind(message, max(e.retry_seconds for e in same))


def _rank(kind: type[CertError]) -> int:
    return next((i for i, k in enumerate(_PRIORITY) if issubclass(kind, k)), len(_PRIORITY))


def _from_validation(err: acme_errors.ValidationError, ca: str, now: datetime) -> CertError:
    found: list[CertError] = []
    for authzr in err.failed_authzrs:
        name = authzr.body.identifier.value
        for challb in authzr.body.challenges:
            problem = challb.error
            if problem is None:
                continue
            mapped = _from_acme_error(problem, ca, now)
            if type(mapped) is CARefusedError:  # a failed challenge, whatever its type says
                mapped = ChallengeFailedError(f"{challb.chall.typ} for {name}: {mapped.message}")
            elif f"for {name}" not in mapped.message:  # (the CA's detail may hold a URL
                # with the name: http-01's "Get http://<name>/..." does not say which one)
                mapped = type(mapped)(f"{challb.chall.typ} for {name}: {mapped.message}")
            found.append(mapped)
    if not found:
        return ChallengeFailedError(f"the CA {ca} did not validate the names and said no more")
    return worst(found)


def from_exception(exc: BaseException, ca: str, now: datetime) -> CertError | None:
    """The CertError for what the acme library or requests raised; None if neither."""
    if isinstance(exc, CertError):
        return exc
    if isinstance(exc, messages.Error):
        return _from_acme_error(exc, ca, now)
    if isinstance(exc, acme_errors.ValidationError):
        return _from_validation(exc, ca, now)
    if isinstance(exc, acme_errors.IssuanceError):
        return _from_acme_error(exc.error, ca, now)
    if isinstance(exc, requests.exceptions.SSLError):
        return CAUnreachableError(
            f"the CA {ca} answered with a TLS certificate the operator does not trust ({exc}): "
            "for a private or test CA set VPES_ACME_CA_BUNDLE to its CA certificates"
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return CAUnreachableError(
            f"the CA {ca} cannot be reached ({type(exc).__name__}): check "
            "VPES_ACME_DIRECTORY_URL and that the operator may reach it (NetworkPolicy, "
            "proxy, firewall); the operator tries again"
        )
    if isinstance(exc, acme_errors.TimeoutError):
        return CAUnreachableError(
            f"the CA {ca} did not finish the order in time; the operator tries again"
        )
    if isinstance(exc, acme_errors.ClientError):
        return CAUnreachableError(
            f"the CA {ca} gave an answer that is not ACME ({_client_error_text(exc)}); "
            "the operator tries again"
        )
    return None


def _client_error_text(exc: acme_errors.ClientError) -> str:
    first = exc.args[0] if exc.args else None
    if isinstance(first, requests.Response):
        return f"HTTP {first.status_code}"
    return str(exc) or type(exc).__name__


def now_utc() -> datetime:
    return datetime.now(UTC)
