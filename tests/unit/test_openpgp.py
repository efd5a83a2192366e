"""OpenPGP keys for the Web Key Directory: the draft's hash, the armor (its checksum
checked), the check of a key by Debian's gpg against keys made here with
`gpg --quick-gen-key` (a good key; keys for another address, expired, revoked, that
cannot encrypt, too long; a secret key; two keys), the keys the fleet publishes, and
what a request to the directory gets. gpg-wks-client, GnuPG's own client, names the
same URL the hash makes."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_panel import openpgp
from vpes_panel.openpgp import KeyRefusedError

from tests.openpgp_keys import GnuPG, gnupg

pytestmark = pytest.mark.unit

ALICE = "alice@example.org"
WKS_CLIENT = shutil.which("gpg-wks-client") or next(
    (
        p
        for p in ("/usr/lib/gnupg/gpg-wks-client", "/usr/libexec/gpg-wks-client")
        if Path(p).exists()
    ),
    None,
)


@dataclass(frozen=True)
class Keys:
    gnupg: GnuPG
    alice: str  # fingerprint
    alice_binary: bytes
    good: str
    other: str
    secret: str
    expired: str
    revoked: str
    sign_only: str
    two: str
    long: str


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    with gnupg() as g:
        alice = g.make(f"Alice Example (work: home) <{ALICE}>")
        g.make("Bob <bob@example.org>")
        g.make("Old <old@example.org>", expire="1d", when="20200101T000000")
        g.revoke(g.make("Rev <rev@example.org>", expire="never"))
        g.make("Signer <signer@example.org>", algo="ed25519", usage="sign")
        g.make("Long <long@example.org>")
        for i in range(45):
            g.gpg("--quick-add-uid", "long@example.org", f"Long {i} <long{i}@example.org>")
        yield Keys(
            gnupg=g,
            alice=alice,
            alice_binary=g.gpg("--export", ALICE),
            good=g.export(ALICE),
            other=g.export("bob@example.org"),
            secret=g.export(ALICE, secret=True),
            expired=g.export("old@example.org"),
            revoked=g.export("rev@example.org"),
            sign_only=g.export("signer@example.org"),
            two=g.export(ALICE, "bob@example.org"),
            long=g.export("long@example.org"),
        )


# -- the hash ----------------------------------------------------------------------------


def test_the_hash_is_the_drafts_example() -> None:
    assert openpgp.wkd_hash("Joe.Doe") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
    assert openpgp.wkd_hash("joe.doe") == openpgp.wkd_hash("JOE.DOE")
    assert openpgp.wkd_hash("joe.doe") != openpgp.wkd_hash("joe.do")


def test_zbase32_and_crc24_known_values() -> None:
    assert openpgp.zbase32(b"") == ""
    assert openpgp.zbase32(b"\x00") == "yy"
    assert openpgp.zbase32(b"\xff") == "9h"  # 11111 111(00): padding bits are zeros
    assert openpgp.crc24(b"") == 0xB704CE
    assert openpgp.crc24(b"123456789") == 0x21CF02  # CRC-24/OPENPGP's check value


@pytest.mark.skipif(WKS_CLIENT is None, reason="no gpg-wks-client installed")
def test_gnupgs_own_client_asks_for_the_url_the_hash_makes(keys: Keys) -> None:
    assert WKS_CLIENT is not None
    out = subprocess.run(
        [WKS_CLIENT, "--print-wkd-url", "Joe.Doe@Example.ORG"],
        capture_output=True,
        check=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    url = urllib.parse.urlsplit(out)
    assert url.scheme == "https" and url.hostname == "openpgpkey.example.org"
    assert url.path.endswith("/" + openpgp.wkd_hash("Joe.Doe"))
    assert url.path == "/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q"
    # The directory answers that very request with the key.
    published = {("example.org", openpgp.wkd_hash("joe.doe")): (keys.alice_binary, "joe.doe")}
    assert openpgp.wkd_lookup(published, url.netloc, f"{url.path}?{url.query}") == (
        keys.alice_binary
    )


# -- the armor ---------------------------------------------------------------------------


def test_dearmor_gives_the_binary_key_and_armor_gives_gpgs_text_back(keys: Keys) -> None:
    data = openpgp.dearmor(keys.good)
    assert data == keys.alice_binary
    assert openpgp.armor(data) == keys.good
    windows = "\r\n".join(keys.good.splitlines()) + "\r\n"
    assert openpgp.dearmor("  \n" + windows + "\n\n") == data
    commented = keys.good.replace("\n\n", "\nComment: my key\nVersion: 1\n\n", 1)
    assert openpgp.dearmor(commented) == data
    without_checksum = "\n".join(line for line in keys.good.splitlines() if line[:1] != "=")
    assert openpgp.dearmor(without_checksum) == data


def _flip(text: str, at: int) -> str:
    """`text` with one base64 character of the body changed (still base64)."""
    lines = text.splitlines()
    body = lines[2]
    lines[2] = body[:at] + ("A" if body[at] != "A" else "B") + body[at + 1 :]
    return "\n".join(lines) + "\n"


def _checksum(text: str, value: int) -> str:
    crc = base64.b64encode(value.to_bytes(3, "big")).decode()
    return "\n".join(f"={crc}" if line[:1] == "=" else line for line in text.splitlines())


BAD_ARMOR = [
    ("a changed character", lambda k: _flip(k, 10), "checksum does not match"),
    ("a wrong checksum", lambda k: _checksum(k, 0x123456), "checksum does not match"),
    ("text before it", lambda k: "My key:\n" + k, "nothing before or after"),
    ("text after it", lambda k: k + "thanks\n", "nothing before or after"),
    ("two blocks", lambda k: k + k, "one public key block only"),
    ("not base64", lambda k: k.replace(k.splitlines()[3], "not base64 at all!"), "not base64"),
    ("cut short", lambda k: "\n".join(k.splitlines()[:3] + k.splitlines()[-2:]), "damaged"),
    ("empty", lambda k: "", "Paste one public key block"),
    ("no footer", lambda k: k.replace(openpgp.OPENPGP_FOOTER, ""), "nothing before or after"),
]


@pytest.mark.parametrize(("case", "change", "says"), BAD_ARMOR, ids=[c[0] for c in BAD_ARMOR])
def test_dearmor_refuses_anything_else(keys: Keys, case: str, change: Any, says: str) -> None:
    with pytest.raises(KeyRefusedError) as refused:
        openpgp.dearmor(change(keys.good))
    assert says in str(refused.value)


def test_dearmor_refuses_a_private_key_block(keys: Keys) -> None:
    assert "PRIVATE KEY BLOCK" in keys.secret
    with pytest.raises(KeyRefusedError, match=r"private \(secret\) key: never give it"):
        openpgp.dearmor(keys.secret)


def test_the_model_takes_what_armor_writes_and_refuses_a_private_block(keys: Keys) -> None:
    def spec(key: str) -> dict[str, Any]:
        return {
            "plan": "p",
            "owner": {"email": "o@example.net"},
            "domains": ["example.org"],
            "mailboxes": [{"address": ALICE, "openpgpKey": key}],
        }

    parsed = PersonalMailServerSpec.model_validate(spec(openpgp.armor(keys.alice_binary)))
    assert parsed.mailboxes[0].openpgp_key == keys.good
    assert parsed.wire()["mailboxes"][0]["openpgpKey"] == keys.good
    crlf = keys.good.replace("\n", "\r\n")
    assert PersonalMailServerSpec.model_validate(spec(crlf)).mailboxes[0].openpgp_key == crlf
    for bad, says in [
        (keys.secret, "must be one ASCII-armored OpenPGP public key"),
        (keys.good + keys.secret + keys.good, "this is a private (secret) key"),
        ("mQINBF...", "must be one ASCII-armored OpenPGP public key"),
        (keys.good.rstrip("\n") + "\r", "must be one ASCII-armored OpenPGP public key"),
        (keys.good.replace("\n\n", "\n\n" + "A" * 8192, 1), "at most 8192 characters"),
    ]:
        with pytest.raises(ValidationError) as refused:
            PersonalMailServerSpec.model_validate(spec(bad))
        assert says in str(refused.value)


# -- gpg's check -------------------------------------------------------------------------


def test_a_good_key(keys: Keys) -> None:
    key = openpgp.check_key(keys.good, ALICE)
    assert key.fingerprint == keys.alice and len(key.fingerprint) == 40
    assert key.grouped_fingerprint.replace(" ", "") == keys.alice
    assert key.user_ids == (f"Alice Example (work: home) <{ALICE}>",)  # a colon unescaped
    assert key.addresses == {ALICE}
    assert key.can_encrypt and not key.revoked and not key.expired
    assert key.expires is not None and key.expires > datetime.now(UTC) + timedelta(days=300)
    assert key.armored == keys.good
    assert openpgp.check_key(keys.good, "Alice@Example.org").fingerprint == keys.alice


REFUSED = [
    ("another address's key", "other", "None of this key's user IDs is alice@example.org"),
    ("a secret key export", "secret", "private (secret) key"),
    ("an expired key", "expired", "This key has expired"),
    ("a revoked key", "revoked", "This key is revoked"),
    ("a key that only signs", "sign_only", "cannot encrypt"),
    ("two keys in one block", "two", "This holds 2 keys: publish one"),
]


@pytest.mark.parametrize(("case", "which", "says"), REFUSED, ids=[c[0] for c in REFUSED])
def test_keys_that_are_refused_say_what_to_do(keys: Keys, case: str, which: str, says: str) -> None:
    text = getattr(keys, which)
    address = {"expired": "old@example.org", "revoked": "rev@example.org"}.get(which, ALICE)
    address = "signer@example.org" if which == "sign_only" else address
    with pytest.raises(KeyRefusedError) as refused:
        openpgp.check_key(text, address)
    assert says in str(refused.value)


def test_a_key_expires_by_the_clock_of_the_check(keys: Keys) -> None:
    later = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(KeyRefusedError, match="expired"):
        openpgp.check_key(keys.good, ALICE, now=later)


def test_a_secret_key_labelled_public_is_refused_by_gpgs_listing(keys: Keys) -> None:
    secret = keys.gnupg.gpg("--export-secret-keys", ALICE)
    with pytest.raises(KeyRefusedError, match=r"private \(secret\) key"):
        openpgp.check_key(openpgp.armor(secret), ALICE)


def test_what_is_no_key_at_all(keys: Keys) -> None:
    with pytest.raises(KeyRefusedError, match="no key gpg can read"):
        openpgp.check_key(openpgp.armor(b"\x00not a key, only bytes"), ALICE)


@pytest.mark.parametrize("cut", [60, 130, -20])
def test_a_key_cut_short_is_refused_though_its_armor_has_no_checksum(keys: Keys, cut: int) -> None:
    """The armor's checksum is optional (RFC 9580): gpg's reading finds the rest."""
    shortened = "\n".join(
        line for line in openpgp.armor(keys.alice_binary[:cut]).splitlines() if line[:1] != "="
    )
    with pytest.raises(KeyRefusedError):
        openpgp.check_key(shortened, ALICE)


def test_a_key_too_long_for_the_spec_says_how_to_shorten_it(keys: Keys) -> None:
    assert len(keys.long) > 8192
    with pytest.raises(KeyRefusedError) as refused:
        openpgp.check_key(keys.long, "long@example.org")
    assert "too long" in str(refused.value) and "export-minimal" in str(refused.value)


def test_no_keyring_is_touched_and_a_missing_gpg_is_said(
    keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GNUPGHOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    openpgp.check_key(keys.good, ALICE)
    assert list(tmp_path.iterdir()) == [], "gpg wrote outside its throwaway home"
    monkeypatch.setattr(openpgp, "GPG", str(tmp_path / "no-such-gpg"))
    with pytest.raises(KeyRefusedError, match="cannot be checked just now"):
        openpgp.check_key(keys.good, ALICE)


# -- the directory -----------------------------------------------------------------------


def server(name: str, created: str, mailboxes: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vpes.io/v1alpha1",
        "kind": "PersonalMailServer",
        "metadata": {"name": name, "namespace": name, "creationTimestamp": created, **meta},
        "spec": {
            "plan": "p",
            "owner": {"email": "o@example.net"},
            "domains": sorted({m["address"].split("@")[1] for m in mailboxes}),
            "mailboxes": mailboxes,
        },
    }


def test_published_keys_come_from_the_domains_owner_only(keys: Keys) -> None:
    good, other = keys.good, keys.other
    servers = [
        server(
            "second",
            "2030-01-02T00:00:00Z",
            [{"address": "alice@example.org", "openpgpKey": other}],
        ),
        server(
            "first",
            "2030-01-01T00:00:00Z",
            [
                {"address": "alice@example.org", "openpgpKey": good},
                {"address": "bob@example.org"},
                {"address": "carol@example.org", "openpgpKey": _flip(good, 5)},
            ],
        ),
        server(
            "elsewhere",
            "2030-01-03T00:00:00Z",
            [{"address": "Joe.Doe@other.example", "openpgpKey": other}],
        ),
        server(
            "leaving",
            "2030-01-01T00:00:00Z",
            [{"address": "dan@gone.example", "openpgpKey": good}],
            deletionTimestamp="2030-02-01T00:00:00Z",
        ),
        {"metadata": {"name": "broken", "creationTimestamp": "not a time"}},
    ]
    published = openpgp.published_keys(servers)
    assert published == {
        ("example.org", openpgp.wkd_hash("alice")): (keys.alice_binary, "alice"),
        ("other.example", "iy9q119eutrkn8s1mk4r39qejnbu3n5q"): (
            openpgp.dearmor(other),
            "Joe.Doe",
        ),
    }
    assert openpgp.published_keys([]) == {}


KEY = b"\x99binary key"
PUBLISHED = {("example.org", openpgp.wkd_hash("alice")): (KEY, "alice")}
ALICE_HASH = openpgp.wkd_hash("alice")
LOOKUPS = [
    (
        "advanced",
        "openpgpkey.example.org",
        f"/.well-known/openpgpkey/example.org/hu/{ALICE_HASH}",
        KEY,
    ),
    (
        "advanced with l=",
        "openpgpkey.example.org",
        f"/.well-known/openpgpkey/example.org/hu/{ALICE_HASH}?l=alice",
        KEY,
    ),
    (
        "advanced policy",
        "openpgpkey.example.org",
        "/.well-known/openpgpkey/example.org/policy",
        "policy",
    ),
    ("direct", "example.org", f"/.well-known/openpgpkey/hu/{ALICE_HASH}", KEY),
    ("direct policy", "example.org", "/.well-known/openpgpkey/policy", "policy"),
    (
        "host in capitals, port, dot",
        "OpenPGPKey.Example.ORG.:443",
        f"/.well-known/openpgpkey/Example.org/hu/{ALICE_HASH}",
        KEY,
    ),
    ("direct host in capitals", "EXAMPLE.org", f"/.well-known/openpgpkey/hu/{ALICE_HASH}", KEY),
    (
        "unknown hash",
        "openpgpkey.example.org",
        f"/.well-known/openpgpkey/example.org/hu/{openpgp.wkd_hash('bob')}",
        None,
    ),
    ("hash in capitals", "example.org", f"/.well-known/openpgpkey/hu/{ALICE_HASH.upper()}", None),
    (
        "foreign domain in the path",
        "openpgpkey.example.org",
        f"/.well-known/openpgpkey/other.example/hu/{ALICE_HASH}",
        None,
    ),
    (
        "foreign host",
        "openpgpkey.other.example",
        f"/.well-known/openpgpkey/example.org/hu/{ALICE_HASH}",
        None,
    ),
    ("direct on a foreign host", "other.example", f"/.well-known/openpgpkey/hu/{ALICE_HASH}", None),
    (
        "policy of a domain without keys",
        "openpgpkey.other.example",
        "/.well-known/openpgpkey/other.example/policy",
        None,
    ),
    (
        "direct path on the advanced host",
        "openpgpkey.example.org",
        f"/.well-known/openpgpkey/hu/{ALICE_HASH}",
        None,
    ),
    (
        "advanced path on the domain",
        "example.org",
        f"/.well-known/openpgpkey/example.org/hu/{ALICE_HASH}",
        None,
    ),
    (
        "the edge's own name",
        "web.edge.example",
        f"/.well-known/openpgpkey/example.org/hu/{ALICE_HASH}",
        None,
    ),
    ("an address literal", "[2001:db8::1]:443", f"/.well-known/openpgpkey/hu/{ALICE_HASH}", None),
    ("more after the hash", "example.org", f"/.well-known/openpgpkey/hu/{ALICE_HASH}/x", None),
    ("the directory itself", "example.org", "/.well-known/openpgpkey/hu/", None),
    ("another path", "example.org", "/.well-known/mta-sts.txt", None),
]


@pytest.mark.parametrize(("case", "host", "path", "found"), LOOKUPS, ids=[c[0] for c in LOOKUPS])
def test_what_a_request_to_the_directory_gets(
    case: str, host: str, path: str, found: object
) -> None:
    assert openpgp.wkd_lookup(PUBLISHED, host, path) == found


def test_a_domain_named_openpgpkey_is_served_by_the_direct_method() -> None:
    keys = {("openpgpkey.example.org", ALICE_HASH): (KEY, "alice")}
    path = f"/.well-known/openpgpkey/hu/{ALICE_HASH}"
    assert openpgp.wkd_lookup(keys, "openpgpkey.example.org", path) == KEY
