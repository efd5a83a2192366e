"""The operator's own ACME client: one certificate for a list of names, over `acme`.

`AcmeIssuer.issue(names)` registers (or finds) the account of the operator's
key, orders a certificate for the names, answers each authorization's
challenge with a solver that can (DNS-01 through the DNS provider, HTTP-01
through vpes-web: `http01.py`), waits for the CA to validate, finalizes with a
CSR of a fresh key and returns the chain and that key. Whatever goes wrong is
raised as a `CertError` whose reason and message are ready for the
`CertificateReady` condition. The answers are removed again however the order
ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from acme import client as acme_client
from acme import crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..settings import OperatorSettings
from .account import ALGORITHM, AccountKey
from .errors import ACMEConfigError, CertError, ChallengeFailedError, from_exception, now_utc
from .solvers import Answers, ChallengeSolver, Task

log = logging.getLogger(__name__)

USER_AGENT = "vpes-operator"


@dataclass(frozen=True)
class IssuerConfig:
    directory_url: str
    email: str = ""
    ca_bundle: str = ""
    # The whole order (validation and issuance), and the wait for published answers.
    order_timeout: float = 180.0
    answer_timeout: float = 60.0
    network_timeout: int = 30

    @classmethod
    def from_settings(cls, settings: OperatorSettings) -> IssuerConfig | None:
        """The configuration, or None when the operator requests no certificates."""
        if not settings.acme_directory_url:
            return None
        return cls(settings.acme_directory_url, settings.acme_email, settings.acme_ca_bundle)


@dataclass(frozen=True)
class Issued:
    """A certificate: the PEM chain (leaf first), its private key, and its validity."""

    names: tuple[str, ...]
    chain_pem: str
    key_pem: str
    not_before: datetime
    not_after: datetime


def normalise_names(names: Sequence[str]) -> tuple[str, ...]:
    """Lower-case, without a trailing dot, each once; ValueError for none or a blank one."""
    out = tuple(dict.fromkeys(n.strip().rstrip(".").lower() for n in names))
    if not out or "" in out:
        raise ValueError(f"a certificate needs one or more non-empty names, not {list(names)}")
    return out


def new_key_pem() -> bytes:
    """A fresh RSA 2048 key: what mail clients of every age accept."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class AcmeIssuer:
    def __init__(
        self, config: IssuerConfig, account: AccountKey, solvers: Sequence[ChallengeSolver]
    ) -> None:
        if not solvers:
            raise ValueError("an issuer needs at least one challenge solver")
        self.config = config
        self.account = account
        self.solvers = {s.challenge_type: s for s in solvers}

    def issue(self, names: Sequence[str]) -> Issued:
        """A certificate for `names`; CertError (reason, message) when the CA gives none."""
        wanted = normalise_names(names)
        try:
            return self._issue(wanted)
        except Exception as e:
            mapped = from_exception(e, self.config.directory_url, now_utc())
            if mapped is None:
                raise
            raise mapped from e

    def _check(self) -> None:
        """Settings that cannot work, said before anything is asked of the CA."""
        if not self.config.directory_url.startswith("https://"):
            raise ACMEConfigError(
                f"VPES_ACME_DIRECTORY_URL {self.config.directory_url!r} is not an https:// URL: "
                "ACME is spoken over HTTPS only (RFC 8555); set the CA's directory URL"
            )
        bundle = self.config.ca_bundle
        if bundle and not os.access(bundle, os.R_OK):
            raise ACMEConfigError(
                f"VPES_ACME_CA_BUNDLE names {bundle}, which cannot be read: mount the CA's "
                "certificates there, or unset it to trust the system's CAs"
            )

    def _connect(self) -> acme_client.ClientV2:
        self._check()
        net = acme_client.ClientNetwork(
            self.account.jwk,
            alg=ALGORITHM,
            user_agent=USER_AGENT,
            timeout=self.config.network_timeout,
        )
        if self.config.ca_bundle:
            # requests takes the path of a CA bundle where acme says bool.
            net.verify_ssl = self.config.ca_bundle  # type: ignore[assignment]
        directory = acme_client.ClientV2.get_directory(self.config.directory_url, net)
        client = acme_client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(
            email=self.config.email or None, terms_of_service_agreed=True
        )
        try:
            client.new_account(registration)
        except errors.ConflictError as e:  # the key has an account already: use it
            client.query_registration(
                messages.RegistrationResource(uri=e.location, body=messages.Registration())
            )
        return client

    def _issue(self, names: tuple[str, ...]) -> Issued:
        client = self._connect()
        key_pem = new_key_pem()
        order = client.new_order(crypto_util.make_csr(key_pem, list(names)))
        # acme compares its deadlines with the naive local datetime.now().
        deadline = datetime.now() + timedelta(seconds=self.config.order_timeout)
        answers: list[Answers] = []
        try:
            plan = self._plan(order)
            for solver_type, tasks in plan.items():
                answers.append(self.solvers[solver_type].present(tasks, self.account.jwk))
            for presented in answers:
                presented.wait_ready(self.config.answer_timeout)
            for tasks in plan.values():
                for task in tasks:
                    client.answer_challenge(task.challb, task.challb.response(self.account.jwk))
            order = client.poll_authorizations(order, deadline)
            order = client.finalize_order(order, deadline)
        except Exception:
            abandon(client, order)
            raise
        finally:
            cleanup(answers)
        return issued(names, order.fullchain_pem, key_pem)

    def _plan(self, order: messages.OrderResource) -> dict[str, list[Task]]:
        """For each solver, the challenges it answers (authorizations still pending only)."""
        plan: dict[str, list[Task]] = {}
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # validated recently for this account: nothing to prove
            name = authzr.body.identifier.value
            offered = [c.chall.typ for c in authzr.body.challenges]
            challb = next((c for c in authzr.body.challenges if c.chall.typ in self.solvers), None)
            if challb is None:
                raise ChallengeFailedError(
                    f"the CA {self.config.directory_url} offers {', '.join(offered) or 'none'} "
                    f"for {name}, and the operator answers only {', '.join(self.solvers)}"
                )
            plan.setdefault(challb.chall.typ, []).append(Task(name, challb))
        return plan


