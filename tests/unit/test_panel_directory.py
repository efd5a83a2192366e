"""The login directory: which server an address logs in to, and which has a domain."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_panel.directory import Directory, Home

pytestmark = pytest.mark.unit


class Listing:
    def __init__(self, servers: list[dict[str, Any]]) -> None:
        self.servers = servers
        self.lists = 0

    def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        self.lists += 1
        return self.servers


def server(ns: str, name: str, domains: list[str], mailboxes: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"domains": domains, "mailboxes": [{"address": a} for a in mailboxes]},
    }


def test_addresses_are_found_and_listed_again_only_after_the_ttl() -> None:
    now = [0.0]
    kube = Listing([server("a", "mail", ["a.example"], ["x@a.example"])])
    d = Directory(kube, ttl=10, clock=lambda: now[0])  # type: ignore[arg-type]
    assert d.find("x@a.example") == Home("a", "mail")
    assert d.find("unknown@a.example") is None
    assert kube.lists == 1  # the unknown address was answered from the fresh listing
    now[0] = 11
    kube.servers.append(server("b", "mail", ["b.example"], ["y@b.example"]))
    assert d.find("y@b.example") == Home("b", "mail")
    assert kube.lists == 2


def test_a_domains_server_is_listed_now() -> None:
    kube = Listing([server("a", "mail", ["a.example"], [])])
    d = Directory(kube, ttl=3600)  # type: ignore[arg-type]
    assert d.domain_home("a.example") == Home("a", "mail")
    kube.servers.append(server("b", "mail", ["b.example"], []))
    assert d.domain_home("b.example") == Home("b", "mail")  # not the stale listing
    assert d.domain_home("c.example") is None
