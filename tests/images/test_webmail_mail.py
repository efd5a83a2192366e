"""The webmail (images/webmail) as a mail client, in front of the conftest's tenant
(the ``webmail`` fixture: webmail_support.py): a message sent through compose
arrives; marking one as junk moves it to Junk; a vacation made in the settings
is the mailbox's active Sieve script; an upload over VPES_WEBMAIL_MAX_UPLOAD gets
Roundcube's size error; a password change goes to the panel's endpoint, and its
refusal is shown; a PGP key pair imported through enigma is kept,
passphrase-protected, in the database, and the other replica lists it.
"""

from __future__ import annotations

import base64
import os

import pytest

from .clients import ManageSieve, imap_find, inbox_uid, unique, wait_until
from .tenant import PASSWORDS
from .webmail_support import (
    ALICE,
    BOB,
    DB_PASSWORD,
    MAX_UPLOAD,
    WebmailSetup,
    logged_in,
    page_token,
    pgp_private_key,
    shown_messages,
)


def test_a_message_sent_through_compose_arrives(webmail: WebmailSetup) -> None:
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


def test_marking_junk_moves_the_message_to_junk(webmail: WebmailSetup) -> None:
    subject = unique("webmail-junk")
    host = webmail.tenant.host
    b = logged_in(webmail.one)
    try:
        assert "sent_successfully" in b.send(ALICE, subject, "Buy now.\n").text
        uid = wait_until(
            lambda: inbox_uid(host, ALICE, PASSWORDS[ALICE], subject), 30, "the message in INBOX"
        )
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
    assert inbox_uid(host, ALICE, PASSWORDS[ALICE], subject) is None


def test_a_vacation_made_in_settings_is_the_active_sieve_script(webmail: WebmailSetup) -> None:
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


def test_an_upload_over_the_limit_gets_roundcubes_size_error(webmail: WebmailSetup) -> None:
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


def test_a_password_change_asks_the_panel_and_shows_its_refusal(webmail: WebmailSetup) -> None:
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
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
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
