"""OpenPGP public keys for the Web Key Directory (draft-koch-openpgp-webkey-service).

A mailbox user publishes their public key in the panel; it is stored in the spec
(`spec.mailboxes[].openpgpKey`, ASCII-armored, as `armor` writes it) and served over
HTTPS so that `gpg --locate-keys alice@example.org` finds it:

- advanced method: `https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>`
  (the operator publishes `openpgpkey.<domain>` as a CNAME to the edge's web host);
- direct method: `https://<domain>/.well-known/openpgpkey/hu/<hash>`;

where <hash> is `wkd_hash` of the local part; each directory also has a `policy`
file. `wkd_lookup` decides what a request gets; `published_keys` is what it looks
in, built from the PersonalMailServer objects.

A key is checked before it is published (`check_key`): Debian's gpg reads it
(`--show-keys`: listed, never imported into any keyring) in a throwaway home
directory, with no agent. Everything else here is pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError
from vpes_operator.edge.routing import key_of, route
from vpes_operator.models.server import (
    MAX_OPENPGP_KEY,
    OPENPGP_FOOTER,
    OPENPGP_HEADER,
    PersonalMailServer,
)

GPG = "gpg"
GPG_SECONDS = 10.0
ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
WELL_KNOWN = "/.well-known/openpgpkey/"
ADVANCED_PREFIX = "openpgpkey."
CRC24_INIT, CRC24_POLY = 0xB704CE, 0x1864CFB
EXPORT = "gpg --armor --export-options export-minimal --export {address}"
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ARMOR_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]*: ")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_CHECKSUM = re.compile(r"^=([A-Za-z0-9+/]{4})$")
_ANGLE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")

Found = bytes | None | Literal["policy"]


class KeyRefusedError(ValueError):
    """The text is not a key to publish; the message says what to do instead."""


class SecretKeyError(KeyRefusedError):
    """The text holds a secret key: refused, and never shown back."""


# -- the Web Key Directory's names ----------------------------------------------------


def zbase32(data: bytes) -> str:
    """z-base-32 (the draft's encoding of the hash): 5 bits a character, first bits first."""
    bits = int.from_bytes(data, "big")
    count = len(data) * 8
    pad = -count % 5
    bits <<= pad
    return "".join(ZBASE32[(bits >> shift) & 31] for shift in range(count + pad - 5, -1, -5))


def wkd_hash(local_part: str) -> str:
    """The name of a local part's key under hu/: z-base-32 of the SHA-1 of the local
    part with ASCII letters lowercased (nothing else is changed, as the draft says)."""
    lowered = local_part.translate(_ASCII_UPPER)
    return zbase32(hashlib.sha1(lowered.encode(), usedforsecurity=False).digest())


# -- ASCII armor ----------------------------------------------------------------------


def crc24(data: bytes) -> int:
    """The armor's checksum (RFC 4880 section 6.1)."""
    crc = CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= CRC24_POLY
    return crc & 0xFFFFFF


def dearmor(text: str) -> bytes:
    """The binary key inside one ASCII-armored public key block; KeyRefusedError for
    anything else: a private key, several blocks, text around the block, a body that
    is not base64, a checksum that does not match. The checksum line may be absent
    (RFC 9580 made it optional); when present it must match."""
    lines = [line.rstrip() for line in text.strip().replace("\r\n", "\n").split("\n")]
    if "PRIVATE KEY BLOCK" in text:
        raise SecretKeyError(
            "This is your private (secret) key: never give it to anyone, and change it if "
            "you shared it. Publish your public key instead, which "
            f"{EXPORT.format(address='<your address>')} prints."
        )
    if lines[0] != OPENPGP_HEADER or lines[-1] != OPENPGP_FOOTER:
        raise KeyRefusedError(
            f"Paste one public key block: from the line {OPENPGP_HEADER} to the line "
            f"{OPENPGP_FOOTER}, nothing before or after it."
        )
    body = lines[1:-1]
    if OPENPGP_HEADER in body or OPENPGP_FOOTER in body:
        raise KeyRefusedError("Paste one public key block only (this text has several).")
    while body and _ARMOR_HEADER.match(body[0]):
        body.pop(0)  # armor headers (Comment:, Version:) say nothing about the key
    if body and body[0] == "":
        body.pop(0)
    checksum = _CHECKSUM.match(body[-1]) if body else None
    if checksum:
        body.pop()
    if not body or not all(_BASE64_LINE.match(line) for line in body):
        raise KeyRefusedError(
            "The key block is damaged (its lines are not base64). Export it again and "
            "paste all of it, unchanged."
        )
    try:
        data = base64.b64decode("".join(body), validate=True)
    except binascii.Error as e:
        raise KeyRefusedError(
            "The key block is damaged (cut short?). Export it again and paste all of it."
        ) from e
    if checksum and int.from_bytes(base64.b64decode(checksum.group(1)), "big") != crc24(data):
        raise KeyRefusedError(
            "The key block is damaged (its checksum does not match). Export it again and "
            "paste all of it, unchanged."
        )
    return data


def armor(data: bytes) -> str:
    """`data` as a public key block: no armor headers, 64 characters a line, the
    checksum, one final newline. What the spec stores."""
    text = base64.b64encode(data).decode()
    body = [text[i : i + 64] for i in range(0, len(text), 64)]
    crc = base64.b64encode(crc24(data).to_bytes(3, "big")).decode()
    return "\n".join([OPENPGP_HEADER, "", *body, f"={crc}", OPENPGP_FOOTER]) + "\n"


# -- what gpg says of a key -----------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """One public key as gpg lists it."""

    armored: str  # as `armor` writes it: what the spec stores
    fingerprint: str
    user_ids: tuple[str, ...]  # every user ID, revoked or expired ones too
    addresses: frozenset[str]  # the mail addresses of its valid user IDs, lowercase
    expires: datetime | None
    revoked: bool
    expired: bool
    can_encrypt: bool

    @property
    def grouped_fingerprint(self) -> str:
        """The fingerprint as people read it: groups of four."""
        return " ".join(self.fingerprint[i : i + 4] for i in range(0, len(self.fingerprint), 4))


def _gpg_show(data: bytes) -> tuple[list[list[str]], bool]:
    """gpg's colon listing of `data` (not imported: --show-keys, a home directory of its
    own, no agent), as records of fields, and whether gpg read all of it without an
    error; KeyRefusedError when gpg cannot be run."""
    with tempfile.TemporaryDirectory(prefix="vpes-gpg-") as home:
        os.chmod(home, 0o700)
        argv = [GPG, "--homedir", home, "--no-options", "--batch", "--no-tty", "--quiet"]
        argv += ["--no-autostart", "--display-charset", "utf-8", "--with-colons"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": home}
        try:
            done = subprocess.run(
                [*argv, "--show-keys"],
                input=data,
                capture_output=True,
                timeout=GPG_SECONDS,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KeyRefusedError(
                "Keys cannot be checked just now, so nothing was published. Try again in a "
                f"minute; if this goes on, tell your provider (gpg: {type(e).__name__})."
            ) from e
    records = [
        [_unescape(field) for field in line.split(b":")] for line in done.stdout.splitlines()
    ]
    return records, done.returncode == 0


def _unescape(field: bytes) -> str:
    """A field of gpg's colon listing: ':' and control characters come as \\xHH."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), field)
    return raw.decode("utf-8", "replace")


def _when(field: str) -> datetime | None:
    return datetime.fromtimestamp(int(field), UTC) if field.isdigit() else None


def _address(user_id: str) -> str | None:
    """The mail address of a user ID ("Alice <alice@example.org>" or a bare address)."""
    m = _ANGLE.search(user_id)
    value = m.group(1) if m else user_id.strip()
    return value.lower() if re.fullmatch(r"[^\s<>@]+@[^\s<>@]+", value) else None


def inspect(text: str) -> PublicKey:
    """The one public key `text` holds; KeyRefusedError (saying what to do) when it holds
    none, several, or a secret key."""
    data = dearmor(text)
    records, whole = _gpg_show(data)
    primaries = [r for r in records if r[0] in ("pub", "sec")]
    if any(r[0] in ("sec", "ssb") for r in records):
        raise SecretKeyError(
            "This holds a private (secret) key: never give it to anyone. Publish your "
            f"public key instead, which {EXPORT.format(address='<your address>')} prints."
        )
    if primaries and not whole:
        raise KeyRefusedError(
            "gpg could not read all of this key (is it cut short?). Export it again and "
            "paste all of it."
        )
    if len(primaries) != 1:
        raise KeyRefusedError(
            "This holds no key gpg can read. Export your key again and paste all of it."
            if not primaries
            else f"This holds {len(primaries)} keys: publish one. Export only the key for "
            "this mailbox, naming it by its address or fingerprint."
        )
    pub = primaries[0] + [""] * 12
    fpr = next((r[9] for r in records if r[0] == "fpr" and len(r) > 9), "")
    uids = [(r[1], r[9]) for r in records if r[0] == "uid" and len(r) > 9]
    return PublicKey(
        armored=armor(data),
        fingerprint=fpr,
        user_ids=tuple(u for _, u in uids),
        addresses=frozenset(a for v, u in uids if v not in ("r", "e") and (a := _address(u))),
        expires=_when(pub[6]),
        revoked=pub[1] == "r",
        expired=pub[1] == "e",
        can_encrypt="E" in pub[11],
    )


def problem(key: PublicKey, address: str, now: datetime) -> str | None:
    """Why `key` is no key to find for `address` now (None: it is one)."""
    export = EXPORT.format(address=address)
    if key.revoked:
        return "This key is revoked. Publish your current key instead (" + export + ")."
    if key.expired or (key.expires is not None and key.expires <= now):
        return (
            "This key has expired. Extend it (gpg --quick-set-expire <fingerprint> 2y), "
            f"then export and publish it again ({export})."
        )
    if address.lower() not in key.addresses:
        return (
            f"None of this key's user IDs is {address}. Add it (gpg --quick-add-uid "
            f"<fingerprint> {address}), or export the key that has it ({export})."
        )
    if not key.can_encrypt:
        return (
            "This key cannot encrypt (it has no valid encryption subkey), so no one could "
            "write to you with it. Add one (gpg --quick-add-key <fingerprint> cv25519 encr) "
            "and export it again."
        )
    return None


def check_key(text: str, address: str, now: datetime | None = None) -> PublicKey:
    """The key to publish for `address`: exactly one public key, neither revoked nor
    expired, with a user ID of `address`, that can encrypt, and short enough for the
    spec once armored; else KeyRefusedError saying what to do."""
    key = inspect(text)
    objection = problem(key, address, now or datetime.now(UTC))
    if objection:
        raise KeyRefusedError(objection)
    if len(key.armored) > MAX_OPENPGP_KEY:
        raise KeyRefusedError(
            f"This key is too long to publish ({len(key.armored)} characters, at most "
            f"{MAX_OPENPGP_KEY}): its signatures by other keys make it long. Export it "
            f"without them: {EXPORT.format(address=address)}"
        )
    return key


# -- the directory ----------------------------------------------------------------------

Keys = Mapping[tuple[str, str], tuple[bytes, str]]


def published_keys(
    servers: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], tuple[bytes, str]]:
    """(domain, hash) → (the binary key, the local part) for every key the servers'
    mailboxes publish. A domain's keys come only from the server the edge routes it to
    (the first created, edge/routing.py): a server listing someone else's domain
    publishes nothing for it. Servers being deleted and keys that do not dearmor are
    left out (the API server refuses most; no exception)."""
    parsed: list[PersonalMailServer] = []
    for obj in servers:
        try:
            # The status is not needed to route a domain (and is most of the object).
            slim = {k: v for k, v in obj.items() if k != "status"}
            parsed.append(PersonalMailServer.model_validate(slim))
        except ValidationError:
            continue
    owners = route(parsed).owners
    out: dict[tuple[str, str], tuple[bytes, str]] = {}
    for server in parsed:
        me = key_of(server)
        for mailbox in server.spec.get("mailboxes") or []:
            text, address = mailbox.get("openpgpKey"), str(mailbox.get("address", ""))
            local, _, domain = address.rpartition("@")
            if not isinstance(text, str) or not local or owners.get(domain) != me:
                continue
            try:
                out[(domain, wkd_hash(local))] = (dearmor(text), local)
            except KeyRefusedError:
                continue
    return out


def _host(value: str) -> str:
    """A Host header's name: lowercase, no port, no final dot ("" for an IP literal)."""
    name = value.strip().lower()
    if name.startswith("["):
        return ""
    return name.partition(":")[0].rstrip(".")


def wkd_lookup(keys: Keys, host: str, path: str) -> Found:
    """What a request for `path` (a query string is ignored: the key is found by its
    hash, `?l=` is only a hint) on `host` gets: a key's binary, "policy" for a policy
    file, None for anything else (404). Only the domains that publish a key have a
    directory. Advanced method: host openpgpkey.<domain>, path
    /.well-known/openpgpkey/<domain>/hu/<hash> or .../<domain>/policy. Direct method:
    host <domain>, path /.well-known/openpgpkey/hu/<hash> or .../policy."""
    name, route_ = _host(host), path.partition("?")[0]
    if not route_.startswith(WELL_KNOWN):
        return None
    parts = route_[len(WELL_KNOWN) :].split("/")
    domains = {d for d, _ in keys}
    if len(parts) in (1, 2) and parts[0] in ("policy", "hu") and name in domains:
        domain, rest = name, parts  # direct method
    elif len(parts) in (2, 3) and name == ADVANCED_PREFIX + parts[0].lower():
        domain, rest = parts[0].lower(), parts[1:]  # advanced method
        if domain not in domains:
            return None
    else:
        return None
    if rest == ["policy"]:
        return "policy"
    if len(rest) == 2 and rest[0] == "hu":
        found = keys.get((domain, rest[1]))
        return found[0] if found else None
    return None
