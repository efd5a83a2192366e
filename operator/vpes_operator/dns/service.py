"""DNS for one server: list, publish, verify, report; and clean up on deletion.

The handlers call `run` (publish when managed, then verify) and `cleanup`;
both read what they need themselves and write only their own part of the
status: `dnsRecords` and the DNSPublished and DNSVerified conditions.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from .. import crypto, naming
from ..builders.meta import Owner, owner_of
from ..clients.kube import Kube
from ..clients.status import update_server_status
from ..conditions import Cond, Event, set_condition
from ..credentials import dkim_ed25519_key_name, dkim_key_name
from ..models.common import ObjectMeta
from ..models.conditions import ConditionType, Reason
from ..models.kube import Secret
from ..models.plan import MailPlanSpec, PlanJSON
from ..models.server import (
    DNSMode,
    DNSRecord,
    PersonalMailServer,
    PersonalMailServerSpec,
    PersonalMailServerStatus,
)
from ..settings import OperatorSettings
from . import mailhost, ownership, providers, verify
from .errors import DNSError
from .providers.base import Provider, Result
from .records import Record, served_mail_host, server_records

log = logging.getLogger(__name__)

PUBLISHED = ConditionType.DNS_PUBLISHED
VERIFIED = ConditionType.DNS_VERIFIED
MESSAGE_LIMIT = 1200
# Which fault names a False DNSPublished when several happen: the most basic first.
REASON_ORDER: list[str] = [
    Reason.UNKNOWN_PROVIDER,
    Reason.PROVIDER_NOT_CONFIGURED,
    Reason.DNS_SERVER_UNREACHABLE,
    Reason.TSIG_KEY_REJECTED,
    Reason.ZONE_NOT_SERVED,
    Reason.UPDATE_REFUSED,
    Reason.RECORD_CONFLICT,
    Reason.CONCURRENT_CHANGE,
]

_DNSBL = verify.DNSBLCache()


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    published: bool = False
    verified: bool = False
    waiting: str | None = None  # something that appears soon (the DKIM keys): retry shortly
    records: list[Record] = field(default_factory=list)
    failures: int = 0  # records this verification found wrong or missing (none while waiting)


@dataclass(frozen=True)
class Publishing:
    """What one run publishes: through which provider (by its configured name), which
    records, and whether to publish at all (False: only verify)."""

    name: str
    provider: Provider
    records: list[Record]
    publish: bool


def dkim_values(
    kube: Kube, owner: Owner, domains: Sequence[str], selector: str
) -> dict[str, dict[str, str]]:
    """selector → TXT value per domain, from the keys in the server's credentials Secret."""
    secret = kube.read(Secret, owner.namespace, naming.credentials_secret(owner.name))
    data = secret.data if secret else {}
    out: dict[str, dict[str, str]] = {}
    for d in domains:
        raw = data.get(dkim_key_name(d))
        if raw:
            out[d] = {selector: crypto.dkim_public_record(base64.b64decode(raw).decode())}
            ed = data.get(dkim_ed25519_key_name(d))
            if ed:
                out[d][f"{selector}-ed25519"] = crypto.dkim_public_record(
                    base64.b64decode(ed).decode()
                )
    return out


def sells_calendar(plan: PlanJSON | None) -> bool:
    """Whether a server's plan (its spec as watched) has calendar and contacts: its
    domains then announce CalDAV and CardDAV. A plan that does not exist or is invalid
    sells nothing (the server's reconcile says what is wrong with it)."""
    if plan is None:
        return False
    try:
        return MailPlanSpec.model_validate(plan).features.calendar
    except ValidationError:
        return False


def provider_name(spec: PersonalMailServerSpec, settings: OperatorSettings) -> str:
    if spec.dns.mode == DNSMode.MANUAL:
        return providers.manual.NAME
    return spec.dns.provider or settings.dns_default_provider


def _signed_all(
    provider: Provider, resolvers: verify.Resolvers, domains: Sequence[str]
) -> dict[str, bool]:
    out = {}
    for d in domains:
        try:
            out[d] = provider.signed(d)
        except DNSError:
            out[d] = resolvers.signed(d)
    return out


def _problem_condition(problems: Sequence[DNSError]) -> Cond:
    ranked = sorted(
        problems, key=lambda p: REASON_ORDER.index(p.reason) if p.reason in REASON_ORDER else 99
    )
    messages: list[str] = []
    for p in ranked:
        if p.message not in messages:
            messages.append(p.message)
    text = "; ".join(messages)
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 20] + f"… ({len(messages)} problems)"
    return Cond(
        PUBLISHED, False, ranked[0].reason, text + ". Records published by others were not touched"
    )


