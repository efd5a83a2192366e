"""A user's own GnuPG on the test's side: makes the key pair a user brings to the
webmail (imported there through enigma's form), and reads what the webmail sent
as that user's mail program would (gpg on the raw message from IMAP)."""

from __future__ import annotations

import email
import subprocess
from dataclasses import dataclass
from email.message import Message
from pathlib import Path


@dataclass
class Keyring:
    """``address``'s key pair (Ed25519 to sign, Curve25519 to encrypt), protected by
    ``passphrase``, in its own GnuPG home ``home``."""

    home: Path
    address: str
    passphrase: str

    def gpg(self, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        base = ["gpg", "--batch", "--homedir", str(self.home), "--pinentry-mode", "loopback"]
        return subprocess.run(
            [*base, "--passphrase", self.passphrase, *args],
            input=data,
            capture_output=True,
            check=False,
        )

    def make(self) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = self.gpg("--quick-gen-key", f"Test <{self.address}>", "ed25519", "sign", "never")
        assert made.returncode == 0, made.stderr.decode()
        sub = self.gpg("--quick-add-key", self.fingerprint(), "cv25519", "encr", "never")
        assert sub.returncode == 0, sub.stderr.decode()

    def fingerprint(self) -> str:
        out = self.gpg("--with-colons", "--list-keys", self.address)
        for line in out.stdout.decode().splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]
        raise AssertionError(f"no key for {self.address}: {out.stderr.decode()}")

    def export(self, secret: bool = False) -> str:
        what = "--export-secret-keys" if secret else "--export"
        out = self.gpg("--armor", what, self.address)
        assert out.returncode == 0 and out.stdout, out.stderr.decode()
        return out.stdout.decode()

    def add(self, public_key: str) -> None:
        done = self.gpg("--import", data=public_key.encode())
        assert done.returncode == 0, done.stderr.decode()

    def decrypt(self, armored: bytes) -> tuple[bytes, list[str]]:
        """The plaintext and gpg's status lines (``[GNUPG:] ...``)."""
        out = self.gpg("--status-fd", "2", "--decrypt", data=armored)
        status = [line for line in out.stderr.decode().splitlines() if line.startswith("[GNUPG:]")]
        return out.stdout, status

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False)


def pgp_mime_parts(raw: bytes) -> tuple[Message, bytes]:
    """RFC 3156: the message's top part, and its encrypted payload (the second part
    of multipart/encrypted). Fails if the message is not PGP/MIME encrypted."""
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/encrypted", msg.get_content_type()
    assert msg.get_param("protocol") == "application/pgp-encrypted", msg["Content-Type"]
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 2, parts
    version, payload = parts
    assert version.get_content_type() == "application/pgp-encrypted", version["Content-Type"]
    assert b"Version: 1" in version.get_payload(decode=True)
    assert payload.get_content_type() == "application/octet-stream", payload["Content-Type"]
    body = payload.get_payload(decode=True)
    assert isinstance(body, bytes) and body.startswith(b"-----BEGIN PGP MESSAGE-----"), body
    return msg, body
