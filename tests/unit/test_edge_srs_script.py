"""The edge's SRS shell functions (images/edge/relay/srs.sh), run by dash as
vpes-edge runs them: what each role's main.cf gets, the MX's two tables, and
the domains and secrets refused before anything starts. (postsrsd and Postfix
themselves: tests/images/test_edge_srs.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRS_SH = Path(__file__).resolve().parents[2] / "images" / "edge" / "relay" / "srs.sh"
SECRET = "a-secret-of-enough-characters\nan-older-one\n"


def run(tmp_path: Path, domain: str, script: str, secret: str | None = SECRET) -> tuple[int, str]:
    """Runs ``script`` after sourcing srs.sh with vpes-edge's helpers stubbed."""
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell is not None
    secret_file = tmp_path / "secret"
    if secret is not None:
        secret_file.write_text(secret)
    prelude = (
        'say() { echo "say: $*"; }\n'
        'die() { echo "die: $*"; exit 2; }\n'
        'alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }\n'
        f"POSTFIX_DIR={tmp_path}\n"
        f". {SRS_SH}\n"
        f"SRS_SECRET={secret_file}\n"
        f"VPES_SRS_DOMAIN='{domain}'\n"
    )
    out = subprocess.run(
        [shell, "-c", prelude + script], capture_output=True, text=True, timeout=10, check=False
    )
    return out.returncode, out.stdout + out.stderr


def test_relay_main_cf_rewrites_the_envelope_sender_only(tmp_path: Path) -> None:
    code, out = run(tmp_path, "srs.edge.test", "srs_check && srs_main_cf relay && srs_domain_table")
    assert code == 0, out
    # The hosted-domain pipe first: it is asked with the whole address, before tcp.
    assert out.splitlines()[1:] == [
        f"sender_canonical_maps = pipemap:{{regexp:{tmp_path}/srs-domain, "
        "hash:/run/vpes/relay/current/srs-exclude}, tcp:127.0.0.1:10001",
        "sender_canonical_classes = envelope_sender",
    ]
    assert (tmp_path / "srs-domain").read_text() == "/@([^@]+)$/\t${1}\n"


def test_mx_main_cf_and_tables(tmp_path: Path) -> None:
    code, out = run(tmp_path, "srs.edge.test", "srs_check && srs_main_cf mx && srs_reverse_table")
    assert code == 0, out
    assert out.splitlines()[1:] == [
        "vpes_srs_domain = srs.edge.test",
        f"vpes_srs_reverse = pipemap:{{regexp:{tmp_path}/srs-reverse, tcp:127.0.0.1:10002}}",
        f"vpes_srs_transport = texthash:{tmp_path}/srs-transport",
    ]
    # Only SRS0/SRS1 addresses at the SRS domain itself reach postsrsd.
    assert (tmp_path / "srs-reverse").read_text() == (
        "/^(srs[01][-=+][^@]+@srs\\.edge\\.test)$/\t${1}\n"
    )
    assert (tmp_path / "srs-transport").read_text() == (
        "srs.edge.test\terror:5.1.1 not a valid SRS address (forged, expired or unknown)\n"
    )


def test_without_a_domain_nothing_is_rewritten(tmp_path: Path) -> None:
    code, out = run(tmp_path, "", "srs_check && srs_main_cf relay && srs_reverse_table", None)
    assert code == 0, out
    assert out.splitlines() == ["# SRS (VPES_SRS_DOMAIN: none)."]
    code, out = run(tmp_path, "", "srs_main_cf mx", None)
    assert out.splitlines()[1:] == [
        "vpes_srs_domain =",
        "vpes_srs_reverse =",
        "vpes_srs_transport =",
    ]
    assert not (tmp_path / "srs-reverse").exists()


@pytest.mark.parametrize(
    ("domain", "secret", "says"),
    [
        ("Srs.Example", SECRET, "is not a lower-case domain name"),
        ("srs..example", SECRET, "is not a lower-case domain name"),
        ("-srs.example", SECRET, "is not a lower-case domain name"),
        ("srs.example.", SECRET, "is not a lower-case domain name"),
        ("srs_x.example", SECRET, "is not a lower-case domain name"),
        ("localhost", SECRET, "is not a fully qualified domain name"),
        ("srs.example", None, "there is no"),
        ("srs.example", "tooShort-31\n", "shorter than 16 characters"),
        ("srs.example", "", "shorter than 16 characters"),
    ],
)
def test_what_cannot_work_is_refused(
    tmp_path: Path, domain: str, secret: str | None, says: str
) -> None:
    code, out = run(tmp_path, domain, "srs_check && echo passed", secret)
    assert code == 2, out
    assert says in out and "passed" not in out
    # The message never holds the secret.
    if secret:
        assert secret.strip() not in out
