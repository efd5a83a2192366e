"""Run the webmail images (images/webmail, images/webmail-db) under podman as the
chart runs them: read-only roots, no capabilities, emptyDirs for what they write,
configuration only from the environment and the allowed-domains file; and drive
Roundcube over HTTP as a browser does (its login form, request tokens, cookies)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from .conftest import Running, host_address
from .rspamd_support import empty_dir
from .tenant import (
    PASSWORDS,
    Container,
    _atomic_write,
    build_images,
    confined_run_args,
    container_address,
    podman,
)

HTTP_PORT = 8080
DB_PASSWORD = "db-password-0123456789"
DES_KEY = "0123456789abcdefghijklmn"  # 24 characters
DOMAINS_DIR = "/etc/vpes/webmail"
GATE_MESSAGE = "Webmail is not part of this mailbox's plan."
SECURITY = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


@dataclass
class WebmailDb(Container):
    """PostgreSQL 15 (images/webmail-db), reached at its podman address."""

    image: str
    root: Path
    name: str = field(default_factory=lambda: f"vpes-wmdb-{uuid.uuid4().hex[:8]}")
    password: str = DB_PASSWORD

    def start(self) -> None:
        podman(
            *confined_run_args(self.name, "webmail-db", ()),
            *empty_dir(self.root, "/var/lib/vpes-webmail-db"),
            *empty_dir(self.root, "/run/vpes-webmail-db"),
            "--env",
            f"VPES_WEBMAIL_DB_PASSWORD={self.password}",
            self.image,
        )

    @property
    def dsn(self) -> str:
        return f"pgsql://roundcube:{self.password}@{container_address(self.name)}:5432/roundcube"

    def wait_ready(self, timeout: float = 60, starts: int = 1) -> None:
        """Until PostgreSQL has begun listening ``starts`` times (restarts count)."""
        self.wait_serving(
            lambda: self.logs().count("starting postgres on 5432") >= starts, "webmail-db", timeout
        )

    def stop_start(self) -> None:
        podman("stop", "--time", "10", self.name)
        podman("start", self.name)

    def psql(self, password: str, sql: str) -> tuple[int, str]:
        """``sql`` as the role roundcube over TCP (SCRAM), inside the container."""
        out = podman(
            "exec",
            "--env",
            f"PGPASSWORD={password}",
            self.name,
            "/usr/bin/psql",
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-U",
            "roundcube",
            "-d",
            "roundcube",
            "-c",
            sql,
            check=False,
        )
        return out.returncode, out.stdout + out.stderr

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)


@dataclass
class Webmail(Container):
    """One webmail replica: Roundcube on ``host``:8080."""

    image: str
    host: str
    root: Path
    env: dict[str, str]
    name: str = field(default_factory=lambda: f"vpes-webmail-{uuid.uuid4().hex[:8]}")
    # More read-only mounts (host directory, path inside), as a ConfigMap volume.
    mounts: tuple[tuple[Path, str], ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{HTTP_PORT}"

    @property
    def domains_dir(self) -> Path:
        return self.root / "domains"

    def write_domains(self, domains: list[str]) -> None:
        """The ConfigMap volume's ``domains``, swapped in as the kubelet does."""
        text = "# allowed\n" + "".join(f"{d}\n" for d in domains)
        _atomic_write(self.domains_dir, {"domains": (text, 0o444)})

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        args = [
            *confined_run_args(self.name, "webmail", ()),
            *empty_dir(self.root, "/run/vpes-webmail"),
            *empty_dir(self.root, "/tmp"),
            "--volume",
            f"{self.domains_dir}:{DOMAINS_DIR}:ro",
            "--publish",
            f"{self.host}:{HTTP_PORT}:{HTTP_PORT}",
        ]
        for source, target in self.mounts:
            args += ["--volume", f"{source}:{target}:ro"]
        for k, v in self.env.items():
            args += ["--env", f"{k}={v}"]
        podman(*args, self.image)

    def wait_ready(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_serving(healthy, "webmail", timeout)

    def exec(self, *cmd: str) -> str:
        return podman("exec", self.name, *cmd).stdout

    def try_exec(self, *cmd: str) -> str:
        """Output and errors of ``cmd``, failing or not."""
        out = podman("exec", self.name, *cmd, check=False)
        return out.stdout + out.stderr

    def stop(self) -> None:
        podman("stop", "--time", "10", self.name)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)


def webmail_env(dsn: str, tenant_address: str, **extra: str) -> dict[str, str]:
    """The chart's environment, every host the tenant itself (which speaks IMAPS,
    submission and ManageSieve as the edge's proxy does; self-signed: verify 0)."""
    return {
        "VPES_WEBMAIL_DB_DSN": dsn,
        "VPES_WEBMAIL_DES_KEY": DES_KEY,
        "VPES_WEBMAIL_IMAP_HOST": f"ssl://{tenant_address}:993",
        "VPES_WEBMAIL_SMTP_HOST": f"tls://{tenant_address}:587",
        "VPES_WEBMAIL_SIEVE_HOST": f"tls://{tenant_address}:4190",
        "VPES_WEBMAIL_TLS_VERIFY": "0",
        "VPES_WEBMAIL_DOMAINS": f"{DOMAINS_DIR}/domains",
        **extra,
    }


