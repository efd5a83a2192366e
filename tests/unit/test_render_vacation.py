"""Vacation replies as rendered (render/vacation.py, vacation.sieve.j2, dovecot.conf.j2):
which mailboxes reply, to which addresses, until when, and that nothing a user types
can leave its Sieve string (a small Sieve lexer reads the script back)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError
from vpes_operator.models.server import PersonalMailServerSpec, Vacation
from vpes_operator.render import RenderError, render_config
from vpes_operator.render.layout import CONFIG_FILES, VACATION_SCRIPT_KEY, VACATION_SCRIPT_PATH
from vpes_operator.render.vacation import MAX_SCRIPT_BYTES, check_size, quoted, text_block

from .render_support import SETTINGS, TRAINING_SETTINGS, ctx_of, spec_dict

pytestmark = pytest.mark.unit

ALICE, BOB = "alice@example.org", "bob@example.net"


def with_vacations(**by_address: dict[str, Any]) -> dict[str, Any]:
    spec = spec_dict()
    for m in spec["mailboxes"]:
        if m["address"] in by_address:
            m["vacation"] = by_address[m["address"]]
    return spec


def render(spec: dict[str, Any], settings: Any = SETTINGS) -> dict[str, str]:
    return render_config(ctx_of(PersonalMailServerSpec.model_validate(spec), settings=settings))


def on(subject: str = "Away", message: str = "Back on Monday.", **more: Any) -> dict[str, Any]:
    return {"enabled": True, "subject": subject, "message": message, **more}


# --- a small Sieve lexer (RFC 5228 section 8.1) ------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*\n|/\*.*?\*/)
  | (?P<text>text:[ \t]*(?:\#[^\n]*)?\n(?P<body>(?:[^\n]*\n)*?)\.\n)
  | (?P<quoted>"(?P<inner>(?:[^"\\]|\\.)*)")
  | (?P<tag>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9]+[KMG]?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[\[\](){},;])
    """,
    re.VERBOSE | re.DOTALL,
)


def lex(script: str) -> list[tuple[str, str]]:
    """(kind, value) tokens; strings decoded ('string', value). Fails on anything else."""
    out, pos = [], 0
    while pos < len(script):
        m = _TOKEN.match(script, pos)
        assert m is not None, f"not Sieve at {script[pos : pos + 40]!r}"
        pos = m.end()
        kind = m.lastgroup
        if m["text"] is not None:
            lines = m["body"].split("\n")[:-1]
            out.append(("string", "\n".join(ln[1:] if ln.startswith("..") else ln for ln in lines)))
        elif m["quoted"] is not None:
            out.append(("string", re.sub(r"\\(.)", r"\1", m["inner"])))
        elif kind not in ("space", "comment", "body", "inner"):
            assert kind is not None
            out.append((kind, m[kind]))
    return out


def skeleton(script: str) -> list[tuple[str, str]]:
    """The script's commands and tests: every string replaced by a placeholder."""
    return [("string", "") if k == "string" else (k, v) for k, v in lex(script)]


def strings(script: str) -> list[str]:
    return [v for k, v in lex(script) if k == "string"]


# --- what is rendered -----------------------------------------------------------------------


def test_the_script_is_a_fixed_key_mounted_under_the_config_dir() -> None:
    assert CONFIG_FILES[VACATION_SCRIPT_KEY] == "sieve/vacation.sieve"
    assert VACATION_SCRIPT_PATH == "/etc/vpes/config/sieve/vacation.sieve"
    files = render(spec_dict())
    assert VACATION_SCRIPT_KEY in files


def test_no_vacation_no_script_and_no_sieve_after() -> None:
    files = render(with_vacations(**{ALICE: {**on(), "enabled": False}}))
    assert "vacation :" not in files[VACATION_SCRIPT_KEY]
    assert "require" not in files[VACATION_SCRIPT_KEY]
    assert lex(files[VACATION_SCRIPT_KEY]) == []
    assert "sieve_after" not in files["dovecot.conf"]
    assert "vnd.dovecot.environment" not in files["dovecot.conf"]


def test_a_reply_that_is_on_runs_after_the_users_script() -> None:
    dovecot = render(with_vacations(**{ALICE: on()}))["dovecot.conf"]
    lines = dovecot.splitlines()
    assert f"  sieve_after = file:{VACATION_SCRIPT_PATH};bindir=%h/sieve-vacation" in lines, (
        "one setting for every user, compiled into the user's home"
    )
    assert "  sieve_global_extensions = +vnd.dovecot.environment" in lines
    assert "sieve_extensions" not in dovecot  # users' own scripts do not get it
    assert "  sieve_vacation_send_from_recipient = yes" in lines
    assert "submission_host = 127.0.0.1:10026" in lines


def test_training_and_vacation_share_the_global_extensions() -> None:
    dovecot = render(with_vacations(**{ALICE: on()}), TRAINING_SETTINGS)["dovecot.conf"]
    assert dovecot.count("sieve_global_extensions") == 1
    assert "  sieve_global_extensions = +vnd.dovecot.pipe +vnd.dovecot.environment" in (
        dovecot.splitlines()
    )


