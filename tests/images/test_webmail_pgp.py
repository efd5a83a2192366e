"""OpenPGP in the webmail (Roundcube's enigma), in a real browser (Debian's Chromium
driven by Playwright) against the ``webmail`` fixture (webmail_support.py: two
replicas and their database in front of the conftest's tenant).

Bob and Alice each import their passphrase-protected key pair, with the other's
public key, through Settings > Encryption > Import (GnuPG takes the secret key still
protected: no passphrase is asked there). Bob, on one replica, writes to Alice in
HTML with "Digitally sign" and "Encrypt" on and types his passphrase when asked.
Over IMAP the message on the tenant is PGP/MIME (RFC 3156: multipart/encrypted, no
plaintext anywhere, Bob's copy in Sent too), and Alice's own gpg decrypts it and
finds Bob's good signature. On the other replica Alice's settings keep a typed
passphrase 5 minutes (the image's setting); a wrong passphrase gets "Decryption
failed. Invalid password." with the prompt again, and the message on the tenant is
unchanged; in a new session her passphrase shows the text, "Message decrypted."
and "Verified signature from" Bob; another new session is asked again.

Not tested here: key generation in the page (it needs openpgp.js, which Debian's
roundcube-plugins does not ship); the right passphrase in the same session as a
wrong one (enigma then asks for the sender's key: README, webmail).
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import browser

from .clients import imap_find, unique, wait_until
from .pgp_support import Keyring, pgp_mime_parts
from .tenant import PASSWORDS
from .webmail_support import ALICE, BOB, WebmailSetup

TIMEOUT = 30_000  # ms, for anything the page waits on
TEXT = "Meet me by the old oak at noon. Bring the map."


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with browser.chromium() as b:
        yield b


@pytest.fixture
def both_domains(webmail: WebmailSetup) -> Iterator[None]:
    """Bob's domain allowed on both replicas for this test, then taken out again."""
    for w in (webmail.one, webmail.two):
        w.write_domains(["example.org", "example.net"])
    try:
        yield
    finally:
        for w in (webmail.one, webmail.two):
            w.write_domains(["example.org"])


@pytest.fixture
def keyrings(tmp_path: Path) -> Iterator[dict[str, Keyring]]:
    rings = {
        ALICE: Keyring(tmp_path / "alice", ALICE, "alice: oak tree, noon"),
        BOB: Keyring(tmp_path / "bob", BOB, "bob: the map is in the attic"),
    }
    try:
        for ring in rings.values():
            ring.make()
        # Each one's own gpg knows the other's public key, as after an exchange.
        rings[ALICE].add(rings[BOB].export())
        rings[BOB].add(rings[ALICE].export())
        yield rings
    finally:
        for ring in rings.values():
            ring.close()


def ready(page: Page) -> None:
    """Until Roundcube is idle: it drops any command given while a request is in flight."""
    page.wait_for_function("() => window.rcmail && rcmail.env.task && !rcmail.busy")


