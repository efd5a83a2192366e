"""The OpenPGP public key a mailbox may publish (spec.mailboxes[].openpgpKey): its
bounds, the API server's rule and the same check for pydantic."""

from __future__ import annotations

# OpenPGP public keys published in the Web Key Directory: one armored key a mailbox, at
# most this long, on at most this many mailboxes of a server (50 keys of 8 KiB keep the
# object well under the API server's 1.5 MiB).
MAX_OPENPGP_KEY = 8192
MAX_OPENPGP_KEYS = 50
OPENPGP_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
OPENPGP_FOOTER = "-----END PGP PUBLIC KEY BLOCK-----"
OPENPGP_KEY_MESSAGE = (
    f"must be one ASCII-armored OpenPGP public key, from the line {OPENPGP_HEADER} to the "
    f"line {OPENPGP_FOOTER} (what gpg --armor --export <address> prints); never a private key"
)
OPENPGP_PRIVATE_BLOCK_MESSAGE = (
    "this is a private (secret) key: never publish it. Publish the public key only: "
    "gpg --armor --export <address>"
)
# From the armor's first line to its last. Said with startsWith/endsWith, not a pattern:
# a regular expression over 8 KiB in each of 1,000 mailboxes exceeds the API server's
# cost budget for CEL, and a plain schema pattern would quote the value (a private key
# pasted by mistake) in its error.
_LINE_ENDS = ("\\n", "\\r\\n")
OPENPGP_KEY_RULE = (
    "("
    + " || ".join(f"self.startsWith('{OPENPGP_HEADER}{e}')" for e in _LINE_ENDS)
    + ") && ("
    + " || ".join(f"self.endsWith('{OPENPGP_FOOTER}{e}')" for e in ("", *_LINE_ENDS))
    + ")"
)


def armored_public_key(value: str) -> str:
    """What OPENPGP_KEY_RULE and the rule against a private key say, for pydantic."""
    starts = tuple(OPENPGP_HEADER + e for e in ("\n", "\r\n"))
    ends = tuple(OPENPGP_FOOTER + e for e in ("", "\n", "\r\n"))
    if not value.startswith(starts) or not value.endswith(ends):
        raise ValueError(OPENPGP_KEY_MESSAGE)
    if "PRIVATE KEY" in value:
        raise ValueError(OPENPGP_PRIVATE_BLOCK_MESSAGE)
    return value
