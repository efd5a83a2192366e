"""The signup form: validate what the customer asks for, then a Checkout Session."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vpes_operator.clients.kube import Kube
from vpes_operator.models.common import (
    ADDRESS_PATTERN,
    DOMAIN_PATTERN,
    LABEL_PATTERN,
    MAILBOX_ADDRESS_PATTERN,
)

from . import naming as n
from . import tenant
from .settings import Settings
from .stripe_gateway import CheckoutSession, StripeGateway

LABEL = re.compile(rf"^{LABEL_PATTERN}$")


class SignupError(Exception):
    """What is wrong with the form, for the customer."""


@dataclass(frozen=True)
class SignupForm:
    plan: str
    email: str
    domain: str
    mailbox: str


def parse(settings: Settings, form: dict[str, str]) -> SignupForm:
    plan = form.get("plan", "").strip()
    email = form.get("email", "").strip().lower()
    domain = form.get("domain", "").strip().lower().rstrip(".")
    subdomain = form.get("subdomain", "").strip().lower()
    mailbox = form.get("mailbox", "").strip().lower() or "me"
    if not re.fullmatch(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", plan):
        raise SignupError("Choose a plan.")
    if len(email) > 254 or not re.fullmatch(ADDRESS_PATTERN, email):
        raise SignupError("Enter your email address, e.g. you@example.net.")
    if subdomain and domain:
        raise SignupError("Enter either your own domain or a name under ours, not both.")
    if subdomain:
        if not settings.provider_domain:
            raise SignupError("This provider does not offer names under its own domain.")
        if not LABEL.fullmatch(subdomain):
            raise SignupError("The name may hold lowercase letters, digits and '-' (63 at most).")
        if subdomain in settings.reserved_subdomains:
            raise SignupError(f"{subdomain} is reserved. Choose another name.")
        domain = f"{subdomain}.{settings.provider_domain}"
    if not domain:
        raise SignupError("Enter the domain your mail should use, e.g. example.org.")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise SignupError(f"{domain} is not a valid domain name.") from None
    if len(domain) > 253 or not re.fullmatch(DOMAIN_PATTERN, domain):
        raise SignupError(f"{domain} is not a valid domain name, e.g. example.org.")
    if settings.provider_domain and domain == settings.provider_domain:
        raise SignupError("Choose a name under our domain, not the domain itself.")
    if not re.fullmatch(MAILBOX_ADDRESS_PATTERN, f"{mailbox}@{domain}"):
        raise SignupError("The mailbox name may hold lowercase letters, digits, '.', '_' and '-'.")
    return SignupForm(plan=plan, email=email, domain=domain, mailbox=mailbox)


def start(
    kube: Kube, stripe: StripeGateway, settings: Settings, form: SignupForm, key: str
) -> CheckoutSession:
    """A Checkout Session for `form`. `key` (n.new_signup_key) comes back in the return
    URL, to the browser that pays; only its hash goes to Stripe's metadata, and from
    there, through the signed webhook, onto the server."""
    plan = tenant.get_plan(kube, form.plan)
    if plan is None or not plan.spec.stripe_price_id:
        raise SignupError(f"There is no plan {form.plan!r} for sale.")
    if tenant.domain_user(kube, form.domain) is not None or _claimed(kube, settings, form.domain):
        raise SignupError(str(tenant.DomainTakenError(form.domain)))
    return stripe.create_checkout(
        price_id=plan.spec.stripe_price_id,
        email=form.email,
        metadata={
            "plan": form.plan,
            "domain": form.domain,
            "mailbox": form.mailbox,
            n.METADATA_SIGNUP_KEY: n.signup_key_digest(key),
        },
        success_url=f"{settings.public_url}/signup/return?key={key}",
        cancel_url=f"{settings.public_url}/signup?plan={form.plan}",
    )


def _claimed(kube: Kube, settings: Settings, domain: str) -> bool:
    return kube.get("v1", "ConfigMap", settings.namespace, n.domain_claim_name(domain)) is not None