def login(page: Page, user: str) -> None:
    page.goto("/")
    page.fill("input[name=_user]", user)
    page.fill("input[name=_pass]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_function("() => window.rcmail && rcmail.env.task == 'mail'")


def enter_passphrase(page: Page, passphrase: str) -> None:
    """Answers enigma's "Enter key passphrase" dialog."""
    dialog = page.locator(".ui-dialog", has_text="Enter key passphrase")
    dialog.locator("input[type=password]").fill(passphrase)
    dialog.locator("button.mainaction").click()


def import_keys(page: Page, ring: Keyring, other: Keyring) -> None:
    """Settings > Encryption > Keys > Import: the user's own key pair and the other's
    public key, as one file. GnuPG takes the secret key as it is, still protected by
    its passphrase, so none is asked for here."""
    keys = ring.export(secret=True) + other.export()
    page.goto("/?_task=settings&_action=plugin.enigmakeys")
    ready(page)
    page.evaluate("() => rcmail.command('plugin.enigma-key-import')")
    dialog = page.locator(".ui-dialog", has_text="Import key(s)")
    dialog.frame_locator("iframe").locator("#rcmimportfile").set_input_files(
        files=[{"name": "keys.asc", "mimeType": "application/pgp-keys", "buffer": keys.encode()}]
    )
    dialog.locator(".ui-dialog-buttonpane button", has_text="Import").click()
    expect(page.get_by_text("Key(s) imported successfully. Imported: 3")).to_be_visible(
        timeout=TIMEOUT
    )
    expect(dialog).to_be_hidden(timeout=TIMEOUT)
    keys_list = page.locator("#keys-table")
    for address in (ring.address, other.address):
        expect(keys_list).to_contain_text(address, timeout=TIMEOUT)


def send_signed_and_encrypted(page: Page, ring: Keyring, to: str, subject: str) -> None:
    page.goto("/?_task=mail&_action=compose")
    page.locator("#compose_to input").first.fill(to + ",")
    page.fill("#compose-subject", subject)
    page.fill("#composebody", TEXT + "\n")
    # As HTML: enigma sends a single plain-text part as inline PGP (only the body
    # encrypted); an HTML message (multipart/alternative) goes as PGP/MIME.
    ready(page)
    # The editor's "HTML" switch; Roundcube asks whether to convert (a confirm()).
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#composebodycontainer a.mce-i-html")
    page.wait_for_function("() => rcmail.editor.is_html() && !rcmail.busy")
    # Elastic shows enigma's options in the compose options beside the message.
    for option in ("enigmasignopt", "enigmaencryptopt"):
        page.click(f"label[for={option}]")
        expect(page.locator(f"#{option}")).to_be_checked(timeout=TIMEOUT)
    ready(page)
    page.evaluate("() => rcmail.command('send', {})")
    # Signing needs the secret key: the page asks for its passphrase.
    enter_passphrase(page, ring.passphrase)
    expect(page.get_by_text("Message sent successfully.")).to_be_visible(timeout=TIMEOUT)


def check_on_the_tenant(raw: bytes, reader: Keyring, sender: Keyring) -> None:
    """PGP/MIME with nothing readable in clear; the reader's own gpg decrypts it and
    finds the sender's good signature over the text."""
    assert TEXT.encode() not in raw and b"old oak" not in raw, raw
    _, armored = pgp_mime_parts(raw)
    plain, status = reader.decrypt(armored)
    assert any(s.startswith("[GNUPG:] DECRYPTION_OKAY") for s in status), status
    assert any(s.startswith("[GNUPG:] GOODSIG") for s in status), status
    valid = [s for s in status if s.startswith("[GNUPG:] VALIDSIG ")]
    assert valid and valid[0].split()[-1] == sender.fingerprint(), (valid, sender.fingerprint())
    inner = email.message_from_bytes(plain)
    assert inner.get_content_type() == "multipart/alternative", plain
    assert TEXT.encode() in plain, plain


def open_message(page: Page, subject: str) -> None:
    """Opens the message from the inbox list (a double click shows it in full)."""
    page.goto("/?_task=mail&_mbox=INBOX")
    page.locator("#messagelist tr", has_text=subject).dblclick()
    page.wait_for_function("() => window.rcmail && rcmail.env.action == 'show'")


@contextmanager
def session(chromium: Browser, url: str) -> Iterator[Page]:
    """A page in a fresh browser context: its own cookies, so its own Roundcube session."""
    context = chromium.new_context(base_url=url)
    context.set_default_timeout(TIMEOUT)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_signed_and_encrypted_mail_between_two_users(
    webmail: WebmailSetup,
    both_domains: None,
    keyrings: dict[str, Keyring],
    chromium: Browser,
) -> None:
    alice, bob = keyrings[ALICE], keyrings[BOB]
    host = webmail.tenant.host
    subject = unique("pgp")
    # Bob on one replica, Alice on the other: the keyrings come from the database.
    with session(chromium, webmail.one.url) as page:
        login(page, BOB)
        import_keys(page, bob, alice)
        send_signed_and_encrypted(page, bob, ALICE, subject)
    with session(chromium, webmail.two.url) as page:
        login(page, ALICE)
        import_keys(page, alice, bob)
        # How long a typed passphrase is kept: the image's 5 minutes, not Roundcube's
        # 0 (the whole session).
        page.goto("/?_task=settings&_action=edit-prefs&_section=encryption&_framed=1")
        expect(page.locator("#rcmfd_enigma_password_time")).to_have_value("5")
    raw = wait_until(lambda: imap_find(host, ALICE, PASSWORDS[ALICE], subject) or None, 30, "mail")
    check_on_the_tenant(raw, alice, bob)
    sent = imap_find(host, BOB, PASSWORDS[BOB], subject, folder="Sent")
    assert sent and TEXT.encode() not in sent, "Bob's copy in Sent, encrypted too"

    # A wrong passphrase: said plainly, asked again, and nothing is lost.
    with session(chromium, webmail.two.url) as page:
        login(page, ALICE)
        open_message(page, subject)
        enter_passphrase(page, "not alice's passphrase")
        expect(page.get_by_text("Decryption failed. Invalid password.")).to_be_visible(
            timeout=TIMEOUT
        )
        prompt = page.locator(".ui-dialog", has_text="Enter key passphrase")
        expect(prompt).to_be_visible(timeout=TIMEOUT)
        assert TEXT not in page.inner_text("body")
    assert imap_find(host, ALICE, PASSWORDS[ALICE], subject) == raw, "the message as it came"
    # Her passphrase, in a new session: Roundcube 1.6's enigma keeps asking, even for
    # the right one, in a session where a wrong one was given (README, webmail).
    with session(chromium, webmail.two.url) as page:
        login(page, ALICE)
        open_message(page, subject)
        enter_passphrase(page, alice.passphrase)
        expect(page.get_by_text("Message decrypted.")).to_be_visible(timeout=TIMEOUT)
        expect(page.get_by_text(f"Verified signature from Test <{BOB}>.")).to_be_visible(
            timeout=TIMEOUT
        )
        expect(page.get_by_text(TEXT)).to_be_visible(timeout=TIMEOUT)
        browser.screenshot(page, "webmail-pgp-decrypted")
    # Nothing on the replica remembers it (GnuPG's agent is stopped after each request):
    # a new session on the same replica is asked again.
    with session(chromium, webmail.two.url) as page:
        login(page, ALICE)
        open_message(page, subject)
        expect(page.locator(".ui-dialog", has_text="Enter key passphrase")).to_be_visible(
            timeout=TIMEOUT
        )
        assert TEXT not in page.inner_text("body")
