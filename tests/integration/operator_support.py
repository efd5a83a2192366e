"""Run the operator under test as a subprocess, as the chart's ServiceAccount."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from vpes_devcluster.platform import install_platform
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
__all__ = ["OperatorProcess", "install_platform", "wait_for", "wait_ready"]


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `check` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiError as e:
            last = e
        if last and not isinstance(last, ApiError):
            return cast(T, last)
        time.sleep(interval)
        interval = min(interval * 1.5, 2.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


class OperatorProcess:
    """`python -m vpes_operator`, restartable, its log kept for the test report."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ):
        self.args = args if args is not None else ["--metrics-port", "0"]
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "VPES_BCRYPT_ROUNDS": "4",
            "VPES_DKIM_KEY_BITS": "1024",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.runs}.log"

    def start(self) -> None:
        OPERATOR_LOG_DIRS.add(self.log_dir)
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vpes_operator", "--liveness", "", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def peak_rss_kib(self) -> int:
        """The operator process's peak resident set size (VmHWM), in KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log"))
        )


def server_body(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PersonalMailServer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def plan_body(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resources": {"requests": {"cpu": "10m", "memory": "24Mi"}, "limits": {"memory": "96Mi"}},
        "storage": "1Gi",
        "maxDomains": 3,
        "maxMailboxes": 5,
    }
    base.update(spec)
    return {"apiVersion": API_VERSION, "kind": "MailPlan", "metadata": {"name": name}, "spec": base}


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c.get("type") == type_:
            return dict(c)
    return None


def get_server(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(API_VERSION, "PersonalMailServer", namespace, name)


def wait_ready(kube: Kube, namespace: str, name: str, timeout: float = 180.0) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = get_server(kube, namespace, name)
        c = condition(obj, "Ready")
        return obj if c and c["status"] == "True" else None

    return wait_for(ready, f"PersonalMailServer {namespace}/{name} Ready", timeout)


# Every secret value the tests created or the operator generated, and every
# operator log: at the end of the session no log may contain any of them.
SECRET_VALUES: set[str] = set()
OPERATOR_LOG_DIRS: set[Path] = set()


def release_deleted_servers(api: Kube) -> None:
    """Servers earlier tests left being deleted (their namespaces went while no operator
    ran) would have a cluster-wide operator started now retry their DNS cleanup against
    servers long gone, with back-offs of minutes, its handler threads busy with them:
    let them go, so a test's figures and bounds are about its own servers."""
    for s in api.list(API_VERSION, "PersonalMailServer"):
        meta = s["metadata"]
        if meta.get("deletionTimestamp") and meta.get("finalizers"):
            where = (meta["namespace"], meta["name"])
            api.patch_metadata(API_VERSION, "PersonalMailServer", *where, {"finalizers": []})


def harvest_secrets(api: Kube, namespace: str) -> None:
    """Remember the values of every Secret in `namespace` (before it is deleted)."""
    import base64

    for secret in api.list("v1", "Secret", namespace):
        for raw in (secret.get("data") or {}).values():
            text = base64.b64decode(raw).decode(errors="replace")
            for line in text.splitlines():
                # Whole values and their lines (PEM bodies, JSON entries) long
                # enough not to match by chance.
                if len(line.strip()) >= 12:
                    SECRET_VALUES.add(line.strip())
            if len(text) >= 12:
                SECRET_VALUES.add(text)


def leaked_secrets() -> list[tuple[Path, str]]:
    """(log file, the start of the secret) for every secret found in an operator log."""
    found = []
    markers = {v for v in SECRET_VALUES if "BEGIN" not in v and "END" not in v}
    for d in OPERATOR_LOG_DIRS:
        for log in d.glob("*.log"):
            text = log.read_text(errors="replace")
            for value in markers:
                if value in text:
                    found.append((log, value[:6] + "..."))
    return found
