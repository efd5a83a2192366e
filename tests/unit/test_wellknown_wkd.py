"""The Web Key Directory on vpes-web: the URL GnuPG's own client computes for an
address, asked of the app with that Host, returns the key the mailbox published,
which gpg then imports; the direct method at the domain itself, the policy files,
and 404 for an unknown hash, an unpublished address or a domain nobody hosts."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.settings import WebSettings

from tests.openpgp_keys import GnuPG, gnupg

from .hosted_support import indexed

pytestmark = pytest.mark.unit

ALICE = "alice@example.org"
WKS_CLIENT = shutil.which("gpg-wks-client") or next(
    (p for p in ("/usr/lib/gnupg/gpg-wks-client", "/usr/libexec/gpg-wks-client")
     if Path(p).exists()),
    None,
)  # fmt: skip
MAIL = OperatorSettings(mx_host="mx.edge.example", edge_web_host="web.edge.example")


def server(name: str, created: str, domains: list[str], mailboxes: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "vpes.io/v1alpha1",
        "kind": "PersonalMailServer",
        "metadata": {"name": "mail", "namespace": name, "creationTimestamp": created},
        "spec": {"plan": "p", "owner": {"email": "o@example.net"}, "domains": domains,
                 "mailboxes": mailboxes},
    }  # fmt: skip


@pytest.fixture(scope="module")
def published() -> Iterator[tuple[GnuPG, str, TestClient]]:
    with gnupg() as g:
        fingerprint = g.make(f"Alice <{ALICE}>")
        servers = [
            server("a", "2030-01-01T00:00:00Z", ["example.org"], [
                {"address": ALICE, "openpgpKey": g.export(ALICE)},
                {"address": "bob@example.org"},
            ]),
            server("b", "2030-01-02T00:00:00Z", ["other.example"], [
                {"address": "carol@other.example"},
            ]),
        ]  # fmt: skip
        hosted = indexed(servers)
        yield g, fingerprint, TestClient(build_app(WebSettings(mail=MAIL), hosted))


def wkd_url(address: str, direct: bool = False) -> urllib.parse.SplitResult:
    """The URL GnuPG's own WKS client asks for `address` (advanced method), or the
    direct method's, made from it as the draft says."""
    assert WKS_CLIENT is not None, "gpg-wks-client (Debian's gnupg) is needed"
    out = subprocess.run(
        [WKS_CLIENT, "--print-wkd-url", address],
        capture_output=True, check=True, text=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    url = urllib.parse.urlsplit(out)
    if not direct:
        return url
    domain = address.rpartition("@")[2]
    path = url.path.replace(f"/openpgpkey/{domain}/", "/openpgpkey/")
    return url._replace(netloc=domain, path=path)


def ask(client: TestClient, url: urllib.parse.SplitResult) -> Any:
    return client.get(f"{url.path}?{url.query}", headers={"host": url.netloc})


@pytest.mark.parametrize("direct", [False, True], ids=["advanced", "direct"])
def test_gpg_finds_the_published_key_at_the_url_it_computes(
    published: tuple[GnuPG, str, TestClient], direct: bool
) -> None:
    _, fingerprint, client = published
    url = wkd_url(ALICE, direct)
    r = ask(client, url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    with gnupg() as fresh:  # a correspondent's gpg, which has never seen the key
        fresh.gpg("--import", input_=r.content)
        listing = fresh.gpg("--with-colons", "--list-keys", ALICE).decode()
    assert f":{fingerprint}:" in listing


def test_policy_files_say_the_directory_exists(published: tuple[GnuPG, str, TestClient]) -> None:
    client = published[2]
    advanced = client.get(
        "/.well-known/openpgpkey/example.org/policy", headers={"host": "openpgpkey.example.org"}
    )
    direct = client.get("/.well-known/openpgpkey/policy", headers={"host": "example.org"})
    assert advanced.status_code == direct.status_code == 200
    none = client.get(
        "/.well-known/openpgpkey/other.example/policy",
        headers={"host": "openpgpkey.other.example"},
    )
    assert none.status_code == 404, "a domain that publishes no key has no directory"


@pytest.mark.parametrize(
    "address",
    ["bob@example.org", "nobody@example.org", "carol@other.example", "x@nothosted.example"],
)
def test_what_is_not_published_is_not_found(
    published: tuple[GnuPG, str, TestClient], address: str
) -> None:
    client = published[2]
    for direct in (False, True):
        r = ask(client, wkd_url(address, direct))
        assert r.status_code == 404 and r.text == "not found", (address, direct)


def test_another_domains_directory_is_not_reached_by_the_path(
    published: tuple[GnuPG, str, TestClient],
) -> None:
    url = wkd_url(ALICE)
    r = published[2].get(url.path, headers={"host": "openpgpkey.other.example"})
    assert r.status_code == 404
