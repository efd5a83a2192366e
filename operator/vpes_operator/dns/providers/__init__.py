"""DNS providers behind one small interface (`base.Provider`), chosen by name."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from ...builders.meta import Owner
from ...clients.kube import Kube
from ...models.conditions import Reason
from ...models.kube import Secret
from ...settings import OperatorSettings
from ..errors import ProviderNotConfiguredError
from . import externaldns, manual, rfc2136, route53
from .base import Provider, Result

NAMES = (rfc2136.NAME, route53.NAME, externaldns.NAME, manual.NAME)


class UnknownProviderError(ProviderNotConfiguredError):
    reason = Reason.UNKNOWN_PROVIDER


def tsig_key(settings: OperatorSettings, kube: Kube | None) -> rfc2136.TSIGKey | None:
    """The RFC 2136 TSIG key from a file (a mounted Secret) or a Secret ns/name/key."""
    if not settings.dns_rfc2136_tsig_name:
        return None
    secret = ""
    if settings.dns_rfc2136_tsig_secret_file:
        try:
            secret = Path(settings.dns_rfc2136_tsig_secret_file).read_text().strip()
        except OSError as e:
            raise ProviderNotConfiguredError(
                f"the TSIG secret file {settings.dns_rfc2136_tsig_secret_file} cannot be read: {e}"
            ) from None
    elif settings.dns_rfc2136_tsig_secret_ref and kube is not None:
        ref = settings.dns_rfc2136_tsig_secret_ref
        parts = ref.split("/")
        if len(parts) != 3:
            raise ProviderNotConfiguredError(
                f"VPES_DNS_RFC2136_TSIG_SECRET_REF {ref!r} must be <namespace>/<name>/<key>"
            )
        obj = kube.read(Secret, parts[0], parts[1])
        raw = obj.data.get(parts[2]) if obj else None
        if raw is None:
            raise ProviderNotConfiguredError(
                f"the TSIG secret {ref} does not exist: create that Secret and key"
            )
        secret = base64.b64decode(raw).decode().strip()
    if not secret:
        raise ProviderNotConfiguredError(
            f"the TSIG key {settings.dns_rfc2136_tsig_name!r} has no secret: set "
            "VPES_DNS_RFC2136_TSIG_SECRET_FILE or VPES_DNS_RFC2136_TSIG_SECRET_REF"
        )
    return rfc2136.TSIGKey(
        settings.dns_rfc2136_tsig_name, secret, settings.dns_rfc2136_tsig_algorithm
    )


def make(
    name: str,
    settings: OperatorSettings,
    kube: Kube,
    owner: Owner,
    signed: Callable[[str], bool],
) -> Provider:
    """The provider called `name`, configured from the platform settings."""
    if name == rfc2136.NAME:
        return rfc2136.provider(
            settings.dns_rfc2136_server, tsig_key(settings, kube), settings.dns_timeout
        )
    if name == route53.NAME:
        return route53.provider(settings.dns_route53_endpoint_url, settings.dns_route53_region)
    if name == externaldns.NAME:
        return externaldns.ExternalDNSProvider(kube, owner, signed)
    if name == manual.NAME:
        return manual.ManualProvider(signed)
    raise UnknownProviderError(
        f"no DNS provider is called {name!r}: set spec.dns.provider to one of "
        f"{', '.join(NAMES)}, or leave it unset for the default"
    )


__all__ = ["NAMES", "Provider", "Result", "UnknownProvider", "make", "tsig_key"]
