"""My mailbox's vacation reply, pure: the form read and checked (a message per field
saying what to fix), the spec change it makes, the reply shown back, and the
textarea macro's accessible markup."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_panel import account_view as av
from vpes_panel.forms import field_for
from vpes_panel.routes.account import VACATION_FIELDS
from vpes_panel.web import ENV, Form

pytestmark = pytest.mark.unit

ME = "alice@example.org"
TODAY = date(2030, 6, 15)


def spec(vacation: dict[str, Any] | None = None) -> dict[str, Any]:
    mine: dict[str, Any] = {"address": ME}
    if vacation is not None:
        mine["vacation"] = vacation
    return {
        "plan": "basic",
        "owner": {"email": "owner@example.net"},
        "domains": ["example.org"],
        "mailboxes": [mine, {"address": "bob@example.org"}],
    }


def parse(
    on: bool = True,
    subject: str = "Away",
    message: str = "Back soon.",
    days: str = "",
    until: str = "",
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    return av.parse_vacation(on, subject, message, days, until, TODAY)


def test_a_reply_that_is_on() -> None:
    value, errors = parse(subject="  Away  ", message="Hi,\r\n\r\nback soon.\r\n", days="3")
    assert errors == {}
    assert value == {"enabled": True, "subject": "Away", "message": "Hi,\n\nback soon.", "days": 3}


def test_days_default_to_seven_and_the_last_day_may_be_today() -> None:
    value, errors = parse(until="2030-06-15")
    assert errors == {}
    assert value is not None and value["days"] == 7 and value["until"] == "2030-06-15"


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"subject": ""}, "vacation_subject", "Enter a subject"),
        ({"subject": "  "}, "vacation_subject", "Enter a subject"),
        ({"subject": "a\nb"}, "vacation_subject", "one line"),
        ({"subject": "s" * 201}, "vacation_subject", "at most 200 characters (yours has 201)"),
        ({"message": ""}, "vacation_message", "Enter the text"),
        ({"message": "m" * 4001}, "vacation_message", "at most 4000 characters"),
        ({"days": "0"}, "vacation_days", "from 1 to 30"),
        ({"days": "31"}, "vacation_days", "from 1 to 30"),
        ({"days": "-1"}, "vacation_days", "from 1 to 30"),
        ({"days": "seven"}, "vacation_days", "from 1 to 30"),
        ({"until": "2030-06-14"}, "vacation_until", "This day has passed"),
        ({"until": "15/06/2030"}, "vacation_until", "like 2025-08-31"),
        ({"on": False, "subject": "s" * 201}, "vacation_subject", "at most 200"),
    ],
)
def test_bad_input_says_what_to_fix(kwargs: dict[str, Any], field: str, says: str) -> None:
    value, errors = parse(**kwargs)
    assert value is None
    assert list(errors) == [field]
    assert says in errors[field]


def test_several_mistakes_are_all_reported() -> None:
    _, errors = parse(subject="", message="", days="99", until="2000-01-01")
    assert set(errors) == {
        "vacation_subject",
        "vacation_message",
        "vacation_days",
        "vacation_until",
    }


def test_off_keeps_the_text_for_next_time_or_removes_an_empty_reply() -> None:
    value, errors = parse(on=False)
    assert errors == {} and value == {
        "enabled": False,
        "subject": "Away",
        "message": "Back soon.",
        "days": 7,
    }
    assert parse(on=False, subject="", message="") == (None, {})
    assert parse(on=False, subject="Away", message="") == (None, {})


@pytest.mark.parametrize("on", [True, False])
def test_what_the_form_makes_is_a_valid_spec(on: bool) -> None:
    value, _ = parse(on=on, until="2030-07-01", days="30")
    s = spec()
    av.set_vacation(s, ME, value)
    parsed = PersonalMailServerSpec.model_validate(s)
    assert parsed.mailboxes[0].vacation is not None
    assert parsed.mailboxes[0].vacation.enabled is on
    assert "vacation" not in s["mailboxes"][1]
    av.set_vacation(s, ME, None)
    assert "vacation" not in s["mailboxes"][0]


def test_the_reply_is_shown_back() -> None:
    view = av.mailbox(spec({"enabled": True, "subject": "S", "message": "M", "days": 2}), {}, ME)
    assert view is not None
    assert view.vacation == av.Vacation(True, "S", "M", 2, "")
    bob = av.mailbox(spec(), {}, "bob@example.org")
    assert bob is not None and bob.vacation == av.NO_VACATION


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("spec.mailboxes[0].vacation.subject", "vacation_subject"),
        ("spec.mailboxes[0].vacation.message", "vacation_message"),
        ("spec.mailboxes[0].vacation.days", "vacation_days"),
        ("spec.mailboxes[0].vacation.until", "vacation_until"),
        ("spec.mailboxes", "vacation_on"),
        ("spec.somethingElse", "vacation_on"),
    ],
)
def test_the_api_servers_refusals_go_next_to_their_field(path: str, field: str) -> None:
    assert field_for(path, VACATION_FIELDS, "vacation_on") == field


def test_the_textarea_macro_labels_and_describes_its_field() -> None:
    macro = ENV.get_template("macros.html").module.textarea  # type: ignore[attr-defined]
    form = Form(values={"msg": "<b>x</b>"}, errors={"msg": "Too long."})
    out = str(macro(form, "msg", "Text", hint="Plain text."))
    assert '<label for="msg">Text<span class="hint" id="msg-hint">Plain text.</span>' in out
    assert '<span class="error-message" id="msg-error">Too long.</span>' in out
    assert 'aria-describedby="msg-hint msg-error"' in out
    assert 'aria-invalid="true"' in out
    assert "&lt;b&gt;x&lt;/b&gt;</textarea>" in out  # escaped
    plain = str(macro(Form(), "msg", "Text", value="hello"))
    assert "aria-" not in plain and ">\nhello</textarea>" in plain
