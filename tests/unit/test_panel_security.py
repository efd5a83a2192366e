"""The panel's own security parts, pure: signed sessions (forgery, expiry, the TOTP
stage's short life), new-password rules (length, the breached list, zxcvbn's
reason), TOTP codes (right, wrong, replayed), and settings that keep secrets out of
their repr."""

from __future__ import annotations

import dataclasses

import pyotp
import pytest
from vpes_operator import crypto
from vpes_panel import passwords, sessions, totp
from vpes_panel.customer import password_key, totp_key, user_key
from vpes_panel.settings import Settings

pytestmark = pytest.mark.unit

KEY = b"k" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def codec(clock: Clock) -> sessions.SessionCodec:
    return sessions.SessionCodec(KEY, idle_seconds=1800, max_seconds=7200, clock=clock)


def start(c: sessions.SessionCodec, stage: str = sessions.STAGE_IN) -> sessions.Session:
    return c.start("vpes-c-1", "mail", "alice@example.org", True, "f" * 16, stage)


def test_a_session_round_trips_and_keeps_every_field() -> None:
    c = codec(Clock())
    s = start(c)
    assert c.decode(c.encode(s)) == s


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature
        lambda v: "e30" + v[3:],  # body
        lambda v: v.split(".")[0],  # no signature
        lambda v: "",
        lambda v: "garbage.garbage",
    ],
)
def test_a_forged_or_edited_cookie_is_no_session(tamper: object) -> None:
    c = codec(Clock())
    assert callable(tamper)
    assert c.decode(tamper(c.encode(start(c)))) is None


def test_another_key_cannot_read_or_make_sessions() -> None:
    clock = Clock()
    mine, theirs = codec(clock), sessions.SessionCodec(b"x" * 40, 1800, 7200, clock=clock)
    assert theirs.decode(mine.encode(start(mine))) is None


def test_an_edited_role_breaks_the_signature() -> None:
    c = codec(Clock())
    s = dataclasses.replace(start(c), admin=False)
    _body, sig = c.encode(s).rsplit(".", 1)
    forged = c.encode(dataclasses.replace(s, admin=True)).rsplit(".", 1)[0] + "." + sig
    assert c.decode(forged) is None


def test_sessions_end_when_idle_and_after_the_maximum_whatever_happens() -> None:
    clock = Clock()
    c = codec(clock)
    s = start(c)
    clock.now += 1700
    assert c.decode(c.encode(s)) is not None
    clock.now += 200
    assert c.decode(c.encode(s)) is None, "idle past 30 minutes"
    s = start(c)
    for _ in range(5):  # active all the time, touched every 25 minutes
        clock.now += 1500
        s = c.touch(s)
    assert c.decode(c.encode(s)) is None, "past the absolute maximum"


def test_the_totp_stage_lives_five_minutes_and_advancing_changes_the_csrf_token() -> None:
    clock = Clock()
    c = codec(clock)
    s = start(c, sessions.STAGE_TOTP)
    assert not s.complete
    clock.now += sessions.TOTP_STAGE_SECONDS + 1
    assert c.decode(c.encode(s)) is None
    s = start(c, sessions.STAGE_TOTP)
    advanced = c.advance(s, sessions.STAGE_IN)
    assert advanced.complete and advanced.csrf != s.csrf


@pytest.mark.parametrize(
    ("password", "confirm", "reason"),
    [
        ("Tr0ub4dor&3xyz", "Tr0ub4dor&3xyZ", "differ"),
        ("short", "short", "at least 12"),
        ("password1234", "password1234", "breaches"),
        ("Password1234", "Password1234", "breaches"),
        ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "guess"),
        ("alice@example.org1", "alice@example.org1", "."),
        ("x" * 513, "x" * 513, "at most 512"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(
    password: str, confirm: str, reason: str
) -> None:
    with pytest.raises(passwords.WeakPasswordError, match=reason):
        passwords.check(password, confirm, context=passwords.context_words("alice@example.org"))


def test_a_strong_password_passes_and_hashes_for_dovecot() -> None:
    good = "violet canyon tractor omelette"
    passwords.check(good, good, context=passwords.context_words("alice@example.org"))
    hashed = passwords.hashed(good, 4)
    assert hashed.startswith("{BLF-CRYPT}$2y$") and good not in hashed
    assert crypto.verify_password(good, hashed)


def test_totp_codes_are_right_once_and_only_in_their_window() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000.0
    code = pyotp.TOTP(secret).at(now)
    step = totp.verify(secret, code, 0, now)
    assert step == int(now // 30)
    assert totp.verify(secret, code, step, now) is None, "a replayed code"
    assert totp.verify(secret, code, 0, now + 31) is not None, "the step before: clock skew"
    assert totp.verify(secret, code, 0, now + 95) is None, "too old"
    assert totp.verify(secret, "12345", 0, now) is None
    assert totp.verify(secret, "abcdef", 0, now) is None
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert totp.verify(secret, wrong, 0, now) is None


def test_totp_enrolment_round_trips_and_the_qr_code_is_inline_svg() -> None:
    e = totp.Enrolment(totp.new_secret(), 42)
    assert totp.Enrolment.load(e.dump()) == e
    assert totp.Enrolment.load("not json") is None
    svg = totp.qr_svg(totp.uri(e.secret, "alice@example.org"))
    assert svg.lstrip().startswith("<svg") and "<script" not in svg


def test_secret_keys_for_mailboxes_are_valid_and_unambiguous() -> None:
    assert user_key("a.b_c-d@example.org") == "a.b_c-d_at_example.org"
    # Domains hold no '_': the last '_at_' splits a key back into local part and domain.
    assert user_key("x_at_y@d.example").rsplit("_at_", 1) == ["x_at_y", "d.example"]
    assert password_key("mail", "alice@example.org") == "password.mail.alice_at_example.org"
    assert totp_key("mail", "alice@example.org") == "totp.mail.alice_at_example.org"


def test_settings_keep_the_session_key_out_of_repr() -> None:
    s = Settings(public_url="https://panel.test", session_key=KEY, stripe_api_key="sk_test_zz")
    assert "kkkk" not in repr(s) and "sk_test_zz" not in repr(s)
    assert s.secure_cookies and s.origin == "https://panel.test"
