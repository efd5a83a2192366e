"""`billing` started as in production (uvicorn, access log on) logs no one-time link
token, no signup key and no Checkout Session id. A real server process, so not in the unit tier; it
needs no cluster (the API server it is pointed at refuses connections)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SECRET = "whsec_unit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_the_real_server_logs_no_token_or_session_id(tmp_path: Path) -> None:
    """`billing` (uvicorn, access log on) started as in production; the API server it is
    pointed at refuses connections, so the pages fail, but every request is logged."""
    dead = _free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{dead}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    port = _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "STRIPE_API_KEY": "sk_test_unit",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_API_BASE": f"http://127.0.0.1:{dead}",
        "VPES_BILLING_SWEEP_SECONDS": "0",
    }
    token = f"vpes-c-{secrets.token_hex(8)}.{secrets.token_urlsafe(32)}"
    key = secrets.token_urlsafe(32)
    session = f"cs_test_{secrets.token_hex(30)}"
    out = tmp_path / "billing.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpes_billing", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(base + "/healthz") == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        _get(f"{base}/password/{token}")
        _get(f"{base}/signup/return?key={key}")
        _get(f"{base}/signup/status?key={key}")
        _get(f"{base}/signup/status?session_id={session}")  # an old link
        deadline = time.monotonic() + 10
        while out.read_text().count("[redacted]") < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = out.read_text()
    assert '"GET /healthz HTTP/1.1" 200' in text, "no access log: the check proves nothing"
    assert "GET /password/[redacted]" in text
    assert text.count("key=[redacted]") >= 2 and "session_id=[redacted]" in text
    assert key not in text
    assert token.split(".")[1] not in text
    assert session not in text and session.removeprefix("cs_test_") not in text
