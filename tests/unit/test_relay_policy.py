"""The outbound relay's pure parts (images/edge/relay): the maps it reads, the
answer to one RCPT, the policy protocol, /status and /metrics, and the files
one generation is made of (passwd-file, KeyTables, the signing scripts)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "edge" / "relay"))

import vpes_relay as policy
import vpes_relay_keys as gen

pytestmark = pytest.mark.unit

LIMITS = "# server limit token\nacme/mail 200 -\nlim/mail 3 1796480000\n"
HELD = "held/mail held/mail is held:  sent 900 recipients\n"


def maps() -> policy.Maps:
    return policy.parse_maps(
        {"limits": LIMITS + "held/mail 10 -\n", "held": HELD, "version": "v7\n"}
    )


def test_limits_and_held_parse() -> None:
    m = maps()
    assert m.version == "v7"
    assert m.limits["acme/mail"] == policy.Limit(200, "-")
    assert m.limits["lim/mail"] == policy.Limit(3, "1796480000")
    assert m.held == {"held/mail": "held/mail is held: sent 900 recipients"}


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("limits", "acme/mail 200\n", "limits line 1: expected"),
        ("limits", "acme/mail lots -\n", "'lots' is not a number"),
        ("limits", "acme 200 -\n", "'acme' is not a server"),
        ("limits", "a/b 1 -\na/b 2 -\n", "limits line 2: a/b is listed twice"),
        ("held", "a/b\n", "held line 1: a/b has no reason"),
        ("held", "A/b reason\n", "is not a server"),
    ],
)
def test_bad_lines_are_named(name: str, text: str, says: str) -> None:
    with pytest.raises(policy.MapError, match=says):
        policy.parse_maps({name: text})


def test_held_unknown_and_anonymous_are_answered_before_counting() -> None:
    m = maps()
    held = policy.before_count(m, "held/mail")
    assert held == policy.Decision("450 4.7.1 held/mail is held: sent 900 recipients", "held")
    unknown = policy.before_count(m, "new/mail")
    assert isinstance(unknown, policy.Decision)
    assert unknown.action.startswith("454 4.7.1 new/mail")
    assert unknown.result == "refused"
    anonymous = policy.before_count(m, "")
    assert isinstance(anonymous, policy.Decision)
    assert anonymous.action.startswith("554 ")
    assert policy.before_count(m, "lim/mail") == policy.Limit(3, "1796480000")


def test_after_counting() -> None:
    limit = policy.Limit(3, "-")
    assert policy.after_count("lim/mail", limit, True) == policy.Decision("DUNNO", "accepted")
    over = policy.after_count("lim/mail", limit, False)
    assert over.action == "450 4.7.1 <lim/mail> reached its limit of 3 recipients an hour"
    assert over.result == "over_limit"
    assert policy.REDIS_DOWN.action.startswith("451 4.")


def test_redis_keys_are_prefixed() -> None:
    assert policy.keys("a/b") == (
        "vpes:relay:rcpt:a/b",
        "vpes:relay:deferred:a/b",
        "vpes:relay:token:a/b",
        "vpes:relay:spam:a/b",
    )
    # Each script forgets every count, spam too, on a new token, prunes the
    # window, counts one.
    for script in (policy.WINDOW_SCRIPT, policy.SPAM_SCRIPT):
        assert "redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])" in script
        for needle in ("ZREMRANGEBYSCORE", "ZCARD", "ZADD", "EXPIRE"):
            assert needle in script


def test_spam_threshold_and_hold() -> None:
    assert policy.spam_threshold(None) == policy.DEFAULT_SPAM_THRESHOLD == 5
    assert policy.spam_threshold(" 3 ") == 3
    assert policy.spam_threshold("0") == 0
    with pytest.raises(ValueError, match="'many' is not a number"):
        policy.spam_threshold("many")
    assert not policy.spam_hold(2, 3)
    assert policy.spam_hold(3, 3)
    assert not policy.spam_hold(100, 0)  # 0: never held for spam


def test_policy_protocol() -> None:
    request = policy.parse_request(
        ["request=smtpd_access_policy", "protocol_state=RCPT", "sasl_username=acme/mail", "x"]
    )
    assert request["sasl_username"] == "acme/mail"
    assert "x" not in request
    assert policy.response("DUNNO") == b"action=DUNNO\n\n"
    # The log reader's request for a refused message, in the same form.
    spam = policy.parse_request(["request=vpes_spam_event", "sasl_username=spam/mail"])
    assert spam["request"] == policy.SPAM_REQUEST


def test_status_lists_only_active_servers() -> None:
    usage = {
        "acme/mail": policy.Usage(12, 0, 2),
        "lim/mail": policy.Usage(3, 2),
        "held/mail": policy.Usage(0, 0),
        "spam/mail": policy.Usage(0, 0, 3),  # refused messages are activity too
    }
    doc = policy.status(maps(), usage, 3)
    assert doc == {
        "maps_version": "v7",
        "window_seconds": 3600,
        "spam_threshold": 3,
        "servers": {
            "acme/mail": {
                "recipients": 12, "limit": 200, "token": "-", "over_limit": False, "deferred": 0,
                "spam": 2, "spam_hold": False,
            },
            "lim/mail": {
                "recipients": 3, "limit": 3, "token": "1796480000", "over_limit": True,
                "deferred": 2, "spam": 0, "spam_hold": False,
            },
            "spam/mail": {
                "recipients": 0, "limit": 0, "token": "-", "over_limit": False, "deferred": 0,
                "spam": 3, "spam_hold": True,
            },
        },
    }  # fmt: skip
    never = policy.status(maps(), usage, 0)["servers"]
    assert never["spam/mail"]["spam_hold"] is False  # type: ignore[index]


def test_metrics() -> None:
    text = policy.metrics(maps(), {"accepted": 5, "held": 1}, 1, 4)
    assert 'vpes_relay_recipients_total{result="accepted"} 5' in text
    assert 'vpes_relay_recipients_total{result="over_limit"} 0' in text
    assert "vpes_relay_servers_over_limit 1" in text
    assert "vpes_relay_queue_messages 4" in text
    assert 'vpes_relay_maps_version_info{version="v7"} 1' in text
    assert "vpes_relay_queue_messages" not in policy.metrics(maps(), {}, 0, None)
    assert "vpes_relay_spam_total 0" in text
    spam = policy.metrics(maps(), {}, 0, None, (7, 2))
    assert "vpes_relay_spam_total 7" in spam
    assert "vpes_relay_servers_spam_hold 2" in spam


# --- one generation -----------------------------------------------------------


def pem(key: object) -> str:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_key_kinds() -> None:
    assert gen.key_kind(pem(rsa.generate_private_key(65537, 2048))) == "rsa"
    assert gen.key_kind(pem(ed25519.Ed25519PrivateKey.generate())) == "ed25519"
    with pytest.raises(gen.MapError, match="neither"):
        gen.key_kind(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(gen.MapError, match="PKCS#8"):
        gen.key_kind("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")


def test_senders_and_transport() -> None:
    owners = gen.parse_senders("@acme.example acme/mail\n@other.example other/mail\n")
    assert owners == {"acme.example": "acme/mail", "other.example": "other/mail"}
    with pytest.raises(gen.MapError, match="expected '@domain ns/name'"):
        gen.parse_senders("acme.example acme/mail\n")
    with pytest.raises(gen.MapError, match="listed twice"):
        gen.parse_senders("@a.example a/b\n@a.example c/d\n")
    domains = gen.parse_domains("acme.example acme/mail\nother.example other/mail\n")
    assert gen.transport(domains, "[mx.vpes.svc]:2525") == (
        "acme.example smtp:[mx.vpes.svc]:2525\nother.example smtp:[mx.vpes.svc]:2525\n"
    )
    assert gen.transport(domains, "") == ""


def test_srs_exclude_keeps_every_hosted_domains_senders() -> None:
    # The first sender_canonical_map looks the sender's domain up here: a hosted
    # domain gives "@domain" (Postfix keeps the local part: the same address, so
    # it stops there), and postsrsd sees only the rest.
    owners = gen.parse_senders("@other.example other/mail\n@acme.example acme/mail\n")
    assert gen.srs_exclude(owners) == "acme.example @acme.example\nother.example @other.example\n"
    assert gen.srs_exclude({}) == ""


def test_users_are_concatenated_and_checked() -> None:
    hashed = "{SSHA512}" + base64.b64encode(b"x" * 72).decode()
    text = gen.users({"users-1": f"b/b:{hashed}\n", "users-0": f"a/a:{hashed}\n", "users-2": ""})
    assert text == f"a/a:{hashed}\nb/b:{hashed}\n"
    with pytest.raises(gen.MapError, match="users-0 line 1"):
        gen.users({"users-0": "a/a:plain\n"})
    with pytest.raises(gen.MapError, match="listed twice"):
        gen.users({"users-0": f"a/a:{hashed}\n", "users-1": f"a/a:{hashed}\n"})


def test_dkim_lines_and_keytable() -> None:
    files = {"dkim-0": "acme.example vpes vpes.acme.example.key\n"}
    keys = gen.dkim_keys(files, ["vpes.acme.example.key"])
    assert keys == [gen.Key("acme.example", "vpes", "vpes.acme.example.key")]
    assert gen.keytable(keys, "/k") == (
        "vpes._domainkey.acme.example acme.example:vpes:/k/vpes.acme.example.key\n"
    )
    with pytest.raises(gen.MapError, match="no key file"):
        gen.dkim_keys(files, [])


def test_signing_script_signs_only_the_owners_domains() -> None:
    keys = [
        gen.Key("acme.example", "vpes", "a.key"),
        gen.Key("acme.example", "vpes-ed25519", "b.key"),
        gen.Key("orphan.example", "vpes", "c.key"),  # no server sends as it: never signed
    ]
    script = gen.signing_script({"acme.example": "acme/mail"}, keys, "gen.1.2", "/r/current/g")
    # Not the live generation's script (a reload that failed): every message 4xx.
    assert 'io.open("/r/current/g", "r")' in script and 'if now ~= "gen.1.2" then' in script
    assert (
        '["acme.example"] = {server = "acme/mail", keys = '
        '{"vpes._domainkey.acme.example", "vpes-ed25519._domainkey.acme.example"}},'
    ) in script
    assert "orphan" not in script
    assert 'odkim.get_mtasymbol(ctx, "{auth_authen}")' in script
    assert "entry.server ~= string.lower(login)" in script


def test_build_refuses_a_bad_generation(tmp_path: Path) -> None:
    maps_dir, relay_dir = tmp_path / "maps", tmp_path / "relay"
    maps_dir.mkdir()
    relay_dir.mkdir()
    (maps_dir / "domains").write_text("acme.example acme/mail\n")
    (maps_dir / "senders").write_text("@acme.example acme/mail\n")
    (maps_dir / "limits").write_text("acme/mail 10 -\n")
    (relay_dir / "dkim-0").write_text("acme.example vpes vpes.acme.example.key\n")
    (relay_dir / "vpes.acme.example.key").write_text(pem(ed25519.Ed25519PrivateKey.generate()))
    gen.build(maps_dir, relay_dir, tmp_path / "good", "[mx]:2525")
    good = tmp_path / "good"
    assert (good / "keytable-rsa").read_text() == ""
    assert "vpes._domainkey.acme.example" in (good / "keytable-ed25519").read_text()
    assert (good / "version").read_text() == "unversioned\n"
    assert (good / "srs-exclude").read_text() == "acme.example @acme.example\n"
    assert (good / "keys" / "vpes.acme.example.key").stat().st_mode & 0o077 == 0
    (maps_dir / "limits").write_text("acme/mail ten -\n")
    assert gen.main([str(maps_dir), str(relay_dir), str(tmp_path / "bad"), ""]) == 1
    assert not (tmp_path / "bad").exists()
