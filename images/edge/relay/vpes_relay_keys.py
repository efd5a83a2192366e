"""One generation of the outbound relay's files, from the operator's maps and
the relay's shard Secrets (images/README.md, "The edge image, role relay").

``python3 vpes_relay_keys.py MAPS RELAY OUT MX_INTERNAL`` reads one version of
the maps (``MAPS``: domains, senders, limits, held, version) and of the shard
Secrets (``RELAY``: users-<i>, dkim-<i>, the key files) and writes into the
new directory ``OUT``:

- ``senders``, ``transport``, ``srs-exclude``: Postfix tables (vpes-edge
  compiles them); the transport sends every hosted domain to ``MX_INTERNAL``
  (empty: nothing); ``srs-exclude`` maps each hosted domain to ``@domain``:
  with SRS on, the first of the ``sender_canonical_maps`` looks a sender's
  domain up in it (srs.sh) and leaves a hosted domain's sender as it is, so
  that only senders of other domains (forwarded mail) reach postsrsd.
- ``limits``, ``held``, ``version``: for the policy service (checked here).
- ``users``: Dovecot's passwd-file, every ``users-*`` concatenated.
- ``keytable-rsa``, ``keytable-ed25519``, ``keys/``: the KeyTables of the
  two OpenDKIM instances (one signs rsa-sha256, the other ed25519-sha256:
  Debian's OpenDKIM 2.11 signs with one algorithm per instance) and the keys.
- ``signing-rsa.lua``, ``signing-ed25519.lua``: their setup scripts, which
  sign a message with the keys of its From: domain only when the
  authenticated login is the server that the ``senders`` map gives that
  domain.

Prints nothing and exits 0 when the generation is good; else one line naming
the file and the line, exit 1. Pure functions for the unit tests.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vpes_relay import SERVER_RE, MapError, parse_maps

DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
SELECTOR_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
KEYFILE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*\.key$")
KINDS = ("rsa", "ed25519")
# The algorithm identifiers in a PKCS#8 PrivateKeyInfo (DER).
OIDS = {"rsa": bytes.fromhex("06092a864886f70d010101"), "ed25519": bytes.fromhex("06032b6570")}
USER_RE = re.compile(r"^([^:\s]+):(\{[A-Z0-9.-]+\}[A-Za-z0-9+/=.$]+)$")


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_senders(text: str) -> dict[str, str]:
    """``@domain ns/name`` per line → domain → server."""
    owners: dict[str, str] = {}
    for number, line in _lines(text):
        where = f"senders line {number}"
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith("@"):
            raise MapError(f"{where}: expected '@domain ns/name', got {line!r}")
        domain, server = parts[0][1:], parts[1]
        if not DOMAIN_RE.match(domain):
            raise MapError(f"{where}: {domain!r} is not a lower-case domain name")
        if not SERVER_RE.match(server):
            raise MapError(f"{where}: {server!r} is not a server (namespace/name)")
        if domain in owners:
            raise MapError(f"{where}: {domain} is listed twice")
        owners[domain] = server
    return owners


def parse_domains(text: str) -> list[str]:
    """The hosted domains: the first word of each ``domains`` line."""
    domains = []
    for number, line in _lines(text):
        domain = line.split()[0]
        if not DOMAIN_RE.match(domain):
            raise MapError(f"domains line {number}: {domain!r} is not a lower-case domain name")
        domains.append(domain)
    return domains


def transport(domains: Iterable[str], mx_internal: str) -> str:
    if not mx_internal:
        return ""
    return "".join(f"{d} smtp:{mx_internal}\n" for d in domains)


def srs_exclude(owners: Iterable[str]) -> str:
    """``domain @domain`` per hosted domain: keyed by the sender's domain (a
    regexp in front of it extracts it), an ``@domain`` result keeps the local
    part, so the address stays as it is and the lookup ends before postsrsd."""
    return "".join(f"{d} @{d}\n" for d in sorted(owners))


def users(files: Mapping[str, str]) -> str:
    """Every ``users-*`` file, checked, in one passwd-file."""
    out: list[str] = []
    seen: set[str] = set()
    for name in sorted(files):
        for number, line in _lines(files[name]):
            match = USER_RE.match(line)
            if not match or not SERVER_RE.match(match.group(1)):
                raise MapError(f"{name} line {number}: expected 'ns/name:{{SCHEME}}hash'")
            if match.group(1) in seen:
                raise MapError(f"{name} line {number}: {match.group(1)} is listed twice")
            seen.add(match.group(1))
            out.append(line + "\n")
    return "".join(out)


@dataclass(frozen=True)
class Key:
    domain: str
    selector: str
    keyfile: str

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def dkim_keys(files: Mapping[str, str], available: Iterable[str]) -> list[Key]:
    """``<domain> <selector> <keyfile>`` lines of every ``dkim-*`` file."""
    have = set(available)
    keys: list[Key] = []
    names: set[str] = set()
    for name in sorted(files):
        for number, line in _lines(files[name]):
            where = f"{name} line {number}"
            parts = line.split()
            if len(parts) != 3:
                raise MapError(f"{where}: expected 'domain selector keyfile', got {line!r}")
            key = Key(*parts)
            if not DOMAIN_RE.match(key.domain):
                raise MapError(f"{where}: {key.domain!r} is not a lower-case domain name")
            if not SELECTOR_RE.match(key.selector):
                raise MapError(f"{where}: {key.selector!r} is not a selector")
            if not KEYFILE_RE.match(key.keyfile) or key.keyfile not in have:
                raise MapError(f"{where}: no key file {key.keyfile!r} in the Secret")
            if key.name in names:
                raise MapError(f"{where}: {key.name} is listed twice")
            names.add(key.name)
            keys.append(key)
    return keys


def key_kind(pem: str) -> str:
    """``rsa`` or ``ed25519``: the algorithm of a PKCS#8 PEM private key."""
    body = "".join(x for x in pem.strip().splitlines() if not x.startswith("-----"))
    if "-----BEGIN PRIVATE KEY-----" not in pem:
        raise MapError("not a PKCS#8 PEM private key")
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as e:
        raise MapError(f"not a PKCS#8 PEM private key: {e}") from e
    for kind, oid in OIDS.items():
        if oid in der[:32]:
            return kind
    raise MapError("neither an RSA nor an Ed25519 key")


