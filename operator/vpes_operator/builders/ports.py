"""The ports a tenant pod serves, by name: one table for the container, Service and policy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    purpose: str


TENANT_PORTS: tuple[Port, ...] = (
    Port("smtp", 25, "mail in from the edge MX (PROXY protocol)"),
    Port("submissions", 465, "submission, implicit TLS"),
    Port("submission", 587, "submission, STARTTLS"),
    Port("imap", 143, "IMAP, STARTTLS"),
    Port("imaps", 993, "IMAP, implicit TLS"),
    Port("pop3", 110, "POP3, STARTTLS"),
    Port("pop3s", 995, "POP3, implicit TLS"),
    Port("sieve", 4190, "ManageSieve"),
)
