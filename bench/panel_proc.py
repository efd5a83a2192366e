"""The panel as its own process for ``bench/panel.py`` (``python -m vpes_panel``; or
another of its services, e.g. ``vpes_panel.wellknown`` for ``bench/web.py``) with the
chart's environment (its ServiceAccount's kubeconfig), and its memory."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.panel_web import free_port

MIB = 1024 * 1024


class PanelProcess:
    """``python -m <module>`` on loopback until `stop`; its log in `log`."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        env: dict[str, str] | None = None,
        module: str = "vpes_panel",
    ) -> None:
        self.module = module
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "VPES_PANEL_PUBLIC_URL": self.url,
            "VPES_PANEL_SESSION_KEY": secrets.token_hex(32),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        argv = [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.module} did not start; see {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reset_peak(self) -> None:
        """Start the peak RSS (VmHWM) again from the current RSS (Linux's clear_refs)."""
        assert self.proc is not None
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def memory(self) -> dict[str, float]:
        """RSS, PSS, anonymous PSS (smaps_rollup) and peak RSS (VmHWM) in MiB."""
        assert self.proc is not None
        pid = self.proc.pid
        out: dict[str, float] = {}
        wanted = {"Rss": "rss_mib", "Pss": "pss_mib", "Pss_Anon": "pss_anon_mib"}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            if key in wanted:
                out[wanted[key]] = round(int(rest.split()[0]) / 1024, 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_mib"] = round(int(line.split()[1]) / 1024, 1)
        return out
