"""The few HTML pages of signup: Jinja2 templates (templates/), autoescaped, no logic
beyond loops and conditionals; the values are computed here and in the routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jinja2

from .builders import Plan

_ENV = jinja2.Environment(
    # One look for signup and the panel: the panel's stylesheet is shared.
    loader=jinja2.ChoiceLoader(
        [
            jinja2.PackageLoader("vpes_billing", "templates"),
            jinja2.PackageLoader("vpes_panel", "templates"),
        ]
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, title: str, *, refresh: int | None = None, **values: Any) -> str:
    return _ENV.get_template(template).render(title=title, refresh=refresh, **values)


def plans(items: Iterable[Plan]) -> str:
    return render("plans.html", "Your own mail server", plans=list(items))


def signup_form(
    plan: str, provider_domain: str | None, values: dict[str, str], error: str | None = None
) -> str:
    return render(
        "signup.html",
        "Sign up",
        plan=plan,
        provider_domain=provider_domain,
        values=values,
        error=error,
    )


def status(state: dict[str, object], key: str) -> str:
    kind = state.get("state")
    ready = bool(state.get("ready"))
    if kind == "refused":
        title, refresh = "We could not set up your server", None
    elif kind == "waiting":
        title, refresh = "Payment received", 3
    elif not ready:
        title, refresh = "Your server is starting", 3
    else:
        title, refresh = "Your server is ready", None
    return render(
        "status.html",
        title,
        refresh=refresh,
        kind=kind,
        ready=ready,
        phase=str(state.get("phase") or "Pending"),
        message=str(state.get("message") or ""),
        key=key,
    )


def password_form(token: str, mailbox: str, error: str | None = None) -> str:
    return render("password.html", f"Password for {mailbox}", token=token, error=error)


def message(title: str, text: str, *, error: bool = False) -> str:
    return render("message.html", title, text=text, error=error)
