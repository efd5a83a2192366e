"""The fleet admin's antispam rules in the real Rspamd image, as the chart mounts them
(a ConfigMap-like directory at /etc/vpes/antispam-rules, read-only root, /run/vpes an
emptyDir): good rules are what Rspamd judges by; rules Rspamd cannot parse or would
drop, or a file named like one of the image's own drop-ins, stop the container at start
(exit 2) with the reason as its last words, so such a pod never becomes ready."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from vpes_operator.fleet.antispam import check_rules

from .clients import wait_until
from .rspamd_support import SECURITY, empty_dir, message
from .tenant import _atomic_write, podman, podman_env

ENV = [
    "--env", "VPES_REDIS=127.0.0.1:6379",  # no Redis: Bayes is not what is tested
    "--env", "VPES_REDIS_PASSWORD=redis-password-for-rules",
    "--env", "VPES_RSPAMD_CONTROLLER_PASSWORD=controller-password-rules",
]  # fmt: skip
GOOD = {
    "multimap.conf": (
        'VPES_RULES_WORD {\n  type = "header";\n  header = "Subject";\n  regexp = true;\n'
        '  map = "${LOCAL_CONFDIR}/local.d/vpes-words.map";\n  score = 20.0;\n}\n'
    ),
    "vpes-words.map": "/zorblax/i\n",
}


def run(image: str, root: Path, rules: dict[str, str], *args: str) -> list[str]:
    directory = root / "rules"
    _atomic_write(directory, rules)
    return [
        *SECURITY, *empty_dir(root, "/run/vpes"), *empty_dir(root, "/tmp"),
        "--volume", f"{directory}:/etc/vpes/antispam-rules:ro", *ENV, *args, image, "rspamd",
    ]  # fmt: skip


def test_good_rules_are_what_rspamd_judges_by(antispam_image: str, tmp_path: Path) -> None:
    name = f"vpes-test-rules-{uuid.uuid4().hex[:8]}"
    podman("run", "--detach", "--name", name,
           *run(antispam_image, tmp_path, GOOD))  # fmt: skip
    try:

        def scanned(subject: str) -> str | None:
            out = subprocess.run(
                ["podman", "exec", "-i", name, "rspamc", "-h", "127.0.0.1:11333"],
                input=message(subject, "Hello Bob, see you on Friday.\n"),
                capture_output=True, timeout=60, env=podman_env(), check=False,
            )  # fmt: skip
            report = out.stdout.decode(errors="replace")
            return report if "Action:" in report else None

        report = wait_until(lambda: scanned("buy zorblax today"), 90, "Rspamd's scanner")
        assert "Action: reject" in report and "VPES_RULES_WORD" in report, report
        assert "Action: reject" not in (scanned("minutes of Tuesday") or "")
        logs = podman("logs", name, check=False)
        assert "antispam rules: 2 file(s)" in logs.stdout + logs.stderr
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


@pytest.mark.parametrize(
    ("rules", "said"),
    [
        ({"multimap.conf": 'BAD { type = "header"\n score = ;; }}\n'}, "ucl parser error"),
        ({"multimap.conf": 'BAD { type = "nonsense";\n map = "/x.map"; }\n'}, "cannot add rule"),
        ({"options.inc": "dns { timeout = 2s; }\n"}, "the image ships its own options.inc"),
        ({"rbl.conf": "enabled = true;\n"}, "the image ships its own rbl.conf"),
        ({"rules.lua": "return 1\n"}, "must end in .conf, .inc or .map"),
    ],
    ids=["syntax-error", "rule-dropped", "own-local-d", "own-override-d", "lua"],
)
def test_refused_rules_stop_the_container_saying_why(
    antispam_image: str, tmp_path: Path, rules: dict[str, str], said: str
) -> None:
    # The operator refuses these names before any pod sees them (the content it cannot).
    if said not in ("ucl parser error", "cannot add rule"):
        assert check_rules(rules) is not None
    out = podman("run", "--rm", *run(antispam_image, tmp_path, rules),
                 check=False, timeout=120)  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert said in out.stderr, out.stderr