def _verified_condition(
    checks: Sequence[verify.Check], listings: Sequence[verify.Listing], domains: int
) -> Cond:
    failed = [c for c in checks if c.verdict == verify.FAIL]
    unknown = [c for c in checks if c.verdict == verify.UNKNOWN]
    if failed:
        parts = [f"{c.record.type} {c.record.name}: {c.fix}" for c in failed]
        text = f"{len(failed)} of {len(checks)} records are not right: " + "; ".join(parts)
        if len(text) > MESSAGE_LIMIT:
            text = text[: MESSAGE_LIMIT - 40] + "… (status.dnsRecords lists each one)"
        return Cond(VERIFIED, False, Reason.RECORDS_NOT_FOUND, text)
    if unknown:
        return Cond(
            VERIFIED,
            False,
            Reason.RESOLVER_UNREACHABLE,
            f"{len(unknown)} records could not be checked: {unknown[0].fix}; the check is repeated",
        )
    if listings:
        names = "; ".join(f"{x.address} is listed on {x.zone} ({x.reason})" for x in listings)
        return Cond(
            VERIFIED,
            False,
            Reason.OUTBOUND_ADDRESS_LISTED,
            f"all {len(checks)} records are right, but the provider's outbound {names}: the "
            "provider asks the blocklist for removal (mail already flowing keeps flowing)",
        )
    return Cond(
        VERIFIED,
        True,
        Reason.ALL_RECORDS_FOUND,
        f"all {len(checks)} records of {domains} domain(s) are published and answer as expected",
    )


def _record_status(check: verify.Check | None, record: Record) -> DNSRecord:
    if check is None:
        return record.model()
    update: dict[str, object] = {"check": check.verdict, "found": list(check.found)}
    if check.fix:
        update["fix"] = check.fix
    return record.model().model_copy(update=update)


