"""The webmail images (images/webmail, images/webmail-db): Roundcube in front of a
real tenant (the conftest's, Postfix + Dovecot), as a browser uses it; the mail
features are in test_webmail_mail.py.

Two webmail replicas on one database (the ``webmail`` fixture,
webmail_support.py); the tenant's own IMAPS, submission and ManageSieve ports
stand for the edge's login proxy. Both replicas started together make the
schema once; an allowed domain's mailbox logs in through Roundcube's form and
its inbox lists; a domain not in the allowed file is refused with the gate's
message, gets in once listed (no restart) and its open session ends when taken
out again; a wrong password is refused; a session made on one replica is
carried on by the other; the database keeps its data over a restart and takes
only its password; cookies are Secure behind the ingress only; the container
runs as www-data with a read-only root, nothing listening but 8080, no secret
in its logs and nothing but assets served from Roundcube's tree; SIGTERM exits
0; a bad setting is named (exit 2); a database not reachable is waited for,
then fatal (exit 1); nginx or php-fpm dying stops the container (exit 1).
"""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import host_address
from .tenant import PASSWORDS
from .webmail_support import (
    ALICE,
    BOB,
    DB_PASSWORD,
    DES_KEY,
    GATE_MESSAGE,
    Browser,
    Webmail,
    WebmailDb,
    WebmailSetup,
    logged_in,
    shown_messages,
)


def test_both_replicas_made_the_schema_once(webmail: WebmailSetup) -> None:
    logs = webmail.one.logs() + webmail.two.logs()
    assert logs.count("creating it") == 1, logs
    starts = [log.split("serving on 8080")[0] for log in (webmail.one.logs(), webmail.two.logs())]
    assert all("error" not in start.lower() for start in starts), starts


def test_an_allowed_mailbox_logs_in_and_lists_its_inbox(webmail: WebmailSetup) -> None:
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


def test_a_domain_not_in_the_file_is_refused_with_the_gates_message(webmail: WebmailSetup) -> None:
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


def test_a_wrong_password_is_refused(webmail: WebmailSetup) -> None:
    b = Browser(webmail.one.url)
    try:
        r = b.login(ALICE, "not-alices-password")
        assert r.status_code == 401
        assert "Login failed." in shown_messages(r.text)
        assert GATE_MESSAGE not in r.text
        assert "session_error" in b.mail_list().json()["exec"]
    finally:
        b.close()


def test_a_session_made_on_one_replica_is_carried_on_by_the_other(webmail: WebmailSetup) -> None:
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
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
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


def test_the_database_refuses_a_short_password(
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db = WebmailDb(webmail.db.image, tmp_path_factory.mktemp("wmdb3"), password="short")
    try:
        db.start()
        assert db.wait_exit() == 2
        assert "VPES_WEBMAIL_DB_PASSWORD must be set, at least 12 characters" in db.logs()
        assert "short" not in db.logs().replace("12 characters", "")
    finally:
        db.remove()


def test_cookies_are_secure_behind_the_ingress_only(webmail: WebmailSetup) -> None:
    plain = httpx.get(webmail.one.url + "/", timeout=10)
    behind = httpx.get(webmail.one.url + "/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "secure" in behind.headers["set-cookie"].lower()


def test_runs_as_www_data_read_only_and_listens_only_on_8080(webmail: WebmailSetup) -> None:
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
    # The housekeeping vpes-webmail runs (Debian's cron jobs) works as www-data here.
    for chore in ["gc.sh", "cleandb.sh"]:
        w.exec("php", f"/usr/share/roundcube/bin/{chore}")
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


def test_sigterm_stops_cleanly(
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
) -> None:
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


def test_a_daemon_dying_on_its_own_stops_the_container(
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for daemon, pid_file in [("nginx", "nginx.pid"), ("php-fpm", "php-fpm.pid")]:
        w = Webmail(
            webmail.one.image, host_address(36), tmp_path_factory.mktemp("die"), webmail.one.env
        )
        w.write_domains(["example.org"])
        try:
            w.start()
            w.wait_ready()
            w.exec("sh", "-c", f"kill -KILL $(cat /run/vpes-webmail/{pid_file})")
            assert w.wait_exit() == 1, w.logs()
            assert f"vpes-webmail: error: {daemon} exited on its own" in w.logs()
        finally:
            w.remove()


def test_a_bad_setting_is_named_and_fatal(
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for key, value, said in [
        ("VPES_WEBMAIL_DES_KEY", "short", "VPES_WEBMAIL_DES_KEY must be exactly 24 characters"),
        (
            "VPES_WEBMAIL_IMAP_HOST",
            "imap.example:993",
            "VPES_WEBMAIL_IMAP_HOST must look like ssl://host:port or tls://host:port",
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
    webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory
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
