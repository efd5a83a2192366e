"""Everything a tenant's configuration needs, computed once, checked, sorted.

``build_context`` turns (PMS name and namespace, spec, plan, platform settings)
into a ``TenantContext``: plain frozen values the templates only print and
loop over. It is pure and total: the same input gives an equal context, the
order of lists in the spec does not matter (everything is sorted), and bad
input raises ``RenderError`` (permanent: a person must fix the spec or the
settings) instead of producing a configuration that would misbehave.

Who receives which address (aliases, forwards, postmasters, catch-alls) is
decided in ``addresses``; each single value is checked in ``checks``.
Decisions made here:

- Host name: ``<name>.<namespace>.vpes.internal`` (``layout.HOSTNAME_SUFFIX``).
  It does not change when the customer's domains change and names no customer.
- Quotas and the message size limit are bytes (``vpes_operator.quantity``).
- The free space Postfix keeps on the mail volume (``queue_minfree``) is
  ``storage.reserve_bytes`` of the plan's volume and message size; a plan
  whose messages are too large for its volume is refused.
- ``edge_networks`` (from the settings) are trusted to send PROXY protocol
  headers and, for Dovecot, to forward the client's address (``login_trusted_
  networks``); they are *not* Postfix ``mynetworks``: Postfix lets only
  loopback relay without SASL, so mail the edge hands in is never relayed on.
- Junk filing and spam training follow the plan's antispam level and the
  settings' controller URL (``antispam``).
- Vacation replies: those that are on, each with its mailbox's aliases
  (``vacation``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_operator.settings import OperatorSettings
from vpes_operator.storage import reserve_bytes, reserve_problem

from . import addresses, antispam, checks, vacation
from .addresses import MailboxContext, SenderLogin, VirtualAlias
from .antispam import AntispamContext
from .checks import RenderError
from .vacation import VacationContext


@dataclass(frozen=True)
class TenantContext:
    name: str
    namespace: str
    hostname: str
    owner_email: str
    domains: tuple[str, ...]
    mailboxes: tuple[MailboxContext, ...]
    # Aliases, forwards and postmaster defaults, one entry per address, sorted.
    virtual_aliases: tuple[VirtualAlias, ...]
    sender_logins: tuple[SenderLogin, ...]
    default_quota_bytes: int
    max_message_size_bytes: int
    # Free space Postfix keeps on the mail volume: below it new mail gets 452.
    queue_minfree_bytes: int
    relay_host: str  # Postfix relayhost syntax; "" delivers directly
    relay_retry_seconds: int  # the first retry of what the relay deferred
    edge_networks: tuple[str, ...]  # CIDRs, IPv4 first, normalised
    dkim_selector: str
    # Junk filing and spam training, from the plan's antispam level (antispam.py).
    antispam: AntispamContext
    # The vacation replies that are on, by address (vacation.py).
    vacations: tuple[VacationContext, ...] = ()

    @property
    def forwards(self) -> tuple[VirtualAlias, ...]:
        return tuple(v for v in self.virtual_aliases if v.kind == "forward")

    @property
    def aliases(self) -> tuple[VirtualAlias, ...]:
        return tuple(v for v in self.virtual_aliases if v.kind == "alias")

    @property
    def catch_alls(self) -> tuple[VirtualAlias, ...]:
        return tuple(v for v in self.virtual_aliases if v.kind == "catch-all")


def build_context(
    name: str,
    namespace: str,
    spec: PersonalMailServerSpec,
    plan: MailPlanSpec,
    settings: OperatorSettings,
) -> TenantContext:
    """Compute, check and sort everything the tenant's configuration needs."""
    hostname = checks.hostname(name, namespace)
    domains = checks.domains(spec.domains)
    default_quota = checks.positive_bytes(plan.default_quota, "the plan's defaultQuota")
    resolved = addresses.resolve(spec, domains, default_quota)
    mailboxes = resolved.mailboxes
    senders = [SenderLogin(address=m.address, logins=(m.address,)) for m in mailboxes]
    senders += [SenderLogin(address=a, logins=tuple(sorted(o))) for a, o in resolved.claims.items()]

    selector = checks.dkim_selector(settings.dkim_selector)
    message_size = checks.positive_bytes(plan.max_message_size, "the plan's maxMessageSize")
    storage = checks.positive_bytes(plan.storage, "the plan's storage")
    problem = reserve_problem(storage, message_size)
    if problem is not None:
        raise RenderError(problem)
    reserve = reserve_bytes(storage, message_size)
    return TenantContext(
        name=name,
        namespace=namespace,
        hostname=hostname,
        owner_email=resolved.owner_email,
        domains=domains,
        mailboxes=mailboxes,
        virtual_aliases=resolved.virtual_aliases,
        sender_logins=tuple(sorted(senders, key=lambda s: s.address)),
        default_quota_bytes=default_quota,
        max_message_size_bytes=message_size,
        queue_minfree_bytes=reserve,
        relay_host=checks.relay_host(settings.relay_host),
        relay_retry_seconds=settings.relay_retry_seconds,
        edge_networks=checks.networks(settings.edge_networks),
        dkim_selector=selector,
        antispam=antispam.build(plan, settings, reserve),
        vacations=vacation.build(spec, mailboxes),
    )