def run(
    kube: Kube,
    settings: OperatorSettings,
    server: PersonalMailServer,
    *,
    publish: bool = True,
    calendar: bool = False,
    dedicated: bool = False,
    now: dt.datetime | None = None,
) -> Outcome:
    """Publish (managed servers) and verify one server's records; write its DNS status.

    `calendar`: the server's plan has features.calendar, so its domains announce
    CalDAV and CardDAV; when it has not (any more), publishing withdraws those records
    like every other record vpes owns and no longer wants. `dedicated`: the plan has a
    dedicated address, so a mail host (spec.mailHost) gets records at it
    (`dns/mailhost.py`) and, once they exist, the domains' mail client SRV records name
    it instead of the edge's hosts."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        spec = server.parsed_spec()
    except ValidationError:
        return Outcome()  # the main reconcile reports an invalid spec
    owner = owner_of(server)
    domains = sorted(spec.domains)
    resolvers = verify.Resolvers(settings.dns_resolvers, settings.dns_timeout)
    dkim = dkim_values(kube, owner, domains, settings.dkim_selector)
    name = provider_name(spec, settings)
    published: Cond
    provider: Provider | None = None
    try:
        provider = providers.make(name, settings, kube, owner, resolvers.signed)
    except DNSError as e:
        published = Cond(PUBLISHED, False, e.reason, e.message)
    signed = (
        _signed_all(provider, resolvers, domains)
        if provider
        else {d: resolvers.signed(d) for d in domains}
    )
    mail_host, no_address = mailhost.for_server(
        kube, owner.namespace, owner.name, spec, settings.dns_ttl, dedicated=dedicated
    )
    # Mail clients are sent to the mail host once it resolves (its address records are
    # published with these); until then to the edge, which serves them meanwhile.
    served = served_mail_host(spec.mail_host, dedicated) if mail_host else None
    records = server_records(domains, settings, dkim, signed, calendar=calendar, mail_host=served)
    records += mail_host
    waiting, wait_reason = None, Reason.WAITING_FOR_KEYS
    if provider is not None:
        publishing = Publishing(name, provider, records, publish)
        published = _published(kube, settings, owner, publishing, resolvers)
        missing = [d for d in domains if d not in dkim]
        if missing:
            waiting = f"the DKIM key of {', '.join(missing)} is not made yet"
        elif no_address:
            waiting, wait_reason = no_address, Reason.WAITING_FOR_ADDRESS
        if waiting and published.status:
            published = Cond(PUBLISHED, False, wait_reason, waiting + "; publishing the rest")
    checks = verify.check_all(resolvers, records)
    listings = verify.dnsbl(resolvers, settings.outbound_addresses, settings.dnsbl_zones, _DNSBL)
    verified = _verified_condition(checks, listings, len(domains))
    if waiting:
        verified = Cond(VERIFIED, False, wait_reason, waiting + "; checked again then")
    failures = 0 if waiting else sum(1 for c in checks if c.verdict == verify.FAIL)
    listed = [_record_status(c, r) for c, r in zip(checks, records, strict=True)]
    events = _write_status(
        kube, owner, published if publish or provider is None else None, verified, listed, now
    )
    return Outcome(
        events=events,
        published=published.status is True,
        verified=verified.status is True,
        waiting=waiting,
        records=records,
        failures=failures,
    )


def _published(
    kube: Kube,
    settings: OperatorSettings,
    owner: Owner,
    publishing: Publishing,
    resolvers: verify.Resolvers,
) -> Cond:
    """DNSPublished: what publishing through the provider did (or would, when not asked)."""
    name, provider, records = publishing.name, publishing.provider, publishing.records
    if name == providers.manual.NAME:
        return Cond(
            PUBLISHED,
            False,
            Reason.MANUAL_MODE,
            f"DNS is published by the customer: publish the {len(records)} records listed in "
            "status.dnsRecords at the domain's DNS host",
        )
    if not publishing.publish:
        return Cond(PUBLISHED, True, Reason.PUBLISHED, "")  # keeps the previous one
    result = _publish(kube, settings, owner, provider, records, resolvers)
    if result.problems:
        return _problem_condition(result.problems)
    domains = len({r.domain for r in records})
    return Cond(
        PUBLISHED,
        True,
        Reason.PUBLISHED,
        f"{len(records)} records of {domains} domain(s) are published through {name}",
    )


def _publish(
    kube: Kube,
    settings: OperatorSettings,
    owner: Owner,
    provider: Provider,
    records: Sequence[Record],
    resolvers: verify.Resolvers,
) -> Result:
    owned = ownership.read(kube, owner.namespace, owner.name)
    if owned and owned.provider and owned.provider != provider.name:
        # The server moved to another provider: take the records back from the old one first.
        try:
            old = providers.make(owned.provider, settings, kube, owner, resolvers.signed)
            gone = old.remove(owned)
        except DNSError as e:
            return Result(owned, problems=[e])
        ownership.write(kube, owner, gone.owned)
        if gone.problems:
            return gone
        owned = gone.owned
    result = provider.publish(records, owned)
    if result.owned.rrsets != owned.rrsets or (result.owned and not owned):
        ownership.write(kube, owner, result.owned)
    return result


def _write_status(
    kube: Kube,
    owner: Owner,
    published: Cond | None,
    verified: Cond,
    records: list[DNSRecord],
    now: dt.datetime,
) -> list[Event]:
    def mutate(current: PersonalMailServer) -> PersonalMailServerStatus:
        generation, before = current.generation, current.status
        conditions = before.conditions
        if published is not None:
            conditions = set_condition(conditions, published, generation=generation, now=now)
        conditions = set_condition(conditions, verified, generation=generation, now=now)
        return before.model_copy(update={"conditions": conditions, "dns_records": records})

    return update_server_status(kube, owner.namespace, owner.name, mutate).events


def cleanup(
    kube: Kube, settings: OperatorSettings, server: PersonalMailServer, *, final: bool = False
) -> list[DNSError]:
    """Remove every record this server published (only those); release the ownership ConfigMap.

    On the `final` attempt the ConfigMap is released even when some records
    could not be removed: nothing stays Terminating forever; the caller reports
    what was left in DNS (the problems returned).
    """
    owner = owner_of(server)
    owned = ownership.read(kube, owner.namespace, owner.name)
    problems: list[DNSError] = []
    if owned:
        resolvers = verify.Resolvers(settings.dns_resolvers, settings.dns_timeout)
        try:
            provider = providers.make(owned.provider, settings, kube, owner, resolvers.signed)
            result = provider.remove(owned)
            problems = result.problems
            owned = result.owned
        except DNSError as e:
            problems = [e]
    ownership.write(kube, owner, owned, keep=bool(problems) and not final)
    return problems


def cleanup_orphan(kube: Kube, settings: OperatorSettings, cm: ObjectMeta) -> list[DNSError]:
    """The last attempt for a `<server>-dns` ConfigMap (its metadata) whose server is gone
    without its cleanup (its finalizer removed by hand, say): remove the records, release it."""
    ref = next(r for r in cm.owner_references if r.kind == PersonalMailServer.KIND)
    gone = ObjectMeta(name=ref.name, namespace=cm.namespace, uid=ref.uid)
    return cleanup(kube, settings, PersonalMailServer(metadata=gone), final=True)