TOKEN = re.compile(r'name="_token" value="([^"]+)"')
ENV_TOKEN = re.compile(r'"request_token":"([^"]+)"')
MESSAGE = re.compile(r'display_message\(("(?:[^"\\]|\\.)*")')


def page_token(html: str) -> str:
    found = TOKEN.search(html) or ENV_TOKEN.search(html)
    if found is None:
        raise AssertionError(f"no request token in the page:\n{html[:2000]}")
    return found.group(1)


def shown_messages(text: str) -> list[str]:
    """The texts a page (or the ``exec`` of an AJAX answer) shows with display_message."""
    return [json.loads(m) for m in MESSAGE.findall(text)]


class Browser:
    """Roundcube as a browser drives it: cookies, the login form, request tokens."""

    def __init__(self, url: str, cookies: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, cookies=cookies)
        self.token = ""

    def close(self) -> None:
        self.http.close()

    def login(self, user: str, password: str) -> httpx.Response:
        """Posts the login form; the answer after redirects (the mail page, or the
        login page with the message)."""
        form = self.http.get("/")
        form.raise_for_status()
        r = self.http.post(
            "/?_task=login",
            data={
                "_task": "login",
                "_action": "login",
                "_timezone": "UTC",
                "_url": "",
                "_user": user,
                "_pass": password,
                "_token": page_token(form.text),
            },
            follow_redirects=True,
        )
        if "request_token" in r.text:
            self.token = page_token(r.text)
        return r

    def get(self, path: str, params: Mapping[str, str]) -> httpx.Response:
        return self.http.get(path, params=params, follow_redirects=True)

    def ajax(
        self, params: Mapping[str, str], data: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """An AJAX request as Roundcube's JavaScript sends it (``_remote=1``, the token
        in X-Roundcube-Request)."""
        headers = {"X-Roundcube-Request": self.token, "X-Requested-With": "XMLHttpRequest"}
        query = {**params, "_remote": "1"}
        if data is None:
            return self.http.get("/", params=query, headers=headers)
        return self.http.post("/", params=query, data=data, headers=headers)

    def mail_list(self) -> httpx.Response:
        return self.ajax({"_task": "mail", "_action": "list", "_mbox": "INBOX"})

    def compose(self) -> tuple[str, str]:
        """Opens the compose page: its compose id and the identity to send from."""
        page = self.get("/", {"_task": "mail", "_action": "compose"})
        page.raise_for_status()
        compose_id = re.search(r'"compose_id":"([^"]+)"', page.text)
        identity = re.search(r'<select name="_from"[^>]*>\s*<option value="([0-9]+)"', page.text)
        if compose_id is None or identity is None:
            raise AssertionError(f"no compose id or identity in the page:\n{page.text[:2000]}")
        self.token = page_token(page.text)
        return compose_id.group(1), identity.group(1)

    def send(self, to: str, subject: str, text: str) -> httpx.Response:
        """Composes and sends a plain-text message as the compose page's form does
        (posted into a frame)."""
        compose_id, identity = self.compose()
        return self.http.post(
            "/",
            params={"_task": "mail", "_action": "send"},
            data={
                "_token": self.token,
                "_task": "mail",
                "_action": "send",
                "_id": compose_id,
                "_from": identity,
                "_to": to,
                "_cc": "",
                "_bcc": "",
                "_replyto": "",
                "_followupto": "",
                "_subject": subject,
                "_message": text,
                "_is_html": "0",
                "_draft": "",
                "_priority": "0",
                "_store_target": "Sent",
                "_framed": "1",
            },
        )


class Panel:
    """The panel's password endpoint, as the webmail sees it: on the podman
    gateway (the host), answering what the test tells it to."""

    def __init__(self, address: str) -> None:
        self.asked: list[dict[str, list[str]]] = []
        self.answer: tuple[int, str] = (200, "")
        panel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                panel.asked.append(parse_qs(self.rfile.read(length).decode()))
                status, text = panel.answer
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/password"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pgp_private_key(tmp: Path, address: str, passphrase: str) -> str:
    """An armored private key for ``address``, protected by ``passphrase`` (what Roundcube's
    page posts after generating a pair with openpgp.js)."""
    tmp.chmod(0o700)
    gpg = ["gpg", "--batch", "--homedir", str(tmp), "--pinentry-mode", "loopback"]
    gpg += ["--passphrase", passphrase]
    subprocess.run(
        [*gpg, "--quick-gen-key", f"Test <{address}>", "ed25519", "default", "never"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*gpg, "--armor", "--export-secret-keys", address],
        check=True,
        capture_output=True,
        text=True,
    )
    subprocess.run(["gpgconf", "--homedir", str(tmp), "--kill", "all"], check=False)
    return out.stdout


ALICE = "alice@example.org"
BOB = "bob@example.net"
MAX_UPLOAD = 200 * 1024


@dataclass
class WebmailSetup:
    """The database, two replicas, the tenant behind them and the panel's stand-in."""

    db: WebmailDb
    one: Webmail
    two: Webmail
    tenant: Running
    panel: Panel


def start_webmail(
    tenant: Running, gateway: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebmailSetup]:
    """The conftest's ``webmail`` fixture: started once for both test modules."""
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
        yield WebmailSetup(db, replicas[0], replicas[1], tenant, panel)
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
