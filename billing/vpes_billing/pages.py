"""The few HTML pages of signup, escaped by construction (no template logic)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from .tenant import Plan

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0}input{width:100%;padding:.4rem}"
    ".error{color:#a00;border:1px solid #a00;padding:.6rem}"
)


def page(title: str, body: str, *, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def plans(items: Iterable[Plan]) -> str:
    rows = "".join(
        f'<li><a href="/signup?plan={escape(p.name)}">{escape(p.spec.display_name or p.name)}'
        f"</a>: {p.spec.max_mailboxes} mailboxes, {escape(p.spec.storage)}</li>"
        for p in items
    )
    return page("Your own mail server", f"<ul>{rows}</ul>")


def signup_form(
    plan: str, provider_domain: str | None, values: dict[str, str], error: str | None = None
) -> str:
    def field(name: str, label: str, kind: str = "text") -> str:
        value = escape(values.get(name, ""))
        return f'<label>{label}<input type="{kind}" name="{name}" value="{value}"></label>'

    sub = (
        field("subdomain", f"…or a name under {escape(provider_domain)}") if provider_domain else ""
    )
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return page(
        "Sign up",
        f'{err}<form method="post" action="/signup">'
        f'<input type="hidden" name="plan" value="{escape(plan)}">'
        f"{field('email', 'Your email address', 'email')}"
        f"{field('domain', 'Your domain (e.g. example.org)')}{sub}"
        f"{field('mailbox', 'Your first mailbox name (before the @)')}"
        '<button type="submit">Continue to payment</button></form>',
    )


def status(state: dict[str, object], session_id: str) -> str:
    kind = state.get("state")
    message = escape(str(state.get("message") or ""))
    if kind == "refused":
        return page("We could not set up your server", f'<p class="error">{message}</p>')
    if kind == "waiting":
        return page("Payment received", "<p>Setting up your server…</p>", refresh=3)
    if not state.get("ready"):
        phase = escape(str(state.get("phase") or "Pending"))
        return page("Your server is starting", f"<p>{phase}: {message}</p>", refresh=3)
    return page(
        "Your server is ready",
        f"<p>{message}</p>"
        '<form method="post" action="/signup/password-link">'
        f'<input type="hidden" name="session_id" value="{escape(session_id)}">'
        '<button type="submit">Set the password of your mailbox</button></form>',
    )


def password_form(token: str, mailbox: str, error: str | None = None) -> str:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return page(
        f"Password for {mailbox}",
        f'{err}<form method="post" action="/password/{escape(token)}">'
        '<label>New password<input type="password" name="password" autocomplete="new-password">'
        '</label><label>Again<input type="password" name="confirm" '
        'autocomplete="new-password"></label><button type="submit">Set password</button></form>',
    )


def message(title: str, text: str, *, error: bool = False) -> str:
    cls = ' class="error"' if error else ""
    return page(title, f"<p{cls}>{escape(text)}</p>")
