"""credentials.gather: keep what is stored, make only what is new, never leak plaintext."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from vpes_operator import credentials, crypto
from vpes_operator.credentials import (
    GENERATED,
    HASHES_KEY,
    Material,
    MissingPasswordsError,
    dkim_key_name,
    gather,
)
from vpes_operator.errors import ReconcileError, WaitingError
from vpes_operator.models.server import PersonalMailServerSpec

pytestmark = pytest.mark.unit

HOST = "alice-mail.customer-alice.svc"
ALICE_PW = "correct-horse-battery-staple"

MAILBOXES: list[dict[str, Any]] = [
    {
        "address": "alice@example.org",
        "passwordSecretRef": {"name": "alice-password", "key": "password"},
    },
    {"address": "bob@example.org"},
]


class Secrets:
    """The namespace's Secrets as gather reads them: (name, key) → (value, resourceVersion)."""

    def __init__(self, data: dict[tuple[str, str], tuple[str, str]] | None = None) -> None:
        self.data = dict(data or {})
        self.reads: list[tuple[str, str]] = []

    def __call__(self, name: str, key: str) -> tuple[str, str] | None:
        self.reads.append((name, key))
        return self.data.get((name, key))


def alice_secret(value: str = ALICE_PW, version: str = "100") -> Secrets:
    return Secrets({("alice-password", "password"): (value, version)})


def stored(m: Material) -> dict[str, str]:
    """What the server's credentials Secret holds after a build with `m` (decoded)."""
    data = {HASHES_KEY: m.hashes_document(), "tls.crt": m.tls_cert, "tls.key": m.tls_key}
    data[credentials.RELAY_PASSWORD_KEY] = m.relay_password
    data[credentials.RELAY_HASH_KEY] = m.relay_password_hash
    for domain, pem in m.dkim_keys.items():
        data[dkim_key_name(domain)] = pem
    return data


Gather = Callable[..., Material]


@pytest.fixture
def run() -> Gather:
    def run_(
        spec: PersonalMailServerSpec,
        data: dict[str, str] | None = None,
        secrets: Secrets | None = None,
        host: str = HOST,
    ) -> Material:
        return gather(
            spec,
            data or {},
            secrets if secrets is not None else alice_secret(),
            service_host=host,
            bcrypt_rounds=4,
            dkim_bits=1024,
        )

    return run_


