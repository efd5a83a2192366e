"""The container's life: changes picked up without a restart, bad configuration
refused with a message naming the problem, a dead daemon or SIGTERM ends it."""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .clients import imap_login, message, unique, wait_until
from .conftest import Running, host_address, settings_for, start_tenant
from .tenant import PASSWORDS, Tenant, TenantFiles, podman, sample_spec

pytestmark = pytest.mark.images


@pytest.fixture
def own_tenant(image: str, gateway: str, tmp_path: Path) -> Iterator[Running]:
    """A tenant of its own (these tests change or stop it)."""
    yield from start_tenant(image, host_address(13), tmp_path, f"{gateway}/32", sink=False)


def _can_login(host: str, user: str, password: str) -> bool:
    try:
        imap_login(host, user, password).logout()
    except imaplib.IMAP4.error:
        return False
    return True


def _rcpt(host: str, rcpt: str) -> int:
    with smtplib.SMTP(host, 25, timeout=10) as smtp:
        smtp.ehlo("mx.edge.example")
        smtp.mail("carol@example.org")
        code, _ = smtp.rcpt(rcpt)
    return code


def test_mailbox_added_and_password_changed_without_restart(own_tenant: Running) -> None:
    t = own_tenant
    started = podman("inspect", "--format", "{{.State.StartedAt}}", t.tenant.name).stdout
    new = "new@example.org"
    assert _rcpt(t.host, new) == 550
    passwords = {**PASSWORDS, new: "brand-new-pw", "alice@example.org": "changed-pw"}
    t.files.write(sample_spec(extra_mailboxes=({"address": new, "quota": "1Mi"},)), passwords)

    wait_until(lambda: _rcpt(t.host, new) == 250, what="Postfix to accept the new mailbox")
    wait_until(lambda: _can_login(t.host, new, "brand-new-pw"), what="the new login")
    assert _can_login(t.host, "alice@example.org", "changed-pw")
    assert not _can_login(t.host, "alice@example.org", PASSWORDS["alice@example.org"])
    subject = unique("after reload")
    with smtplib.SMTP(t.host, 25, timeout=10) as smtp:
        smtp.sendmail("carol@example.org", [new], message("carol@example.org", new, subject))
    with imap_login(t.host, new, "brand-new-pw") as imap:
        imap.select("INBOX")
        wait_until(lambda: imap.noop() and imap.search(None, "ALL")[1][0], what="delivery")
    assert "reloading Postfix and Dovecot" in t.logs()
    after = podman("inspect", "--format", "{{.State.StartedAt}}", t.tenant.name).stdout
    assert after == started  # the same container, never restarted

    # A mailbox removed: refused at once after the next swap.
    t.files.write(sample_spec(), PASSWORDS)
    wait_until(lambda: _rcpt(t.host, new) == 550, what="Postfix to forget the mailbox")
    assert not _can_login(t.host, new, "brand-new-pw")


def test_bad_update_is_reported_and_a_fix_is_picked_up(own_tenant: Running) -> None:
    t = own_tenant

    def break_it(config: dict[str, str]) -> None:
        config["postfix/main.cf"] += "\nmessage_size_limit = lots\n"

    t.files.write(sample_spec(), PASSWORDS, edit=break_it)
    wait_until(lambda: "the new configuration is invalid" in t.logs(), what="the refusal")
    assert "bad numerical configuration: message_size_limit = lots" in t.logs()
    assert t.tenant.running()  # no restart loop
    assert t.logs().count("reloading Postfix and Dovecot") == 0
    t.files.write(sample_spec(), PASSWORDS)
    wait_until(lambda: "reloading Postfix and Dovecot" in t.logs(), what="the reload")
    assert _rcpt(t.host, "alice@example.org") == 250


def test_sigterm_stops_cleanly(own_tenant: Running) -> None:
    begin = time.monotonic()
    podman("stop", "--time", "20", own_tenant.tenant.name)
    assert time.monotonic() - begin < 10
    assert own_tenant.tenant.wait_exit() == 0
    assert "SIGTERM received" in own_tenant.logs()


@pytest.mark.parametrize("daemon", ["dovecot", "master"])
def test_a_dead_daemon_ends_the_container(own_tenant: Running, daemon: str) -> None:
    # Kill the daemon's master process from the host (its pid namespace is ours).
    host_pid = own_tenant.tenant.pid()
    children = Path(f"/proc/{host_pid}/task/{host_pid}/children").read_text().split()
    victim = next(p for p in children if daemon in Path(f"/proc/{p}/comm").read_text())
    os.kill(int(victim), signal.SIGKILL)
    assert own_tenant.tenant.wait_exit() == 1
    name = "dovecot" if daemon == "dovecot" else "postfix"
    assert f"error: {name} exited on its own" in own_tenant.logs()


# --- bad configuration: the container exits and says why ---------------------------


def _run_broken(
    image: str, root: Path, edit: Callable[[TenantFiles], None], gateway: str
) -> tuple[int, str]:
    files = TenantFiles(root, settings_for(f"{gateway}/32"))
    files.write(sample_spec(), PASSWORDS)
    edit(files)
    tenant = Tenant(image, host_address(14), files)
    tenant.start()
    try:
        code = tenant.wait_exit(timeout=30)
        return code, tenant.logs()
    finally:
        tenant.remove()


def _remove(rel: str) -> Callable[[TenantFiles], None]:
    def edit(files: TenantFiles) -> None:
        base = files.root / rel.split("/")[0] / "..data"
        (base / "/".join(rel.split("/")[1:])).unlink()

    return edit


def _rewrite(key: str, extra: str) -> Callable[[TenantFiles], None]:
    def edit(files: TenantFiles) -> None:
        files.write(sample_spec(), PASSWORDS, edit=lambda c: c.__setitem__(key, c[key] + extra))

    return edit


BROKEN = {
    "missing dovecot.conf": (
        _remove("config/dovecot/dovecot.conf"),
        "missing /etc/vpes/config/dovecot/dovecot.conf",
    ),
    "missing passwd": (_remove("secrets/passwd"), "missing /etc/vpes/secrets/passwd"),
    "missing tls.key": (_remove("secrets/tls.key"), "missing /etc/vpes/secrets/tls.key"),
    "invalid Postfix value": (
        _rewrite("postfix/main.cf", "\nmessage_size_limit = lots\n"),
        "message_size_limit",
    ),
    "invalid Dovecot value": (
        _rewrite("dovecot/dovecot.conf", "\ndefault_process_limit = many\n"),
        "default_process_limit",
    ),
    "unknown Dovecot setting": (
        _rewrite("dovecot/dovecot.conf", "\nno_such_setting = 1\n"),
        "no_such_setting",
    ),
}


@pytest.mark.parametrize(("edit", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_bad_configuration_exits_naming_the_problem(
    image: str, gateway: str, tmp_path: Path, edit: Callable[[TenantFiles], None], expected: str
) -> None:
    code, logs = _run_broken(image, tmp_path, edit, gateway)
    assert code == 2, logs
    assert "vpes-init: error: invalid configuration" in logs
    assert expected in logs, logs


def test_read_only_root_and_dropped_capabilities(tenant: Running) -> None:
    out = tenant.tenant.exec("touch", "/etc/vpes-test")
    assert out.returncode != 0
    assert "Read-only file system" in out.stderr
    status = tenant.tenant.exec("grep", "CapEff", "/proc/1/status").stdout
    assert int(status.split()[1], 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN
