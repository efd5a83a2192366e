"""OpenPGP keys made as a person makes them (`gpg --quick-gen-key`), in a throwaway
GnuPG home, for the tests of the panel's key check and of publishing a key. Shared by
the unit and integration tiers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GPG_BATCH = ("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "")


class GnuPG:
    """A GnuPG home (a short path: the agent's socket lives in it) that makes keys."""

    def __init__(self, home: str) -> None:
        self.home = home

    def gpg(self, *args: str, input_: bytes | None = None) -> bytes:
        done = subprocess.run(
            [*GPG_BATCH, "--homedir", self.home, *args],
            input=input_,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def make(
        self,
        user_id: str,
        *,
        algo: str = "future-default",
        usage: str = "default",
        expire: str = "1y",
        when: str | None = None,
    ) -> str:
        """A new key (ed25519 with a cv25519 subkey unless told), made at `when` (gpg's
        --faked-system-time, e.g. 20200101T000000) or now; its fingerprint."""
        fake = ["--faked-system-time", when] if when else []
        self.gpg(*fake, "--quick-gen-key", user_id, algo, usage, expire)
        listing = self.gpg("--with-colons", "--list-keys", user_id).decode()
        return next(line.split(":")[9] for line in listing.splitlines() if line[:3] == "fpr")

    def revoke(self, fingerprint: str) -> None:
        """Revoke a key with the certificate gpg made along with it."""
        certificate = Path(self.home, "openpgp-revocs.d", f"{fingerprint}.rev").read_text()
        self.gpg("--import", input_=certificate.replace(":-----BEGIN", "-----BEGIN").encode())

    def export(self, *names: str, secret: bool = False) -> str:
        """ASCII-armored, as `gpg --armor --export` prints it (the secret keys with
        `secret`)."""
        what = "--export-secret-keys" if secret else "--export"
        return self.gpg("--armor", what, *names).decode()


@contextmanager
def gnupg() -> Iterator[GnuPG]:
    """A new GnuPG home; its agent stopped and the home removed afterwards."""
    home = tempfile.mkdtemp(prefix="gpg-")
    try:
        yield GnuPG(home)
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)
