"""The webmail images (images/webmail, images/webmail-db): Roundcube in front of a
real tenant (the conftest's, Postfix + Dovecot), as a browser uses it.

Two webmail replicas on one database; the tenant's own IMAPS, submission and
ManageSieve ports stand for the edge's login proxy. Logins through Roundcube's
form: an allowed domain's mailbox reaches its inbox, a domain not in the allowed
file is refused with the gate's message (live when the file changes), a wrong
password is refused; a message sent through compose arrives in the tenant; a
vacation made through the managesieve plugin is the mailbox's active script; a
PGP key pair imported through enigma is kept, passphrase-protected, in the
database and listed by the other replica; an
upload over the limit gets Roundcube's size error; a session made on one replica
is carried on by the other; the database keeps its data over a restart; a
password change goes to the panel's endpoint and its refusal is shown; the
container runs as www-data with a read-only root and nothing listening but
8080, and logs no secret; cookies are Secure behind the ingress; SIGTERM exits
0; a bad setting is named; a database not reachable is waited for, then fatal.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from .clients import ManageSieve, imap_find, imap_login, unique, wait_until
from .conftest import Running, host_address
from .tenant import PASSWORDS, build_images, container_address
from .webmail_support import (
    DB_PASSWORD,
    DES_KEY,
    GATE_MESSAGE,
    Browser,
    Panel,
    Webmail,
    WebmailDb,
    page_token,
    pgp_private_key,
    shown_messages,
    webmail_env,
)

ALICE = "alice@example.org"
BOB = "bob@example.net"
MAX_UPLOAD = 200 * 1024


@dataclass
class Setup:
    db: WebmailDb
    one: Webmail
    two: Webmail
    tenant: Running
    panel: Panel


@pytest.fixture(scope="module")
def webmail(
    tenant: Running, gateway: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    db_image, image = build_images("webmail-db", "webmail")
    panel = Panel(gateway)
    root = tmp_path_factory.mktemp("webmail")
    db = WebmailDb(db_image, root / "db")
    (root / "db").mkdir()
    replicas: list[Webmail] = []
    try:
        db.start()
        db.wait_ready()
        env = webmail_env(
            db.dsn,
            container_address(tenant.tenant.name),
            VPES_WEBMAIL_MAX_UPLOAD=str(MAX_UPLOAD),
            VPES_WEBMAIL_PRODUCT_NAME="Test Mail",
            VPES_WEBMAIL_PASSWORD_URL=panel.url,
        )
        for n, name in [(31, "one"), (32, "two")]:
            w = Webmail(image, host_address(n), root / name, env)
            w.write_domains(["example.org"])
            replicas.append(w)
        # Both at once: the schema is made once, under the advisory lock.
        for w in replicas:
            w.start()
        for w in replicas:
            w.wait_ready()
        yield Setup(db, replicas[0], replicas[1], tenant, panel)
    finally:
        panel.close()
        for w in replicas:
            w.remove()
        db.remove()


def logged_in(w: Webmail, user: str = ALICE) -> Browser:
    b = Browser(w.url)
    r = b.login(user, PASSWORDS[user])
    assert r.status_code == 200 and "_task=mail" in str(r.url), r.text[:2000]
    return b


def test_both_replicas_made_the_schema_once(webmail: Setup) -> None:
    logs = webmail.one.logs() + webmail.two.logs()
    assert logs.count("creating it") == 1, logs
    assert "error" not in logs.lower(), logs


def test_an_allowed_mailbox_logs_in_and_lists_its_inbox(webmail: Setup) -> None:
    b = logged_in(webmail.one)
    try:
        listed = b.mail_list()
        assert listed.status_code == 200
        answer = listed.json()
        assert answer["action"] == "list", answer
        assert "set_rowcount" in answer["exec"] and "session_error" not in answer["exec"], answer
        page = b.get("/", {"_task": "mail"})
        assert ALICE in page.text and "Test Mail" in page.text
    finally:
        b.close()


def test_a_domain_not_in_the_file_is_refused_with_the_gates_message(webmail: Setup) -> None:
    b = Browser(webmail.one.url)
    try:
        r = b.login(BOB, PASSWORDS[BOB])
        assert r.status_code == 401
        assert GATE_MESSAGE in shown_messages(r.text)
        assert "_task=mail" not in str(r.url)
        # The file is read at each login: listed, bob gets in with no restart.
        webmail.one.write_domains(["example.org", "example.net"])
        r = b.login(BOB, PASSWORDS[BOB])
        assert r.status_code == 200 and "_task=mail" in str(r.url), (
            shown_messages(r.text),
            webmail.one.logs()[-3000:],
        )
        assert "set_rowcount" in b.mail_list().json()["exec"]
        # Taken out again: bob's open session ends at its next request.
        webmail.one.write_domains(["example.org"])
        assert "session_error" in b.mail_list().json()["exec"]
    finally:
        webmail.one.write_domains(["example.org"])
        b.close()
    # Taken out again: refused again.
    again = Browser(webmail.one.url)
    try:
        assert GATE_MESSAGE in shown_messages(again.login(BOB, PASSWORDS[BOB]).text)
    finally:
        again.close()


def test_a_wrong_password_is_refused(webmail: Setup) -> None:
    b = Browser(webmail.one.url)
    try:
        r = b.login(ALICE, "not-alices-password")
        assert r.status_code == 401
        assert "Login failed." in shown_messages(r.text)
        assert GATE_MESSAGE not in r.text
        assert "session_error" in b.mail_list().json()["exec"]
    finally:
        b.close()


def test_a_message_sent_through_compose_arrives(webmail: Setup) -> None:
    subject = unique("webmail-sent")
    b = logged_in(webmail.one)
    try:
        r = b.send(BOB, subject, "Sent through Roundcube.\n")
        assert r.status_code == 200, r.text[:2000]
        assert "sent_successfully" in r.text, r.text[:2000]
    finally:
        b.close()
    host = webmail.tenant.host
    got = wait_until(lambda: imap_find(host, BOB, PASSWORDS[BOB], subject) or None, 30, "the mail")
    assert b"Sent through Roundcube." in got
    assert f"From: {ALICE}".encode() in got or f"<{ALICE}>".encode() in got
    assert imap_find(host, ALICE, PASSWORDS[ALICE], subject, folder="Sent"), "a copy in Sent"


def inbox_uid(host: str, user: str, subject: str) -> str | None:
    with imap_login(host, user, PASSWORDS[user]) as client:
        client.select("INBOX", readonly=True)
        _, data = client.uid("SEARCH", "SUBJECT", f'"{subject}"')
        uids = data[0].split() if data and data[0] else []
        return uids[-1].decode() if uids else None


def test_marking_junk_moves_the_message_to_junk(webmail: Setup) -> None:
    subject = unique("webmail-junk")
    host = webmail.tenant.host
    b = logged_in(webmail.one)
    try:
        assert "sent_successfully" in b.send(ALICE, subject, "Buy now.\n").text
        uid = wait_until(lambda: inbox_uid(host, ALICE, subject), 30, "the message in INBOX")
        r = b.ajax(
            {"_task": "mail", "_action": "plugin.markasjunk.junk"},
            {"_uid": uid, "_mbox": "INBOX"},
        )
        assert r.status_code == 200, r.text
        answer = r.json()["exec"]
        assert "Successfully reported as junk" in shown_messages(answer), answer
        # The plugin tells the page to move it to Junk; the page asks for the move.
        assert f'markasjunk_move("Junk",["{uid}"])' in answer, answer
        moved = b.ajax(
            {"_task": "mail", "_action": "move"},
            {"_uid": uid, "_mbox": "INBOX", "_target_mbox": "Junk"},
        )
        assert moved.status_code == 200 and "error" not in moved.json()["exec"], moved.text
    finally:
        b.close()
    assert imap_find(host, ALICE, PASSWORDS[ALICE], subject, folder="Junk")
    assert inbox_uid(host, ALICE, subject) is None


def test_a_vacation_made_in_settings_is_the_active_sieve_script(webmail: Setup) -> None:
    reason = unique("away-until-monday")
    b = logged_in(webmail.one)
    try:
        page = b.get("/", {"_task": "settings", "_action": "plugin.managesieve-vacation"})
        assert page.status_code == 200
        assert "vacation_reason" in page.text, "the form: the plugin reached ManageSieve"
        # The page's script posts the form by AJAX, as here.
        b.token = page_token(page.text)
        r = b.ajax(
            {"_task": "settings", "_action": "plugin.managesieve-vacation"},
            {
                "vacation_status": "on",
                "vacation_subject": "Away",
                "vacation_reason": reason,
                "vacation_interval": "7",
                "vacation_interval_type": "days",
                "vacation_action": "keep",
            },
        )
        assert r.status_code == 200
        assert "Out-of-office data saved successfully." in shown_messages(r.json()["exec"]), r.text
    finally:
        b.close()
    sieve = ManageSieve(webmail.tenant.host)
    try:
        sieve.starttls()
        sieve.login(ALICE, PASSWORDS[ALICE])
        listed = sieve.command("LISTSCRIPTS")
        active = [line for line in listed if line.endswith(b" ACTIVE")]
        assert active, listed
        name = active[0].split(b'"')[1].decode()
        script = b"\n".join(sieve.command(f'GETSCRIPT "{name}"')).decode()
        assert "vacation" in script and reason in script, script
    finally:
        sieve.close()


def test_an_upload_over_the_limit_gets_roundcubes_size_error(webmail: Setup) -> None:
    b = logged_in(webmail.one)
    try:
        compose_id, _ = b.compose()

        def upload(size: int) -> str:
            r = b.http.post(
                "/",
                params={
                    "_task": "mail",
                    "_action": "upload",
                    "_id": compose_id,
                    "_uploadid": unique("upload"),
                    "_from": "compose",
                    "_remote": "1",
                },
                headers={"X-Roundcube-Request": b.token},
                files={
                    "_attachments[]": ("file.bin", os.urandom(size), "application/octet-stream")
                },
            )
            assert r.status_code == 200, r.text[:2000]
            return str(r.json()["exec"])

        small = upload(10 * 1024)
        assert "add2attachment_list" in small, small
        big = upload(MAX_UPLOAD + 10 * 1024)
        assert "The uploaded file exceeds the maximum size of 200 KB." in shown_messages(big), big
        # Beyond what PHP reads (post_max_size): the same message, from Roundcube too.
        bigger = upload(MAX_UPLOAD + 100 * 1024)
        assert any("exceeds the maximum size" in m for m in shown_messages(bigger)), bigger
    finally:
        b.close()


def test_a_password_change_asks_the_panel_and_shows_its_refusal(webmail: Setup) -> None:
    b = logged_in(webmail.one)
    try:
        # The plugin's page is a whole page (the plugin is not loaded in frames).
        page = b.get("/", {"_task": "settings", "_action": "plugin.password"})
        assert "_newpasswd" in page.text

        def change(new: str) -> list[str]:
            r = b.http.post(
                "/",
                params={"_task": "settings", "_action": "plugin.password-save"},
                data={
                    "_token": page_token(page.text),
                    "_curpasswd": PASSWORDS[ALICE],
                    "_newpasswd": new,
                    "_confpasswd": new,
                },
            )
            assert r.status_code == 200
            return shown_messages(r.text)

        webmail.panel.answer = (400, "The new password is too short.")
        # The plugin puts its own words before the panel's.
        assert "Could not save new password. The new password is too short." in change("short")
        webmail.panel.answer = (500, "internal")
        # Not a 4xx: the plugin's own words, not the panel's body.
        assert change("another-long-password") == ["Could not save new password. Connection error."]
        webmail.panel.answer = (200, "")
        assert "Successfully saved." in change("a-new-long-password")
        assert webmail.panel.asked[-1] == {
            "address": [ALICE],
            "current": [PASSWORDS[ALICE]],
            "new": ["a-new-long-password"],
        }
    finally:
        b.close()


def test_a_pgp_key_pair_is_kept_in_the_database_for_every_replica(
    webmail: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = pgp_private_key(tmp_path_factory.mktemp("gpg"), ALICE, "alice-pgp-passphrase")
    assert "PRIVATE KEY" in key
    b = logged_in(webmail.one)
    try:
        page = b.get("/", {"_task": "settings", "_action": "plugin.enigmakeys"})
        b.token = page_token(page.text)
        r = b.ajax(
            {"_task": "settings", "_action": "plugin.enigmakeys", "_a": "import"},
            {"_keys": key, "_generated": "1"},
        )
        assert r.status_code == 200
        assert "A key pair generated and imported successfully." in shown_messages(
            r.json()["exec"]
        ), r.text
    finally:
        b.close()
    status, out = webmail.db.psql(
        DB_PASSWORD, "SELECT filename, data FROM filestore WHERE context = 'enigma'"
    )
    assert status == 0, out
    stored = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    secret = [base64.b64decode(v) for k, v in stored.items() if k.endswith(".key")]
    assert secret, stored.keys()
    # GnuPG's own format: the secret parts encrypted with alice's passphrase.
    assert all(b"protected-private-key" in s for s in secret), secret
    # The other replica lists it: the keyring came from the database.
    other = logged_in(webmail.two)
    try:
        page = other.get("/", {"_task": "settings", "_action": "plugin.enigmakeys"})
        other.token = page_token(page.text)
        listed = other.ajax({"_task": "settings", "_action": "plugin.enigmakeys", "_a": "list"})
        assert ALICE in listed.text, listed.text
    finally:
        other.close()


def test_a_session_made_on_one_replica_is_carried_on_by_the_other(webmail: Setup) -> None:
    b = logged_in(webmail.one)
    # The same cookies, sent to the other replica's address.
    other = Browser(webmail.two.url, cookies={c.name: c.value or "" for c in b.http.cookies.jar})
    try:
        other.token = b.token
        listed = other.mail_list()
        assert listed.status_code == 200
        answer = listed.json()
        assert "set_rowcount" in answer["exec"] and "session_error" not in answer["exec"], answer
        page = other.get("/", {"_task": "mail"})
        assert ALICE in page.text and 'name="_user"' not in page.text
    finally:
        other.close()
        b.close()


def test_the_database_keeps_its_data_and_takes_only_the_password(
    webmail: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("wmdb2")
    db = WebmailDb(webmail.db.image, root)
    try:
        db.start()
        db.wait_ready()
        assert db.psql(DB_PASSWORD, "CREATE TABLE kept (x int)")[0] == 0
        db.stop_start()
        db.wait_ready(starts=2)
        logs = db.logs()
        assert logs.count("initdb") == 1, logs
        assert DB_PASSWORD not in logs
        status, out = db.psql(DB_PASSWORD, "SELECT count(*) FROM kept")
        assert (status, out.strip()) == (0, "0"), out
        status, out = db.psql("not-the-password", "SELECT 1")
        assert status != 0 and "password authentication failed" in out, out
    finally:
        db.remove()


def test_cookies_are_secure_behind_the_ingress_only(webmail: Setup) -> None:
    plain = httpx.get(webmail.one.url + "/", timeout=10)
    behind = httpx.get(webmail.one.url + "/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "secure" in behind.headers["set-cookie"].lower()


def test_runs_as_www_data_read_only_and_listens_only_on_8080(webmail: Setup) -> None:
    w = webmail.one
    uids = w.exec("sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status | sort -u")
    assert set(uids.split()) - {"Uid:"} == {"33"}, uids
    assert "Read-only file system" in w.try_exec("touch", "/usr/share/roundcube/x")
    tables = w.exec("sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")
    listening = {
        int(f[1].split(":")[1], 16)
        for f in (line.split() for line in tables.splitlines()[1:])
        if len(f) > 3 and f[3] == "0A"
    }
    assert listening == {8080}, tables
    logs = webmail.one.logs() + webmail.two.logs()
    for secret in [DB_PASSWORD, DES_KEY, *PASSWORDS.values()]:
        assert secret not in logs
    health = httpx.get(f"{w.url}/healthz", timeout=5)
    assert health.status_code == 200 and health.text == "ok\n"
    for path in [
        "/config/config.inc.php",
        "/index.php/../config/",
        "/plugins/password/config.inc.php",
        "/program/include/rcmail.php",
        "/SQL/postgres.initial.sql",
    ]:
        assert httpx.get(f"{w.url}{path}", timeout=5).status_code == 404, path


def test_sigterm_stops_cleanly(webmail: Setup, tmp_path_factory: pytest.TempPathFactory) -> None:
    extra = Webmail(
        webmail.one.image, host_address(33), tmp_path_factory.mktemp("wm3"), webmail.one.env
    )
    extra.write_domains(["example.org"])
    try:
        extra.start()
        extra.wait_ready()
        started = time.monotonic()
        extra.stop()
        assert extra.wait_exit() == 0, extra.logs()
        assert time.monotonic() - started < 10
        assert "SIGTERM received" in extra.logs()
    finally:
        extra.remove()


def test_a_bad_setting_is_named_and_fatal(
    webmail: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for key, value, said in [
        ("VPES_WEBMAIL_DES_KEY", "short", "VPES_WEBMAIL_DES_KEY must be exactly 24 characters"),
        (
            "VPES_WEBMAIL_IMAP_HOST",
            "imap.example:993",
            "VPES_WEBMAIL_IMAP_HOST must look like ssl://host:port",
        ),
        ("VPES_WEBMAIL_MAX_UPLOAD", "lots", "VPES_WEBMAIL_MAX_UPLOAD must be a number of bytes"),
    ]:
        bad = Webmail(
            webmail.one.image,
            host_address(34),
            tmp_path_factory.mktemp("bad"),
            {**webmail.one.env, key: value},
        )
        bad.write_domains(["example.org"])
        try:
            bad.start()
            assert bad.wait_exit() == 2
            assert f"vpes-webmail: error: {said}" in bad.logs(), bad.logs()
            assert "db-password" not in bad.logs()
        finally:
            bad.remove()


def test_a_database_not_reachable_is_waited_for_then_fatal(
    webmail: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The database's address, a port nothing listens on: refused at once.
    dsn = webmail.one.env["VPES_WEBMAIL_DB_DSN"].replace(":5432/", ":5439/")
    env = {**webmail.one.env, "VPES_WEBMAIL_DB_DSN": dsn, "VPES_WEBMAIL_DB_WAIT": "4"}
    w = Webmail(webmail.one.image, host_address(35), tmp_path_factory.mktemp("nodb"), env)
    w.write_domains(["example.org"])
    try:
        w.start()
        assert w.wait_exit(timeout=60) == 1
        logs = w.logs()
        assert "vpes-webmail: the database is not reachable" in logs, logs
        assert "vpes-webmail: error: the database was not reachable for 4s" in logs, logs
        assert DB_PASSWORD not in logs
    finally:
        w.remove()