def cleanup(answers: Sequence[Answers]) -> None:
    """Take every answer away; what stays is logged (never hiding the order's outcome)."""
    for presented in answers:
        try:
            left = presented.cleanup()
        except Exception as e:
            left = [f"{type(e).__name__}: {e}"]
        for problem in left:
            log.warning("an answer to the CA could not be removed: %s", problem)


def abandon(client: acme_client.ClientV2, order: messages.OrderResource) -> None:
    """Deactivate the order's authorizations that are still pending.

    A CA limits how many pending authorizations an account may hold (Let's
    Encrypt: 300), and a failing order retried every few minutes would reach
    that within days; deactivated ones do not count. Best effort: the order's
    own failure is what gets reported.
    """
    for authzr in order.authorizations:
        try:
            current, _ = client.poll(authzr)
            if current.body.status == messages.STATUS_PENDING:
                client.deactivate_authorization(current)
                log.info(
                    "deactivated the pending authorization for %s (%s)",
                    current.body.identifier.value,
                    current.uri,
                )
        except Exception as e:
            log.info("the authorization %s could not be deactivated: %s", authzr.uri, e)


def issued(names: tuple[str, ...], chain_pem: str, key_pem: bytes) -> Issued:
    """The result, with the validity read from the leaf (the chain's first certificate)."""
    try:
        leaf = x509.load_pem_x509_certificate(chain_pem.encode())
    except ValueError:
        raise CertError("the CA returned a certificate that cannot be read") from None
    return Issued(
        names, chain_pem, key_pem.decode(), leaf.not_valid_before_utc, leaf.not_valid_after_utc
    )
