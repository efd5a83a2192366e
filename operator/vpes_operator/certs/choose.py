"""The one place a challenge solver is made from the settings (`acme_challenge`).

- "dns-01": the `_acme-challenge` TXT records through the platform's default DNS
  provider; RFC 2136 is the one that can also read them back at the zone's primary
  (the issuer waits for that before asking the CA to look).
- "http-01": `certs.http01.Http01Solver` (vpes-web answers at the edge).

What cannot work is an `ACMEConfigError`: `CertificateReady` says what to set.
"""

from __future__ import annotations

from ..clients.kube import Kube
from ..dns.errors import ProviderNotConfiguredError
from ..dns.providers import rfc2136, tsig_key
from ..settings import OperatorSettings
from .errors import ACMEConfigError
from .http01 import Http01Solver
from .solvers import ChallengeSolver, rfc2136_solver


def dns01(settings: OperatorSettings, kube: Kube) -> ChallengeSolver:
    provider = settings.dns_default_provider
    if provider != rfc2136.NAME:
        raise ACMEConfigError(
            f"dns-01 answers through the RFC 2136 DNS provider, and the default provider is "
            f"{provider!r}: set dns.defaultProvider to rfc2136, or "
            "certificates.acme.challenge to http-01"
        )
    if not settings.dns_rfc2136_server:
        raise ACMEConfigError(
            "dns-01 needs the RFC 2136 server: set dns.rfc2136.server (and its TSIG key)"
        )
    try:
        key = tsig_key(settings, kube)
    except ProviderNotConfiguredError as e:
        raise ACMEConfigError(f"dns-01 cannot sign its updates: {e.message}") from None
    return rfc2136_solver(settings.dns_rfc2136_server, key, settings.dns_timeout)


def http01(settings: OperatorSettings, kube: Kube) -> ChallengeSolver:
    return Http01Solver(kube, settings)


def solver_for(settings: OperatorSettings, kube: Kube) -> ChallengeSolver:
    """The solver `settings.acme_challenge` names, configured from the settings."""
    if settings.acme_challenge == "http-01":
        return http01(settings, kube)
    return dns01(settings, kube)