def keytable(keys: Iterable[Key], keydir: str) -> str:
    """OpenDKIM's KeyTable: ``name domain:selector:file``."""
    return "".join(f"{k.name} {k.domain}:{k.selector}:{keydir}/{k.keyfile}\n" for k in keys)


def _lua(value: str) -> str:
    # Every value is checked against a strict pattern above; quote anyway.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signing_script(
    owners: Mapping[str, str], keys: Iterable[Key], generation: str, live: str
) -> str:
    """OpenDKIM's setup script: sign only a hosted domain of the logged-in server.

    A key OpenDKIM cannot use (odkim.sign does not return 1: not found, unsafe,
    unreadable) fails the message with a 4xx (the tenant keeps it queued): a hosted
    domain's mail never leaves unsigned because of a key. So does a script that is
    not the live generation's (`generation`, against the file `live`): an OpenDKIM
    whose reload failed, or has not happened yet, would not know a new server's
    keys and send its mail unsigned."""
    by_domain: dict[str, list[str]] = {}
    for key in keys:
        if key.domain in owners:
            by_domain.setdefault(key.domain, []).append(key.name)
    rows = [
        f"  [{_lua(d)}] = {{server = {_lua(owners[d])}, keys = {{"
        + ", ".join(_lua(n) for n in names)
        + "}},\n"
        for d, names in sorted(by_domain.items())
    ]
    stale = (
        f'local f = io.open({_lua(live)}, "r")\n'
        "local now = nil\n"
        'if f ~= nil then now = f:read("*l") f:close() end\n'
        f"if now ~= {_lua(generation)} then\n"
        "  odkim.set_result(ctx, SMFIS_TEMPFAIL)\n"
        "  return nil\n"
        "end\n"
    )
    return (
        "-- Generated by vpes_relay_keys.py: OpenDKIM's SetupPolicyScript.\n"
        + stale
        + "local signers = {\n"
        + "".join(rows)
        + "}\n"
        'local login = odkim.get_mtasymbol(ctx, "{auth_authen}")\n'
        "local domain = odkim.get_fromdomain(ctx)\n"
        "if login == nil or domain == nil then return nil end\n"
        "local entry = signers[string.lower(domain)]\n"
        "if entry == nil or entry.server ~= string.lower(login) then return nil end\n"
        "for _, name in ipairs(entry.keys) do\n"
        "  if odkim.sign(ctx, name) ~= 1 then\n"
        "    odkim.set_result(ctx, SMFIS_TEMPFAIL)\n"
        "    return nil\n"
        "  end\n"
        "end\n"
        "return nil\n"
    )


def _read_dir(directory: Path) -> dict[str, str]:
    out = {}
    for path in directory.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        out[path.name] = path.read_text()
    return out


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def build(maps_dir: Path, relay_dir: Path, out: Path, mx_internal: str) -> None:
    """Writes one generation into ``out`` (which must not exist) or raises MapError."""
    maps = _read_dir(maps_dir)
    for required in ("domains", "senders", "limits"):
        if required not in maps:
            raise MapError(f"{required}: missing from the maps")
    parse_maps(maps)  # limits and held
    owners = parse_senders(maps["senders"])
    domains = parse_domains(maps["domains"])
    secret = _read_dir(relay_dir) if relay_dir.is_dir() else {}
    users_text = users({k: v for k, v in secret.items() if k.startswith("users-")})
    keyfiles = {k: v for k, v in secret.items() if k.endswith(".key")}
    keys = dkim_keys({k: v for k, v in secret.items() if k.startswith("dkim-")}, keyfiles)
    out.mkdir(mode=0o755)
    (out / "keys").mkdir(mode=0o700)
    for name in ("senders", "limits"):
        _write(out / name, maps[name])
    _write(out / "held", maps.get("held", ""))
    _write(out / "version", (maps.get("version", "").strip() or "unversioned") + "\n")
    _write(out / "transport", transport(domains, mx_internal))
    _write(out / "generation", out.name + "\n")
    _write(out / "srs-exclude", srs_exclude(owners))
    _write(out / "users", users_text, 0o600)
    kinds: dict[str, list[Key]] = {kind: [] for kind in KINDS}
    for key in keys:
        try:
            kinds[key_kind(keyfiles[key.keyfile])].append(key)
        except MapError as e:
            raise MapError(f"{key.keyfile}: {e}") from e
    for name in sorted({k.keyfile for k in keys}):
        _write(out / "keys" / name, keyfiles[name], 0o600)
    for kind, these in kinds.items():
        _write(out / f"keytable-{kind}", keytable(these, str(out / "keys")))
        live = str(out.parent / "current" / "generation")
        _write(out / f"signing-{kind}.lua", signing_script(owners, these, out.name, live))


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: vpes_relay_keys.py MAPS RELAY OUT MX_INTERNAL", file=sys.stderr)
        return 2
    try:
        build(Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3])
    except MapError as e:
        print(e)
        return 1
    except (OSError, UnicodeDecodeError) as e:
        print(f"cannot read or write: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
