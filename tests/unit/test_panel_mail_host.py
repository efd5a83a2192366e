"""The overview shows the server's own mail host (spec.mailHost), read-only, where it has
one: the name mail apps connect to; nothing where it has none."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_panel.web import ENV, Form

pytestmark = pytest.mark.unit


def overview(mail_host: str) -> str:
    values: dict[str, Any] = {
        "title": "Your mail server",
        "session": None,
        "form": Form(),
        "server": {},
        "phase": "Running",
        "summary": "",
        "checks": [],
        "sending": {"held": False, "reason": "", "recipients": None, "limit": None},
        "suspended": False,
        "usage": {},
        "plan": {},
        "used": "0 B",
        "capacity": "1 GiB",
        "last_backup": {},
        "mail_host": mail_host,
    }
    return ENV.get_template("overview.html").render(**values)


def test_the_mail_host_is_shown_where_there_is_one() -> None:
    page = overview("mail.example.org")
    assert "<h2>Your mail host</h2>" in page
    assert "<strong>mail.example.org</strong>" in page


def test_no_mail_host_no_section() -> None:
    assert "Your mail host" not in overview("")