def test_each_user_gets_their_own_block_with_their_addresses() -> None:
    script = render(
        with_vacations(**{ALICE: on("Alice away", days=3), BOB: on("Bob away", "Gone.")})
    )[VACATION_SCRIPT_KEY]
    tokens = lex(script)
    assert ("string", "vnd.dovecot.username") in tokens
    alice, bob = script.split("# alice@example.org")[1].split("# bob@example.net")
    assert 'environment :is "vnd.dovecot.username" "alice@example.org"' in alice
    assert ":days 3" in alice
    assert strings(alice)[:2] == ["vnd.dovecot.username", ALICE]
    assert set(strings(alice)) >= {
        "Alice away",
        "Back on Monday.",
        ALICE,
        "a@example.net",
        "info@example.org",
        "info@example.net",
    }
    assert 'elsif environment :is "vnd.dovecot.username" "bob@example.net"' in bob
    assert ":days 7" in bob  # the default
    assert set(strings(bob)) >= {"Bob away", "Gone.", BOB, "b@example.org", "info@example.net"}
    assert ALICE not in strings(bob)


def test_guards_skip_spam_lists_bulk_and_automatic_mail() -> None:
    script = render(with_vacations(**{ALICE: on()}))[VACATION_SCRIPT_KEY]
    guard = script.split("# alice@example.org")[0]
    assert 'header :is "X-Spam" "Yes"' in guard
    assert 'header :contains "Precedence" ["bulk", "list", "junk"]' in guard
    assert '"List-Id"' in guard
    assert 'not header :is "Auto-Submitted" "no"' in guard
    assert guard.rstrip().endswith("stop;\n}")
    assert '"variables"' not in script, "no ${...} expansion in a user's text"


def test_the_last_day_is_checked_by_the_script() -> None:
    script = render(with_vacations(**{ALICE: on(until="2031-02-28")}))[VACATION_SCRIPT_KEY]
    assert 'if currentdate :zone "+0000" :value "le" "date" "2031-02-28" {' in script
    assert "currentdate" not in render(with_vacations(**{ALICE: on()}))[VACATION_SCRIPT_KEY]


def test_rendering_is_deterministic_whatever_the_order() -> None:
    spec = with_vacations(**{ALICE: on("A"), BOB: on("B")})
    reversed_spec = {**spec, "mailboxes": list(reversed(spec["mailboxes"]))}
    assert render(spec) == render(reversed_spec)


# --- escaping -------------------------------------------------------------------------------

HOSTILE_SUBJECTS = [
    'x"; redirect "evil@example.com"; #',
    'back\\"; discard; if true {"',
    "\\",
    '"',
    "${vnd.dovecot.username} ${1}",
    "tab\there and unicode: Ürlaub ☀",
]
HOSTILE_MESSAGES = [
    '.\n;\nredirect "evil@example.com";\nvacation "x";',
    "line one\n.\nline after a lone dot",
    "..two dots\n...three\n. dot space",
    'text:\n"quoted"\n\\backslash\n/* comment */\n# hash',
    "windows\r\nline\rendings\r\n.\r\nend",
    "ends with a dot line\n.",
    "${1} ${vnd.dovecot.config.x}",
]


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS)
@pytest.mark.parametrize("message", HOSTILE_MESSAGES)
def test_nothing_typed_leaves_its_string(subject: str, message: str) -> None:
    benign = render(with_vacations(**{ALICE: on("Away", "Back soon.")}))[VACATION_SCRIPT_KEY]
    hostile = render(with_vacations(**{ALICE: on(subject, message)}))[VACATION_SCRIPT_KEY]
    assert skeleton(hostile) == skeleton(benign), "the commands must not change"
    found = strings(hostile)
    assert subject in found
    expected = message.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
    assert expected in found


def test_quoted_escapes_backslash_and_quote() -> None:
    assert quoted('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(RenderError):
        quoted("two\nlines")
    with pytest.raises(RenderError):
        quoted("cr\r")
    assert quoted("nul\x00bell\x07") == '"nulbell"'


def test_text_block_dot_stuffs_and_ends_with_a_lone_dot() -> None:
    assert text_block("a\n.\n.b\nc\n\n") == "text:\na\n..\n..b\nc\n.\n"
    assert text_block("\ud800x") == "text:\n?x\n.\n"  # a lone surrogate cannot be UTF-8


def test_a_script_too_large_is_refused() -> None:
    check_size("x" * MAX_SCRIPT_BYTES)
    with pytest.raises(RenderError, match="vacation replies"):
        check_size("x" * (MAX_SCRIPT_BYTES + 1))


# --- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"subject": "", "message": "m"},
        {"subject": "s", "message": ""},
        {"subject": "a\nb", "message": "m"},
        {"subject": "a\rb", "message": "m"},
        {"subject": "s" * 201, "message": "m"},
        {"subject": "s", "message": "m" * 4001},
        {"subject": "s", "message": "m", "days": 0},
        {"subject": "s", "message": "m", "days": 31},
        {"subject": "s", "message": "m", "until": "next week"},
    ],
)
def test_the_model_refuses(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Vacation.model_validate(value)


def test_the_model_on_the_wire() -> None:
    v = Vacation.model_validate({"subject": "s", "message": "m", "until": "2030-01-31"})
    assert v.until == date(2030, 1, 31)
    assert v.wire() == {
        "enabled": False,
        "subject": "s",
        "message": "m",
        "days": 7,
        "until": "2030-01-31",
    }
