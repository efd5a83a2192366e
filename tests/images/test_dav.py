"""The dav image (images/dav): Radicale as a tenant pod's `dav` container runs it.

A CalDAV client (the `caldav` package) and plain CardDAV requests against the
real Radicale, logging in with the mailboxes' own Dovecot hashes; what one
mailbox stores is not another's; the collections are files in the mail
volume's directory (what the server's backups carry); a changed password counts
at once, the old one no more.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from caldav.davclient import DAVClient

from tests.dav_samples import ADDRESSBOOK_MKCOL, contact, event

from .clients import wait_until
from .conftest import host_address
from .dav_support import DAV_UID, Dav, argon2_hash, bcrypt_hashes
from .tenant import build_images

PASSWORDS = {"alice@example.org": "alice-dav-1", "bob@example.net": "bob-dav-2"}
CAROL = "carol@example.org"
CAROL_PASSWORD = "carol-argon-3"


@pytest.fixture(scope="module")
def dav_image() -> str:
    return build_images("dav")[0]


@pytest.fixture(scope="module")
def dav(dav_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dav]:
    d = Dav(dav_image, host_address(21), tmp_path_factory.mktemp("dav"))
    hashes = bcrypt_hashes(PASSWORDS) | {CAROL: argon2_hash(dav_image, CAROL_PASSWORD)}
    d.write_passwd(hashes)
    d.prepare_data()
    d.start()
    try:
        d.wait_ready()
        yield d
    finally:
        d.remove()


def client(dav: Dav, user: str, password: str) -> DAVClient:
    return DAVClient(url=f"{dav.url}/", username=user, password=password)


def test_an_event_is_created_listed_and_deleted(dav: Dav) -> None:
    principal = client(dav, "alice@example.org", PASSWORDS["alice@example.org"]).principal()
    calendar = principal.make_calendar(name="Family")
    uid = f"{uuid.uuid4()}@vpes.test"
    calendar.save_event(event(uid, "Dinner"))

    events = calendar.events()
    assert [e.icalendar_component["summary"] for e in events] == ["Dinner"]
    stored = [
        p for p in (dav.data_dir / "collections").rglob("*.ics") if ".Radicale.cache" not in p.parts
    ]
    assert len(stored) == 1, "the event is a file on the mail volume (what backups carry)"
    assert stored[0].stat().st_uid == DAV_UID

    events[0].delete()
    assert calendar.events() == []


def test_a_contact_round_trips(dav: Dav) -> None:
    auth = ("bob@example.net", PASSWORDS["bob@example.net"])
    book = f"{dav.url}/bob@example.net/contacts/"
    with httpx.Client(auth=auth, timeout=10) as http:
        made = http.request("MKCOL", book, content=ADDRESSBOOK_MKCOL)
        assert made.status_code == 201, made.text
        uid = str(uuid.uuid4())
        card = contact(uid)
        put = http.put(f"{book}{uid}.vcf", content=card, headers={"Content-Type": "text/vcard"})
        assert put.status_code == 201, put.text
        got = http.get(f"{book}{uid}.vcf")
        assert got.status_code == 200
        assert "dana@elsewhere.example" in got.text
        assert "FN:Dana Example" in got.text


def test_wrong_password_and_unknown_user_are_refused(dav: Dav) -> None:
    for user, password in [
        ("alice@example.org", "not-alices"),
        ("nobody@example.org", "anything"),
        ("alice@example.org", ""),
    ]:
        r = httpx.request("PROPFIND", f"{dav.url}/{user}/", auth=(user, password), timeout=10)
        assert r.status_code == 401, (user, r.status_code)


def test_one_mailbox_cannot_read_anothers_collections(dav: Dav) -> None:
    alice = client(dav, "alice@example.org", PASSWORDS["alice@example.org"])
    alice.principal().make_calendar(name="Private")
    bob = ("bob@example.net", PASSWORDS["bob@example.net"])
    r = httpx.request(
        "PROPFIND", f"{dav.url}/alice@example.org/", auth=bob, headers={"Depth": "1"}, timeout=10
    )
    assert r.status_code in (403, 404)
    assert "Private" not in r.text


def test_an_argon2id_mailbox_logs_in(dav: Dav) -> None:
    r = httpx.request(
        "PROPFIND",
        f"{dav.url}/{CAROL}/",
        auth=(CAROL, CAROL_PASSWORD),
        headers={"Depth": "0"},
        timeout=10,
    )
    assert r.status_code == 207, r.text


def test_a_changed_password_counts_at_once(dav: Dav) -> None:
    user, old, new = "alice@example.org", PASSWORDS["alice@example.org"], "alice-changed-9"

    def status(password: str) -> int:
        r = httpx.request(
            "PROPFIND",
            f"{dav.url}/{user}/",
            auth=(user, password),
            headers={"Depth": "0"},
            timeout=10,
        )
        return r.status_code

    assert status(old) == 207  # remembered from here on
    dav.write_passwd(bcrypt_hashes(PASSWORDS | {user: new}))
    try:
        assert status(old) == 401
        assert status(new) == 207
    finally:
        dav.write_passwd(bcrypt_hashes(PASSWORDS))
        wait_until(lambda: status(old) == 207, what="the old password back")


def test_the_collections_survive_a_restart(dav: Dav) -> None:
    auth = ("bob@example.net", PASSWORDS["bob@example.net"])
    principal = client(dav, *auth).principal()
    calendar = principal.make_calendar(name="Work")
    uid = f"{uuid.uuid4()}@vpes.test"
    calendar.save_event(event(uid, "Standup"))
    dav.restart()
    dav.wait_ready()
    again = client(dav, *auth).principal().calendar(name="Work")
    assert [e.icalendar_component["summary"] for e in again.events()] == ["Standup"]


def test_a_data_directory_it_cannot_write_is_named(dav_image: str, tmp_path: Path) -> None:
    d = Dav(dav_image, host_address(22), tmp_path, env={"VPES_DAV_WAIT": "2"})
    d.write_passwd(bcrypt_hashes(PASSWORDS))
    d.prepare_data(owner=0, mode=0o755)
    d.start()
    try:
        assert d.wait_exit(timeout=30) == 2
        assert "/var/lib/vpes-dav is not writable" in d.logs()
    finally:
        d.remove()


def _programs(d: Dav) -> list[str]:
    out = d.exec("sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo")
    return out.stdout.split()


def test_radicale_runs_only_while_used(dav_image: str, tmp_path: Path) -> None:
    d = Dav(dav_image, host_address(23), tmp_path, env={"VPES_DAV_IDLE": "3", "VPES_DAV_TICK": "1"})
    d.write_passwd(bcrypt_hashes(PASSWORDS))
    d.prepare_data()
    d.start()
    user = "alice@example.org"

    def propfind() -> int:
        r = httpx.request(
            "PROPFIND", f"{d.url}/{user}/", auth=(user, PASSWORDS[user]),
            headers={"Depth": "0"}, timeout=30,
        )  # fmt: skip
        return r.status_code

    try:
        d.wait_serving(d.accepts, "the dav listener", 30)
        d.wait_serving(d.accepts, "the dav listener", 30)  # a probe's empty connection, twice
        assert "radicale" not in _programs(d), "no Radicale before the first request"
        assert propfind() == 207  # the first connection waits for it
        assert "radicale" in _programs(d)
        wait_until(lambda: "radicale" not in _programs(d), timeout=20, what="Radicale idle-stopped")
        assert "stopped Radicale" in d.logs()
        assert propfind() == 207  # and back on the next connection
        assert PASSWORDS[user] not in d.logs()
    finally:
        d.remove()
