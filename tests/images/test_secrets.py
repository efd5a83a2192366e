"""The tenant's secrets are readable by root (and Dovecot's auth process's copy of
the passwd-file by its user) only, never by the mail user that runs every IMAP,
POP3, ManageSieve and LMTP session; and the container needs no fsGroup for it."""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpes_operator.render.layout import (
    DOVECOT_AUTH_DIR,
    DOVECOT_AUTH_USER,
    DOVECOT_PASSWD_PATH,
    MAIL_DIR,
    SECRET_FILES,
    SECRETS_DIR,
    VMAIL_GID,
    VMAIL_UID,
    VMAIL_USER,
)

from .clients import imap_find, imap_login, message, unique, wait_until
from .conftest import Running, host_address, settings_for
from .tenant import PASSWORDS, Tenant, TenantFiles, podman, sample_spec

pytestmark = pytest.mark.images

ALICE = "alice@example.org"


def secret_files(t: Running) -> list[str]:
    """Every file the tenant holds a secret in: the Secret's and the auth copy."""
    out = t.tenant.exec("find", "-L", SECRETS_DIR, DOVECOT_AUTH_DIR, "-type", "f")
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


def test_only_the_used_keys_are_mounted(tenant: Running) -> None:
    names = {Path(p).name for p in secret_files(tenant) if p.startswith(f"{SECRETS_DIR}/")}
    assert names == set(SECRET_FILES)  # no DKIM key, no hash store


@pytest.mark.parametrize("user", [VMAIL_USER, f"{VMAIL_UID}:{VMAIL_GID}", "dovenull", "postfix"])
def test_no_secret_is_readable_by_unprivileged_users(tenant: Running, user: str) -> None:
    files = secret_files(tenant)
    assert DOVECOT_PASSWD_PATH in files and f"{SECRETS_DIR}/tls.key" in files
    for path in files:
        out = tenant.tenant.exec("cat", path, user=user)
        assert out.returncode != 0 and "Permission denied" in out.stderr, (user, path)
        assert tenant.tenant.exec("cat", path).returncode == 0  # root reads it


def test_the_auth_process_reads_its_copy_and_sessions_run_as_the_mail_user(
    tenant: Running,
) -> None:
    out = tenant.tenant.exec("stat", "-c", "%U:%G:%a", DOVECOT_AUTH_DIR, DOVECOT_PASSWD_PATH)
    assert out.stdout.split() == [f"root:{DOVECOT_AUTH_USER}:750", f"root:{DOVECOT_AUTH_USER}:440"]
    assert tenant.tenant.exec("cat", DOVECOT_PASSWD_PATH, user=DOVECOT_AUTH_USER).returncode == 0
    client = imap_login(tenant.host, ALICE, PASSWORDS[ALICE])  # the copy is what auth reads
    try:
        ps = podman("top", tenant.tenant.name, "user", "args").stdout.splitlines()
        # Process titles are "dovecot-<instance>/<service>".
        users = {(ln.split()[0], ln.split()[1].split("/")[-1]) for ln in ps[1:] if ln.strip()}
        assert (VMAIL_USER, "imap") in users, ps
        assert (DOVECOT_AUTH_USER, "auth") in users, ps
    finally:
        client.logout()


@pytest.fixture
def fresh_volume_tenant(image: str, gateway: str, tmp_path: Path) -> Iterator[Tenant]:
    """A tenant whose mail volume starts as a new PVC does: empty, root:root 0755."""
    mail = tmp_path / "mail"
    mail.mkdir()
    mail.chmod(0o755)
    files = TenantFiles(tmp_path / "files", settings_for(f"{gateway}/32"))
    files.write(sample_spec(), PASSWORDS)
    tenant = Tenant(image, host_address(15), files, volume=str(mail))
    try:
        tenant.start()
        tenant.wait_ready()
        yield tenant
    finally:
        tenant.remove()


def test_a_new_volume_without_fs_group_takes_mail(fresh_volume_tenant: Tenant) -> None:
    t = fresh_volume_tenant
    out = t.exec("stat", "-c", "%U:%G:%a", MAIL_DIR)
    assert out.stdout.split() == ["root:vmail:2775"]
    subject = unique("fresh")
    with smtplib.SMTP(t.host, 25, timeout=15) as smtp:
        smtp.ehlo("mx.edge.example")
        assert (
            smtp.sendmail(
                "carol@example.org", [ALICE], message("carol@example.org", ALICE, subject)
            )
            == {}
        )
    wait_until(lambda: imap_find(t.host, ALICE, PASSWORDS[ALICE], subject), what="delivery")
    home = Path(t.volume) / "example.org" / "alice"
    assert os.stat(home).st_uid == VMAIL_UID


def test_idle_processes_of_other_users_are_stopped(fresh_volume_tenant: Tenant) -> None:
    """Dovecot's master (root) stops idle processes (default_idle_kill) that run as
    other users with a signal: without CAP_KILL they would pile up to the limits."""
    t = fresh_volume_tenant
    imap_login(t.host, ALICE, PASSWORDS[ALICE]).logout()

    def logins() -> list[str] | None:
        """The imap-login processes; None when `podman top` failed (it does, exit 125,
        when a process ends while it reads the container's processes): ask again."""
        top = podman("top", t.name, "user", "args", check=False)
        if top.returncode != 0:
            return None
        lines = top.stdout.splitlines()
        return [line for line in lines if line.split()[-1].endswith("/imap-login")]

    wait_until(lambda: logins() or None, timeout=30, what="an imap-login running")
    # default_idle_kill is one minute after the process went idle: room for a loaded machine.
    wait_until(lambda: logins() == [] or None, timeout=150, what="idle imap-login stopped")
    assert "Operation not permitted" not in t.logs()