@pytest.fixture
def no_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if gather hashes, generates a key, a password or a certificate."""

    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("gather made new material where stored material should be reused")

    for name in (
        "hash_password",
        "generate_password",
        "generate_dkim_key",
        "self_signed_certificate",
        "ssha512",
    ):
        monkeypatch.setattr(credentials.crypto, name, forbidden)


@pytest.fixture
def spec(make_spec: Callable[..., PersonalMailServerSpec]) -> PersonalMailServerSpec:
    return make_spec(domains=["example.org", "example.net"], mailboxes=MAILBOXES, forwards=[])


def test_first_gather_makes_everything(run: Gather, spec: PersonalMailServerSpec) -> None:
    m = run(spec)
    # Only bob has no passwordSecretRef: only bob's password is generated.
    assert set(m.generated_passwords) == {"bob@example.org"}
    assert set(m.password_hashes) == {"alice@example.org", "bob@example.org"}
    assert crypto.verify_password(ALICE_PW, m.password_hashes["alice@example.org"])
    bob_pw = m.generated_passwords["bob@example.org"]
    assert crypto.verify_password(bob_pw, m.password_hashes["bob@example.org"])
    assert m.password_sources == {
        "alice@example.org": "secret:alice-password/password@100",
        "bob@example.org": GENERATED,
    }
    assert set(m.dkim_keys) == {"example.org", "example.net"}
    assert m.dkim_keys["example.org"] != m.dkim_keys["example.net"]
    assert crypto.certificate_names(m.tls_cert) == {
        HOST,
        "mail.example.org",
        "mail.example.net",
    }


def test_second_gather_reuses_everything(
    run: Gather, spec: PersonalMailServerSpec, request: pytest.FixtureRequest
) -> None:
    first = run(spec)
    request.getfixturevalue("no_generation")
    second = run(spec, stored(first))
    assert second.generated_passwords == {}
    assert second.password_hashes == first.password_hashes
    assert second.password_sources == first.password_sources
    assert second.dkim_keys == first.dkim_keys
    assert (second.tls_cert, second.tls_key) == (first.tls_cert, first.tls_key)
    assert second.hashes_document() == first.hashes_document()
    assert (second.relay_password, second.relay_password_hash) == (
        first.relay_password,
        first.relay_password_hash,
    )


def test_relay_password_is_made_once_and_hashed_for_dovecot(
    run: Gather, spec: PersonalMailServerSpec
) -> None:
    first = run(spec)
    assert len(first.relay_password) == 32
    assert crypto.verify_ssha512(first.relay_password, first.relay_password_hash)
    # Another server (or a lost Secret) gets another password.
    assert run(spec).relay_password != first.relay_password
    # A hash that does not match the stored password is made again; the password stays.
    data = {**stored(first), credentials.RELAY_HASH_KEY: crypto.ssha512("something else")}
    again = run(spec, data)
    assert again.relay_password == first.relay_password
    assert crypto.verify_ssha512(first.relay_password, again.relay_password_hash)


def test_changed_secret_version_rehashes(run: Gather, spec: PersonalMailServerSpec) -> None:
    first = run(spec)
    second = run(spec, stored(first), alice_secret("a-new-password", version="101"))
    old, new = (m.password_hashes["alice@example.org"] for m in (first, second))
    assert new != old
    assert crypto.verify_password("a-new-password", new)
    assert not crypto.verify_password(ALICE_PW, new)
    assert second.password_sources["alice@example.org"].endswith("@101")
    # Bob's generated password is not touched by Alice's change.
    assert second.password_hashes["bob@example.org"] == first.password_hashes["bob@example.org"]
    assert second.generated_passwords == {}


def test_removed_mailbox_loses_its_hash(
    run: Gather,
    spec: PersonalMailServerSpec,
    make_spec: Callable[..., PersonalMailServerSpec],
) -> None:
    first = run(spec)
    smaller = make_spec(domains=list(spec.domains), mailboxes=MAILBOXES[:1], forwards=[])
    second = run(smaller, stored(first))
    assert set(second.password_hashes) == {"alice@example.org"}
    assert "bob@example.org" not in second.hashes_document()


def test_generated_password_is_kept_only_while_it_is_generated(
    run: Gather,
    spec: PersonalMailServerSpec,
    make_spec: Callable[..., PersonalMailServerSpec],
) -> None:
    """Bob moves to his own Secret: his hash comes from that Secret, not the old password."""
    first = run(spec)
    bob_ref = {"address": "bob@example.org", "passwordSecretRef": {"name": "bob-pw"}}
    moved = make_spec(domains=list(spec.domains), mailboxes=[MAILBOXES[0], bob_ref], forwards=[])
    secrets = alice_secret()
    secrets.data[("bob-pw", "password")] = ("bobs-own-choice", "7")
    second = run(moved, stored(first), secrets)
    assert crypto.verify_password("bobs-own-choice", second.password_hashes["bob@example.org"])
    assert second.password_sources["bob@example.org"] == "secret:bob-pw/password@7"
    assert second.generated_passwords == {}


def test_missing_password_secret_waits_and_keeps_the_previous_hash(
    run: Gather, spec: PersonalMailServerSpec
) -> None:
    first = run(spec)
    with pytest.raises(MissingPasswordsError) as info:
        run(spec, stored(first), Secrets())
    err = info.value
    assert isinstance(err, WaitingError)
    assert err.reason == "PasswordSecretMissing"
    assert "alice@example.org" in err.message
    assert "'alice-password'" in err.message
    assert "'password'" in err.message
    kept = err.material
    assert kept.password_hashes == first.password_hashes
    assert kept.password_sources == first.password_sources
    assert kept.dkim_keys == first.dkim_keys
    assert kept.tls_cert == first.tls_cert
    assert kept.generated_passwords == {}


def test_missing_password_secret_on_first_gather_leaves_the_mailbox_out(
    run: Gather, spec: PersonalMailServerSpec
) -> None:
    with pytest.raises(MissingPasswordsError) as info:
        run(spec, {}, Secrets())
    m = info.value.material
    assert set(m.password_hashes) == {"bob@example.org"}
    assert set(m.dkim_keys) == {"example.org", "example.net"}
    assert m.tls_cert
    json.loads(m.hashes_document())  # still a valid document to store


def test_new_domain_gets_a_new_dkim_key_others_kept(
    run: Gather,
    spec: PersonalMailServerSpec,
    make_spec: Callable[..., PersonalMailServerSpec],
) -> None:
    first = run(spec)
    bigger = make_spec(domains=[*spec.domains, "example.com"], mailboxes=MAILBOXES, forwards=[])
    second = run(bigger, stored(first))
    assert set(second.dkim_keys) == {"example.org", "example.net", "example.com"}
    for domain in ("example.org", "example.net"):
        assert second.dkim_keys[domain] == first.dkim_keys[domain]
    assert second.dkim_keys["example.com"] not in first.dkim_keys.values()
    crypto.dkim_public_record(second.dkim_keys["example.com"])  # a usable key


def test_removed_domain_drops_its_dkim_key(
    run: Gather,
    spec: PersonalMailServerSpec,
    make_spec: Callable[..., PersonalMailServerSpec],
) -> None:
    first = run(spec)
    fewer = make_spec(domains=["example.org"], mailboxes=MAILBOXES, forwards=[])
    second = run(fewer, stored(first))
    assert second.dkim_keys == {"example.org": first.dkim_keys["example.org"]}


@pytest.mark.parametrize(
    ("domains", "host", "names"),
    [
        pytest.param(
            ["example.org", "example.net", "example.com"],
            HOST,
            {HOST, "mail.example.org", "mail.example.net", "mail.example.com"},
            id="domain-added",
        ),
        pytest.param(["example.org"], HOST, {HOST, "mail.example.org"}, id="domain-removed"),
        pytest.param(
            ["example.org", "example.net"],
            "alice-mail.other.svc",
            {"alice-mail.other.svc", "mail.example.org", "mail.example.net"},
            id="service-host-changed",
        ),
    ],
)
def test_tls_certificate_is_regenerated_when_names_change(
    run: Gather,
    spec: PersonalMailServerSpec,
    make_spec: Callable[..., PersonalMailServerSpec],
    domains: list[str],
    host: str,
    names: set[str],
) -> None:
    first = run(spec)
    changed = make_spec(domains=domains, mailboxes=MAILBOXES, forwards=[])
    second = run(changed, stored(first), host=host)
    assert second.tls_cert != first.tls_cert
    assert second.tls_key != first.tls_key
    assert crypto.certificate_names(second.tls_cert) == names


@pytest.mark.parametrize("drop", ["tls.crt", "tls.key"])
def test_half_a_key_pair_is_replaced(run: Gather, spec: PersonalMailServerSpec, drop: str) -> None:
    first = run(spec)
    data = stored(first)
    del data[drop]
    second = run(spec, data)
    assert second.tls_cert != first.tls_cert
    assert crypto.certificate_names(second.tls_cert) == crypto.certificate_names(first.tls_cert)


def test_expired_tls_certificate_is_renewed(run: Gather, spec: PersonalMailServerSpec) -> None:
    first = run(spec)
    names = credentials.tls_names(spec, HOST)
    old_cert, old_key = crypto.self_signed_certificate(
        names, days=30, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    )
    data = {**stored(first), "tls.crt": old_cert, "tls.key": old_key}
    second = run(spec, data)
    assert crypto.certificate_expires(second.tls_cert) > dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(
    "document",
    ["", "not json", json.dumps({"bob@example.org": {"hash": "x"}})],
    ids=["empty", "garbage", "entry-without-source"],
)
def test_unreadable_hashes_document_means_start_over(
    run: Gather, spec: PersonalMailServerSpec, document: str
) -> None:
    first = run(spec)
    data = {**stored(first), HASHES_KEY: document}
    second = run(spec, data)
    assert set(second.generated_passwords) == {"bob@example.org"}
    assert (
        second.generated_passwords["bob@example.org"]
        != first.generated_passwords["bob@example.org"]
    )


def test_hashes_document_that_is_not_an_object_is_ignored(
    run: Gather, spec: PersonalMailServerSpec
) -> None:
    first = run(spec)
    second = run(spec, {**stored(first), HASHES_KEY: "[]"})
    assert set(second.generated_passwords) == {"bob@example.org"}


def test_no_plaintext_password_in_the_hashes_document(
    run: Gather, spec: PersonalMailServerSpec
) -> None:
    m = run(spec)
    doc = m.hashes_document()
    plaintexts = [ALICE_PW, *m.generated_passwords.values()]
    for pw in plaintexts:
        assert pw not in doc
    parsed = json.loads(doc)
    assert sorted(parsed) == ["alice@example.org", "bob@example.org"]
    for entry in parsed.values():
        assert set(entry) == {"hash", "source"}
        assert entry["hash"].startswith("{BLF-CRYPT}$2y$04$")


def test_stored_secret_is_read_by_name_and_key(run: Gather, spec: PersonalMailServerSpec) -> None:
    secrets = alice_secret()
    run(spec, secrets=secrets)
    assert secrets.reads == [("alice-password", "password")]


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 73, id="longer-than-bcrypt-72-bytes"),
        pytest.param("ü" * 40, id="80-utf8-bytes"),
    ],
)
def test_unhashable_password_in_a_secret_is_a_reconcile_error(
    run: Gather, spec: PersonalMailServerSpec, password: str
) -> None:
    error: ReconcileError | None = None
    try:
        m = run(spec, secrets=alice_secret(password))
    except ReconcileError as e:
        error = e
    if error is not None:  # refused, naming the mailbox whose Secret to fix
        assert "alice@example.org" in error.message
    else:  # or accepted with a hash that really verifies
        assert crypto.verify_password(password, m.password_hashes["alice@example.org"])


def test_ed25519_dkim_keys_are_made_once_when_enabled(run: Gather) -> None:
    spec = PersonalMailServerSpec.model_validate(
        {"plan": "p", "owner": {"email": "o@example.net"}, "domains": ["a.example", "b.example"]}
    )
    plain = gather(
        spec, {}, lambda _n, _k: None, service_host=HOST, bcrypt_rounds=4, dkim_bits=1024
    )
    assert plain.dkim_ed25519_keys == {}, "off by default"
    first = gather(
        spec,
        {},
        lambda _n, _k: None,
        service_host=HOST,
        bcrypt_rounds=4,
        dkim_bits=1024,
        dkim_ed25519=True,
    )
    assert set(first.dkim_ed25519_keys) == {"a.example", "b.example"}
    assert first.dkim_ed25519_keys["a.example"] != first.dkim_ed25519_keys["b.example"]
    stored = {credentials.dkim_ed25519_key_name(d): k for d, k in first.dkim_ed25519_keys.items()}
    stored |= {credentials.dkim_key_name(d): k for d, k in first.dkim_keys.items()}
    again = gather(
        spec,
        stored,
        lambda _n, _k: None,
        service_host=HOST,
        bcrypt_rounds=4,
        dkim_bits=1024,
        dkim_ed25519=True,
    )
    assert again.dkim_ed25519_keys == first.dkim_ed25519_keys
    assert again.dkim_keys == first.dkim_keys


def test_a_hash_in_the_password_secret_is_taken_as_it_is(
    run: Gather, spec: PersonalMailServerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panel and billing store a hash, never the password: it is used unhashed."""
    given = crypto.hash_password("set-in-the-panel-1", 4)
    hash_calls: list[str] = []
    real = crypto.hash_password
    monkeypatch.setattr(
        credentials.crypto,
        "hash_password",
        lambda pw, rounds: hash_calls.append(pw) or real(pw, rounds),
    )
    m = run(spec, secrets=alice_secret(given + "\n"))
    assert m.password_hashes["alice@example.org"] == given
    assert "set-in-the-panel-1" not in hash_calls and given not in hash_calls
    assert crypto.verify_password("set-in-the-panel-1", m.password_hashes["alice@example.org"])


@pytest.mark.parametrize(
    ("value", "is_hash"),
    [
        ("{BLF-CRYPT}$2y$10$" + "a" * 53, True),
        ("{BLF-CRYPT}$2b$04$" + "./Ab" * 13 + "x", True),
        ("{BLF-CRYPT}$2y$10$" + "a" * 52, False),  # cut short: a password, hashed
        ("{BLF-CRYPT}$2y$03$" + "a" * 53, False),  # cost outside Dovecot's range
        ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", True),
        ("{PLAIN}secret", False),
        ("correct horse battery staple", False),
    ],
)
def test_what_counts_as_a_given_hash(value: str, is_hash: bool) -> None:
    assert crypto.is_password_hash(value) is is_hash
